//! The ledger's configuration: the `[node]`, `[events]`, `[ledger]` and `[quotas]` sections of
//! the gateway's own `tollgate.toml` (schema in `gateway_model::config`), checked into a
//! [`LedgerConfig`]. Every bad field is reported with its path.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway_model::config::FileConfig;
use gateway_model::entity::Secret;

use crate::calendar::Calendar;

/// Default grace after a day or month ends during which late usage amends it.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
/// Default Kafka `group.id` the ledger's client reports (it joins no group).
pub const DEFAULT_GROUP: &str = "tollgate-ledger";
/// Default query API address.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9100";

/// Where the ledger reads events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceConfig {
    /// Tail the embedded journal under `<data_dir>/journal` (streams `usage` and `entities`).
    Journal {
        /// The gateway's data directory.
        data_dir: PathBuf,
    },
    /// Consume every partition of the Kafka topics (assigned by the ledger itself), with offsets
    /// kept in the ledger's store.
    Kafka {
        /// Bootstrap brokers.
        brokers: String,
        /// Usage topic.
        usage_topic: String,
        /// Entity topic.
        entities_topic: String,
        /// Totals topic the ledger publishes to.
        totals_topic: String,
        /// The `group.id` the client reports; no group is joined.
        group: String,
        /// Partitions of the topics when the ledger has to create them.
        partitions: u32,
    },
}

impl SourceConfig {
    /// Every partition of `topics` on `brokers` (`partitions` when the ledger creates them),
    /// reporting `group` as its client's group id.
    #[must_use]
    pub fn kafka(
        brokers: &str,
        topics: &gateway_events::kafka::Topics,
        group: &str,
        partitions: u32,
    ) -> Self {
        Self::Kafka {
            brokers: brokers.to_owned(),
            usage_topic: topics.usage.clone(),
            entities_topic: topics.entities.clone(),
            totals_topic: topics.totals.clone(),
            group: group.to_owned(),
            partitions,
        }
    }
}

/// The checked configuration of a ledger.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Where events come from.
    pub source: SourceConfig,
    /// The store file.
    pub store_path: PathBuf,
    /// Query API address; `None` serves no HTTP (an embedding process that only wants
    /// [`crate::LedgerHandle::totals`]).
    pub addr: Option<SocketAddr>,
    /// Calendar of days and months (`[quotas] timezone`).
    pub calendar: Calendar,
    /// Grace after a period ends.
    pub grace: Duration,
    /// This ledger's name in the totals it publishes (`node` of `TotalsRecord`).
    pub instance: String,
    /// How long the journal source sleeps when it has read everything.
    pub poll: Duration,
    /// Most records folded into one committed chunk.
    pub chunk_records: usize,
    /// Bearer token of the query API (`[ledger] token` or `token_file`): when set, every
    /// endpoint but `/health` needs it. `None`: open (bind it to loopback).
    pub token: Option<Secret>,
    /// Limits of the query API's listener (request deadline, idle timeout, connection caps).
    pub http: gateway_httpd::Limits,
    /// `[log]`: the `ledger` binary's log level and format.
    pub log: gateway_telemetry::LogSettings,
}

impl LedgerConfig {
    /// The embedded defaults over the journal of `data_dir`: store in
    /// `<data_dir>/ledger/ledger.redb`, UTC, grace 1 h, no HTTP.
    #[must_use]
    pub fn journal(data_dir: &Path) -> Self {
        Self {
            source: SourceConfig::Journal {
                data_dir: data_dir.to_owned(),
            },
            store_path: data_dir.join("ledger").join("ledger.redb"),
            addr: None,
            calendar: Calendar::utc(),
            grace: DEFAULT_GRACE,
            instance: "ledger".to_owned(),
            poll: Duration::from_millis(50),
            chunk_records: 1024,
            token: None,
            http: gateway_httpd::Limits::default(),
            log: gateway_telemetry::LogSettings::default(),
        }
    }

    /// Reads and checks the config file at `path`.
    ///
    /// # Errors
    ///
    /// Every problem found, each with the path of its key.
    pub fn load(path: &Path) -> Result<Self, Problems> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Problems::one("", format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base)
    }

    /// Parses and checks config text; relative paths are relative to `base`.
    ///
    /// # Errors
    ///
    /// Every problem found, each with the path of its key.
    /// Unknown keys and values of the wrong type are all reported (not only the first), with the
    /// problems of the rest of the file.
    pub fn parse(text: &str, base: &Path) -> Result<Self, Problems> {
        let value: toml::Value = toml::from_str(text)
            .map_err(|e| Problems::one("", format!("not valid TOML: {}", e.message())))?;
        let json = serde_json::to_value(value)
            .map_err(|e| Problems::one("", format!("not valid TOML: {e}")))?;
        let read = gateway_model::config::read(json);
        let checked = Self::from_file(&read.file, base);
        if read.problems.is_empty() {
            return checked;
        }
        let mut problems = Problems(
            read.problems
                .iter()
                .map(|p| (p.path.clone(), p.message.clone()))
                .collect(),
        );
        for (path, message) in checked.err().map(|p| p.0).unwrap_or_default() {
            if !read.covers(&path) && !problems.0.iter().any(|(q, _)| *q == path) {
                problems.push(&path, message);
            }
        }
        Err(problems)
    }

    /// Checks the sections of an already parsed file.
    ///
    /// # Errors
    ///
    /// Every problem found, each with the path of its key.
    pub fn from_file(file: &FileConfig, base: &Path) -> Result<Self, Problems> {
        let mut p = Problems::default();
        let data_dir = base.join(file.node.data_dir.as_deref().unwrap_or("data"));
        let node_id = file.node.id.clone().unwrap_or_else(|| "node-1".to_owned());
        let remote = match file.ledger.mode.as_deref().unwrap_or("embedded") {
            "embedded" => false,
            "remote" => true,
            other => {
                p.push(
                    "ledger.mode",
                    format!("expected \"embedded\" or \"remote\", got {other:?}"),
                );
                false
            }
        };
        let kafka = match file.events.sink.as_deref().unwrap_or("embedded") {
            "embedded" => false,
            "kafka" => true,
            other => {
                p.push(
                    "events.sink",
                    format!("expected \"embedded\" or \"kafka\", got {other:?}"),
                );
                false
            }
        };
        let source = match (&file.events.kafka, kafka && remote) {
            (Some(k), true) => {
                if k.brokers.trim().is_empty() {
                    p.push("events.kafka.brokers", "must not be empty");
                }
                SourceConfig::Kafka {
                    brokers: k.brokers.clone(),
                    usage_topic: k
                        .usage_topic
                        .clone()
                        .unwrap_or_else(|| gateway_model::event::USAGE_TOPIC.to_owned()),
                    entities_topic: k
                        .entities_topic
                        .clone()
                        .unwrap_or_else(|| gateway_model::event::ENTITIES_TOPIC.to_owned()),
                    totals_topic: k
                        .totals_topic
                        .clone()
                        .unwrap_or_else(|| gateway_model::event::TOTALS_TOPIC.to_owned()),
                    group: file
                        .ledger
                        .group
                        .clone()
                        .unwrap_or_else(|| DEFAULT_GROUP.to_owned()),
                    partitions: k.partitions.unwrap_or(16).max(1),
                }
            }
            (None, true) => {
                p.push("events.kafka", "required with events.sink = \"kafka\"");
                SourceConfig::Journal {
                    data_dir: data_dir.clone(),
                }
            }
            (_, false) => SourceConfig::Journal {
                data_dir: data_dir.clone(),
            },
        };
        if let Some(group) = &file.ledger.group {
            if group.trim().is_empty() {
                p.push("ledger.group", "must not be empty");
            }
        }
        let addr_text = file.ledger.addr.as_deref().unwrap_or(DEFAULT_ADDR);
        let addr = match addr_text.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                p.push(
                    "ledger.addr",
                    format!(
                        "expected an IP address and port such as 127.0.0.1:9100, got {addr_text:?}"
                    ),
                );
                None
            }
        };
        let zone = file.quotas.timezone.as_deref().unwrap_or("UTC");
        let calendar = match Calendar::new(zone) {
            Ok(c) => c,
            Err(_) => {
                p.push(
                    "quotas.timezone",
                    format!("unknown IANA time zone {zone:?}"),
                );
                Calendar::utc()
            }
        };
        let grace = file
            .ledger
            .grace_secs
            .map_or(DEFAULT_GRACE, Duration::from_secs);
        if grace > Duration::from_secs(31 * 86_400) {
            p.push("ledger.grace_secs", "expected at most 2678400 (31 days)");
        }
        let store_path = match &file.ledger.store {
            Some(path) if path.trim().is_empty() => {
                p.push("ledger.store", "must not be empty");
                PathBuf::new()
            }
            Some(path) => base.join(path),
            None => data_dir.join("ledger").join("ledger.redb"),
        };
        let token = token(file, base, &mut p);
        let log = gateway_telemetry::LogSettings::from_section(&file.log).unwrap_or_else(|bad| {
            for (path, message) in bad {
                p.push(&path, message);
            }
            gateway_telemetry::LogSettings::default()
        });
        if !p.is_empty() {
            return Err(p);
        }
        Ok(Self {
            source,
            store_path,
            addr,
            calendar,
            grace,
            instance: format!("ledger@{node_id}"),
            poll: Duration::from_millis(50),
            chunk_records: 1024,
            token,
            http: gateway_httpd::Limits::default(),
            log,
        })
    }

    /// The grace in milliseconds.
    #[must_use]
    pub fn grace_ms(&self) -> i64 {
        i64::try_from(self.grace.as_millis()).unwrap_or(i64::MAX)
    }
}

/// `[ledger] token` or `token_file` (trimmed), checked; never echoed in a problem.
fn token(file: &FileConfig, base: &Path, p: &mut Problems) -> Option<Secret> {
    let text = match (&file.ledger.token, &file.ledger.token_file) {
        (None, None) => return None,
        (Some(_), Some(_)) => {
            p.push(
                "ledger.token_file",
                "set ledger.token or ledger.token_file, not both",
            );
            return None;
        }
        (Some(t), None) => t.trim().to_owned(),
        (None, Some(f)) => match std::fs::read_to_string(base.join(f)) {
            Ok(t) => t.trim().to_owned(),
            Err(e) => {
                p.push("ledger.token_file", format!("{f}: {e}"));
                return None;
            }
        },
    };
    let key = if file.ledger.token.is_some() {
        "ledger.token"
    } else {
        "ledger.token_file"
    };
    if text.len() < 8 {
        p.push(key, "expected a token of at least 8 characters");
        return None;
    }
    Some(Secret::new(text))
}

/// Configuration problems, each `path: message`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<(String, String)>);

impl Problems {
    fn one(path: &str, message: impl Into<String>) -> Self {
        let mut p = Self::default();
        p.push(path, message);
        p
    }

    /// Adds a problem at `path`.
    pub fn push(&mut self, path: &str, message: impl Into<String>) {
        self.0.push((path.to_owned(), message.into()));
    }

    /// Whether there is none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (path, message) in &self.0 {
            if path.is_empty() {
                writeln!(f, "{message}")?;
            } else {
                writeln!(f, "{path}: {message}")?;
            }
        }
        write!(f, "{} problem(s)", self.0.len())
    }
}

impl std::error::Error for Problems {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_field_is_reported_with_its_path() {
        let text = r#"
[ledger]
mode = "sideways"
addr = "nowhere"
grace_secs = 99999999
[quotas]
timezone = "Mars/Olympus"
"#;
        let problems = LedgerConfig::parse(text, Path::new("/etc")).unwrap_err();
        let paths: Vec<_> = problems.0.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "ledger.mode",
                "ledger.addr",
                "quotas.timezone",
                "ledger.grace_secs"
            ]
        );
        let problems = LedgerConfig::parse("[ledger]\ngrace = 1\n", Path::new(".")).unwrap_err();
        assert_eq!(problems.0[0].0, "ledger.grace");
        // An unknown key hides nothing: the bad value beside it is reported too.
        let problems = LedgerConfig::parse(
            "[ledger]\ngrace = 1\nmode = \"sideways\"\n[log]\nformat = \"xml\"\n",
            Path::new("."),
        )
        .unwrap_err();
        let paths: Vec<_> = problems.0.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["ledger.grace", "ledger.mode", "log.format"]);
    }

    #[test]
    fn the_token_comes_from_token_or_token_file_and_is_never_echoed() {
        let c = LedgerConfig::parse("", Path::new(".")).unwrap();
        assert!(c.token.is_none());
        let c = LedgerConfig::parse("[ledger]\ntoken = \" ledger-token-1 \"\n", Path::new("."))
            .unwrap();
        assert_eq!(c.token.as_ref().map(Secret::expose), Some("ledger-token-1"));
        assert!(!format!("{c:?}").contains("ledger-token-1"));

        let dir = std::env::temp_dir().join(format!("ledger-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "from-a-file-123\n").unwrap();
        let c = LedgerConfig::parse("[ledger]\ntoken_file = \"token\"\n", &dir).unwrap();
        assert_eq!(
            c.token.as_ref().map(Secret::expose),
            Some("from-a-file-123")
        );

        for (text, path) in [
            ("[ledger]\ntoken = \"short\"\n", "ledger.token"),
            (
                "[ledger]\ntoken = \"long-enough-1\"\ntoken_file = \"token\"\n",
                "ledger.token_file",
            ),
            ("[ledger]\ntoken_file = \"missing\"\n", "ledger.token_file"),
        ] {
            let problems = LedgerConfig::parse(text, &dir).unwrap_err();
            assert_eq!(problems.0[0].0, path, "{text}");
            assert!(!problems.to_string().contains("long-enough-1"));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn remote_with_kafka_consumes_kafka_else_the_journal() {
        let text = r#"
[node]
data_dir = "d"
[events]
sink = "kafka"
[events.kafka]
brokers = "127.0.0.1:9092"
[ledger]
mode = "remote"
grace_secs = 60
"#;
        let c = LedgerConfig::parse(text, Path::new("/srv")).unwrap();
        assert!(matches!(&c.source, SourceConfig::Kafka { group, .. } if group == DEFAULT_GROUP));
        assert_eq!(c.grace_ms(), 60_000);
        assert_eq!(c.store_path, Path::new("/srv/d/ledger/ledger.redb"));
        let c = LedgerConfig::parse("", Path::new("/srv")).unwrap();
        assert_eq!(
            c.source,
            SourceConfig::Journal {
                data_dir: "/srv/data".into()
            }
        );
    }
}
