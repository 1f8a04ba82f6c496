//! Sans-IO HTTP/1.1 codec: request and response heads, body framing, hop-by-hop rules.
//!
//! The IO shell reads bytes into its own buffer and hands them here; this module says whether a
//! head is complete, what it contains, how its body is delimited and which payload bytes to
//! forward. It parses strictly: anything two HTTP implementations could frame differently
//! (Content-Length with Transfer-Encoding, duplicate Content-Length, bare CR or LF, obs-fold,
//! transfer codings other than chunked) is an error, because a gateway that disagrees with its
//! upstream about where a message ends is a request-smuggling gateway.
//!
//! It must never do IO, read a clock, allocate per message (the only allocation is the header
//! scratch in [`HeadParser::new`]) or panic on any input: every failure is an [`HttpError`] that
//! says which side sent the bad bytes and which status the client gets.
//!
//! - [`HeadParser`] parses heads incrementally into [`RequestHead`] and [`ResponseHead`].
//! - [`BodyDecoder`] (and [`ChunkedDecoder`]) delimit bodies without copying them.
//! - [`is_hop_by_hop`] and [`Headers::end_to_end`] say what a proxy must not forward.
//! - [`canonical_path`] and [`canonical_host`] give the one form of a target that is routed,
//!   checked and forwarded.

mod body;
mod chunked;
mod error;
mod framing;
mod head;
mod headers;
mod hop;
mod scan;
mod target;

pub use body::{BodyDecoder, BodyFraming, BodyLimits, Decoded};
pub use chunked::{ChunkedDecoder, ChunkedLimits};
pub use error::{ErrorKind, HttpError, Side};
pub use gateway_model::canon::{MAX_HOST, PathError, PathPolicy, canonical_host, canonical_path};
pub use head::{HeadLimits, HeadParser, MAX_HEADERS, RequestHead, ResponseHead};
pub use headers::{Header, Headers, HeadersIter};
pub use hop::{connection_lists, is_always_hop_by_hop, is_hop_by_hop};
pub use target::{Method, Target, TargetForm, Version};

#[cfg(test)]
mod tests;

/// Percent-decoding of a query component, strict (`+` is a space): `None` for a `%` not
/// followed by two hex digits, or bytes that are not UTF-8. For handlers that refuse such input
/// with a 400 rather than guess.
pub fn decode_component(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let text = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(text, 16).ok()?);
                i += 3;
                continue;
            }
            b'+' => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}
