//! JSON Web Signature algorithms and public keys as consumer configs name them (RFC 7515,
//! RFC 7517 JWK, RFC 7518 algorithms, RFC 8037 Ed25519): parsed and checked here, once, at every
//! entry (admin API, import, seed). The request path verifies signatures with ring
//! (`gateway_core::jose`); nothing here does cryptography beyond reading key encodings.
//!
//! Keys are public keys only: a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) or `CERTIFICATE` (its
//! key), or a JWK set of `RSA`, `EC` (P-256, P-384) and `OKP` (Ed25519) keys. A JWK with a
//! private member (`d`, `p`, `q`, …) or a symmetric (`oct`) key is refused: an HMAC secret is a
//! `secret`, sealed in the entity log, never a JWK published by copy-paste.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::pki_types::pem::SectionKind;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey as ParsedKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// A JWS algorithm Tollgate verifies (DESIGN §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// HMAC SHA-256.
    Hs256,
    /// HMAC SHA-384.
    Hs384,
    /// HMAC SHA-512.
    Hs512,
    /// RSASSA-PKCS1-v1_5 SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 SHA-512.
    Rs512,
    /// RSASSA-PSS SHA-256.
    Ps256,
    /// RSASSA-PSS SHA-384.
    Ps384,
    /// RSASSA-PSS SHA-512.
    Ps512,
    /// ECDSA P-256 SHA-256.
    Es256,
    /// ECDSA P-384 SHA-384.
    Es384,
    /// Ed25519 (RFC 8037).
    EdDsa,
}

/// Every algorithm, in [`Alg::name`] order of the docs.
pub const ALGS: [Alg; 12] = [
    Alg::Hs256,
    Alg::Hs384,
    Alg::Hs512,
    Alg::Rs256,
    Alg::Rs384,
    Alg::Rs512,
    Alg::Ps256,
    Alg::Ps384,
    Alg::Ps512,
    Alg::Es256,
    Alg::Es384,
    Alg::EdDsa,
];

/// The kind of key an algorithm takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// A shared secret.
    Hmac,
    /// An RSA public key (2048 to 8192 bits).
    Rsa,
    /// An ECDSA P-256 public key.
    P256,
    /// An ECDSA P-384 public key.
    P384,
    /// An Ed25519 public key.
    Ed25519,
}

impl Family {
    /// In words, for messages.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            Self::Hmac => "an HMAC secret",
            Self::Rsa => "an RSA key",
            Self::P256 => "an EC P-256 key",
            Self::P384 => "an EC P-384 key",
            Self::Ed25519 => "an Ed25519 key",
        }
    }
}

impl Alg {
    /// The `alg` header value.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Hs384 => "HS384",
            Self::Hs512 => "HS512",
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::EdDsa => "EdDSA",
        }
    }

    /// The algorithm named `name` (exact, case-sensitive as RFC 7518 registers them).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        ALGS.into_iter().find(|a| a.name() == name)
    }

    /// The kind of key it takes.
    #[must_use]
    pub fn family(self) -> Family {
        match self {
            Self::Hs256 | Self::Hs384 | Self::Hs512 => Family::Hmac,
            Self::Rs256 | Self::Rs384 | Self::Rs512 | Self::Ps256 | Self::Ps384 | Self::Ps512 => {
                Family::Rsa
            }
            Self::Es256 => Family::P256,
            Self::Es384 => Family::P384,
            Self::EdDsa => Family::Ed25519,
        }
    }

    /// The shortest HMAC secret RFC 7518 §3.2 allows: the hash's output size, in bytes.
    #[must_use]
    pub fn min_secret_len(self) -> usize {
        match self {
            Self::Hs384 => 48,
            Self::Hs512 => 64,
            _ => 32,
        }
    }
}

/// A public key, as the bytes the verifier needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA: modulus and exponent, big-endian without leading zeros.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// ECDSA P-256: the uncompressed point (`04 ‖ x ‖ y`, 65 bytes).
    P256(Vec<u8>),
    /// ECDSA P-384: the uncompressed point (97 bytes).
    P384(Vec<u8>),
    /// Ed25519: the 32-byte key.
    Ed25519(Vec<u8>),
}

impl PublicKey {
    /// The kind of key.
    #[must_use]
    pub fn family(&self) -> Family {
        match self {
            Self::Rsa { .. } => Family::Rsa,
            Self::P256(_) => Family::P256,
            Self::P384(_) => Family::P384,
            Self::Ed25519(_) => Family::Ed25519,
        }
    }

    /// This key as a JWK's key members (`kty` and its parameters), for a JWK set.
    #[must_use]
    pub fn jwk_members(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = serde_json::Map::new();
        let mut put = |k: &str, v: String| {
            out.insert(k.to_owned(), serde_json::Value::String(v));
        };
        match self {
            Self::Rsa { n, e } => {
                put("kty", "RSA".into());
                put("n", URL_SAFE_NO_PAD.encode(n));
                put("e", URL_SAFE_NO_PAD.encode(e));
            }
            Self::P256(point) | Self::P384(point) => {
                let (crv, size) = match self {
                    Self::P256(_) => ("P-256", 32),
                    _ => ("P-384", 48),
                };
                put("kty", "EC".into());
                put("crv", crv.into());
                let coords = point.get(1..).unwrap_or_default();
                put(
                    "x",
                    URL_SAFE_NO_PAD.encode(coords.get(..size).unwrap_or_default()),
                );
                put(
                    "y",
                    URL_SAFE_NO_PAD.encode(coords.get(size..).unwrap_or_default()),
                );
            }
            Self::Ed25519(x) => {
                put("kty", "OKP".into());
                put("crv", "Ed25519".into());
                put("x", URL_SAFE_NO_PAD.encode(x));
            }
        }
        out
    }
}

/// A key of a JWK set: its `kid` (if any) and the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    /// Key id.
    pub kid: Option<String>,
    /// The `alg` member, when the JWK names its algorithm.
    pub alg: Option<String>,
    /// The key.
    pub key: PublicKey,
}

/// What kind of problem a [`KeyError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyErrorKind {
    /// The text or bytes are not a key encoding we read (bad PEM, bad DER, no key section,
    /// a PKCS#1 `RSA PUBLIC KEY`).
    Malformed,
    /// A key of an algorithm or curve Tollgate does not verify with.
    Unsupported,
    /// An RSA key outside 2048 to 8192 bits, or with an invalid public exponent.
    Weak,
    /// A private key where a public key belongs.
    Private,
}

impl KeyErrorKind {
    /// Lowercase name for logs and JSON.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::Unsupported => "unsupported",
            Self::Weak => "weak",
            Self::Private => "private",
        }
    }
}

impl std::fmt::Display for KeyErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a public key was refused: a kind callers can match, and what is wrong in words (shown
/// as it is by `gateway check`, the admin API and logs; it never quotes key material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct KeyError {
    /// What kind of problem.
    pub kind: KeyErrorKind,
    /// What is wrong, in words.
    pub message: String,
}

impl KeyError {
    fn new(kind: KeyErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    fn malformed(message: impl Into<String>) -> Self {
        Self::new(KeyErrorKind::Malformed, message)
    }

    fn unsupported(message: impl Into<String>) -> Self {
        Self::new(KeyErrorKind::Unsupported, message)
    }
}

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_ED25519: &str = "1.3.101.112";

fn strip_zeros(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default().to_vec()
}

/// Checks an RSA key's size (2048 to 8192 bits, what ring verifies) and exponent.
fn rsa(n: &[u8], e: &[u8]) -> Result<PublicKey, KeyError> {
    let n = strip_zeros(n);
    let e = strip_zeros(e);
    let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
    if !(2048..=8192).contains(&bits) {
        return Err(KeyError::new(
            KeyErrorKind::Weak,
            format!("an RSA key of {bits} bits: 2048 to 8192 bits are accepted"),
        ));
    }
    if e.is_empty() || e.len() > 4 || e.last().is_some_and(|b| b & 1 == 0) {
        return Err(KeyError::new(
            KeyErrorKind::Weak,
            "an RSA key with an invalid public exponent",
        ));
    }
    Ok(PublicKey::Rsa { n, e })
}

fn ec(curve: Family, point: &[u8]) -> Result<PublicKey, KeyError> {
    let len = if curve == Family::P256 { 65 } else { 97 };
    if point.len() != len || point.first() != Some(&4) {
        return Err(KeyError::malformed(format!(
            "{}: expected an uncompressed point of {len} bytes",
            curve.describe()
        )));
    }
    Ok(if curve == Family::P256 {
        PublicKey::P256(point.to_vec())
    } else {
        PublicKey::P384(point.to_vec())
    })
}

/// The public key of a DER SubjectPublicKeyInfo.
///
/// # Errors
/// A [`KeyError`]: an unsupported algorithm or curve, a bad encoding, a weak RSA key.
pub fn spki(der: &[u8]) -> Result<PublicKey, KeyError> {
    let (rest, info) = SubjectPublicKeyInfo::from_der(der)
        .map_err(|_| KeyError::malformed("not a DER SubjectPublicKeyInfo"))?;
    if !rest.is_empty() {
        return Err(KeyError::malformed("trailing bytes after the public key"));
    }
    let oid = info.algorithm.algorithm.to_id_string();
    match oid.as_str() {
        OID_RSA => match info.parsed() {
            Ok(ParsedKey::RSA(k)) => rsa(k.modulus, k.exponent),
            _ => Err(KeyError::malformed("an RSA key that does not parse")),
        },
        OID_EC => {
            let curve = info
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            let family = match curve.as_deref() {
                Some(OID_P256) => Family::P256,
                Some(OID_P384) => Family::P384,
                _ => {
                    return Err(KeyError::unsupported(
                        "an EC key on a curve other than P-256 or P-384",
                    ));
                }
            };
            ec(family, &info.subject_public_key.data)
        }
        OID_ED25519 => {
            let x = &info.subject_public_key.data;
            if x.len() == 32 {
                Ok(PublicKey::Ed25519(x.to_vec()))
            } else {
                Err(KeyError::malformed("an Ed25519 key that is not 32 bytes"))
            }
        }
        other => Err(KeyError::unsupported(format!(
            "a key of algorithm {other}: RSA, EC P-256/P-384 and Ed25519 are accepted"
        ))),
    }
}

/// The public key of a PEM `PUBLIC KEY` (SubjectPublicKeyInfo), or of the first
/// `CERTIFICATE`'s subject. A private key in the text is refused (it does not belong in a
/// verifier's config).
///
/// # Errors
/// A [`KeyError`]: a private key, no key section, or what [`spki`] refuses.
pub fn public_key_pem(pem: &str) -> Result<PublicKey, KeyError> {
    let sections =
        crate::x509::pem_sections(pem).map_err(|e| KeyError::malformed(e.to_string()))?;
    let mut found = None;
    for (kind, der) in sections {
        match kind {
            SectionKind::RsaPrivateKey | SectionKind::PrivateKey | SectionKind::EcPrivateKey => {
                return Err(KeyError::new(
                    KeyErrorKind::Private,
                    "a private key: a verifier takes the public key only (PUBLIC KEY)",
                ));
            }
            SectionKind::PublicKey if found.is_none() => found = Some(spki(&der)?),
            SectionKind::Certificate if found.is_none() => {
                let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&der)
                    .map_err(|_| KeyError::malformed("a certificate that does not parse"))?;
                found = Some(spki(cert.public_key().raw)?);
            }
            _ => {}
        }
    }
    if pem.contains("-----BEGIN RSA PUBLIC KEY-----") && found.is_none() {
        return Err(KeyError::malformed(
            "a PKCS#1 `RSA PUBLIC KEY`: give it as a `PUBLIC KEY` (openssl rsa \
             -RSAPublicKey_in -pubout)",
        ));
    }
    found.ok_or_else(|| KeyError::malformed("no `PUBLIC KEY` or `CERTIFICATE` section"))
}

/// Attaches a JWK member's name to a message.
fn at<E: ToString>(member: &'static str) -> impl Fn(E) -> (String, String) {
    move |e| (member.to_owned(), e.to_string())
}

fn b64(value: Option<&serde_json::Value>, member: &str) -> Result<Vec<u8>, KeyError> {
    let text = value
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| KeyError::malformed(format!("{member}: expected a base64url string")))?;
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| KeyError::malformed(format!("{member}: not base64url")))
}

/// Members that only a private or symmetric JWK has.
const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "k"];

/// Reads one JWK (RFC 7517): `kty` `RSA` (`n`, `e`), `EC` (`crv` P-256 or P-384, `x`, `y`) or
/// `OKP` (`crv` Ed25519, `x`); `use`, when present, must be `sig`. Errors are `(member, what)`.
///
/// # Errors
/// The member at fault and what is wrong.
pub fn jwk(value: &serde_json::Value) -> Result<Jwk, (String, String)> {
    let Some(obj) = value.as_object() else {
        return Err((String::new(), "expected a JWK object".to_owned()));
    };
    for m in PRIVATE_MEMBERS {
        if obj.contains_key(m) {
            return Err((
                m.to_owned(),
                "a private or symmetric key member: a JWK set here holds public keys only \
                 (an HMAC secret goes in `secret`)"
                    .to_owned(),
            ));
        }
    }
    if let Some(u) = obj.get("use") {
        if u.as_str() != Some("sig") {
            return Err(("use".to_owned(), "expected \"sig\"".to_owned()));
        }
    }
    let kid = match obj.get("kid") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => return Err(("kid".to_owned(), "expected a non-empty string".to_owned())),
    };
    let alg = match obj.get("alg") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(("alg".to_owned(), "expected a string".to_owned())),
    };
    let kty = obj.get("kty").and_then(serde_json::Value::as_str);
    let crv = obj.get("crv").and_then(serde_json::Value::as_str);
    let key = match (kty, crv) {
        (Some("RSA"), _) => {
            let n = b64(obj.get("n"), "n").map_err(at("n"))?;
            let e = b64(obj.get("e"), "e").map_err(at("e"))?;
            rsa(&n, &e).map_err(at("n"))?
        }
        (Some("EC"), Some(c @ ("P-256" | "P-384"))) => {
            let (family, size) = if c == "P-256" {
                (Family::P256, 32)
            } else {
                (Family::P384, 48)
            };
            let x = b64(obj.get("x"), "x").map_err(at("x"))?;
            let y = b64(obj.get("y"), "y").map_err(at("y"))?;
            if x.len() != size || y.len() != size {
                return Err(("x".to_owned(), format!("expected {size}-byte coordinates")));
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            ec(family, &point).map_err(at("x"))?
        }
        (Some("EC"), _) => {
            return Err((
                "crv".to_owned(),
                "expected \"P-256\" or \"P-384\"".to_owned(),
            ));
        }
        (Some("OKP"), Some("Ed25519")) => {
            let x = b64(obj.get("x"), "x").map_err(at("x"))?;
            if x.len() != 32 {
                return Err(("x".to_owned(), "expected a 32-byte Ed25519 key".to_owned()));
            }
            PublicKey::Ed25519(x)
        }
        (Some("OKP"), _) => return Err(("crv".to_owned(), "expected \"Ed25519\"".to_owned())),
        (Some("oct"), _) => {
            return Err((
                "kty".to_owned(),
                "a symmetric key: an HMAC secret goes in `secret`".to_owned(),
            ));
        }
        _ => {
            return Err((
                "kty".to_owned(),
                "expected \"RSA\", \"EC\" or \"OKP\"".to_owned(),
            ));
        }
    };
    Ok(Jwk { kid, alg, key })
}

#[cfg(test)]
mod tests;
