//! Request heads: what a valid request yields, incremental feeding, limits.

use super::*;

#[test]
fn typical_get_yields_every_part() {
    let r = req_ok(TYPICAL_GET);
    assert_eq!(r.method, Method::Get);
    assert_eq!(r.method_str, "GET");
    assert_eq!(r.path, "/api/v1/users/42/orders");
    assert_eq!(r.query.as_deref(), Some("limit=20&cursor=abc"));
    assert_eq!(r.form, TargetForm::Origin);
    assert_eq!(r.version, Version::Http11);
    assert_eq!(r.head_len, TYPICAL_GET.len());
    assert_eq!(r.framing, BodyFraming::None);
    assert!(r.keep_alive);
    assert!(!r.expect_continue);
    assert_eq!(r.host.as_deref(), Some(&b"api.example.com"[..]));
    assert_eq!(r.headers.len(), 7);
    assert_eq!(
        r.headers[0],
        ("Host".to_owned(), b"api.example.com".to_vec())
    );
    assert_eq!(r.headers[6].0, "X-Request-Id");
}

#[test]
fn header_lookup_is_case_insensitive_and_keeps_order() {
    let buf = b"GET / HTTP/1.1\r\nhost: a\r\nX-Tag: one\r\nx-tag: two\r\nEmpty:\r\n\r\n";
    let mut parser = HeadParser::default();
    let head = parser.parse_request(buf).unwrap().unwrap();
    let headers = head.headers();
    assert_eq!(headers.get("HOST"), Some(&b"a"[..]));
    let tags: Vec<&[u8]> = headers.get_all("X-TAG").collect();
    assert_eq!(tags, vec![&b"one"[..], &b"two"[..]]);
    assert_eq!(headers.get("empty"), Some(&b""[..]));
    assert_eq!(headers.get("missing"), None);
    assert_eq!(headers.iter().len(), 4);
}

#[test]
fn header_values_are_trimmed_of_optional_whitespace() {
    let r = req_ok(b"GET / HTTP/1.1\r\nHost:  \t a.example \t \r\nX: \tv  v\t\r\n\r\n");
    assert_eq!(r.headers[0].1, b"a.example");
    assert_eq!(r.headers[1].1, b"v  v");
}

#[test]
fn incomplete_head_is_none_until_the_blank_line() {
    let full = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n";
    let mut parser = HeadParser::default();
    for end in 0..full.len() {
        assert!(
            parser.parse_request(&full[..end]).unwrap().is_none(),
            "complete too early at {end}"
        );
    }
    let head = parser.parse_request(full).unwrap().unwrap();
    assert_eq!(head.head_len(), full.len());
}

#[test]
fn byte_by_byte_feed_equals_single_feed() {
    let cuts: Vec<usize> = (1..TYPICAL_GET.len()).collect();
    assert_eq!(
        req_fed(TYPICAL_GET, &cuts).unwrap(),
        Some(req_ok(TYPICAL_GET))
    );
}

#[test]
fn split_inside_the_final_crlf_pairs() {
    let full = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    let n = full.len();
    for cuts in [
        vec![n - 1],
        vec![n - 2],
        vec![n - 3],
        vec![n - 3, n - 2, n - 1],
    ] {
        assert_eq!(
            req_fed(full, &cuts).unwrap(),
            Some(req_ok(full)),
            "cuts {cuts:?}"
        );
    }
}

#[test]
fn bytes_after_the_head_are_left_alone() {
    let buf = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET /next";
    let r = req_ok(buf);
    assert_eq!(&buf[r.head_len..], b"helloGET /next");
    assert_eq!(r.framing, BodyFraming::ContentLength(5));
}

#[test]
fn leading_empty_lines_are_skipped_and_counted() {
    let buf = b"\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    let r = req_ok(buf);
    assert_eq!(r.path, "/");
    assert_eq!(r.head_len, buf.len());
}

#[test]
fn keep_alive_follows_version_and_connection_options() {
    let cases: [(&[u8], bool); 6] = [
        (b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", true),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, CLOSE\r\n\r\n",
            false,
        ),
        (b"GET / HTTP/1.0\r\n\r\n", false),
        (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
        (
            b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
            false,
        ),
    ];
    for (buf, expected) in cases {
        assert_eq!(req_ok(buf).keep_alive, expected, "{}", show(buf));
    }
}

#[test]
fn expect_continue_only_on_http11() {
    let on =
        req_ok(b"PUT /u HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n");
    assert!(on.expect_continue);
    let off = req_ok(b"PUT /u HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n");
    assert!(!off.expect_continue);
    let other = req_ok(b"PUT /u HTTP/1.1\r\nHost: h\r\nExpect: something\r\n\r\n");
    assert!(!other.expect_continue);
}

#[test]
fn upgrade_needs_the_connection_option_and_http11() {
    let ws = req_ok(
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
    );
    assert_eq!(ws.upgrade.as_deref(), Some(&b"websocket"[..]));
    let unlisted = req_ok(b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n");
    assert_eq!(unlisted.upgrade, None);
    let old = req_ok(b"GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert_eq!(old.upgrade, None);
}

#[test]
fn framing_of_requests() {
    let cl = req_ok(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0012\r\n\r\n");
    assert_eq!(cl.framing, BodyFraming::ContentLength(12));
    let zero = req_ok(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(zero.framing, BodyFraming::ContentLength(0));
    let chunked = req_ok(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n");
    assert_eq!(chunked.framing, BodyFraming::Chunked);
    let odd_ws = req_ok(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \t chunked \t\r\n\r\n");
    assert_eq!(odd_ws.framing, BodyFraming::Chunked);
    let max = req_ok(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n");
    assert_eq!(max.framing, BodyFraming::ContentLength(u64::MAX));
}

#[test]
fn absolute_form_target_gives_authority_and_path() {
    let buf = b"GET http://Backend.example:8080?q=1 HTTP/1.1\r\nHost: other\r\n\r\n";
    let mut parser = HeadParser::default();
    let head = parser.parse_request(buf).unwrap().unwrap();
    let target = head.target();
    assert_eq!(target.form(), TargetForm::Absolute);
    assert_eq!(target.scheme(), Some("http"));
    assert_eq!(target.authority(), Some("Backend.example:8080"));
    assert_eq!(target.path(), "/");
    assert_eq!(target.query(), Some("q=1"));
    assert_eq!(head.authority(), Some(&b"Backend.example:8080"[..]));
    assert_eq!(head.host(), Some(&b"other"[..]));
    assert_eq!(target.raw(), "http://Backend.example:8080?q=1");
}

#[test]
fn absolute_form_rejects_other_schemes_userinfo_and_empty_authority() {
    for target in [
        "ftp://h/x",
        "http://user@h/x",
        "http:///x",
        "https://h\"h/x",
    ] {
        let buf = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(
            req_err(buf.as_bytes()).kind(),
            ErrorKind::InvalidTarget,
            "{target}"
        );
    }
}

#[test]
fn asterisk_form_only_with_options() {
    let r = req_ok(b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(
        (r.form, r.path.as_str(), r.query),
        (TargetForm::Asterisk, "*", None)
    );
    let e = req_err(b"GET * HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!((e.code(), e.status()), ("invalid_target", 400));
}

#[test]
fn authority_form_and_connect_are_refused() {
    let e = req_err(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    assert_eq!((e.kind(), e.status()), (ErrorKind::ConnectUnsupported, 501));
    let e = req_err(b"GET example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(e.kind(), ErrorKind::InvalidTarget);
}

#[test]
fn host_rules() {
    let e = req_err(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n");
    assert_eq!((e.code(), e.status()), ("missing_host", 400));
    assert_eq!(req_ok(b"GET / HTTP/1.0\r\n\r\n").host, None);
    let e = req_err(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n");
    assert_eq!((e.code(), e.status()), ("duplicate_host", 400));
    for host in ["a b", "a/b", "u@a", "a?b", "a#b"] {
        let buf = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
        assert_eq!(
            req_err(buf.as_bytes()).kind(),
            ErrorKind::InvalidHost,
            "{host}"
        );
    }
    let ipv6 = req_ok(b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
    assert_eq!(ipv6.host.unwrap(), b"[::1]:8080");
    assert_eq!(
        req_ok(b"GET / HTTP/1.1\r\nHost:\r\n\r\n").host.unwrap(),
        b""
    );
}

#[test]
fn header_count_limit() {
    let limits = HeadLimits {
        max_head_bytes: 16 * 1024,
        max_headers: 4,
    };
    let at_limit = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    let mut parser = HeadParser::new(limits);
    assert_eq!(
        parser
            .parse_request(at_limit)
            .unwrap()
            .unwrap()
            .headers()
            .len(),
        4
    );
    let over = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    let e = parser.parse_request(over).unwrap_err();
    assert_eq!(
        (e.code(), e.status(), e.side()),
        ("too_many_headers", 431, Side::Downstream)
    );
}

#[test]
fn header_count_limit_is_capped() {
    let mut parser = HeadParser::new(HeadLimits {
        max_head_bytes: 1 << 20,
        max_headers: 10_000,
    });
    assert_eq!(parser.limits().max_headers, MAX_HEADERS);
    let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    for i in 0..MAX_HEADERS {
        buf.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    buf.extend_from_slice(b"\r\n");
    assert_eq!(
        parser.parse_request(&buf).unwrap_err().kind(),
        ErrorKind::TooManyHeaders
    );
}

#[test]
fn head_byte_limit_counts_through_the_blank_line() {
    let buf = b"GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    let exact = HeadLimits {
        max_head_bytes: buf.len(),
        max_headers: 10,
    };
    assert!(HeadParser::new(exact).parse_request(buf).unwrap().is_some());
    let short = HeadLimits {
        max_head_bytes: buf.len() - 1,
        ..exact
    };
    let e = HeadParser::new(short).parse_request(buf).unwrap_err();
    assert_eq!((e.code(), e.status()), ("head_too_large", 431));
}

#[test]
fn head_byte_limit_fails_an_endless_head_without_waiting() {
    let limits = HeadLimits {
        max_head_bytes: 64,
        max_headers: 10,
    };
    let mut parser = HeadParser::new(limits);
    let mut buf = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
    let mut outcome = Ok(None);
    while buf.len() < 200 {
        buf.extend_from_slice(b"X: yyyyyyy\r\n");
        outcome = parser.parse_request(&buf).map(|h| h.map(|h| h.head_len()));
        if outcome.is_err() {
            break;
        }
    }
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::HeadTooLarge);
    assert!(
        buf.len() < 64 + 12,
        "error came late, at {} bytes",
        buf.len()
    );
}

#[test]
fn invalid_method_target_and_version() {
    let e = req_err(b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(e.kind(), ErrorKind::InvalidMethod);
    let e = req_err(b"GET / HTTP/2.0\r\nHost: h\r\n\r\n");
    assert_eq!((e.kind(), e.status()), (ErrorKind::InvalidVersion, 505));
    let e = req_err(b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n");
    assert_eq!(e.kind(), ErrorKind::InvalidTarget);
    // Methods are case-sensitive tokens: an unknown one is not an error.
    assert_eq!(
        req_ok(b"get / HTTP/1.1\r\nHost: h\r\n\r\n").method,
        Method::Other
    );
}

/// Each standard method token has its own variant; any other token, or another case, is
/// `Other`.
#[test]
fn every_standard_method_token_has_its_variant() {
    for (token, method) in [
        ("GET", Method::Get),
        ("HEAD", Method::Head),
        ("POST", Method::Post),
        ("PUT", Method::Put),
        ("DELETE", Method::Delete),
        ("CONNECT", Method::Connect),
        ("OPTIONS", Method::Options),
        ("TRACE", Method::Trace),
        ("PATCH", Method::Patch),
        ("head", Method::Other),
        ("PROPFIND", Method::Other),
    ] {
        assert_eq!(Method::from_token(token), method, "{token}");
    }
}

#[test]
fn parser_is_reusable_after_success_and_after_error() {
    let mut parser = HeadParser::default();
    let first = b"GET /a HTTP/1.1\r\nHost: h\r\nX: 1\r\n\r\n";
    assert!(parser.parse_request(first).unwrap().is_some());
    assert!(
        parser
            .parse_request(b"GET / HTTP/1.1\r\nHo")
            .unwrap()
            .is_none()
    );
    // A new connection's buffer: the partial head is abandoned.
    parser.reset();
    assert!(
        parser
            .parse_request(b"GET / HTTP/1.1\nHost: h\r\n\r\n")
            .is_err()
    );
    let head = parser
        .parse_request(b"GET /b HTTP/1.1\r\nHost: k\r\n\r\n")
        .unwrap()
        .unwrap();
    assert_eq!((head.path(), head.headers().len()), ("/b", 1));
}

/// A buffer replaced without reset() whose head ends before the stale scan's progress: the
/// scanner and httparse disagree on where the head ends, and the head is refused.
#[test]
fn a_head_ending_before_a_stale_scan_is_refused() {
    let mut parser = HeadParser::default();
    let partial = [&b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: "[..], &[b'a'; 30]].concat();
    assert!(parser.parse_request(&partial).unwrap().is_none());
    let replaced = [
        &b"GET / HTTP/1.1\r\nHost: a\r\n\r\nX-Filler: "[..],
        &[b'z'; 60],
        b"\r\n\r\n",
    ]
    .concat();
    let e = parser.parse_request(&replaced).unwrap_err();
    assert_eq!(
        (e.side(), e.kind()),
        (Side::Downstream, ErrorKind::InvalidHeaderName)
    );
}

#[test]
fn a_shorter_buffer_restarts_the_scan() {
    let mut parser = HeadParser::default();
    let long = b"GET /long-path-here HTTP/1.1\r\nHost: a\r\n";
    assert!(parser.parse_request(long).unwrap().is_none());
    // The caller replaced its buffer without reset(): stale progress must not be trusted.
    let e = parser.parse_request(b"GET / HTTP/1.1\r\n\r\n").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MissingHost);
    parser.reset();
    assert!(
        parser
            .parse_request(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
            .unwrap()
            .is_some()
    );
}
