//! The config snapshot: everything the request path reads, built once per entity change and
//! then immutable. Built off the request path (it resolves upstream host names and compiles
//! regexes); the cores only read it.
//!
//! Sources: top-level routes and stored backends, plus the routes of every API that serves
//! traffic (published or deprecated, enabled), compiled like Otoroshi's `toRoutes`: the API
//! route's frontend, its backend (the API's own or a stored one), its flow's plugins, and the
//! metadata `Otoroshi-Api-Ref` so that keys authorized on `api_<id>` pass. Certificate entities
//! are parsed here too ([`crate::certs`]), for the TLS layer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use gateway_core::apikey::{KeyStore, StoreError};
use gateway_core::flow::{ApiConsumers, Directory, Flow, FlowError};
use gateway_core::lifecycle::RouteEntry;
use gateway_core::quota::NodePool;
use gateway_core::route::{BuildError, RouteDef, RouteTable};
use gateway_core::window::Calendar;
use gateway_model::entity::{Backend, MockResponse, Route};
use gateway_model::import::Entities;

use crate::error::{GatewayError, GatewayErrorKind};

/// One upstream server, resolved.
#[derive(Debug, Clone)]
pub struct ResolvedTarget {
    /// `host` or `host:port` for the upstream Host header.
    pub host_header: Box<str>,
    /// Where to connect; `None` when the name did not resolve (the target is unavailable until a
    /// later resolution succeeds).
    pub addr: Option<SocketAddr>,
    /// TLS to this target (`tls: true`), shared by the cores.
    pub tls: Option<std::sync::Arc<crate::tls::client::UpstreamTls>>,
}

/// Targets compare by where they lead (host header and address): the background resolver
/// republishes a snapshot only when an address changed.
impl PartialEq for ResolvedTarget {
    fn eq(&self, other: &Self) -> bool {
        self.host_header == other.host_header
            && self.addr == other.addr
            && self.tls.is_some() == other.tls.is_some()
    }
}

/// A backend as the request path uses it.
#[derive(Debug, Clone)]
pub struct BackendRuntime {
    /// Stored backend id, or `route:<id>` for an inline backend.
    pub id: Box<str>,
    /// The model backend (targets, balancing, client settings, health check).
    pub spec: Backend,
    /// The targets, resolved, in `spec.targets` order.
    pub targets: Vec<ResolvedTarget>,
    /// The whole HTTP/1.1 response of a mock backend, serialised once (head and body).
    pub mock: Option<MockBytes>,
}

/// A mock backend's response, serialised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockBytes {
    /// Status code.
    pub status: u16,
    /// Status line and headers up to (excluding) the blank line, without `connection`.
    pub head: Box<[u8]>,
    /// Body.
    pub body: Box<[u8]>,
}

impl MockBytes {
    fn new(mock: &MockResponse) -> Self {
        let mut head = format!(
            "HTTP/1.1 {} {}\r\n",
            mock.status,
            gateway_core::respond::reason_phrase(mock.status)
        );
        let mut has_type = false;
        for (name, value) in &mock.headers {
            has_type |= name.eq_ignore_ascii_case("content-type");
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !has_type {
            head.push_str("content-type: application/json\r\n");
        }
        head.push_str(&format!("content-length: {}\r\n", mock.body.len()));
        Self {
            status: mock.status,
            head: head.into_bytes().into_boxed_slice(),
            body: mock.body.as_bytes().into(),
        }
    }
}

/// Everything the request path reads.
#[derive(Debug)]
pub struct Snapshot {
    /// Increases with every rebuild.
    pub generation: u64,
    /// Host/path → route slot.
    pub table: RouteTable,
    /// Route slots.
    pub routes: Vec<RouteEntry>,
    /// Backends (stored, API-local and inline).
    pub backends: Vec<BackendRuntime>,
    /// API keys (and the quota holders of keyless API consumers).
    pub keys: KeyStore,
    /// The APIs' consumers and subscriptions (usage names them by index).
    pub directory: std::sync::Arc<Directory>,
    /// The node's quota counters for these keys (carried over from the previous snapshot).
    pub pool: NodePool,
    /// The certificate entities the HTTPS listener serves, by name.
    pub certs: std::sync::Arc<crate::tls::CertStore>,
    /// The certificate entities, parsed, in the order of `Entities::certificates` (the entity
    /// log gives them in id order); expired ones included.
    pub certificates: Vec<crate::certs::CertificateRuntime>,
    /// Host → (API id, directory index) of the serving APIs with an `oauth` consumer: the hosts
    /// that answer the OAuth2 endpoints (`gateway_core::oauth`).
    pub oauth_hosts: rustc_hash::FxHashMap<Box<str>, (Box<str>, u32)>,
}

/// What the quota pool of a snapshot is built from.
#[derive(Debug, Clone, Copy)]
pub struct QuotaSetup<'a> {
    /// The quota calendar (time zone).
    pub calendar: &'a Calendar,
    /// Cores sharing the pool (lease sizes depend on it).
    pub cores: usize,
    /// The previous snapshot's pool, whose counters carry over by client id.
    pub previous: Option<&'a NodePool>,
}

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// A route's flow does not compile.
    #[error(transparent)]
    Flow(#[from] FlowError),
    /// A domain is malformed.
    #[error(transparent)]
    Route(#[from] BuildError),
    /// A key does not compile.
    #[error(transparent)]
    Keys(#[from] StoreError),
    /// A `tls: true` target's TLS cannot be set up.
    #[error("backend `{backend}`: targets[{target}]: tls: {source}")]
    TargetTls {
        /// Backend id.
        backend: String,
        /// Target index.
        target: usize,
        /// What is wrong.
        source: crate::error::GatewayError,
    },
    /// A certificate entity does not parse.
    #[error(transparent)]
    Certificate(#[from] crate::certs::CertificateError),
    /// A route refers to a backend that does not exist.
    #[error("route `{route}`: no backend `{backend}`")]
    MissingBackend {
        /// Route id.
        route: String,
        /// Backend id.
        backend: String,
    },
}

/// Resolves names; a seam so that tests and the background refresher can decide.
pub trait Resolver {
    /// The first address of `host:port`, or `None`.
    fn resolve(&mut self, host: &str, port: u16) -> Option<SocketAddr>;
}

/// The system resolver (getaddrinfo), used off the request path only.
#[derive(Debug, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn resolve(&mut self, host: &str, port: u16) -> Option<SocketAddr> {
        if let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Some(SocketAddr::new(ip, port));
        }
        (host, port).to_socket_addrs().ok()?.next()
    }
}

fn resolve_backend(
    id: &str,
    spec: &Backend,
    resolver: &mut dyn Resolver,
    certificates: &[crate::certs::CertificateRuntime],
) -> Result<BackendRuntime, SnapshotError> {
    let mut targets = Vec::with_capacity(spec.targets.len());
    for (i, t) in spec.targets.iter().enumerate() {
        let addr = t
            .ip_address
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, t.port))
            .or_else(|| resolver.resolve(&t.hostname, t.port));
        let host_header = if (t.port == 80 && !t.tls) || (t.port == 443 && t.tls) {
            t.hostname.clone()
        } else {
            format!("{}:{}", t.hostname, t.port)
        };
        let tls = if t.tls {
            let err = |source| SnapshotError::TargetTls {
                backend: id.to_owned(),
                target: i,
                source,
            };
            let target_tls = target_tls(
                t.hostname.trim_start_matches('[').trim_end_matches(']'),
                t.tls_config.as_ref().filter(|c| c.enabled),
                certificates,
            )
            .map_err(err)?;
            if target_tls.verify == crate::tls::client::Verify::Nothing {
                tracing::warn!(
                    backend = %id,
                    target = i,
                    "tls_config.trust_all: the upstream's certificate is not verified"
                );
            }
            let built = crate::tls::client::build(target_tls).map_err(err)?;
            Some(std::sync::Arc::new(built))
        } else {
            None
        };
        targets.push(ResolvedTarget {
            host_header: host_header.into(),
            addr,
            tls,
        });
    }
    Ok(BackendRuntime {
        id: id.into(),
        spec: spec.clone(),
        targets,
        mock: spec.mock.as_ref().map(MockBytes::new),
    })
}

/// What a `tls: true` target's TLS is made of: the system roots, or the CA certificates its
/// `tls_config.trusted_certs` name; a client certificate from `tls_config.certs`; `loose` and
/// `trust_all`. Revoked certificates are never used.
/// A target's TLS from its `tls_config` and the certificate entities.
///
/// # Errors
/// [`GatewayErrorKind::Config`] for a certificate that is missing, revoked or without its
/// key; [`GatewayErrorKind::Tls`] for a trusted certificate rustls refuses.
fn target_tls<'a>(
    hostname: &'a str,
    config: Option<&gateway_model::entity::TlsConfig>,
    certificates: &[crate::certs::CertificateRuntime],
) -> Result<crate::tls::client::TargetTls<'a>, GatewayError> {
    use crate::tls::client::{TargetTls, Verify, system_roots};
    let find = |cert_id: &str| {
        certificates
            .iter()
            .find(|c| &*c.id == cert_id && !c.revoked)
            .ok_or_else(|| {
                GatewayError::new(
                    GatewayErrorKind::Config,
                    format!("no usable certificate `{cert_id}`"),
                )
            })
    };
    let Some(config) = config else {
        return Ok(TargetTls {
            hostname,
            roots: system_roots(),
            client_cert: None,
            verify: Verify::Full,
        });
    };
    let roots = if config.trusted_certs.is_empty() {
        system_roots()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for cert_id in &config.trusted_certs {
            for der in &find(cert_id)?.chain {
                roots.add(der.clone()).map_err(GatewayError::map(
                    GatewayErrorKind::Tls,
                    format!("trusted certificate `{cert_id}`"),
                ))?;
            }
        }
        std::sync::Arc::new(roots)
    };
    let client_cert = match config.certs.first() {
        Some(cert_id) => {
            let cert = find(cert_id)?;
            let key = cert.key.as_ref().ok_or_else(|| {
                GatewayError::new(
                    GatewayErrorKind::Config,
                    format!("client certificate `{cert_id}` has no private key"),
                )
            })?;
            Some((cert.chain.clone(), key.clone_key()))
        }
        None => None,
    };
    let verify = if config.trust_all {
        Verify::Nothing
    } else if config.loose {
        Verify::Chain
    } else {
        Verify::Full
    };
    Ok(TargetTls {
        hostname,
        roots,
        client_cert,
        verify,
    })
}

/// The hosts of the serving APIs that have an `oauth` consumer (exact hosts of their routes'
/// domains; a wildcard host answers no token endpoint).
fn oauth_hosts(
    apis: &[gateway_model::entity::Api],
    directory: &Directory,
) -> rustc_hash::FxHashMap<Box<str>, (Box<str>, u32)> {
    let mut out = rustc_hash::FxHashMap::default();
    for api in apis
        .iter()
        .filter(|a| a.enabled && a.state.serves_traffic())
    {
        if !api
            .consumers
            .iter()
            .any(|c| c.kind == gateway_model::entity::ConsumerKind::Oauth)
        {
            continue;
        }
        let Some(index) = directory.api_index(&api.id) else {
            continue;
        };
        for domain in api.routes.iter().flat_map(|r| r.frontend.domains.iter()) {
            let host = domain
                .split('/')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if !host.is_empty() && !host.contains('*') {
                out.entry(host.into())
                    .or_insert_with(|| (api.id.as_str().into(), index));
            }
        }
    }
    out
}

/// The cluster's token keys (`oauth` consumers): the `keypair` certificates marked
/// `tollgate.token_key` = `ES256`, not revoked. The one without `tollgate.retire_at` that was made
/// last signs; every one verifies, a retiring one until its time. A key that does not load is left
/// out with a warning.
fn token_keys(
    entities: &[gateway_model::entity::Certificate],
    certificates: &[crate::certs::CertificateRuntime],
) -> gateway_core::jose::TokenKeys {
    use gateway_model::entity::{TOKEN_KEY_CREATED_META, TOKEN_KEY_META, TOKEN_KEY_RETIRE_META};
    let mut keys = gateway_core::jose::TokenKeys::default();
    let mut newest: Option<(i64, String, ring::signature::EcdsaKeyPair)> = None;
    for e in entities.iter().filter(|e| !e.revoked) {
        if e.metadata.get(TOKEN_KEY_META).map(String::as_str) != Some("ES256") {
            continue;
        }
        let public = match gateway_model::jose::public_key_pem(&e.chain) {
            Ok(k) => k,
            Err(problem) => {
                tracing::warn!(certificate = %e.id, %problem, "token key left out");
                continue;
            }
        };
        let retire_at_ms = e
            .metadata
            .get(TOKEN_KEY_RETIRE_META)
            .and_then(|t| t.parse::<i64>().ok());
        keys.public.push(gateway_core::jose::TokenPublicKey {
            kid: e.id.clone(),
            key: public,
            retire_at_ms,
        });
        if retire_at_ms.is_some() {
            continue;
        }
        let runtime = certificates.iter().find(|c| *c.id == *e.id);
        let pair = runtime.and_then(|c| c.key.as_ref()).and_then(|k| {
            ring::signature::EcdsaKeyPair::from_pkcs8(
                &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                k.secret_der(),
                &ring::rand::SystemRandom::new(),
            )
            .ok()
        });
        let Some(pair) = pair else {
            tracing::warn!(certificate = %e.id, "token key cannot sign (not a PKCS#8 P-256 key)");
            continue;
        };
        let made = e
            .metadata
            .get(TOKEN_KEY_CREATED_META)
            .and_then(|t| t.parse::<i64>().ok())
            .unwrap_or(e.from);
        if newest.as_ref().is_none_or(|(t, _, _)| made >= *t) {
            newest = Some((made, e.id.clone(), pair));
        }
    }
    keys.signer = newest.map(|(_, kid, pair)| gateway_core::jose::TokenSigner { kid, pair });
    keys
}

/// The certificate index the HTTPS listener serves by SNI: every certificate entity with a
/// private key that is not a CA and not revoked.
///
/// It also carries the API CAs (CA entities marked with `tollgate.api_ca`, not revoked): the
/// listener trusts them to verify the client certificates issued to mTLS subscriptions.
fn cert_store(
    certificates: &[crate::certs::CertificateRuntime],
    entities: &[gateway_model::entity::Certificate],
) -> crate::tls::CertStore {
    let api_cas: Vec<_> = entities
        .iter()
        .filter(|e| e.ca && !e.revoked)
        .filter(|e| e.metadata.contains_key(gateway_model::entity::API_CA_META))
        .filter_map(|e| certificates.iter().find(|c| *c.id == *e.id))
        .filter_map(|c| c.chain.first().cloned())
        .collect();
    let items = certificates
        .iter()
        .filter(|c| !c.ca && !c.revoked)
        .filter_map(|c| {
            let key = c.key.as_ref()?;
            Some(crate::tls::server::StoreItem {
                id: c.id.to_string(),
                names: c.dns_names.clone(),
                chain: c.chain.clone(),
                key: key.clone_key(),
                not_before_ms: c.not_before_ms,
                not_after_ms: c.not_after_ms,
            })
        });
    let (mut store, problems) = crate::tls::CertStore::build(items);
    for (id, problem) in problems {
        tracing::warn!(certificate = %id, %problem, "certificate not served");
    }
    store.client_cas = api_cas;
    store
}

/// The routes an API contributes, as plain routes (backend inline or by reference).
fn api_routes(entities: &Entities) -> Vec<(Route, Option<String>)> {
    let mut out = Vec::new();
    for api in entities
        .apis
        .iter()
        .filter(|a| a.enabled && a.state.serves_traffic())
    {
        for r in api.routes.iter().filter(|r| r.enabled) {
            let plugins = r
                .flow_ref
                .as_ref()
                .and_then(|f| api.flows.iter().find(|fl| &fl.id == f))
                .map(|f| f.plugins.clone())
                .unwrap_or_default();
            let local = api.backends.iter().find(|b| b.id == r.backend);
            let mut metadata = std::collections::BTreeMap::new();
            metadata.insert("Otoroshi-Api-Ref".to_owned(), api.id.clone());
            let route = Route {
                id: r.id.clone(),
                name: r.name.clone(),
                description: String::new(),
                tags: api.tags.clone(),
                metadata,
                enabled: true,
                groups: vec![format!("virtual_group_for_{}", api.id)],
                frontend: r.frontend.clone(),
                backend: local.map(|b| b.backend.clone()),
                backend_ref: if local.is_some() {
                    None
                } else {
                    Some(r.backend.clone())
                },
                plugins,
                max_body_bytes: None,
                keep_host: false,
            };
            out.push((route, Some(api.id.clone())));
        }
    }
    out
}

impl Snapshot {
    /// Builds a snapshot from entities. Disabled routes are left out.
    ///
    /// # Errors
    /// When a route refers to a missing backend, a flow or a key does not compile, a domain
    /// is malformed or a certificate does not parse (validated entities only fail here on
    /// dangling references).
    pub fn build(
        generation: u64,
        entities: &Entities,
        resolver: &mut dyn Resolver,
        quotas: QuotaSetup<'_>,
    ) -> Result<Self, SnapshotError> {
        let certificates =
            crate::certs::build_all(&entities.certificates, gateway_events::clock::now_ms())?;
        let mut backends = Vec::new();
        let mut by_id = HashMap::new();
        for b in &entities.backends {
            by_id.insert(b.id.as_str(), backends.len());
            backends.push(resolve_backend(&b.id, &b.backend, resolver, &certificates)?);
        }
        let keys = KeyStore::build_with(&entities.apikeys, &Directory::holders(&entities.apis))?;
        let directory = std::sync::Arc::new(
            Directory::build(&entities.apis, &keys)
                .with_token_keys(token_keys(&entities.certificates, &certificates)),
        );
        let mut routes = Vec::new();
        let mut defs = Vec::new();
        let all = entities
            .routes
            .iter()
            .filter(|r| r.enabled)
            .map(|r| (r.clone(), None))
            .chain(api_routes(entities));
        for (route, api) in all {
            let backend = match (&route.backend_ref, &route.backend) {
                (Some(id), _) => {
                    *by_id
                        .get(id.as_str())
                        .ok_or_else(|| SnapshotError::MissingBackend {
                            route: route.id.clone(),
                            backend: id.clone(),
                        })?
                }
                (None, Some(inline)) => {
                    backends.push(resolve_backend(
                        &format!("route:{}", route.id),
                        inline,
                        resolver,
                        &certificates,
                    )?);
                    backends.len() - 1
                }
                (None, None) => {
                    return Err(SnapshotError::MissingBackend {
                        route: route.id.clone(),
                        backend: String::new(),
                    });
                }
            };
            let root = backends
                .get(backend)
                .map_or("", |b| b.spec.root.trim_end_matches('/'))
                .into();
            let slot = routes.len();
            defs.push(RouteDef::from_route(&route, slot));
            let consumers = match api
                .as_deref()
                .and_then(|id| entities.apis.iter().find(|a| a.id == id))
            {
                Some(owner) => ApiConsumers::build(&directory, owner, &route.id, &route.groups)
                    .map_err(|error| FlowError::ApikeyCalls {
                        route: route.id.clone(),
                        error,
                    })?,
                None => None,
            };
            routes.push(RouteEntry {
                id: route.id.as_str().into(),
                api: api.map(Into::into),
                flow: Flow::build(&route)?.with_api_consumers(consumers),
                backend,
                root,
                keep_host: route.keep_host,
                max_body_bytes: route.max_body_bytes,
                allow_encoded_slashes: route.frontend.allow_encoded_slashes,
            });
        }
        let pool = match quotas.previous {
            Some(previous) => previous.rebuild(&keys),
            None => NodePool::new(quotas.calendar.clone(), quotas.cores, &keys),
        };
        let oauth_hosts = oauth_hosts(&entities.apis, &directory);
        Ok(Self {
            oauth_hosts,
            generation,
            table: RouteTable::build(defs)?,
            routes,
            backends,
            keys,
            directory,
            pool,
            certs: std::sync::Arc::new(cert_store(&certificates, &entities.certificates)),
            certificates,
        })
    }
}

#[cfg(test)]
mod tests;
