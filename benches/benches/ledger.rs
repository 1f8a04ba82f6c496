//! `ledger/*`: the ledger's in-memory fold (ledger `fold`).
//!
//! - `ledger/fold_256_entry_batches`: 64 encoded usage batches of 256 entries each (500 keys,
//!   4 routes, 2,000 identities), each decoded with validation (bytecheck + invariants),
//!   deduplicated by producer sequence and folded into the chunk's rows; throughput in usage
//!   entries. Target: ≥ 5 M entries/s per core.
//! - `ledger/fold_view_only`: the same without the decoding (already validated views), to
//!   show what validation costs.

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use gateway_model::event::{UsageBatch, UsageCounters, UsageDecoder, UsageEntry, encode};
use ledger::Fold;
use ledger::calendar::Calendar;

const NOW: i64 = 1_795_000_000_000;
const BATCHES: usize = 64;
const ENTRIES: usize = 256;

fn batches() -> Vec<Vec<u8>> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..BATCHES)
        .map(|sequence| {
            let entries = (0..ENTRIES)
                .map(|_| {
                    let key = next() % 500;
                    let route = next() % 4;
                    UsageEntry {
                        apikey: format!("client-{key:05}-{:x}", key * 2_654_435_761 % 65_536),
                        api: Some(format!("api-{}", key % 8)),
                        route: format!("route-{route}-{}", key % 8),
                        consumer: Some(format!("consumer-{}", key % 50)),
                        subscription: Some(format!("sub-{}", key % 100)),
                        day: 20_261_119,
                        month: 202_611,
                        counters: UsageCounters {
                            admitted: next() % 100,
                            bytes_in: next() % 10_000,
                            bytes_out: next() % 100_000,
                            ..UsageCounters::default()
                        },
                    }
                })
                .collect();
            encode(&UsageBatch {
                node: "gw-a".into(),
                epoch: 1,
                core: 0,
                partition: 0,
                partitions: 1,
                sequence: sequence as u64,
                window_start_ms: NOW + sequence as i64 * 100,
                window_end_ms: NOW + sequence as i64 * 100 + 100,
                entries,
            })
            .unwrap()
        })
        .collect()
}

fn fold(c: &mut Criterion) {
    let encoded = batches();
    let mut group = c.benchmark_group("ledger");
    group.throughput(Throughput::Elements((BATCHES * ENTRIES) as u64));
    group.bench_function("fold_256_entry_batches", |b| {
        b.iter(|| {
            let mut fold = Fold::new(Calendar::utc(), 3_600_000);
            for (offset, bytes) in encoded.iter().enumerate() {
                fold.apply_usage("journal:usage", offset as u64, bytes);
            }
            black_box(fold.take_delta())
        });
    });
    group.bench_function("fold_view_only", |b| {
        let mut decoders: Vec<UsageDecoder> = encoded.iter().map(|_| UsageDecoder::new()).collect();
        let views: Vec<_> = decoders
            .iter_mut()
            .zip(&encoded)
            .map(|(d, bytes)| d.access(bytes).unwrap())
            .collect();
        b.iter(|| {
            let mut fold = Fold::new(Calendar::utc(), 3_600_000);
            for view in &views {
                fold.apply_batch("journal:usage", view);
            }
            black_box(fold.take_delta())
        });
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    fold(&mut c);
    c.final_summary();
}
