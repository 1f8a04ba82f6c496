//! codec/*: encoding and decoding usage batches (gateway-model `event`).
//!
//! A batch of 256 entries is what a core flushes under load (DESIGN §1 flushes every 100 ms or
//! 4096 entries); throughput is in entries per second.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gateway_model::event::{
    RejectReason, UsageBatch, UsageCounters, UsageDecoder, UsageEntry, encode, encode_into,
    partition_for,
};

const ENTRIES: usize = 256;
const PARTITIONS: u32 = 16;

/// 256 entries of one partition, with realistic ids and counters.
fn batch() -> UsageBatch {
    let partition = partition_for("apikey-00000", PARTITIONS);
    let entries = (0u64..)
        .map(|i| format!("apikey-{i:05}"))
        .filter(|key| partition_for(key, PARTITIONS) == partition)
        .take(ENTRIES)
        .enumerate()
        .map(|(i, apikey)| {
            let i = i as u64;
            let mut counters = UsageCounters {
                admitted: 100 + i,
                bytes_in: 40_000 + i,
                bytes_out: 900_000 + i,
                ..UsageCounters::default()
            };
            counters.rejected.add(RejectReason::Throttled, i % 3);
            counters.status.success = 95 + i;
            counters.status.client_error = 5;
            UsageEntry {
                apikey,
                api: Some(format!("api-{}", i % 8)),
                route: format!("route-{}", i % 32),
                consumer: (i % 2 == 0).then(|| format!("consumer-{}", i % 64)),
                subscription: (i % 2 == 0).then(|| format!("subscription-{}", i % 64)),
                day: 20_240_315,
                month: 202_403,
                counters,
            }
        })
        .collect();
    UsageBatch {
        node: "gateway-node-1".to_owned(),
        epoch: 1_710_000_000_000,
        core: 3,
        partition,
        partitions: PARTITIONS,
        sequence: 123_456,
        window_start_ms: 1_710_500_000_000,
        window_end_ms: 1_710_500_000_100,
        entries,
    }
}

fn codec(c: &mut Criterion) {
    let batch = batch();
    let bytes = encode(&batch).expect("a valid batch encodes");
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(ENTRIES as u64));

    let mut out = Vec::with_capacity(bytes.len());
    group.bench_function("usage_encode_256", |b| {
        b.iter(|| {
            out.clear();
            encode_into(black_box(&batch), &mut out).expect("encodes");
            black_box(out.len())
        });
    });

    let mut decoder = UsageDecoder::new();
    group.bench_function("usage_decode_256", |b| {
        b.iter(|| decoder.decode(black_box(&bytes)).expect("decodes"));
    });

    // The ledger's path: validate and read in place, no `UsageBatch` built.
    group.bench_function("usage_access_256", |b| {
        b.iter(|| {
            let view = decoder.access(black_box(&bytes)).expect("validates");
            view.entries
                .iter()
                .map(|e| e.counters.admitted.to_native())
                .sum::<u64>()
        });
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
