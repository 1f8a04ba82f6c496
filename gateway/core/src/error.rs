//! The crate's classified error for compiling an entity's config into its runtime form (a
//! consumer's JWT verifier, a plugin's rules and scope): a kind callers can match, and what is
//! wrong in words, naming the config member. Configs are validated when they are stored, so on
//! a running node these errors mean a config that identifies nobody or a plugin that cannot
//! run; they never happen per request (refusals on the request path are values of
//! [`crate::flow::Rejection`] and [`crate::respond`], not errors).

use std::fmt;

/// What kind of problem a [`CoreError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoreErrorKind {
    /// A config member has the wrong type or value (an unknown algorithm, a header name that
    /// is not a token, several key sources).
    Field,
    /// A regular expression (`include`, `exclude`, a DN pattern) does not compile.
    Regex,
    /// A key does not parse, is refused (weak, unsupported, private) or cannot verify the
    /// algorithm (another family, an HMAC secret too short).
    Key,
    /// There is no key to verify with.
    NoKey,
}

impl CoreErrorKind {
    /// Lowercase name for logs and JSON.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Field => "field",
            Self::Regex => "regex",
            Self::Key => "key",
            Self::NoKey => "no_key",
        }
    }
}

impl fmt::Display for CoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A config that does not compile: its kind, and what is wrong in words (shown as it is in
/// flow errors and logs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CoreError {
    /// What kind of problem.
    pub kind: CoreErrorKind,
    /// What is wrong, naming the config member.
    pub message: String,
}

impl CoreError {
    /// An error of `kind` saying `message`.
    pub fn new(kind: CoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// A config member of the wrong type or value.
    pub fn field(message: impl Into<String>) -> Self {
        Self::new(CoreErrorKind::Field, message)
    }

    /// A regular expression that does not compile.
    pub fn regex(message: impl Into<String>) -> Self {
        Self::new(CoreErrorKind::Regex, message)
    }

    /// A key that is refused.
    pub fn key(message: impl Into<String>) -> Self {
        Self::new(CoreErrorKind::Key, message)
    }
}

impl From<gateway_model::jose::KeyError> for CoreError {
    fn from(e: gateway_model::jose::KeyError) -> Self {
        Self::key(e.message)
    }
}
