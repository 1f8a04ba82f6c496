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

proptest::proptest! {
    /// `end_to_end` (which reads the Connection header once) keeps exactly the fields that
    /// `is_hop_by_hop` (which reads it per field) would keep, whatever Connection lists.
    #[test]
    fn end_to_end_agrees_with_is_hop_by_hop_field_by_field(
        connection in proptest::collection::vec(
            proptest::sample::select(vec!["keep-alive", "close", "Upgrade", "te", "X-A", "x-b", ""]),
            0..4,
        ),
        names in proptest::collection::vec(
            proptest::sample::select(vec!["X-A", "x-b", "X-C", "Close", "Keep-Alive", "TE", "Accept"]),
            0..6,
        ),
        with_connection in proptest::bool::ANY,
    ) {
        let mut buf = String::from("GET / HTTP/1.1\r\nHost: h\r\n");
        if with_connection {
            buf.push_str(&format!("Connection: {}\r\n", connection.join(", ")));
        }
        for n in &names {
            buf.push_str(&format!("{n}: v\r\n"));
        }
        buf.push_str("\r\n");
        let mut parser = HeadParser::default();
        let head = parser.parse_request(buf.as_bytes()).unwrap().unwrap();
        let headers = head.headers();
        let fast: Vec<&str> = headers.end_to_end().map(|h| h.name).collect();
        let slow: Vec<&str> = headers
            .iter()
            .filter(|h| !headers.is_hop_by_hop(h.name))
            .map(|h| h.name)
            .collect();
        proptest::prop_assert_eq!(fast, slow);
    }
}
