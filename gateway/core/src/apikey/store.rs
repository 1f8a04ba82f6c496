//! The key store of one config snapshot: every API key, indexed by client id, with what
//! verification needs precomputed.

use std::fmt;
use std::fmt::Write as _;

use gateway_model::entity::ApiKey;
use hmac::{Hmac, Mac};
use rustc_hash::{FxHashMap, FxHashSet};
use sha2::Sha256;

use super::context::RouteContext;
use super::ct;
use crate::restriction::{CompileError, RestrictionSet};

/// Above this many ids, an authorization set is hashed instead of scanned.
const SCAN_LIMIT: usize = 16;

/// A key store problem, naming the key by its position in the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A key without a client id.
    #[error("apikeys[{index}].clientId: must not be empty")]
    EmptyClientId {
        /// Position of the key.
        index: usize,
    },
    /// Two keys with the same client id.
    #[error("apikeys[{index}].clientId: {client_id:?} is already the id of apikeys[{first}]")]
    DuplicateClientId {
        /// Position of the second key.
        index: usize,
        /// Position of the first.
        first: usize,
        /// The client id.
        client_id: String,
    },
    /// A restriction pattern that does not compile.
    #[error("apikeys[{index}].restrictions.{error}")]
    Restriction {
        /// Position of the key.
        index: usize,
        /// The client id.
        client_id: String,
        /// The pattern's problem.
        error: CompileError,
    },
}

/// Every API key of a snapshot, by client id. Immutable once built, shared read-only by all
/// cores; a lookup allocates nothing.
#[derive(Debug, Clone, Default)]
pub struct KeyStore {
    keys: FxHashMap<Box<str>, KeyEntry>,
}

impl KeyStore {
    /// Builds the store: secrets, `otoapk_` bearer signatures, authorizations and restrictions are
    /// prepared once here.
    ///
    /// # Errors
    /// An empty or duplicate client id, or a restriction regex that does not compile.
    pub fn build(keys: &[ApiKey]) -> Result<Self, StoreError> {
        Self::build_with(keys, &[])
    }

    /// [`KeyStore::build`], plus quota holders that no credential can name: a keyless API
    /// consumer's calls are counted against one (its quotas, leases, usage and totals are those
    /// of a key with that id). Holders come after the keys (their indexes follow the keys').
    ///
    /// # Errors
    /// As [`KeyStore::build`]; a holder whose id is a key's is a duplicate.
    pub fn build_with(keys: &[ApiKey], holders: &[QuotaHolder]) -> Result<Self, StoreError> {
        let mut map: FxHashMap<Box<str>, KeyEntry> = FxHashMap::default();
        // Capacity only: a wrong size costs rehashes, nothing else (equivalent mutants with `*`).
        map.reserve(keys.len() + holders.len());
        for (index, key) in keys.iter().enumerate() {
            if key.client_id.is_empty() {
                return Err(StoreError::EmptyClientId { index });
            }
            if let Some(first) = map.get(key.client_id.as_str()) {
                return Err(StoreError::DuplicateClientId {
                    index,
                    first: first.index,
                    client_id: key.client_id.clone(),
                });
            }
            let entry = KeyEntry::new(index, key)?;
            map.insert(key.client_id.as_str().into(), entry);
        }
        for (i, holder) in holders.iter().enumerate() {
            let index = keys.len() + i;
            if let Some(first) = map.get(holder.id.as_str()) {
                return Err(StoreError::DuplicateClientId {
                    index,
                    first: first.index,
                    client_id: holder.id.clone(),
                });
            }
            map.insert(holder.id.as_str().into(), KeyEntry::holder(index, holder));
        }
        Ok(Self { keys: map })
    }

    /// The key with this client id.
    #[must_use]
    pub fn get(&self, client_id: &str) -> Option<&KeyEntry> {
        self.keys.get(client_id)
    }

    /// The key with this client id, as sent (not UTF-8: no key). Quota holders are no keys: no
    /// credential finds them.
    pub(crate) fn lookup(&self, client_id: &[u8]) -> Option<&KeyEntry> {
        self.keys
            .get(std::str::from_utf8(client_id).ok()?)
            .filter(|e| !e.holder)
    }

    /// The work of a secret comparison, for an unknown client id: an unknown id and a wrong
    /// secret take the same time.
    ///
    /// Its effect is only time: removing it (or [`KeyStore::burn_bearer`]) changes no answer,
    /// so no unit test sees it (equivalent mutants, docs/testing.md).
    pub(crate) fn burn_secret(presented: &[u8]) {
        const DUMMY: [u8; 128] = [0x5a; 128];
        let n = presented.len().min(DUMMY.len());
        let _ = ct::eq(DUMMY.get(..n).unwrap_or_default(), presented);
        let _ = ct::eq(DUMMY.get(..n).unwrap_or_default(), presented);
    }

    /// [`KeyStore::burn_secret`] for an `otoapk_` signature.
    pub(crate) fn burn_bearer(hex: &[u8]) {
        if let Some(sig) = decode_hex32(hex) {
            let _ = ct::eq(&[0u8; 32], &sig);
            let _ = ct::eq(&[0u8; 32], &sig);
        }
    }

    /// Number of keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Every key, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &KeyEntry> {
        self.keys.values()
    }
}

/// A quota holder that is not a key (see [`KeyStore::build_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaHolder {
    /// Its id, in the key namespace (usage, totals, pool); never a valid client id
    /// (`keyless:<api>:<consumer>` has a `:`).
    pub id: String,
    /// Its quotas.
    pub quotas: Quotas,
}

/// The quotas of a key (DESIGN §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Calls per second.
    pub throttling: u64,
    /// Calls per calendar day.
    pub daily: u64,
    /// Calls per calendar month.
    pub monthly: u64,
}

/// One key, ready for verification. Its `Debug` never shows a secret.
#[derive(Clone)]
pub struct KeyEntry {
    index: usize,
    client_id: Box<str>,
    client_name: Box<str>,
    secret: Box<[u8]>,
    next_secret: Option<Box<[u8]>>,
    /// HMAC-SHA256(secret, "otoapk_<clientId>"): an `otoapk_` bearer's signature is fixed per
    /// secret, so checking one is a comparison.
    bearer_mac: [u8; 32],
    next_bearer_mac: Option<[u8; 32]>,
    enabled: bool,
    read_only: bool,
    allow_client_id_only: bool,
    constrained_services_only: bool,
    valid_until: Option<i64>,
    routes: IdSet,
    apis: IdSet,
    groups: IdSet,
    quotas: Quotas,
    restrictions: RestrictionSet,
    tags: Box<[Box<str>]>,
    /// Sorted by key.
    metadata: Box<[(Box<str>, Box<str>)]>,
    /// A quota holder, not a key: no credential names it.
    holder: bool,
}

impl KeyEntry {
    fn holder(index: usize, holder: &QuotaHolder) -> Self {
        Self {
            index,
            client_id: holder.id.as_str().into(),
            client_name: Box::default(),
            secret: Box::default(),
            next_secret: None,
            bearer_mac: [0; 32],
            next_bearer_mac: None,
            enabled: true,
            read_only: false,
            allow_client_id_only: false,
            constrained_services_only: false,
            valid_until: None,
            routes: IdSet::new(&[]),
            apis: IdSet::new(&[]),
            groups: IdSet::new(&[]),
            quotas: holder.quotas,
            restrictions: RestrictionSet::disabled(),
            tags: Box::default(),
            metadata: Box::default(),
            holder: true,
        }
    }

    /// Whether this is a quota holder (a keyless consumer's), not a key.
    #[must_use]
    pub fn is_holder(&self) -> bool {
        self.holder
    }

    fn new(index: usize, key: &ApiKey) -> Result<Self, StoreError> {
        let restrictions = RestrictionSet::compile(&key.restrictions).map_err(|error| {
            StoreError::Restriction {
                index,
                client_id: key.client_id.clone(),
                error,
            }
        })?;
        let secret = key.client_secret.expose().as_bytes();
        let next_secret = key
            .rotation
            .next_secret
            .as_ref()
            .map(|s| s.expose().as_bytes())
            .filter(|s| !s.is_empty());
        let mut authorized = Authorizations::default();
        for entity in &key.authorized_entities {
            authorized.add_prefixed(entity);
        }
        if let Some(group) = key.authorized_group.as_deref().filter(|g| !g.is_empty()) {
            authorized.groups.push(group);
        }
        for auth in &key.authorizations {
            authorized.add_kind(&auth.kind, &auth.id);
        }
        Ok(Self {
            index,
            client_id: key.client_id.as_str().into(),
            client_name: key.client_name.as_str().into(),
            secret: secret.into(),
            next_secret: next_secret.map(Into::into),
            bearer_mac: bearer_mac(&key.client_id, secret),
            next_bearer_mac: next_secret.map(|s| bearer_mac(&key.client_id, s)),
            enabled: key.enabled,
            read_only: key.read_only,
            allow_client_id_only: key.allow_client_id_only,
            constrained_services_only: key.constrained_services_only,
            valid_until: key.valid_until,
            routes: IdSet::new(&authorized.routes),
            apis: IdSet::new(&authorized.apis),
            groups: IdSet::new(&authorized.groups),
            quotas: Quotas {
                throttling: key.throttling_quota,
                daily: key.daily_quota,
                monthly: key.monthly_quota,
            },
            restrictions,
            tags: key.tags.iter().map(|t| t.as_str().into()).collect(),
            metadata: key
                .metadata
                .iter()
                .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                .collect(),
            holder: false,
        })
    }

    /// The key's position in the list the store was built from (dense: usable as an index into
    /// per-key tables such as quota shards).
    #[must_use]
    pub fn index(&self) -> usize {
        self.index
    }

    /// The client id.
    #[must_use]
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The display name.
    #[must_use]
    pub fn client_name(&self) -> &str {
        &self.client_name
    }

    /// Whether the key is enabled (its `enabled` flag; see also [`KeyEntry::is_expired_at`]).
    #[must_use]
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether only GET, HEAD and OPTIONS are allowed.
    #[must_use]
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Whether the client id alone is accepted.
    #[must_use]
    pub fn allow_client_id_only(&self) -> bool {
        self.allow_client_id_only
    }

    /// Whether the key is refused on routes without routing constraints.
    #[must_use]
    pub fn constrained_services_only(&self) -> bool {
        self.constrained_services_only
    }

    /// The instant (ms since the Unix epoch) from which the key is expired.
    #[must_use]
    pub fn valid_until(&self) -> Option<i64> {
        self.valid_until
    }

    /// Whether the key is expired at `now_ms`: valid *until* `validUntil`, expired from it on.
    #[must_use]
    pub fn is_expired_at(&self, now_ms: i64) -> bool {
        self.valid_until.is_some_and(|until| now_ms >= until)
    }

    /// The key's quotas.
    #[must_use]
    pub fn quotas(&self) -> Quotas {
        self.quotas
    }

    /// The key's compiled path restrictions.
    #[must_use]
    pub fn restrictions(&self) -> &RestrictionSet {
        &self.restrictions
    }

    /// The key's tags.
    #[must_use]
    pub fn tags(&self) -> &[Box<str>] {
        &self.tags
    }

    /// Whether the key has this tag.
    #[must_use]
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| **t == *tag)
    }

    /// The value of a metadata entry.
    #[must_use]
    pub fn metadata_value(&self, key: &str) -> Option<&str> {
        let i = self
            .metadata
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()?;
        self.metadata.get(i).map(|(_, v)| &**v)
    }

    /// The metadata, sorted by key.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, &str)> {
        self.metadata.iter().map(|(k, v)| (&**k, &**v))
    }

    /// Whether the key authorizes the route: its id, its API or one of its groups.
    #[must_use]
    pub fn authorizes(&self, route: &RouteContext) -> bool {
        self.routes.contains(route.route_id())
            || route.api_id().is_some_and(|api| self.apis.contains(api))
            || route.groups().iter().any(|g| self.groups.contains(g))
    }

    /// Whether `presented` is the secret or the next secret, in constant time (only whether the
    /// lengths differ may leak). An empty secret never matches.
    pub(crate) fn secret_matches(&self, presented: &[u8]) -> bool {
        let current = ct::eq(&self.secret, presented);
        let next = self
            .next_secret
            .as_deref()
            .is_some_and(|next| ct::eq(next, presented));
        !presented.is_empty() && (current | next)
    }

    /// Whether `hex` is the `otoapk_` signature for the secret or the next secret.
    pub(crate) fn bearer_matches(&self, hex: &[u8]) -> bool {
        let Some(sig) = decode_hex32(hex) else {
            return false;
        };
        let current = ct::eq(&self.bearer_mac, &sig);
        let next = self.next_bearer_mac.is_some_and(|mac| ct::eq(&mac, &sig));
        !self.secret.is_empty() && (current | next)
    }

    /// The secret, then the next secret (JWT verification).
    pub(crate) fn secrets(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(&*self.secret)
            .chain(self.next_secret.as_deref())
            .filter(|s| !s.is_empty())
    }
}

impl fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyEntry")
            .field("index", &self.index)
            .field("client_id", &self.client_id)
            .field("client_name", &self.client_name)
            .field("secret", &"***")
            .field("next_secret", &self.next_secret.as_ref().map(|_| "***"))
            .field("enabled", &self.enabled)
            .field("read_only", &self.read_only)
            .field("allow_client_id_only", &self.allow_client_id_only)
            .field("constrained_services_only", &self.constrained_services_only)
            .field("valid_until", &self.valid_until)
            .field("routes", &self.routes)
            .field("apis", &self.apis)
            .field("groups", &self.groups)
            .field("quotas", &self.quotas)
            .field("restrictions_enabled", &self.restrictions.is_enabled())
            .field("tags", &self.tags)
            .field("metadata", &self.metadata)
            .field("holder", &self.holder)
            .finish()
    }
}

/// The `otoapk_` bearer of a key, as Otoroshi's `GET /api/apikeys/:id/bearer` returns it:
/// `otoapk_<clientId>_<hex HMAC-SHA256(key = secret, message = "otoapk_<clientId>")>`.
/// For the admin API and tools: it reveals a credential, so never log it.
#[must_use]
pub fn bearer_for(client_id: &str, secret: &str) -> String {
    let mac = bearer_mac(client_id, secret.as_bytes());
    let mut out = String::with_capacity(8 + client_id.len() + 64);
    out.push_str("otoapk_");
    out.push_str(client_id);
    out.push('_');
    for b in mac {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn bearer_mac(client_id: &str, secret: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: this never fails.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return [0; 32];
    };
    mac.update(b"otoapk_");
    mac.update(client_id.as_bytes());
    mac.finalize().into_bytes().into()
}

/// 64 hex digits (either case) → 32 bytes.
fn decode_hex32(hex: &[u8]) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    // Accumulate "some digit was invalid" instead of branching on every pair.
    let mut invalid = 0u8;
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (hi, lo) = match *pair {
            [hi, lo] => (hex_value(hi), hex_value(lo)),
            _ => return None,
        };
        invalid |= (hi | lo) & 0xf0;
        // Disjoint bits: `^` would do as well as `|` (an equivalent mutant).
        *byte = (hi << 4) | (lo & 0x0f);
    }
    (invalid == 0).then_some(out)
}

/// The value of a hex digit, or 0xff.
fn hex_value(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        b'A'..=b'F' => c - b'A' + 10,
        _ => 0xff,
    }
}

/// Authorized ids by kind, while a key is being prepared.
#[derive(Default)]
struct Authorizations<'k> {
    routes: Vec<&'k str>,
    apis: Vec<&'k str>,
    groups: Vec<&'k str>,
}

impl<'k> Authorizations<'k> {
    /// An `authorizedEntities` entry: `route_`/`service_` → route, `api_` → API, `group_` →
    /// group, `route-composition_` → ignored (Tollgate has no compositions), anything else → a
    /// group id (as Otoroshi's `EntityIdentifier`).
    fn add_prefixed(&mut self, entity: &'k str) {
        let list = if let Some(id) = entity.strip_prefix("group_") {
            (&mut self.groups, id)
        } else if let Some(id) = entity
            .strip_prefix("route_")
            .or_else(|| entity.strip_prefix("service_"))
        {
            (&mut self.routes, id)
        } else if let Some(id) = entity.strip_prefix("api_") {
            (&mut self.apis, id)
        } else if entity.starts_with("route-composition_") {
            return;
        } else {
            (&mut self.groups, entity)
        };
        if !list.1.is_empty() {
            list.0.push(list.1);
        }
    }

    /// An `authorizations` entry (`{kind, id}`); unknown kinds are ignored.
    fn add_kind(&mut self, kind: &str, id: &'k str) {
        let list = match kind {
            "route" | "service" => &mut self.routes,
            "api" => &mut self.apis,
            "group" => &mut self.groups,
            _ => return,
        };
        if !id.is_empty() {
            list.push(id);
        }
    }
}

/// A set of ids: scanned when small (most keys authorize a handful), hashed when large.
#[derive(Debug, Clone)]
enum IdSet {
    Small(Box<[Box<str>]>),
    Large(FxHashSet<Box<str>>),
}

impl IdSet {
    fn new(ids: &[&str]) -> Self {
        let set: FxHashSet<Box<str>> = ids.iter().map(|id| (*id).into()).collect();
        if set.len() > SCAN_LIMIT {
            return Self::Large(set);
        }
        // Keep the configured order (first occurrence), which is what `Debug` shows.
        let mut unique: Vec<Box<str>> = Vec::with_capacity(set.len());
        for id in ids {
            if !unique.iter().any(|u| **u == **id) {
                unique.push((*id).into());
            }
        }
        Self::Small(unique.into_boxed_slice())
    }

    fn contains(&self, id: &str) -> bool {
        match self {
            Self::Small(ids) => ids.iter().any(|i| **i == *id),
            Self::Large(ids) => ids.contains(id),
        }
    }
}
