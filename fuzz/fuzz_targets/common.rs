//! Helpers shared by the HTTP targets (included with `#[path]`; not a target).

use gateway_core::http::{
    BodyDecoder, BodyFraming, BodyLimits, ChunkedLimits, Decoded, HeadLimits, HeadParser, HttpError,
};

/// What a body decoder made of some bytes, fed in pieces.
#[derive(Debug, PartialEq, Eq)]
pub struct BodyRead {
    /// Payload bytes, concatenated.
    pub payload: Vec<u8>,
    /// Trailer-section bytes, concatenated.
    pub trailers: Vec<u8>,
    /// Bytes that belonged to the body (framing included).
    pub consumed: usize,
    /// Whether the body ended.
    pub done: bool,
    /// The error, if the framing was bad.
    pub error: Option<HttpError>,
}

/// Small limits, so that the fuzzer reaches them.
pub fn body_limits() -> BodyLimits {
    BodyLimits {
        max_body_bytes: 4096,
        chunked: ChunkedLimits {
            max_size_line_bytes: 64,
            max_trailer_bytes: 256,
        },
    }
}

/// Feeds `bytes` to a fresh decoder in the pieces `cuts` makes (offsets into `bytes`), the
/// way a connection would: after each read, decode what is buffered until no progress.
pub fn read_body(
    new: impl Fn() -> Result<BodyDecoder, HttpError>,
    bytes: &[u8],
    cuts: &[usize],
) -> BodyRead {
    let mut out = BodyRead {
        payload: Vec::new(),
        trailers: Vec::new(),
        consumed: 0,
        done: false,
        error: None,
    };
    let mut decoder = match new() {
        Ok(d) => d,
        Err(e) => {
            out.error = Some(e);
            return out;
        }
    };
    let mut buffered: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut ends: Vec<usize> = cuts.iter().copied().filter(|&c| c < bytes.len()).collect();
    ends.sort_unstable();
    ends.push(bytes.len());
    for end in ends {
        if end < fed {
            continue;
        }
        buffered.extend_from_slice(&bytes[fed..end]);
        fed = end;
        loop {
            if decoder.is_done() {
                out.done = true;
                return out;
            }
            match decoder.decode(&buffered) {
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
                Ok(Decoded {
                    consumed,
                    data,
                    trailers,
                    done,
                }) => {
                    assert!(consumed <= buffered.len(), "consumed past the input");
                    assert!(
                        data.end <= consumed && trailers.end <= consumed,
                        "ranges past what was consumed"
                    );
                    out.payload.extend_from_slice(&buffered[data]);
                    out.trailers.extend_from_slice(&buffered[trailers]);
                    out.consumed += consumed;
                    buffered.drain(..consumed);
                    if done {
                        out.done = true;
                        return out;
                    }
                    if consumed == 0 {
                        break;
                    }
                }
            }
        }
    }
    out.done = decoder.is_done();
    out
}

/// Asserts that a body read in one piece and in two (split at `cut`) is the same body. A
/// well-framed body must agree exactly. A badly framed one must fail with the same error in
/// both, but may have delivered a different amount of payload before it: a streaming proxy
/// forwards what it has decoded, and the connection is closed at the error either way. Even
/// then, the shorter payload is a prefix of the longer one (no byte is ever changed).
pub fn assert_same_body(one: &BodyRead, two: &BodyRead, cut: usize) {
    if one.error.is_none() && two.error.is_none() {
        assert_eq!(one, two, "the body depends on the split at {cut}");
        return;
    }
    assert_eq!(
        one.error.as_ref().map(HttpError::kind),
        two.error.as_ref().map(HttpError::kind),
        "the body fails differently when split at {cut}: {one:?} / {two:?}"
    );
    let (short, long) = if one.payload.len() <= two.payload.len() {
        (&one.payload, &two.payload)
    } else {
        (&two.payload, &one.payload)
    };
    assert_eq!(
        short[..],
        long[..short.len()],
        "payload bytes differ when split at {cut}"
    );
}

/// The framing a head's fields call for, read independently of the parser: RFC 9112 §6.3 for
/// a message that has a body at all.
pub fn reference_framing(fields: &[(String, Vec<u8>)], until_close: bool) -> Option<BodyFraming> {
    let te = fields
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"));
    let lengths: Vec<&[u8]> = fields
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.as_slice())
        .collect();
    if te {
        // Only a lone `chunked` is accepted, and never beside a Content-Length.
        return lengths.is_empty().then_some(BodyFraming::Chunked);
    }
    let mut n: Option<u64> = None;
    for v in lengths {
        for part in std::str::from_utf8(v).ok()?.split(',') {
            let part = part.trim_matches([' ', '\t']);
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let value: u64 = part.parse().ok()?;
            if n.is_some_and(|m| m != value) {
                return None;
            }
            n = Some(value);
        }
    }
    Some(match n {
        Some(v) => BodyFraming::ContentLength(v),
        None if until_close => BodyFraming::UntilClose,
        None => BodyFraming::None,
    })
}

/// Small head limits, so that the fuzzer reaches them.
pub fn head_limits() -> HeadLimits {
    HeadLimits {
        max_head_bytes: 2048,
        max_headers: 16,
    }
}

/// Parses `bytes` whole on one parser, and as a first read of `bytes[..cut]` then the whole on
/// another; asserts both readings agree (the head never depends on how the bytes arrive) and
/// returns the whole one. `parse` runs one parser over a buffer.
pub fn parse_split<T: PartialEq + std::fmt::Debug>(
    bytes: &[u8],
    cut: usize,
    parse: impl Fn(&mut HeadParser, &[u8]) -> Result<Option<T>, HttpError>,
) -> Result<Option<T>, HttpError> {
    let full = parse(&mut HeadParser::new(head_limits()), bytes);
    let mut split = HeadParser::new(head_limits());
    let first = parse(&mut split, &bytes[..cut]);
    match (&first, &full) {
        (Ok(None), _) => {
            let second = parse(&mut split, bytes);
            assert_eq!(second, full, "the head depends on the split at {cut}");
        }
        (Ok(Some(h)), Ok(Some(f))) => assert_eq!(h, f, "a prefix parsed differently"),
        (Err(e), Err(f)) => assert_eq!(e.kind(), f.kind(), "a prefix failed differently"),
        (first, full) => panic!("prefix {first:?} vs whole {full:?}"),
    }
    full
}
