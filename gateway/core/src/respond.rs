//! Error responses, in one place (DESIGN §5): every refusal the gateway makes, whether a framing
//! error, a missing route, a bad key, a restriction or a quota, becomes the same kind of answer:
//! a JSON body `{"error": "<code>", "error_description": "<text>"}` with `Otoroshi-Error: true`.
//!
//! Responses are serialised into a caller-provided buffer (reused per connection), so answering
//! an error allocates nothing in the steady state. This module never panics and never puts a
//! secret in a response: codes and descriptions are static text.

use std::io::Write as _;

/// An error answer: status, stable code, human description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorReply {
    /// HTTP status.
    pub status: u16,
    /// Stable snake_case code, for programs (`"no_api_key"`).
    pub code: &'static str,
    /// Human text (`"no apikey"`).
    pub description: &'static str,
}

impl ErrorReply {
    /// A reply.
    pub const fn new(status: u16, code: &'static str, description: &'static str) -> Self {
        Self {
            status,
            code,
            description,
        }
    }

    /// No route matches the request.
    pub const NO_ROUTE: Self = Self::new(404, "route_not_found", "no route matches this request");
    /// The request is malformed.
    pub const BAD_REQUEST: Self = Self::new(400, "bad_request", "malformed request");
    /// The client was too slow to send its request head.
    pub const HEAD_TIMEOUT: Self =
        Self::new(408, "request_timeout", "request head not received in time");
    /// The client sent its request body too slowly (below the minimum body rate).
    pub const BODY_TIMEOUT: Self =
        Self::new(408, "request_timeout", "request body not received in time");
    /// Too many requests are streaming a body to this target (a share of its connections).
    pub const STREAMING_BUSY: Self = Self::new(
        503,
        "upstream_busy",
        "too many requests are streaming a body to this upstream",
    );
    /// The body is larger than the route allows.
    pub const BODY_TOO_LARGE: Self = Self::new(413, "body_too_large", "request body too large");
    /// The head is too large or has too many headers.
    pub const HEAD_TOO_LARGE: Self =
        Self::new(431, "headers_too_large", "request header fields too large");
    /// A restriction forbids the path.
    pub const FORBIDDEN: Self = Self::new(403, "forbidden", "forbidden");
    /// A restriction hides the path.
    pub const NOT_FOUND: Self = Self::new(404, "not_found", "not found");
    /// A read-only key or route got a method other than GET, HEAD or OPTIONS.
    pub const READ_ONLY: Self = Self::new(405, "method_not_allowed", "method not allowed");
    /// A quota is exhausted.
    pub const TOO_MANY_REQUESTS: Self =
        Self::new(429, "too_many_requests", "You performed too much requests");
    /// The upstream failed (connect error, bad response).
    pub const BAD_GATEWAY: Self = Self::new(502, "bad_gateway", "upstream error");
    /// The TLS handshake with the upstream failed (never a plaintext fallback).
    pub const UPSTREAM_TLS: Self = Self::new(
        502,
        "upstream_tls_failed",
        "TLS handshake with the upstream failed",
    );
    /// The upstream's certificate did not verify.
    pub const UPSTREAM_CERTIFICATE: Self = Self::new(
        502,
        "upstream_certificate_invalid",
        "the upstream's TLS certificate did not verify",
    );
    /// No upstream target is available (all circuit breakers open, no healthy target).
    pub const UNAVAILABLE: Self = Self::new(503, "service_unavailable", "no upstream available");
    /// The upstream did not answer in time.
    pub const GATEWAY_TIMEOUT: Self = Self::new(504, "gateway_timeout", "upstream timeout");
}

/// The reason phrase of a status code (empty for unknown codes: the phrase is optional).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// Appends `s` to `out` as the inside of a JSON string.
fn json_escape(out: &mut Vec<u8>, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

/// The JSON error body as a value, for the APIs that answer with `serde_json` (the admin API,
/// the OAuth2 token endpoint, the ledger's query API): `{"error": code, "error_description":
/// description}`. Callers may add fields (the admin API's `problems`), never remove these. The
/// data plane writes the same shape without allocating ([`write_body`]).
#[must_use]
pub fn error_json(code: &str, description: &str) -> serde_json::Value {
    serde_json::json!({"error": code, "error_description": description})
}

/// Appends the JSON body of `reply` to `out`.
pub fn write_body(out: &mut Vec<u8>, reply: &ErrorReply) {
    write_body_traced(out, reply, None);
}

/// [`write_body`] with the request's trace id (`"trace_id"`), so a refusal can be found in a
/// trace and in the access log.
pub fn write_body_traced(
    out: &mut Vec<u8>,
    reply: &ErrorReply,
    trace: Option<&crate::trace::TraceContext>,
) {
    out.extend_from_slice(b"{\"error\":\"");
    json_escape(out, reply.code);
    out.extend_from_slice(b"\",\"error_description\":\"");
    json_escape(out, reply.description);
    if let Some(trace) = trace {
        out.extend_from_slice(b"\",\"trace_id\":\"");
        trace.write_trace_id(out);
    }
    out.extend_from_slice(b"\"}");
}

/// Appends a whole HTTP/1.1 error response to `out`: status line, `content-type`,
/// `Otoroshi-Error: true`, `content-length`, `connection: close` when `close`, the `extra`
/// headers (quota headers, `Retry-After`, a request id), and the JSON body. For a HEAD request
/// pass `head_request`: the headers announce the body's length but the body is left out.
pub fn write_error(
    out: &mut Vec<u8>,
    reply: &ErrorReply,
    extra: &[(&str, &[u8])],
    close: bool,
    head_request: bool,
) {
    write_error_raw(out, reply, extra, b"", close, head_request);
}

/// [`write_error`], plus `raw` header lines (each ending in CRLF, e.g. the quota headers)
/// written as they are after the `extra` headers.
pub fn write_error_raw(
    out: &mut Vec<u8>,
    reply: &ErrorReply,
    extra: &[(&str, &[u8])],
    raw: &[u8],
    close: bool,
    head_request: bool,
) {
    write_error_traced(out, reply, extra, raw, close, head_request, None);
}

/// [`write_error_raw`] with the request's trace id in the body.
pub fn write_error_traced(
    out: &mut Vec<u8>,
    reply: &ErrorReply,
    extra: &[(&str, &[u8])],
    raw: &[u8],
    close: bool,
    head_request: bool,
    trace: Option<&crate::trace::TraceContext>,
) {
    let body_start = out.len();
    write_body_traced(out, reply, trace);
    // The body is written first to learn its length, then moved behind the head: error bodies are
    // under 200 bytes, so the rotation is cheap and the buffer needs no second allocation.
    let body_len = out.len() - body_start;
    let head_start = out.len();
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\notoroshi-error: true\r\ncontent-length: {}\r\n",
        reply.status,
        reason_phrase(reply.status),
        body_len
    );
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    for (name, value) in extra {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(raw);
    out.extend_from_slice(b"\r\n");
    if let Some(tail) = out.get_mut(body_start..) {
        tail.rotate_left(head_start - body_start);
    }
    if head_request {
        out.truncate(out.len() - body_len);
    }
}

#[cfg(test)]
mod tests;
