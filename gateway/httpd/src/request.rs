//! A request as a handler sees it: the owned [`Head`] (all [`Handler::authorize`] gets) and,
//! once authorized, the [`Request`] with its body.
//!
//! [`Handler::authorize`]: crate::Handler::authorize

use std::net::SocketAddr;

use gateway_core::http::{BodyFraming, Method, RequestHead, Version};

/// A parsed request head, owned (the connection's buffer moves on to the body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Method, as sent (methods are case-sensitive).
    pub method: String,
    /// The target in origin form, still percent-encoded: path, then `?query` if one was sent
    /// (an absolute-form target is reduced to this).
    pub target: String,
    /// The path without the query, percent-decoded (lossily: invalid UTF-8 becomes U+FFFD).
    pub path: String,
    /// Query parameters, percent-decoded (`+` is a space), in order.
    pub query: Vec<(String, String)>,
    /// Header fields, names lower case, values trimmed (lossy UTF-8), in order.
    pub headers: Vec<(String, String)>,
    /// The peer's address.
    pub peer: SocketAddr,
    pub(crate) framing: BodyFraming,
    pub(crate) keep_alive: bool,
    pub(crate) expect_continue: bool,
}

impl Head {
    /// Copies what a handler needs out of a parsed head.
    pub(crate) fn new(parsed: &RequestHead<'_>, peer: SocketAddr) -> Self {
        let raw_path = parsed.path();
        let raw_query = parsed.query();
        let target = match raw_query {
            Some(q) => format!("{raw_path}?{q}"),
            None => raw_path.to_owned(),
        };
        let query = raw_query
            .unwrap_or("")
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (decode(k), decode(v))
            })
            .collect();
        let headers = parsed
            .headers()
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_lowercase(),
                    String::from_utf8_lossy(h.value).trim().to_owned(),
                )
            })
            .collect();
        Self {
            method: parsed.method_str().to_owned(),
            target,
            path: decode(raw_path),
            query,
            headers,
            peer,
            framing: parsed.framing(),
            keep_alive: parsed.keep_alive(),
            expect_continue: parsed.expect_continue() && parsed.version() == Version::Http11,
        }
    }

    /// The value of the first header `name` (give it lower case).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first query parameter `name`.
    #[must_use]
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The query as sent (still percent-encoded), without the `?`; empty when there is none.
    #[must_use]
    pub fn raw_query(&self) -> &str {
        self.target.split_once('?').map_or("", |(_, q)| q)
    }

    /// Whether the request announces a body (a `Content-Length` above 0, or chunked).
    #[must_use]
    pub fn has_body(&self) -> bool {
        !matches!(
            self.framing,
            BodyFraming::None | BodyFraming::ContentLength(0)
        )
    }

    /// The declared `Content-Length`, if the body is framed by one.
    #[must_use]
    pub fn content_length(&self) -> Option<u64> {
        match self.framing {
            BodyFraming::ContentLength(n) => Some(n),
            _ => None,
        }
    }

    /// Whether this is a HEAD request (its answer carries no body).
    #[must_use]
    pub fn is_head(&self) -> bool {
        Method::from_token(&self.method) == Method::Head
    }
}

/// An authorized request with its body (empty when none was sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The head.
    pub head: Head,
    /// The body, decoded from its framing (chunked bodies are de-chunked).
    pub body: Vec<u8>,
}

impl Request {
    /// The value of the first header `name` (give it lower case).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// The first query parameter `name`.
    #[must_use]
    pub fn param(&self, name: &str) -> Option<&str> {
        self.head.param(name)
    }
}

pub use gateway_core::http::decode_component;

/// Percent-decoding, lossy (`+` is a space; a `%` not followed by two hex digits is kept).
pub(crate) fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(v) = hex {
                    out.push(v);
                    i += 3;
                    continue;
                }
                out.push(b);
            }
            b'+' => out.push(b' '),
            _ => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests;
