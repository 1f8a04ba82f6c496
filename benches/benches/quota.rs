//! `quota/*`: the per-core quota shard (DESIGN §3).
//!
//! - `quota/admit`: the hot path, a lease available (64 active keys of a 10,000-key store;
//!   target ≤ 30 ns).
//! - `quota/admit_with_refill`: one key whose throttling leases hold 16 tokens, so every 16th
//!   call takes a lease from the node pool (one compare-and-swap).
//! - `quota/headers`: writing the quota header lines of a response.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gateway_core::apikey::{KeyEntry, KeyStore};
use gateway_core::quota::{MAX_HEADERS_LEN, NodePool, QuotaShard};
use gateway_core::window::Calendar;
use gateway_model::entity::ApiKey;
use serde_json::json;

const NOW: i64 = 1_795_000_000_000;

fn client_id(i: usize) -> String {
    format!("client-{i:05}")
}

fn store(n: usize, throttling: u64, daily: u64, monthly: u64) -> KeyStore {
    let keys: Vec<ApiKey> = (0..n)
        .map(|i| {
            serde_json::from_value(json!({
                "clientId": client_id(i), "clientSecret": "secret",
                "authorizedEntities": ["route_r1"],
                "throttlingQuota": throttling, "dailyQuota": daily, "monthlyQuota": monthly,
            }))
            .unwrap()
        })
        .collect();
    KeyStore::build(&keys).unwrap()
}

fn admit(c: &mut Criterion) {
    // Quotas so large that leases last the whole run: only the hot path is measured (a
    // millisecond per call: the day rolls over once every 86.4 million calls).
    let keys = store(10_000, u64::MAX, u64::MAX, u64::MAX);
    let hot: Vec<&KeyEntry> = (0..64)
        .map(|i| keys.get(&client_id(i * 131)).unwrap())
        .collect();
    let pool = NodePool::new(Calendar::new("Europe/Paris").unwrap(), 2, &keys);
    let mut shard = QuotaShard::new();
    let (mut i, mut now) = (0usize, NOW);
    c.bench_function("quota/admit", |b| {
        b.iter(|| {
            i = (i + 1) & 63;
            now += 1;
            black_box(shard.admit(&pool, black_box(hot[i]), now)).is_ok()
        })
    });
}

fn admit_with_refill(c: &mut Criterion) {
    // 2048 calls/s, one core, a call per ms: the bucket stays full and each lease is
    // min(2048 / 4, 2048 / 128) = 16 tokens.
    let keys = store(1, 2_048, u64::MAX, u64::MAX);
    let key = keys.get(&client_id(0)).unwrap();
    let pool = NodePool::new(Calendar::utc(), 1, &keys);
    let mut shard = QuotaShard::new();
    let mut now = NOW;
    c.bench_function("quota/admit_with_refill", |b| {
        b.iter(|| {
            now += 1;
            let state = shard.admit(&pool, black_box(key), now);
            assert!(state.is_ok());
            black_box(state)
        })
    });
}

fn headers(c: &mut Criterion) {
    let keys = store(1, 10_000_000, 10_000_000, 10_000_000);
    let key = keys.get(&client_id(0)).unwrap();
    let pool = NodePool::new(Calendar::utc(), 2, &keys);
    let mut shard = QuotaShard::new();
    let state = shard.admit(&pool, key, NOW).unwrap();
    let mut out = Vec::with_capacity(MAX_HEADERS_LEN);
    c.bench_function("quota/headers", |b| {
        b.iter(|| {
            out.clear();
            black_box(&state).write_headers(&mut out);
            black_box(out.len())
        })
    });
}

criterion_group!(benches, admit, admit_with_refill, headers);
criterion_main!(benches);
