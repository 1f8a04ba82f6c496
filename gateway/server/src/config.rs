//! The node configuration: the TOML file a user writes (`tollgate.toml`), read with unknown keys
//! refused, then checked into a [`NodeConfig`] whose every field is valid. Every problem is
//! reported with the path of its key (`listeners.http.addr: expected host:port, got "x"`).
//!
//! Two levels, as in monolake: [`FileConfig`] mirrors the file (serde, `deny_unknown_fields`), and
//! `NodeConfig::try_from` turns it into runtime values (socket addresses, absolute paths, a
//! calendar). Runtime-only knobs are CLI flags, not config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use gateway_core::window::Calendar;
pub use gateway_model::config::*;
use gateway_model::import::{Import, import_document};
use gateway_model::validate::Problems;

use crate::error::{GatewayError, GatewayErrorKind};

/// Checked `[http]` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest request head in bytes.
    pub max_head_bytes: usize,
    /// Most header fields.
    pub max_headers: usize,
    /// Head timeout.
    pub header_timeout: std::time::Duration,
    /// Keep-alive idle timeout.
    pub idle_timeout: std::time::Duration,
    /// Default largest request body (`u64::MAX` for none).
    pub max_body_bytes: u64,
    /// Drain time at shutdown.
    pub drain_timeout: std::time::Duration,
    /// Request id header name.
    pub request_id_header: String,
    /// `X-Forwarded-For` policy.
    pub forwarded_for: gateway_core::rewrite::ForwardedFor,
    /// Slowest accepted request body after the grace time, bytes per second (0: none).
    pub min_body_rate: u64,
    /// Time before the minimum body rate applies.
    pub body_rate_grace: std::time::Duration,
    /// Bodies up to this size are received whole before an upstream connection is taken.
    pub request_buffer_bytes: usize,
    /// Percent of a target's `max_connections` that streaming-body requests may hold.
    pub streaming_share_percent: u8,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_head_bytes: 32 * 1024,
            max_headers: 100,
            header_timeout: std::time::Duration::from_secs(10),
            idle_timeout: std::time::Duration::from_secs(75),
            max_body_bytes: 100 * 1024 * 1024,
            drain_timeout: std::time::Duration::from_secs(10),
            request_id_header: "X-Request-Id".to_owned(),
            forwarded_for: gateway_core::rewrite::ForwardedFor::Append,
            min_body_rate: 1024,
            body_rate_grace: std::time::Duration::from_secs(5),
            request_buffer_bytes: 64 * 1024,
            streaming_share_percent: 50,
        }
    }
}

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// The embedded journal under the data directory.
    Embedded,
    /// Kafka.
    Kafka {
        /// Bootstrap brokers.
        brokers: String,
        /// Usage topic.
        usage_topic: String,
        /// Entity topic.
        entities_topic: String,
        /// Totals topic.
        totals_topic: String,
        /// Usage partitions.
        partitions: u32,
    },
}

/// Where the ledger runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerMode {
    /// In the gateway process.
    Embedded,
    /// A separate `ledger` process.
    Remote,
}

/// The TLS listener's settings, checked (the files are read when the node starts, and by
/// `gateway check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `host:port`.
    pub addr: SocketAddr,
    /// Certificate chain of the default certificate.
    pub cert: Option<PathBuf>,
    /// Private key of the default certificate.
    pub key: Option<PathBuf>,
    /// `"1.2"` or `"1.3"`.
    pub min_version: String,
    /// Refuse unknown names.
    pub strict_sni: bool,
    /// Client certificates.
    pub client_auth: crate::tls::server::ClientAuth,
    /// Client CA for mTLS.
    pub client_ca: Option<PathBuf>,
    /// Handshake timeout.
    pub handshake_timeout: std::time::Duration,
    /// Ticket key rotation.
    pub ticket_rotation: std::time::Duration,
}

impl TlsFiles {
    /// Reads the files and builds the listener's TLS settings.
    ///
    /// # Errors
    /// A problem naming the config key (an unreadable file, a key that does not match).
    pub fn load(&self) -> Result<crate::tls::ListenerTls, crate::tls::server::SetupError> {
        crate::tls::ListenerTls::load(&crate::tls::server::ListenerSettings {
            cert: self.cert.as_deref(),
            key: self.key.as_deref(),
            min_version: &self.min_version,
            strict_sni: self.strict_sni,
            client_auth: self.client_auth,
            client_ca: self.client_ca.as_deref(),
            handshake_timeout: self.handshake_timeout,
        })
    }
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Node id.
    pub node_id: String,
    /// Worker threads.
    pub cores: usize,
    /// Absolute data directory.
    pub data_dir: PathBuf,
    /// Plain HTTP listener.
    pub http: Option<SocketAddr>,
    /// TLS listener.
    pub https: Option<TlsFiles>,
    /// Admin API address.
    pub admin_addr: SocketAddr,
    /// Admin bearer token (never logged).
    pub admin_token: gateway_model::entity::Secret,
    /// The cluster key file; `None`: `<data_dir>/cluster.key`, generated when missing.
    pub cluster_key_file: Option<PathBuf>,
    /// How long a rotated-out secret is still accepted.
    pub previous_secret_grace: std::time::Duration,
    /// Entity events between two snapshots of the fold.
    pub snapshot_every: u64,
    /// Event sink.
    pub sink: Sink,
    /// Ledger mode.
    pub ledger_mode: LedgerMode,
    /// Ledger query API address.
    pub ledger_addr: SocketAddr,
    /// Quota calendar.
    pub calendar: Calendar,
    /// Seed entity file and what it holds.
    pub seed: Option<(PathBuf, Import)>,
    /// Downstream limits and timeouts.
    pub limits: HttpLimits,
    /// The usage journal's options (`[events.journal]`).
    pub journal: crate::journal::JournalOptions,
    /// `[log]`: level directives and format.
    pub log: gateway_telemetry::LogSettings,
    /// `[admin] metrics_public`: `/metrics` without the bearer token.
    pub metrics_public: bool,
    /// `[access_log]`, when enabled.
    pub access_log: Option<crate::access::AccessLogSettings>,
}

impl NodeConfig {
    /// The Kafka client settings of `[events.kafka]` (`None` with the embedded sink): brokers,
    /// topics, partitions, the spool under the data directory.
    #[must_use]
    pub fn kafka(&self) -> Option<crate::kafka::KafkaConfig> {
        let Sink::Kafka {
            brokers,
            usage_topic,
            entities_topic,
            totals_topic,
            partitions,
        } = &self.sink
        else {
            return None;
        };
        let mut kafka = crate::kafka::KafkaConfig::new(brokers, &self.data_dir);
        kafka.topics = crate::kafka::Topics {
            usage: usage_topic.clone(),
            entities: entities_topic.clone(),
            totals: totals_topic.clone(),
        };
        kafka.partitions = *partitions;
        Some(kafka)
    }
}

/// Reads and checks a config file.
///
/// # Errors
/// Every problem found, each with the path of its key; file-level errors (unreadable, not TOML)
/// have an empty path.
pub fn load(path: &Path) -> Result<NodeConfig, Problems> {
    let text =
        std::fs::read_to_string(path).map_err(|e| one("", format!("{}: {e}", path.display())))?;
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    parse(&text, &base)
}

fn one(path: &str, message: impl Into<String>) -> Problems {
    let mut p = Problems::default();
    p.push(path, message);
    p
}

/// Parses and checks config text; relative paths are relative to `base`.
///
/// # Errors
/// Every problem found, each with the path of its key: unknown keys and values of the wrong
/// type are all reported (not only the first), with the problems of the rest of the file.
pub fn parse(text: &str, base: &Path) -> Result<NodeConfig, Problems> {
    let read = read_text(text)?;
    let checked = check(read.file.clone(), base);
    if read.problems.is_empty() {
        return checked;
    }
    Err(merge(read.problems.clone(), &read, checked.err()))
}

/// Parses config text as TOML and reads it leniently ([`gateway_model::config::read`]).
///
/// # Errors
/// When the text is not TOML (one problem, with the line).
pub fn read_text(text: &str) -> Result<ReadConfig, Problems> {
    let value: toml::Value = toml::from_str(text).map_err(|e| one("", toml_error(text, &e)))?;
    let json = serde_json::to_value(value).map_err(|e| one("", format!("not valid TOML: {e}")))?;
    Ok(gateway_model::config::read(json))
}

/// What `gateway check` verifies beyond the file itself, each problem at its key: the
/// listener addresses are free (another process listening there would make the start fail),
/// and the data directory can be written. Works on what could be read of the file (a key with
/// a bad value is skipped: it is reported already), binds nothing for longer than the probe and
/// leaves no file behind.
#[must_use]
pub fn preflight(file: &FileConfig, base: &Path) -> Problems {
    let mut p = Problems::default();
    let parse = |a: Option<&str>, default: &str| a.unwrap_or(default).parse::<SocketAddr>().ok();
    let mut addrs: Vec<(&str, Option<SocketAddr>)> = vec![
        (
            "listeners.http.addr",
            file.listeners
                .http
                .as_ref()
                .and_then(|l| l.addr.parse().ok()),
        ),
        (
            "listeners.https.addr",
            file.listeners
                .https
                .as_ref()
                .and_then(|l| l.addr.parse().ok()),
        ),
        (
            "admin.addr",
            parse(file.admin.addr.as_deref(), "127.0.0.1:9000"),
        ),
    ];
    if file.ledger.mode.as_deref().unwrap_or("embedded") == "embedded" {
        addrs.push((
            "ledger.addr",
            parse(file.ledger.addr.as_deref(), "127.0.0.1:9100"),
        ));
    }
    let addrs = addrs
        .into_iter()
        .filter_map(|(key, addr)| Some((key, addr?)));
    for (key, addr) in addrs {
        if addr.port() == 0 {
            continue;
        }
        if let Err(e) = std::net::TcpListener::bind(addr) {
            let why = match e.kind() {
                std::io::ErrorKind::AddrInUse => format!(
                    "{addr} is in use: another process listens there (a node already running? \
                     `ss -ltnp 'sport = :{}'` names it)",
                    addr.port()
                ),
                std::io::ErrorKind::PermissionDenied => format!(
                    "{addr}: permission denied (ports below 1024 need root or \
                     CAP_NET_BIND_SERVICE)"
                ),
                std::io::ErrorKind::AddrNotAvailable => {
                    format!("{addr}: not an address of this machine")
                }
                _ => format!("{addr}: cannot listen there: {e}"),
            };
            p.push(key, why);
        }
    }
    let data_dir = base.join(file.node.data_dir.as_deref().unwrap_or("data"));
    if let Err(why) = writable_dir(&data_dir) {
        p.push("node.data_dir", why.to_string());
    }
    p
}

/// Whether files can be created in `dir`, or (when it does not exist yet) in the nearest
/// directory above it, which the node would create it in. Probes with a file it removes.
///
/// # Errors
/// [`GatewayErrorKind::Config`] when the path (or what is above it) is not a directory,
/// [`GatewayErrorKind::Io`] when it cannot be read or written.
fn writable_dir(dir: &Path) -> Result<(), GatewayError> {
    let mut at = dir.to_path_buf();
    loop {
        match std::fs::metadata(&at) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(GatewayError::new(
                    GatewayErrorKind::Config,
                    format!("{}: not a directory", at.display()),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => match at.parent() {
                Some(parent) if parent.as_os_str().is_empty() => at = PathBuf::from("."),
                Some(parent) => at = parent.to_path_buf(),
                None => {
                    return Err(GatewayError::new(
                        GatewayErrorKind::Config,
                        format!("{}: no existing directory above it", dir.display()),
                    ));
                }
            },
            Err(e) => {
                return Err(GatewayError::with(
                    GatewayErrorKind::Io,
                    at.display().to_string(),
                    e,
                ));
            }
        }
    }
    let probe = at.join(format!(".tollgate-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if at == dir => Err(GatewayError::with(
            GatewayErrorKind::Io,
            format!("{}: cannot be written", dir.display()),
            e,
        )),
        Err(e) => Err(GatewayError::with(
            GatewayErrorKind::Io,
            format!(
                "{}: does not exist and cannot be created: {} cannot be written",
                dir.display(),
                at.display()
            ),
            e,
        )),
    }
}

/// `not valid TOML: line 3, column 7: <what>`.
pub fn toml_error(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!(
                "not valid TOML: line {line}, column {column}: {}",
                e.message()
            )
        }
        None => format!("not valid TOML: {}", e.message()),
    }
}

/// `first`, then the problems of `more` that are not consequences of a key `read` left out.
pub fn merge(mut first: Problems, read: &ReadConfig, more: Option<Problems>) -> Problems {
    for p in more.iter().flat_map(Problems::iter) {
        if !read.covers(&p.path) && !first.iter().any(|q| q.path == p.path) {
            first.push(p.path.clone(), p.message.clone());
        }
    }
    first
}

fn addr(value: &str, path: &str, problems: &mut Problems) -> Option<SocketAddr> {
    match value.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            problems.push(
                path,
                format!("expected an IP address and port such as 127.0.0.1:8080, got {value:?}"),
            );
            None
        }
    }
}

fn check(file: FileConfig, base: &Path) -> Result<NodeConfig, Problems> {
    let mut p = Problems::default();
    let node_id = file.node.id.unwrap_or_else(|| "node-1".to_owned());
    if node_id.is_empty()
        || !node_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        p.push("node.id", "expected letters, digits, '-', '_' or '.'");
    }
    let available = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let cores = match file.node.cores {
        None => available,
        Some(0) => {
            p.push("node.cores", "expected an integer ≥ 1");
            1
        }
        Some(n) => usize::try_from(n).unwrap_or(available),
    };
    let data_dir = base.join(file.node.data_dir.as_deref().unwrap_or("data"));

    let http = file
        .listeners
        .http
        .as_ref()
        .and_then(|l| addr(&l.addr, "listeners.http.addr", &mut p));
    let https = file.listeners.https.as_ref().and_then(|l| {
        let a = addr(&l.addr, "listeners.https.addr", &mut p);
        use crate::tls::server::ClientAuth;
        if l.cert.is_some() != l.key.is_some() {
            p.push(
                "listeners.https.key",
                "cert and key go together (both or neither)",
            );
        }
        let min_version = l.min_version.clone().unwrap_or_else(|| "1.2".to_owned());
        if min_version != "1.2" && min_version != "1.3" {
            p.push(
                "listeners.https.min_version",
                format!("expected \"1.2\" or \"1.3\", got {min_version:?}"),
            );
        }
        let client_auth = match l.client_auth.as_deref() {
            None | Some("none") => ClientAuth::None,
            Some("optional") => ClientAuth::Optional,
            Some("required") => ClientAuth::Required,
            Some(other) => {
                p.push(
                    "listeners.https.client_auth",
                    format!("expected \"none\", \"optional\" or \"required\", got {other:?}"),
                );
                ClientAuth::None
            }
        };
        if client_auth != ClientAuth::None && l.client_ca.is_none() {
            p.push(
                "listeners.https.client_ca",
                "client_auth needs a client_ca bundle",
            );
        }
        let handshake_timeout = match l.handshake_timeout_ms {
            Some(0) => {
                p.push(
                    "listeners.https.handshake_timeout_ms",
                    "expected a duration ≥ 1 ms",
                );
                std::time::Duration::from_secs(10)
            }
            Some(ms) => std::time::Duration::from_millis(ms),
            None => std::time::Duration::from_secs(10),
        };
        let ticket_rotation = match l.ticket_rotation_secs {
            Some(0) => {
                p.push(
                    "listeners.https.ticket_rotation_secs",
                    "expected at least 1 s",
                );
                std::time::Duration::from_secs(43_200)
            }
            Some(s) => std::time::Duration::from_secs(s),
            None => std::time::Duration::from_secs(43_200),
        };
        let cert = l
            .cert
            .as_ref()
            .map(|c| readable(base, c, "listeners.https.cert", &mut p));
        let key = l
            .key
            .as_ref()
            .map(|k| readable(base, k, "listeners.https.key", &mut p));
        let client_ca = l
            .client_ca
            .as_ref()
            .map(|c| readable(base, c, "listeners.https.client_ca", &mut p));
        Some(TlsFiles {
            addr: a?,
            cert,
            key,
            min_version,
            strict_sni: l.strict_sni.unwrap_or(false),
            client_auth,
            client_ca,
            handshake_timeout,
            ticket_rotation,
        })
    });
    if file.listeners.http.is_none() && file.listeners.https.is_none() {
        p.push(
            "listeners",
            "expected [listeners.http] or [listeners.https]",
        );
    }
    if let (Some(a), Some(b)) = (&http, &https) {
        // Port 0 asks for any free port: two listeners on it get two ports.
        if *a == b.addr && a.port() != 0 {
            p.push(
                "listeners.https.addr",
                "the same address as listeners.http.addr",
            );
        }
    }

    let admin_addr = addr(
        file.admin.addr.as_deref().unwrap_or("127.0.0.1:9000"),
        "admin.addr",
        &mut p,
    );
    let token = match (&file.admin.token, &file.admin.token_file) {
        (Some(_), Some(_)) => {
            p.push(
                "admin.token_file",
                "set admin.token or admin.token_file, not both",
            );
            String::new()
        }
        (Some(t), None) => t.clone(),
        (None, Some(f)) => match std::fs::read_to_string(base.join(f)) {
            Ok(t) => t.trim().to_owned(),
            Err(e) => {
                p.push("admin.token_file", format!("{f}: {e}"));
                String::new()
            }
        },
        (None, None) => {
            p.push(
                "admin.token",
                "expected the admin API's bearer token (or admin.token_file)",
            );
            String::new()
        }
    };
    if !token.is_empty() && token.len() < 8 {
        p.push("admin.token", "expected at least 8 characters");
    }
    let cluster_key_file = file.admin.cluster_key_file.as_ref().map(|f| {
        let path = base.join(f);
        if let Err(e) = crate::seal::ClusterKey::load(&path) {
            p.push("admin.cluster_key_file", e.to_string());
        }
        path
    });
    let snapshot_every = match file.admin.snapshot_every {
        Some(0) => {
            p.push("admin.snapshot_every", "expected an integer ≥ 1");
            1
        }
        Some(n) => n,
        None => crate::entitylog::DEFAULT_SNAPSHOT_EVERY,
    };
    let previous_secret_grace = match file.admin.previous_secret_grace_s {
        Some(s) if s > 10 * 365 * 86_400 => {
            p.push(
                "admin.previous_secret_grace_s",
                format!("expected at most 10 years in seconds, got {s}"),
            );
            std::time::Duration::ZERO
        }
        Some(s) => std::time::Duration::from_secs(s),
        None => std::time::Duration::from_secs(3600),
    };

    let journal = journal_options(file.events.journal.as_ref(), &mut p);
    let access_log = access_log(&file.access_log, base, &data_dir, &mut p);
    let sink = match (
        file.events.sink.as_deref().unwrap_or("embedded"),
        &file.events.kafka,
    ) {
        ("embedded", _) => Sink::Embedded,
        ("kafka", Some(k)) => {
            if k.brokers.trim().is_empty() {
                p.push("events.kafka.brokers", "expected host:port[,host:port…]");
            }
            if k.partitions == Some(0) {
                p.push("events.kafka.partitions", "expected an integer ≥ 1");
            }
            Sink::Kafka {
                brokers: k.brokers.clone(),
                usage_topic: k
                    .usage_topic
                    .clone()
                    .unwrap_or_else(|| gateway_model::event::USAGE_TOPIC.into()),
                entities_topic: k
                    .entities_topic
                    .clone()
                    .unwrap_or_else(|| gateway_model::event::ENTITIES_TOPIC.into()),
                totals_topic: k
                    .totals_topic
                    .clone()
                    .unwrap_or_else(|| gateway_model::event::TOTALS_TOPIC.into()),
                partitions: k.partitions.unwrap_or(16),
            }
        }
        ("kafka", None) => {
            p.push(
                "events.kafka",
                "sink = \"kafka\" needs [events.kafka] with brokers",
            );
            Sink::Embedded
        }
        (other, _) => {
            p.push(
                "events.sink",
                format!("expected \"embedded\" or \"kafka\", got {other:?}"),
            );
            Sink::Embedded
        }
    };

    let ledger_mode = match file.ledger.mode.as_deref().unwrap_or("embedded") {
        "embedded" => LedgerMode::Embedded,
        "remote" => LedgerMode::Remote,
        other => {
            p.push(
                "ledger.mode",
                format!("expected \"embedded\" or \"remote\", got {other:?}"),
            );
            LedgerMode::Embedded
        }
    };
    let ledger_addr = addr(
        file.ledger.addr.as_deref().unwrap_or("127.0.0.1:9100"),
        "ledger.addr",
        &mut p,
    );

    let zone = file.quotas.timezone.as_deref().unwrap_or("UTC");
    let calendar = Calendar::new(zone)
        .map_err(|e| p.push("quotas.timezone", e.to_string()))
        .ok();

    let seed = file.seed.entities.as_ref().and_then(|f| {
        let path = base.join(f);
        let bytes = std::fs::read(&path)
            .map_err(|e| p.push("seed.entities", format!("{f}: {e}")))
            .ok()?;
        match import_document(&bytes, None) {
            Ok(import) => {
                for problem in import.problems.iter() {
                    p.push("seed.entities", format!("{f}: {problem}"));
                }
                Some((path, import))
            }
            Err(problems) => {
                for problem in problems.iter() {
                    p.push("seed.entities", format!("{f}: {problem}"));
                }
                None
            }
        }
    });

    let limits = check_http(&file.http, &mut p);
    let log = gateway_telemetry::LogSettings::from_section(&file.log).unwrap_or_else(|problems| {
        for (path, message) in problems {
            p.push(path, message);
        }
        gateway_telemetry::LogSettings::default()
    });

    match (admin_addr, ledger_addr, calendar) {
        (Some(admin_addr), Some(ledger_addr), Some(calendar)) if p.is_empty() => Ok(NodeConfig {
            node_id,
            cores,
            data_dir,
            http,
            https,
            admin_addr,
            admin_token: gateway_model::entity::Secret::new(token),
            cluster_key_file,
            previous_secret_grace,
            snapshot_every,
            sink,
            ledger_mode,
            ledger_addr,
            calendar,
            seed,
            limits,
            journal,
            log,
            metrics_public: file.admin.metrics_public.unwrap_or(false),
            access_log,
        }),
        _ => Err(p),
    }
}

/// `base/file`, reporting at `key` when it cannot be read (missing, a directory, no
/// permission): certificate files are read at start, and a typo should fail `gateway check`.
fn readable(base: &Path, file: &str, key: &str, p: &mut Problems) -> PathBuf {
    let path = base.join(file);
    match std::fs::File::open(&path).and_then(|mut f| {
        let mut byte = [0u8; 1];
        std::io::Read::read(&mut f, &mut byte)
    }) {
        Ok(0) => p.push(key, format!("{}: the file is empty", path.display())),
        Ok(_) => {}
        Err(e) => p.push(key, format!("{}: cannot be read: {e}", path.display())),
    }
    path
}

fn check_http(h: &HttpSection, p: &mut Problems) -> HttpLimits {
    use std::time::Duration;
    let d = HttpLimits::default();
    let positive = |v: Option<u64>, key: &str, default: Duration, p: &mut Problems| match v {
        Some(0) => {
            p.push(key, "expected a duration ≥ 1 ms");
            default
        }
        Some(ms) => Duration::from_millis(ms),
        None => default,
    };
    let max_head_bytes = match h.max_head_bytes {
        Some(n) if n < 1024 => {
            p.push(
                "http.max_head_bytes",
                format!("expected at least 1024, got {n}"),
            );
            d.max_head_bytes
        }
        Some(n) => usize::try_from(n).unwrap_or(d.max_head_bytes),
        None => d.max_head_bytes,
    };
    let max_headers = match h.max_headers {
        Some(n) if n == 0 || n > 256 => {
            p.push("http.max_headers", format!("expected 1..=256, got {n}"));
            d.max_headers
        }
        Some(n) => usize::try_from(n).unwrap_or(d.max_headers),
        None => d.max_headers,
    };
    let request_id_header = match &h.request_id_header {
        Some(name) if !gateway_model::validate::field_name_ok(name) => {
            p.push("http.request_id_header", "expected a header name");
            d.request_id_header.clone()
        }
        Some(name) => name.clone(),
        None => d.request_id_header.clone(),
    };
    HttpLimits {
        max_head_bytes,
        max_headers,
        header_timeout: positive(
            h.header_timeout_ms,
            "http.header_timeout_ms",
            d.header_timeout,
            p,
        ),
        idle_timeout: positive(h.idle_timeout_ms, "http.idle_timeout_ms", d.idle_timeout, p),
        max_body_bytes: match h.max_body_bytes {
            Some(0) => u64::MAX,
            Some(n) => n,
            None => d.max_body_bytes,
        },
        drain_timeout: positive(
            h.drain_timeout_ms,
            "http.drain_timeout_ms",
            d.drain_timeout,
            p,
        ),
        request_id_header,
        forwarded_for: match h.forwarded_for.as_deref() {
            None | Some("append") => gateway_core::rewrite::ForwardedFor::Append,
            Some("replace") => gateway_core::rewrite::ForwardedFor::Replace,
            Some(other) => {
                p.push(
                    "http.forwarded_for",
                    format!("expected \"append\" or \"replace\", got {other:?}"),
                );
                d.forwarded_for
            }
        },
        min_body_rate: h.min_body_rate.unwrap_or(d.min_body_rate),
        body_rate_grace: h
            .body_rate_grace_ms
            .map_or(d.body_rate_grace, Duration::from_millis),
        request_buffer_bytes: match h.request_buffer_bytes {
            Some(n) if n > 16 << 20 => {
                p.push(
                    "http.request_buffer_bytes",
                    format!("expected at most 16777216, got {n}"),
                );
                d.request_buffer_bytes
            }
            Some(n) => usize::try_from(n).unwrap_or(d.request_buffer_bytes),
            None => d.request_buffer_bytes,
        },
        streaming_share_percent: match h.streaming_share_percent {
            Some(n) if n == 0 || n > 100 => {
                p.push(
                    "http.streaming_share_percent",
                    format!("expected 1..=100, got {n}"),
                );
                d.streaming_share_percent
            }
            Some(n) => n,
            None => d.streaming_share_percent,
        },
    }
}

/// `[access_log]`, checked; `None` when it is off.
fn access_log(
    section: &gateway_model::config::AccessLogSection,
    base: &Path,
    data_dir: &Path,
    p: &mut Problems,
) -> Option<crate::access::AccessLogSettings> {
    let sample = section.sample.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sample) {
        p.push(
            "access_log.sample",
            format!("expected 0.0 to 1.0, got {sample}"),
        );
    }
    let max_bytes = section.max_bytes.unwrap_or(100 << 20);
    if max_bytes < 4096 {
        p.push(
            "access_log.max_bytes",
            format!("expected at least 4096, got {max_bytes}"),
        );
    }
    let keep = section.keep.unwrap_or(5);
    if keep > 1000 {
        p.push(
            "access_log.keep",
            format!("expected at most 1000, got {keep}"),
        );
    }
    let path = match &section.path {
        Some(path) if path.trim().is_empty() => {
            p.push("access_log.path", "must not be empty");
            PathBuf::new()
        }
        Some(path) => base.join(path),
        None => data_dir.join("access.log"),
    };
    section
        .enabled
        .unwrap_or(false)
        .then_some(crate::access::AccessLogSettings {
            path,
            sample,
            max_bytes,
            keep,
        })
}

/// `[events.journal]` into journal options, naming each bad field.
fn journal_options(
    section: Option<&gateway_model::config::JournalSection>,
    p: &mut Problems,
) -> crate::journal::JournalOptions {
    use crate::journal::{JournalOptions, SyncPolicy};
    let mut options = JournalOptions::default();
    let Some(j) = section else {
        return options;
    };
    if let Some(fsync) = &j.fsync {
        match fsync.trim() {
            "always" => options.sync = SyncPolicy::Always,
            "never" => options.sync = SyncPolicy::Never,
            other => match parse_interval(other) {
                Some(d) if !d.is_zero() => options.sync = SyncPolicy::Every(d),
                _ => p.push(
                    "events.journal.fsync",
                    format!("expected \"always\", \"never\" or an interval such as \"100ms\" or \"1s\", got {other:?}"),
                ),
            },
        }
    }
    match j.segment_bytes {
        Some(n) if n < 4096 => p.push("events.journal.segment_bytes", "expected at least 4096"),
        Some(n) => options.segment_bytes = n,
        None => {}
    }
    if let Some(n) = j.retention_bytes {
        if n < options.segment_bytes.saturating_mul(2) {
            p.push(
                "events.journal.retention_bytes",
                "expected at least two segments (2 × segment_bytes)",
            );
        }
        options.retention_bytes = Some(n);
    }
    if let Some(h) = j.retention_hours {
        if h < 768 {
            p.push(
                "events.journal.retention_hours",
                "expected at least 768 (32 days): a restart restores the current month's \
                 consumption from the journal",
            );
        }
        options.retention_age = Some(std::time::Duration::from_secs(h.saturating_mul(3600)));
    }
    options
}

/// `"100ms"`, `"2s"` → a duration.
fn parse_interval(text: &str) -> Option<std::time::Duration> {
    let (number, unit) = match text.strip_suffix("ms") {
        Some(n) => (n, 1),
        None => (text.strip_suffix('s')?, 1000),
    };
    let n: u64 = number.trim().parse().ok()?;
    Some(std::time::Duration::from_millis(n.checked_mul(unit)?))
}

#[cfg(test)]
mod tests;
