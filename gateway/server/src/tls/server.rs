//! The HTTPS listener's TLS: the certificate chosen by SNI (an exact SAN, then a wildcard SAN,
//! then the listener's file certificate, or an alert with `strict_sni`), TLS versions, client
//! certificates, and one `ServerConfig` per core.

use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig, SupportedProtocolVersion};

use super::sessions::CoreSessionCache;
use super::tickets::{CoreTicketer, TicketKeys};
use crate::error::{GatewayError, GatewayErrorKind};

/// Whether clients present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// Never asked for.
    #[default]
    None,
    /// Asked for, verified when presented, not required.
    Optional,
    /// Required: the handshake fails without a certificate the client CA signed.
    Required,
}

/// A problem loading the listener's TLS settings, with the config key it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct SetupError {
    /// The config key (`listeners.https.cert`).
    pub key: &'static str,
    /// What is wrong.
    pub message: String,
}

fn setup(key: &'static str, message: impl Into<String>) -> SetupError {
    SetupError {
        key,
        message: message.into(),
    }
}

/// What the listener's config says, loaded once (files read and parsed at start).
#[derive(Debug, Clone)]
pub struct ListenerTls {
    default: Option<Arc<CertifiedKey>>,
    /// The names the default certificate covers (what `strict_sni` still serves with it).
    default_names: Arc<CertStore>,
    versions: Vec<&'static SupportedProtocolVersion>,
    strict_sni: bool,
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    /// The `client_ca` bundle's certificates: with the API CAs of the snapshot's certificates
    /// (mTLS consumers), the roots each core's verifier trusts.
    client_roots: Vec<CertificateDer<'static>>,
    /// Whether and how client certificates are asked for.
    pub client_auth: ClientAuth,
    /// Time allowed for a handshake.
    pub handshake_timeout: Duration,
}

/// The listener's settings, as checked by the config.
#[derive(Debug, Clone)]
pub struct ListenerSettings<'a> {
    /// PEM chain (leaf first) of the default certificate, when set.
    pub cert: Option<&'a std::path::Path>,
    /// PEM private key of the default certificate.
    pub key: Option<&'a std::path::Path>,
    /// `"1.2"` or `"1.3"`.
    pub min_version: &'a str,
    /// Refuse names no certificate covers.
    pub strict_sni: bool,
    /// Client certificates.
    pub client_auth: ClientAuth,
    /// PEM CA bundle that signs client certificates.
    pub client_ca: Option<&'a std::path::Path>,
    /// Handshake timeout.
    pub handshake_timeout: Duration,
}

/// Reads a PEM chain (leaf first).
///
/// # Errors
/// Unreadable file, no certificate in it.
pub fn read_chain(
    path: &std::path::Path,
    key: &'static str,
) -> Result<Vec<CertificateDer<'static>>, SetupError> {
    let chain: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| setup(key, format!("{}: {e}", path.display())))?
        .collect();
    let chain = chain.map_err(|e| setup(key, format!("{}: {e}", path.display())))?;
    if chain.is_empty() {
        return Err(setup(
            key,
            format!("{}: no certificate in it", path.display()),
        ));
    }
    Ok(chain)
}

impl ListenerTls {
    /// Loads the files and checks that the key matches the certificate.
    ///
    /// # Errors
    /// A [`SetupError`] naming the key of the first bad setting.
    pub fn load(s: &ListenerSettings<'_>) -> Result<Self, SetupError> {
        let provider = super::provider();
        let mut default_names = CertStore::default();
        let default = match (s.cert, s.key) {
            (Some(cert), Some(key)) => {
                let chain = read_chain(cert, "listeners.https.cert")?;
                let names = chain
                    .first()
                    .and_then(|leaf| gateway_model::x509::inspect(leaf).ok())
                    .map(|info| info.dns_names())
                    .unwrap_or_default();
                let der = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| setup("listeners.https.key", format!("{}: {e}", key.display())))?;
                let certified =
                    Arc::new(CertifiedKey::from_der(chain, der, &provider).map_err(|e| {
                        setup(
                            "listeners.https.key",
                            format!("does not match listeners.https.cert: {e}"),
                        )
                    })?);
                default_names = CertStore::with_names(&certified, &names);
                Some(certified)
            }
            (None, None) => None,
            _ => {
                return Err(setup(
                    "listeners.https.key",
                    "cert and key go together (both or neither)",
                ));
            }
        };
        let versions: Vec<&'static SupportedProtocolVersion> = match s.min_version {
            "1.2" => vec![&rustls::version::TLS13, &rustls::version::TLS12],
            "1.3" => vec![&rustls::version::TLS13],
            other => {
                return Err(setup(
                    "listeners.https.min_version",
                    format!("expected \"1.2\" or \"1.3\", got {other:?}"),
                ));
            }
        };
        let mut client_roots = Vec::new();
        let verifier = match (s.client_auth, s.client_ca) {
            (ClientAuth::None, _) => WebPkiClientVerifier::no_client_auth(),
            (_, None) => {
                return Err(setup(
                    "listeners.https.client_ca",
                    "client_auth needs a client_ca bundle",
                ));
            }
            (auth, Some(ca)) => {
                let mut roots = RootCertStore::empty();
                for c in read_chain(ca, "listeners.https.client_ca")? {
                    client_roots.push(c.clone());
                    roots.add(c).map_err(|e| {
                        setup(
                            "listeners.https.client_ca",
                            format!("{}: {e}", ca.display()),
                        )
                    })?;
                }
                let builder =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                let builder = if auth == ClientAuth::Optional {
                    builder.allow_unauthenticated()
                } else {
                    builder
                };
                builder
                    .build()
                    .map_err(|e| setup("listeners.https.client_ca", e.to_string()))?
            }
        };
        Ok(Self {
            default,
            default_names: Arc::new(default_names),
            versions,
            strict_sni: s.strict_sni,
            verifier,
            client_roots,
            client_auth: s.client_auth,
            handshake_timeout: s.handshake_timeout,
        })
    }

    /// The `ServerConfig` of one core: this listener's settings, the certificates of `store`,
    /// tickets sealed with `keys`, the core's own session cache.
    ///
    /// # Errors
    /// A [`GatewayErrorKind::Tls`] error when rustls refuses the combination (never expected
    /// with these settings), or no randomness can be read for the ticketer.
    pub fn core_config(
        &self,
        store: Arc<CertStore>,
        keys: &Arc<TicketKeys>,
    ) -> Result<Arc<ServerConfig>, GatewayError> {
        let verifier = self.verifier_with(&store.client_cas)?;
        let resolver = SniResolver {
            store,
            default: self.default.clone(),
            default_names: self.default_names.clone(),
            strict: self.strict_sni,
        };
        let mut config = ServerConfig::builder_with_provider(super::provider())
            .with_protocol_versions(&self.versions)
            .map_err(|e| GatewayError::of(GatewayErrorKind::Tls, e))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = super::ALPN.iter().map(|p| p.to_vec()).collect();
        config.session_storage = Arc::new(CoreSessionCache);
        config.ticketer = Arc::new(
            CoreTicketer::new(keys).map_err(|e| GatewayError::of(GatewayErrorKind::Tls, e))?,
        );
        Ok(Arc::new(config))
    }

    /// The client verifier of a core: the listener's own when no API CA is to be trusted, else
    /// one trusting the `client_ca` bundle and `cas` (the snapshot's API CAs, which sign the
    /// certificates issued to mTLS subscriptions). A listener without client auth asks for no
    /// certificate, whatever the snapshot holds.
    fn verifier_with(
        &self,
        cas: &[CertificateDer<'static>],
    ) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, GatewayError> {
        if cas.is_empty() || self.client_auth == ClientAuth::None {
            return Ok(self.verifier.clone());
        }
        let mut roots = RootCertStore::empty();
        for c in self.client_roots.iter().chain(cas) {
            // An API CA rustls cannot use is left out (its subscriptions then fail the
            // handshake); the bundle's were checked at start.
            let _ = roots.add(c.clone());
        }
        let builder =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), super::provider());
        let builder = if self.client_auth == ClientAuth::Optional {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        builder
            .build()
            .map_err(|e| GatewayError::of(GatewayErrorKind::Tls, e))
    }

    /// Whether a default (file) certificate is configured.
    pub fn has_default(&self) -> bool {
        self.default.is_some()
    }
}

/// A certificate to serve, with its validity (ms since the Unix epoch).
#[derive(Debug, Clone)]
struct Served {
    key: Arc<CertifiedKey>,
    not_before_ms: i64,
    not_after_ms: i64,
}

impl Served {
    fn valid_at(&self, now_ms: i64) -> bool {
        self.not_before_ms <= now_ms && now_ms <= self.not_after_ms
    }
}

/// One certificate entity to index.
#[derive(Debug)]
pub struct StoreItem {
    /// Entity id (for errors).
    pub id: String,
    /// DNS names it serves (`*.example.com` for wildcards), lower case.
    pub names: Vec<String>,
    /// The chain, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
    /// Validity.
    pub not_before_ms: i64,
    /// Validity.
    pub not_after_ms: i64,
}

/// The certificates of the entity log, by name. Built once per snapshot, shared by the cores
/// read-only.
#[derive(Debug, Default)]
pub struct CertStore {
    exact: FxHashMap<Box<str>, Vec<Served>>,
    /// Keyed by the suffix after `*` (`.example.com`).
    wildcard: FxHashMap<Box<str>, Vec<Served>>,
    /// CA certificates that sign client certificates: the API CAs of mTLS consumers, trusted
    /// by the listener beside its `client_ca` bundle.
    pub client_cas: Vec<CertificateDer<'static>>,
}

impl CertStore {
    /// Indexes `items`; those whose key cannot be loaded or does not match are left out and
    /// returned with the reason.
    pub fn build(items: impl IntoIterator<Item = StoreItem>) -> (Self, Vec<(String, String)>) {
        let provider = super::provider();
        let mut store = Self::default();
        let mut problems = Vec::new();
        for item in items {
            let key = match CertifiedKey::from_der(item.chain, item.key, &provider) {
                Ok(k) => Arc::new(k),
                Err(e) => {
                    problems.push((item.id, e.to_string()));
                    continue;
                }
            };
            let served = Served {
                key,
                not_before_ms: item.not_before_ms,
                not_after_ms: item.not_after_ms,
            };
            for name in &item.names {
                store.insert(name, &served);
            }
        }
        (store, problems)
    }

    /// Indexes `served` under `name`: `*.suffix` as a wildcard, anything else exactly.
    fn insert(&mut self, name: &str, served: &Served) {
        let name = name.to_ascii_lowercase();
        let list = match name.strip_prefix('*') {
            Some(suffix) if suffix.starts_with('.') => self.wildcard.entry(suffix.into()),
            _ => self.exact.entry(name.into()),
        };
        list.or_default().push(served.clone());
    }

    /// The certificate for `name` at `now_ms`: an exact name before a wildcard (one label),
    /// and among several, a valid one before an expired one, the latest expiry first.
    pub fn lookup(&self, name: &str, now_ms: i64) -> Option<Arc<CertifiedKey>> {
        let mut buf = [0u8; 255];
        let name = lower(name, &mut buf)?;
        let best = |list: &Vec<Served>| {
            list.iter()
                .max_by_key(|s| (s.valid_at(now_ms), s.not_after_ms))
                .map(|s| s.key.clone())
        };
        if let Some(found) = self.exact.get(name).and_then(best) {
            return Some(found);
        }
        let suffix = name.find('.').and_then(|i| name.get(i..))?;
        self.wildcard.get(suffix).and_then(best)
    }

    /// An index of one certificate under `names` (valid whenever asked).
    fn with_names(key: &Arc<CertifiedKey>, names: &[String]) -> Self {
        let mut store = Self::default();
        let served = Served {
            key: key.clone(),
            not_before_ms: i64::MIN,
            not_after_ms: i64::MAX,
        };
        for name in names {
            store.insert(name, &served);
        }
        store
    }

    /// Whether no certificate is indexed.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wildcard.is_empty()
    }
}

/// `name` lower-cased, without a trailing dot, in `buf`.
fn lower<'b>(name: &str, buf: &'b mut [u8; 255]) -> Option<&'b str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let out = buf.get_mut(..name.len())?;
    for (o, b) in out.iter_mut().zip(name.bytes()) {
        *o = b.to_ascii_lowercase();
    }
    std::str::from_utf8(out).ok()
}

#[derive(Debug)]
struct SniResolver {
    store: Arc<CertStore>,
    default: Option<Arc<CertifiedKey>>,
    default_names: Arc<CertStore>,
    strict: bool,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let now_ms = gateway_events::clock::now_ms();
        match hello.server_name() {
            // An entity certificate for the name, else the listener's: with `strict_sni` only
            // for a name its SANs cover.
            Some(name) => self.store.lookup(name, now_ms).or_else(|| {
                if self.strict {
                    self.default_names.lookup(name, now_ms)
                } else {
                    self.default.clone()
                }
            }),
            // No SNI (a client dialling an IP address): the default certificate, unless
            // unknown names are refused.
            None if self.strict => None,
            None => self.default.clone(),
        }
    }
}
