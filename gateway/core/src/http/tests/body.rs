//! Body framing: Content-Length, chunked (with extensions, trailers, limits), close-delimited,
//! and pipelining.

use super::*;

#[test]
fn content_length_body_stops_at_its_length() {
    let mut d = BodyDecoder::request(BodyFraming::ContentLength(5), BodyLimits::default()).unwrap();
    assert_eq!(d.remaining(), Some(5));
    let out = d.decode(b"hel").unwrap();
    assert_eq!((out.consumed, out.data, out.done), (3, 0..3, false));
    let out = d.decode(b"loGET / HTTP/1.1").unwrap();
    assert_eq!((out.consumed, out.data, out.done), (2, 0..2, true));
    assert!(d.is_done());
    assert_eq!(d.decode(b"more").unwrap().consumed, 0);
}

#[test]
fn empty_bodies_are_done_at_once() {
    for framing in [BodyFraming::None, BodyFraming::ContentLength(0)] {
        let mut d = BodyDecoder::request(framing, BodyLimits::default()).unwrap();
        assert!(d.is_done());
        let out = d.decode(b"GET /next").unwrap();
        assert_eq!((out.consumed, out.done), (0, true));
    }
}

#[test]
fn content_length_over_the_body_limit_is_413_up_front() {
    let limits = BodyLimits {
        max_body_bytes: 10,
        ..BodyLimits::default()
    };
    let e = BodyDecoder::request(BodyFraming::ContentLength(11), limits).unwrap_err();
    assert_eq!((e.code(), e.status()), ("body_too_large", 413));
    assert!(BodyDecoder::request(BodyFraming::ContentLength(10), limits).is_ok());
}

#[test]
fn eof_before_the_end_is_an_incomplete_body() {
    let mut d =
        BodyDecoder::response(BodyFraming::ContentLength(5), BodyLimits::default()).unwrap();
    d.decode(b"abc").unwrap();
    let e = d.on_eof().unwrap_err();
    assert_eq!(
        (e.kind(), e.side()),
        (ErrorKind::IncompleteBody, Side::Upstream)
    );
    let mut c = BodyDecoder::response(BodyFraming::Chunked, BodyLimits::default()).unwrap();
    c.decode(b"5\r\nab").unwrap();
    assert_eq!(c.on_eof().unwrap_err().kind(), ErrorKind::IncompleteBody);
}

#[test]
fn a_complete_chunked_body_is_done_and_eof_after_it_is_no_error() {
    let mut d = BodyDecoder::response(BodyFraming::Chunked, BodyLimits::default()).unwrap();
    assert!(!d.is_done());
    let out = decode_fed(&mut d, b"2\r\nab\r\n0\r\n\r\n", &[]).unwrap();
    assert_eq!((out.payload.as_slice(), out.done), (&b"ab"[..], true));
    assert!(d.is_done());
    d.on_eof().unwrap();
}

#[test]
fn close_delimited_body_ends_at_eof() {
    let mut d = BodyDecoder::response(BodyFraming::UntilClose, BodyLimits::default()).unwrap();
    let out = d.decode(b"anything at all").unwrap();
    assert_eq!((out.consumed, out.data, out.done), (15, 0..15, false));
    assert!(!d.is_done());
    d.on_eof().unwrap();
    assert!(d.is_done());
    assert!(d.decode(b"").unwrap().done);
}

/// A close-delimited body may reach `max_body_bytes`; one byte more is too large.
#[test]
fn close_delimited_body_may_reach_the_body_limit_but_not_pass_it() {
    let limits = BodyLimits {
        max_body_bytes: 10,
        ..BodyLimits::default()
    };
    let mut d = BodyDecoder::response(BodyFraming::UntilClose, limits).unwrap();
    assert_eq!(d.decode(b"hello").unwrap().consumed, 5);
    assert_eq!(d.decode(b"world").unwrap().consumed, 5);
    d.on_eof().unwrap();
    let mut d = BodyDecoder::response(BodyFraming::UntilClose, limits).unwrap();
    d.decode(b"hello").unwrap();
    let e = d.decode(b"world!").unwrap_err();
    assert_eq!(
        (e.kind(), e.side()),
        (ErrorKind::BodyTooLarge, Side::Upstream)
    );
}

#[test]
fn chunked_body_with_extensions_and_no_trailers() {
    let input = b"4;name=value;flag\r\nWiki\r\n5; q=\"a;b\"\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\nNEXT";
    let out = chunked(input).unwrap();
    assert_eq!(out.payload, b"Wikipedia in\r\n\r\nchunks.");
    assert_eq!(out.consumed, input.len() - 4);
    assert!(out.done);
    assert_eq!(out.trailers, b"\r\n");
}

#[test]
fn whitespace_after_a_chunk_size_is_refused() {
    // RFC 9112 allows BWS before `;`; h11 (and so perhaps an upstream or a front proxy) does
    // not. Refusing it keeps every reader of these bytes in agreement.
    for input in [
        &b"5 ;a\r\nhello\r\n0\r\n\r\n"[..],
        b"5\t;a\r\nhello\r\n0\r\n\r\n",
        b"5 \r\nhello\r\n0\r\n\r\n",
    ] {
        assert_eq!(
            chunked(input).unwrap_err().kind(),
            ErrorKind::InvalidChunkSize,
            "{}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn framing_fields_in_a_trailer_section_are_refused() {
    for input in [
        &b"3\r\nabc\r\n0\r\nContent-Length: 9\r\n\r\n"[..],
        b"3\r\nabc\r\n0\r\nX-A: 1\r\ncontent-length:9\r\n\r\n",
        b"3\r\nabc\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        assert_eq!(
            chunked(input).unwrap_err().kind(),
            ErrorKind::InvalidTrailer,
            "{}",
            String::from_utf8_lossy(input)
        );
    }
    // Longer or shorter names that only start like them are fine.
    let ok = chunked(b"0\r\nContent-Length-X: 1\r\nContent: 2\r\nTransfer-Encodings: 3\r\n\r\n")
        .unwrap();
    assert!(ok.done);
}

#[test]
fn chunked_trailers_are_surfaced_raw() {
    let input = b"3\r\nabc\r\n0\r\nX-Checksum: 123\r\nX-Other:\tv\r\n\r\n";
    let out = chunked(input).unwrap();
    assert_eq!(out.payload, b"abc");
    assert_eq!(out.trailers, b"X-Checksum: 123\r\nX-Other:\tv\r\n\r\n");
    assert_eq!(out.consumed, input.len());
    // A proxy re-chunking writes "0\r\n" + trailers: a well-formed end of body.
    let mut rewritten = b"0\r\n".to_vec();
    rewritten.extend_from_slice(&out.trailers);
    assert!(chunked(&rewritten).unwrap().done);
}

#[test]
fn chunk_sizes_with_leading_zeros_and_upper_case_hex() {
    let input = b"000A\r\n0123456789\r\n000\r\n\r\n";
    let out = chunked(input).unwrap();
    assert_eq!((out.payload.len(), out.done), (10, true));
}

#[test]
fn invalid_chunk_size_lines() {
    for input in [
        &b"x\r\n"[..],
        b"0x10\r\n",
        b"-1\r\n",
        b"+1\r\n",
        b"\r\n",
        b";ext\r\n",
        b" 5\r\n",
        b"5 \r\n",
        b"5\n",
        b"5\rX",
        b"5;a\0b\r\n",
        b"5;a\nb\r\n",
    ] {
        let e = chunked(input).unwrap_err();
        assert_eq!(
            (e.code(), e.status()),
            ("invalid_chunk_size", 400),
            "{}",
            show(input)
        );
    }
    // BWS before an extension is refused (see whitespace_after_a_chunk_size_is_refused); the
    // extension itself may hold it.
    assert!(chunked(b"1 \t;x\r\na\r\n0\r\n\r\n").is_err());
    assert!(chunked(b"1; x = \"y z\"\r\na\r\n0\r\n\r\n").unwrap().done);
}

#[test]
fn chunk_size_overflow() {
    let ok = chunked(b"ffffffffffffffff\r\n").unwrap();
    assert!(!ok.done);
    for input in [&b"10000000000000000\r\n"[..], b"fffffffffffffffff\r\n"] {
        let e = chunked(input).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ChunkSizeOverflow, "{}", show(input));
    }
}

#[test]
fn chunk_data_must_end_with_crlf() {
    for input in [
        &b"3\r\nabcX\r\n0\r\n\r\n"[..],
        b"3\r\nabc\rX",
        b"3\r\nabc\n0\r\n\r\n",
        b"3\r\nabcX\n0\r\n\r\n",
        b"3\r\nabc\n\n0\r\n\r\n",
        b"3\r\nabc0\r\n\r\n",
    ] {
        let e = chunked(input).unwrap_err();
        assert_eq!(
            e.kind(),
            ErrorKind::InvalidChunkTerminator,
            "{}",
            show(input)
        );
    }
}

#[test]
fn chunk_size_line_limit() {
    let limits = BodyLimits {
        chunked: ChunkedLimits {
            max_size_line_bytes: 16,
            max_trailer_bytes: 64,
        },
        ..BodyLimits::default()
    };
    let mut d = BodyDecoder::request(BodyFraming::Chunked, limits).unwrap();
    // 16 bytes: exactly the limit.
    assert!(
        decode_fed(&mut d, b"1;abcdefghijklmn\r\nx\r\n0\r\n\r\n", &[])
            .unwrap()
            .done
    );
    let mut d = BodyDecoder::request(BodyFraming::Chunked, limits).unwrap();
    let e = decode_fed(&mut d, b"1;abcdefghijklmno\r\nx\r\n", &[]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ChunkLineTooLong);
    let zeros = vec![b'0'; 1000];
    let mut d = BodyDecoder::request(BodyFraming::Chunked, limits).unwrap();
    assert_eq!(
        decode_fed(&mut d, &zeros, &[]).unwrap_err().kind(),
        ErrorKind::ChunkLineTooLong
    );
}

#[test]
fn trailer_section_limit() {
    let limits = BodyLimits {
        chunked: ChunkedLimits {
            max_size_line_bytes: 64,
            max_trailer_bytes: 16,
        },
        ..BodyLimits::default()
    };
    // 14 bytes of field line plus the final CRLF: 16, exactly the limit.
    let mut d = BodyDecoder::request(BodyFraming::Chunked, limits).unwrap();
    assert!(
        decode_fed(&mut d, b"0\r\nX: 012345678\r\n\r\n", &[])
            .unwrap()
            .done
    );
    let mut d = BodyDecoder::request(BodyFraming::Chunked, limits).unwrap();
    let e = decode_fed(&mut d, b"0\r\nX: 0123456789\r\n\r\n", &[]).unwrap_err();
    assert_eq!((e.code(), e.status()), ("trailers_too_large", 431));
    // Endless trailers fail at the limit, whatever the feed.
    let mut endless = b"0\r\n".to_vec();
    endless.extend(std::iter::repeat_n(b"A: b\r\n".as_slice(), 100).flatten());
    let mut d = BodyDecoder::request(BodyFraming::Chunked, limits).unwrap();
    let cuts: Vec<usize> = (1..endless.len()).step_by(7).collect();
    assert_eq!(d.decode(b"").unwrap().consumed, 0);
    let e = decode_fed(&mut d, &endless, &cuts).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TrailersTooLarge);
}

#[test]
fn malformed_trailers() {
    for input in [
        &b"0\r\nX : y\r\n\r\n"[..],
        b"0\r\n y\r\n\r\n",
        b"0\r\nNoColon\r\n\r\n",
        b"0\r\nX: a\0\r\n\r\n",
        b"0\r\nX: a\n\r\n",
        b"0\r\nX: a\rb\r\n\r\n",
        b"0\r\n\rX",
        b"0\r\n\n",
    ] {
        let e = chunked(input).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidTrailer, "{}", show(input));
    }
}

#[test]
fn chunked_body_over_the_limit_is_413_at_the_size_line() {
    let limits = BodyLimits {
        max_body_bytes: 8,
        ..BodyLimits::default()
    };
    let mut d = BodyDecoder::request(BodyFraming::Chunked, limits).unwrap();
    let e = decode_fed(&mut d, b"5\r\nhello\r\n4\r\n", &[]).unwrap_err();
    assert_eq!((e.kind(), e.status()), (ErrorKind::BodyTooLarge, 413));
    let mut d = BodyDecoder::request(BodyFraming::Chunked, limits).unwrap();
    assert!(
        decode_fed(&mut d, b"5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n", &[])
            .unwrap()
            .done
    );
}

#[test]
fn one_payload_range_per_call_and_framing_after_it() {
    let mut d = ChunkedDecoder::new(Side::Downstream, ChunkedLimits::default(), u64::MAX);
    let input = b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n";
    let first = d.decode(input).unwrap();
    // First payload, then the framing up to the next payload.
    assert_eq!(
        (first.data.clone(), first.consumed, first.done),
        (3..5, 10, false)
    );
    let second = d.decode(&input[first.consumed..]).unwrap();
    assert_eq!((second.data, second.done), (0..3, true));
    assert_eq!(first.consumed + second.consumed, input.len());
    assert_eq!(d.payload_len(), 5);
}

#[test]
fn pipelined_requests_in_one_buffer() {
    let buf = b"POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-T: 1\r\n\r\n\
PUT /cl HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc\
GET /last?x=1 HTTP/1.1\r\nHost: h\r\n\r\n";
    let mut parser = HeadParser::default();
    let mut pos = 0;
    let mut seen = Vec::new();
    while pos < buf.len() {
        let (path, head_len, framing) = {
            let head = parser.parse_request(&buf[pos..]).unwrap().unwrap();
            (head.path().to_owned(), head.head_len(), head.framing())
        };
        pos += head_len;
        let mut body = BodyDecoder::request(framing, BodyLimits::default()).unwrap();
        let out = decode_fed(&mut body, &buf[pos..], &[]).unwrap();
        assert!(out.done);
        pos += out.consumed;
        seen.push((path, out.payload));
    }
    assert_eq!(
        seen,
        vec![
            ("/upload".to_owned(), b"hello world".to_vec()),
            ("/cl".to_owned(), b"abc".to_vec()),
            ("/last".to_owned(), Vec::new()),
        ]
    );
}
