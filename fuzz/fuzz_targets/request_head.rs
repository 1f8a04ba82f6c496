//! A client's bytes: request head and body framing.
//!
//! Invariants checked on every input:
//! - the outcome does not depend on how the bytes arrive: the head parsed from the whole buffer
//!   equals the head parsed after a first read of a prefix (which may only say "incomplete",
//!   give the same head, or the same error);
//! - a parsed head re-serialised (request line and field lines, as parsed) parses to the same
//!   method, target, version, fields and framing;
//! - its framing is what the fields call for, read independently (`common::reference_framing`);
//! - the body decoder gives the same payload, trailers, end and error whatever the pieces the
//!   body arrives in, and never reads past its input.
#![no_main]

use gateway_core::http::{BodyDecoder, BodyFraming, HeadLimits, HeadParser, RequestHead};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

/// What the tests compare of a head.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    method: String,
    target: String,
    http10: bool,
    fields: Vec<(String, Vec<u8>)>,
    framing: BodyFraming,
    head_len: usize,
}

fn seen(head: &RequestHead<'_>) -> Seen {
    Seen {
        method: head.method_str().to_owned(),
        target: head.target().raw().to_owned(),
        http10: head.version() == gateway_core::http::Version::Http10,
        fields: head
            .headers()
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect(),
        framing: head.framing(),
        head_len: head.head_len(),
    }
}

fuzz_target!(|data: &[u8]| {
    let [a, b, bytes @ ..] = data else { return };
    let cut_head = usize::from(*a) * bytes.len() / 256;
    let full = common::parse_split(bytes, cut_head, |p, buf| {
        p.parse_request(buf).map(|h| h.map(|h| seen(&h)))
    });

    let Ok(Some(head)) = full else { return };
    assert!(head.head_len <= bytes.len());

    // Re-serialised, it parses to the same head.
    let mut again = Vec::new();
    again.extend_from_slice(head.method.as_bytes());
    again.push(b' ');
    again.extend_from_slice(head.target.as_bytes());
    again.extend_from_slice(if head.http10 {
        b" HTTP/1.0\r\n"
    } else {
        b" HTTP/1.1\r\n"
    });
    for (name, value) in &head.fields {
        again.extend_from_slice(name.as_bytes());
        again.extend_from_slice(b": ");
        again.extend_from_slice(value);
        again.extend_from_slice(b"\r\n");
    }
    again.extend_from_slice(b"\r\n");
    let mut p = HeadParser::new(HeadLimits {
        max_head_bytes: again.len().max(2048),
        max_headers: 16,
    });
    let reparsed = p
        .parse_request(&again)
        .unwrap_or_else(|e| panic!("the re-serialised head is refused: {e:?}\n{again:?}"))
        .map(|h| seen(&h))
        .unwrap_or_else(|| panic!("the re-serialised head is incomplete"));
    assert_eq!(
        (
            &reparsed.method,
            &reparsed.target,
            reparsed.http10,
            &reparsed.fields,
            reparsed.framing
        ),
        (
            &head.method,
            &head.target,
            head.http10,
            &head.fields,
            head.framing
        ),
        "re-serialised head differs"
    );

    // The framing is what the fields say.
    assert_eq!(
        Some(head.framing),
        common::reference_framing(&head.fields, false),
        "framing disagrees with the fields: {:?}",
        head.fields
    );

    // The body: same result in one piece and in two.
    let body = &bytes[head.head_len..];
    let cut_body = usize::from(*b) * body.len() / 256;
    let new = || BodyDecoder::request(head.framing, common::body_limits());
    let one = common::read_body(new, body, &[]);
    let two = common::read_body(new, body, &[cut_body]);
    common::assert_same_body(&one, &two, cut_body);
    if let BodyFraming::ContentLength(n) = head.framing {
        if one.error.is_none() && one.done {
            assert_eq!(one.payload.len() as u64, n);
            assert_eq!(one.consumed as u64, n);
        }
    }
    if head.framing == BodyFraming::None {
        assert!(one.done && one.payload.is_empty() && one.consumed == 0);
    }
});
