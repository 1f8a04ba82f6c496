//! The `ApikeyCalls` plugin's configuration, in Otoroshi's JSON shape, and its validated runtime
//! form ([`Extractors`]).
//!
//! Unknown fields are ignored rather than refused: an Otoroshi export carries fields Tollgate does
//! not use (`query_name`, `cookie_name`, `keypair_signed`, `include_request_attrs`,
//! `pass_with_user`, …), and it must import unchanged.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::extract::{
    DEFAULT_API_KEY_HEADER, DEFAULT_BASIC_HEADER, DEFAULT_BEARER_HEADER, DEFAULT_CLIENT_ID_HEADER,
    DEFAULT_CLIENT_SECRET_HEADER,
};

/// Default JWT leeway for `exp`, `nbf` and `iat`, in seconds (Otoroshi's).
pub const DEFAULT_JWT_LEEWAY_SEC: u64 = 10;

/// Largest accepted leeway: a day. More would make `exp` meaningless.
const MAX_JWT_LEEWAY_SEC: u64 = 86_400;

/// The `config` object of an `ApikeyCalls` plugin instance. A missing or `null` config is the
/// default: every extractor enabled with Otoroshi's header names, no routing constraints.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ApikeyCallsConfig {
    /// Which extractors run, and the header names they read.
    pub extractors: ExtractorConfig,
    /// Routing constraints: tags and metadata the key must (or must not) carry on this route.
    pub routing: RoutingConfig,
    /// Requests without a valid key are refused (Tollgate refuses them whatever this says:
    /// Otoroshi's anonymous pass with `mandatory: false` silently ignores unauthorized keys).
    pub mandatory: bool,
    /// Remove the credential headers before proxying.
    pub wipe_backend_request: bool,
    /// Count admitted calls against the key's quotas.
    pub update_quotas: bool,
}

impl Default for ApikeyCallsConfig {
    fn default() -> Self {
        Self {
            extractors: ExtractorConfig::default(),
            routing: RoutingConfig::default(),
            mandatory: true,
            wipe_backend_request: true,
            update_quotas: true,
        }
    }
}

impl ApikeyCallsConfig {
    /// Reads a plugin's `config` value (`null` is the default config).
    ///
    /// # Errors
    /// serde's message when a field has the wrong type.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, serde_json::Error> {
        if value.is_null() {
            return Ok(Self::default());
        }
        Self::deserialize(value)
    }
}

/// `extractors`: one entry per credential kind, each `enabled` by default.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct ExtractorConfig {
    /// `Otoroshi-Authorization` / `Authorization: Basic`.
    pub basic: BasicConfig,
    /// `Otoroshi-Client-Id` + `Otoroshi-Client-Secret`.
    pub custom_headers: CustomHeadersConfig,
    /// The client id alone (`x-api-key`), for keys with `allowClientIdOnly`.
    pub client_id: ClientIdConfig,
    /// HS256/384/512 JWTs signed with the key's secret.
    pub jwt: JwtConfig,
    /// `otoapk_<clientId>_<hex HMAC-SHA256>` bearers.
    pub oto_bearer: OtoBearerConfig,
}

/// `extractors.basic`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct BasicConfig {
    /// Run this extractor.
    pub enabled: bool,
    /// Replaces `Otoroshi-Authorization` (`Authorization` is always read too).
    pub header_name: Option<String>,
}

impl Default for BasicConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            header_name: None,
        }
    }
}

/// `extractors.custom_headers`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct CustomHeadersConfig {
    /// Run this extractor.
    pub enabled: bool,
    /// Replaces `Otoroshi-Client-Id`.
    pub client_id_header_name: Option<String>,
    /// Replaces `Otoroshi-Client-Secret`.
    pub client_secret_header_name: Option<String>,
}

impl Default for CustomHeadersConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            client_id_header_name: None,
            client_secret_header_name: None,
        }
    }
}

/// `extractors.client_id`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct ClientIdConfig {
    /// Run this extractor.
    pub enabled: bool,
    /// Replaces `x-api-key` (also read for `otoapk_` bearers).
    pub header_name: Option<String>,
}

impl Default for ClientIdConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            header_name: None,
        }
    }
}

/// `extractors.jwt`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct JwtConfig {
    /// Run this extractor.
    pub enabled: bool,
    /// Accept HS256/384/512 JWTs signed with the key's secret (the only kind Tollgate verifies:
    /// with `false`, every JWT is refused).
    pub secret_signed: bool,
    /// Replaces `Otoroshi-Token` (`Authorization: Bearer` is always read too).
    pub header_name: Option<String>,
    /// Clock-skew allowance for `exp`, `nbf` and `iat`, in seconds (Tollgate only; default 10,
    /// Otoroshi's fixed value; at most a day).
    pub leeway_sec: u64,
    /// When set, `exp` and `iat` are required and `exp - iat` may not exceed this many seconds.
    pub max_jwt_lifespan_sec: Option<u64>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            secret_signed: true,
            header_name: None,
            leeway_sec: DEFAULT_JWT_LEEWAY_SEC,
            max_jwt_lifespan_sec: None,
        }
    }
}

/// `extractors.oto_bearer`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct OtoBearerConfig {
    /// Run this extractor.
    pub enabled: bool,
    /// Replaces `Otoroshi-Token` for bearers (`Authorization: Bearer` and the client-id header
    /// are always read too).
    pub header_name: Option<String>,
}

impl Default for OtoBearerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            header_name: None,
        }
    }
}

/// `routing`: API-key routing constraints (Otoroshi's `ApiKeyRouteMatcher`). Each non-empty
/// criterion must hold; empty ones are ignored.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct RoutingConfig {
    /// Constraints are checked only when enabled.
    pub enabled: bool,
    /// The key has at least one of these tags.
    pub one_tag_in: Vec<String>,
    /// The key has all of these tags.
    pub all_tags_in: Vec<String>,
    /// The key has none of these tags.
    pub none_tag_in: Vec<String>,
    /// The key has at least one of these metadata entries (key and value).
    pub one_meta_in: BTreeMap<String, String>,
    /// The key has all of these metadata entries.
    pub all_meta_in: BTreeMap<String, String>,
    /// The key has none of these metadata entries.
    pub none_meta_in: BTreeMap<String, String>,
    /// The key has at least one of these metadata keys.
    pub one_meta_key_in: Vec<String>,
    /// The key has all of these metadata keys.
    pub all_meta_keys_in: Vec<String>,
    /// The key has none of these metadata keys.
    pub none_meta_keys_in: Vec<String>,
}

/// A bad value in an `ApikeyCalls` config, with its place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    /// Where: `extractors.jwt.header_name`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Validated extractor settings of one route: which extractors run and the header names they
/// read (Otoroshi's defaults unless overridden).
#[derive(Debug, Clone, PartialEq)]
pub struct Extractors {
    pub(crate) custom: Option<(Box<str>, Box<str>)>,
    pub(crate) basic: Option<Box<str>>,
    pub(crate) jwt: Option<Box<str>>,
    pub(crate) bearer: Option<Box<str>>,
    pub(crate) client_id: Option<Box<str>>,
    /// The client-id header name, read for `otoapk_` bearers even when `client_id` is disabled.
    pub(crate) api_key_header: Box<str>,
    pub(crate) jwt_rules: JwtRules,
}

/// How JWTs are checked, beyond the signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwtRules {
    /// HS JWTs are accepted at all.
    pub secret_signed: bool,
    /// Clock-skew allowance, in ms.
    pub leeway_ms: i64,
    /// Largest `exp - iat`, in ms, when required.
    pub max_lifespan_ms: Option<i64>,
}

impl Default for Extractors {
    /// Every extractor, Otoroshi's header names, 10 s leeway (what an empty config gives).
    fn default() -> Self {
        Self {
            custom: Some((
                DEFAULT_CLIENT_ID_HEADER.into(),
                DEFAULT_CLIENT_SECRET_HEADER.into(),
            )),
            basic: Some(DEFAULT_BASIC_HEADER.into()),
            jwt: Some(DEFAULT_BEARER_HEADER.into()),
            bearer: Some(DEFAULT_BEARER_HEADER.into()),
            client_id: Some(DEFAULT_API_KEY_HEADER.into()),
            api_key_header: DEFAULT_API_KEY_HEADER.into(),
            jwt_rules: JwtRules {
                secret_signed: true,
                leeway_ms: 10_000,
                max_lifespan_ms: None,
            },
        }
    }
}

impl Extractors {
    /// The JWT rules.
    #[must_use]
    pub fn jwt_rules(&self) -> JwtRules {
        self.jwt_rules
    }
}

impl TryFrom<&ExtractorConfig> for Extractors {
    type Error = ConfigError;

    fn try_from(c: &ExtractorConfig) -> Result<Self, ConfigError> {
        let name = |field: &str, value: &Option<String>, default: &str| {
            header_name(&format!("extractors.{field}"), value.as_deref(), default)
        };
        let custom = if c.custom_headers.enabled {
            Some((
                name(
                    "custom_headers.client_id_header_name",
                    &c.custom_headers.client_id_header_name,
                    DEFAULT_CLIENT_ID_HEADER,
                )?,
                name(
                    "custom_headers.client_secret_header_name",
                    &c.custom_headers.client_secret_header_name,
                    DEFAULT_CLIENT_SECRET_HEADER,
                )?,
            ))
        } else {
            None
        };
        let basic = c
            .basic
            .enabled
            .then(|| {
                name(
                    "basic.header_name",
                    &c.basic.header_name,
                    DEFAULT_BASIC_HEADER,
                )
            })
            .transpose()?;
        let jwt = c
            .jwt
            .enabled
            .then(|| name("jwt.header_name", &c.jwt.header_name, DEFAULT_BEARER_HEADER))
            .transpose()?;
        let bearer = c
            .oto_bearer
            .enabled
            .then(|| {
                name(
                    "oto_bearer.header_name",
                    &c.oto_bearer.header_name,
                    DEFAULT_BEARER_HEADER,
                )
            })
            .transpose()?;
        let api_key_header = name(
            "client_id.header_name",
            &c.client_id.header_name,
            DEFAULT_API_KEY_HEADER,
        )?;
        let client_id = c.client_id.enabled.then(|| api_key_header.clone());
        if c.jwt.leeway_sec > MAX_JWT_LEEWAY_SEC {
            return Err(ConfigError {
                field: "extractors.jwt.leeway_sec".into(),
                message: format!(
                    "expected at most {MAX_JWT_LEEWAY_SEC} seconds, got {}",
                    c.jwt.leeway_sec
                ),
            });
        }
        let max_lifespan_ms = match c.jwt.max_jwt_lifespan_sec {
            None => None,
            Some(secs) => Some(
                i64::try_from(secs)
                    .ok()
                    .and_then(|s| s.checked_mul(1000))
                    .ok_or_else(|| ConfigError {
                        field: "extractors.jwt.max_jwt_lifespan_sec".into(),
                        message: format!("{secs} seconds is out of range"),
                    })?,
            ),
        };
        Ok(Self {
            custom,
            basic,
            jwt,
            bearer,
            client_id,
            api_key_header,
            jwt_rules: JwtRules {
                secret_signed: c.jwt.secret_signed,
                // Bounded by MAX_JWT_LEEWAY_SEC above.
                leeway_ms: i64::try_from(c.jwt.leeway_sec.saturating_mul(1000)).unwrap_or(0),
                max_lifespan_ms,
            },
        })
    }
}

/// A configured header name (or the default), checked to be an HTTP token.
fn header_name(field: &str, value: Option<&str>, default: &str) -> Result<Box<str>, ConfigError> {
    // Otoroshi's UI stores a cleared field as "": that means the default too.
    let name = value.filter(|v| !v.is_empty()).unwrap_or(default);
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(ConfigError {
            field: field.to_owned(),
            message: format!("{name:?} is not a valid header name"),
        });
    }
    Ok(name.into())
}
