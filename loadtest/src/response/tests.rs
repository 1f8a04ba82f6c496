use super::*;

/// Feeds `input` in pieces of `step` bytes the way a connection would (keeping unconsumed
/// bytes), and returns every completed (status, close) and the bytes left over.
fn feed_in_pieces(input: &[u8], step: usize, head: bool) -> Result<Vec<(u16, bool)>, ParseError> {
    let mut parser = ResponseParser::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut done = Vec::new();
    for piece in input.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match parser.feed(&buf, head)? {
                Step::NeedMore { consumed } => {
                    buf.drain(..consumed);
                    break;
                }
                Step::Done {
                    consumed,
                    status,
                    close,
                } => {
                    buf.drain(..consumed);
                    done.push((status, close));
                    if buf.is_empty() {
                        break;
                    }
                }
            }
        }
    }
    Ok(done)
}

fn every_split(input: &[u8], head: bool) -> Vec<(u16, bool)> {
    let whole = feed_in_pieces(input, input.len(), head).unwrap();
    for step in 1..input.len() {
        assert_eq!(
            feed_in_pieces(input, step, head).unwrap(),
            whole,
            "step {step}"
        );
    }
    whole
}

#[test]
fn content_length() {
    let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
    assert_eq!(every_split(r, false), vec![(200, false), (404, false)]);
}

#[test]
fn chunked_with_extensions_and_trailers() {
    let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: 1\r\n\r\nHTTP/1.1 429 Too Many\r\nContent-Length: 2\r\n\r\nno";
    assert_eq!(every_split(r, false), vec![(200, false), (429, false)]);
}

#[test]
fn chunked_is_last_coding_only() {
    let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n";
    assert_eq!(every_split(r, false), vec![(200, false)]);
}

#[test]
fn connection_close_and_http10() {
    let r = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx";
    assert_eq!(every_split(r, false), vec![(200, true)]);
    let r = b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx";
    assert_eq!(every_split(r, false), vec![(200, true)]);
    let r = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx";
    assert_eq!(every_split(r, false), vec![(200, false)]);
}

#[test]
fn bodiless_statuses_and_head() {
    let r =
        b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n";
    assert_eq!(every_split(r, false), vec![(204, false), (304, false)]);
    let r = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    assert_eq!(every_split(r, true), vec![(200, false)]);
}

#[test]
fn interim_100_is_skipped() {
    let r = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(every_split(r, false), vec![(201, false)]);
}

#[test]
fn close_delimited_body_ends_at_eof() {
    let mut p = ResponseParser::new();
    let r = b"HTTP/1.1 200 OK\r\n\r\nsome body";
    assert_eq!(p.feed(r, false), Ok(Step::NeedMore { consumed: r.len() }));
    assert_eq!(
        p.eof(),
        Ok(Step::Done {
            consumed: 0,
            status: 200,
            close: true
        })
    );
    assert!(p.is_idle());
}

#[test]
fn truncated_length_body_is_an_error_at_eof() {
    let mut p = ResponseParser::new();
    let r = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    assert!(matches!(p.feed(r, false), Ok(Step::NeedMore { .. })));
    assert_eq!(p.eof(), Err(ParseError::Truncated));
}

#[test]
fn bad_inputs() {
    let mut p = ResponseParser::new();
    assert_eq!(
        p.feed(b"HTTP/2 200 OK\r\n\r\n", false),
        Err(ParseError::StatusLine)
    );
    let mut p = ResponseParser::new();
    assert_eq!(
        p.feed(b"HTTP/1.1 2x0 OK\r\n\r\n", false),
        Err(ParseError::StatusLine)
    );
    let mut p = ResponseParser::new();
    assert_eq!(
        p.feed(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n", false),
        Err(ParseError::Header)
    );
    let mut p = ResponseParser::new();
    assert_eq!(
        p.feed(
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            false
        ),
        Err(ParseError::ConflictingLength)
    );
    let mut p = ResponseParser::new();
    assert_eq!(
        p.feed(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            false
        ),
        Err(ParseError::Chunk)
    );
}

#[test]
fn head_waits_without_rescanning() {
    let mut p = ResponseParser::new();
    assert_eq!(
        p.feed(b"HTTP/1.1 200 OK\r\n", false),
        Ok(Step::NeedMore { consumed: 0 })
    );
    assert_eq!(
        p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false),
        Ok(Step::Done {
            consumed: 38,
            status: 200,
            close: false
        })
    );
}
