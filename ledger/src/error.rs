//! The ledger's one error type, classified by kind (what failed) and whether retrying may help.

use std::fmt;

/// What kind of failure a [`LedgerError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerErrorKind {
    /// The configuration is invalid.
    Config,
    /// The store (redb) failed: open, transaction, commit.
    Store,
    /// The store is open in another process (a running node or ledger).
    Locked,
    /// Reading the journal failed.
    Journal,
    /// Kafka failed.
    Kafka,
    /// Other IO (sockets, files).
    Io,
    /// A stored value does not decode: the store file is damaged or foreign.
    Corrupt,
}

impl LedgerErrorKind {
    /// Lowercase name for logs and JSON.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Store => "store",
            Self::Locked => "locked",
            Self::Journal => "journal",
            Self::Kafka => "kafka",
            Self::Io => "io",
            Self::Corrupt => "corrupt",
        }
    }
}

impl fmt::Display for LedgerErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A ledger failure with its context.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {context}{}", source.as_ref().map(|s| format!(": {s}")).unwrap_or_default())]
pub struct LedgerError {
    /// What failed.
    pub kind: LedgerErrorKind,
    /// Where and doing what.
    pub context: String,
    /// The underlying error.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl LedgerError {
    /// An error of `kind` with `context` and no source.
    pub fn new(kind: LedgerErrorKind, context: impl Into<String>) -> Self {
        Self {
            kind,
            context: context.into(),
            source: None,
        }
    }

    /// An error of `kind` with `context`, caused by `source`.
    pub fn with(
        kind: LedgerErrorKind,
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            kind,
            context: context.into(),
            source: Some(source.into()),
        }
    }

    /// A closure mapping a store error, for `map_err`.
    pub fn store<E: Into<Box<dyn std::error::Error + Send + Sync>>>(
        context: &'static str,
    ) -> impl FnOnce(E) -> Self {
        move |e| Self::with(LedgerErrorKind::Store, context, e)
    }

    /// Whether retrying the operation may succeed (IO, Kafka and journal hiccups; not config
    /// or corruption).
    #[must_use]
    pub const fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            LedgerErrorKind::Io | LedgerErrorKind::Kafka | LedgerErrorKind::Journal
        )
    }
}
