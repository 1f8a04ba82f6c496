//! The facts a proxy derives from header fields: message body framing (RFC 9112 §6), connection
//! options, Host, Expect and Upgrade. Collected in one pass over the fields, strictly: anything
//! two parsers could read two ways is an error.

use super::body::BodyFraming;
use super::error::ErrorKind;
use super::hop::{list_elements, trim_ows};
use super::target::{Version, is_valid_authority};

/// What the header fields say, before the request or response rules are applied.
#[derive(Debug, Default)]
pub(crate) struct Facts<'a> {
    pub(crate) host: Option<&'a [u8]>,
    host_count: u32,
    content_length: Option<u64>,
    content_length_count: u32,
    te: TransferEncoding,
    pub(crate) has_connection: bool,
    conn_close: bool,
    conn_keep_alive: bool,
    pub(crate) conn_upgrade: bool,
    pub(crate) expect_continue: bool,
    pub(crate) upgrade: Option<&'a [u8]>,
}

/// The Transfer-Encoding list, accumulated over every field line (they form one list).
#[derive(Debug, Default)]
struct TransferEncoding {
    present: bool,
    codings: u32,
    chunked: u32,
    last_is_chunked: bool,
    malformed: bool,
}

/// How a present Transfer-Encoding list frames the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TeVerdict {
    /// Exactly `chunked`.
    Chunked,
    /// Ends in `chunked` but applies other codings first (e.g. `gzip, chunked`).
    ChunkedOverOthers,
    /// Malformed, empty, `chunked` repeated, or not ending in `chunked`.
    Invalid,
}

impl<'a> Facts<'a> {
    /// Records one field line; fails fast on values that can never be valid.
    pub(crate) fn observe(&mut self, name: &str, value: &'a [u8]) -> Result<(), ErrorKind> {
        match name.len() {
            4 if name.eq_ignore_ascii_case("host") => {
                self.host_count += 1;
                if self.host_count > 1 {
                    return Err(ErrorKind::DuplicateHost);
                }
                if !is_valid_authority(value) {
                    return Err(ErrorKind::InvalidHost);
                }
                self.host = Some(value);
            }
            6 if name.eq_ignore_ascii_case("expect") => {
                self.expect_continue |=
                    list_elements(value).any(|e| e.eq_ignore_ascii_case(b"100-continue"));
            }
            7 if name.eq_ignore_ascii_case("upgrade") => {
                self.upgrade = self.upgrade.or(Some(value));
            }
            10 if name.eq_ignore_ascii_case("connection") => {
                self.has_connection = true;
                for option in list_elements(value) {
                    if option.eq_ignore_ascii_case(b"close") {
                        self.conn_close = true;
                    } else if option.eq_ignore_ascii_case(b"keep-alive") {
                        self.conn_keep_alive = true;
                    } else if option.eq_ignore_ascii_case(b"upgrade") {
                        self.conn_upgrade = true;
                    }
                }
            }
            14 if name.eq_ignore_ascii_case("content-length") => {
                self.content_length_count += 1;
                if self.content_length_count > 1 {
                    return Err(ErrorKind::DuplicateContentLength);
                }
                self.content_length = Some(parse_content_length(value)?);
            }
            17 if name.eq_ignore_ascii_case("transfer-encoding") => self.te.observe(value),
            _ => {}
        }
        Ok(())
    }

    /// Body framing of a request (RFC 9112 §6.3 items 3–7), and the Host rules of §3.2.
    pub(crate) fn request_framing(&self, version: Version) -> Result<BodyFraming, ErrorKind> {
        if version == Version::Http11 && self.host_count == 0 {
            return Err(ErrorKind::MissingHost);
        }
        self.check_framing_conflicts(version)?;
        if self.te.present {
            return match self.te.verdict() {
                TeVerdict::Chunked => Ok(BodyFraming::Chunked),
                TeVerdict::ChunkedOverOthers => Err(ErrorKind::UnsupportedTransferCoding),
                TeVerdict::Invalid => Err(ErrorKind::InvalidTransferEncoding),
            };
        }
        Ok(self
            .content_length
            .map_or(BodyFraming::None, BodyFraming::ContentLength))
    }

    /// Body framing of a response (RFC 9112 §6.3 items 1–7); `bodiless` covers responses to
    /// HEAD, 1xx, 204, 304 and 2xx to CONNECT, whose framing headers are still validated.
    ///
    /// Transfer codings other than a lone `chunked` are rejected rather than read until close:
    /// the gateway would have to strip the hop-by-hop Transfer-Encoding header and forward a
    /// body still encoded with a coding the client was never told about.
    pub(crate) fn response_framing(
        &self,
        version: Version,
        bodiless: bool,
    ) -> Result<BodyFraming, ErrorKind> {
        self.check_framing_conflicts(version)?;
        let framing = if self.te.present {
            match self.te.verdict() {
                TeVerdict::Chunked => BodyFraming::Chunked,
                TeVerdict::ChunkedOverOthers => return Err(ErrorKind::UnsupportedTransferCoding),
                TeVerdict::Invalid => return Err(ErrorKind::InvalidTransferEncoding),
            }
        } else {
            self.content_length
                .map_or(BodyFraming::UntilClose, BodyFraming::ContentLength)
        };
        Ok(if bodiless { BodyFraming::None } else { framing })
    }

    fn check_framing_conflicts(&self, version: Version) -> Result<(), ErrorKind> {
        if self.te.present {
            if self.content_length_count > 0 {
                return Err(ErrorKind::ConflictingFraming);
            }
            // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty.
            if version == Version::Http10 {
                return Err(ErrorKind::InvalidTransferEncoding);
            }
        }
        Ok(())
    }

    /// Connection persistence per RFC 9112 §9.3, before body framing is considered.
    pub(crate) fn keep_alive(&self, version: Version) -> bool {
        !self.conn_close && (version == Version::Http11 || self.conn_keep_alive)
    }
}

impl TransferEncoding {
    fn observe(&mut self, value: &[u8]) {
        self.present = true;
        // Stricter than RFC 9110 §5.6.1.2 (which has recipients skip empty list elements):
        // `chunked,` or `, chunked` is refused, as h11 and other implementations an upstream
        // may run do, so that no two readers disagree on whether the body is chunked.
        if value.split(|&b| b == b',').any(|e| trim_ows(e).is_empty()) {
            self.malformed = true;
        }
        for coding in list_elements(value) {
            self.codings += 1;
            if !coding.iter().all(|&b| is_tchar(b)) {
                // Parameters (`chunked;x=1`) or stray bytes: nothing we could decode.
                self.malformed = true;
            }
            self.last_is_chunked = coding.eq_ignore_ascii_case(b"chunked");
            if self.last_is_chunked {
                self.chunked += 1;
            }
        }
    }

    fn verdict(&self) -> TeVerdict {
        // No coding at all means no `chunked` either: `chunked != 1` covers the empty list.
        if self.malformed || self.chunked != 1 || !self.last_is_chunked {
            TeVerdict::Invalid
        } else if self.codings > 1 {
            TeVerdict::ChunkedOverOthers
        } else {
            TeVerdict::Chunked
        }
    }
}

/// Parses a Content-Length value: one or more ASCII digits, nothing else (no sign, no list, no
/// hex), fitting in u64.
///
/// # Errors
///
/// [`ErrorKind::InvalidContentLength`] otherwise.
pub(crate) fn parse_content_length(value: &[u8]) -> Result<u64, ErrorKind> {
    let digits = trim_ows(value);
    if digits.is_empty() {
        return Err(ErrorKind::InvalidContentLength);
    }
    digits.iter().try_fold(0u64, |acc, &b| {
        if !b.is_ascii_digit() {
            return Err(ErrorKind::InvalidContentLength);
        }
        acc.checked_mul(10)
            .and_then(|acc| acc.checked_add(u64::from(b - b'0')))
            .ok_or(ErrorKind::InvalidContentLength)
    })
}

/// RFC 9110 §5.6.2 tchar.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}
