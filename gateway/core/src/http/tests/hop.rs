//! Hop-by-hop header rules.

use super::*;

#[test]
fn the_fixed_hop_by_hop_list_in_any_case() {
    for name in [
        "Connection",
        "keep-alive",
        "PROXY-CONNECTION",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "upgrade",
        "Proxy-Authenticate",
        "proxy-authorization",
    ] {
        assert!(is_always_hop_by_hop(name.as_bytes()), "{name}");
        assert!(is_hop_by_hop(name.as_bytes(), []), "{name}");
    }
    for name in [
        "Host",
        "Trailers",
        "Content-Length",
        "Authorization",
        "TEE",
        "T",
        "",
    ] {
        assert!(!is_always_hop_by_hop(name.as_bytes()), "{name}");
    }
}

#[test]
fn names_listed_in_connection_are_hop_by_hop() {
    let values: [&[u8]; 2] = [b"keep-alive, X-Secret", b" x-trace ,,close"];
    assert!(is_hop_by_hop(b"x-secret", values));
    assert!(is_hop_by_hop(b"X-TRACE", values));
    assert!(!is_hop_by_hop(b"X-Other", values));
    assert!(!connection_lists(values, b"X-Secre"));
    assert!(connection_lists(values, b"Close"));
}

#[test]
fn end_to_end_drops_hop_by_hop_fields_of_the_message() {
    let buf = b"GET / HTTP/1.1\r\nHost: h\r\nConnection: X-Internal, keep-alive\r\nKeep-Alive: timeout=5\r\nX-Internal: 1\r\nTE: trailers\r\nAccept: */*\r\nProxy-Authorization: Basic x\r\n\r\n";
    let mut parser = HeadParser::default();
    let head = parser.parse_request(buf).unwrap().unwrap();
    let kept: Vec<&str> = head.headers().end_to_end().map(|h| h.name).collect();
    assert_eq!(kept, vec!["Host", "Accept"]);
    assert!(head.headers().is_hop_by_hop("x-internal"));
    assert!(!head.headers().is_hop_by_hop("accept"));
}
