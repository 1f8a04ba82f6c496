use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::{Secret, yes};

/// Otoroshi's default for the three quota fields (`RemainingQuotas.MaxValue`): ten million.
/// Tollgate enforces it as a real number, as it enforces any other value.
pub const DEFAULT_QUOTA: u64 = 10_000_000;

/// Quota values at or above this are treated as "no limit" when computing headers.
pub const UNLIMITED_QUOTA: u64 = u64::MAX;

/// An API key, with Otoroshi's field names (`clientId`, `clientSecret`, …).
///
/// Deviations from Otoroshi, on purpose: `validUntil` is enforced at request time (a key is valid
/// until that instant), `readOnly` is enforced on every route, and `throttlingQuota` is calls per
/// second, not per 10-second window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKey {
    /// The key's id (Otoroshi: `clientId`), unique among keys.
    pub client_id: String,
    /// The secret the client presents (or signs JWTs and `otoapk_` bearers with).
    pub client_secret: Secret,
    /// Display name.
    #[serde(default)]
    pub client_name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// The key is valid until this instant (ms since the Unix epoch); `null` for no expiry.
    #[serde(default)]
    pub valid_until: Option<i64>,
    /// A disabled key is refused with 401.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Only GET, HEAD and OPTIONS are allowed; anything else gets 405.
    #[serde(default)]
    pub read_only: bool,
    /// The client id alone (header `x-api-key`) is accepted, without a secret.
    #[serde(default)]
    pub allow_client_id_only: bool,
    /// The key is refused on routes that have no API-key routing constraints.
    #[serde(default)]
    pub constrained_services_only: bool,
    /// Where the key may be used: `route_<id>`, `api_<id>`, `group_<id>` (an id without a known
    /// prefix is a group, as in Otoroshi).
    #[serde(default)]
    pub authorized_entities: Vec<String>,
    /// Otoroshi's legacy single group (`authorizedGroup`); merged into `authorized_entities` on
    /// import and never written back.
    #[serde(default, skip_serializing)]
    pub authorized_group: Option<String>,
    /// Otoroshi's modern form of `authorizedEntities` (`[{kind, id}]`); merged on import.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub authorizations: Vec<EntityRef>,
    /// Tags, matched by routing constraints.
    #[serde(default)]
    pub tags: Vec<String>,
    /// String metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Automatic secret rotation.
    #[serde(default)]
    pub rotation: Rotation,
    /// Path restrictions (Otoroshi semantics).
    #[serde(default)]
    pub restrictions: Restrictions,
    /// Calls per second (a token bucket), not Otoroshi's 10-second window.
    #[serde(default = "default_quota", deserialize_with = "quota")]
    pub throttling_quota: u64,
    /// Calls per calendar day in the gateway's time zone.
    #[serde(default = "default_quota", deserialize_with = "quota")]
    pub daily_quota: u64,
    /// Calls per calendar month in the gateway's time zone.
    #[serde(default = "default_quota", deserialize_with = "quota")]
    pub monthly_quota: u64,
}

impl ApiKey {
    /// Folds Otoroshi's legacy `authorizedGroup` and `authorizations` into `authorized_entities`
    /// (deduplicated, order kept), as Otoroshi's reader does.
    pub fn normalise_authorizations(&mut self) {
        let mut extra = Vec::new();
        if let Some(group) = self.authorized_group.take() {
            if !group.is_empty() {
                extra.push(format!("group_{group}"));
            }
        }
        for auth in self.authorizations.drain(..) {
            extra.push(format!("{}_{}", auth.kind, auth.id));
        }
        for entity in extra {
            if !self.authorized_entities.contains(&entity) {
                self.authorized_entities.push(entity);
            }
        }
    }
}

/// An entity reference in Otoroshi's `authorizations` form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityRef {
    /// `route`, `api`, `group`, `service`.
    pub kind: String,
    /// The entity's id.
    pub id: String,
}

/// Secret rotation settings (Otoroshi's `ApiKeyRotation`). Durations are in hours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rotation {
    /// Rotate automatically.
    #[serde(default)]
    pub enabled: bool,
    /// Hours between rotations.
    #[serde(default = "default_rotation_every")]
    pub rotation_every: u64,
    /// Hours before the switch during which both secrets are accepted.
    #[serde(default = "default_grace_period")]
    pub grace_period: u64,
    /// The secret that takes over at the next rotation; accepted during the grace period.
    #[serde(default)]
    pub next_secret: Option<Secret>,
}

impl Default for Rotation {
    fn default() -> Self {
        Self {
            enabled: false,
            rotation_every: default_rotation_every(),
            grace_period: default_grace_period(),
            next_secret: None,
        }
    }
}

/// Path restrictions with Otoroshi's semantics: see `gateway_core::restriction`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Restrictions {
    /// Restrictions apply only when enabled.
    #[serde(default)]
    pub enabled: bool,
    /// `true` (Otoroshi's coded default): notFound then forbidden are checked and everything else
    /// passes. `false`: whitelist mode, `allowed` wins and anything not allowed is 404.
    /// (`allow_last` is accepted too: the route-level `NgRestrictions` plugin spells it so.)
    #[serde(default = "yes", alias = "allow_last")]
    pub allow_last: bool,
    /// Allowed paths (used when `allowLast` is false).
    #[serde(default)]
    pub allowed: Vec<Restriction>,
    /// Paths answered with 403.
    #[serde(default)]
    pub forbidden: Vec<Restriction>,
    /// Paths answered with 404 (`not_found` accepted too).
    #[serde(default, alias = "not_found")]
    pub not_found: Vec<Restriction>,
}

impl Default for Restrictions {
    fn default() -> Self {
        Self {
            enabled: false,
            allow_last: true,
            allowed: Vec::new(),
            forbidden: Vec::new(),
            not_found: Vec::new(),
        }
    }
}

/// One restriction: a method (or `*`) and a path regex that must match the whole path (or the
/// whole `domain + path` when it does not start with `/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Restriction {
    /// HTTP method, compared case-insensitively, or `*` for any.
    pub method: String,
    /// A regex matched against the whole path (query excluded).
    pub path: String,
}

fn default_quota() -> u64 {
    DEFAULT_QUOTA
}

fn default_rotation_every() -> u64 {
    744
}

fn default_grace_period() -> u64 {
    168
}

/// An optional quota (a consumer's): `null` or absent is `None`, else as [`quota`].
pub(crate) fn quota_opt<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    let value = serde_json::Value::deserialize(de)?;
    if value.is_null() {
        return Ok(None);
    }
    quota_of::<D::Error>(&value).map(Some)
}

/// Quotas are integers ≥ 0; say so in the error instead of serde's "expected u64".
fn quota<'de, D: Deserializer<'de>>(de: D) -> Result<u64, D::Error> {
    let value = serde_json::Value::deserialize(de)?;
    quota_of::<D::Error>(&value)
}

fn quota_of<E: serde::de::Error>(value: &serde_json::Value) -> Result<u64, E> {
    match value {
        serde_json::Value::Number(n) => {
            if let Some(v) = n.as_u64() {
                return Ok(v);
            }
            if let Some(f) = n.as_f64() {
                if f >= 0.0 && f.fract() == 0.0 && f <= 9.0e15 {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    return Ok(f as u64);
                }
            }
            Err(E::custom(format!("expected an integer ≥ 0, got {n}")))
        }
        other => Err(E::custom(format!(
            "expected an integer ≥ 0, got {}",
            json_kind(other)
        ))),
    }
}

/// How a JSON value's type reads in an error message ("a string").
pub(crate) fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}
