//! Request methods, versions and request-target forms (RFC 9112 §3).

use super::error::ErrorKind;

/// The request method. Methods are case-sensitive: `get` is [`Method::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET
    Get,
    /// HEAD: its response never has a body.
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// CONNECT: refused by the request parser, kept so response framing stays complete.
    Connect,
    /// OPTIONS: the only method allowed the asterisk-form target.
    Options,
    /// TRACE
    Trace,
    /// PATCH
    Patch,
    /// Any other token; the text is available from the head.
    Other,
}

impl Method {
    /// Classifies a method token.
    #[must_use]
    pub fn from_token(token: &str) -> Self {
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "CONNECT" => Method::Connect,
            "OPTIONS" => Method::Options,
            "TRACE" => Method::Trace,
            "PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }
}

/// The protocol version of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    /// HTTP/1.0: connections close after one exchange unless keep-alive is asked for.
    Http10,
    /// HTTP/1.1: persistent connections by default.
    Http11,
}

/// Which of the request-target forms the request used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetForm {
    /// `/path?query`, the usual form.
    Origin,
    /// `http://authority/path?query`, as sent to proxies; the authority replaces Host.
    Absolute,
    /// `*`, only with OPTIONS.
    Asterisk,
}

/// A validated request-target, split into its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    raw: &'a str,
    form: TargetForm,
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
    path: &'a str,
    query: Option<&'a str>,
}

impl<'a> Target<'a> {
    /// Validates `raw` against the forms allowed for `method`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::ConnectUnsupported`] for CONNECT, [`ErrorKind::InvalidTarget`] for an
    /// authority-form target, an asterisk with a method other than OPTIONS, or an absolute-form
    /// target whose scheme is not http(s) or whose authority is empty or carries userinfo.
    pub(crate) fn parse(method: Method, raw: &'a str) -> Result<Self, ErrorKind> {
        if method == Method::Connect {
            return Err(ErrorKind::ConnectUnsupported);
        }
        if raw.starts_with('/') {
            let (path, query) = split_query(raw);
            return Ok(Self {
                raw,
                form: TargetForm::Origin,
                scheme: None,
                authority: None,
                path,
                query,
            });
        }
        if raw == "*" {
            if method != Method::Options {
                return Err(ErrorKind::InvalidTarget);
            }
            return Ok(Self {
                raw,
                form: TargetForm::Asterisk,
                scheme: None,
                authority: None,
                path: raw,
                query: None,
            });
        }
        let (scheme, rest) = raw.split_once("://").ok_or(ErrorKind::InvalidTarget)?;
        if !(scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")) {
            return Err(ErrorKind::InvalidTarget);
        }
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest
            .split_at_checked(authority_end)
            .ok_or(ErrorKind::InvalidTarget)?;
        if authority.is_empty() || !is_valid_authority(authority.as_bytes()) {
            return Err(ErrorKind::InvalidTarget);
        }
        let (path, query) = split_query(path_and_query);
        Ok(Self {
            raw,
            form: TargetForm::Absolute,
            scheme: Some(scheme),
            authority: Some(authority),
            // RFC 9112 §3.2.2: an empty path in absolute-form means "/".
            path: if path.is_empty() { "/" } else { path },
            query,
        })
    }

    /// The target exactly as received.
    #[must_use]
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// Which form the target used.
    #[must_use]
    pub fn form(&self) -> TargetForm {
        self.form
    }

    /// The scheme of an absolute-form target.
    #[must_use]
    pub fn scheme(&self) -> Option<&'a str> {
        self.scheme
    }

    /// The authority (`host[:port]`) of an absolute-form target.
    #[must_use]
    pub fn authority(&self) -> Option<&'a str> {
        self.authority
    }

    /// The path, still percent-encoded: starts with `/`, or is `*` for asterisk-form.
    #[must_use]
    pub fn path(&self) -> &'a str {
        self.path
    }

    /// The query after the first `?`, without the `?`; `Some("")` for a bare `?`.
    #[must_use]
    pub fn query(&self) -> Option<&'a str> {
        self.query
    }
}

fn split_query(path_and_query: &str) -> (&str, Option<&str>) {
    match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    }
}

/// Whether `value` may be used as a Host value or an absolute-form authority: `host[:port]` with
/// reg-name, IPv4 or IP-literal characters only (RFC 3986 §3.2.2), no userinfo, no whitespace.
pub(crate) fn is_valid_authority(value: &[u8]) -> bool {
    value
        .iter()
        .all(|&b| AUTHORITY_BYTES.get(usize::from(b)) == Some(&true))
}

/// The bytes [`is_valid_authority`] accepts, as a table: it runs on every request's Host.
// Indexing is evaluated at compile time, where out of bounds is a build error, not a panic.
#[allow(clippy::indexing_slicing)]
static AUTHORITY_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let allowed =
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=%:[]";
    let mut i = 0;
    while i < allowed.len() {
        table[allowed[i] as usize] = true;
        i += 1;
    }
    table
};
