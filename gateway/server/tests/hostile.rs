//! Malformed and hostile clients over raw sockets: smuggling shapes, head limits, body limits,
//! slowloris and idle connections. Each refusal closes the connection, sends nothing upstream,
//! and the gateway keeps serving the next connection. Every test runs on both IO drivers.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::*;
use gateway::runtime::IoMode;
use serde_json::json;

both_drivers!(
    bare_lf_is_400,
    obs_fold_is_400,
    invalid_header_name_is_400,
    space_before_colon_is_400,
    content_length_then_transfer_encoding_is_400,
    transfer_encoding_then_content_length_is_400,
    duplicate_content_length_is_400,
    differing_content_lengths_are_400,
    transfer_encoding_chunked_identity_is_400,
    non_numeric_content_length_is_400,
    missing_host_is_400,
    garbage_request_line_is_400,
    malformed_requests_are_counted_by_code,
    headers_up_to_the_limits_are_served,
    too_many_headers_is_431,
    too_large_head_is_431,
    content_length_over_route_limit_is_413,
    chunked_body_over_route_limit_is_413,
    listener_body_limit_applies_without_route_limit,
    slowloris_client_gets_408,
    idle_keep_alive_connection_is_closed,
    client_vanishing_mid_body_leaves_gateway_serving,
    client_body_errors_do_not_open_the_circuit_breaker,
    upstream_ambiguous_framing_is_502,
    upstream_garbage_response_is_502,
    upstream_closing_without_response_is_502,
    upstream_huge_response_head_is_502,
);

fn echo_setup(io: IoMode, limits: gateway::config::HttpLimits) -> (Upstream, Gateway) {
    let up = Upstream::start(Reply::Echo);
    let gw = Gateway::start_with(
        io,
        &doc(vec![route("echo", "echo.test", backend(&[up.port()]))]),
        limits,
        1,
    );
    (up, gw)
}

/// `raw` is answered 400 `bad_request` with `connection: close`, the connection is closed,
/// nothing reaches the upstream and the gateway serves the next connection.
fn assert_refused(io: IoMode, raw: &[u8]) {
    assert_refused_with(io, raw, 400, "bad_request");
}

fn assert_refused_with(io: IoMode, raw: &[u8], status: u16, code: &str) {
    let (up, gw) = echo_setup(io, test_limits());
    let mut c = gw.client();
    // The gateway may close before reading all of it.
    let _ = c.try_send(raw);
    let r = c
        .try_response()
        .unwrap_or_else(|e| panic!("no {status} response: {e}"));
    r.assert_error(status, code);
    assert!(r.closes(), "no connection: close: {r:?}");
    c.assert_closed();
    assert_eq!(up.requests(), 0, "the upstream saw a refused request");
    gw.assert_serving();
}

/// Each refusal is counted on `/metrics` by its error code.
fn malformed_requests_are_counted_by_code(io: IoMode) {
    let (_up, gw) = echo_setup(io, test_limits());
    for raw in [
        &b"GET / HTTP/1.1\nHost: echo.test\n\n"[..],
        b"GET / HTTP/1.1\r\nHost: echo.test\r\nX-A: 1\r\n  folded\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        b"POST / HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
    ] {
        let mut c = gw.client();
        let _ = c.try_send(raw);
        assert!(c.try_response().is_ok_and(|r| r.status == 400));
    }
    let count = |code: &str| {
        let line = format!("tollgate_malformed_requests_total{{code=\"{code}\"}} ");
        gw.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(line.as_str())?.trim().parse::<u64>().ok())
    };
    assert!(
        wait_until(Duration::from_secs(2), || count("duplicate_content_length")
            == Some(2)),
        "{io:?}: {}",
        gw.metrics()
    );
    assert_eq!(count("bare_lf"), Some(1));
    assert_eq!(count("obs_fold"), Some(1));
    assert_eq!(count("missing_host"), Some(0));
}

fn bare_lf_is_400(io: IoMode) {
    assert_refused(io, b"GET / HTTP/1.1\nHost: echo.test\n\n");
    assert_refused(io, b"GET / HTTP/1.1\r\nHost: echo.test\nX-A: 1\r\n\r\n");
}

fn obs_fold_is_400(io: IoMode) {
    assert_refused(
        io,
        b"GET / HTTP/1.1\r\nHost: echo.test\r\nX-Folded: a\r\n b\r\n\r\n",
    );
}

fn invalid_header_name_is_400(io: IoMode) {
    assert_refused(
        io,
        b"GET / HTTP/1.1\r\nHost: echo.test\r\nBad[Name]: 1\r\n\r\n",
    );
}

fn space_before_colon_is_400(io: IoMode) {
    assert_refused(
        io,
        b"GET / HTTP/1.1\r\nHost: echo.test\r\nX-Space : 1\r\n\r\n",
    );
}

fn content_length_then_transfer_encoding_is_400(io: IoMode) {
    assert_refused(
        io,
        b"POST / HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 5\r\n\
          Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
}

fn transfer_encoding_then_content_length_is_400(io: IoMode) {
    assert_refused(
        io,
        b"POST / HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked\r\n\
          Content-Length: 5\r\n\r\n0\r\n\r\n",
    );
}

fn duplicate_content_length_is_400(io: IoMode) {
    assert_refused(
        io,
        b"POST / HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 5\r\n\
          Content-Length: 5\r\n\r\nhello",
    );
}

fn differing_content_lengths_are_400(io: IoMode) {
    assert_refused(
        io,
        b"POST / HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 5\r\n\
          Content-Length: 6\r\n\r\nhello!",
    );
    assert_refused(
        io,
        b"POST / HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 5, 6\r\n\r\nhello!",
    );
}

fn transfer_encoding_chunked_identity_is_400(io: IoMode) {
    assert_refused(
        io,
        b"POST / HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n\
          5\r\nhello\r\n0\r\n\r\n",
    );
}

fn non_numeric_content_length_is_400(io: IoMode) {
    assert_refused(
        io,
        b"POST / HTTP/1.1\r\nHost: echo.test\r\nContent-Length: +5\r\n\r\nhello",
    );
}

fn missing_host_is_400(io: IoMode) {
    assert_refused(io, b"GET / HTTP/1.1\r\nX-A: 1\r\n\r\n");
    assert_refused(
        io,
        b"GET / HTTP/1.1\r\nHost: echo.test\r\nHost: other.test\r\n\r\n",
    );
}

fn garbage_request_line_is_400(io: IoMode) {
    assert_refused(io, b"HELLO THERE\r\n\r\n");
}

fn headers_up_to_the_limits_are_served(io: IoMode) {
    let (_up, gw) = echo_setup(io, test_limits());
    let mut c = gw.client();
    // 100 fields (the default limit), Host included.
    let mut raw = String::from("GET /many HTTP/1.1\r\nHost: echo.test\r\n");
    for i in 0..99 {
        raw.push_str(&format!("X-H{i}: {i}\r\n"));
    }
    raw.push_str("\r\n");
    c.send(raw.as_bytes());
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?} {}", r.text());
    assert_eq!(echo_header(&r.json(), "x-h98").as_deref(), Some("98"));
    // A 24 KiB head: larger than a first read, within the 32 KiB limit.
    let big = "b".repeat(24 * 1024);
    c.send(&get_request(
        "echo.test",
        "/big-head",
        &[&format!("X-Big: {big}")],
    ));
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?} {}", r.text());
    assert_eq!(echo_header(&r.json(), "x-big"), Some(big));
}

fn too_many_headers_is_431(io: IoMode) {
    let mut raw = String::from("GET / HTTP/1.1\r\nHost: echo.test\r\n");
    for i in 0..150 {
        raw.push_str(&format!("X-H{i}: {i}\r\n"));
    }
    raw.push_str("\r\n");
    assert_refused_with(io, raw.as_bytes(), 431, "headers_too_large");
}

fn too_large_head_is_431(io: IoMode) {
    let raw = format!(
        "GET / HTTP/1.1\r\nHost: echo.test\r\nX-Big: {}\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    assert_refused_with(io, raw.as_bytes(), 431, "headers_too_large");
}

fn limited_setup(io: IoMode) -> (Upstream, Gateway) {
    let up = Upstream::start(Reply::Echo);
    let mut small = route("small", "small.test", backend(&[up.port()]));
    small["max_body_bytes"] = json!(1000);
    let gw = Gateway::start(io, &doc(vec![small]));
    (up, gw)
}

fn content_length_over_route_limit_is_413(io: IoMode) {
    let (up, gw) = limited_setup(io);
    // At the limit: proxied.
    let mut c = gw.client();
    c.send(b"POST /ok HTTP/1.1\r\nHost: small.test\r\nContent-Length: 1000\r\n\r\n");
    c.send(&pattern(1000));
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?} {}", r.text());
    assert_eq!(r.json()["body_len"], 1000);
    // Over it: refused before anything is sent upstream.
    let mut c = gw.client();
    c.send(b"POST /big HTTP/1.1\r\nHost: small.test\r\nContent-Length: 1001\r\n\r\n");
    let _ = c.try_send(&pattern(1001));
    let r = c.try_response().expect("no 413");
    r.assert_error(413, "body_too_large");
    assert!(r.closes(), "{r:?}");
    c.assert_closed();
    assert!(
        !up.wait_requests(2, Duration::from_millis(300)),
        "the upstream saw the request refused for its declared size"
    );
    gw.assert_serving();
}

fn chunked_body_over_route_limit_is_413(io: IoMode) {
    let (_up, gw) = limited_setup(io);
    let mut c = gw.client();
    c.send(b"POST /big HTTP/1.1\r\nHost: small.test\r\nTransfer-Encoding: chunked\r\n\r\n");
    let chunk = pattern(400);
    let mut refused_early = false;
    for _ in 0..5 {
        let mut piece = format!("{:x}\r\n", chunk.len()).into_bytes();
        piece.extend_from_slice(&chunk);
        piece.extend_from_slice(b"\r\n");
        if c.try_send(&piece).is_err() {
            refused_early = true;
            break;
        }
    }
    if !refused_early {
        let _ = c.try_send(b"0\r\n\r\n");
    }
    let r = c.try_response().expect("no 413");
    r.assert_error(413, "body_too_large");
    assert!(r.closes(), "{r:?}");
    c.assert_closed();
    gw.assert_serving();
}

fn listener_body_limit_applies_without_route_limit(io: IoMode) {
    let limits = gateway::config::HttpLimits {
        max_body_bytes: 2000,
        ..test_limits()
    };
    let (up, gw) = echo_setup(io, limits);
    let mut c = gw.client();
    c.send(b"POST / HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 3000\r\n\r\n");
    let _ = c.try_send(&pattern(3000));
    let r = c.try_response().expect("no 413");
    r.assert_error(413, "body_too_large");
    c.assert_closed();
    let mut c = gw.client();
    c.send(b"POST / HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 2000\r\n\r\n");
    c.send(&pattern(2000));
    assert_eq!(c.response().json()["body_len"], 2000);
    drop(up);
}

fn slowloris_client_gets_408(io: IoMode) {
    let limits = gateway::config::HttpLimits {
        header_timeout: Duration::from_millis(300),
        ..test_limits()
    };
    let (up, gw) = echo_setup(io, limits);
    let mut c = gw.client();
    let started = Instant::now();
    c.send(b"GET / HTTP/1.1\r\nHost: echo.test\r\n");
    // Dripping a byte every 50 ms must not extend the deadline.
    let mut refused = false;
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(50));
        if c.try_send(b"X").is_err() {
            refused = true;
            break;
        }
        if started.elapsed() > Duration::from_millis(900) {
            break;
        }
    }
    let _ = refused;
    let r = c.try_response().expect("no 408");
    let took = started.elapsed();
    r.assert_error(408, "request_timeout");
    assert!(r.closes(), "{r:?}");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(2000),
        "408 after {took:?}"
    );
    c.assert_closed();
    assert_eq!(up.requests(), 0);
    gw.assert_serving();
}

fn idle_keep_alive_connection_is_closed(io: IoMode) {
    let limits = gateway::config::HttpLimits {
        idle_timeout: Duration::from_millis(400),
        ..test_limits()
    };
    let (_up, gw) = echo_setup(io, limits);
    let mut c = gw.client();
    c.send(&get_request("echo.test", "/", &[]));
    assert_eq!(c.response().status, 200);
    let idle_from = Instant::now();
    c.assert_open_for(Duration::from_millis(150));
    c.assert_closed_within(Duration::from_secs(3));
    let idle = idle_from.elapsed();
    assert!(
        idle >= Duration::from_millis(350) && idle < Duration::from_secs(2),
        "closed after {idle:?} idle"
    );
    // A connection that never sends anything is closed the same way.
    let mut silent = gw.client();
    silent.assert_closed_within(Duration::from_secs(3));
    gw.assert_serving();
}

fn client_vanishing_mid_body_leaves_gateway_serving(io: IoMode) {
    let (up, gw) = echo_setup(io, test_limits());
    for _ in 0..3 {
        let mut c = gw.client();
        c.send(b"POST / HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 100000\r\n\r\n");
        c.send(&pattern(1000));
        drop(c);
    }
    gw.assert_serving();
    let r = gw.get("echo.test", "/after");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/after");
    drop(up);
}

/// A GET to an upstream answering `reply` gets 502 `bad_gateway`, and the gateway keeps serving.
fn assert_upstream_refused(io: IoMode, reply: Reply) {
    let up = Upstream::start(reply);
    let gw = Gateway::start(
        io,
        &doc(vec![route("bad", "bad.test", backend(&[up.port()]))]),
    );
    let mut c = gw.client();
    c.send(&get_request("bad.test", "/", &[]));
    let r = c.try_response().expect("no response");
    r.assert_error(502, "bad_gateway");
    gw.assert_serving();
}

fn upstream_ambiguous_framing_is_502(io: IoMode) {
    assert_upstream_refused(
        io,
        Reply::Fixed {
            status: 200,
            headers: vec![
                ("Content-Length".into(), "5".into()),
                ("Transfer-Encoding".into(), "chunked".into()),
            ],
            body: b"0\r\n\r\n".to_vec(),
        },
    );
}

fn upstream_garbage_response_is_502(io: IoMode) {
    assert_upstream_refused(io, Reply::Raw(b"NOT HTTP AT ALL\r\n\r\n".to_vec()));
}

fn upstream_closing_without_response_is_502(io: IoMode) {
    assert_upstream_refused(io, Reply::Raw(Vec::new()));
}

fn upstream_huge_response_head_is_502(io: IoMode) {
    assert_upstream_refused(
        io,
        Reply::Fixed {
            status: 200,
            headers: vec![("X-Huge".into(), "h".repeat(1024 * 1024))],
            body: b"x".to_vec(),
        },
    );
}

fn client_body_errors_do_not_open_the_circuit_breaker(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let breaker = json!({"max_errors": 2, "sample_interval": 60000, "retries": 0});
    let mut be = backend(&[up.port()]);
    be["client"] = breaker.clone();
    let mut cb = route("cb", "cb.test", be);
    cb["max_body_bytes"] = json!(100);
    let mut dead = backend(&[refused_port()]);
    dead["client"] = breaker;
    let gw = Gateway::start(io, &doc(vec![cb, route("dead", "dead.test", dead)]));

    // The breaker works: two upstream failures take the dead target out.
    gw.get("dead.test", "/").assert_error(502, "bad_gateway");
    gw.get("dead.test", "/").assert_error(502, "bad_gateway");
    gw.get("dead.test", "/")
        .assert_error(503, "service_unavailable");

    // Clients' broken bodies are the clients' fault, not the target's.
    for _ in 0..3 {
        let mut c = gw.client();
        let _ = c.try_send(
            b"POST / HTTP/1.1\r\nHost: cb.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n",
        );
        c.try_response()
            .expect("no 400")
            .assert_error(400, "bad_request");
        let mut c = gw.client();
        let mut big =
            b"POST / HTTP/1.1\r\nHost: cb.test\r\nTransfer-Encoding: chunked\r\n\r\nc8\r\n"
                .to_vec();
        big.extend_from_slice(&pattern(200));
        big.extend_from_slice(b"\r\n0\r\n\r\n");
        let _ = c.try_send(&big);
        c.try_response()
            .expect("no 413")
            .assert_error(413, "body_too_large");
    }
    let r = gw.get("cb.test", "/still-up");
    assert_eq!(
        r.status, 200,
        "the target was taken out for clients' errors: {r:?}"
    );
}
