//! `http/*`: the sans-IO HTTP/1.1 codec. Target: a typical ~400-byte request head parsed in
//! ≤ 300 ns (scan for the end of head, httparse, framing and Host rules, header spans).

use std::hint::black_box;

use benches::REQUEST_400B;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gateway_core::http::{BodyDecoder, BodyFraming, BodyLimits, HeadParser, Method};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\n\
Date: Sun, 22 Nov 2026 11:00:00 GMT\r\n\
Content-Type: application/json; charset=utf-8\r\n\
Content-Length: 1234\r\n\
Cache-Control: no-store\r\n\
Vary: Accept-Encoding\r\n\
X-Request-Id: 3f2a9c1e-7b4d-4e8a-9f00-1234567890ab\r\n\
\r\n";

fn heads(c: &mut Criterion) {
    let mut parser = HeadParser::default();
    let mut group = c.benchmark_group("http");
    group.throughput(Throughput::Bytes(REQUEST_400B.len() as u64));
    group.bench_function("parse_request_head_400b", |b| {
        b.iter(|| {
            let head = parser
                .parse_request(black_box(REQUEST_400B))
                .unwrap()
                .unwrap();
            black_box((head.head_len(), head.framing(), head.host()));
        });
    });
    group.throughput(Throughput::Bytes(RESPONSE.len() as u64));
    group.bench_function("parse_response_head", |b| {
        b.iter(|| {
            let head = parser
                .parse_response(black_box(RESPONSE), Method::Get)
                .unwrap()
                .unwrap();
            black_box((head.head_len(), head.framing(), head.status()));
        });
    });
    group.finish();
}

/// 64 KiB of payload in 8 KiB chunks, with a trailer.
fn chunked_64k() -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..8u8 {
        body.extend_from_slice(b"2000\r\n");
        body.extend(std::iter::repeat_n(b'a' + i, 8192));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\nX-Checksum: 1234\r\n\r\n");
    body
}

fn bodies(c: &mut Criterion) {
    let body = chunked_64k();
    let mut group = c.benchmark_group("http");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("chunked_decode_64k", |b| {
        b.iter(|| {
            let mut decoder =
                BodyDecoder::request(BodyFraming::Chunked, BodyLimits::default()).unwrap();
            let mut input = black_box(body.as_slice());
            let mut payload = 0;
            loop {
                let out = decoder.decode(input).unwrap();
                payload += out.data.len();
                input = &input[out.consumed..];
                if out.done {
                    break;
                }
            }
            black_box(payload)
        });
    });
    group.finish();
}

criterion_group!(benches, heads, bodies);
criterion_main!(benches);
