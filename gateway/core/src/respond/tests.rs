use super::*;

fn parse(bytes: &[u8]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(bytes).unwrap() {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => panic!("partial"),
    };
    let hs = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8(h.value.to_vec()).unwrap(),
            )
        })
        .collect();
    (resp.code.unwrap(), hs, bytes[n..].to_vec())
}

fn header<'a>(hs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    hs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

#[test]
fn error_response_has_json_body_and_otoroshi_error_header() {
    let mut out = Vec::new();
    write_error(
        &mut out,
        &ErrorReply::TOO_MANY_REQUESTS,
        &[("retry-after", b"7")],
        false,
        false,
    );
    let (status, hs, body) = parse(&out);
    assert_eq!(status, 429);
    assert_eq!(header(&hs, "otoroshi-error"), Some("true"));
    assert_eq!(header(&hs, "content-type"), Some("application/json"));
    assert_eq!(header(&hs, "retry-after"), Some("7"));
    assert_eq!(header(&hs, "connection"), None);
    assert_eq!(
        header(&hs, "content-length").unwrap(),
        body.len().to_string()
    );
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["error"], "too_many_requests");
    assert_eq!(json["error_description"], "You performed too much requests");
    assert!(out.starts_with(b"HTTP/1.1 429 Too Many Requests\r\n"));
}

#[test]
fn close_and_head_request() {
    let mut out = b"previous bytes stay".to_vec();
    let keep = out.len();
    write_error(&mut out, &ErrorReply::BAD_REQUEST, &[], true, true);
    assert_eq!(&out[..keep], b"previous bytes stay");
    let (status, hs, body) = parse(&out[keep..]);
    assert_eq!(status, 400);
    assert_eq!(header(&hs, "connection"), Some("close"));
    assert!(body.is_empty(), "HEAD: no body");
    let announced: usize = header(&hs, "content-length").unwrap().parse().unwrap();
    assert!(announced > 0);
}

#[test]
fn escaping_of_codes_and_descriptions() {
    let reply = ErrorReply::new(400, "a\"b", "line\nbreak \\ tab\t ctl\u{1} é");
    let mut out = Vec::new();
    write_body(&mut out, &reply);
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(json["error"], "a\"b");
    assert_eq!(json["error_description"], "line\nbreak \\ tab\t ctl\u{1} é");
}

#[test]
fn every_named_reply_serialises_to_valid_json_with_its_status() {
    for r in [
        ErrorReply::NO_ROUTE,
        ErrorReply::BAD_REQUEST,
        ErrorReply::HEAD_TIMEOUT,
        ErrorReply::BODY_TOO_LARGE,
        ErrorReply::HEAD_TOO_LARGE,
        ErrorReply::FORBIDDEN,
        ErrorReply::NOT_FOUND,
        ErrorReply::READ_ONLY,
        ErrorReply::TOO_MANY_REQUESTS,
        ErrorReply::BAD_GATEWAY,
        ErrorReply::UNAVAILABLE,
        ErrorReply::GATEWAY_TIMEOUT,
    ] {
        let mut out = Vec::new();
        write_error(&mut out, &r, &[], false, false);
        let (status, _, body) = parse(&out);
        assert_eq!(status, r.status);
        assert!(!reason_phrase(status).is_empty(), "{status} has a phrase");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], r.code);
    }
}

#[test]
fn unknown_status_has_empty_phrase_and_still_parses() {
    let mut out = Vec::new();
    write_error(&mut out, &ErrorReply::new(599, "x", "y"), &[], false, false);
    assert!(out.starts_with(b"HTTP/1.1 599 \r\n"));
    assert_eq!(parse(&out).0, 599);
}

#[test]
fn the_hot_path_body_is_the_shape_of_error_json() {
    for reply in [
        ErrorReply::new(401, "no_api_key", "no apikey"),
        ErrorReply::new(400, "bad\"code\\", "line\nbreak \u{1} caf\u{e9}"),
    ] {
        let mut out = Vec::new();
        write_body(&mut out, &reply);
        let written: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(written, error_json(reply.code, reply.description));
    }
}
