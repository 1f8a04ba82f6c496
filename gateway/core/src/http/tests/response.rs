//! Response heads: framing per RFC 9112 §6.3, keep-alive, upstream errors.

use super::*;

#[test]
fn content_length_and_chunked_responses() {
    let r = res_ok(
        b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nhello world!",
        Method::Get,
    );
    assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
    assert_eq!(r.framing, BodyFraming::ContentLength(12));
    assert!(r.keep_alive);
    assert_eq!(r.head_len, 39);
    let c = res_ok(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        Method::Post,
    );
    assert_eq!(c.framing, BodyFraming::Chunked);
}

#[test]
fn no_length_means_read_until_close() {
    let r = res_ok(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
        Method::Get,
    );
    assert_eq!(r.framing, BodyFraming::UntilClose);
    assert!(!r.keep_alive, "a close-delimited body ends the connection");
}

#[test]
fn bodiless_responses_ignore_their_framing_headers() {
    let head = res_ok(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
        Method::Head,
    );
    assert_eq!(head.framing, BodyFraming::None);
    assert!(head.keep_alive);
    let head_chunked = res_ok(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        Method::Head,
    );
    assert_eq!(head_chunked.framing, BodyFraming::None);
    for status in [
        "100 Continue",
        "103 Early Hints",
        "204 No Content",
        "304 Not Modified",
    ] {
        let buf = format!("HTTP/1.1 {status}\r\nContent-Length: 10\r\n\r\n");
        let r = res_ok(buf.as_bytes(), Method::Get);
        assert_eq!(r.framing, BodyFraming::None, "{status}");
    }
    let tunnel = res_ok(
        b"HTTP/1.1 200 Connection established\r\n\r\n",
        Method::Connect,
    );
    assert_eq!(tunnel.framing, BodyFraming::None);
}

#[test]
fn interim_and_switching_protocols() {
    let mut parser = HeadParser::default();
    let buf = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
    let first = parser.parse_response(buf, Method::Put).unwrap().unwrap();
    assert!(first.is_interim());
    let rest = &buf[first.head_len()..];
    let second = parser.parse_response(rest, Method::Put).unwrap().unwrap();
    assert_eq!((second.status(), second.is_interim()), (201, false));
    assert_eq!(second.framing(), BodyFraming::ContentLength(0));

    let up = res_ok(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        Method::Get,
    );
    assert_eq!(
        (up.framing, up.upgrade.as_deref()),
        (BodyFraming::None, Some(&b"websocket"[..]))
    );
}

#[test]
fn response_keep_alive_rules() {
    let close = res_ok(
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        Method::Get,
    );
    assert!(!close.keep_alive);
    let old = res_ok(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", Method::Get);
    assert!(!old.keep_alive);
    let old_ka = res_ok(
        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
        Method::Get,
    );
    assert!(old_ka.keep_alive);
}

#[test]
fn missing_reason_phrase_is_fine() {
    let r = res_ok(b"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n", Method::Get);
    assert_eq!((r.status, r.reason.as_str()), (404, ""));
}

/// A head without field lines has empty headers; one with a field does not.
#[test]
fn headers_are_empty_only_without_field_lines() {
    let mut parser = HeadParser::default();
    let bare = parser
        .parse_response(b"HTTP/1.1 204 No Content\r\n\r\n", Method::Get)
        .unwrap()
        .unwrap();
    assert_eq!((bare.headers().len(), bare.headers().is_empty()), (0, true));
    let one = parser
        .parse_response(b"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n", Method::Get)
        .unwrap()
        .unwrap();
    assert_eq!((one.headers().len(), one.headers().is_empty()), (1, false));
}

#[test]
fn response_framing_errors_are_upstream_502() {
    let cases: [(&[u8], ErrorKind); 8] = [
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            ErrorKind::ConflictingFraming,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            ErrorKind::DuplicateContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n",
            ErrorKind::InvalidContentLength,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            ErrorKind::UnsupportedTransferCoding,
        ),
        // RFC 9112 would read these until close; we refuse them (see parse_response).
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            ErrorKind::InvalidTransferEncoding,
        ),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            ErrorKind::InvalidTransferEncoding,
        ),
        (
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            ErrorKind::InvalidTransferEncoding,
        ),
        (b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", ErrorKind::ObsFold),
    ];
    for (buf, kind) in cases {
        let e = res_err(buf, Method::Get);
        assert_eq!(
            (e.kind(), e.side(), e.status()),
            (kind, Side::Upstream, 502),
            "{}",
            show(buf)
        );
    }
}

#[test]
fn malformed_status_lines() {
    for buf in [
        &b"HTTP/1.1 99 Low\r\n\r\n"[..],
        b"HTTP/1.1 600 High\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 OK\r\n\r\n",
    ] {
        assert_eq!(
            res_err(buf, Method::Get).kind(),
            ErrorKind::InvalidStatus,
            "{}",
            show(buf)
        );
    }
    assert_eq!(
        res_err(b"HTTP/2 200 OK\r\n\r\n", Method::Get).kind(),
        ErrorKind::InvalidVersion
    );
    assert_eq!(
        res_err(b"HTTP/1.1 200 OK\n\n", Method::Get).kind(),
        ErrorKind::BareLf
    );
}

/// A buffer replaced without reset() whose head ends before the stale scan's progress: the
/// scanner and httparse disagree on where the head ends, and the head is refused.
#[test]
fn a_response_head_ending_before_a_stale_scan_is_refused() {
    let mut parser = HeadParser::default();
    let partial = [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Pad: "[..],
        &[b'a'; 30],
    ]
    .concat();
    assert!(
        parser
            .parse_response(&partial, Method::Get)
            .unwrap()
            .is_none()
    );
    let replaced = [
        &b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nX-Filler: "[..],
        &[b'z'; 60],
        b"\r\n\r\n",
    ]
    .concat();
    let e = parser.parse_response(&replaced, Method::Get).unwrap_err();
    assert_eq!(
        (e.side(), e.kind()),
        (Side::Upstream, ErrorKind::InvalidHeaderName)
    );
}

#[test]
fn response_head_split_anywhere_parses_identically() {
    let buf = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nVary: Accept\r\n\r\n";
    let whole = res_ok(buf, Method::Get);
    for cut in 1..buf.len() {
        let mut parser = HeadParser::default();
        assert!(
            parser
                .parse_response(&buf[..cut], Method::Get)
                .unwrap()
                .is_none()
        );
        let head = parser.parse_response(buf, Method::Get).unwrap().unwrap();
        assert_eq!(ResSummary::of(&head), whole, "cut at {cut}");
    }
}
