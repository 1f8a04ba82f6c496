//! Proxying over loopback with real clients and real upstreams: keep-alive, pipelining, bodies
//! in every framing, Expect, HTTP/1.0, forwarding headers, routing rewrites, API-key credential
//! wiping, load balancing, retries and upstream failures. Every test runs on both IO drivers.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::*;
use gateway::runtime::IoMode;
use serde_json::json;

both_drivers!(
    keep_alive_reuses_one_upstream_connection,
    pipelined_requests_are_answered_in_order,
    content_length_bodies_both_ways,
    chunked_request_body_is_forwarded_without_trailers,
    chunked_upload_with_curl,
    chunked_response_is_relayed_with_trailers,
    chunked_response_is_dechunked_for_http10_client,
    close_delimited_response_is_relayed_then_closed,
    connection_close_from_client,
    pipelined_requests_after_connection_close_are_ignored,
    custom_request_id_header,
    http10_client_without_keep_alive_is_closed,
    http10_client_with_keep_alive_is_kept,
    no_route_is_404_and_connection_kept,
    mock_backend_answers_without_upstream,
    hop_by_hop_headers_are_not_forwarded,
    forwarded_headers_and_request_id,
    host_is_rewritten_unless_keep_host,
    strip_path_and_backend_root,
    apikey_credentials_are_not_forwarded,
    round_robin_alternates_targets,
    refused_target_is_retried_on_the_other,
    connect_refused_is_502,
    slow_upstream_is_504,
    upstream_dying_mid_response_closes_client,
    stale_pooled_connections_are_retried,
    expect_100_continue_with_curl,
    expect_refused_by_key_without_reading_body,
    expect_refused_by_size_without_reading_body,
    head_request_is_relayed_without_body,
    bodiless_statuses_keep_the_connection_usable,
    upstream_connection_close_is_not_reused,
    absolute_form_request_target_is_routed,
    client_half_close_still_gets_its_response,
    hundred_pipelined_requests_in_one_write,
    repeated_response_headers_are_kept,
    concurrent_clients_on_two_cores,
    post_after_upstream_idle_close_succeeds,
);

fn echo_gateway(io: IoMode, up: &Upstream) -> Gateway {
    Gateway::start(
        io,
        &doc(vec![route("echo", "echo.test", backend(&[up.port()]))]),
    )
}

fn keep_alive_reuses_one_upstream_connection(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let gw = echo_gateway(io, &up);
    let script = r#"
import http.client, json, sys
c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=10)
out = []
for i in range(3):
    c.request('GET', '/k%d' % i, headers={'Host': 'echo.test'})
    r = c.getresponse()
    body = r.read()
    out.append({'status': r.status, 'port': c.sock.getsockname()[1], 'echo': json.loads(body)})
print(json.dumps(out))
"#;
    let out: serde_json::Value =
        serde_json::from_str(&python(script, &[&gw.addr.port().to_string()])).unwrap();
    let out = out.as_array().unwrap();
    assert_eq!(out.len(), 3);
    for (i, r) in out.iter().enumerate() {
        assert_eq!(r["status"], 200, "{r}");
        assert_eq!(r["port"], out[0]["port"], "python reconnected: {out:?}");
        assert_eq!(r["echo"]["path"], format!("/k{i}"));
        assert_eq!(r["echo"]["conn"], 1, "upstream connection not reused: {r}");
        assert_eq!(r["echo"]["conn_request"], i + 1);
    }
    assert_eq!(up.connections(), 1);
    assert_eq!(up.requests(), 3);
}

fn pipelined_requests_are_answered_in_order(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let gw = echo_gateway(io, &up);
    let mut c = gw.client();
    c.send(
        b"GET /one HTTP/1.1\r\nHost: echo.test\r\n\r\n\
          POST /two HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 5\r\n\r\nhello\
          GET /three?x=3 HTTP/1.1\r\nHost: echo.test\r\n\r\n",
    );
    let mut ids = Vec::new();
    for (path, method, body) in [
        ("/one", "GET", ""),
        ("/two", "POST", "hello"),
        ("/three", "GET", ""),
    ] {
        let r = c.response();
        assert_eq!(r.status, 200, "{r:?}");
        let echo = r.json();
        assert_eq!(echo["path"], path);
        assert_eq!(echo["method"], method);
        assert_eq!(echo["body"], body);
        ids.push(r.header("x-request-id").unwrap().to_owned());
    }
    ids.dedup();
    assert_eq!(ids.len(), 3, "request ids repeat: {ids:?}");
    // Still open afterwards.
    c.send(&get_request("echo.test", "/four", &[]));
    assert_eq!(c.response().json()["path"], "/four");
}

fn content_length_bodies_both_ways(io: IoMode) {
    let up = Upstream::start(Reply::Script(|r| {
        if r.path == "/big" {
            Reply::Big { len: 300_000 }
        } else {
            Reply::Echo
        }
    }));
    let gw = echo_gateway(io, &up);
    let mut c = gw.client();
    let body = pattern(100_000);
    c.send(b"POST /upload HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 100000\r\n\r\n");
    c.send(&body);
    let r = c.response();
    assert_eq!(r.status, 200);
    let echo = r.json();
    assert_eq!(echo["body_len"], 100_000);
    assert_eq!(echo["body_fnv"], fnv(&body));
    assert_eq!(echo["chunked"], false);
    assert_eq!(
        echo_header(&echo, "content-length").as_deref(),
        Some("100000")
    );
    assert_eq!(echo_header(&echo, "transfer-encoding"), None);

    c.send(&get_request("echo.test", "/big", &[]));
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("300000"));
    assert!(!r.chunked);
    assert!(r.body == pattern(300_000), "response body differs");
}

/// Request trailers never go upstream (docs/security.md): a trailer could carry any field past
/// the header policy. Framing fields in a trailer section are refused outright (400).
fn chunked_request_body_is_forwarded_without_trailers(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let gw = echo_gateway(io, &up);
    let mut c = gw.client();
    c.send(
        b"POST /chunks HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked\r\n\
          Trailer: X-Digest\r\n\r\n5\r\nhello\r\n",
    );
    std::thread::sleep(Duration::from_millis(30));
    c.send(b"7;ext=1\r\n, world\r\n0\r\nX-Digest: abc123\r\nX-Other: 5\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?}");
    let echo = r.json();
    assert_eq!(echo["chunked"], true);
    assert_eq!(echo["body"], "hello, world");
    assert_eq!(echo["body_len"], 12);
    assert_eq!(echo["trailers"], json!([]));
    assert_eq!(echo_header(&echo, "content-length"), None);
    // The connection is usable after a chunked body.
    c.send(&get_request("echo.test", "/after", &[]));
    assert_eq!(c.response().json()["path"], "/after");
    // A Content-Length in the trailer section: 400, and the connection is closed.
    let mut c = gw.client();
    c.send(
        b"POST /chunks HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n0\r\nContent-Length: 5\r\n\r\n",
    );
    let r = c.response();
    assert_eq!(r.status, 400, "{r:?}");
    c.assert_closed();
}

fn chunked_upload_with_curl(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let gw = echo_gateway(io, &up);
    let dir = TempDir::new("curl-chunked");
    let file = dir.path().join("body.bin");
    let body = pattern(250_000);
    std::fs::write(&file, &body).unwrap();
    let url = format!("http://{}/upload", gw.addr);
    let data = format!("@{}", file.display());
    let out = curl(&[
        "-H",
        "Host: echo.test",
        "-H",
        "Transfer-Encoding: chunked",
        "-H",
        "Expect:",
        "--data-binary",
        &data,
        &url,
    ]);
    assert!(out.status.success(), "curl: {}", out.stderr);
    let echo: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["chunked"], true);
    assert_eq!(echo["body_len"], 250_000);
    assert_eq!(echo["body_fnv"], fnv(&body));
}

fn chunks_upstream() -> Upstream {
    Upstream::start(Reply::Chunked {
        chunks: vec![b"hello ".to_vec(), b"chunked ".to_vec(), b"world".to_vec()],
        trailers: vec![("X-Sum".to_owned(), "42".to_owned())],
        pause: Duration::from_millis(20),
    })
}

fn chunked_response_is_relayed_with_trailers(io: IoMode) {
    let up = chunks_upstream();
    let gw = echo_gateway(io, &up);
    let mut c = gw.client();
    for _ in 0..2 {
        c.send(&get_request("echo.test", "/", &[]));
        let r = c.response();
        assert_eq!(r.status, 200);
        assert!(r.chunked, "{r:?}");
        assert_eq!(r.header("content-length"), None);
        assert_eq!(r.text(), "hello chunked world");
        assert_eq!(r.trailers, vec![("X-Sum".to_owned(), "42".to_owned())]);
        assert!(!r.closes());
    }
    assert_eq!(up.connections(), 1);
}

fn chunked_response_is_dechunked_for_http10_client(io: IoMode) {
    let up = chunks_upstream();
    let gw = echo_gateway(io, &up);
    let mut c = gw.client();
    c.send(b"GET / HTTP/1.0\r\nHost: echo.test\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(!r.chunked, "chunked sent to an HTTP/1.0 client: {r:?}");
    assert_eq!(r.header("transfer-encoding"), None);
    assert!(r.until_close, "{r:?}");
    assert_eq!(r.text(), "hello chunked world");
    c.assert_closed();
}

fn close_delimited_response_is_relayed_then_closed(io: IoMode) {
    let body = pattern(40_000);
    let up = Upstream::start(Reply::CloseDelimited { body: body.clone() });
    let gw = echo_gateway(io, &up);
    let mut c = gw.client();
    c.send(&get_request("echo.test", "/", &[]));
    let r = c.response();
    assert_eq!(r.status, 200);
    assert!(r.body == body, "body differs ({} bytes)", r.body.len());
    assert!(r.until_close || r.closes(), "{r:?}");
    c.assert_closed();
    gw.assert_serving();
}

fn pipelined_requests_after_connection_close_are_ignored(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let gw = echo_gateway(io, &up);
    let mut c = gw.client();
    let mut both = get_request("echo.test", "/last", &["Connection: close"]);
    both.extend_from_slice(&get_request("echo.test", "/ignored", &[]));
    c.send(&both);
    let r = c.response();
    assert_eq!(r.json()["path"], "/last");
    assert!(r.closes(), "{r:?}");
    c.assert_closed();
    assert!(!up.wait_requests(2, Duration::from_millis(200)));
}

fn custom_request_id_header(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let limits = gateway::config::HttpLimits {
        request_id_header: "X-Trace-Id".to_owned(),
        ..test_limits()
    };
    let gw = Gateway::start_with(
        io,
        &doc(vec![route("echo", "echo.test", backend(&[up.port()]))]),
        limits,
        1,
    );
    let r = gw.get("echo.test", "/");
    let echo = r.json();
    let id = echo_header(&echo, "x-trace-id").expect("no x-trace-id upstream");
    assert_eq!(r.header("x-trace-id"), Some(id.as_str()));
    assert_eq!(echo_header(&echo, "x-request-id"), None);
    assert_eq!(r.header("x-request-id"), None);
}

fn connection_close_from_client(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let gw = echo_gateway(io, &up);
    let mut c = gw.client();
    c.send(&get_request("echo.test", "/bye", &["Connection: close"]));
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/bye");
    assert!(r.closes(), "no connection: close in {r:?}");
    c.assert_closed();
    // The client's Connection header is hop-by-hop: the pooled upstream connection stays.
    assert_eq!(echo_header(&r.json(), "connection"), None);
    let again = gw.get("echo.test", "/again");
    assert_eq!(again.json()["conn"], 1);
}

fn http10_client_without_keep_alive_is_closed(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let gw = echo_gateway(io, &up);
    let script = r#"
import http.client, json, sys
class C(http.client.HTTPConnection):
    _http_vsn = 10
    _http_vsn_str = 'HTTP/1.0'
c = C('127.0.0.1', int(sys.argv[1]), timeout=10)
c.request('GET', '/ten', headers={'Host': 'echo.test'})
r = c.getresponse()
body = r.read()
print(json.dumps({'status': r.status, 'will_close': r.will_close, 'echo': json.loads(body)}))
"#;
    let out: serde_json::Value =
        serde_json::from_str(&python(script, &[&gw.addr.port().to_string()])).unwrap();
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["will_close"], true, "{out}");
    assert_eq!(out["echo"]["path"], "/ten");
    // Upstream, the gateway speaks HTTP/1.1.
    assert_eq!(out["echo"]["version"], "HTTP/1.1");

    let mut c = gw.client();
    c.send(b"GET /raw HTTP/1.0\r\nHost: echo.test\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/raw");
    c.assert_closed();
}

fn http10_client_with_keep_alive_is_kept(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let gw = echo_gateway(io, &up);
    let mut c = gw.client();
    for path in ["/a", "/b"] {
        c.send(
            format!("GET {path} HTTP/1.0\r\nHost: echo.test\r\nConnection: keep-alive\r\n\r\n")
                .as_bytes(),
        );
        let r = c.response();
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["path"], path);
        assert!(
            r.header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("keep-alive")),
            "{r:?}"
        );
        assert!(r.header("content-length").is_some(), "{r:?}");
    }
    c.send(b"GET /c HTTP/1.0\r\nHost: echo.test\r\n\r\n");
    assert_eq!(c.response().json()["path"], "/c");
    c.assert_closed();
}

fn no_route_is_404_and_connection_kept(io: IoMode) {
    let gw = Gateway::start(io, &doc(vec![]));
    let mut c = gw.client();
    c.send(&get_request("nowhere.test", "/x", &[]));
    let r = c.response();
    r.assert_error(404, "route_not_found");
    c.send(&get_request("ok.test", "/", &[]));
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"ok");
}

fn mock_backend_answers_without_upstream(io: IoMode) {
    let gw = Gateway::start(
        io,
        &doc(vec![route(
            "mock",
            "mock.test",
            json!({"mock": {"status": 201, "headers": {"x-mock": "yes"}, "body": "{\"made\":true}"}}),
        )]),
    );
    let mut c = gw.client();
    c.send(b"POST /m HTTP/1.1\r\nHost: mock.test\r\nContent-Length: 3\r\n\r\nabc");
    let r = c.response();
    assert_eq!(r.status, 201);
    assert_eq!(r.header("x-mock"), Some("yes"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), json!({"made": true}));
    c.send(&get_request("mock.test", "/m", &[]));
    assert_eq!(c.response().status, 201);
}

fn hop_by_hop_headers_are_not_forwarded(io: IoMode) {
    let up = Upstream::start(Reply::Script(|r| {
        if r.path == "/down" {
            Reply::Fixed {
                status: 200,
                headers: vec![
                    ("Connection".into(), "X-Up-Hop".into()),
                    ("X-Up-Hop".into(), "1".into()),
                    ("Keep-Alive".into(), "timeout=99".into()),
                    ("Proxy-Authenticate".into(), "Basic".into()),
                    ("Upgrade".into(), "h2c".into()),
                    ("X-Up-End".into(), "kept".into()),
                ],
                body: b"down".to_vec(),
            }
        } else {
            Reply::Echo
        }
    }));
    let gw = echo_gateway(io, &up);
    let mut c = gw.client();
    c.send(&get_request(
        "echo.test",
        "/up",
        &[
            "Connection: keep-alive, X-Secret-Hop",
            "X-Secret-Hop: 1",
            "Keep-Alive: timeout=5",
            "TE: trailers",
            "Upgrade: websocket",
            "Proxy-Authorization: Basic dXNlcjpwYXNz",
            "Proxy-Connection: keep-alive",
            "X-End-To-End: yes",
        ],
    ));
    let r = c.response();
    assert_eq!(r.status, 200);
    let echo = r.json();
    for name in [
        "x-secret-hop",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
        "proxy-connection",
    ] {
        assert_eq!(
            echo_header(&echo, name),
            None,
            "{name} was forwarded upstream"
        );
    }
    // A Connection header upstream may only say keep-alive or close, never list client options.
    for v in echo_header_values(&echo, "connection") {
        assert!(
            !v.to_ascii_lowercase().contains("x-secret-hop"),
            "connection: {v}"
        );
    }
    assert_eq!(echo_header(&echo, "x-end-to-end").as_deref(), Some("yes"));

    c.send(&get_request("echo.test", "/down", &[]));
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"down");
    for name in ["x-up-hop", "keep-alive", "proxy-authenticate", "upgrade"] {
        assert_eq!(
            r.header(name),
            None,
            "{name} was relayed to the client: {r:?}"
        );
    }
    assert!(
        r.header("connection")
            .is_none_or(|v| !v.contains("X-Up-Hop")),
        "{r:?}"
    );
    assert_eq!(r.header("x-up-end"), Some("kept"));
}

fn forwarded_headers_and_request_id(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let gw = Gateway::start(
        io,
        &doc(vec![route("fwd", "fwd.test", backend(&[up.port()]))]),
    );
    let mut c = gw.client();
    c.send(&get_request(
        "fwd.test",
        "/f",
        &[
            "X-Forwarded-For: 203.0.113.7",
            "X-Forwarded-Proto: https",
            "X-Forwarded-Host: evil.test",
            "X-Request-Id: client-chosen",
        ],
    ));
    let r = c.response();
    assert_eq!(r.status, 200);
    let echo = r.json();
    assert_eq!(
        echo_header(&echo, "x-forwarded-for").as_deref(),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(
        echo_header(&echo, "x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        echo_header(&echo, "x-forwarded-host").as_deref(),
        Some("fwd.test")
    );
    let sent = echo_header(&echo, "x-request-id").expect("no request id upstream");
    assert!(!sent.is_empty());
    assert_ne!(sent, "client-chosen", "the client chose the request id");
    assert_eq!(r.header_count("x-request-id"), 1, "{r:?}");
    assert_eq!(r.header("x-request-id"), Some(sent.as_str()));

    c.send(&get_request("fwd.test", "/g", &[]));
    let r2 = c.response();
    let echo2 = r2.json();
    assert_eq!(
        echo_header(&echo2, "x-forwarded-for").as_deref(),
        Some("127.0.0.1")
    );
    let second = echo_header(&echo2, "x-request-id").unwrap();
    assert_ne!(second, sent, "request ids must differ");
    assert_eq!(r2.header("x-request-id"), Some(second.as_str()));
}

fn host_is_rewritten_unless_keep_host(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let mut keep = route("keep", "keep.test", backend(&[up.port()]));
    keep["keep_host"] = json!(true);
    let gw = Gateway::start(
        io,
        &doc(vec![
            route("rewrite", "rewrite.test", backend(&[up.port()])),
            keep,
        ]),
    );
    let target = format!("127.0.0.1:{}", up.port());
    let r = gw.get("rewrite.test", "/");
    assert_eq!(echo_header(&r.json(), "host"), Some(target.clone()));
    // A Host with a port routes like the bare name.
    let r = gw.get("rewrite.test:8080", "/");
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(echo_header(&r.json(), "host"), Some(target));
    let r = gw.get("keep.test", "/");
    assert_eq!(echo_header(&r.json(), "host").as_deref(), Some("keep.test"));
    let r = gw.get("keep.test:8443", "/");
    assert_eq!(
        echo_header(&r.json(), "host").as_deref(),
        Some("keep.test:8443")
    );
}

fn strip_path_and_backend_root(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let mut rooted = backend(&[up.port()]);
    rooted["root"] = json!("/base");
    let strip = route("strip", "strip.test/api", rooted);
    let mut keep = route("nostrip", "nostrip.test/api", backend(&[up.port()]));
    keep["frontend"]["strip_path"] = json!(false);
    let gw = Gateway::start(io, &doc(vec![strip, keep]));

    let echo = gw.get("strip.test", "/api/users?x=1&y=2").json();
    assert_eq!(echo["path"], "/base/users");
    assert_eq!(echo["query"], "x=1&y=2");
    let echo = gw.get("nostrip.test", "/api/users?x=1").json();
    assert_eq!(echo["path"], "/api/users");
    assert_eq!(echo["query"], "x=1");
    // Outside the route's path prefix: no route.
    gw.get("strip.test", "/other")
        .assert_error(404, "route_not_found");
}

fn keyed_doc(up: &Upstream) -> serde_json::Value {
    let mut keyed = route("keyed", "keyed.test", backend(&[up.port()]));
    keyed["plugins"] = json!([{"plugin": "cp:otoroshi.next.plugins.ApikeyCalls", "config": {}}]);
    let mut d = doc(vec![keyed]);
    d["apiKeys"] = json!([{
        "clientId": "e2e-client",
        "clientSecret": "e2e-secret-0123456789",
        "clientName": "e2e",
        "authorizedEntities": ["route_keyed"],
    }]);
    d
}

fn apikey_credentials_are_not_forwarded(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let gw = Gateway::start(io, &keyed_doc(&up));
    let mut c = gw.client();
    c.send(&get_request(
        "keyed.test",
        "/k",
        &[
            "Otoroshi-Client-Id: e2e-client",
            "Otoroshi-Client-Secret: e2e-secret-0123456789",
            "X-Other: kept",
        ],
    ));
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?} {}", r.text());
    let echo = r.json();
    assert_eq!(echo_header(&echo, "otoroshi-client-id"), None);
    assert_eq!(echo_header(&echo, "otoroshi-client-secret"), None);
    assert_eq!(echo_header(&echo, "x-other").as_deref(), Some("kept"));

    // base64("e2e-client:e2e-secret-0123456789")
    c.send(&get_request(
        "keyed.test",
        "/b",
        &["Authorization: Basic ZTJlLWNsaWVudDplMmUtc2VjcmV0LTAxMjM0NTY3ODk="],
    ));
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?} {}", r.text());
    assert_eq!(echo_header(&r.json(), "authorization"), None);

    c.send(&get_request("keyed.test", "/none", &[]));
    c.response().assert_error(400, "no_api_key");
    assert_eq!(up.requests(), 2);
}

fn round_robin_alternates_targets(io: IoMode) {
    let a = Upstream::named("a", Reply::Echo);
    let b = Upstream::named("b", Reply::Echo);
    let gw = Gateway::start(
        io,
        &doc(vec![route("lb", "lb.test", backend(&[a.port(), b.port()]))]),
    );
    let mut c = gw.client();
    let mut servers = Vec::new();
    for _ in 0..6 {
        c.send(&get_request("lb.test", "/", &[]));
        let r = c.response();
        assert_eq!(r.status, 200);
        servers.push(r.json()["server"].as_str().unwrap().to_owned());
    }
    for pair in servers.windows(2) {
        assert_ne!(
            pair[0], pair[1],
            "round robin did not alternate: {servers:?}"
        );
    }
    assert_eq!(a.requests(), 3);
    assert_eq!(b.requests(), 3);
}

fn refused_target_is_retried_on_the_other(io: IoMode) {
    let b = Upstream::named("b", Reply::Echo);
    let mut be = backend(&[refused_port(), b.port()]);
    be["client"] = json!({"retries": 1, "retry_initial_delay": 10});
    let gw = Gateway::start(io, &doc(vec![route("lb", "lb.test", be)]));
    for i in 0..6 {
        let r = gw.get("lb.test", &format!("/{i}"));
        assert_eq!(r.status, 200, "request {i}: {r:?} {}", r.text());
        assert_eq!(r.json()["server"], "b");
    }
    // Nothing was sent to the refusing target, so a POST is retried as well.
    let mut c = gw.client();
    c.send(b"POST /p HTTP/1.1\r\nHost: lb.test\r\nContent-Length: 4\r\n\r\nbody");
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?} {}", r.text());
    assert_eq!(r.json()["body"], "body");
}

fn connect_refused_is_502(io: IoMode) {
    let gw = Gateway::start(
        io,
        &doc(vec![route("dead", "dead.test", backend(&[refused_port()]))]),
    );
    let started = Instant::now();
    let r = gw.get("dead.test", "/");
    r.assert_error(502, "bad_gateway");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    gw.assert_serving();
}

fn slow_upstream_is_504(io: IoMode) {
    let up = Upstream::start(Reply::Slow {
        delay: Duration::from_secs(3),
    });
    let mut be = backend(&[up.port()]);
    be["client"] = json!({"call_timeout": 300, "retries": 0});
    let gw = Gateway::start(io, &doc(vec![route("slow", "slow.test", be)]));
    let mut c = gw.client();
    let started = Instant::now();
    c.send(b"POST / HTTP/1.1\r\nHost: slow.test\r\nContent-Length: 1\r\n\r\nx");
    c.response().assert_error(504, "gateway_timeout");
    assert!(started.elapsed() < Duration::from_millis(2500));
    // An idempotent request times out the same way.
    let started = Instant::now();
    let r = gw.get("slow.test", "/");
    let took = started.elapsed();
    r.assert_error(504, "gateway_timeout");
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(2500),
        "504 after {took:?}"
    );
    gw.assert_serving();
}

fn upstream_dying_mid_response_closes_client(io: IoMode) {
    let up = Upstream::start(Reply::Script(|r| {
        if r.path == "/die" {
            Reply::Die { declared: 200_000 }
        } else {
            Reply::Echo
        }
    }));
    let gw = echo_gateway(io, &up);
    let mut c = gw.client();
    c.set_read_timeout(Duration::from_secs(5));
    c.send(&get_request("echo.test", "/die", &[]));
    let started = Instant::now();
    let mut got = 0usize;
    let res = c.response_streamed(&mut |b| got += b.len());
    match res {
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
            ),
            "the client connection hung or failed oddly: {e} after {:?}",
            started.elapsed()
        ),
        Ok(r) => panic!("a truncated body was relayed as complete: {r:?}"),
    }
    assert!(got <= 100_000, "more bytes than the upstream sent: {got}");
    // The same upstream, a new connection: fine.
    let r = gw.get("echo.test", "/fine");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/fine");
}

fn stale_pooled_connections_are_retried(io: IoMode) {
    // The upstream closes every connection after its response without saying so.
    let up = Upstream::start_with("stale", Reply::Echo, true, None);
    let gw = echo_gateway(io, &up);
    let mut c = gw.client();
    for i in 0..10 {
        c.send(&get_request("echo.test", &format!("/s{i}"), &[]));
        let r = c.response();
        assert_eq!(r.status, 200, "request {i}: {r:?} {}", r.text());
        assert_eq!(r.json()["path"], format!("/s{i}"));
    }
    assert_eq!(up.requests(), 10);
    assert_eq!(up.connections(), 10);

    // The upstream closes keep-alive connections idle for 100 ms, also without saying so.
    let idle = Upstream::start_with("idle", Reply::Echo, false, Some(Duration::from_millis(100)));
    let gw = echo_gateway(io, &idle);
    let mut c = gw.client();
    for i in 0..6 {
        c.send(&get_request("echo.test", &format!("/i{i}"), &[]));
        let r = c.response();
        assert_eq!(r.status, 200, "request {i}: {r:?} {}", r.text());
        std::thread::sleep(Duration::from_millis(if i % 2 == 0 { 130 } else { 90 }));
    }
    assert_eq!(idle.requests(), 6);
}

fn expect_100_continue_with_curl(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let gw = echo_gateway(io, &up);
    let dir = TempDir::new("curl-expect");
    let file = dir.path().join("body.bin");
    let body = pattern(300_000);
    std::fs::write(&file, &body).unwrap();
    let url = format!("http://{}/expect", gw.addr);
    let data = format!("@{}", file.display());
    let started = Instant::now();
    let out = curl(&[
        "-v",
        "-H",
        "Host: echo.test",
        "-H",
        "Expect: 100-continue",
        "--expect100-timeout",
        "20",
        "--data-binary",
        &data,
        &url,
    ]);
    assert!(out.status.success(), "curl: {}", out.stderr);
    assert!(
        out.stderr.contains("< HTTP/1.1 100 Continue"),
        "no 100 Continue: {}",
        out.stderr
    );
    assert!(out.stderr.contains("< HTTP/1.1 200"), "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(15));
    let echo: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(echo["body_len"], 300_000);
    assert_eq!(echo["body_fnv"], fnv(&body));
    // The gateway answers the Expect itself: the upstream gets no Expect header.
    assert_eq!(echo_header(&echo, "expect"), None);
}

fn expect_refused_by_key_without_reading_body(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let gw = Gateway::start(io, &keyed_doc(&up));
    let mut c = gw.client();
    c.set_read_timeout(Duration::from_secs(3));
    c.send(
        b"POST /k HTTP/1.1\r\nHost: keyed.test\r\nExpect: 100-continue\r\n\
          Content-Length: 10000000\r\n\r\n",
    );
    let r = c
        .try_response()
        .expect("no answer before the body was sent");
    assert!(
        r.interim.is_empty(),
        "100 Continue sent for a refused request: {r:?}"
    );
    r.assert_error(400, "no_api_key");
    assert!(r.closes(), "{r:?}");
    c.assert_closed();
    assert!(!up.wait_requests(1, Duration::from_millis(300)));
}

fn expect_refused_by_size_without_reading_body(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let mut small = route("small", "small.test", backend(&[up.port()]));
    small["max_body_bytes"] = json!(1000);
    let gw = Gateway::start(io, &doc(vec![small]));
    let mut c = gw.client();
    c.set_read_timeout(Duration::from_secs(3));
    c.send(
        b"POST /big HTTP/1.1\r\nHost: small.test\r\nExpect: 100-continue\r\n\
          Content-Length: 5000\r\n\r\n",
    );
    let r = c
        .try_response()
        .expect("no answer before the body was sent");
    assert!(
        r.interim.is_empty(),
        "100 Continue sent for a body over the limit: {r:?}"
    );
    r.assert_error(413, "body_too_large");
    c.assert_closed();
    assert!(
        !up.wait_requests(1, Duration::from_millis(300)),
        "the upstream saw a request refused for its size"
    );
}

fn head_request_is_relayed_without_body(io: IoMode) {
    let up = Upstream::start(Reply::Fixed {
        status: 200,
        headers: vec![("Content-Type".into(), "text/plain".into())],
        body: b"twelve bytes".to_vec(),
    });
    let gw = echo_gateway(io, &up);
    let mut c = gw.client();
    c.send(b"HEAD /h HTTP/1.1\r\nHost: echo.test\r\n\r\n");
    let r = c.head_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("12"));
    // No body bytes may follow: the next response must start right away.
    c.send(&get_request("echo.test", "/g", &[]));
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, b"twelve bytes");
    assert_eq!(
        up.connections(),
        1,
        "the upstream connection was not reused after HEAD"
    );
}

fn bodiless_statuses_keep_the_connection_usable(io: IoMode) {
    let up = Upstream::start(Reply::Script(|r| match r.path.as_str() {
        "/204" => Reply::Fixed {
            status: 204,
            headers: vec![],
            body: vec![],
        },
        "/304" => Reply::Fixed {
            status: 304,
            headers: vec![("ETag".into(), "\"v1\"".into())],
            body: vec![],
        },
        _ => Reply::Echo,
    }));
    let gw = echo_gateway(io, &up);
    let mut c = gw.client();
    for path in ["/204", "/304", "/204"] {
        c.send(&get_request("echo.test", path, &[]));
        let r = c.response();
        assert_eq!(r.status.to_string(), path[1..], "{r:?}");
        assert!(r.body.is_empty());
        assert!(!r.chunked, "{r:?}");
    }
    c.send(&get_request("echo.test", "/after", &[]));
    assert_eq!(c.response().json()["path"], "/after");
    assert_eq!(up.connections(), 1);
}

fn upstream_connection_close_is_not_reused(io: IoMode) {
    // The upstream says `Connection: close` but leaves the socket open: the gateway must still
    // not send another request on it.
    let up = Upstream::start(Reply::Fixed {
        status: 200,
        headers: vec![("Connection".into(), "close".into())],
        body: b"once".to_vec(),
    });
    let gw = echo_gateway(io, &up);
    let mut c = gw.client();
    for _ in 0..3 {
        c.send(&get_request("echo.test", "/", &[]));
        let r = c.response();
        assert_eq!(r.status, 200);
        assert_eq!(r.body, b"once");
    }
    assert_eq!(up.connections(), 3);
}

fn absolute_form_request_target_is_routed(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let gw = echo_gateway(io, &up);
    let mut c = gw.client();
    c.send(b"GET http://echo.test/abs?q=1 HTTP/1.1\r\nHost: echo.test\r\n\r\n");
    let r = c.response();
    assert_eq!(r.status, 200, "{r:?} {}", r.text());
    let echo = r.json();
    // Upstream, the target is in origin form.
    assert_eq!(echo["target"], "/abs?q=1");
}

fn client_half_close_still_gets_its_response(io: IoMode) {
    let up = Upstream::start(Reply::Slow {
        delay: Duration::from_millis(100),
    });
    let gw = echo_gateway(io, &up);
    let mut c = gw.client();
    c.send(&get_request("echo.test", "/half", &[]));
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let r = c.response();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/half");
    c.assert_closed();
}

fn hundred_pipelined_requests_in_one_write(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let gw = echo_gateway(io, &up);
    let mut c = gw.client();
    let mut all = Vec::new();
    for i in 0..100 {
        if i % 3 == 0 {
            all.extend_from_slice(
                format!(
                    "POST /p{i} HTTP/1.1\r\nHost: echo.test\r\nContent-Length: {}\r\n\r\nbody{i}",
                    4 + i.to_string().len()
                )
                .as_bytes(),
            );
        } else if i % 3 == 1 {
            all.extend_from_slice(
                format!("POST /p{i} HTTP/1.1\r\nHost: echo.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n").as_bytes(),
            );
        } else {
            all.extend_from_slice(&get_request("echo.test", &format!("/p{i}"), &[]));
        }
    }
    c.send(&all);
    for i in 0..100 {
        let r = c.response();
        assert_eq!(r.status, 200, "response {i}: {r:?}");
        let echo = r.json();
        assert_eq!(echo["path"], format!("/p{i}"), "out of order at {i}");
        let body = match i % 3 {
            0 => format!("body{i}"),
            1 => "abc".to_owned(),
            _ => String::new(),
        };
        assert_eq!(echo["body"], body, "response {i}");
    }
}

fn repeated_response_headers_are_kept(io: IoMode) {
    let up = Upstream::start(Reply::Fixed {
        status: 200,
        headers: vec![
            ("Set-Cookie".into(), "a=1; Path=/".into()),
            ("Set-Cookie".into(), "b=2; Path=/".into()),
            ("X-Multi".into(), "one".into()),
            ("X-Multi".into(), "two".into()),
        ],
        body: b"cookies".to_vec(),
    });
    let gw = echo_gateway(io, &up);
    let r = gw.get("echo.test", "/");
    assert_eq!(r.status, 200);
    let cookies: Vec<_> = r
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2; Path=/"]);
    assert_eq!(r.header_count("x-multi"), 2);
}

fn concurrent_clients_on_two_cores(io: IoMode) {
    let up = Upstream::start(Reply::Echo);
    let gw = Gateway::start_with(
        io,
        &doc(vec![route("echo", "echo.test", backend(&[up.port()]))]),
        test_limits(),
        2,
    );
    let addr = gw.addr;
    let workers: Vec<_> = (0..16)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for i in 0..25 {
                    let body = format!("t{t}-r{i}");
                    c.send(
                        format!(
                            "POST /t{t}/r{i} HTTP/1.1\r\nHost: echo.test\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                        .as_bytes(),
                    );
                    let r = c.response();
                    assert_eq!(r.status, 200);
                    let echo = r.json();
                    assert_eq!(echo["path"], format!("/t{t}/r{i}"));
                    assert_eq!(echo["body"], body);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(up.requests(), 16 * 25);
    assert!(
        up.connections() <= 16,
        "{} upstream connections for 16 clients",
        up.connections()
    );
}

fn post_after_upstream_idle_close_succeeds(io: IoMode) {
    // Idle pooled connections the upstream closed are noticed before they are used again.
    let up = Upstream::start_with("idle", Reply::Echo, false, Some(Duration::from_millis(100)));
    let gw = echo_gateway(io, &up);
    let mut c = gw.client();
    for i in 0..3 {
        c.send(
            format!("POST /p{i} HTTP/1.1\r\nHost: echo.test\r\nContent-Length: 4\r\n\r\nbody")
                .as_bytes(),
        );
        let r = c.response();
        assert_eq!(r.status, 200, "request {i}: {r:?} {}", r.text());
        assert_eq!(r.json()["body"], "body");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(up.connections(), 3);
}
