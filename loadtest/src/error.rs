//! The library's error type: what can go wrong before or around a run (never per request;
//! request failures are counted, not returned).

use std::io;

/// Why a run could not be prepared or carried out.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The target URL is not one we can load.
    #[error("url `{url}`: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The target host did not resolve to any address.
    #[error("cannot resolve `{host}`: {source}")]
    Resolve {
        /// `host:port` as given.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// A run setting is out of range or inconsistent; the message names the setting.
    #[error("{0}")]
    Config(String),
    /// A scenario file could not be read or parsed; the source names the bad field.
    #[error("scenario {path}: {source}")]
    Scenario {
        /// The scenario file.
        path: String,
        /// What is wrong: the read error, or the parse error with the field's name.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Scenario text that is not valid TOML or does not fit the scenario's fields; the
    /// message names the field and its line.
    #[error(transparent)]
    ScenarioText(#[from] toml::de::Error),
    /// A duration (`--duration`, a scenario's `warmup`) that does not parse; the message
    /// quotes the text.
    #[error("{0}")]
    Duration(String),
    /// An `expect` entry (`2xx >= 0.99`) that does not parse; the message quotes it (and, in
    /// a scenario, names the entry: `expect[2]: …`).
    #[error("{0}")]
    Expectation(String),
    /// No runtime could be built for the requested IO driver.
    #[error("io driver: {0}")]
    Runtime(io::Error),
    /// A worker thread could not be started or died.
    #[error("worker thread: {0}")]
    Worker(String),
    /// Writing a report failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file being written.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into())
    }
}
