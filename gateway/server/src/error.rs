//! The classified error of the shell's set-up and command paths (start, `gateway check`,
//! `gateway import`, the entity log's opening, issuing certificates): a kind callers match
//! instead of the text, a context saying where and doing what, and the underlying error.
//!
//! Its `Display` is the text operators see (`gateway check`, the admin API, logs): the context,
//! then `: ` and the source when there is one. It never carries a secret.

use std::fmt;

/// What kind of failure a [`GatewayError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GatewayErrorKind {
    /// A setting or a file the config names is wrong (an unknown `--io`, a data directory that
    /// cannot be written).
    Config,
    /// The io_uring driver cannot be used (probe failed, every ring set-up refused).
    Driver,
    /// TLS cannot be set up (a host name rustls refuses, a client certificate).
    Tls,
    /// A key or certificate could not be generated or encoded.
    Crypto,
    /// The entity log is held by a running node (its admin API is the way in).
    Locked,
    /// The entity log or its cluster key cannot be opened, seeded or written.
    EntityLog,
    /// A sealed value does not open with this node's cluster key (another key, or changed
    /// bytes).
    Sealed,
    /// A record or an entity's stored JSON does not decode.
    Decode,
    /// The entities or the document were refused (validation, a conflict), locally or by a
    /// running node's admin API.
    Refused,
    /// A file or socket failed (reading a file, talking to a running node's admin API).
    Io,
    /// A thread of this process died (a bug).
    Internal,
}

impl GatewayErrorKind {
    /// Lowercase name for logs and JSON.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Driver => "driver",
            Self::Tls => "tls",
            Self::Crypto => "crypto",
            Self::Locked => "locked",
            Self::EntityLog => "entity_log",
            Self::Sealed => "sealed",
            Self::Decode => "decode",
            Self::Refused => "refused",
            Self::Io => "io",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for GatewayErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failure of the shell with its kind, context and cause.
#[derive(Debug)]
pub struct GatewayError {
    /// What failed.
    pub kind: GatewayErrorKind,
    /// Where and doing what (may be empty when the source says it all).
    pub context: String,
    /// The underlying error.
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl GatewayError {
    /// An error of `kind` with `context` and no source.
    pub fn new(kind: GatewayErrorKind, context: impl Into<String>) -> Self {
        Self {
            kind,
            context: context.into(),
            source: None,
        }
    }

    /// An error of `kind` with `context`, caused by `source`.
    pub fn with(
        kind: GatewayErrorKind,
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            kind,
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// An error of `kind` that is its `source` (no context of its own).
    pub fn of(
        kind: GatewayErrorKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::with(kind, String::new(), source)
    }

    /// A closure mapping an error to one of `kind` with `context`, for `map_err`.
    pub fn map<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
        kind: GatewayErrorKind,
        context: impl Into<String>,
    ) -> impl FnOnce(E) -> Self {
        let context = context.into();
        move |e| Self::with(kind, context, e)
    }

    /// Whether retrying the same operation may succeed (IO hiccups; not config, refusals or a
    /// held log).
    #[must_use]
    pub const fn is_retryable(&self) -> bool {
        matches!(self.kind, GatewayErrorKind::Io)
    }
}

impl fmt::Display for GatewayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.source, self.context.is_empty()) {
            (None, _) => f.write_str(&self.context),
            (Some(source), true) => write!(f, "{source}"),
            (Some(source), false) => write!(f, "{}: {source}", self.context),
        }
    }
}

impl std::error::Error for GatewayError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_context_then_source() {
        let io = || std::io::Error::other("refused");
        let e = GatewayError::with(GatewayErrorKind::Io, "admin API 127.0.0.1:9000", io());
        assert_eq!(e.to_string(), "admin API 127.0.0.1:9000: refused");
        assert!(e.is_retryable());
        assert_eq!(
            GatewayError::of(GatewayErrorKind::Crypto, io()).to_string(),
            "refused"
        );
        let e = GatewayError::new(GatewayErrorKind::Locked, "held");
        assert_eq!(e.to_string(), "held");
        assert!(!e.is_retryable());
        assert!(std::error::Error::source(&e).is_none());
    }
}
