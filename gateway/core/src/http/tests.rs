//! Tests of the HTTP/1.1 codec, by concern. Shared helpers live here.

mod body;
mod hop;
mod hostile;
mod props;
mod request;
mod response;

use super::*;

/// An owned summary of a request head, so results of different parses can be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ReqSummary {
    method: Method,
    method_str: String,
    path: String,
    query: Option<String>,
    form: TargetForm,
    version: Version,
    headers: Vec<(String, Vec<u8>)>,
    head_len: usize,
    framing: BodyFraming,
    keep_alive: bool,
    expect_continue: bool,
    host: Option<Vec<u8>>,
    upgrade: Option<Vec<u8>>,
}

impl ReqSummary {
    fn of(head: &RequestHead<'_>) -> Self {
        Self {
            method: head.method(),
            method_str: head.method_str().to_owned(),
            path: head.path().to_owned(),
            query: head.query().map(str::to_owned),
            form: head.target().form(),
            version: head.version(),
            headers: head
                .headers()
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_vec()))
                .collect(),
            head_len: head.head_len(),
            framing: head.framing(),
            keep_alive: head.keep_alive(),
            expect_continue: head.expect_continue(),
            host: head.host().map(<[u8]>::to_vec),
            upgrade: head.upgrade().map(<[u8]>::to_vec),
        }
    }
}

/// An owned summary of a response head.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ResSummary {
    status: u16,
    reason: String,
    version: Version,
    headers: Vec<(String, Vec<u8>)>,
    head_len: usize,
    framing: BodyFraming,
    keep_alive: bool,
    upgrade: Option<Vec<u8>>,
}

impl ResSummary {
    fn of(head: &ResponseHead<'_>) -> Self {
        Self {
            status: head.status(),
            reason: head.reason().to_owned(),
            version: head.version(),
            headers: head
                .headers()
                .iter()
                .map(|h| (h.name.to_owned(), h.value.to_vec()))
                .collect(),
            head_len: head.head_len(),
            framing: head.framing(),
            keep_alive: head.keep_alive(),
            upgrade: head.upgrade().map(<[u8]>::to_vec),
        }
    }
}

/// Parses a request in one feed with default limits.
fn req(bytes: &[u8]) -> Result<Option<ReqSummary>, HttpError> {
    let mut parser = HeadParser::default();
    parser
        .parse_request(bytes)
        .map(|head| head.as_ref().map(ReqSummary::of))
}

/// Parses a request that must be complete and valid.
fn req_ok(bytes: &[u8]) -> ReqSummary {
    match req(bytes) {
        Ok(Some(summary)) => summary,
        other => panic!(
            "expected a complete request, got {other:?} for {:?}",
            show(bytes)
        ),
    }
}

/// Parses a request that must fail; returns the error.
fn req_err(bytes: &[u8]) -> HttpError {
    match req(bytes) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?} for {:?}", show(bytes)),
    }
}

/// Feeds `bytes` to one parser as a growing buffer cut at `cuts` (sorted offsets), then whole;
/// returns the first result that is not `Ok(None)`.
fn req_fed(bytes: &[u8], cuts: &[usize]) -> Result<Option<ReqSummary>, HttpError> {
    let mut parser = HeadParser::default();
    for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
        match parser.parse_request(&bytes[..cut]) {
            Ok(None) => {}
            Ok(Some(head)) => return Ok(Some(ReqSummary::of(&head))),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Parses a response in one feed.
fn res(bytes: &[u8], method: Method) -> Result<Option<ResSummary>, HttpError> {
    let mut parser = HeadParser::default();
    parser
        .parse_response(bytes, method)
        .map(|head| head.as_ref().map(ResSummary::of))
}

fn res_ok(bytes: &[u8], method: Method) -> ResSummary {
    match res(bytes, method) {
        Ok(Some(summary)) => summary,
        other => panic!(
            "expected a complete response, got {other:?} for {:?}",
            show(bytes)
        ),
    }
}

fn res_err(bytes: &[u8], method: Method) -> HttpError {
    match res(bytes, method) {
        Err(e) => e,
        other => panic!("expected an error, got {other:?} for {:?}", show(bytes)),
    }
}

/// What decoding a whole body produced.
#[derive(Debug, PartialEq, Eq)]
struct BodyOutcome {
    payload: Vec<u8>,
    trailers: Vec<u8>,
    consumed: usize,
    done: bool,
}

/// Decodes a body fed in pieces cut at `cuts` (sorted offsets), checking the decoder's promises
/// on every call.
fn decode_fed(
    decoder: &mut BodyDecoder,
    input: &[u8],
    cuts: &[usize],
) -> Result<BodyOutcome, HttpError> {
    let mut outcome = BodyOutcome {
        payload: Vec::new(),
        trailers: Vec::new(),
        consumed: 0,
        done: false,
    };
    for end in cuts.iter().copied().chain(std::iter::once(input.len())) {
        while outcome.consumed < end {
            let piece = &input[outcome.consumed..end];
            let out = decoder.decode(piece)?;
            assert!(out.consumed <= piece.len());
            assert!(out.data.end <= out.consumed && out.trailers.end <= out.consumed);
            outcome.payload.extend_from_slice(&piece[out.data.clone()]);
            outcome
                .trailers
                .extend_from_slice(&piece[out.trailers.clone()]);
            outcome.consumed += out.consumed;
            if out.done {
                outcome.done = true;
                return Ok(outcome);
            }
            assert!(out.consumed > 0, "no progress on a non-empty piece");
        }
    }
    outcome.done = decoder.is_done();
    Ok(outcome)
}

/// Decodes a chunked request body fed in one piece with default limits.
fn chunked(input: &[u8]) -> Result<BodyOutcome, HttpError> {
    let mut decoder = BodyDecoder::request(BodyFraming::Chunked, BodyLimits::default()).unwrap();
    decode_fed(&mut decoder, input, &[])
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A typical API GET, about 400 bytes.
const TYPICAL_GET: &[u8] = b"GET /api/v1/users/42/orders?limit=20&cursor=abc HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: application/json, text/plain, */*\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJl\r\n\
Cookie: session=8f14e45fceea167a5a36dedd4bea2543; theme=dark\r\n\
X-Request-Id: 3f2a9c1e-7b4d-4e8a-9f00-1234567890ab\r\n\
\r\n";
