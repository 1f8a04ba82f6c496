//! The one error type of the event codecs.

use std::fmt;

/// Why bytes could not become an event, or an event could not become bytes.
///
/// `what` names the record ("usage batch", "entity event", "totals record"); paths name the field
/// (`entries[3].day`, `version`), so a log line is enough to find the producer's mistake.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// No bytes at all: not even a version byte.
    #[error("{what}: empty input, expected a version byte")]
    Empty {
        /// The record being decoded.
        what: &'static str,
    },
    /// The version byte is not one this build can read.
    #[error("{what}: unknown format version {found}, this build reads 1..={latest}")]
    UnknownVersion {
        /// The record being decoded.
        what: &'static str,
        /// The version byte found.
        found: u8,
        /// The newest version this build reads.
        latest: u8,
    },
    /// The framing is wrong: fewer or more bytes than the declared archive length.
    #[error("{what}: truncated or padded input: {reason}")]
    Framing {
        /// The record being decoded.
        what: &'static str,
        /// What does not add up.
        reason: String,
    },
    /// The archive failed bytecheck validation (bad pointer, bad UTF-8, bad tag, misalignment).
    #[error("{what}: invalid archive: {source}")]
    InvalidArchive {
        /// The record being decoded.
        what: &'static str,
        /// rkyv's description of the first problem found.
        source: rkyv::rancor::Error,
    },
    /// The record is well formed but breaks an invariant of its format.
    #[error("{what}: {path}: {reason}")]
    Invalid {
        /// The record being checked.
        what: &'static str,
        /// The offending field, e.g. `entries[3].day`.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// JSON that does not parse or does not fit the envelope.
    #[error("{what}: {}{source}", PathPrefix(path))]
    Json {
        /// The record being decoded.
        what: &'static str,
        /// The field where the problem was found, empty at the top level.
        path: String,
        /// serde_json's error, which carries the line and column.
        source: serde_json::Error,
    },
    /// The value could not be serialised.
    #[error("{what}: cannot encode: {source}")]
    Encode {
        /// The record being encoded.
        what: &'static str,
        /// The serialiser's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// The failure class of an [`EventError`], for metrics and dead-letter routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EventErrorKind {
    /// See [`EventError::Empty`].
    Empty,
    /// See [`EventError::UnknownVersion`].
    UnknownVersion,
    /// See [`EventError::Framing`].
    Framing,
    /// See [`EventError::InvalidArchive`].
    InvalidArchive,
    /// See [`EventError::Invalid`].
    Invalid,
    /// See [`EventError::Json`].
    Json,
    /// See [`EventError::Encode`].
    Encode,
}

impl EventErrorKind {
    /// A stable snake_case name, for metric labels and logs.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::UnknownVersion => "unknown_version",
            Self::Framing => "framing",
            Self::InvalidArchive => "invalid_archive",
            Self::Invalid => "invalid",
            Self::Json => "json",
            Self::Encode => "encode",
        }
    }
}

impl fmt::Display for EventErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EventError {
    /// The failure class.
    #[must_use]
    pub const fn kind(&self) -> EventErrorKind {
        match self {
            Self::Empty { .. } => EventErrorKind::Empty,
            Self::UnknownVersion { .. } => EventErrorKind::UnknownVersion,
            Self::Framing { .. } => EventErrorKind::Framing,
            Self::InvalidArchive { .. } => EventErrorKind::InvalidArchive,
            Self::Invalid { .. } => EventErrorKind::Invalid,
            Self::Json { .. } => EventErrorKind::Json,
            Self::Encode { .. } => EventErrorKind::Encode,
        }
    }

    pub(crate) fn invalid(
        what: &'static str,
        path: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::Invalid {
            what,
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// Decodes JSON into `T`, naming the field path of the first problem and rejecting trailing
    /// bytes.
    pub(crate) fn from_json<T: serde::de::DeserializeOwned>(
        what: &'static str,
        bytes: &[u8],
    ) -> Result<T, Self> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
            let path = err.path().to_string();
            Self::Json {
                what,
                path: if path == "." { String::new() } else { path },
                source: err.into_inner(),
            }
        })?;
        de.end().map_err(|source| Self::Json {
            what,
            path: String::new(),
            source,
        })?;
        Ok(value)
    }

    /// Encodes `value` as compact JSON.
    pub(crate) fn to_json<T: serde::Serialize>(
        what: &'static str,
        value: &T,
    ) -> Result<Vec<u8>, Self> {
        serde_json::to_vec(value).map_err(|err| Self::Encode {
            what,
            source: Box::new(err),
        })
    }
}

/// Formats a JSON path as "`path`: ", or nothing at the top level.
struct PathPrefix<'a>(&'a str);

impl fmt::Display for PathPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "`{}`: ", self.0)
        }
    }
}
