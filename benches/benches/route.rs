//! `route/*`: route table lookups (target: ≤ 200 ns among 10,000 routes), and `window/*`: the
//! calendar computation a quota shard does once per roll-over.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use gateway_core::route::{RouteDef, RouteTable};
use gateway_core::window::Calendar;

fn def(id: usize, domain: String) -> RouteDef {
    RouteDef {
        id: format!("r{id}"),
        domains: vec![domain],
        exact: false,
        strip_path: true,
        methods: Vec::new(),
        headers: Vec::new(),
        query: Vec::new(),
        slot: id,
    }
}

fn no_headers(_: &str) -> Option<&'static [u8]> {
    None
}

fn lookups(c: &mut Criterion) {
    let small =
        RouteTable::build((0..10).map(|i| def(i, format!("api{i}.example.com/v1")))).unwrap();
    c.bench_function("route/lookup_10_routes", |b| {
        b.iter(|| {
            black_box(small.lookup(
                black_box(b"api7.example.com:8080"),
                b"GET",
                black_box("/v1/users/42"),
                b"",
                no_headers,
            ))
        })
    });

    // 10,000 routes on 100 hosts, 100 paths each, two segments deep.
    let many = RouteTable::build((0..10_000).map(|i| {
        def(
            i,
            format!("h{}.example.com/svc{}/v{}", i % 100, i / 100, i % 7),
        )
    }))
    .unwrap();
    c.bench_function("route/lookup_10000_routes", |b| {
        b.iter(|| {
            black_box(many.lookup(
                black_box(b"h42.example.com"),
                b"GET",
                black_box("/svc42/v0/orders/123/items"),
                b"",
                no_headers,
            ))
        })
    });

    // 10,000 paths on one host: the per-host index must not scan.
    let one_host =
        RouteTable::build((0..10_000).map(|i| def(i, format!("api.example.com/p{i}")))).unwrap();
    c.bench_function("route/lookup_10000_routes_one_host", |b| {
        b.iter(|| {
            black_box(one_host.lookup(
                black_box(b"api.example.com"),
                b"GET",
                black_box("/p9876/a/b"),
                b"",
                no_headers,
            ))
        })
    });

    let wild =
        RouteTable::build((0..10_000).map(|i| def(i, format!("*.t{i}.example.com/api")))).unwrap();
    c.bench_function("route/lookup_10000_wildcards", |b| {
        b.iter(|| {
            black_box(wild.lookup(
                black_box(b"eu.shop.t777.example.com"),
                b"GET",
                black_box("/api/cart"),
                b"",
                no_headers,
            ))
        })
    });

    c.bench_function("route/miss_10000_routes", |b| {
        b.iter(|| {
            black_box(many.lookup(
                black_box(b"unknown.org"),
                b"GET",
                black_box("/x/y"),
                b"",
                no_headers,
            ))
        })
    });
}

fn windows(c: &mut Criterion) {
    let paris = Calendar::new("Europe/Paris").unwrap();
    let now = 1_795_000_000_000i64;
    c.bench_function("window/day_rollover_europe_paris", |b| {
        b.iter(|| black_box(paris.day(black_box(now))))
    });
    c.bench_function("window/month_rollover_europe_paris", |b| {
        b.iter(|| black_box(paris.month(black_box(now))))
    });
}

criterion_group!(benches, lookups, windows);
criterion_main!(benches);
