use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A reusable backend (Otoroshi's `StoredNgBackend`, `/api/backends`), referenced by
/// `backend_ref`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredBackend {
    /// Unique id among backends.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// String metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The backend itself.
    pub backend: Backend,
}

/// Where a route's requests go (Otoroshi's `NgBackend`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backend {
    /// The servers; at least one, unless `mock` is set.
    #[serde(default)]
    pub targets: Vec<Target>,
    /// A static answer instead of an upstream (Tollgate only): the quickstart and tests run
    /// without any server behind the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock: Option<MockResponse>,
    /// Path prefix added in front of the (stripped) request path.
    #[serde(default = "default_root")]
    pub root: String,
    /// Otoroshi's rewrite flag (path templates); not supported, must be false.
    #[serde(default)]
    pub rewrite: bool,
    /// How a target is chosen.
    #[serde(default)]
    pub load_balancing: LoadBalancing,
    /// Timeouts, retries and the circuit breaker.
    #[serde(default)]
    pub client: ClientConfig,
    /// Active health checks.
    #[serde(default)]
    pub health_check: Option<HealthCheck>,
}

/// A static response served by the gateway itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockResponse {
    /// Status code, 200–599 (default 200).
    #[serde(default = "default_mock_status")]
    pub status: u16,
    /// Response headers (`content-length` is computed; `content-type` defaults to
    /// `application/json` when absent).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Response body.
    #[serde(default)]
    pub body: String,
}

fn default_mock_status() -> u16 {
    200
}

fn default_root() -> String {
    "/".to_owned()
}

/// One upstream server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// Target id (informational).
    #[serde(default)]
    pub id: String,
    /// Host name or IP address; names are resolved when a snapshot is built, never per request.
    pub hostname: String,
    /// TCP port, 1–65535.
    pub port: u16,
    /// Connect with TLS.
    #[serde(default)]
    pub tls: bool,
    /// Relative weight for weighted balancing, at least 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Only used when every non-backup target is down.
    #[serde(default)]
    pub backup: bool,
    /// Only `HTTP/1.1` is supported upstream.
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// Connect to this address instead of resolving `hostname`.
    #[serde(default)]
    pub ip_address: Option<String>,
    /// TLS settings towards this target (client certificate, trusted CAs); without it, a `tls`
    /// target is verified against the system's trust roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<TlsConfig>,
}

/// TLS settings of a target (Otoroshi's `NgTlsConfig`, same field names and defaults). The
/// certificates are named by their ids in `/api/certificates`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TlsConfig {
    /// These settings apply only when enabled (Otoroshi's `mtls` flag).
    #[serde(default)]
    pub enabled: bool,
    /// Otoroshi's loose verification: the target's name is not checked against its
    /// certificate (the chain still is).
    #[serde(default)]
    pub loose: bool,
    /// Accept any server certificate, unverified.
    #[serde(default)]
    pub trust_all: bool,
    /// Client certificates presented to the target (certificates with a private key).
    #[serde(default)]
    pub certs: Vec<String>,
    /// CA certificates the target's certificate must chain to, instead of the system roots.
    #[serde(default)]
    pub trusted_certs: Vec<String>,
}

impl Backend {
    /// The certificate ids the targets' `tls_config` name, with the JSON path (relative to the
    /// backend) of each mention: `targets[0].tls_config.certs[1]`.
    pub fn certificate_refs(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        for (i, t) in self.targets.iter().enumerate() {
            let Some(tls) = &t.tls_config else { continue };
            for (field, ids) in [("certs", &tls.certs), ("trusted_certs", &tls.trusted_certs)] {
                for (j, id) in ids.iter().enumerate() {
                    out.push((format!("targets[{i}].tls_config.{field}[{j}]"), id.as_str()));
                }
            }
        }
        out
    }
}

fn default_weight() -> u32 {
    1
}

fn default_protocol() -> String {
    "HTTP/1.1".to_owned()
}

/// Load-balancing policies (Otoroshi's names; `type` is the tag).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum LoadBalancing {
    /// Each target in turn (weighted).
    #[default]
    RoundRobin,
    /// A random target (weighted).
    Random,
    /// The less loaded of two random targets.
    PowerOfTwoRandomChoices,
    /// The target with the fewest in-flight requests on this core.
    LeastConnections,
    /// Hash of the client IP.
    IpAddressHash,
    /// Hash of a request header.
    HeaderHash {
        /// The header to hash.
        #[serde(default = "default_hash_name")]
        header_name: String,
    },
    /// The first healthy target in order.
    NaiveFailover,
    /// Any other Otoroshi policy: reported by validation as unsupported.
    #[serde(other)]
    Unsupported,
}

fn default_hash_name() -> String {
    "session-id".to_owned()
}

/// Timeouts (ms), retries and circuit breaker (Otoroshi's `NgClientConfig`, same defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientConfig {
    /// Retries of a failed idempotent call.
    pub retries: u32,
    /// Consecutive errors that open a target's circuit breaker.
    pub max_errors: u32,
    /// First retry delay (ms), multiplied by `backoff_factor` each time.
    pub retry_initial_delay: u64,
    /// Backoff multiplier.
    pub backoff_factor: u64,
    /// TCP connect timeout (ms).
    pub connection_timeout: u64,
    /// Idle pooled connection lifetime (ms).
    pub idle_timeout: u64,
    /// Timeout for the whole call including the streamed response (ms).
    pub call_and_stream_timeout: u64,
    /// Timeout until the response head (ms).
    pub call_timeout: u64,
    /// Timeout of the whole call including retries (ms).
    pub global_timeout: u64,
    /// How long an open circuit breaker waits before letting one call through (ms).
    pub sample_interval: u64,
    /// Cap on pooled upstream connections per target and core. Tollgate only.
    pub max_connections: u32,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            retries: 1,
            max_errors: 20,
            retry_initial_delay: 50,
            backoff_factor: 2,
            connection_timeout: 10_000,
            idle_timeout: 60_000,
            call_and_stream_timeout: 120_000,
            call_timeout: 30_000,
            global_timeout: 30_000,
            sample_interval: 2_000,
            max_connections: 1024,
        }
    }
}

/// Active HTTP health check of every target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// Checks run only when enabled.
    #[serde(default)]
    pub enabled: bool,
    /// Path (or URL whose path is used) requested on each target.
    #[serde(default = "default_root")]
    pub url: String,
    /// Timeout of one check (ms).
    #[serde(default = "default_check_timeout")]
    pub timeout: u64,
    /// Interval between checks (ms). Tollgate only.
    #[serde(default = "default_check_interval")]
    pub interval: u64,
    /// Statuses that count as healthy (empty: 2xx and 3xx).
    #[serde(default, alias = "healthy_statuses")]
    pub healthy_statuses: Vec<u16>,
    /// Statuses that count as unhealthy.
    #[serde(default, alias = "unhealthy_statuses")]
    pub unhealthy_statuses: Vec<u16>,
}

fn default_check_timeout() -> u64 {
    5_000
}

fn default_check_interval() -> u64 {
    10_000
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            enabled: false,
            url: default_root(),
            timeout: default_check_timeout(),
            interval: default_check_interval(),
            healthy_statuses: Vec::new(),
            unhealthy_statuses: Vec::new(),
        }
    }
}
