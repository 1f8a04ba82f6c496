//! Incremental request and response head parsing on top of httparse.

use std::mem::MaybeUninit;

use super::body::BodyFraming;
use super::error::{ErrorKind, HttpError, Side};
use super::framing::Facts;
use super::headers::{HeaderSpan, Headers};
use super::scan::{HeadScan, has_bare_lf};
use super::target::{Method, Target, Version};

/// The most header fields any [`HeadLimits`] may allow: the size of the on-stack scratch that
/// httparse fills.
pub const MAX_HEADERS: usize = 256;

/// Size limits for a message head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Most bytes from the first byte to the end of the blank line that ends the head,
    /// leading empty lines included; values above `u32::MAX` are treated as `u32::MAX`.
    pub max_head_bytes: usize,
    /// Most header field lines; values above [`MAX_HEADERS`] are treated as [`MAX_HEADERS`].
    pub max_headers: usize,
}

impl Default for HeadLimits {
    /// 16 KiB and 100 fields.
    fn default() -> Self {
        Self {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
        }
    }
}

/// Reusable state for parsing one head after another on a connection.
///
/// Feed it the connection's read buffer after every read: it returns `Ok(None)` until the head
/// is complete. Between those calls the buffer must keep the same first byte and only grow; the
/// parser remembers how far it has scanned, so a head arriving one byte per read costs linear
/// time. Once a head (or an error) is returned, the state is reset for the next message, whose
/// bytes the caller passes from their own first byte. The parser allocates only in
/// [`HeadParser::new`].
#[derive(Debug, Clone)]
pub struct HeadParser {
    limits: HeadLimits,
    scan: HeadScan,
    spans: Vec<HeaderSpan>,
}

impl Default for HeadParser {
    fn default() -> Self {
        Self::new(HeadLimits::default())
    }
}

impl HeadParser {
    /// A parser enforcing `limits`.
    #[must_use]
    pub fn new(limits: HeadLimits) -> Self {
        let limits = HeadLimits {
            max_head_bytes: limits.max_head_bytes.min(u32::MAX as usize),
            max_headers: limits.max_headers.min(MAX_HEADERS),
        };
        Self {
            limits,
            scan: HeadScan::default(),
            spans: Vec::with_capacity(limits.max_headers),
        }
    }

    /// The limits in force (with their caps applied).
    #[must_use]
    pub fn limits(&self) -> HeadLimits {
        self.limits
    }

    /// Forgets a partially scanned head, e.g. when the caller replaced its buffer.
    pub fn reset(&mut self) {
        self.scan.reset();
    }

    /// Parses a request head from the front of `buf`.
    ///
    /// Returns `Ok(None)` while the head is incomplete. Bytes after the head (body, pipelined
    /// requests) are left alone: see [`RequestHead::head_len`].
    ///
    /// # Errors
    ///
    /// A [`Side::Downstream`] [`HttpError`]: 431 for a head over the byte or field limit; 400
    /// for a malformed head, bare CR/LF, obs-fold, ambiguous framing, a missing, repeated or
    /// invalid Host; 501 for CONNECT or a transfer coding other than chunked; 505 for a version
    /// other than 1.0 and 1.1.
    pub fn parse_request<'a>(
        &'a mut self,
        buf: &'a [u8],
    ) -> Result<Option<RequestHead<'a>>, HttpError> {
        let err = |kind| HttpError::new(Side::Downstream, kind);
        let mut scratch = [const { MaybeUninit::<httparse::Header<'a>>::uninit() }; MAX_HEADERS];
        let scratch = scratch
            .get_mut(..self.limits.max_headers)
            .unwrap_or_default();
        if self.scan.is_fresh() {
            // Fast path: the whole head usually arrives in one read.
            let window = buf.get(..self.limits.max_head_bytes).unwrap_or(buf);
            let mut req = httparse::Request::new(&mut []);
            match req.parse_with_uninit_headers(window, &mut *scratch) {
                Ok(httparse::Status::Complete(n)) => {
                    if has_bare_lf(window.get(..n).unwrap_or_default()) {
                        return Err(err(ErrorKind::BareLf));
                    }
                    return build_request(&mut self.spans, buf, &req, n)
                        .map(Some)
                        .map_err(err);
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => {
                    let kind = request_error_kind(e, &req);
                    // The scanner decides, so that the error never depends on the split.
                    return match self.find_head(buf).map_err(err)? {
                        Some(_) => Err(err(kind)),
                        None => Ok(None),
                    };
                }
            }
        }
        let Some(end) = self.find_head(buf).map_err(err)? else {
            return Ok(None);
        };
        let head = buf.get(..end).unwrap_or_default();
        let mut req = httparse::Request::new(&mut []);
        match req.parse_with_uninit_headers(head, scratch) {
            Ok(httparse::Status::Complete(n)) if n == end => {
                build_request(&mut self.spans, buf, &req, n)
                    .map(Some)
                    .map_err(err)
            }
            // The scanner found a complete, CRLF-only head: httparse must agree.
            Ok(_) => Err(err(ErrorKind::InvalidHeaderName)),
            Err(e) => Err(err(request_error_kind(e, &req))),
        }
    }

    /// Parses a response head from the front of `buf`, for a request made with
    /// `request_method` (which decides, with the status, whether a body follows).
    ///
    /// Returns `Ok(None)` while the head is incomplete. A 1xx response other than 101 is interim
    /// ([`ResponseHead::is_interim`]): the caller then parses the next head from the bytes after
    /// it.
    ///
    /// # Errors
    ///
    /// A [`Side::Upstream`] [`HttpError`] (502 to the client) for a head that is too large or
    /// malformed, uses bare CR/LF or obs-fold, has ambiguous framing, a status outside
    /// 100..=599, or a transfer coding other than a lone `chunked` (RFC 9112 would read such a
    /// body until close; forwarding it would hand the client a body in a coding nobody told it
    /// about, since Transfer-Encoding is hop-by-hop).
    pub fn parse_response<'a>(
        &'a mut self,
        buf: &'a [u8],
        request_method: Method,
    ) -> Result<Option<ResponseHead<'a>>, HttpError> {
        let err = |kind| HttpError::new(Side::Upstream, kind);
        let mut scratch = [const { MaybeUninit::<httparse::Header<'a>>::uninit() }; MAX_HEADERS];
        let scratch = scratch
            .get_mut(..self.limits.max_headers)
            .unwrap_or_default();
        let config = httparse::ParserConfig::default();
        if self.scan.is_fresh() {
            let window = buf.get(..self.limits.max_head_bytes).unwrap_or(buf);
            let mut res = httparse::Response::new(&mut []);
            match config.parse_response_with_uninit_headers(&mut res, window, &mut *scratch) {
                Ok(httparse::Status::Complete(n)) => {
                    if has_bare_lf(window.get(..n).unwrap_or_default()) {
                        return Err(err(ErrorKind::BareLf));
                    }
                    return build_response(&mut self.spans, buf, &res, n, request_method)
                        .map(Some)
                        .map_err(err);
                }
                Ok(httparse::Status::Partial) => {}
                Err(e) => {
                    return match self.find_head(buf).map_err(err)? {
                        Some(_) => Err(err(map_httparse(e))),
                        None => Ok(None),
                    };
                }
            }
        }
        let Some(end) = self.find_head(buf).map_err(err)? else {
            return Ok(None);
        };
        let head = buf.get(..end).unwrap_or_default();
        let mut res = httparse::Response::new(&mut []);
        match config.parse_response_with_uninit_headers(&mut res, head, scratch) {
            Ok(httparse::Status::Complete(n)) if n == end => {
                build_response(&mut self.spans, buf, &res, n, request_method)
                    .map(Some)
                    .map_err(err)
            }
            Ok(_) => Err(err(ErrorKind::InvalidHeaderName)),
            Err(e) => Err(err(map_httparse(e))),
        }
    }

    /// Runs the incremental scanner; its state is reset on success and on error.
    fn find_head(&mut self, buf: &[u8]) -> Result<Option<usize>, ErrorKind> {
        let found = self.scan.advance(buf, self.limits.max_head_bytes);
        if found.is_err() {
            self.scan.reset();
        }
        found
    }
}

/// Turns httparse's view of a complete request head into a validated [`RequestHead`].
fn build_request<'a>(
    spans: &'a mut Vec<HeaderSpan>,
    buf: &'a [u8],
    req: &httparse::Request<'_, 'a>,
    head_len: usize,
) -> Result<RequestHead<'a>, ErrorKind> {
    let (Some(method_str), Some(raw_target), Some(minor)) = (req.method, req.path, req.version)
    else {
        return Err(ErrorKind::InvalidMethod);
    };
    let version = version_from(minor).ok_or(ErrorKind::InvalidVersion)?;
    let method = Method::from_token(method_str);
    let target = Target::parse(method, raw_target)?;
    let mut facts = Facts::default();
    spans.clear();
    for h in req.headers.iter() {
        facts.observe(h.name, h.value)?;
        spans.push(HeaderSpan::locate(buf, h.name.as_bytes(), h.value));
    }
    let framing = facts.request_framing(version)?;
    // RFC 9110 §10.1.1 and §7.8: HTTP/1.0 requests get neither 100-continue nor upgrades.
    let http11 = version == Version::Http11;
    Ok(RequestHead {
        method,
        method_str,
        target,
        version,
        headers: Headers::new(buf, spans, facts.has_connection),
        head_len,
        framing,
        keep_alive: facts.keep_alive(version),
        expect_continue: http11 && facts.expect_continue,
        host: facts.host,
        upgrade: facts.upgrade.filter(|_| http11 && facts.conn_upgrade),
    })
}

/// Turns httparse's view of a complete response head into a validated [`ResponseHead`].
fn build_response<'a>(
    spans: &'a mut Vec<HeaderSpan>,
    buf: &'a [u8],
    res: &httparse::Response<'_, 'a>,
    head_len: usize,
    request_method: Method,
) -> Result<ResponseHead<'a>, ErrorKind> {
    let (Some(minor), Some(status), Some(reason)) = (res.version, res.code, res.reason) else {
        return Err(ErrorKind::InvalidStatus);
    };
    let version = version_from(minor).ok_or(ErrorKind::InvalidVersion)?;
    if !(100..=599).contains(&status) {
        return Err(ErrorKind::InvalidStatus);
    }
    let mut facts = Facts::default();
    spans.clear();
    for h in res.headers.iter() {
        facts.observe(h.name, h.value)?;
        spans.push(HeaderSpan::locate(buf, h.name.as_bytes(), h.value));
    }
    let bodiless = request_method == Method::Head
        || (100..200).contains(&status)
        || status == 204
        || status == 304
        || (request_method == Method::Connect && (200..300).contains(&status));
    let framing = facts.response_framing(version, bodiless)?;
    Ok(ResponseHead {
        status,
        reason,
        version,
        headers: Headers::new(buf, spans, facts.has_connection),
        head_len,
        framing,
        keep_alive: facts.keep_alive(version) && framing != BodyFraming::UntilClose,
        upgrade: facts.upgrade.filter(|_| status == 101),
    })
}

fn version_from(minor: u8) -> Option<Version> {
    match minor {
        0 => Some(Version::Http10),
        1 => Some(Version::Http11),
        _ => None,
    }
}

/// A token error before the method is known is the method's; after it, the target's.
fn request_error_kind(e: httparse::Error, req: &httparse::Request<'_, '_>) -> ErrorKind {
    match e {
        httparse::Error::Token if req.method.is_none() => ErrorKind::InvalidMethod,
        httparse::Error::Token => ErrorKind::InvalidTarget,
        other => map_httparse(other),
    }
}

fn map_httparse(e: httparse::Error) -> ErrorKind {
    match e {
        httparse::Error::HeaderName => ErrorKind::InvalidHeaderName,
        httparse::Error::HeaderValue => ErrorKind::InvalidHeaderValue,
        httparse::Error::NewLine => ErrorKind::BareCr,
        httparse::Error::Status => ErrorKind::InvalidStatus,
        httparse::Error::Token => ErrorKind::InvalidMethod,
        httparse::Error::TooManyHeaders => ErrorKind::TooManyHeaders,
        httparse::Error::Version => ErrorKind::InvalidVersion,
    }
}

/// A parsed and validated request head, borrowing the caller's buffer and the parser.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    method: Method,
    method_str: &'a str,
    target: Target<'a>,
    version: Version,
    headers: Headers<'a>,
    head_len: usize,
    framing: BodyFraming,
    keep_alive: bool,
    expect_continue: bool,
    host: Option<&'a [u8]>,
    upgrade: Option<&'a [u8]>,
}

impl<'a> RequestHead<'a> {
    /// The method, classified.
    #[must_use]
    pub fn method(&self) -> Method {
        self.method
    }

    /// The method token as sent.
    #[must_use]
    pub fn method_str(&self) -> &'a str {
        self.method_str
    }

    /// The request-target, split into its parts.
    #[must_use]
    pub fn target(&self) -> Target<'a> {
        self.target
    }

    /// The path of the target (percent-encoded, starting with `/`, or `*`).
    #[must_use]
    pub fn path(&self) -> &'a str {
        self.target.path()
    }

    /// The query of the target, without `?`.
    #[must_use]
    pub fn query(&self) -> Option<&'a str> {
        self.target.query()
    }

    /// HTTP/1.0 or HTTP/1.1.
    #[must_use]
    pub fn version(&self) -> Version {
        self.version
    }

    /// The header fields, in order.
    #[must_use]
    pub fn headers(&self) -> Headers<'a> {
        self.headers
    }

    /// Bytes of `buf` taken by the head (leading empty lines included); the body or the next
    /// request starts here.
    #[must_use]
    pub fn head_len(&self) -> usize {
        self.head_len
    }

    /// How the body is delimited; never [`BodyFraming::UntilClose`] for a request.
    #[must_use]
    pub fn framing(&self) -> BodyFraming {
        self.framing
    }

    /// Whether the client wants the connection kept open after this exchange (HTTP/1.1 unless
    /// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
    #[must_use]
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Whether an HTTP/1.1 client sent `Expect: 100-continue` and waits before sending the body.
    #[must_use]
    pub fn expect_continue(&self) -> bool {
        self.expect_continue
    }

    /// The Host header value (validated as an authority; may be empty).
    #[must_use]
    pub fn host(&self) -> Option<&'a [u8]> {
        self.host
    }

    /// The authority the request is for: the absolute-form target's authority, which RFC 9112
    /// §3.2.2 says replaces Host, otherwise the Host value.
    #[must_use]
    pub fn authority(&self) -> Option<&'a [u8]> {
        self.target.authority().map(str::as_bytes).or(self.host)
    }

    /// The Upgrade value, when an HTTP/1.1 request asks for one (Upgrade listed in Connection).
    #[must_use]
    pub fn upgrade(&self) -> Option<&'a [u8]> {
        self.upgrade
    }
}

/// A parsed and validated response head, borrowing the caller's buffer and the parser.
#[derive(Debug, Clone, Copy)]
pub struct ResponseHead<'a> {
    status: u16,
    reason: &'a str,
    version: Version,
    headers: Headers<'a>,
    head_len: usize,
    framing: BodyFraming,
    keep_alive: bool,
    upgrade: Option<&'a [u8]>,
}

impl<'a> ResponseHead<'a> {
    /// The status code, 100..=599.
    #[must_use]
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The reason phrase (empty when absent or not plain ASCII).
    #[must_use]
    pub fn reason(&self) -> &'a str {
        self.reason
    }

    /// HTTP/1.0 or HTTP/1.1.
    #[must_use]
    pub fn version(&self) -> Version {
        self.version
    }

    /// The header fields, in order.
    #[must_use]
    pub fn headers(&self) -> Headers<'a> {
        self.headers
    }

    /// Bytes of `buf` taken by the head; the body starts here.
    #[must_use]
    pub fn head_len(&self) -> usize {
        self.head_len
    }

    /// How the body is delimited, per RFC 9112 §6.3.
    #[must_use]
    pub fn framing(&self) -> BodyFraming {
        self.framing
    }

    /// Whether the connection may be reused after this response: the version's default and
    /// Connection options, and never when the body runs until close.
    #[must_use]
    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }

    /// Whether this is an interim (1xx other than 101) response, to be followed by another head.
    #[must_use]
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }

    /// The Upgrade value of a 101 Switching Protocols response.
    #[must_use]
    pub fn upgrade(&self) -> Option<&'a [u8]> {
        self.upgrade
    }
}
