//! gateway-telemetry: how the `gateway` and `ledger` processes write their own log lines and
//! their metrics text.
//!
//! One set-up for both binaries, from the `[log]` section of `tollgate.toml`: `tracing` events to
//! stderr as text (`time level target: message key=value…`, colours only when stderr is a
//! terminal and `NO_COLOR` is unset) or as JSON lines, filtered by `level` directives
//! (`"info,gateway::admin=debug"`; `RUST_LOG` takes precedence when set). The filter sits behind
//! a reload layer, so that SIGHUP can change the level of a running process; the format is fixed
//! at start.
//!
//! It never runs on a core's request path and never decides what is logged: callers log fields
//! first, message last, and never a secret.
//!
//! [`prom`] writes the Prometheus text format of both processes' `/metrics`.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

use std::fmt;
use std::io::IsTerminal as _;

use gateway_model::config::LogSection;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, reload};

pub mod prom;

/// The filter when `[log] level` is not set.
pub const DEFAULT_LEVEL: &str = "info";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Human-readable lines: `time level target: message key=value…`.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `message`, the fields).
    Json,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Text => "text",
            Self::Json => "json",
        })
    }
}

/// Checked `[log]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Filter directives (`tracing_subscriber::EnvFilter` syntax).
    pub level: String,
    /// Text or JSON.
    pub format: Format,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: DEFAULT_LEVEL.to_owned(),
            format: Format::Text,
        }
    }
}

impl LogSettings {
    /// Checks a `[log]` section.
    ///
    /// # Errors
    /// Every bad field, as `(path, message)`: `log.level` when a directive does not parse,
    /// `log.format` when it is neither `text` nor `json`.
    pub fn from_section(section: &LogSection) -> Result<Self, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let level = section
            .level
            .clone()
            .unwrap_or_else(|| DEFAULT_LEVEL.to_owned());
        if let Err(e) = parse_filter(&level) {
            problems.push(("log.level".to_owned(), e.message));
        }
        let format = match section.format.as_deref() {
            None | Some("text") => Format::Text,
            Some("json") => Format::Json,
            Some(other) => {
                problems.push((
                    "log.format".to_owned(),
                    format!("expected \"text\" or \"json\", got {other:?}"),
                ));
                Format::Text
            }
        };
        if problems.is_empty() {
            Ok(Self { level, format })
        } else {
            Err(problems)
        }
    }
}

/// What kind of problem a [`TelemetryError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TelemetryErrorKind {
    /// Filter directives that do not parse or are refused (not ASCII, field filters, too
    /// long).
    Filter,
    /// The running filter could not be replaced.
    Reload,
}

impl TelemetryErrorKind {
    /// Lowercase name for logs and JSON.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Filter => "filter",
            Self::Reload => "reload",
        }
    }
}

impl fmt::Display for TelemetryErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The crate's one error type: a kind callers can match, and what is wrong in words (shown by
/// `gateway check` under `log.level`, and in the SIGHUP log line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TelemetryError {
    /// What kind of problem.
    pub kind: TelemetryErrorKind,
    /// What is wrong, in words.
    pub message: String,
}

impl TelemetryError {
    fn filter(message: String) -> Self {
        Self {
            kind: TelemetryErrorKind::Filter,
            message,
        }
    }
}

/// The longest `[log] level` (or `RUST_LOG`) accepted.
const MAX_DIRECTIVES_LEN: usize = 1024;

fn parse_filter(directives: &str) -> Result<EnvFilter, TelemetryError> {
    // tracing-subscriber 0.3 slices directives by byte offsets and panics inside a multi-byte
    // character (found by fuzz/config_toml): targets, levels and span names are ASCII, so
    // anything else is refused before it gets there.
    if !directives.is_ascii() {
        return Err(TelemetryError::filter(format!(
            "expected filter directives in ASCII such as \"info\" or \"info,gateway::admin=debug\", \
             got {directives:?}"
        )));
    }
    // Field filters (`span{field=value}`) compile their values into regular expressions whose
    // automata can take gigabytes and minutes to build (found by fuzz/config_toml: 2 GB, 697 s
    // for one 300-byte level): refused, with an overall length bound.
    if directives.contains(['{', '}']) || directives.len() > MAX_DIRECTIVES_LEN {
        return Err(TelemetryError::filter(format!(
            "expected filter directives without field filters (`{{…}}`), at most \
             {MAX_DIRECTIVES_LEN} bytes, such as \"info,gateway::admin=debug\""
        )));
    }
    EnvFilter::builder().parse(directives).map_err(|e| {
        TelemetryError::filter(format!(
            "expected filter directives such as \"info\" or \"info,gateway::admin=debug\", \
             got {directives:?}: {e}"
        ))
    })
}

/// `RUST_LOG`, when set and not empty: it takes precedence over `[log] level`.
fn env_override() -> Option<String> {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// The running log set-up: changes the filter of a running process.
#[derive(Debug)]
pub struct LogHandle {
    filter: Option<reload::Handle<EnvFilter, Registry>>,
    settings: LogSettings,
}

/// What [`LogHandle::reload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// The level is unchanged.
    Unchanged,
    /// The new level applies from now on.
    Level {
        /// The previous directives.
        from: String,
        /// The new ones.
        to: String,
    },
    /// `RUST_LOG` is set and takes precedence: the file's level is not applied.
    EnvOverride,
    /// Logging was set up by someone else (tests): nothing to change.
    NotOurs,
}

/// Sets up logging for this process with `settings` (or `RUST_LOG`).
///
/// When a global subscriber is already set (a test harness), nothing changes and the handle's
/// reloads do nothing. An unparsable `RUST_LOG` is reported on stderr and `settings.level` used.
#[must_use]
pub fn init(settings: &LogSettings) -> LogHandle {
    let (directives, from_env) = match env_override() {
        Some(env) => (env, true),
        None => (settings.level.clone(), false),
    };
    let filter = parse_filter(&directives).unwrap_or_else(|e| {
        if from_env {
            eprintln!("RUST_LOG: {e}; using {:?}", settings.level);
        }
        parse_filter(&settings.level).unwrap_or_else(|_| EnvFilter::new(DEFAULT_LEVEL))
    });
    let (filter, handle) = reload::Layer::new(filter);
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let text = (settings.format == Format::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(ansi)
    });
    let json = (settings.format == Format::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stderr)
    });
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .try_init()
        .is_ok();
    LogHandle {
        filter: installed.then_some(handle),
        settings: settings.clone(),
    }
}

impl LogHandle {
    /// The settings logging was set up with (or last reloaded to).
    #[must_use]
    pub fn settings(&self) -> &LogSettings {
        &self.settings
    }

    /// Applies `settings.level` to the running process. The format cannot change without a
    /// restart: compare [`LogHandle::settings`] first.
    ///
    /// # Errors
    /// A [`TelemetryError`] when the directives do not parse (kind `Filter`) or the filter
    /// cannot be swapped (kind `Reload`); the running filter is kept.
    pub fn reload(&mut self, settings: &LogSettings) -> Result<Reloaded, TelemetryError> {
        let Some(handle) = &self.filter else {
            return Ok(Reloaded::NotOurs);
        };
        if env_override().is_some() {
            return Ok(Reloaded::EnvOverride);
        }
        if settings.level == self.settings.level {
            return Ok(Reloaded::Unchanged);
        }
        let filter = parse_filter(&settings.level)?;
        handle.reload(filter).map_err(|e| TelemetryError {
            kind: TelemetryErrorKind::Reload,
            message: format!("log filter not reloaded: {e}"),
        })?;
        let from = std::mem::replace(&mut self.settings.level, settings.level.clone());
        Ok(Reloaded::Level {
            from,
            to: settings.level.clone(),
        })
    }
}

/// Re-reads the config file on SIGHUP: applies what can change without a restart (`[log]
/// level`) and logs, by section, what changed but needs one.
pub struct Reloader {
    path: std::path::PathBuf,
    running: Option<toml::Value>,
    handle: LogHandle,
    /// Settings applied at once by the process (`section.key`), with what applies them.
    hooks: Vec<(&'static str, Hook)>,
}

/// Applies one reloadable setting from the re-read file; returns what it did, for the log.
pub type Hook = Box<dyn FnMut(&gateway_model::config::FileConfig) -> Option<String> + Send>;

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Reloader {
    /// Watches `path`, whose current text the process runs with; `handle` is its logging.
    #[must_use]
    pub fn new(path: &std::path::Path, handle: LogHandle) -> Self {
        let running = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| toml::from_str(&text).ok());
        Self {
            path: path.to_owned(),
            running,
            handle,
            hooks: Vec::new(),
        }
    }

    /// Applies `key` (`section.field`) at each SIGHUP with `hook` instead of asking for a
    /// restart when it changes.
    #[must_use]
    pub fn with(mut self, key: &'static str, hook: Hook) -> Self {
        self.hooks.push((key, hook));
        self
    }

    /// Re-reads the file and logs what happened: the new level, or why nothing changed, and
    /// the sections that changed but need a restart. A file that no longer parses or checks
    /// changes nothing (the process keeps running as it is).
    pub fn reload(&mut self) {
        let path = self.path.display().to_string();
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) => {
                tracing::warn!(config = %path, error = %e, "SIGHUP: config not re-read");
                return;
            }
        };
        let value: toml::Value = match toml::from_str(&text) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(config = %path, error = %e.message(), "SIGHUP: config not re-read: not valid TOML");
                return;
            }
        };
        let read = serde_json::to_value(&value)
            .map(gateway_model::config::read)
            .unwrap_or_default();
        if !read.problems.is_empty() {
            let problems: Vec<String> = read.problems.iter().map(ToString::to_string).collect();
            tracing::warn!(config = %path, problems = %problems.join("; "), "SIGHUP: config not re-read: run `gateway check --config` for every problem");
            return;
        }
        let settings = match LogSettings::from_section(&read.file.log) {
            Ok(s) => s,
            Err(problems) => {
                let problems: Vec<String> =
                    problems.iter().map(|(p, m)| format!("{p}: {m}")).collect();
                tracing::warn!(config = %path, problems = %problems.join("; "), "SIGHUP: [log] not applied");
                return;
            }
        };
        match self.handle.reload(&settings) {
            Ok(Reloaded::Level { from, to }) => {
                tracing::info!(from = %from, to = %to, "SIGHUP: log level changed");
            }
            Ok(Reloaded::EnvOverride) => tracing::info!(
                "SIGHUP: RUST_LOG is set and takes precedence over [log] level: level unchanged"
            ),
            Ok(Reloaded::Unchanged | Reloaded::NotOurs) => {
                tracing::info!("SIGHUP: log level unchanged");
            }
            Err(e) => tracing::warn!(error = %e, "SIGHUP: log level not changed"),
        }
        for (key, hook) in &mut self.hooks {
            if let Some(done) = hook(&read.file) {
                tracing::info!(setting = *key, applied = %done, "SIGHUP: applied");
            }
        }
        let reloadable: Vec<&str> = self.hooks.iter().map(|(k, _)| *k).collect();
        let strip = |v: &toml::Value| {
            let mut v = v.clone();
            for key in &reloadable {
                if let Some((section, field)) = key.split_once('.') {
                    if let Some(t) = v.get_mut(section).and_then(toml::Value::as_table_mut) {
                        t.remove(field);
                    }
                }
            }
            v
        };
        let restart = changed_sections(
            self.running.as_ref().map(strip).as_ref(),
            &strip(&value),
            &self.handle.settings,
            &settings,
        );
        if !restart.is_empty() {
            tracing::warn!(
                sections = %restart.join(", "),
                "SIGHUP: changed in the file, applied at the next start (restart the process)"
            );
        }
    }
}

/// The sections of `new` that differ from `running` and cannot change without a restart: all
/// but `[log]`, and `log.format`.
fn changed_sections(
    running: Option<&toml::Value>,
    new: &toml::Value,
    running_log: &LogSettings,
    new_log: &LogSettings,
) -> Vec<String> {
    let empty = toml::map::Map::new();
    let old = running.and_then(toml::Value::as_table).unwrap_or(&empty);
    let new = new.as_table().unwrap_or(&empty);
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut changed: Vec<String> = keys
        .into_iter()
        .filter(|k| k.as_str() != "log" && old.get(*k) != new.get(*k))
        .map(|k| format!("[{k}]"))
        .collect();
    if running_log.format != new_log.format {
        changed.push("log.format".to_owned());
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_checked_with_their_paths() {
        let ok = LogSettings::from_section(&LogSection {
            level: Some("info,gateway::admin=debug".into()),
            format: Some("json".into()),
        })
        .unwrap();
        assert_eq!(ok.format, Format::Json);
        assert_eq!(
            LogSettings::from_section(&LogSection::default()).unwrap(),
            LogSettings::default()
        );
        let bad = LogSettings::from_section(&LogSection {
            level: Some("info,gateway=loud".into()),
            format: Some("xml".into()),
        })
        .unwrap_err();
        let paths: Vec<&str> = bad.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["log.level", "log.format"]);
    }

    /// Found by fuzz/config_toml: a field filter whose value compiles into a huge automaton
    /// (2 GB and 697 s for this one); field filters are refused at once.
    #[test]
    fn field_filters_are_refused_before_they_compile() {
        let level = ",[[6{[=^^^^^^^^^.........................................................*.......z.................^^^^^Z^^^^^^^^^^^^^^^^^^ledger.mode}}[}lot";
        let started = std::time::Instant::now();
        for level in [
            level,
            "info,gateway[conn{peer=1}]=debug",
            &"info,".repeat(300),
        ] {
            let bad = LogSettings::from_section(&LogSection {
                level: Some(level.into()),
                format: None,
            })
            .unwrap_err();
            assert_eq!(bad[0].0, "log.level");
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Span names without fields still work.
        LogSettings::from_section(&LogSection {
            level: Some("info,gateway[admin]=debug".into()),
            format: None,
        })
        .unwrap();
    }

    /// Found by fuzz/config_toml: a directive with a multi-byte character made
    /// tracing-subscriber panic (slicing inside the character) instead of refusing it.
    #[test]
    fn non_ascii_directives_are_refused_not_a_panic() {
        for level in [
            "wrr*mek \u{60f}etitiesed ={n*mek",
            "info,caf\u{e9}=debug",
            "\u{e9}",
            "[{x=\u{60f}}]",
        ] {
            let bad = LogSettings::from_section(&LogSection {
                level: Some(level.into()),
                format: None,
            })
            .unwrap_err();
            assert_eq!(bad[0].0, "log.level", "{level}");
        }
    }

    #[test]
    fn refused_directives_are_filter_errors() {
        for level in ["caf\u{e9}", "info,x{a=1}", "info,gateway=loud"] {
            let e = parse_filter(level).unwrap_err();
            assert_eq!(e.kind, TelemetryErrorKind::Filter, "{level}");
            assert!(
                e.to_string().starts_with("expected filter directives"),
                "{e}"
            );
        }
    }

    #[test]
    fn sections_needing_a_restart_are_named() {
        let old: toml::Value =
            toml::from_str("[node]\nid = \"a\"\n[log]\nlevel = \"info\"\n").unwrap();
        let new: toml::Value = toml::from_str(
            "[node]\nid = \"b\"\n[admin]\ntoken = \"x\"\n[log]\nlevel = \"debug\"\nformat = \"json\"\n",
        )
        .unwrap();
        let json = LogSettings {
            format: Format::Json,
            ..LogSettings::default()
        };
        assert_eq!(
            changed_sections(Some(&old), &new, &LogSettings::default(), &json),
            ["[admin]", "[node]", "log.format"]
        );
        assert!(changed_sections(Some(&old), &old, &json, &json).is_empty());
    }
}
