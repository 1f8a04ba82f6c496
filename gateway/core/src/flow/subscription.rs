//! An API's consumers in the flow (DESIGN §8): who is calling, as one subscription of one
//! consumer of the API.
//!
//! ```text
//!   Directory (one per snapshot, shared by every route of every API)
//!     consumers      [id, API, kind, status, quota holder of a keyless one]
//!     subscriptions  [id, consumer, status]
//!     by key index → subscription (the API keys each subscription was issued)
//!
//!   ApiConsumers (one per API route): the API's consumers that serve (published, deprecated),
//!   compiled into `Consumer` variants that identify a subscription (`ApiKey` today; `Jwt`,
//!   `OAuth`, `Mtls` next) and the first keyless one.
//! ```
//!
//! A call to an API that declares consumers is admitted only as one of them:
//! - a credential that one of the identifying consumers reads (an API key, with every extraction
//!   of DESIGN §5) must prove a key (else the key's refusal, `bad_api_key`, …); a key issued to a
//!   subscription of this API names it: the subscription must be enabled (else 401
//!   `subscription_pending`, `subscription_disabled`, `subscription_closed`) and its consumer
//!   serving; then the key's own checks (enabled, expiry, authorization, read-only) apply;
//! - otherwise a serving keyless consumer admits the call as itself (its quotas, if any, are
//!   counted on its quota holder, shared by every anonymous caller);
//! - otherwise: 401 `unauthorized`. An API whose consumers are all staging or closed admits
//!   nobody (Otoroshi would open it; closing the last consumer must not open an API).
//!
//! When the route's own `ApikeyCalls` plugin already verified a key, that key names the
//! subscription (the credential is read once). Nothing here allocates or locks per request: the
//! directory is immutable, and lookups are by index.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustc_hash::FxHashMap;

use gateway_model::entity::{
    Api, ConsumerKind, ConsumerStatus, DEFAULT_QUOTA, SubscriptionStatus, UNLIMITED_QUOTA,
};

use super::{Admitted, Consumer, FlowScratch, Rejection, RequestView, Verdict};
use crate::apikey::{
    self, ApikeyCallsConfig, HeaderLookup, KeyStore, QuotaHolder, Quotas, RouteContext,
};
use crate::jose::{CachedToken, TokenCache, TokenKeys, TokenRejection, Verifier};

/// No subscription (in [`Directory`]'s key table).
const NONE: u32 = u32::MAX;

/// Who a call was identified as: a consumer of the route's API, and the subscription when the
/// consumer has subscriptions (every kind but keyless). Indexes into the snapshot's
/// [`Directory`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The consumer.
    pub consumer: u32,
    /// The subscription.
    pub subscription: Option<u32>,
}

/// Why an API's consumers refused a call (all 401: the caller was not identified as a
/// subscription that may call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscriptionRejection {
    /// No consumer of the API identified the caller (no credential they read, a key that is no
    /// subscription of this API, a subscription whose consumer does not serve): `unauthorized`.
    NotIdentified,
    /// The subscription waits for validation: `subscription_pending`.
    Pending,
    /// The subscription is paused: `subscription_disabled`.
    Disabled,
    /// The subscription ended: `subscription_closed`.
    Closed,
}

impl SubscriptionRejection {
    /// The stable error code.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::NotIdentified => "unauthorized",
            Self::Pending => "subscription_pending",
            Self::Disabled => "subscription_disabled",
            Self::Closed => "subscription_closed",
        }
    }

    /// The `error_description`.
    #[must_use]
    pub fn description(self) -> &'static str {
        match self {
            Self::NotIdentified => "no subscription of this API identified the caller",
            Self::Pending => "the subscription is pending",
            Self::Disabled => "the subscription is disabled",
            Self::Closed => "the subscription is closed",
        }
    }

    /// A distinct reason for usage events and metrics.
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotIdentified => "no_subscription",
            Self::Pending => "subscription_pending",
            Self::Disabled => "subscription_disabled",
            Self::Closed => "subscription_closed",
        }
    }
}

/// A consumer as the request path sees it.
#[derive(Debug, Clone)]
pub struct ConsumerEntry {
    id: Box<str>,
    api: u32,
    kind: ConsumerKind,
    status: ConsumerStatus,
    /// The quota holder of a serving keyless consumer (in the key store).
    holder: Option<Box<str>>,
    /// `jwt` consumers: subject → subscription index; `mtls` consumers: certificate SHA-256
    /// fingerprint (lower-case hex) → subscription index.
    subjects: FxHashMap<Box<str>, u32>,
    /// `oauth` consumers: the lifetime of the access tokens they issue, seconds.
    token_ttl_s: u64,
}

impl ConsumerEntry {
    /// The consumer's id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its kind.
    #[must_use]
    pub fn kind(&self) -> ConsumerKind {
        self.kind
    }

    /// Its status.
    #[must_use]
    pub fn status(&self) -> ConsumerStatus {
        self.status
    }

    /// `oauth` consumers: the lifetime of their access tokens, seconds.
    #[must_use]
    pub fn token_ttl_s(&self) -> u64 {
        self.token_ttl_s
    }

    /// The subscription (index) this consumer's subject (jwt), fingerprint (mtls) or
    /// subscription id (oauth) names.
    #[must_use]
    pub fn subscription_named(&self, name: &str) -> Option<u32> {
        self.subjects.get(name).copied()
    }
}

/// A subscription as the request path sees it.
#[derive(Debug, Clone)]
pub struct SubscriptionEntry {
    id: Box<str>,
    consumer: u32,
    status: SubscriptionStatus,
    /// The quota holder of a subscription that is issued no key (`jwt`): its calls are counted
    /// on it.
    holder: Option<Box<str>>,
}

impl SubscriptionEntry {
    /// The subscription's id.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its consumer (directory index).
    #[must_use]
    pub fn consumer(&self) -> u32 {
        self.consumer
    }

    /// Its status.
    #[must_use]
    pub fn status(&self) -> SubscriptionStatus {
        self.status
    }
}

/// Every API's consumers and subscriptions in one snapshot, indexed for the request path.
/// Immutable once built; shared (`Arc`) by the flows of the API routes.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    apis: Box<[Box<str>]>,
    consumers: Box<[ConsumerEntry]>,
    subscriptions: Box<[SubscriptionEntry]>,
    /// Key index → subscription index (`NONE`).
    by_key: Box<[u32]>,
    /// Distinct for every directory built in this process: the per-core token caches remember
    /// tokens for one generation only (a changed consumer or subscription drops them).
    generation: u64,
    /// The cluster's token keys (`oauth` consumers).
    token_keys: Arc<TokenKeys>,
}

/// Whether the subscriptions of consumers of this kind are named by the request itself (a
/// token's subject, a certificate's fingerprint) rather than by an issued key: they are counted
/// on a quota holder of their own.
fn names_subscriptions(kind: ConsumerKind) -> bool {
    matches!(kind, ConsumerKind::Jwt | ConsumerKind::Mtls)
}

/// The source of [`Directory::generation`] (touched when a snapshot is built, never per request).
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// The quota holder id of a subscription issued no key: `sub:<api>:<subscription>` (a `:` is in
/// no id, so no key can have it).
#[must_use]
pub fn subscription_holder_id(api: &str, subscription: &str) -> String {
    format!("sub:{api}:{subscription}")
}

/// The quota holder id of a keyless consumer: `keyless:<api>:<consumer>` (a `:` is in no id, so
/// no key can have it).
#[must_use]
pub fn holder_id(api: &str, consumer: &str) -> String {
    format!("keyless:{api}:{consumer}")
}

/// The quotas of a consumer's subscriptions (or of its quota holder, keyless): the consumer's
/// `throttlingQuota`, `dailyQuota`, `monthlyQuota`; absent ones are an API key's default for
/// issued keys and no limit for a keyless consumer.
#[must_use]
pub fn consumer_quotas(consumer: &gateway_model::entity::Consumer) -> Quotas {
    let default = if consumer.kind == ConsumerKind::Keyless {
        UNLIMITED_QUOTA
    } else {
        DEFAULT_QUOTA
    };
    Quotas {
        throttling: consumer.throttling_quota.unwrap_or(default),
        daily: consumer.daily_quota.unwrap_or(default),
        monthly: consumer.monthly_quota.unwrap_or(default),
    }
}

impl Directory {
    /// The quota holders the key store needs for `apis`: one per serving keyless consumer of a
    /// serving API, and one per subscription of a `jwt` consumer (issued no key).
    #[must_use]
    pub fn holders(apis: &[Api]) -> Vec<QuotaHolder> {
        let mut out: Vec<QuotaHolder> = apis
            .iter()
            .filter(|a| a.enabled && a.state.serves_traffic())
            .flat_map(|a| {
                a.consumers
                    .iter()
                    .filter(|c| c.kind == ConsumerKind::Keyless && c.serves())
                    .map(|c| QuotaHolder {
                        id: holder_id(&a.id, &c.id),
                        quotas: consumer_quotas(c),
                    })
            })
            .collect();
        for a in apis
            .iter()
            .filter(|a| a.enabled && a.state.serves_traffic())
        {
            for s in &a.subscriptions {
                let consumer = a.consumers.iter().find(|c| c.id == s.consumer_ref);
                if let Some(c) = consumer.filter(|c| names_subscriptions(c.kind)) {
                    out.push(QuotaHolder {
                        id: subscription_holder_id(&a.id, &s.id),
                        quotas: consumer_quotas(c),
                    });
                }
            }
        }
        out
    }

    /// Indexes `apis` against `keys` (built with [`Directory::holders`]): a subscription's
    /// `apikeys` that name no key are skipped, and a key named by two subscriptions belongs to
    /// the first (the admin API refuses both).
    #[must_use]
    pub fn build(apis: &[Api], keys: &KeyStore) -> Self {
        let mut dir_apis = Vec::with_capacity(apis.len());
        let mut consumers = Vec::new();
        let mut subscriptions = Vec::new();
        let mut by_key = vec![NONE; keys.len()];
        for api in apis {
            let api_index = u32::try_from(dir_apis.len()).unwrap_or(NONE);
            dir_apis.push(Box::<str>::from(api.id.as_str()));
            let first = consumers.len();
            for c in &api.consumers {
                let holder = (c.kind == ConsumerKind::Keyless && c.serves())
                    .then(|| holder_id(&api.id, &c.id))
                    .filter(|id| keys.get(id).is_some_and(apikey::KeyEntry::is_holder))
                    .map(Into::into);
                consumers.push(ConsumerEntry {
                    id: c.id.as_str().into(),
                    api: api_index,
                    kind: c.kind,
                    status: c.status,
                    holder,
                    subjects: FxHashMap::default(),
                    token_ttl_s: c.oauth_config().token_ttl_s,
                });
            }
            for s in &api.subscriptions {
                let Some(offset) = api.consumers.iter().position(|c| c.id == s.consumer_ref) else {
                    continue;
                };
                let sub_index = u32::try_from(subscriptions.len()).unwrap_or(NONE);
                let mut holder = None;
                if let Some(entry) = consumers.get_mut(first + offset) {
                    let name = match entry.kind {
                        ConsumerKind::Jwt => {
                            Some(s.subject.clone().unwrap_or_else(|| s.id.clone()))
                        }
                        ConsumerKind::Oauth => Some(s.id.clone()),
                        ConsumerKind::Mtls => s
                            .fingerprint
                            .as_deref()
                            .and_then(gateway_model::validate::normalise_fingerprint),
                        _ => None,
                    };
                    if entry.kind == ConsumerKind::Oauth {
                        // An access token's subject is the subscription's id; its calls count on
                        // the key the subscription was issued (its client id).
                        if let Some(name) = name.clone() {
                            entry.subjects.entry(name.into()).or_insert(sub_index);
                        }
                        holder = s
                            .apikeys
                            .first()
                            .filter(|k| keys.get(k).is_some_and(|e| !e.is_holder()))
                            .map(|k| k.as_str().into());
                    }
                    if names_subscriptions(entry.kind) {
                        if let Some(name) = name {
                            entry.subjects.entry(name.into()).or_insert(sub_index);
                        }
                        holder = Some(subscription_holder_id(&api.id, &s.id))
                            .filter(|id| keys.get(id).is_some_and(apikey::KeyEntry::is_holder))
                            .map(Into::into);
                    }
                }
                subscriptions.push(SubscriptionEntry {
                    id: s.id.as_str().into(),
                    consumer: u32::try_from(first + offset).unwrap_or(NONE),
                    status: s.status,
                    holder,
                });
                for key in &s.apikeys {
                    let slot = keys
                        .get(key)
                        .filter(|e| !e.is_holder())
                        .and_then(|e| by_key.get_mut(e.index()));
                    if let Some(slot) = slot {
                        if *slot == NONE {
                            *slot = sub_index;
                        }
                    }
                }
            }
        }
        Self {
            apis: dir_apis.into_boxed_slice(),
            consumers: consumers.into_boxed_slice(),
            subscriptions: subscriptions.into_boxed_slice(),
            by_key: by_key.into_boxed_slice(),
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            token_keys: Arc::default(),
        }
    }

    /// The directory with the cluster's token keys (set before it is shared).
    #[must_use]
    pub fn with_token_keys(mut self, keys: TokenKeys) -> Self {
        self.token_keys = Arc::new(keys);
        self
    }

    /// The cluster's token keys.
    #[must_use]
    pub fn token_keys(&self) -> &TokenKeys {
        &self.token_keys
    }

    /// The index of the consumer with this id, and the entry.
    #[must_use]
    pub fn consumer_by_id(&self, id: &str) -> Option<(u32, &ConsumerEntry)> {
        self.consumers
            .iter()
            .enumerate()
            .find(|(_, c)| &*c.id == id)
            .and_then(|(i, c)| Some((u32::try_from(i).ok()?, c)))
    }

    /// The API (its index) a consumer belongs to.
    #[must_use]
    pub fn api_of(&self, consumer: &ConsumerEntry) -> u32 {
        consumer.api
    }

    /// This directory's generation (see the field).
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The index of the API with this id.
    #[must_use]
    pub fn api_index(&self, id: &str) -> Option<u32> {
        self.apis
            .iter()
            .position(|a| &**a == id)
            .and_then(|i| u32::try_from(i).ok())
    }

    /// The consumer at `index`.
    #[must_use]
    pub fn consumer(&self, index: u32) -> Option<&ConsumerEntry> {
        self.consumers.get(usize::try_from(index).ok()?)
    }

    /// The subscription at `index`.
    #[must_use]
    pub fn subscription(&self, index: u32) -> Option<&SubscriptionEntry> {
        self.subscriptions.get(usize::try_from(index).ok()?)
    }

    /// The subscription the key at `key_index` was issued for, with its index.
    #[must_use]
    pub fn subscription_of(&self, key_index: usize) -> Option<(u32, &SubscriptionEntry)> {
        let index = *self.by_key.get(key_index)?;
        Some((index, self.subscription(index)?))
    }

    /// The consumer and subscription ids of an identity (usage events).
    #[must_use]
    pub fn ids(&self, identity: Identity) -> (Option<&str>, Option<&str>) {
        (
            self.consumer(identity.consumer).map(ConsumerEntry::id),
            identity
                .subscription
                .and_then(|s| self.subscription(s))
                .map(SubscriptionEntry::id),
        )
    }
}

/// A `jwt` consumer, compiled.
#[derive(Debug, Clone)]
struct JwtConsumer {
    /// Its directory index.
    consumer: u32,
    verifier: Arc<Verifier>,
}

/// An `mtls` consumer, compiled: its directory index and the full-match regexes the
/// certificate's subject and issuer DNs must match (when any is set).
#[derive(Debug, Clone)]
struct MtlsConsumer {
    consumer: u32,
    subject: Option<regex::RegexSet>,
    issuer: Option<regex::RegexSet>,
}

impl MtlsConsumer {
    fn new(consumer: u32, config: &gateway_model::entity::MtlsConsumerConfig) -> Option<Self> {
        let set = |list: &[String]| -> Result<Option<regex::RegexSet>, regex::Error> {
            if list.is_empty() {
                return Ok(None);
            }
            regex::RegexSet::new(list.iter().map(|p| format!("^(?:{p})$"))).map(Some)
        };
        Some(Self {
            consumer,
            subject: set(&config.regex_subject_dns).ok()?,
            issuer: set(&config.regex_issuer_dns).ok()?,
        })
    }

    fn admits(&self, cert: &super::ClientCert) -> bool {
        self.subject
            .as_ref()
            .is_none_or(|s| s.is_match(&cert.subject))
            && self
                .issuer
                .as_ref()
                .is_none_or(|s| s.is_match(&cert.issuer))
    }
}

/// The bearer token of `Authorization: Bearer <token>` when it has the shape of a JWS (three
/// dot-separated parts); other bearer credentials are left to the API-key consumers.
fn bearer_jwt<H: HeaderLookup + ?Sized>(headers: &H) -> Option<&[u8]> {
    let value = headers.get("authorization")?;
    let scheme = value.get(..7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = value.get(7..)?.trim_ascii();
    (token.iter().filter(|b| **b == b'.').count() == 2).then_some(token)
}

/// One API route's view of its API's consumers (see the module docs).
#[derive(Debug, Clone)]
pub struct ApiConsumers {
    directory: Arc<Directory>,
    api: u32,
    /// The serving consumers that identify a subscription, one [`Consumer`] per kind:
    /// `Consumer::ApiKey` for the API's `apikey` consumers (issued keys, every extraction, the
    /// route's identity for `api_<id>` authorization).
    identify: Box<[Consumer]>,
    /// The API's `jwt` consumers (serving or not: a token of a staging consumer's subscription
    /// is refused with its own code).
    jwt: Box<[JwtConsumer]>,
    /// The API's `mtls` consumers, with their DN restrictions.
    mtls: Box<[MtlsConsumer]>,
    /// The first serving keyless consumer.
    keyless: Option<u32>,
    /// Whether one of `identify` serves: when none does (an `apikey` consumer in staging or
    /// closed beside a keyless one), a credential that proves nothing is ignored rather than
    /// refused, and the call is anonymous.
    identifying: bool,
}

impl ApiConsumers {
    /// The consumers of the API `api_id` for its route `route_id` (in `groups`), or `None` when
    /// the API declares no consumer (its routes then identify callers with their own plugins
    /// only).
    ///
    /// # Errors
    /// Never in practice: the default `ApikeyCalls` config is valid.
    pub fn build(
        directory: &Arc<Directory>,
        api: &Api,
        route_id: &str,
        groups: &[String],
    ) -> Result<Option<Self>, apikey::ConfigError> {
        if api.consumers.is_empty() {
            return Ok(None);
        }
        let Some(api_index) = directory.api_index(&api.id) else {
            return Ok(None);
        };
        let mut identify = Vec::new();
        let mut jwt = Vec::new();
        let mut mtls = Vec::new();
        let mut keyless = None;
        let mut identifying = false;
        for (i, entry) in directory.consumers.iter().enumerate() {
            if entry.api != api_index {
                continue;
            }
            let serves = entry.status.serves();
            match entry.kind {
                ConsumerKind::Keyless => {
                    if keyless.is_none() && serves {
                        keyless = u32::try_from(i).ok();
                    }
                }
                // Read even when it does not serve, so that the subscriptions of a staging or
                // closed consumer are refused with their own code.
                ConsumerKind::Apikey => {
                    identifying |= serves;
                    if !identify.iter().any(|c| matches!(c, Consumer::ApiKey(_))) {
                        let ctx = RouteContext::new(
                            route_id,
                            Some(&api.id),
                            groups,
                            &ApikeyCallsConfig::default(),
                        )?;
                        identify.push(Consumer::ApiKey(Box::new(ctx)));
                    }
                }
                ConsumerKind::Jwt => {
                    let verifier = api
                        .consumers
                        .iter()
                        .find(|c| *c.id == *entry.id)
                        .and_then(gateway_model::entity::Consumer::jwt_config)
                        .and_then(|cfg| Verifier::new(&cfg).ok());
                    // A consumer whose verifier does not compile (validation refuses it before
                    // it is stored) identifies nobody.
                    if let (Some(verifier), Ok(consumer)) = (verifier, u32::try_from(i)) {
                        identifying |= serves;
                        jwt.push(JwtConsumer {
                            consumer,
                            verifier: Arc::new(verifier),
                        });
                    }
                }
                ConsumerKind::Mtls => {
                    let compiled = api
                        .consumers
                        .iter()
                        .find(|c| *c.id == *entry.id)
                        .zip(u32::try_from(i).ok())
                        .and_then(|(c, index)| MtlsConsumer::new(index, &c.mtls_config()));
                    if let Some(m) = compiled {
                        identifying |= serves;
                        mtls.push(m);
                    }
                }
                // The tokens the gateway issued, verified like a jwt consumer's with the
                // cluster's token keys (none yet: nobody is identified).
                ConsumerKind::Oauth => {
                    let verifier = Verifier::for_token_keys(&directory.token_keys, &api.id);
                    if let (Ok(verifier), Ok(consumer)) = (verifier, u32::try_from(i)) {
                        identifying |= serves;
                        jwt.push(JwtConsumer {
                            consumer,
                            verifier: Arc::new(verifier),
                        });
                    }
                }
            }
        }
        Ok(Some(Self {
            directory: directory.clone(),
            api: api_index,
            identify: identify.into_boxed_slice(),
            jwt: jwt.into_boxed_slice(),
            mtls: mtls.into_boxed_slice(),
            keyless,
            identifying,
        }))
    }

    /// The subscription a JWT names (module docs of [`crate::jose`]): from the core's cache
    /// when this snapshot already verified it, else verified by each jwt consumer in turn (the
    /// refusal of the one that got furthest is the answer).
    fn identify_token(
        &self,
        token: &[u8],
        now_ms: i64,
        cache: &mut TokenCache,
    ) -> Result<u32, TokenRejection> {
        let directory = &*self.directory;
        if let Some(hit) = cache.get(token, directory.generation, now_ms) {
            if self.jwt.iter().any(|j| j.consumer == hit.consumer) {
                return Ok(hit.subscription);
            }
        }
        let mut refusal = TokenRejection::Malformed;
        for j in self.jwt.iter() {
            let outcome = j.verifier.verify(token, now_ms).and_then(|v| {
                directory
                    .consumer(j.consumer)
                    .and_then(|c| c.subjects.get(v.subject.as_str()))
                    .map(|sub| (*sub, v.valid_until_ms))
                    .ok_or(TokenRejection::UnknownSubject)
            });
            match outcome {
                Ok((subscription, valid_until_ms)) => {
                    cache.insert(
                        token,
                        CachedToken {
                            generation: directory.generation,
                            consumer: j.consumer,
                            subscription,
                            valid_until_ms,
                        },
                        now_ms,
                    );
                    return Ok(subscription);
                }
                Err(r) if r.rank() >= refusal.rank() => refusal = r,
                Err(_) => {}
            }
        }
        Err(refusal)
    }

    /// Admits the subscription at `index` that a token or a client certificate named, if it may call: its calls are
    /// counted on its quota holder.
    fn admit_token<'s>(
        &self,
        index: u32,
        keys: &'s KeyStore,
        scratch: &mut FlowScratch,
        admitted: &mut Admitted<'s>,
    ) -> Verdict {
        let directory = &*self.directory;
        let Some(sub) = directory.subscription(index) else {
            return Verdict::Reject(Rejection::Subscription(
                SubscriptionRejection::NotIdentified,
            ));
        };
        let identity = Identity {
            consumer: sub.consumer,
            subscription: Some(index),
        };
        scratch.identity = Some(identity);
        let holder = sub.holder.as_deref().and_then(|id| keys.get(id));
        scratch.key_index = holder.map(apikey::KeyEntry::index);
        let consumer = directory.consumer(sub.consumer);
        let refusal = match sub.status {
            SubscriptionStatus::Pending => Some(SubscriptionRejection::Pending),
            SubscriptionStatus::Disabled => Some(SubscriptionRejection::Disabled),
            SubscriptionStatus::Closed => Some(SubscriptionRejection::Closed),
            SubscriptionStatus::Enabled if !consumer.is_some_and(|c| c.status.serves()) => {
                Some(SubscriptionRejection::NotIdentified)
            }
            SubscriptionStatus::Enabled => None,
        };
        if let Some(r) = refusal {
            return Verdict::Reject(Rejection::Subscription(r));
        }
        admitted.key = holder;
        admitted.identity = Some(identity);
        Verdict::Continue
    }

    /// The extractors of the API-key consumer, if the API has one (the credential headers are
    /// removed before the request goes upstream).
    #[must_use]
    pub fn extractors(&self) -> Option<&apikey::Extractors> {
        self.identify.iter().find_map(|c| match c {
            Consumer::ApiKey(ctx) => Some(ctx.extractors()),
            Consumer::Keyless => None,
        })
    }

    /// The consumer phase's API part (see the module docs). `admitted.key` is the key the
    /// route's own `ApikeyCalls` verified, if any; on success it is the quota holder of the call
    /// (the subscription's key, or a keyless consumer's holder).
    pub(super) fn on_request<'s, H>(
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
        let directory = &*self.directory;
        let mut key = admitted.key;
        // The context the gate proved a key with (its checks remain to be made).
        let mut proven: Option<&RouteContext> = None;
        // A JWT the jwt consumers refused, when a keyless consumer then admits the call.
        let mut anonymous = false;
        if key.is_none() && !self.jwt.is_empty() {
            if let Some(token) = bearer_jwt(req.headers) {
                match self.identify_token(token, now_ms, &mut scratch.tokens) {
                    Ok(index) => return self.admit_token(index, keys, scratch, admitted),
                    Err(_) if !self.identifying && self.keyless.is_some() => anonymous = true,
                    Err(r) => return Verdict::Reject(Rejection::Token(r)),
                }
            }
        }
        // A verified client certificate bound to a subscription of an mtls consumer names it
        // (when the consumer's DN regexes admit it); any other certificate names nobody.
        if key.is_none() && !anonymous && !self.mtls.is_empty() {
            if let Some(cert) = req.client_cert {
                let found = self.mtls.iter().find_map(|m| {
                    directory
                        .consumer(m.consumer)
                        .and_then(|c| c.subjects.get(cert.sha256.as_str()))
                        .filter(|_| m.admits(cert))
                        .copied()
                });
                if let Some(index) = found {
                    return self.admit_token(index, keys, scratch, admitted);
                }
            }
        }
        if key.is_none() && !anonymous {
            for consumer in self.identify.iter() {
                let Consumer::ApiKey(ctx) = consumer else {
                    continue;
                };
                let apikey::Scratch { credential, token } = &mut scratch.apikey;
                let result = apikey::extract(ctx.extractors(), req.headers, credential)
                    .map(|cred| apikey::prove(&cred, keys, ctx, now_ms, token));
                credential.wipe();
                match result {
                    None => {}
                    Some(Ok(entry)) => {
                        scratch.key_index = Some(entry.index());
                        key = Some(entry);
                        proven = Some(ctx);
                        break;
                    }
                    Some(Err(_)) if !self.identifying && self.keyless.is_some() => break,
                    Some(Err(rejection)) => return Verdict::Reject(Rejection::Key(rejection)),
                }
            }
        }
        if let Some(entry) = key {
            if let Some((index, sub)) = directory.subscription_of(entry.index()) {
                let consumer = directory.consumer(sub.consumer);
                // The client id and secret of an `oauth` subscription are for the token
                // endpoint only: as an API key they name no subscription.
                if consumer.is_some_and(|c| c.api == self.api && c.kind == ConsumerKind::Apikey) {
                    scratch.identity = Some(Identity {
                        consumer: sub.consumer,
                        subscription: Some(index),
                    });
                    // The subscription's own status first (a closed consumer closed it), then
                    // whether its consumer identifies anyone (staging: nobody).
                    let refusal = match sub.status {
                        SubscriptionStatus::Pending => Some(SubscriptionRejection::Pending),
                        SubscriptionStatus::Disabled => Some(SubscriptionRejection::Disabled),
                        SubscriptionStatus::Closed => Some(SubscriptionRejection::Closed),
                        SubscriptionStatus::Enabled
                            if !consumer.is_some_and(|c| c.status.serves()) =>
                        {
                            Some(SubscriptionRejection::NotIdentified)
                        }
                        SubscriptionStatus::Enabled => None,
                    };
                    if let Some(r) = refusal {
                        return Verdict::Reject(Rejection::Subscription(r));
                    }
                    if let Some(ctx) = proven {
                        if let Err(r) = apikey::check(entry, ctx, req.method, now_ms) {
                            return Verdict::Reject(Rejection::Key(r));
                        }
                    }
                    admitted.key = Some(entry);
                    admitted.identity = scratch.identity;
                    return Verdict::Continue;
                }
            }
            // A key that is no subscription of this API: the key must still be valid here, and
            // only a keyless consumer admits the call.
            if let Some(ctx) = proven {
                if let Err(r) = apikey::check(entry, ctx, req.method, now_ms) {
                    return Verdict::Reject(Rejection::Key(r));
                }
            }
        }
        let Some(consumer_index) = self.keyless else {
            return Verdict::Reject(Rejection::Subscription(
                SubscriptionRejection::NotIdentified,
            ));
        };
        let identity = Identity {
            consumer: consumer_index,
            subscription: None,
        };
        scratch.identity = Some(identity);
        admitted.identity = Some(identity);
        // The route's own plugin's key stays the quota holder; otherwise the consumer's holder.
        if admitted.key.is_none() {
            let holder = directory
                .consumer(consumer_index)
                .and_then(|c| c.holder.as_deref())
                .and_then(|id| keys.get(id));
            admitted.key = holder;
            scratch.key_index = holder.map(apikey::KeyEntry::index);
        }
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests;
