//! The flow: what a route does with a request before it goes upstream, as named phases that each
//! return a [`Verdict`].
//!
//! ```text
//! client cert ──► consumer ──► restrictions ──► read-only ──► quota ──► (upstream, server)
//!  NgHasClientCert*  who calls?   key's and route's  route's       the key's shard
//!  (TLS listener)                 path rules         ReadOnlyCalls (per core, leased)
//! ```
//!
//! A [`Flow`] is compiled once per route per config snapshot ([`Flow::build`]) and only read
//! afterwards. [`Flow::on_request`] runs the phases in order and stops at the first refusal; the
//! refusal becomes a response in one place ([`Rejection::reply`]). Consumers plug in as variants
//! of [`Consumer`] (keyless and API key today; JWT, OAuth2 client credentials and mTLS next), and
//! the quota phase calls an [`Admission`] implemented by the server's per-core quota shards.
//!
//! A plugin's `include` and `exclude` path regexes (Otoroshi's semantics: full match on the
//! canonical request path; the plugin runs when `include` is empty or one matches, and no
//! `exclude` matches) scope every phase it drives, and the header plugins
//! (`AdditionalHeadersIn`/`Out`).
//!
//! Nothing here does IO, reads a clock (`now_ms` is an argument) or allocates on the header-based
//! API-key path.

use gateway_model::entity::{PluginInstance, PluginKind, Restrictions, Route};
use regex::RegexSet;

use crate::apikey::{
    self, ConfigError, HeaderLookup, KeyEntry, KeyRejection, KeyStore, RouteContext,
};
use crate::error::CoreError;
use crate::jose::{TokenCache, TokenRejection};
use crate::respond::ErrorReply;
use crate::restriction::{self, CompileError, RestrictionSet};
use crate::rewrite::{Added, AddedHeader};

mod client_cert;
mod subscription;

pub use client_cert::{
    CertHeaders, CertMatch, CertRejection, ChainEntry, ClientCert, normalise_serial,
};
pub use subscription::{
    ApiConsumers, ConsumerEntry, Directory, Identity, SubscriptionEntry, SubscriptionRejection,
    consumer_quotas, holder_id,
};

/// The phases of a flow, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// The route's client-certificate validators.
    ClientCert,
    /// Who is calling: the consumer identifies the caller (or lets anyone through, keyless).
    Consumer,
    /// The key's restrictions, then the route's (`NgRestrictions`).
    Restrictions,
    /// The route's `ReadOnlyCalls` plugin.
    ReadOnly,
    /// The key's quotas.
    Quota,
}

impl Phase {
    /// The phase's name, for metrics and docs.
    pub fn name(self) -> &'static str {
        match self {
            Self::ClientCert => "client_cert",
            Self::Consumer => "consumer",
            Self::Restrictions => "restrictions",
            Self::ReadOnly => "read_only",
            Self::Quota => "quota",
        }
    }
}

/// What a phase decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Go on to the next phase.
    Continue,
    /// Stop and answer with this refusal.
    Reject(Rejection),
}

/// Why a quota refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaExceeded {
    /// The per-second throttling quota.
    Throttled {
        /// Seconds until a call may succeed (`Retry-After`).
        retry_after_secs: u64,
    },
    /// The calendar day's quota.
    Daily {
        /// Seconds until the day rolls over.
        retry_after_secs: u64,
    },
    /// The calendar month's quota.
    Monthly {
        /// Seconds until the month rolls over.
        retry_after_secs: u64,
    },
}

impl QuotaExceeded {
    /// Seconds to put in `Retry-After`.
    pub fn retry_after_secs(self) -> u64 {
        match self {
            Self::Throttled { retry_after_secs }
            | Self::Daily { retry_after_secs }
            | Self::Monthly { retry_after_secs } => retry_after_secs,
        }
    }
}

/// A refusal, with the phase that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A client-certificate validator refused the connection's certificate (or its absence).
    ClientCert(CertRejection),
    /// The consumer refused the caller's credential.
    Key(KeyRejection),
    /// A `jwt` consumer refused the bearer token.
    Token(TokenRejection),
    /// The API's consumers did not identify an enabled subscription.
    Subscription(SubscriptionRejection),
    /// A restriction refused the path (403 or 404).
    Restricted(restriction::Outcome),
    /// The route is read-only and the method is not GET, HEAD or OPTIONS.
    ReadOnlyRoute,
    /// A quota is exhausted.
    Quota(QuotaExceeded),
}

impl Rejection {
    /// The phase that refused.
    pub fn phase(self) -> Phase {
        match self {
            Self::ClientCert(_) => Phase::ClientCert,
            Self::Key(_) | Self::Token(_) | Self::Subscription(_) => Phase::Consumer,
            Self::Restricted(_) => Phase::Restrictions,
            Self::ReadOnlyRoute => Phase::ReadOnly,
            Self::Quota(_) => Phase::Quota,
        }
    }

    /// The error response (DESIGN §5): status, code, description.
    pub fn reply(self) -> ErrorReply {
        match self {
            Self::ClientCert(CertRejection::Missing) => ErrorReply::new(
                401,
                "client_cert_required",
                "a verified client certificate is required",
            ),
            Self::ClientCert(CertRejection::NotMatching) => ErrorReply::new(
                403,
                "client_cert_forbidden",
                "the client certificate is not allowed here",
            ),
            Self::Key(k) => ErrorReply::new(k.status(), k.code(), k.description()),
            Self::Token(t) => ErrorReply::new(401, t.code(), t.description()),
            Self::Subscription(s) => ErrorReply::new(401, s.code(), s.description()),
            Self::Restricted(restriction::Outcome::Forbidden) => ErrorReply::FORBIDDEN,
            Self::Restricted(_) => ErrorReply::NOT_FOUND,
            Self::ReadOnlyRoute => ErrorReply::READ_ONLY,
            Self::Quota(_) => ErrorReply::TOO_MANY_REQUESTS,
        }
    }

    /// A distinct snake_case reason, for usage events and metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::ClientCert(CertRejection::Missing) => "client_cert_missing",
            Self::ClientCert(CertRejection::NotMatching) => "client_cert_not_matching",
            Self::Key(k) => k.reason(),
            Self::Token(t) => t.reason(),
            Self::Subscription(s) => s.reason(),
            Self::Restricted(restriction::Outcome::Forbidden) => "restriction_forbidden",
            Self::Restricted(_) => "restriction_not_found",
            Self::ReadOnlyRoute => "read_only_route",
            Self::Quota(QuotaExceeded::Throttled { .. }) => "quota_throttled",
            Self::Quota(QuotaExceeded::Daily { .. }) => "quota_daily",
            Self::Quota(QuotaExceeded::Monthly { .. }) => "quota_monthly",
        }
    }
}

/// Every [`Rejection::reason`], in a fixed order: metrics count refusals per reason in an array
/// indexed by [`Rejection::slot`] (the last slot, `other`, takes a reason missing here).
pub const REJECTION_REASONS: &[&str] = &[
    "client_cert_missing",
    "client_cert_not_matching",
    "no_api_key",
    "unknown_client_id",
    "malformed_credential",
    "bad_secret",
    "bad_bearer_signature",
    "client_id_only_not_allowed",
    "jwt_malformed",
    "jwt_algorithm",
    "jwt_no_client_id",
    "jwt_signature",
    "jwt_expired",
    "jwt_not_yet_valid",
    "jwt_issued_in_future",
    "jwt_lifespan",
    "token_malformed",
    "token_algorithm",
    "token_unknown_kid",
    "token_signature",
    "token_expired",
    "token_not_yet_valid",
    "token_wrong_issuer",
    "token_wrong_audience",
    "token_unknown_subject",
    "disabled",
    "expired",
    "not_authorized",
    "constrained_services_only",
    "routing_constraints",
    "read_only",
    "restriction_forbidden",
    "restriction_not_found",
    "read_only_route",
    "quota_throttled",
    "quota_daily",
    "quota_monthly",
    "no_subscription",
    "subscription_pending",
    "subscription_disabled",
    "subscription_closed",
    "other",
];

impl Rejection {
    /// This refusal's index in [`REJECTION_REASONS`].
    pub fn slot(self) -> usize {
        let reason = self.reason();
        REJECTION_REASONS
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(REJECTION_REASONS.len() - 1)
    }
}

/// The quota phase's view of the per-core quota shards: admit one call of `key` at `now_ms`, or
/// say which quota is exhausted. A refused call must consume nothing.
pub trait Admission {
    /// Admits one call, or refuses it.
    ///
    /// # Errors
    /// The exhausted quota, with the time until it frees up.
    fn admit(&mut self, key: &KeyEntry, now_ms: i64) -> Result<(), QuotaExceeded>;
}

/// No quota enforcement: every call is admitted (routes without a consumer that counts, and tools
/// that only check credentials).
#[derive(Debug, Clone, Copy, Default)]
pub struct AdmitAll;

impl Admission for AdmitAll {
    fn admit(&mut self, _key: &KeyEntry, _now_ms: i64) -> Result<(), QuotaExceeded> {
        Ok(())
    }
}

/// A way of identifying callers: a route's own plugin (`ApikeyCalls`), or a consumer of the
/// route's API ([`ApiConsumers`], where each serving kind of consumer compiles to one variant).
/// The JWT, OAuth2 client-credentials and mTLS consumers become further variants, each able to
/// name a key or a subscription; the phases after the consumer phase do not change.
#[derive(Debug, Clone)]
pub enum Consumer {
    /// Anyone may call.
    Keyless,
    /// An API key is required (`ApikeyCalls`, or an API's `apikey` consumers: keys issued to its
    /// subscriptions), with the extractors and the route's identity and constraints.
    ApiKey(Box<RouteContext>),
}

/// A problem compiling a route's flow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// The `ApikeyCalls` plugin config is invalid.
    #[error("route `{route}`: ApikeyCalls config: {error}")]
    ApikeyCalls {
        /// Route id.
        route: String,
        /// What is wrong.
        error: ConfigError,
    },
    /// The `NgRestrictions` plugin config is invalid.
    #[error("route `{route}`: NgRestrictions config: {message}")]
    Restrictions {
        /// Route id.
        route: String,
        /// What is wrong.
        message: String,
    },
    /// An `AdditionalHeadersIn`/`Out` plugin config is invalid.
    #[error("route `{route}`: {plugin} config: {message}")]
    Headers {
        /// Route id.
        route: String,
        /// Which plugin.
        plugin: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A plugin's config is invalid.
    #[error("route `{route}`: {plugin} config: {message}")]
    Plugin {
        /// Route id.
        route: String,
        /// Which plugin.
        plugin: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A plugin's `include` or `exclude` regex does not compile.
    #[error("route `{route}`: plugin `{plugin}`: {message}")]
    Scope {
        /// Route id.
        route: String,
        /// The plugin id.
        plugin: String,
        /// What is wrong.
        message: String,
    },
}

/// Where a plugin applies: its `include` and `exclude` path regexes, compiled (full match on the
/// canonical path). A plugin without either applies everywhere and costs nothing to check.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    include: Option<RegexSet>,
    exclude: Option<RegexSet>,
}

impl Scope {
    /// The scope of a plugin instance.
    ///
    /// # Errors
    /// A [`CoreError`] with the regex compiler's message for the first bad pattern.
    pub fn of(plugin: &PluginInstance) -> Result<Self, CoreError> {
        let compile = |field: &str, list: &[String]| -> Result<Option<RegexSet>, CoreError> {
            if list.is_empty() {
                return Ok(None);
            }
            RegexSet::new(list.iter().map(|p| format!("^(?:{p})$")))
                .map(Some)
                .map_err(|e| CoreError::regex(format!("{field}: invalid regex: {e}")))
        };
        Ok(Self {
            include: compile("include", &plugin.include)?,
            exclude: compile("exclude", &plugin.exclude)?,
        })
    }

    /// Whether the plugin runs for `path`.
    pub fn applies(&self, path: &str) -> bool {
        self.include.as_ref().is_none_or(|s| s.is_match(path))
            && !self.exclude.as_ref().is_some_and(|s| s.is_match(path))
    }
}

/// The fields of a route's `AdditionalHeadersIn` (or `Out`) plugins, each plugin with its scope.
#[derive(Debug, Clone, Default)]
pub struct AddedHeaders {
    scopes: Vec<Scope>,
    fields: Vec<Box<[AddedHeader]>>,
}

/// At most this many header plugins of one direction per route (a request's selection is a bit
/// mask).
pub const MAX_HEADER_PLUGINS: usize = 64;

impl AddedHeaders {
    /// Which plugins apply to `path`, as a bit mask for [`AddedHeaders::selected`].
    ///
    /// Each bit is set once, so `^` would do as well as `|` (an equivalent mutant; so in
    /// [`CertHeaderPlugins::select`]).
    pub fn select(&self, path: &str) -> u64 {
        self.scopes
            .iter()
            .enumerate()
            .filter(|(_, scope)| scope.applies(path))
            .fold(0, |mask, (i, _)| mask | 1 << i)
    }

    /// The fields of the plugins selected by `mask`.
    pub fn selected(&self, mask: u64) -> Added<'_> {
        Added::new(&self.fields, mask)
    }

    /// Whether no plugin sets a field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    fn build(route: &Route, kind: PluginKind, name: &'static str) -> Result<Self, FlowError> {
        let mut out = Self::default();
        for plugin in enabled(route, kind) {
            let err = |e: CoreError| FlowError::Headers {
                route: route.id.clone(),
                plugin: name,
                message: e.message,
            };
            out.fields.push(header_fields(&plugin.config).map_err(err)?);
            out.scopes.push(scope(route, plugin)?);
        }
        if out.fields.len() > MAX_HEADER_PLUGINS {
            return Err(FlowError::Headers {
                route: route.id.clone(),
                plugin: name,
                message: format!("more than {MAX_HEADER_PLUGINS} plugins"),
            });
        }
        Ok(out)
    }
}

/// The route's `NgClientCertChainHeader` plugins, each with its scope.
#[derive(Debug, Clone, Default)]
pub struct CertHeaderPlugins {
    scopes: Vec<Scope>,
    headers: Vec<CertHeaders>,
}

impl CertHeaderPlugins {
    /// Which plugins apply to `path`, as a bit mask.
    pub fn select(&self, path: &str) -> u64 {
        self.scopes
            .iter()
            .enumerate()
            .filter(|(_, scope)| scope.applies(path))
            .fold(0, |mask, (i, _)| mask | 1 << i)
    }

    /// The plugins selected by `mask`.
    pub fn selected(&self, mask: u64) -> impl Iterator<Item = &CertHeaders> {
        self.headers
            .iter()
            .enumerate()
            // `build` allows at most 64 plugins: `*i < 64` only guards the shift (`<=` would be
            // an equivalent mutant).
            .filter(move |(i, _)| *i < 64 && mask & (1 << i) != 0)
            .map(|(_, h)| h)
    }
}

/// The `headers` object of an `AdditionalHeadersIn`/`Out` config: names that are tokens, values
/// without control bytes. Otoroshi's expression language (`${…}`) is not evaluated, so a value
/// that uses it is refused rather than sent as text.
///
/// # Errors
/// A [`CoreError`] saying what is wrong, naming the field.
pub fn header_fields(config: &serde_json::Value) -> Result<Box<[AddedHeader]>, CoreError> {
    let Some(headers) = config.get("headers") else {
        return Ok(Box::default());
    };
    let Some(map) = headers.as_object() else {
        return Err(CoreError::field(
            "headers: expected an object of field names to values",
        ));
    };
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let Some(value) = value.as_str() else {
            return Err(CoreError::field(format!(
                "headers.{name}: expected a string"
            )));
        };
        if value.contains("${") {
            return Err(CoreError::field(format!(
                "headers.{name}: expressions (`${{…}}`) are not supported by Tollgate"
            )));
        }
        let field = AddedHeader::new(name, value).ok_or_else(|| {
            CoreError::field(format!(
                "headers.{name}: expected a field name (token) and a value without control bytes"
            ))
        })?;
        out.push(field);
    }
    Ok(out.into_boxed_slice())
}

fn enabled(route: &Route, kind: PluginKind) -> impl Iterator<Item = &PluginInstance> {
    route
        .plugins
        .iter()
        .filter(move |p| p.enabled && PluginKind::from_id(&p.plugin) == Some(kind))
}

fn scope(route: &Route, plugin: &PluginInstance) -> Result<Scope, FlowError> {
    Scope::of(plugin).map_err(|e| FlowError::Scope {
        route: route.id.clone(),
        plugin: plugin.plugin.clone(),
        message: e.message,
    })
}

/// The request facts the phases need.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'r, H: ?Sized> {
    /// Method, as sent.
    pub method: &'r str,
    /// Host, without the port.
    pub host: &'r str,
    /// Path, without the query.
    pub path: &'r str,
    /// Header access.
    pub headers: &'r H,
    /// The connection's verified client certificate (TLS listener with client auth).
    pub client_cert: Option<&'r ClientCert>,
}

/// Per-core buffers reused across requests.
#[derive(Debug, Default)]
pub struct FlowScratch {
    /// Credential decoding.
    pub apikey: apikey::Scratch,
    /// This core's verified JWTs.
    pub tokens: TokenCache,
    /// `domain + path` for restriction patterns that need it.
    pub restriction: String,
    /// [`KeyEntry::index`] of the key the consumer phase verified for the last request, kept
    /// even when a later phase refused it (usage is charged to that key).
    pub key_index: Option<usize>,
    /// The consumer and subscription of the route's API the last request was identified as,
    /// kept even when it was refused (a disabled subscription's calls are counted as refused).
    pub identity: Option<Identity>,
}

impl FlowScratch {
    /// Buffers with room for typical requests.
    pub fn new() -> Self {
        Self {
            apikey: apikey::Scratch::new(),
            tokens: TokenCache::new(),
            restriction: String::with_capacity(256),
            key_index: None,
            identity: None,
        }
    }
}

/// What the phases found out about an admitted request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Admitted<'s> {
    /// The verified key, on API-key routes; the quota holder of a keyless API consumer.
    pub key: Option<&'s KeyEntry>,
    /// The API consumer and subscription, on routes of an API with consumers.
    pub identity: Option<Identity>,
}

/// A route's compiled flow.
#[derive(Debug, Clone)]
pub struct Flow {
    cert_required: Option<Scope>,
    cert_match: Vec<(Scope, CertMatch)>,
    cert_headers: CertHeaderPlugins,
    consumer: Consumer,
    consumer_scope: Scope,
    restrictions: RestrictionSet,
    restrictions_scope: Scope,
    read_only: Option<Scope>,
    headers_in: AddedHeaders,
    headers_out: AddedHeaders,
    /// The consumers of the route's API, when it declares some.
    api: Option<ApiConsumers>,
}

impl Flow {
    /// Compiles the flow of a route from its enabled plugins.
    ///
    /// # Errors
    /// When a plugin's configuration is invalid.
    pub fn build(route: &Route) -> Result<Self, FlowError> {
        let mut consumer = Consumer::Keyless;
        let mut consumer_scope = Scope::default();
        if let Some(plugin) = enabled(route, PluginKind::ApikeyCalls).next() {
            let ctx = RouteContext::from_route(route).map_err(|error| FlowError::ApikeyCalls {
                route: route.id.clone(),
                error,
            })?;
            consumer = Consumer::ApiKey(Box::new(ctx));
            consumer_scope = scope(route, plugin)?;
        }
        let mut restrictions = RestrictionSet::disabled();
        let mut restrictions_scope = Scope::default();
        for plugin in enabled(route, PluginKind::Restrictions) {
            let err = |message: String| FlowError::Restrictions {
                route: route.id.clone(),
                message,
            };
            let mut config: Restrictions =
                serde_json::from_value(plugin.config.clone()).map_err(|e| err(e.to_string()))?;
            // Otoroshi forces route-level restrictions on.
            config.enabled = true;
            restrictions =
                RestrictionSet::compile(&config).map_err(|e: CompileError| err(e.to_string()))?;
            restrictions_scope = scope(route, plugin)?;
        }
        let read_only = match enabled(route, PluginKind::ReadOnlyCalls).next() {
            Some(plugin) => Some(scope(route, plugin)?),
            None => None,
        };
        let cert_required = match enabled(route, PluginKind::HasClientCert).next() {
            Some(plugin) => Some(scope(route, plugin)?),
            None => None,
        };
        let mut cert_match = Vec::new();
        let mut cert_headers = CertHeaderPlugins::default();
        for plugin in enabled(route, PluginKind::HasClientCertMatching) {
            let rules = CertMatch::from_config(&plugin.config).map_err(|e| FlowError::Plugin {
                route: route.id.clone(),
                plugin: "NgHasClientCertMatchingValidator",
                message: e.message,
            })?;
            cert_match.push((scope(route, plugin)?, rules));
        }
        for plugin in enabled(route, PluginKind::ClientCertChainHeader) {
            let headers =
                CertHeaders::from_config(&plugin.config).map_err(|e| FlowError::Plugin {
                    route: route.id.clone(),
                    plugin: "NgClientCertChainHeader",
                    message: e.message,
                })?;
            cert_headers.scopes.push(scope(route, plugin)?);
            cert_headers.headers.push(headers);
        }
        if cert_headers.headers.len() > MAX_HEADER_PLUGINS {
            return Err(FlowError::Plugin {
                route: route.id.clone(),
                plugin: "NgClientCertChainHeader",
                message: format!("more than {MAX_HEADER_PLUGINS} plugins"),
            });
        }
        Ok(Self {
            cert_required,
            cert_match,
            cert_headers,
            consumer,
            consumer_scope,
            restrictions,
            restrictions_scope,
            read_only,
            headers_in: AddedHeaders::build(
                route,
                PluginKind::AdditionalHeadersIn,
                "AdditionalHeadersIn",
            )?,
            headers_out: AddedHeaders::build(
                route,
                PluginKind::AdditionalHeadersOut,
                "AdditionalHeadersOut",
            )?,
            api: None,
        })
    }

    /// The flow of an API route whose API declares consumers: they run in the consumer phase,
    /// after the route's own `ApikeyCalls` (if any).
    #[must_use]
    pub fn with_api_consumers(mut self, consumers: Option<ApiConsumers>) -> Self {
        self.api = consumers;
        self
    }

    /// The extractors whose credential headers are removed before the request goes upstream:
    /// the route's `ApikeyCalls`, else its API's `apikey` consumers.
    pub fn credentials(&self) -> Option<&apikey::Extractors> {
        match &self.consumer {
            Consumer::ApiKey(ctx) => Some(ctx.extractors()),
            Consumer::Keyless => self.api.as_ref().and_then(ApiConsumers::extractors),
        }
    }

    /// The fields `AdditionalHeadersIn` sets on the upstream request.
    pub fn headers_in(&self) -> &AddedHeaders {
        &self.headers_in
    }

    /// The fields `AdditionalHeadersOut` sets on the client response.
    pub fn headers_out(&self) -> &AddedHeaders {
        &self.headers_out
    }

    /// The route's consumer.
    pub fn consumer(&self) -> &Consumer {
        &self.consumer
    }

    /// Runs every phase in order; the first refusal stops the flow.
    ///
    /// # Errors
    /// The refusal, which [`Rejection::reply`] turns into the response.
    pub fn on_request<'s, H, A>(
        &self,
        req: &RequestView<'_, H>,
        keys: &'s KeyStore,
        admission: &mut A,
        now_ms: i64,
        scratch: &mut FlowScratch,
    ) -> Result<Admitted<'s>, Rejection>
    where
        H: HeaderLookup + ?Sized,
        A: Admission + ?Sized,
    {
        let mut admitted = Admitted::default();
        scratch.key_index = None;
        scratch.identity = None;
        // Each phase runs only if the previous one continued: a refused call never reaches the
        // quota phase, so it consumes nothing.
        if let Verdict::Reject(r) = self.on_client_cert(req) {
            return Err(r);
        }
        if let Verdict::Reject(r) = self.on_consumer(req, keys, now_ms, scratch, &mut admitted) {
            return Err(r);
        }
        if let Verdict::Reject(r) = self.on_restrictions(req, &admitted, scratch) {
            return Err(r);
        }
        if let Verdict::Reject(r) = self.on_read_only(req) {
            return Err(r);
        }
        if let Verdict::Reject(r) = self.on_quota(&admitted, admission, now_ms) {
            return Err(r);
        }
        Ok(admitted)
    }

    /// Client-certificate phase: `NgHasClientCertValidator` and
    /// `NgHasClientCertMatchingValidator`, each within its scope.
    pub fn on_client_cert<H: ?Sized>(&self, req: &RequestView<'_, H>) -> Verdict {
        let needs = self
            .cert_required
            .as_ref()
            .is_some_and(|s| s.applies(req.path));
        let rules = self.cert_match.iter().filter(|(s, _)| s.applies(req.path));
        let mut rules = rules.peekable();
        if !needs && rules.peek().is_none() {
            return Verdict::Continue;
        }
        let Some(cert) = req.client_cert else {
            return Verdict::Reject(Rejection::ClientCert(CertRejection::Missing));
        };
        for (_, rule) in rules {
            if !rule.matches(cert) {
                return Verdict::Reject(Rejection::ClientCert(CertRejection::NotMatching));
            }
        }
        Verdict::Continue
    }

    /// The route's `NgClientCertChainHeader` plugins.
    pub fn cert_headers(&self) -> &CertHeaderPlugins {
        &self.cert_headers
    }

    /// Consumer phase: the route's own consumer (keyless lets everyone through; API key
    /// extracts and verifies), then its API's consumers, which must identify a subscription.
    pub fn on_consumer<'s, H>(
        &self,
        req: &RequestView<'_, H>,
        keys: &'s KeyStore,
        now_ms: i64,
        scratch: &mut FlowScratch,
        admitted: &mut Admitted<'s>,
    ) -> Verdict
    where
        H: HeaderLookup + ?Sized,
    {
        if let Verdict::Reject(r) = self.on_route_consumer(req, keys, now_ms, scratch, admitted) {
            return Verdict::Reject(r);
        }
        match &self.api {
            Some(api) => api.on_request(req, keys, now_ms, scratch, admitted),
            None => Verdict::Continue,
        }
    }

    fn on_route_consumer<'s, H>(
        &self,
        req: &RequestView<'_, H>,
        keys: &'s KeyStore,
        now_ms: i64,
        scratch: &mut FlowScratch,
        admitted: &mut Admitted<'s>,
    ) -> Verdict
    where
        H: HeaderLookup + ?Sized,
    {
        if !self.consumer_scope.applies(req.path) {
            return Verdict::Continue;
        }
        match &self.consumer {
            Consumer::Keyless => Verdict::Continue,
            Consumer::ApiKey(ctx) => {
                match apikey::authenticate(
                    req.headers,
                    keys,
                    ctx,
                    req.method,
                    now_ms,
                    &mut scratch.apikey,
                ) {
                    Ok(key) => {
                        admitted.key = Some(key);
                        scratch.key_index = Some(key.index());
                        Verdict::Continue
                    }
                    Err(rejection) => Verdict::Reject(Rejection::Key(rejection)),
                }
            }
        }
    }

    /// Restrictions phase: the key's restrictions, then the route's.
    pub fn on_restrictions<H: ?Sized>(
        &self,
        req: &RequestView<'_, H>,
        admitted: &Admitted<'_>,
        scratch: &mut FlowScratch,
    ) -> Verdict {
        let route_set = self
            .restrictions_scope
            .applies(req.path)
            .then_some(&self.restrictions);
        let sets = admitted
            .key
            .map(KeyEntry::restrictions)
            .into_iter()
            .chain(route_set);
        for set in sets {
            match set.check(req.method, req.host, req.path, &mut scratch.restriction) {
                restriction::Outcome::Allow => {}
                refused => return Verdict::Reject(Rejection::Restricted(refused)),
            }
        }
        Verdict::Continue
    }

    /// Read-only phase: the route's `ReadOnlyCalls` plugin.
    pub fn on_read_only<H: ?Sized>(&self, req: &RequestView<'_, H>) -> Verdict {
        let applies = self.read_only.as_ref().is_some_and(|s| s.applies(req.path));
        if applies && !matches!(req.method, "GET" | "HEAD" | "OPTIONS") {
            Verdict::Reject(Rejection::ReadOnlyRoute)
        } else {
            Verdict::Continue
        }
    }

    /// Quota phase: the key's shard admits the call or names the exhausted quota. Keyless
    /// routes have no quota.
    pub fn on_quota<A: Admission + ?Sized>(
        &self,
        admitted: &Admitted<'_>,
        admission: &mut A,
        now_ms: i64,
    ) -> Verdict {
        match admitted.key {
            Some(key) => match admission.admit(key, now_ms) {
                Ok(()) => Verdict::Continue,
                Err(exceeded) => Verdict::Reject(Rejection::Quota(exceeded)),
            },
            None => Verdict::Continue,
        }
    }
}

impl HeaderLookup for crate::http::Headers<'_> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        crate::http::Headers::get(self, name)
    }
}

impl apikey::Extractors {
    /// Whether `name` is one of the headers these extractors read credentials from: the proxy
    /// removes them before the request goes upstream (Otoroshi's `wipe_backend_request`, on by
    /// default), so a key's secret never reaches the backend.
    pub fn reads_header(&self, name: &[u8]) -> bool {
        let eq = |h: &str| h.as_bytes().eq_ignore_ascii_case(name);
        let is = |h: &Option<Box<str>>| h.as_deref().is_some_and(eq);
        self.custom
            .as_ref()
            .is_some_and(|(id, secret)| eq(id) || eq(secret))
            || is(&self.basic)
            || is(&self.jwt)
            || is(&self.bearer)
            || is(&self.client_id)
            || eq(&self.api_key_header)
            || ((self.basic.is_some() || self.jwt.is_some() || self.bearer.is_some())
                && eq(apikey::AUTHORIZATION))
    }
}

#[cfg(test)]
mod tests;
