//! Responses, the one writer of the JSON error shape, and their encoding on the wire.

use std::fmt::Write as _;

use serde_json::Value;

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `content-type`.
    pub content_type: &'static str,
    /// Extra header fields (`content-type`, `content-length` and `connection` are written by
    /// the server; CR and LF are removed from values).
    pub headers: Vec<(&'static str, String)>,
    /// Body (not sent in answer to HEAD; its length still is).
    pub body: Vec<u8>,
}

/// The JSON error shape every API of Tollgate answers with:
/// `{"error": "<code>", "error_description": "<text>"}` (gateway-core's one definition, which
/// the data plane writes without allocating). Callers may add fields (the admin API's
/// `problems`), never remove these.
pub use gateway_core::respond::error_json as error_body;

impl Response {
    /// A compact JSON response.
    #[must_use]
    pub fn json(status: u16, value: &Value) -> Self {
        Self::text(status, "application/json", value.to_string())
    }

    /// An indented JSON response, ending with a newline.
    #[must_use]
    pub fn json_pretty(status: u16, value: &Value) -> Self {
        let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
        body.push(b'\n');
        Self::text(status, "application/json", body)
    }

    /// A response with any content type.
    #[must_use]
    pub fn text(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            content_type,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// An error in the JSON error shape ([`error_body`]).
    #[must_use]
    pub fn error(status: u16, code: &str, description: &str) -> Self {
        Self::json(status, &error_body(code, description))
    }

    /// Adds a header field.
    #[must_use]
    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The status line and header section. `content-length` is the body's length, also in an
    /// answer to HEAD, whose body the connection then leaves out.
    pub(crate) fn encode_head(&self, keep_alive: bool) -> Vec<u8> {
        let mut head = String::with_capacity(160);
        let _ = write!(
            head,
            "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
            self.status,
            gateway_core::respond::reason_phrase(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            let value: String = value
                .chars()
                .filter(|c| !matches!(c, '\r' | '\n'))
                .collect();
            let _ = write!(head, "{name}: {value}\r\n");
        }
        head.push_str(if keep_alive {
            "connection: keep-alive\r\n\r\n"
        } else {
            "connection: close\r\n\r\n"
        });
        head.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_have_the_one_shape() {
        let r = Response::error(413, "body_too_large", "request body too large");
        assert_eq!(r.status, 413);
        assert_eq!(r.content_type, "application/json");
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(
            v,
            json!({"error": "body_too_large", "error_description": "request body too large"})
        );
    }

    #[test]
    fn head_carries_length_type_connection_and_no_injected_lines() {
        let r = Response::text(200, "text/plain", "hello")
            .with_header("x-evil", "a\r\nset-cookie: b".to_owned());
        let head = String::from_utf8(r.encode_head(true)).unwrap();
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\
             x-evil: aset-cookie: b\r\nconnection: keep-alive\r\n\r\n"
        );
        let head = String::from_utf8(Response::error(503, "busy", "x").encode_head(false)).unwrap();
        assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(head.ends_with("connection: close\r\n\r\n"));
    }

    #[test]
    fn pretty_json_ends_with_a_newline() {
        let r = Response::json_pretty(200, &json!({"a": 1}));
        assert_eq!(r.body, b"{\n  \"a\": 1\n}\n");
    }
}
