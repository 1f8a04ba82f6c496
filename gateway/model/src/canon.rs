//! The canonical request target (re-exported by gateway-core's `http`): the one form of a request's host and path that is routed,
//! checked by every restriction and plugin, and forwarded upstream.
//!
//! A gateway that checks one spelling of a path and forwards another is an access-control
//! bypass: `/%61dmin`, `/x/../admin`, `//admin` and `/%2e/admin` are all `/admin` to a
//! normalising upstream. So the path is normalised once, here, before routing (RFC 3986 §6.2.2),
//! and the shell forwards exactly what was checked:
//! - percent-encoded unreserved characters are decoded (`%61` → `a`, `%2E` → `.`), other
//!   percent-encodings keep their escape with upper-case hex (`%c3%a9` → `%C3%A9`);
//! - printable ASCII that RFC 3986 does not allow raw in a path (`"`, `<`, `>`, `` ` ``, `{`, `}`,
//!   `|`, `^`) is percent-encoded;
//! - dot segments are resolved (§5.2.4), repeated slashes collapse to one, and a trailing slash
//!   (or a trailing dot segment) is kept as a trailing slash.
//!
//! Targets that cannot be made unambiguous are refused ([`PathError`], 400): an encoded `/` or
//! `\` (a decoding upstream would split the segment), a raw `\` (some upstreams treat it as `/`),
//! raw non-ASCII bytes, an encoded or raw NUL or control byte, a fragment, a bad escape, a dot
//! segment above the root, and a dot segment with a path parameter (`/..;/`, which Java servlet
//! containers resolve as `..`). A route may opt in to keep encoded separators and non-ASCII
//! bytes as data ([`PathPolicy::preserve_encoded`]): they are then matched and forwarded encoded
//! (`%2F`, `%5C`, `%C3`), which is still one form for both.
//!
//! It must never allocate once the output buffer has grown, and never panic on any input.

use std::fmt;

/// How strictly ambiguous paths are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PathPolicy {
    /// Keep `%2F`, `%5C` and raw `\` and non-ASCII bytes as percent-encoded data instead of
    /// refusing the request.
    pub preserve_encoded: bool,
}

impl PathPolicy {
    /// The default: every ambiguous path is refused.
    pub const STRICT: Self = Self {
        preserve_encoded: false,
    };
    /// Encoded separators and non-ASCII bytes are kept as encoded data.
    pub const PRESERVE_ENCODED: Self = Self {
        preserve_encoded: true,
    };
}

/// Why a path has no canonical form (all 400 to the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathError {
    /// `%2F` or `%5C`: an upstream that decodes it would see a different path.
    EncodedSeparator,
    /// A raw `\`, which some upstreams read as `/`.
    Backslash,
    /// A raw byte outside ASCII.
    NonAscii,
    /// A raw or encoded NUL or other control byte.
    Control,
    /// A `#`: fragments are never sent to a server.
    Fragment,
    /// `%` not followed by two hex digits.
    BadEscape,
    /// A `..` segment with nothing left to remove.
    AboveRoot,
    /// A `.` or `..` segment followed by a path parameter (`..;x`).
    DotParameter,
    /// The path does not start with `/`.
    NotAbsolute,
}

impl PathError {
    /// Whether [`PathPolicy::preserve_encoded`] would accept the path.
    #[must_use]
    pub fn preservable(self) -> bool {
        matches!(
            self,
            Self::EncodedSeparator | Self::Backslash | Self::NonAscii
        )
    }

    /// A stable snake_case code for events, metrics and error bodies.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::EncodedSeparator => "encoded_separator",
            Self::Backslash => "backslash",
            Self::NonAscii => "non_ascii",
            Self::Control => "control_byte",
            Self::Fragment => "fragment",
            Self::BadEscape => "bad_escape",
            Self::AboveRoot => "dot_segment_above_root",
            Self::DotParameter => "dot_segment_parameter",
            Self::NotAbsolute => "not_absolute",
        }
    }
}

impl PathError {
    /// A static human description, for error bodies.
    #[must_use]
    pub fn description(self) -> &'static str {
        match self {
            Self::EncodedSeparator => "encoded `/` or `\\` in the path",
            Self::Backslash => "`\\` in the path",
            Self::NonAscii => "non-ASCII byte in the path",
            Self::Control => "control byte in the path",
            Self::Fragment => "fragment in the request target",
            Self::BadEscape => "invalid percent-encoding in the path",
            Self::AboveRoot => "dot segment above the root",
            Self::DotParameter => "dot segment with a path parameter",
            Self::NotAbsolute => "path does not start with `/`",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for PathError {}

/// Writes the canonical form of `raw` (a request path without its query, still percent-encoded)
/// into `out`, replacing its contents.
///
/// # Errors
/// [`PathError`] when the path has no unambiguous canonical form under `policy`; `out` then
/// holds an unspecified prefix.
pub fn canonical_path(raw: &str, policy: PathPolicy, out: &mut String) -> Result<(), PathError> {
    out.clear();
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // `out` holds the resolved segments, each followed by `/` ("/", "/a/", "/a/b/"); the
    // trailing `/` is removed at the end when the last segment was an ordinary one.
    out.push('/');
    let mut last_ordinary = false;
    for segment in bytes.get(1..).unwrap_or_default().split(|&b| b == b'/') {
        let start = out.len();
        push_segment(segment, policy, out)?;
        let written = out.get(start..).unwrap_or_default();
        match written {
            "" => last_ordinary = false,
            "." => {
                out.truncate(start);
                last_ordinary = false;
            }
            ".." => {
                out.truncate(start);
                pop_segment(out)?;
                last_ordinary = false;
            }
            s if is_dot_with_parameter(s) => {
                return Err(PathError::DotParameter);
            }
            _ => {
                out.push('/');
                last_ordinary = true;
            }
        }
    }
    if last_ordinary {
        out.pop();
    }
    Ok(())
}

/// `.;x`, `..;x`, and the same with `;` encoded (`..%3B`): a servlet container resolves them
/// as dot segments after stripping the parameter.
fn is_dot_with_parameter(segment: &str) -> bool {
    let rest = segment
        .strip_prefix("..")
        .or_else(|| segment.strip_prefix('.'))
        .unwrap_or(segment);
    rest.len() < segment.len()
        && (rest.starts_with(';') || rest.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("%3B")))
}

/// Removes the last segment of `out` (which ends with `/`): "/a/b/" → "/a/".
fn pop_segment(out: &mut String) -> Result<(), PathError> {
    if out.len() <= 1 {
        return Err(PathError::AboveRoot);
    }
    let body = out.get(..out.len() - 1).unwrap_or_default();
    let cut = body.rfind('/').map_or(1, |i| i + 1);
    out.truncate(cut);
    Ok(())
}

/// Appends one segment, decoded and re-encoded as the module doc says.
fn push_segment(segment: &[u8], policy: PathPolicy, out: &mut String) -> Result<(), PathError> {
    let mut i = 0;
    while let Some(&b) = segment.get(i) {
        match b {
            b'%' => {
                let value = match (segment.get(i + 1), segment.get(i + 2)) {
                    (Some(&h), Some(&l)) => hex(h)
                        .zip(hex(l))
                        .map(|(h, l)| h << 4 | l)
                        .ok_or(PathError::BadEscape)?,
                    _ => return Err(PathError::BadEscape),
                };
                i += 3;
                if is_unreserved(value) {
                    out.push(char::from(value));
                } else if value == b'/' || value == b'\\' {
                    if !policy.preserve_encoded {
                        return Err(PathError::EncodedSeparator);
                    }
                    push_escape(value, out);
                } else if value < 0x20 || value == 0x7f {
                    return Err(PathError::Control);
                } else {
                    push_escape(value, out);
                }
                continue;
            }
            b'#' => return Err(PathError::Fragment),
            b'\\' => {
                if !policy.preserve_encoded {
                    return Err(PathError::Backslash);
                }
                push_escape(b, out);
            }
            0x80..=0xff => {
                if !policy.preserve_encoded {
                    return Err(PathError::NonAscii);
                }
                push_escape(b, out);
            }
            0..=0x20 | 0x7f => return Err(PathError::Control),
            b'"' | b'<' | b'>' | b'`' | b'{' | b'}' | b'|' | b'^' => push_escape(b, out),
            _ => out.push(char::from(b)),
        }
        i += 1;
    }
    Ok(())
}

/// RFC 3986 §2.3: ALPHA / DIGIT / "-" / "." / "_" / "~".
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn push_escape(b: u8, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    for nibble in [b >> 4, b & 0xf] {
        out.push(char::from(*HEX.get(usize::from(nibble)).unwrap_or(&b'0')));
    }
}

/// Longest host accepted, in bytes (DNS names are at most 253).
pub const MAX_HOST: usize = 255;

/// The canonical host of a `Host` value or absolute-form authority: lower case, without the
/// port and a trailing dot, written into `buf`. `None` when it is not a plausible host (too
/// long, not ASCII, empty, control bytes or spaces).
pub fn canonical_host<'b>(host: &[u8], buf: &'b mut [u8; MAX_HOST]) -> Option<&'b str> {
    let host = if host.first() == Some(&b'[') {
        // IPv6 literal: keep up to and including ']'.
        let end = host.iter().position(|&b| b == b']')?;
        host.get(..=end)?
    } else {
        match host.iter().rposition(|&b| b == b':') {
            Some(i) => host.get(..i)?,
            None => host,
        }
    };
    let host = host.strip_suffix(b".").unwrap_or(host);
    if host.is_empty() || host.len() > MAX_HOST {
        return None;
    }
    let out = buf.get_mut(..host.len())?;
    for (o, &b) in out.iter_mut().zip(host) {
        if !b.is_ascii() || b.is_ascii_control() || b == b' ' {
            return None;
        }
        *o = b.to_ascii_lowercase();
    }
    std::str::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;
