use gateway_core::http::{HeadLimits, HeadParser};

use super::*;

fn head(raw: &[u8]) -> Head {
    let mut parser = HeadParser::new(HeadLimits::default());
    let parsed = parser.parse_request(raw).unwrap().unwrap();
    Head::new(&parsed, "127.0.0.1:1234".parse().unwrap())
}

#[test]
fn head_is_copied_with_decoded_path_query_and_lower_case_names() {
    let h = head(
        b"GET /api/entities/apikey/a%20b/history?x=1&y=caf%C3%A9+au+lait&flag HTTP/1.1\r\n\
          Host: x\r\nX-Thing:  spaced  \r\nAuthorization: Bearer t\r\n\r\n",
    );
    assert_eq!(h.method, "GET");
    assert_eq!(h.path, "/api/entities/apikey/a b/history");
    assert_eq!(
        h.target,
        "/api/entities/apikey/a%20b/history?x=1&y=caf%C3%A9+au+lait&flag"
    );
    assert_eq!(h.raw_query(), "x=1&y=caf%C3%A9+au+lait&flag");
    assert_eq!(h.param("y"), Some("café au lait"));
    assert_eq!(h.param("flag"), Some(""));
    assert_eq!(h.header("x-thing"), Some("spaced"));
    assert_eq!(h.header("authorization"), Some("Bearer t"));
    assert!(!h.has_body());
    assert!(h.keep_alive);
    assert!(!h.is_head());
}

#[test]
fn absolute_form_is_reduced_to_origin_form() {
    let h = head(b"GET http://admin:9000/health?a=b HTTP/1.1\r\nHost: admin\r\n\r\n");
    assert_eq!(h.target, "/health?a=b");
    assert_eq!(h.path, "/health");
}

#[test]
fn framing_and_connection_facts() {
    let h = head(b"POST /api/import HTTP/1.1\r\nHost: x\r\nContent-Length: 33554432\r\n\r\n");
    assert_eq!(h.content_length(), Some(33_554_432));
    assert!(h.has_body());
    let h = head(
        b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
          Expect: 100-continue\r\nConnection: close\r\n\r\n",
    );
    assert!(h.has_body());
    assert_eq!(h.content_length(), None);
    assert!(h.expect_continue);
    assert!(!h.keep_alive);
    let h = head(b"HEAD /health HTTP/1.0\r\n\r\n");
    assert!(h.is_head());
    assert!(!h.keep_alive);
}

#[test]
fn percent_decoding_is_lossy_but_total() {
    assert_eq!(decode("a%2Fb"), "a/b");
    assert_eq!(decode("100%"), "100%");
    assert_eq!(decode("%zz"), "%zz");
    assert_eq!(decode("%ff"), "\u{fffd}");
    assert_eq!(decode("a+b"), "a b");
}
