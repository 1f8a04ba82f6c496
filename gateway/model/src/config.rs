//! The configuration file's schema (`tollgate.toml`), as serde structs with unknown keys refused.
//! Pure data: the gateway checks it into runtime values (`gateway::config`), the ledger reads the
//! sections it needs (`[node]`, `[events]`, `[ledger]`, `[quotas]`, `[log]`) from the same file.
//! Every field is documented in docs/config.md.
//!
//! [`read`] reads a parsed file leniently: every unknown key and every value of the wrong type is
//! reported with its path and left out, so that one mistake never hides another.

use serde::Deserialize;

use crate::validate::Problems;

/// The file as written. Every field is documented in docs/config.md.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// This node.
    #[serde(default)]
    pub node: NodeSection,
    /// Traffic listeners.
    #[serde(default)]
    pub listeners: ListenersSection,
    /// The admin API.
    #[serde(default)]
    pub admin: AdminSection,
    /// Where usage and entity events go.
    #[serde(default)]
    pub events: EventsSection,
    /// The ledger.
    #[serde(default)]
    pub ledger: LedgerSection,
    /// Quota calendar.
    #[serde(default)]
    pub quotas: QuotasSection,
    /// Entities imported into an empty entity log.
    #[serde(default)]
    pub seed: SeedSection,
    /// Downstream HTTP limits and timeouts.
    #[serde(default)]
    pub http: HttpSection,
    /// The process's own log lines.
    #[serde(default)]
    pub log: LogSection,
    /// The access log (one JSON line per request).
    #[serde(default)]
    pub access_log: AccessLogSection,
}

/// `[access_log]`: one JSON line per request, written off the cores by a sink thread.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogSection {
    /// Write it (default false). Takes effect at the next start.
    pub enabled: Option<bool>,
    /// The file, relative to the config file (default `<data_dir>/access.log`).
    pub path: Option<String>,
    /// Share of requests logged, 0.0 to 1.0 (default 1.0). Re-read on SIGHUP.
    pub sample: Option<f64>,
    /// Size at which the file is rotated (`access.log` → `access.log.1` …), bytes (default
    /// 104857600 = 100 MiB).
    pub max_bytes: Option<u64>,
    /// Rotated files kept (default 5).
    pub keep: Option<u32>,
}

/// `[log]`: the log lines the process writes to stderr (not the access log).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// Filter directives: a default level and per-target levels, e.g. `"info"` or
    /// `"info,gateway::admin=debug"` (default `"info"`). `RUST_LOG`, when set, takes precedence.
    /// Re-read on SIGHUP.
    pub level: Option<String>,
    /// `"text"` (default: `time level target: message key=value…`) or `"json"` (one JSON object
    /// per line). Takes effect at the next start.
    pub format: Option<String>,
}

/// `[http]`: limits and timeouts of client connections.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// Largest request head in bytes (431 above; default 32768).
    pub max_head_bytes: Option<u32>,
    /// Most header fields in a request (431 above; default 100, at most 256).
    pub max_headers: Option<u32>,
    /// Time allowed to receive a whole request head once its first byte arrived, ms (408; default 10000).
    pub header_timeout_ms: Option<u64>,
    /// Idle keep-alive time between requests, ms (default 75000).
    pub idle_timeout_ms: Option<u64>,
    /// Largest request body in bytes when the route sets none (413; default 104857600 = 100 MiB; 0 = no limit).
    pub max_body_bytes: Option<u64>,
    /// Time to finish in-flight requests on SIGTERM/SIGINT, ms (default 10000).
    pub drain_timeout_ms: Option<u64>,
    /// Header carrying the request id to the upstream and back (default `X-Request-Id`).
    pub request_id_header: Option<String>,
    /// `append` (default): the client's `X-Forwarded-For` values are kept and the peer address
    /// appended; `replace`: the peer address alone (a gateway with no proxy in front of it).
    pub forwarded_for: Option<String>,
    /// Slowest accepted request body, bytes per second once `body_rate_grace_ms` has passed
    /// (408 and close below it; default 1024; 0 = no minimum).
    pub min_body_rate: Option<u64>,
    /// Time a request body may take before `min_body_rate` applies, ms (default 5000).
    pub body_rate_grace_ms: Option<u64>,
    /// Request bodies up to this size are received whole before an upstream connection is
    /// taken, so a slow client never holds one (default 65536; 0 = always stream).
    pub request_buffer_bytes: Option<u32>,
    /// Share of a target's `max_connections` (per core, percent) that requests still streaming
    /// a larger body may hold; beyond it such a request gets 503 (default 50).
    pub streaming_share_percent: Option<u8>,
}

/// `[node]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Node id, unique in a cluster (default: `node-1`).
    pub id: Option<String>,
    /// Worker threads, one per core (default: every core).
    pub cores: Option<u32>,
    /// Directory for the journal, spool and ledger store, relative to the config file (default `data`).
    pub data_dir: Option<String>,
}

/// `[listeners]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenersSection {
    /// `[listeners.http]`: plain HTTP/1.1.
    pub http: Option<HttpListener>,
    /// `[listeners.https]`: HTTP/1.1 over TLS (rustls).
    pub https: Option<HttpsListener>,
}

/// `[listeners.http]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpListener {
    /// `host:port` to listen on.
    pub addr: String,
}

/// `[listeners.https]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpsListener {
    /// `host:port` to listen on.
    pub addr: String,
    /// PEM certificate chain (leaf first) of the default certificate, relative to the config
    /// file; with `key`. Optional when certificate entities cover every name.
    pub cert: Option<String>,
    /// PEM private key of the default certificate (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<String>,
    /// Oldest TLS version accepted: `"1.2"` (default) or `"1.3"`.
    pub min_version: Option<String>,
    /// Refuse names no certificate covers with an alert, instead of serving the default
    /// certificate (default false).
    pub strict_sni: Option<bool>,
    /// Client certificates: `"none"` (default), `"optional"` or `"required"`; needs `client_ca`.
    pub client_auth: Option<String>,
    /// PEM CA bundle that signs client certificates.
    pub client_ca: Option<String>,
    /// Time allowed for a TLS handshake, ms (default 10000).
    pub handshake_timeout_ms: Option<u64>,
    /// How often the session-ticket key rotates, seconds (default 43200 = 12 h; a ticket opens
    /// for up to twice that).
    pub ticket_rotation_secs: Option<u64>,
}

/// `[admin]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// `host:port` of the admin API (default `127.0.0.1:9000`).
    pub addr: Option<String>,
    /// Bearer token of the admin API.
    pub token: Option<String>,
    /// A file holding the token (instead of `token`).
    pub token_file: Option<String>,
    /// The cluster key sealing secrets in the entity log (32 bytes: raw, 64 hex digits or
    /// base64), relative to the config file. Every node of a cluster needs the same key. Default:
    /// `<data_dir>/cluster.key`, generated (with a warning) when missing.
    pub cluster_key_file: Option<String>,
    /// Seconds a secret replaced by an automatic rotation is still accepted (default 3600; 0
    /// rejects it at once, as Otoroshi does).
    pub previous_secret_grace_s: Option<u64>,
    /// Entity events between two snapshots of the folded entity log (default 1000).
    pub snapshot_every: Option<u64>,
    /// Serve `GET /metrics` without the bearer token (default false), for a Prometheus that
    /// scrapes from a trusted network.
    pub metrics_public: Option<bool>,
}

/// `[events]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsSection {
    /// `embedded` (journal on disk, the default) or `kafka`.
    pub sink: Option<String>,
    /// `[events.kafka]`, required when `sink = "kafka"`.
    pub kafka: Option<KafkaSection>,
    /// `[events.journal]`: the embedded usage journal's durability, segments and retention.
    pub journal: Option<JournalSection>,
}

/// `[events.journal]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSection {
    /// When appended usage is forced to disk: `"always"` (every append), `"never"` (the OS
    /// decides), or an interval such as `"100ms"` or `"1s"` (default `"100ms"`).
    pub fsync: Option<String>,
    /// Size at which a segment file is sealed and a new one started (default 67108864, 64 MiB).
    pub segment_bytes: Option<u64>,
    /// Delete the oldest sealed segments while the journal is larger than this (default: keep
    /// everything).
    pub retention_bytes: Option<u64>,
    /// Delete sealed segments last written longer ago than this many hours (default: keep
    /// everything; at least 768, 32 days, since a restart restores the month from the journal).
    pub retention_hours: Option<u64>,
}

/// `[events.kafka]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSection {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Usage topic (default `tollgate.usage`).
    pub usage_topic: Option<String>,
    /// Entity topic (default `tollgate.entities`).
    pub entities_topic: Option<String>,
    /// Totals topic (default `tollgate.totals`).
    pub totals_topic: Option<String>,
    /// Partitions of the usage topic when Tollgate creates it (default 16).
    pub partitions: Option<u32>,
}

/// `[ledger]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSection {
    /// `embedded` (in the gateway process, the default) or `remote`.
    pub mode: Option<String>,
    /// `host:port` of the ledger's query API (default `127.0.0.1:9100`).
    pub addr: Option<String>,
    /// Seconds after a day or month ends during which late usage still amends it; later usage
    /// is recorded as an adjustment to that period (default 3600).
    pub grace_secs: Option<u64>,
    /// Kafka consumer group of the ledger in remote mode (default `tollgate-ledger`).
    pub group: Option<String>,
    /// The ledger's store file, relative to the config file (default
    /// `<data_dir>/ledger/ledger.redb`).
    pub store: Option<String>,
    /// Bearer token of the ledger's query API: when set, every endpoint but `/health` needs
    /// `Authorization: Bearer <token>` (default: none, the API is open; keep it on loopback).
    pub token: Option<String>,
    /// A file holding the token (instead of `token`), relative to the config file.
    pub token_file: Option<String>,
}

/// `[quotas]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotasSection {
    /// IANA time zone of the daily and monthly quota windows (default `UTC`).
    pub timezone: Option<String>,
}

/// `[seed]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedSection {
    /// Entity file (Tollgate or Otoroshi JSON) imported when the entity log is empty.
    pub entities: Option<String>,
}

/// A config file read leniently by [`read`].
#[derive(Debug, Clone, Default)]
pub struct ReadConfig {
    /// What could be read: every key reported in `problems` is left out (its default applies).
    pub file: FileConfig,
    /// Unknown keys, values of the wrong type and missing required keys, each with its path.
    pub problems: Problems,
    /// Paths of the keys and tables left out (`""`: the whole file).
    pub left_out: Vec<String>,
}

impl ReadConfig {
    /// Whether a problem at `path` may be a consequence of a key left out: `path` is that key,
    /// inside it or above it (`listeners` is above `listeners.http`). A later check skips such
    /// problems, since the first report already names the cause.
    #[must_use]
    pub fn covers(&self, path: &str) -> bool {
        self.left_out
            .iter()
            .any(|out| out.is_empty() || path.is_empty() || within(path, out) || within(out, path))
    }
}

/// Whether `path` is `outer` or a key inside it.
fn within(path: &str, outer: &str) -> bool {
    path.strip_prefix(outer)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// Most problems one read reports (each found problem costs one more pass over the file).
const MAX_PROBLEMS: usize = 100;

/// Reads a parsed config file (a TOML document turned into a JSON value) into a [`FileConfig`],
/// reporting every unknown key and every value of the wrong type with its path rather than only
/// the first one: each bad key is recorded, taken out of the document, and the document read
/// again. A missing required key takes its whole table out (`listeners.http` without `addr`).
#[must_use]
pub fn read(mut value: serde_json::Value) -> ReadConfig {
    let mut problems = Problems::default();
    let mut left_out: Vec<String> = Vec::new();
    for _ in 0..MAX_PROBLEMS {
        let error = match serde_path_to_error::deserialize::<_, FileConfig>(&value) {
            Ok(file) => {
                return ReadConfig {
                    file,
                    problems,
                    left_out,
                };
            }
            Err(e) => e,
        };
        let keys: Vec<Key> = error
            .path()
            .iter()
            .map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Key::Name(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Key::Index(*index),
                _ => Key::Unknown,
            })
            .collect();
        let path = match error.path().to_string() {
            root if root == "." => String::new(),
            p => p,
        };
        let message = error.into_inner().to_string();
        match missing_field(&message) {
            Some(field) => {
                let key = if path.is_empty() {
                    field.to_owned()
                } else {
                    format!("{path}.{field}")
                };
                // A key taken out for its bad value is missing now: already reported.
                if !left_out.contains(&key) {
                    problems.push(key, "missing (required)");
                }
            }
            None => problems.push(path.clone(), message.trim()),
        }
        if keys.is_empty() || !remove(&mut value, &keys) {
            // Nothing smaller to take out: the file as a whole is unusable.
            left_out.push(String::new());
            return ReadConfig {
                file: FileConfig::default(),
                problems,
                left_out,
            };
        }
        left_out.push(path);
    }
    left_out.push(String::new());
    problems.push(
        "",
        format!("more than {MAX_PROBLEMS} problems; stopped reading"),
    );
    ReadConfig {
        file: FileConfig::default(),
        problems,
        left_out,
    }
}

/// One step of a path into the document.
#[derive(Debug)]
enum Key {
    Name(String),
    Index(usize),
    Unknown,
}

/// The field named by serde's "missing field `x`" error.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")?
        .split('`')
        .next()
        .filter(|f| !f.is_empty())
}

/// Takes the value at `keys` out of `value`; false when it is not there.
fn remove(value: &mut serde_json::Value, keys: &[Key]) -> bool {
    let Some((last, parents)) = keys.split_last() else {
        return false;
    };
    let mut at = value;
    for key in parents {
        let next = match (key, at) {
            (Key::Name(k), serde_json::Value::Object(map)) => map.get_mut(k),
            (Key::Index(i), serde_json::Value::Array(items)) => items.get_mut(*i),
            _ => None,
        };
        match next {
            Some(v) => at = v,
            None => return false,
        }
    }
    match (last, at) {
        (Key::Name(k), serde_json::Value::Object(map)) => map.remove(k).is_some(),
        (Key::Index(i), serde_json::Value::Array(items)) if *i < items.len() => {
            items.remove(*i);
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn paths(read: &ReadConfig) -> Vec<String> {
        read.problems.iter().map(|p| p.path.clone()).collect()
    }

    #[test]
    fn every_unknown_key_and_bad_value_is_reported() {
        let read = read(json!({
            "node": {"corez": 2, "cores": "two", "id": "a"},
            "nodes": {},
            "admin": {"token": 5, "tokn": "x"},
            "log": {"level": "debug", "colour": true},
        }));
        let mut found = paths(&read);
        found.sort();
        assert_eq!(
            found,
            [
                "admin.token",
                "admin.tokn",
                "log.colour",
                "node.cores",
                "node.corez",
                "nodes"
            ]
        );
        // What is good is kept.
        assert_eq!(read.file.node.id.as_deref(), Some("a"));
        assert_eq!(read.file.log.level.as_deref(), Some("debug"));
        assert!(read.covers("admin.token"));
        assert!(!read.covers("admin.addr"));
        assert!(!read.covers("node.id"));
    }

    #[test]
    fn a_missing_required_key_leaves_its_table_out() {
        let read = read(json!({"listeners": {"http": {"adr": "x"}}, "node": {"cores": 0}}));
        let found = paths(&read);
        assert!(
            found.contains(&"listeners.http.adr".to_owned()),
            "{found:?}"
        );
        assert!(
            found.contains(&"listeners.http.addr".to_owned()),
            "{found:?}"
        );
        assert!(read.file.listeners.http.is_none());
        // A check saying "no listener" would only repeat the cause.
        assert!(read.covers("listeners"));
        assert_eq!(read.file.node.cores, Some(0));
        // A bad value of a required key is reported once, not again as missing.
        let read2 = super::read(json!({"listeners": {"http": {"addr": 8080}}}));
        assert_eq!(paths(&read2), ["listeners.http.addr"]);
    }

    #[test]
    fn a_file_that_is_not_a_table_is_one_problem() {
        let read = read(json!("not a table"));
        assert_eq!(read.problems.len(), 1);
        assert!(read.covers("anything"));
    }
}
