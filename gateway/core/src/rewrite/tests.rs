use std::net::IpAddr;

use super::*;
use crate::http::{HeadLimits, HeadParser, Method};

fn policy(forwarded_for: ForwardedFor) -> HeaderPolicy<'static> {
    HeaderPolicy {
        forwarded_for,
        request_id_header: "X-Request-Id",
    }
}

const RID: RequestId<'static> = RequestId {
    node: "n1",
    core: 2,
    n: 7,
};

fn upstream_head(raw: &str, added: Added<'_>, ff: ForwardedFor) -> String {
    let mut parser = HeadParser::new(HeadLimits::default());
    let head = parser.parse_request(raw.as_bytes()).unwrap().unwrap();
    let peer: IpAddr = "10.0.0.9".parse().unwrap();
    let req = UpstreamRequest {
        method: head.method_str(),
        root: "/api",
        path: "/v1",
        query: head.query(),
        host: b"backend:8080",
        client_host: head.authority().unwrap_or_default(),
        proto: "http",
        peer,
        request_id: RID,
        framing: head.framing(),
        credentials: None,
        added,
        cert_headers: None,
        client_cert: None,
        trace: None,
    };
    let mut out = Vec::new();
    write_request_head(&mut out, &req, &head.headers(), &policy(ff));
    String::from_utf8(out).unwrap()
}

#[test]
fn the_upstream_request_follows_the_policy_table() {
    let groups = [vec![AddedHeader::new("X-Internal-User", "gateway").unwrap()].into_boxed_slice()];
    let added = Added::new(&groups, 1);
    let got = upstream_head(
        "POST /v1?a=1 HTTP/1.1\r\nHost: api.example.com\r\nX-Internal-User: admin\r\n\
         Forwarded: for=1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\nX-Forwarded-For: 1.1.1.1\r\n\
         X-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Port: 1\r\n\
         X-Request-Id: forged\r\nX-Forwarded-For: 2.2.2.2, 3.3.3.3\r\nExpect: 100-continue\r\n\
         Connection: keep-alive, X-Hop\r\nX-Hop: 1\r\nProxy-Authorization: Basic eA==\r\n\
         Accept: */*\r\nContent-Length: 3\r\n\r\nabc",
        added,
        ForwardedFor::Append,
    );
    assert_eq!(
        got,
        "POST /api/v1?a=1 HTTP/1.1\r\nhost: backend:8080\r\naccept: */*\r\n\
         x-forwarded-for: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9\r\nx-real-ip: 10.0.0.9\r\n\
         x-forwarded-proto: http\r\nx-forwarded-host: api.example.com\r\n\
         X-Request-Id: n1-2-7\r\nX-Internal-User: gateway\r\ncontent-length: 3\r\n\r\n"
            .replace("accept: */*", "Accept: */*")
    );
    let replaced = upstream_head(
        "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n",
        Added::NONE,
        ForwardedFor::Replace,
    );
    assert!(
        replaced.contains("x-forwarded-for: 10.0.0.9\r\n") && !replaced.contains("1.1.1.1"),
        "{replaced}"
    );
}

#[test]
fn the_client_response_follows_the_policy_table() {
    let raw = "HTTP/1.1 200 OK\r\nX-Request-Id: upstream\r\nX-Frame-Options: ALLOW\r\n\
               RateLimit-Remaining: 999999\r\nContent-Type: text/plain\r\nConnection: close, X-Up\r\n\
               X-Up: 1\r\nContent-Length: 2\r\n\r\nok";
    let mut parser = HeadParser::new(HeadLimits::default());
    let head = parser
        .parse_response(raw.as_bytes(), Method::Get)
        .unwrap()
        .unwrap();
    let groups = [vec![AddedHeader::new("X-Frame-Options", "DENY").unwrap()].into_boxed_slice()];
    let resp = ClientResponse {
        request_id: RID,
        quota: None,
        added: Added::new(&groups, 1),
        chunked: false,
        close: false,
        http10: false,
    };
    let mut out = Vec::new();
    write_response_head(&mut out, &head, &resp, &policy(ForwardedFor::Append));
    let got = String::from_utf8(out).unwrap();
    assert_eq!(
        got,
        "HTTP/1.1 200 OK\r\nRateLimit-Remaining: 999999\r\nContent-Type: text/plain\r\n\
         Content-Length: 2\r\nX-Request-Id: n1-2-7\r\nX-Frame-Options: DENY\r\n\r\n"
    );
    // On a keyed route the gateway alone speaks for the quotas.
    let quota = QuotaState {
        throttling: crate::quota::Allowance::default(),
        daily: crate::quota::Allowance::default(),
        monthly: crate::quota::Allowance::default(),
        now_ms: 0,
        day_end_ms: 1000,
        month_end_ms: 1000,
        refused: None,
    };
    let keyed = ClientResponse {
        quota: Some(&quota),
        ..resp
    };
    let mut out = Vec::new();
    write_response_head(&mut out, &head, &keyed, &policy(ForwardedFor::Append));
    let got = String::from_utf8(out).unwrap();
    assert!(!got.contains("999999"), "{got}");
    assert_eq!(got.matches("RateLimit-Remaining").count(), 1, "{got}");
    // Only the quota fields are the gateway's: the upstream's other fields still go through.
    assert!(
        got.contains("\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"),
        "{got}"
    );
    // The connection's fate: `close` when closing, `keep-alive` for an HTTP/1.0 client kept.
    for (close, http10, field) in [
        (true, false, Some("connection: close")),
        (true, true, Some("connection: close")),
        (false, true, Some("connection: keep-alive")),
        (false, false, None),
    ] {
        let mut out = Vec::new();
        let resp = ClientResponse {
            close,
            http10,
            ..resp
        };
        write_response_head(&mut out, &head, &resp, &policy(ForwardedFor::Append));
        let got = String::from_utf8(out).unwrap();
        let fields: Vec<&str> = got
            .lines()
            .filter(|l| l.to_ascii_lowercase().starts_with("connection:"))
            .collect();
        assert_eq!(fields, field.into_iter().collect::<Vec<_>>(), "{got}");
    }
}

#[test]
fn added_fields_are_validated() {
    assert!(AddedHeader::new("X-Ok", "a value\twith tab").is_some());
    for (name, value) in [
        ("", "v"),
        ("X Bad", "v"),
        ("X:Bad", "v"),
        ("X-Ok", "a\r\nX-Evil: 1"),
        ("X-Ok", "nul\0"),
        ("X-Ok", " leading"),
        ("X-Ok", "caf\u{e9}"),
    ] {
        assert!(
            AddedHeader::new(name, value).is_none(),
            "{name:?}: {value:?}"
        );
    }
}

#[test]
fn decimal_and_ip_formatting() {
    for n in [0u64, 7, 10, 99, 1234567890, u64::MAX] {
        let mut out = Vec::new();
        push_u64(&mut out, n);
        assert_eq!(out, n.to_string().into_bytes());
    }
    for ip in [
        "127.0.0.1",
        "255.255.255.255",
        "0.0.0.0",
        "::1",
        "2001:db8::7",
    ] {
        let mut out = Vec::new();
        push_ip(&mut out, ip.parse().unwrap());
        assert_eq!(out, ip.as_bytes());
    }
}
