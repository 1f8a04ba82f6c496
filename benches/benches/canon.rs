//! `canon/*` and `rewrite/*`: what the data-plane security work added to every request — the
//! canonical path and host (RFC 3986 normalisation before routing, checks and forwarding) and
//! the upstream head written under the header policy (X-Forwarded-*, X-Real-IP, request id,
//! `AdditionalHeadersIn`, client fields dropped).

use std::hint::black_box;
use std::net::IpAddr;

use benches::REQUEST_400B;
use criterion::{Criterion, criterion_group, criterion_main};
use gateway_core::http::{
    HeadLimits, HeadParser, MAX_HOST, PathPolicy, canonical_host, canonical_path,
};
use gateway_core::rewrite::{
    Added, AddedHeader, ForwardedFor, HeaderPolicy, RequestId, UpstreamRequest, write_request_head,
};

fn canon(c: &mut Criterion) {
    let mut group = c.benchmark_group("canon");
    let mut out = String::with_capacity(256);
    // Already canonical: the common case, one pass and a copy.
    group.bench_function("path_clean_5_segments", |b| {
        b.iter(|| {
            canonical_path(
                black_box("/api/v1/users/42/orders"),
                PathPolicy::STRICT,
                &mut out,
            )
            .unwrap();
            black_box(out.len());
        });
    });
    // Percent-encoded unreserved bytes, dot segments, repeated slashes.
    group.bench_function("path_dirty", |b| {
        b.iter(|| {
            canonical_path(
                black_box("/api//v1/./users/%34%32/x/../orders/%7Euser"),
                PathPolicy::STRICT,
                &mut out,
            )
            .unwrap();
            black_box(out.len());
        });
    });
    group.bench_function("path_refused_encoded_slash", |b| {
        b.iter(|| {
            black_box(canonical_path(
                black_box("/api/%2Fadmin"),
                PathPolicy::STRICT,
                &mut out,
            ))
        });
    });
    let mut buf = [0u8; MAX_HOST];
    group.bench_function("host_with_port_and_dot", |b| {
        b.iter(|| {
            black_box(canonical_host(black_box(b"API.Example.COM.:8443"), &mut buf).map(str::len))
        });
    });
    group.finish();
}

fn rewrite(c: &mut Criterion) {
    let mut parser = HeadParser::new(HeadLimits::default());
    let head = parser.parse_request(REQUEST_400B).unwrap().unwrap();
    let headers = head.headers();
    let groups = [vec![AddedHeader::new("X-Internal-User", "gateway").unwrap()].into_boxed_slice()];
    let peer: IpAddr = "10.0.0.9".parse().unwrap();
    let policy = HeaderPolicy {
        forwarded_for: ForwardedFor::Append,
        request_id_header: "X-Request-Id",
    };
    let mut out = Vec::with_capacity(1024);
    let mut group = c.benchmark_group("rewrite");
    for (name, added) in [
        ("request_head_400b", Added::new(&groups, 0)),
        ("request_head_400b_added_header", Added::new(&groups, 1)),
    ] {
        let req = UpstreamRequest {
            method: head.method_str(),
            root: "",
            path: "/api/v1/users/42/orders",
            query: head.query(),
            host: b"10.0.0.20:8080",
            client_host: head.authority().unwrap_or_default(),
            proto: "http",
            peer,
            request_id: RequestId {
                node: "node-1",
                core: 3,
                n: 123_456,
            },
            framing: head.framing(),
            credentials: None,
            added,
            cert_headers: None,
            client_cert: None,
            trace: None,
        };
        group.bench_function(name, |b| {
            b.iter(|| {
                write_request_head(&mut out, black_box(&req), &headers, &policy);
                black_box(out.len());
            });
        });
    }
    group.finish();
}

criterion_group!(benches, canon, rewrite);
criterion_main!(benches);
