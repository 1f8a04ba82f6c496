//! The hostile corpus: request-smuggling and malformed-head inputs, each with the error it must
//! produce. A request here that parses is a hole.

use super::*;

fn with_headers(fields: &str) -> Vec<u8> {
    format!("POST /p HTTP/1.1\r\nHost: h\r\n{fields}\r\n").into_bytes()
}

fn kind_of(fields: &str) -> ErrorKind {
    req_err(&with_headers(fields)).kind()
}

#[test]
fn content_length_with_transfer_encoding_in_either_order() {
    for fields in [
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n",
    ] {
        let e = req_err(&with_headers(fields));
        assert_eq!(
            (e.code(), e.status()),
            ("conflicting_framing", 400),
            "{fields}"
        );
    }
}

#[test]
fn transfer_encoding_must_be_exactly_chunked() {
    let invalid = [
        "Transfer-Encoding: chunked, identity\r\n",
        "Transfer-Encoding: xchunked\r\n",
        "Transfer-Encoding: chunkedx\r\n",
        "Transfer-Encoding: identity\r\n",
        "Transfer-Encoding: chunked, chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
        "Transfer-Encoding: chunked;q=1\r\n",
        "Transfer-Encoding: \"chunked\"\r\n",
        "Transfer-Encoding: ch unked\r\n",
        "Transfer-Encoding: ,\r\n",
        "Transfer-Encoding: chunked,\r\n",
        "Transfer-Encoding: , chunked\r\n",
        "Transfer-Encoding: chunked,,\r\n",
        "Transfer-Encoding:\r\n",
    ];
    for fields in invalid {
        let e = req_err(&with_headers(fields));
        assert_eq!(
            (e.kind(), e.status()),
            (ErrorKind::InvalidTransferEncoding, 400),
            "{fields}"
        );
    }
}

#[test]
fn transfer_codings_before_chunked_are_not_implemented() {
    for fields in [
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
    ] {
        let e = req_err(&with_headers(fields));
        assert_eq!(
            (e.code(), e.status()),
            ("unsupported_transfer_coding", 501),
            "{fields}"
        );
    }
}

#[test]
fn transfer_encoding_tolerates_whitespace_but_not_empty_elements() {
    let r = req_ok(&with_headers("Transfer-Encoding:  \tChunked \t\r\n"));
    assert_eq!(r.framing, BodyFraming::Chunked);
    // RFC 9110 would skip the empty elements; h11 refuses them, and so do we (one reading).
    let e = req_err(&with_headers("Transfer-Encoding: , \tchunked ,\r\n"));
    assert_eq!(e.kind(), ErrorKind::InvalidTransferEncoding);
}

#[test]
fn transfer_encoding_in_http10_is_faulty_framing() {
    let e = req_err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
    assert_eq!(e.kind(), ErrorKind::InvalidTransferEncoding);
}

#[test]
fn content_length_must_be_plain_digits() {
    let values = [
        "+5",
        "-1",
        "5, 5",
        "5,5",
        ",5",
        "0x10",
        "1e3",
        "5 5",
        "",
        "\u{663}",
        "18446744073709551616",
    ];
    for value in values {
        let e = req_err(&with_headers(&format!("Content-Length: {value}\r\n")));
        assert_eq!(
            (e.code(), e.status()),
            ("invalid_content_length", 400),
            "{value:?}"
        );
    }
    let huge = "9".repeat(100);
    assert_eq!(
        kind_of(&format!("Content-Length: {huge}\r\n")),
        ErrorKind::InvalidContentLength
    );
}

#[test]
fn duplicate_content_length_is_rejected_even_when_equal() {
    for fields in [
        "Content-Length: 5\r\nContent-Length: 5\r\n",
        "Content-Length: 5\r\ncontent-length: 6\r\n",
    ] {
        let e = req_err(&with_headers(fields));
        assert_eq!(
            (e.code(), e.status()),
            ("duplicate_content_length", 400),
            "{fields}"
        );
    }
}

#[test]
fn bare_lf_anywhere_in_the_head() {
    let cases: [&[u8]; 6] = [
        b"GET / HTTP/1.1\nHost: h\n\n",
        b"GET / HTTP/1.1\r\nHost: h\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\nb\r\n\r\n",
        // A bare LF as an empty line before the request line, alone or with others after it.
        b"\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
        b"\nGET / HTTP/1.1\nHost: h\n\n",
    ];
    for buf in cases {
        let e = req_err(buf);
        assert_eq!((e.code(), e.status()), ("bare_lf", 400), "{}", show(buf));
    }
}

#[test]
fn bare_lf_is_reported_before_the_head_completes() {
    // A bare-LF client would otherwise wait for a CRLFCRLF that never comes.
    let mut parser = HeadParser::default();
    let e = parser.parse_request(b"GET / HTTP/1.1\n").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::BareLf);
}

/// A bare LF after leading empty lines is refused, whether the head comes whole or in two
/// pieces split anywhere.
#[test]
fn bare_lf_after_leading_empty_lines_is_refused_however_the_head_is_split() {
    let buf = b"\r\n\r\n\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_eq!(req_err(buf).kind(), ErrorKind::BareLf);
    for cut in 1..buf.len() {
        let e = req_fed(buf, &[cut]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BareLf, "cut at {cut}");
    }
}

#[test]
fn bare_cr_anywhere_in_the_head() {
    let cases: [&[u8]; 4] = [
        b"GET / HTTP/1.1\rHost: h\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\r\n",
        b"GET /a\rb HTTP/1.1\r\nHost: h\r\n\r\n",
    ];
    for buf in cases {
        let e = req_err(buf);
        assert_eq!((e.code(), e.status()), ("bare_cr", 400), "{}", show(buf));
    }
}

#[test]
fn obs_fold_is_rejected() {
    let cases: [&[u8]; 3] = [
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n\tb\r\n\r\n",
        b"GET / HTTP/1.1\r\n Host: h\r\n\r\n",
    ];
    for buf in cases {
        let e = req_err(buf);
        assert_eq!((e.code(), e.status()), ("obs_fold", 400), "{}", show(buf));
    }
}

#[test]
fn obs_fold_hiding_a_transfer_encoding_is_rejected() {
    let e = req_err(
        b"POST / HTTP/1.1\r\nHost: h\r\nX: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc",
    );
    assert_eq!(e.kind(), ErrorKind::ObsFold);
}

#[test]
fn nul_and_control_bytes() {
    let value_cases: [&[u8]; 4] = [
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: \x01\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fb\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x0bb\r\n\r\n",
    ];
    for buf in value_cases {
        assert_eq!(
            req_err(buf).kind(),
            ErrorKind::InvalidHeaderValue,
            "{}",
            show(buf)
        );
    }
    let name_cases: [&[u8]; 3] = [
        b"GET / HTTP/1.1\r\nHost: h\r\nX\0Y: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\n\0: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nX(Y): a\r\n\r\n",
    ];
    for buf in name_cases {
        assert_eq!(
            req_err(buf).kind(),
            ErrorKind::InvalidHeaderName,
            "{}",
            show(buf)
        );
    }
    assert_eq!(
        req_err(b"GET /\0 HTTP/1.1\r\nHost: h\r\n\r\n").kind(),
        ErrorKind::InvalidTarget
    );
    assert_eq!(
        req_err(b"GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n").kind(),
        ErrorKind::InvalidTarget
    );
}

#[test]
fn whitespace_between_name_and_colon() {
    for fields in [
        "Transfer-Encoding : chunked\r\n",
        "Content-Length\t: 5\r\n",
        "X-Ok : 1\r\n",
    ] {
        let e = req_err(&with_headers(fields));
        assert_eq!(
            (e.code(), e.status()),
            ("invalid_header_name", 400),
            "{fields}"
        );
    }
}

#[test]
fn empty_header_name_or_missing_colon() {
    assert_eq!(kind_of(": value\r\n"), ErrorKind::InvalidHeaderName);
    assert_eq!(kind_of("NoColon\r\n"), ErrorKind::InvalidHeaderName);
}

#[test]
fn too_many_headers_and_too_large_heads_answer_431() {
    let many: String = (0..150).map(|i| format!("X-{i}: v\r\n")).collect();
    let e = req_err(&with_headers(&many));
    assert_eq!((e.kind(), e.status()), (ErrorKind::TooManyHeaders, 431));
    let big = format!("X-Big: {}\r\n", "a".repeat(20 * 1024));
    let e = req_err(&with_headers(&big));
    assert_eq!((e.kind(), e.status()), (ErrorKind::HeadTooLarge, 431));
}

#[test]
fn garbage_before_the_request_line() {
    assert!(req(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n").is_err());
    assert_eq!(
        req_err(b" GET / HTTP/1.1\r\nHost: h\r\n\r\n").kind(),
        ErrorKind::InvalidMethod
    );
}

#[test]
fn upstream_errors_map_to_502_and_codes_are_unique() {
    let e = HttpError::new(Side::Upstream, ErrorKind::HeadTooLarge);
    assert_eq!((e.status(), e.kind().status()), (502, 431));
    assert_eq!(
        e.to_string(),
        "upstream HTTP error (head_too_large): message head exceeds the size limit"
    );
    let kinds = ErrorKind::ALL;
    for (i, k) in kinds.iter().enumerate() {
        assert_eq!(k.index(), i, "{k:?} out of place in ErrorKind::ALL");
    }
    // The last declared kind closes the list: a kind added after it must be added to ALL.
    assert_eq!(ErrorKind::IncompleteBody.index(), kinds.len() - 1);
    let mut codes: Vec<&str> = kinds.iter().map(|k| k.code()).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), kinds.len());
    assert!(
        kinds
            .iter()
            .all(|k| [400, 413, 431, 501, 505].contains(&k.status()))
    );
}

/// Fields of the same length as the ones the parser interprets are not mistaken for them (the
/// parser dispatches on the name's length first; cargo-mutants left these alive).
#[test]
fn look_alike_fields_are_not_interpreted() {
    let r = req_ok(&with_headers(
        "Accept: 100-continue\r\nReferer: websocket\r\nUser-Agent: close\r\n\
         Keep-Alive: close\r\nContent-Type: 5\r\n",
    ));
    assert!(!r.expect_continue, "Accept read as Expect");
    assert_eq!(r.upgrade, None, "Referer read as Upgrade");
    assert!(r.keep_alive, "User-Agent or Keep-Alive read as Connection");
    assert_eq!(r.framing, BodyFraming::None);
    // The real ones are.
    let r = req_ok(&with_headers(
        "Expect: 100-continue\r\nUpgrade: websocket\r\nConnection: close, upgrade\r\n",
    ));
    assert!(r.expect_continue);
    assert_eq!(r.upgrade.as_deref(), Some(&b"websocket"[..]));
    assert!(!r.keep_alive);
}
