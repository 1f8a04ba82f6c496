//! `balance/*`: one upstream call's worth of target selection on one core (pick, start, finish)
//! among 8 targets, per policy.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gateway_core::balance::{Balancer, Outcome, PickHint};
use gateway_model::entity::Backend;
use serde_json::json;

fn balancer(policy: &str) -> Balancer {
    let targets: Vec<_> = (0..8)
        .map(|i| json!({"hostname": format!("10.0.0.{i}"), "port": 8080, "weight": 1 + i % 3}))
        .collect();
    let backend: Backend =
        serde_json::from_value(json!({"targets": targets, "load_balancing": {"type": policy}}))
            .unwrap();
    Balancer::new(&backend, 0x5eed).unwrap()
}

fn cycles(c: &mut Criterion) {
    for (name, policy) in [
        ("balance/pick_round_robin_8", "RoundRobin"),
        ("balance/pick_p2c_8", "PowerOfTwoRandomChoices"),
        ("balance/pick_least_conn_8", "LeastConnections"),
        ("balance/pick_ip_hash_8", "IpAddressHash"),
    ] {
        let mut b = balancer(policy);
        // A few calls in flight, so the load-aware policies compare real loads.
        let held: Vec<_> = (0..8)
            .filter_map(|_| {
                let t = b.pick(0, PickHint::default())?;
                Some(b.start(t, 0))
            })
            .collect();
        let mut client: u32 = 0x0a00_0000;
        let mut now: i64 = 1_700_000_000_000;
        c.bench_function(name, |bench| {
            bench.iter(|| {
                client = client.wrapping_add(1);
                now += 1;
                let ip = client.to_be_bytes();
                let hint = PickHint {
                    client_ip: Some(&ip),
                    header_value: None,
                };
                let t = b.pick(black_box(now), black_box(hint)).unwrap();
                let ticket = b.start(t, now);
                black_box(b.finish(ticket, Outcome::Success, now))
            })
        });
        drop(held);
    }
}

criterion_group!(benches, cycles);
criterion_main!(benches);
