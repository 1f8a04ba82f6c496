//! Property tests: feeding order never changes a result, chunked and Content-Length bodies
//! round-trip under any split, and no input panics.

use proptest::prelude::*;

use super::*;

/// A generated valid request head and what it should parse to.
#[derive(Debug, Clone)]
struct GenRequest {
    bytes: Vec<u8>,
    path: String,
    framing: BodyFraming,
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

fn field_value() -> impl Strategy<Value = String> {
    // Visible ASCII with inner spaces and tabs; obs-text is covered by the mutation property.
    "[!-~]([ -~\t]{0,40}[!-~])?"
}

fn request_head() -> impl Strategy<Value = GenRequest> {
    let method = prop::sample::select(vec![
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "X-CUSTOM",
    ]);
    let path = "(/[a-zA-Z0-9._~%!$&'()*+,;=:@-]{0,12}){1,5}";
    let query = prop::option::of("[a-zA-Z0-9=&%._~-]{0,30}");
    let version = prop::bool::ANY;
    let fields = prop::collection::vec((token(), field_value()), 0..20);
    let framing = prop_oneof![
        Just(BodyFraming::None),
        (0u64..1_000_000).prop_map(BodyFraming::ContentLength),
        Just(BodyFraming::Chunked),
    ];
    let leading_crlfs = 0usize..3;
    (method, path, query, version, fields, framing, leading_crlfs).prop_map(
        |(method, path, query, http11, fields, framing, leading)| {
            let mut text = "\r\n".repeat(leading);
            let target = match &query {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            };
            let framing = if http11 { framing } else { BodyFraming::None };
            let version = if http11 { "HTTP/1.1" } else { "HTTP/1.0" };
            text.push_str(&format!("{method} {target} {version}\r\n"));
            if http11 {
                text.push_str("Host: gen.example:8080\r\n");
            }
            for (name, value) in &fields {
                // Prefixed so generated names never collide with fields that carry meaning.
                text.push_str(&format!("X-{name}: {value}\r\n"));
            }
            match framing {
                BodyFraming::ContentLength(n) => text.push_str(&format!("Content-Length: {n}\r\n")),
                BodyFraming::Chunked => text.push_str("Transfer-Encoding: chunked\r\n"),
                BodyFraming::None | BodyFraming::UntilClose => {}
            }
            text.push_str("\r\n");
            GenRequest {
                bytes: text.into_bytes(),
                path,
                framing,
            }
        },
    )
}

/// Sorted, distinct cut points inside `0..len`.
fn cuts_for(len: usize, raw: &[prop::sample::Index]) -> Vec<usize> {
    let mut cuts: Vec<usize> = raw.iter().map(|i| i.index(len.max(1))).collect();
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

/// Parses `bytes` as a growing buffer cut at `cuts` with fresh parser state, for requests and
/// responses; the results must equal single-feed parsing.
fn assert_feed_order_irrelevant(bytes: &[u8], cuts: &[usize]) {
    assert_eq!(req_fed(bytes, cuts), req(bytes), "request, cuts {cuts:?}");
    let mut parser = HeadParser::default();
    let mut fed = Ok(None);
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        fed = parser
            .parse_response(&bytes[..cut], Method::Get)
            .map(|h| h.as_ref().map(ResSummary::of));
        if !matches!(fed, Ok(None)) {
            break;
        }
    }
    assert_eq!(fed, res(bytes, Method::Get), "response, cuts {cuts:?}");
}

/// Chunk-encodes `payload` with chunk sizes cycling through `sizes`, optional extensions and
/// trailers.
fn chunk_encode(
    payload: &[u8],
    sizes: &[usize],
    ext: bool,
    trailers: &[(String, String)],
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = payload;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        i += 1;
        let (chunk, tail) = rest.split_at(n);
        out.extend_from_slice(format!("{n:x}").as_bytes());
        if ext && i % 2 == 0 {
            out.extend_from_slice(b";ext=\"v;v\"");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
        rest = tail;
    }
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out
}

proptest! {
    #[test]
    fn any_valid_head_parses_the_same_under_any_split(
        generated in request_head(),
        raw_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let single = req(&generated.bytes);
        let summary = single.clone().unwrap().unwrap();
        prop_assert_eq!(&summary.path, &generated.path);
        prop_assert_eq!(summary.framing, generated.framing);
        prop_assert_eq!(summary.head_len, generated.bytes.len());
        let cuts = cuts_for(generated.bytes.len(), &raw_cuts);
        prop_assert_eq!(req_fed(&generated.bytes, &cuts), single);
    }

    #[test]
    fn chunked_bodies_round_trip_under_any_split(
        payload in prop::collection::vec(any::<u8>(), 0..3000),
        sizes in prop::collection::vec(1usize..700, 1..8),
        ext in prop::bool::ANY,
        trailers in prop::collection::vec((token(), field_value()), 0..3),
        raw_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let encoded = chunk_encode(&payload, &sizes, ext, &trailers);
        let mut input = encoded.clone();
        input.extend_from_slice(b"GET /next HTTP/1.1\r\n");
        let cuts = cuts_for(input.len(), &raw_cuts);
        let mut decoder = BodyDecoder::request(BodyFraming::Chunked, BodyLimits::default()).unwrap();
        let out = decode_fed(&mut decoder, &input, &cuts).unwrap();
        prop_assert!(out.done);
        prop_assert_eq!(out.consumed, encoded.len());
        prop_assert_eq!(out.payload, payload);
        let expected_trailers: String = trailers
            .iter()
            .map(|(n, v)| format!("{n}: {v}\r\n"))
            .chain(std::iter::once("\r\n".to_owned()))
            .collect();
        prop_assert_eq!(out.trailers, expected_trailers.into_bytes());
    }

    #[test]
    fn content_length_bodies_round_trip_under_any_split(
        payload in prop::collection::vec(any::<u8>(), 0..3000),
        raw_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..20),
    ) {
        let mut input = payload.clone();
        input.extend_from_slice(b"NEXT");
        let cuts = cuts_for(input.len(), &raw_cuts);
        let framing = BodyFraming::ContentLength(payload.len() as u64);
        let mut decoder = BodyDecoder::request(framing, BodyLimits::default()).unwrap();
        let out = decode_fed(&mut decoder, &input, &cuts).unwrap();
        prop_assert!(out.done);
        prop_assert_eq!(out.consumed, payload.len());
        prop_assert_eq!(out.payload, payload);
    }

    #[test]
    fn random_bytes_never_panic_and_feed_order_is_irrelevant(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        raw_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let cuts = cuts_for(bytes.len(), &raw_cuts);
        assert_feed_order_irrelevant(&bytes, &cuts);
        let _ = chunked(&bytes);
    }

    #[test]
    fn mutated_heads_never_panic_and_feed_order_is_irrelevant(
        generated in request_head(),
        mutations in prop::collection::vec(
            (any::<prop::sample::Index>(), any::<u8>(), 0u8..3),
            1..6,
        ),
        raw_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut bytes = generated.bytes;
        for (at, byte, op) in mutations {
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ => {
                    bytes.remove(i);
                }
            }
            if bytes.is_empty() {
                break;
            }
        }
        let cuts = cuts_for(bytes.len(), &raw_cuts);
        assert_feed_order_irrelevant(&bytes, &cuts);
    }

    #[test]
    fn mutated_chunked_bodies_never_panic(
        payload in prop::collection::vec(any::<u8>(), 0..200),
        sizes in prop::collection::vec(1usize..50, 1..4),
        mutations in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        raw_cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut input = chunk_encode(&payload, &sizes, true, &[]);
        for (at, byte) in mutations {
            let i = at.index(input.len());
            input[i] = byte;
        }
        let cuts = cuts_for(input.len(), &raw_cuts);
        let mut decoder = BodyDecoder::response(BodyFraming::Chunked, BodyLimits::default()).unwrap();
        // Split or not, the outcome must be the same.
        let split = decode_fed(&mut decoder, &input, &cuts);
        let whole = chunked(&input);
        match (split, whole) {
            (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
            (Err(a), Err(b)) => prop_assert_eq!(a.kind(), b.kind()),
            (a, b) => prop_assert!(false, "split {:?} vs whole {:?}", a, b),
        }
    }
}
