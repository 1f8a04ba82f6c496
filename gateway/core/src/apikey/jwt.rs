//! JWTs as API keys: HS256, HS384 and HS512 tokens signed with the key's secret (or, beyond
//! Otoroshi, its next secret during a rotation grace period).
//!
//! Verification order: the header's `alg` must be HS256/384/512 (`none`, RS*, ES* and anything
//! else are refused; a `crit` header is refused as not understood); the claims are decoded only to
//! find the client id (`clientId`, `client_id`, `cid`, `iss`, the first present) and look the key
//! up; the signature is then checked in constant time (`hmac`'s `verify_slice`) against the secret
//! and the next secret; only then are `exp`, `nbf` and `iat` trusted and checked, with the route's
//! leeway. Otoroshi's optional `xsrfToken`, `aud` prefix and request-attribute checks are not
//! implemented.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde::de::IgnoredAny;
use sha2::{Sha256, Sha384, Sha512};

use super::config::JwtRules;
use super::rejection::{JwtError, KeyRejection};
use super::store::{KeyEntry, KeyStore};

/// The HMAC algorithms accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HMAC-SHA256.
    Hs256,
    /// HMAC-SHA384.
    Hs384,
    /// HMAC-SHA512.
    Hs512,
}

impl Algorithm {
    /// The `alg` header value.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Hs384 => "HS384",
            Self::Hs512 => "HS512",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "HS256" => Some(Self::Hs256),
            "HS384" => Some(Self::Hs384),
            "HS512" => Some(Self::Hs512),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Claims<'a> {
    #[serde(rename = "clientId", borrow, default)]
    client_id_camel: Option<Text<'a>>,
    #[serde(borrow, default)]
    client_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    cid: Option<Text<'a>>,
    #[serde(borrow, default)]
    iss: Option<Text<'a>>,
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    nbf: Option<f64>,
    #[serde(default)]
    iat: Option<f64>,
}

/// A JSON string borrowed from the decoded claims when it has no escapes (serde's `Cow` impl
/// always copies inside an `Option`, which would allocate on every request).
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Text<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        de.deserialize_str(Visitor(std::marker::PhantomData))
    }
}

/// Verifies `token` and returns its key. `buf` is scratch space for the decoded header and claims.
pub(crate) fn verify<'s>(
    token: &[u8],
    store: &'s KeyStore,
    rules: JwtRules,
    now_ms: i64,
    buf: &mut Vec<u8>,
) -> Result<&'s KeyEntry, KeyRejection> {
    let mut parts = token.split(|&b| b == b'.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed.into());
    };
    let signing_input = token
        .get(..header.len() + 1 + payload.len())
        .ok_or(JwtError::Malformed)?;

    let alg = {
        decode_into(header, buf)?;
        let header: Header<'_> = serde_json::from_slice(buf).map_err(|_| JwtError::Malformed)?;
        if header.crit.is_some() {
            return Err(JwtError::Malformed.into());
        }
        Algorithm::from_name(&header.alg).ok_or(JwtError::Algorithm)?
    };
    if !rules.secret_signed {
        return Err(JwtError::Algorithm.into());
    }

    decode_into(payload, buf)?;
    let claims: Claims<'_> = serde_json::from_slice(buf).map_err(|_| JwtError::Malformed)?;
    let client_id = [
        &claims.client_id_camel,
        &claims.client_id,
        &claims.cid,
        &claims.iss,
    ]
    .into_iter()
    .find_map(|claim| claim.as_ref().map(|text| &*text.0))
    .ok_or(JwtError::NoClientId)?;
    let entry = store
        .get(client_id)
        .filter(|e| !e.is_holder())
        .ok_or(KeyRejection::UnknownKey)?;

    // The largest tag (HS512) is 64 bytes; base64 needs a little slack to decode into a slice.
    let mut sig = [0u8; 72];
    let n = URL_SAFE_NO_PAD
        .decode_slice(signature, &mut sig)
        .map_err(|_| JwtError::Signature)?;
    let sig = sig.get(..n).ok_or(JwtError::Signature)?;
    if !entry
        .secrets()
        .any(|secret| mac_matches(alg, secret, signing_input, sig))
    {
        return Err(JwtError::Signature.into());
    }

    // Signed by the key: the time claims can be trusted now.
    check_times(&claims, rules, now_ms)?;
    Ok(entry)
}

#[allow(clippy::cast_precision_loss)] // ms timestamps are far below 2^53
fn check_times(claims: &Claims<'_>, rules: JwtRules, now_ms: i64) -> Result<(), JwtError> {
    let now = now_ms as f64;
    let leeway = rules.leeway_ms as f64;
    if let Some(exp) = claims.exp {
        if now >= exp * 1000.0 + leeway {
            return Err(JwtError::Expired);
        }
    }
    if let Some(nbf) = claims.nbf {
        if now + leeway < nbf * 1000.0 {
            return Err(JwtError::NotYetValid);
        }
    }
    if let Some(iat) = claims.iat {
        if iat * 1000.0 > now + leeway {
            return Err(JwtError::IssuedInFuture);
        }
    }
    if let Some(max) = rules.max_lifespan_ms {
        match (claims.exp, claims.iat) {
            (Some(exp), Some(iat)) if (exp - iat) * 1000.0 <= max as f64 => {}
            _ => return Err(JwtError::Lifespan),
        }
    }
    Ok(())
}

fn decode_into(part: &[u8], buf: &mut Vec<u8>) -> Result<(), JwtError> {
    buf.clear();
    URL_SAFE_NO_PAD
        .decode_vec(part, buf)
        .map_err(|_| JwtError::Malformed)
}

/// Constant-time check of `sig` (hmac's `verify_slice`: the whole tag, no truncation).
fn mac_matches(alg: Algorithm, key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    fn check<M: Mac + KeyInit>(key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
        let Ok(mut mac) = <M as Mac>::new_from_slice(key) else {
            return false;
        };
        mac.update(msg);
        mac.verify_slice(sig).is_ok()
    }
    match alg {
        Algorithm::Hs256 => check::<Hmac<Sha256>>(key, msg, sig),
        Algorithm::Hs384 => check::<Hmac<Sha384>>(key, msg, sig),
        Algorithm::Hs512 => check::<Hmac<Sha512>>(key, msg, sig),
    }
}

fn mac_bytes(alg: Algorithm, key: &[u8], msg: &[u8]) -> Vec<u8> {
    fn compute<M: Mac + KeyInit>(key: &[u8], msg: &[u8]) -> Vec<u8> {
        let Ok(mut mac) = <M as Mac>::new_from_slice(key) else {
            return Vec::new();
        };
        mac.update(msg);
        mac.finalize().into_bytes().to_vec()
    }
    match alg {
        Algorithm::Hs256 => compute::<Hmac<Sha256>>(key, msg),
        Algorithm::Hs384 => compute::<Hmac<Sha384>>(key, msg),
        Algorithm::Hs512 => compute::<Hmac<Sha512>>(key, msg),
    }
}

/// Signs `claims` into a compact JWT (`{"alg": …, "typ": "JWT"}` header). For tools, demos and
/// tests (the quickstart prints one); not used on the request path. The result is a credential:
/// never log it.
#[must_use]
pub fn sign(alg: Algorithm, claims: &serde_json::Value, secret: &[u8]) -> String {
    let header = format!(r#"{{"alg":"{}","typ":"JWT"}}"#, alg.name());
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(claims.to_string(), &mut token);
    let mac = mac_bytes(alg, secret, token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(mac, &mut token);
    token
}

#[cfg(test)]
pub(crate) fn signature_valid(token: &str, secret: &[u8]) -> bool {
    let mut parts = token.rsplitn(2, '.');
    let (Some(sig), Some(input)) = (parts.next(), parts.next()) else {
        return false;
    };
    let Ok(sig) = URL_SAFE_NO_PAD.decode(sig) else {
        return false;
    };
    mac_matches(Algorithm::Hs256, secret, input.as_bytes(), &sig)
}
