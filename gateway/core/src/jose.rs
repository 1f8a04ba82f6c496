//! JWT verification for `jwt` consumers (DESIGN §8): signatures with `ring` (no hand-written
//! cryptography), claims with the consumer's rules, and a per-core cache of verified tokens.
//!
//! Order of checks, each with its own refusal ([`TokenRejection`]):
//! 1. shape: three base64url parts, a JSON header and a JSON object of claims (`malformed`);
//! 2. the header's `alg` must be the consumer's one algorithm, exactly (`none`, and an HMAC
//!    token presented to an RSA/EC/EdDSA verifier, are refused before any key is touched: the
//!    key of a verifier is of its algorithm's family, checked when the config is stored); a
//!    `crit` header is refused (not understood); a `kid` selects the key of a JWK set;
//! 3. the signature over `header.payload` (`bad signature`);
//! 4. only then are the claims trusted: `exp` is required, `exp`, `nbf` and `iat` are checked
//!    with the consumer's leeway (`expired`, `not yet valid`), `iss` and `aud` when the consumer
//!    names them (`wrong issuer`, `wrong audience`);
//! 5. the subject claim must name a subscription of the consumer (checked by the caller,
//!    [`crate::flow::ApiConsumers`]; `unknown subject`).
//!
//! [`TokenCache`] remembers, per core, the tokens that passed 1–4 (keyed by a hash, compared in
//! full in constant time), until their `exp` (plus leeway) and only within one snapshot generation:
//! a changed consumer, subscription or key starts a new generation, and every cached token is
//! verified afresh. It holds at most [`TokenCache::CAPACITY`] tokens.
//!
//! This module must never read a clock (the caller passes `now_ms`) nor log a token.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gateway_model::entity::JwtConsumerConfig;
use gateway_model::jose::{self as model, Alg, PublicKey};
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use rustc_hash::FxHashMap;
use serde::Deserialize;

use crate::error::{CoreError, CoreErrorKind};

/// Why a token was refused (all 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenRejection {
    /// Not a JWS compact token with JSON header and claims, or a required claim (`exp`) of the
    /// wrong type or missing.
    Malformed,
    /// The header names another algorithm than the consumer's (`none` included).
    Algorithm,
    /// The `kid` names no key of the consumer's set (or a set of several keys and no `kid`).
    UnknownKey,
    /// The signature does not verify.
    Signature,
    /// `exp` has passed (beyond the leeway).
    Expired,
    /// `nbf` or `iat` is in the future (beyond the leeway).
    NotYetValid,
    /// `iss` is not the consumer's issuer.
    Issuer,
    /// `aud` does not contain the consumer's audience.
    Audience,
    /// The subject claim names no subscription of the consumer (or is not a string).
    UnknownSubject,
}

impl TokenRejection {
    /// The stable error code.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::Malformed => "token_malformed",
            Self::Algorithm | Self::UnknownKey | Self::Signature => "token_bad_signature",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::Issuer => "token_wrong_issuer",
            Self::Audience => "token_wrong_audience",
            Self::UnknownSubject => "token_unknown_subject",
        }
    }

    /// The `error_description`.
    #[must_use]
    pub fn description(self) -> &'static str {
        match self {
            Self::Malformed => "the bearer token is not a well-formed JWT with an exp claim",
            Self::Algorithm => "the token's algorithm is not the one this API accepts",
            Self::UnknownKey => "no key of this API verifies the token's kid",
            Self::Signature => "the token's signature does not verify",
            Self::Expired => "the token has expired",
            Self::NotYetValid => "the token is not valid yet",
            Self::Issuer => "the token's issuer is not accepted",
            Self::Audience => "the token's audience is not accepted",
            Self::UnknownSubject => "the token's subject names no subscription of this API",
        }
    }

    /// A distinct reason for usage events and metrics.
    #[must_use]
    pub fn reason(self) -> &'static str {
        match self {
            Self::Malformed => "token_malformed",
            Self::Algorithm => "token_algorithm",
            Self::UnknownKey => "token_unknown_kid",
            Self::Signature => "token_signature",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::Issuer => "token_wrong_issuer",
            Self::Audience => "token_wrong_audience",
            Self::UnknownSubject => "token_unknown_subject",
        }
    }

    /// How far verification got: when several consumers refuse a token, the refusal of the one
    /// that got furthest is the answer.
    #[must_use]
    pub fn rank(self) -> u8 {
        match self {
            Self::Malformed => 0,
            Self::Algorithm => 1,
            Self::UnknownKey => 2,
            Self::Signature => 3,
            Self::Expired | Self::NotYetValid => 4,
            Self::Issuer | Self::Audience => 5,
            Self::UnknownSubject => 6,
        }
    }
}

/// A key, ready for ring.
enum Key {
    Hmac(ring::hmac::Key),
    Rsa(RsaPublicKeyComponents<Vec<u8>>),
    Unparsed(UnparsedPublicKey<Vec<u8>>),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Hmac(_) => "Hmac(***)",
            Self::Rsa(_) => "Rsa",
            Self::Unparsed(_) => "PublicKey",
        })
    }
}

#[derive(Debug)]
struct KeyEntry {
    kid: Option<Box<str>>,
    key: Key,
    /// A retiring key verifies until then (ms since the epoch).
    until_ms: Option<i64>,
}

/// A `jwt` consumer's verifier, compiled from its config.
#[derive(Debug)]
pub struct Verifier {
    alg: Alg,
    keys: Box<[KeyEntry]>,
    issuer: Option<Box<str>>,
    audience: Option<Box<str>>,
    leeway_ms: i64,
    subject_claim: Box<str>,
}

/// A token that passed every check but the subject's: its subject and until when it may be
/// trusted (`exp` plus the leeway, ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The subject claim's value.
    pub subject: String,
    /// `exp` plus the leeway, ms since the epoch.
    pub valid_until_ms: i64,
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    kid: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

fn ring_key(alg: Alg, key: &PublicKey) -> Result<Key, CoreError> {
    let unparsed = |a: &'static dyn signature::VerificationAlgorithm, bytes: &[u8]| {
        Ok(Key::Unparsed(UnparsedPublicKey::new(a, bytes.to_vec())))
    };
    match (alg, key) {
        (
            Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512,
            PublicKey::Rsa { n, e },
        ) => Ok(Key::Rsa(RsaPublicKeyComponents {
            n: n.clone(),
            e: e.clone(),
        })),
        (Alg::Es256, PublicKey::P256(point)) => {
            unparsed(&signature::ECDSA_P256_SHA256_FIXED, point)
        }
        (Alg::Es384, PublicKey::P384(point)) => {
            unparsed(&signature::ECDSA_P384_SHA384_FIXED, point)
        }
        (Alg::EdDsa, PublicKey::Ed25519(x)) => unparsed(&signature::ED25519, x),
        (alg, key) => Err(CoreError::key(format!(
            "{} cannot verify {}",
            key.family().describe(),
            alg.name()
        ))),
    }
}

fn rsa_params(alg: Alg) -> Option<&'static signature::RsaParameters> {
    Some(match alg {
        Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Alg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Alg::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Alg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
        Alg::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
        Alg::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

/// A NumericDate claim as ms since the epoch: `None` when absent, `Err` when not a number.
fn date_ms(
    claims: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Result<Option<i64>, TokenRejection> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => {
            let secs = v.as_f64().ok_or(TokenRejection::Malformed)?;
            if !secs.is_finite() {
                return Err(TokenRejection::Malformed);
            }
            // Saturating: a date beyond i64 ms is "far future" (or "far past").
            #[allow(clippy::cast_possible_truncation)]
            Ok(Some((secs * 1000.0) as i64))
        }
    }
}

impl Verifier {
    /// Compiles a consumer's verifier (validated when it was stored; a config that does not
    /// compile identifies nobody).
    ///
    /// # Errors
    /// A [`CoreError`] saying what is wrong with the config.
    pub fn new(cfg: &JwtConsumerConfig) -> Result<Self, CoreError> {
        let v = &cfg.verifier;
        let alg = Alg::from_name(&v.alg)
            .ok_or_else(|| CoreError::field(format!("unknown algorithm {:?}", v.alg)))?;
        let mut keys = Vec::new();
        match (alg, &v.secret, &v.public_key, &v.jwks) {
            (Alg::Hs256 | Alg::Hs384 | Alg::Hs512, Some(secret), None, None) => {
                let hmac = match alg {
                    Alg::Hs384 => ring::hmac::HMAC_SHA384,
                    Alg::Hs512 => ring::hmac::HMAC_SHA512,
                    _ => ring::hmac::HMAC_SHA256,
                };
                if secret.expose().len() < alg.min_secret_len() {
                    return Err(CoreError::key("secret too short"));
                }
                keys.push(KeyEntry {
                    kid: None,
                    key: Key::Hmac(ring::hmac::Key::new(hmac, secret.expose().as_bytes())),
                    until_ms: None,
                });
            }
            (Alg::Hs256 | Alg::Hs384 | Alg::Hs512, ..) => {
                return Err(CoreError::field("an HMAC verifier takes a secret only"));
            }
            (_, None, Some(pem), None) => {
                let key = model::public_key_pem(pem)?;
                keys.push(KeyEntry {
                    kid: None,
                    key: ring_key(alg, &key)?,
                    until_ms: None,
                });
            }
            (_, None, None, Some(set)) => {
                let list = set
                    .get("keys")
                    .and_then(serde_json::Value::as_array)
                    .ok_or_else(|| CoreError::field("expected a JWK set"))?;
                for k in list {
                    let jwk =
                        model::jwk(k).map_err(|(m, e)| CoreError::key(format!("{m}: {e}")))?;
                    keys.push(KeyEntry {
                        kid: jwk.kid.map(Into::into),
                        key: ring_key(alg, &jwk.key)?,
                        until_ms: None,
                    });
                }
            }
            _ => {
                return Err(CoreError::field(
                    "expected exactly one key source of the algorithm's kind",
                ));
            }
        }
        if keys.is_empty() {
            return Err(CoreError::new(CoreErrorKind::NoKey, "no key"));
        }
        Ok(Self {
            alg,
            keys: keys.into_boxed_slice(),
            issuer: cfg.issuer.as_deref().map(Into::into),
            audience: cfg.audience.as_deref().map(Into::into),
            leeway_ms: i64::try_from(cfg.leeway_s.min(300) * 1000).unwrap_or(30_000),
            subject_claim: cfg.subject_claim.as_str().into(),
        })
    }

    /// The verifier of the tokens the gateway issues (`oauth` consumers): ES256 with the
    /// cluster's token keys (each selected by its `kid`, a retiring one until its time), issuer
    /// [`TOKEN_ISSUER`], the API's id as audience, the subscription's id as subject.
    ///
    /// # Errors
    /// A [`CoreError`]: a key that is not an ES256 key, or no key at all.
    pub fn for_token_keys(keys: &TokenKeys, audience: &str) -> Result<Self, CoreError> {
        let mut out = Vec::new();
        for k in &keys.public {
            out.push(KeyEntry {
                kid: Some(k.kid.as_str().into()),
                key: ring_key(Alg::Es256, &k.key)?,
                until_ms: k.retire_at_ms,
            });
        }
        if out.is_empty() {
            return Err(CoreError::new(CoreErrorKind::NoKey, "no token key"));
        }
        Ok(Self {
            alg: Alg::Es256,
            keys: out.into_boxed_slice(),
            issuer: Some(TOKEN_ISSUER.into()),
            audience: Some(audience.into()),
            leeway_ms: TOKEN_LEEWAY_MS,
            subject_claim: "sub".into(),
        })
    }

    /// The algorithm this verifier accepts.
    #[must_use]
    pub fn alg(&self) -> Alg {
        self.alg
    }

    fn key_for(&self, kid: Option<&str>, now_ms: i64) -> Result<&Key, TokenRejection> {
        let entry = match (kid, &*self.keys) {
            (_, [only]) if only.kid.is_none() => Ok(only),
            (Some(kid), keys) => keys
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .ok_or(TokenRejection::UnknownKey),
            (None, [only]) => Ok(only),
            (None, _) => Err(TokenRejection::UnknownKey),
        }?;
        if entry.until_ms.is_some_and(|t| now_ms >= t) {
            return Err(TokenRejection::UnknownKey);
        }
        Ok(&entry.key)
    }

    /// Checks steps 1–4 of the module docs on `token` at `now_ms`.
    ///
    /// # Errors
    /// The first check that fails.
    pub fn verify(&self, token: &[u8], now_ms: i64) -> Result<Verified, TokenRejection> {
        let mut parts = token.split(|b| *b == b'.');
        let (Some(h64), Some(p64), Some(s64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenRejection::Malformed);
        };
        let decode = |part: &[u8]| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| TokenRejection::Malformed)
        };
        let header_bytes = decode(h64)?;
        let header: Header<'_> =
            serde_json::from_slice(&header_bytes).map_err(|_| TokenRejection::Malformed)?;
        if header.crit.is_some() {
            return Err(TokenRejection::Malformed);
        }
        if header.alg != self.alg.name() {
            return Err(TokenRejection::Algorithm);
        }
        let key = self.key_for(header.kid.as_deref(), now_ms)?;
        let sig = decode(s64)?;
        let signed = token
            .get(..h64.len() + 1 + p64.len())
            .ok_or(TokenRejection::Malformed)?;
        let ok = match key {
            Key::Hmac(k) => ring::hmac::verify(k, signed, &sig).is_ok(),
            Key::Rsa(k) => match rsa_params(self.alg) {
                Some(params) => k.verify(params, signed, &sig).is_ok(),
                None => false,
            },
            Key::Unparsed(k) => k.verify(signed, &sig).is_ok(),
        };
        if !ok {
            return Err(TokenRejection::Signature);
        }
        let payload = decode(p64)?;
        let claims: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&payload).map_err(|_| TokenRejection::Malformed)?;
        let exp = date_ms(&claims, "exp")?.ok_or(TokenRejection::Malformed)?;
        let nbf = date_ms(&claims, "nbf")?;
        let iat = date_ms(&claims, "iat")?;
        let valid_until_ms = exp.saturating_add(self.leeway_ms);
        if now_ms >= valid_until_ms {
            return Err(TokenRejection::Expired);
        }
        let horizon = now_ms.saturating_add(self.leeway_ms);
        if nbf.is_some_and(|t| t > horizon) || iat.is_some_and(|t| t > horizon) {
            return Err(TokenRejection::NotYetValid);
        }
        if let Some(issuer) = &self.issuer {
            if claims.get("iss").and_then(serde_json::Value::as_str) != Some(&**issuer) {
                return Err(TokenRejection::Issuer);
            }
        }
        if let Some(audience) = &self.audience {
            let ok = match claims.get("aud") {
                Some(serde_json::Value::String(a)) => a == &**audience,
                Some(serde_json::Value::Array(list)) => {
                    list.iter().any(|a| a.as_str() == Some(&**audience))
                }
                _ => false,
            };
            if !ok {
                return Err(TokenRejection::Audience);
            }
        }
        let subject = match claims.get(&*self.subject_claim) {
            Some(serde_json::Value::String(s)) => s.clone(),
            _ => return Err(TokenRejection::UnknownSubject),
        };
        Ok(Verified {
            subject,
            valid_until_ms,
        })
    }
}

/// The token endpoint (RFC 6749 §4.4) on every host of an API with an `oauth` consumer.
pub const TOKEN_PATH: &str = "/.well-known/otoroshi/oauth/token";

/// The JWK set of the cluster's token keys.
pub const JWKS_PATH: &str = "/.well-known/otoroshi/oauth/jwks.json";

/// Token introspection (RFC 7662).
pub const INTROSPECT_PATH: &str = "/.well-known/otoroshi/oauth/token/introspect";

/// The `iss` of the access tokens the gateway issues.
pub const TOKEN_ISSUER: &str = "tollgate";

/// Clock skew tolerated between the node that issued an access token and the one verifying it.
pub const TOKEN_LEEWAY_MS: i64 = 5_000;

/// One of the cluster's token keys, public part.
#[derive(Debug, Clone)]
pub struct TokenPublicKey {
    /// Its `kid` (the certificate entity's id).
    pub kid: String,
    /// The key.
    pub key: PublicKey,
    /// A retiring key verifies until then (ms since the epoch), and signs no more.
    pub retire_at_ms: Option<i64>,
}

/// The key the node signs access tokens with.
#[derive(Debug)]
pub struct TokenSigner {
    /// Its `kid`.
    pub kid: String,
    /// The ES256 key pair.
    pub pair: signature::EcdsaKeyPair,
}

/// The cluster's token keys, from the snapshot's certificates (`tollgate.token_key`).
#[derive(Debug, Default)]
pub struct TokenKeys {
    /// The current key (none until an `oauth` consumer made one).
    pub signer: Option<TokenSigner>,
    /// Every key that still verifies (the current one and those retiring).
    pub public: Vec<TokenPublicKey>,
}

/// What the cache answers for a token it remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedToken {
    /// The snapshot generation it was verified in.
    pub generation: u64,
    /// The consumer (directory index) that verified it.
    pub consumer: u32,
    /// The subscription (directory index) its subject names.
    pub subscription: u32,
    /// `exp` plus the leeway, ms.
    pub valid_until_ms: i64,
}

#[derive(Debug)]
struct Slot {
    token: Box<[u8]>,
    entry: CachedToken,
}

/// The per-core cache of verified tokens (module docs). Plain data: one per core, no lock.
///
/// Keyed by a 64-bit hash of the token; a hit compares the whole token with the one remembered,
/// in constant time, so two tokens of the same hash never share an answer. (A SHA-256 key
/// would cost about a microsecond per hit on a 700-byte token; this costs a third of it.)
#[derive(Debug, Default)]
pub struct TokenCache {
    map: FxHashMap<u64, Slot>,
}

impl TokenCache {
    /// The most tokens one core remembers.
    pub const CAPACITY: usize = 4096;

    /// The longest token remembered (a longer one is verified on every call): with
    /// [`TokenCache::CAPACITY`], at most 16 MiB per core.
    pub const MAX_TOKEN: usize = 4096;

    /// An empty cache.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn key(token: &[u8]) -> u64 {
        use std::hash::{Hash as _, Hasher as _};
        let mut h = rustc_hash::FxHasher::default();
        token.hash(&mut h);
        h.finish()
    }

    /// The entry for `token`, if it was verified in `generation` and is still valid at
    /// `now_ms`; a stale entry is dropped.
    pub fn get(&mut self, token: &[u8], generation: u64, now_ms: i64) -> Option<CachedToken> {
        let key = Self::key(token);
        let slot = self.map.get(&key)?;
        if !crate::apikey::ct::eq(&slot.token, token) {
            return None;
        }
        let hit = slot.entry;
        if hit.generation == generation && now_ms < hit.valid_until_ms {
            return Some(hit);
        }
        self.map.remove(&key);
        None
    }

    /// Remembers a verified token. When the cache is full, entries of older generations and
    /// expired ones go first; if none did, the cache starts over (bounded, never blocking).
    pub fn insert(&mut self, token: &[u8], entry: CachedToken, now_ms: i64) {
        if token.len() > Self::MAX_TOKEN {
            return;
        }
        if self.map.len() >= Self::CAPACITY {
            self.map.retain(|_, s| {
                s.entry.generation == entry.generation && now_ms < s.entry.valid_until_ms
            });
            if self.map.len() >= Self::CAPACITY {
                self.map.clear();
            }
        }
        self.map.insert(
            Self::key(token),
            Slot {
                token: token.into(),
                entry,
            },
        );
    }

    /// How many tokens are remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no token is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests;
