//! An upstream's bytes: response head (for a GET, HEAD or POST) and body framing.
//!
//! Invariants: the outcome does not depend on the split of the head; a parsed head re-serialised
//! parses the same; the framing is RFC 9112 §6.3's reading of the status, the request method and
//! the fields (`common::reference_framing`: no body for HEAD, 1xx, 204 and 304); the body decoder
//! agrees with itself whatever the pieces, and `UntilClose` takes everything.
#![no_main]

use gateway_core::http::{BodyDecoder, BodyFraming, HeadLimits, HeadParser, Method, ResponseHead};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

#[derive(Debug, PartialEq, Eq)]
struct Seen {
    status: u16,
    reason: String,
    http10: bool,
    fields: Vec<(String, Vec<u8>)>,
    framing: BodyFraming,
    interim: bool,
    head_len: usize,
}

fn seen(head: &ResponseHead<'_>) -> Seen {
    Seen {
        status: head.status(),
        reason: head.reason().to_owned(),
        http10: head.version() == gateway_core::http::Version::Http10,
        fields: head
            .headers()
            .iter()
            .map(|h| (h.name.to_owned(), h.value.to_vec()))
            .collect(),
        framing: head.framing(),
        interim: head.is_interim(),
        head_len: head.head_len(),
    }
}

fuzz_target!(|data: &[u8]| {
    let [m, a, b, bytes @ ..] = data else { return };
    let method = match m % 3 {
        0 => Method::Get,
        1 => Method::Head,
        _ => Method::Post,
    };
    let cut_head = usize::from(*a) * bytes.len() / 256;
    let full = common::parse_split(bytes, cut_head, |p, buf| {
        p.parse_response(buf, method).map(|h| h.map(|h| seen(&h)))
    });

    let Ok(Some(head)) = full else { return };
    assert!((100..=599).contains(&head.status));
    assert_eq!(
        head.interim,
        (100..200).contains(&head.status) && head.status != 101
    );

    let mut again = Vec::new();
    again.extend_from_slice(if head.http10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    again.extend_from_slice(format!("{} ", head.status).as_bytes());
    again.extend_from_slice(head.reason.as_bytes());
    again.extend_from_slice(b"\r\n");
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
        .parse_response(&again, method)
        .unwrap_or_else(|e| panic!("the re-serialised head is refused: {e:?}\n{again:?}"))
        .map(|h| seen(&h))
        .unwrap_or_else(|| panic!("the re-serialised head is incomplete"));
    assert_eq!(
        (
            reparsed.status,
            &reparsed.reason,
            reparsed.http10,
            &reparsed.fields,
            reparsed.framing
        ),
        (
            head.status,
            &head.reason,
            head.http10,
            &head.fields,
            head.framing
        ),
        "re-serialised head differs"
    );

    let bodyless = method == Method::Head
        || (100..200).contains(&head.status)
        || head.status == 204
        || head.status == 304;
    let expected = if bodyless {
        Some(BodyFraming::None)
    } else {
        common::reference_framing(&head.fields, true)
    };
    assert_eq!(
        Some(head.framing),
        expected,
        "framing disagrees: {:?}",
        head.fields
    );

    let body = &bytes[head.head_len..];
    let cut_body = usize::from(*b) * body.len() / 256;
    let new = || BodyDecoder::response(head.framing, common::body_limits());
    let one = common::read_body(new, body, &[]);
    let two = common::read_body(new, body, &[cut_body]);
    common::assert_same_body(&one, &two, cut_body);
});
