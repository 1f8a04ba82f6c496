//! `admit_count/*`: the quota shard and the usage accounting together, the steady state of
//! every keyed request (64 hot keys of a 10,000-key store, one route, known identities).
//!
//! - `admit_count/record`: `QuotaShard::admit`, then `UsageAccumulator::record` after the answer
//!   (the path before tally files: counts in memory only).
//! - `admit_count/admit_complete_tally`: `QuotaShard::admit`, `UsageAccumulator::admit` before
//!   the answer and `complete` after, the accumulator mirrored into a real tally file
//!   (`gateway::tally`, `MAP_SHARED` under the temp dir), as a core of the gateway does now.
//!
//! Before measuring, counts heap allocations of the tally path with a counting global
//! allocator and refuses to run if there is any.

use std::hint::black_box;

use criterion::Criterion;
use gateway_core::apikey::{KeyEntry, KeyStore};
use gateway_core::quota::{NodePool, QuotaShard};
use gateway_core::usage::{Outcome, UsageAccumulator, UsageConfig, UsageIdentity};
use gateway_core::window::Calendar;
use gateway_model::entity::ApiKey;
use serde_json::json;

#[global_allocator]
static GLOBAL: benches::CountingAlloc = benches::CountingAlloc;

const NOW: i64 = 1_795_000_000_000;

fn client_id(i: usize) -> String {
    format!("client-{i:05}")
}

fn store(n: usize) -> KeyStore {
    let keys: Vec<ApiKey> = (0..n)
        .map(|i| {
            serde_json::from_value(json!({
                "clientId": client_id(i), "clientSecret": "secret",
                "authorizedEntities": ["route_r1"],
                "throttlingQuota": u64::MAX, "dailyQuota": u64::MAX, "monthlyQuota": u64::MAX,
            }))
            .unwrap()
        })
        .collect();
    KeyStore::build(&keys).unwrap()
}

fn identity(id: &str) -> UsageIdentity<'_> {
    UsageIdentity {
        apikey: id,
        api: Some("api-payments"),
        route: "route-07-payments-v2",
        consumer: Some("consumer-12"),
        subscription: None,
        day: 20261122,
        month: 202611,
    }
}

fn tally_accumulator(dir: &std::path::Path) -> UsageAccumulator<gateway::tally::Tally> {
    let tally = gateway::tally::Tally::create(
        dir,
        &gateway::tally::TallyOwner {
            node: "gw-bench",
            epoch: 1,
            core: 0,
            partitions: 16,
            journal_from: 0,
            now_ms: NOW,
        },
    )
    .unwrap();
    UsageAccumulator::with_mirror(UsageConfig::new("gw-bench", 1, 0, 16), NOW, tally)
}

fn main() {
    let keys = store(10_000);
    let hot: Vec<&KeyEntry> = (0..64)
        .map(|i| keys.get(&client_id(i * 131)).unwrap())
        .collect();
    let ids: Vec<String> = (0..64).map(|i| client_id(i * 131)).collect();
    let pool = NodePool::new(Calendar::new("Europe/Paris").unwrap(), 2, &keys);
    let dir = std::env::temp_dir().join(format!("tollgate-bench-tally-{}", std::process::id()));

    // No allocation on the tally path once the identities are known.
    {
        let mut shard = QuotaShard::new();
        let mut acc = tally_accumulator(&dir);
        for (i, id) in ids.iter().enumerate() {
            acc.admit(identity(id));
            let _ = shard.admit(&pool, hot[i], NOW);
        }
        let before = benches::allocations();
        for i in 0..100_000usize {
            let _ = shard.admit(&pool, hot[i & 63], NOW + i as i64);
            let id = identity(&ids[i & 63]);
            let c = acc.admit(black_box(id)).unwrap();
            acc.complete(c, id, 512, 2048, 200);
        }
        assert_eq!(
            benches::allocations() - before,
            0,
            "the tally path allocated"
        );
        println!("admit_count/admit_complete_tally: 0 allocations over 100,000 calls");
    }

    let mut c = Criterion::default().configure_from_args();
    {
        let mut shard = QuotaShard::new();
        let mut acc = UsageAccumulator::new(UsageConfig::new("gw-bench", 1, 0, 16), NOW);
        let (mut i, mut now) = (0usize, NOW);
        c.bench_function("admit_count/record", |b| {
            b.iter(|| {
                i = (i + 1) & 63;
                now += 1;
                let admitted = shard.admit(&pool, black_box(hot[i]), now).is_ok();
                black_box(acc.record(
                    black_box(identity(&ids[i])),
                    Outcome::Admitted,
                    512,
                    2048,
                    200,
                ));
                admitted
            })
        });
    }
    {
        let mut shard = QuotaShard::new();
        let mut acc = tally_accumulator(&dir);
        let (mut i, mut now) = (0usize, NOW);
        c.bench_function("admit_count/admit_complete_tally", |b| {
            b.iter(|| {
                i = (i + 1) & 63;
                now += 1;
                let admitted = shard.admit(&pool, black_box(hot[i]), now).is_ok();
                let id = black_box(identity(&ids[i]));
                if let Some(counted) = acc.admit(id) {
                    acc.complete(counted, id, 512, 2048, 200);
                }
                admitted
            })
        });
    }
    c.final_summary();
    let _ = std::fs::remove_dir_all(&dir);
}
