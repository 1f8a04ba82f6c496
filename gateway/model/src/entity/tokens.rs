//! The configs of the token consumers (DESIGN §8): `jwt` (a verifier of tokens someone else
//! signs), `oauth` (client credentials: the gateway signs the tokens) and `mtls` (client
//! certificates). Checked by [`crate::validate::validate_consumer`]; compiled for the request
//! path by gateway-core.

use serde::{Deserialize, Serialize};

use super::Secret;

fn default_leeway_s() -> u64 {
    30
}

fn default_subject_claim() -> String {
    "sub".to_owned()
}

fn default_token_ttl_s() -> u64 {
    3600
}

fn default_token_alg() -> String {
    "ES256".to_owned()
}

/// A `jwt` consumer's config: how tokens are verified and which claim names the subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JwtConsumerConfig {
    /// The signature check.
    pub verifier: JwtVerifierConfig,
    /// When set, the `iss` claim must be exactly this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// When set, the `aud` claim (a string or an array) must contain exactly this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, seconds (0 to 300).
    #[serde(default = "default_leeway_s")]
    pub leeway_s: u64,
    /// The claim whose value is a subscription's `subject`.
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
}

/// The verifier of a `jwt` consumer: one algorithm and exactly one source of keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JwtVerifierConfig {
    /// The one algorithm accepted (`HS256` … `EdDSA`); a token whose header names another one
    /// (`none` included) is refused.
    pub alg: String,
    /// HS256/384/512: the shared secret (at least the hash's size: 32, 48 or 64 bytes). Sealed
    /// in the entity log, `***` in every view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// RS*, PS*, ES*, EdDSA: a PEM `PUBLIC KEY` (or a `CERTIFICATE` whose key it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// RS*, PS*, ES*, EdDSA: an inline JWK set (`{"keys": [...]}`); a token's `kid` selects
    /// the key (required when the set has several).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
}

/// An `oauth` consumer's config (OAuth2 client credentials, Otoroshi's `oauth2-local`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OauthConsumerConfig {
    /// Lifetime of the access tokens the token endpoint issues, seconds (60 to 86400).
    #[serde(default = "default_token_ttl_s")]
    pub token_ttl_s: u64,
    /// The algorithm of the tokens: `ES256` (the cluster's generated key) or `RS256` (an RSA
    /// token key the operator registered).
    #[serde(default = "default_token_alg")]
    pub alg: String,
}

impl Default for OauthConsumerConfig {
    fn default() -> Self {
        Self {
            token_ttl_s: default_token_ttl_s(),
            alg: default_token_alg(),
        }
    }
}

/// An `mtls` consumer's config: what a subscription's certificate must further match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MtlsConsumerConfig {
    /// Full-match regexes; when any is set, the certificate's subject DN must match one.
    #[serde(default)]
    pub regex_subject_dns: Vec<String>,
    /// Full-match regexes; when any is set, the certificate's issuer DN must match one.
    #[serde(default)]
    pub regex_issuer_dns: Vec<String>,
}

/// The metadata key that marks a `keypair` certificate as one of the cluster's token keys (the
/// value is its algorithm, `ES256` or `RS256`).
pub const TOKEN_KEY_META: &str = "tollgate.token_key";

/// The metadata key of a retiring token key: until when (ms since the epoch) it still verifies.
pub const TOKEN_KEY_RETIRE_META: &str = "tollgate.retire_at";

/// The metadata key of a token key's creation time (ms since the epoch): the newest key that is
/// not retiring signs.
pub const TOKEN_KEY_CREATED_META: &str = "tollgate.created_at";

/// The metadata key that marks a CA certificate as the one an API's mTLS subscriptions are
/// issued from (the value is the API's id).
pub const API_CA_META: &str = "tollgate.api_ca";
