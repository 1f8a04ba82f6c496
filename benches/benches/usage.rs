//! `usage/*`: a core's usage accumulator (gateway-core `usage`).
//!
//! - `usage/record`: one call of a known identity (the steady state of every keyed request;
//!   target well under 50 ns, no heap allocation).
//! - `usage/record_10000_identities`: the same, cycling through 10,000 known identities (cache
//!   misses included).
//! - `usage/flush_4096`: turning 4096 pending identities (16 partitions) into batches; the
//!   recording of those identities is not timed.
//!
//! Before measuring, the bench counts heap allocations of `record` on known identities with a
//! counting global allocator and refuses to run if there is any.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use gateway_core::usage::{Outcome, UsageAccumulator, UsageConfig, UsageIdentity};
use gateway_model::event::{RejectReason, UsageBatch};

#[global_allocator]
static GLOBAL: benches::CountingAlloc = benches::CountingAlloc;

const NOW: i64 = 1_795_000_000_000;
const PARTITIONS: u32 = 16;

/// Ids shaped like real ones: a key's client id, its API, a route, a consumer.
struct Ids {
    keys: Vec<String>,
    apis: Vec<String>,
    routes: Vec<String>,
    consumers: Vec<String>,
}

impl Ids {
    fn new(n: usize) -> Self {
        Self {
            keys: (0..n)
                .map(|i| format!("client-{i:05}-{:x}", i * 2_654_435_761 % 65_536))
                .collect(),
            apis: (0..8).map(|i| format!("api-{i}")).collect(),
            routes: (0..32)
                .map(|i| format!("route-{i:02}-payments-v2"))
                .collect(),
            consumers: (0..64).map(|i| format!("consumer-{i}")).collect(),
        }
    }

    fn identity(&self, i: usize) -> UsageIdentity<'_> {
        UsageIdentity {
            apikey: &self.keys[i % self.keys.len()],
            api: Some(&self.apis[i % self.apis.len()]),
            route: &self.routes[i % self.routes.len()],
            consumer: (i % 2 == 0).then(|| self.consumers[i % self.consumers.len()].as_str()),
            subscription: None,
            day: 20261122,
            month: 202611,
        }
    }
}

fn accumulator() -> UsageAccumulator {
    UsageAccumulator::new(UsageConfig::new("gw-bench", 1, 0, PARTITIONS), NOW)
}

fn outcome(i: usize) -> Outcome {
    if i % 10 == 9 {
        Outcome::Rejected(RejectReason::Throttled)
    } else {
        Outcome::Admitted
    }
}

fn check_no_allocation() {
    let ids = Ids::new(1000);
    let mut acc = accumulator();
    for i in 0..1000 {
        acc.record(ids.identity(i), outcome(i), 100, 1000, 200);
    }
    let before = benches::allocations();
    for i in 0..100_000 {
        acc.record(
            black_box(ids.identity(i % 1000)),
            outcome(i),
            100,
            1000,
            200,
        );
    }
    let allocations = benches::allocations() - before;
    assert_eq!(allocations, 0, "record allocated on known identities");
    println!("usage/record: 0 allocations over 100,000 calls of known identities");
}

fn record(c: &mut Criterion) {
    let ids = Ids::new(10_000);
    let mut acc = accumulator();
    let one = ids.identity(4242);
    acc.record(one, Outcome::Admitted, 0, 0, 200);
    let mut i = 0usize;
    c.bench_function("usage/record", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(acc.record(black_box(one), outcome(i), 512, 2048, 200))
        })
    });

    let mut acc = accumulator();
    for i in 0..10_000 {
        acc.record(ids.identity(i), Outcome::Admitted, 0, 0, 200);
    }
    let identities: Vec<UsageIdentity<'_>> = (0..10_000)
        .map(|i| ids.identity(i * 7919 % 10_000))
        .collect();
    let mut i = 0usize;
    c.bench_function("usage/record_10000_identities", |b| {
        b.iter(|| {
            i = (i + 1) % identities.len();
            black_box(acc.record(black_box(identities[i]), outcome(i), 512, 2048, 200))
        })
    });
}

fn flush(c: &mut Criterion) {
    let ids = Ids::new(4096);
    let mut acc = accumulator();
    let mut out: Vec<UsageBatch> = Vec::new();
    let mut now = NOW;
    let mut group = c.benchmark_group("usage");
    group.throughput(Throughput::Elements(4096));
    group.bench_function("flush_4096", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                for i in 0..4096 {
                    acc.record(ids.identity(i), outcome(i), 512, 2048, 200);
                }
                now += 100;
                let started = Instant::now();
                let report = acc.flush_into(now, false, &mut out);
                timed += started.elapsed();
                assert_eq!(report.entries, 4096);
                out.clear();
            }
            timed
        })
    });
    group.finish();
}

fn main() {
    check_no_allocation();
    let mut c = Criterion::default().configure_from_args();
    record(&mut c);
    flush(&mut c);
    c.final_summary();
}
