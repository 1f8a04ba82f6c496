use base64::engine::general_purpose::STANDARD;
use gateway_model::entity::{JwtVerifierConfig, Secret};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair,
    KeyPair as _, RSA_PKCS1_SHA256, RSA_PSS_SHA256, RsaKeyPair,
};
use serde_json::{Value, json};

use super::*;

const NOW: i64 = 1_800_000_000_000;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A signer of test tokens.
enum Signer {
    Hmac(ring::hmac::Key),
    Rsa(RsaKeyPair, &'static dyn ring::signature::RsaEncoding),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl Signer {
    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig = match self {
            Self::Hmac(k) => ring::hmac::sign(k, input.as_bytes()).as_ref().to_vec(),
            Self::Rsa(k, enc) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(*enc, &rng, input.as_bytes(), &mut sig).unwrap();
                sig
            }
            Self::Ec(k) => k.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            Self::Ed(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&sig))
    }
}

/// An RSA key pair from the openssl CLI (ring does not generate RSA keys); the PKCS#8 DER.
fn rsa_pkcs8() -> Vec<u8> {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl makes the RSA test key");
    let pem = String::from_utf8(out.stdout).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(body).unwrap()
}

fn spki_pem(spki_der: &[u8]) -> String {
    let body = STANDARD.encode(spki_der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

fn config(alg: &str, verifier: Value) -> JwtConsumerConfig {
    let mut v: JwtVerifierConfig = serde_json::from_value(verifier).unwrap();
    v.alg = alg.to_owned();
    JwtConsumerConfig {
        verifier: v,
        issuer: Some("https://idp".into()),
        audience: Some("shop".into()),
        leeway_s: 30,
        subject_claim: "sub".into(),
    }
}

fn claims() -> Value {
    json!({"sub": "alice", "iss": "https://idp", "aud": ["other", "shop"],
           "exp": NOW / 1000 + 600, "iat": NOW / 1000, "nbf": NOW / 1000})
}

fn ec_pair(alg: &'static ring::signature::EcdsaSigningAlgorithm) -> (EcdsaKeyPair, Vec<u8>) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref().to_vec();
    (pair, point)
}

fn jwk_of(key: &PublicKey, kid: &str) -> Value {
    let mut m = key.jwk_members();
    m.insert("kid".into(), json!(kid));
    Value::Object(m)
}

/// Every algorithm family verifies a token it signed, and refuses the same token with one
/// byte of the signature changed.
#[test]
fn every_algorithm_verifies_its_tokens() {
    let rng = SystemRandom::new();
    let secret = "s".repeat(64);
    let rsa = rsa_pkcs8();
    let rsa_pair = RsaKeyPair::from_pkcs8(&rsa).unwrap();
    let parts = RsaPublicKeyComponents::<Vec<u8>>::from(rsa_pair.public());
    let rsa_pub = PublicKey::Rsa {
        n: parts.n.iter().copied().skip_while(|b| *b == 0).collect(),
        e: parts.e.iter().copied().skip_while(|b| *b == 0).collect(),
    };
    let (p256, p256_point) = ec_pair(&ECDSA_P256_SHA256_FIXED_SIGNING);
    let (p384, p384_point) = ec_pair(&ECDSA_P384_SHA384_FIXED_SIGNING);
    let ed_pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let ed = Ed25519KeyPair::from_pkcs8(ed_pkcs8.as_ref()).unwrap();
    let ed_pub = PublicKey::Ed25519(ed.public_key().as_ref().to_vec());
    let cases: Vec<(&str, Signer, Value)> = vec![
        (
            "HS256",
            Signer::Hmac(ring::hmac::Key::new(
                ring::hmac::HMAC_SHA256,
                secret.as_bytes(),
            )),
            json!({"alg": "", "secret": secret}),
        ),
        (
            "HS512",
            Signer::Hmac(ring::hmac::Key::new(
                ring::hmac::HMAC_SHA512,
                secret.as_bytes(),
            )),
            json!({"alg": "", "secret": secret}),
        ),
        (
            "RS256",
            Signer::Rsa(RsaKeyPair::from_pkcs8(&rsa).unwrap(), &RSA_PKCS1_SHA256),
            json!({"alg": "", "jwks": {"keys": [jwk_of(&rsa_pub, "r1")]}}),
        ),
        (
            "PS256",
            Signer::Rsa(RsaKeyPair::from_pkcs8(&rsa).unwrap(), &RSA_PSS_SHA256),
            json!({"alg": "", "jwks": {"keys": [jwk_of(&rsa_pub, "r1")]}}),
        ),
        (
            "ES256",
            Signer::Ec(p256),
            json!({"alg": "", "jwks": {"keys": [jwk_of(&PublicKey::P256(p256_point), "e1")]}}),
        ),
        (
            "ES384",
            Signer::Ec(p384),
            json!({"alg": "", "jwks": {"keys": [jwk_of(&PublicKey::P384(p384_point), "e2")]}}),
        ),
        (
            "EdDSA",
            Signer::Ed(ed),
            json!({"alg": "", "jwks": {"keys": [jwk_of(&ed_pub, "d1")]}}),
        ),
    ];
    for (alg, signer, verifier) in cases {
        let v = Verifier::new(&config(alg, verifier)).unwrap_or_else(|e| panic!("{alg}: {e}"));
        let kid = match alg {
            "RS256" | "PS256" => "r1",
            "ES256" => "e1",
            "ES384" => "e2",
            _ => "d1",
        };
        let token = signer.sign(&json!({"alg": alg, "typ": "JWT", "kid": kid}), &claims());
        let ok = v
            .verify(token.as_bytes(), NOW)
            .unwrap_or_else(|e| panic!("{alg}: {e:?}"));
        assert_eq!(ok.subject, "alice");
        assert_eq!(ok.valid_until_ms, NOW + 600_000 + 30_000);
        let mut bad = token.into_bytes();
        let last = bad.len() - 2;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            v.verify(&bad, NOW).unwrap_err(),
            TokenRejection::Signature,
            "{alg}"
        );
    }
}

/// `alg: none`, an HMAC token "signed" with the RSA public key (algorithm confusion), a `crit`
/// header, an unknown `kid` and garbage are refused before any claim is trusted.
#[test]
fn none_confusion_and_garbage_are_refused() {
    let rsa = rsa_pkcs8();
    let pair = RsaKeyPair::from_pkcs8(&rsa).unwrap();
    let pem = spki_pem(&{
        // SubjectPublicKeyInfo from openssl, so the PEM is exactly what an operator pastes.
        let out = std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-outform", "DER"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                let pkcs8 = format!(
                    "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                    STANDARD.encode(&rsa)
                );
                child.stdin.take().unwrap().write_all(pkcs8.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        out.stdout
    });
    let v = Verifier::new(&config("RS256", json!({"alg": "", "public_key": pem}))).unwrap();
    let good = Signer::Rsa(pair, &RSA_PKCS1_SHA256).sign(&json!({"alg": "RS256"}), &claims());
    assert!(v.verify(good.as_bytes(), NOW).is_ok());
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(claims().to_string().as_bytes())
    );
    assert_eq!(
        v.verify(none.as_bytes(), NOW),
        Err(TokenRejection::Algorithm)
    );
    let confused = Signer::Hmac(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        pem.as_bytes(),
    ))
    .sign(&json!({"alg": "HS256"}), &claims());
    assert_eq!(
        v.verify(confused.as_bytes(), NOW),
        Err(TokenRejection::Algorithm)
    );
    let crit = Signer::Hmac(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"x"))
        .sign(&json!({"alg": "RS256", "crit": ["b64"]}), &claims());
    assert_eq!(
        v.verify(crit.as_bytes(), NOW),
        Err(TokenRejection::Malformed)
    );
    for garbage in ["", "a.b", "a.b.c.d", "!!.!!.!!", "e30.e30.AAAA"] {
        let r = v.verify(garbage.as_bytes(), NOW).unwrap_err();
        assert!(
            matches!(r, TokenRejection::Malformed | TokenRejection::Algorithm),
            "{garbage}: {r:?}"
        );
    }
}

/// Claims are checked after the signature, with the leeway: exp required, nbf/iat in the
/// future refused, iss and aud exact, the subject claim a string.
#[test]
fn claims_are_checked_with_leeway() {
    let secret = "k".repeat(32);
    let v = Verifier::new(&config("HS256", json!({"alg": "", "secret": secret}))).unwrap();
    let signer = Signer::Hmac(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        secret.as_bytes(),
    ));
    let check = |patch: Value| {
        let mut c = claims();
        for (k, val) in patch.as_object().unwrap() {
            if val.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = val.clone();
            }
        }
        v.verify(signer.sign(&json!({"alg": "HS256"}), &c).as_bytes(), NOW)
            .map(|ok| ok.subject)
    };
    let s = NOW / 1000;
    assert_eq!(check(json!({})), Ok("alice".into()));
    assert_eq!(check(json!({"exp": null})), Err(TokenRejection::Malformed));
    assert_eq!(
        check(json!({"exp": "soon"})),
        Err(TokenRejection::Malformed)
    );
    assert_eq!(check(json!({"exp": s - 29})), Ok("alice".into()));
    assert_eq!(check(json!({"exp": s - 30})), Err(TokenRejection::Expired));
    assert_eq!(check(json!({"nbf": s + 30})), Ok("alice".into()));
    assert_eq!(
        check(json!({"nbf": s + 31})),
        Err(TokenRejection::NotYetValid)
    );
    assert_eq!(
        check(json!({"iat": s + 31})),
        Err(TokenRejection::NotYetValid)
    );
    assert_eq!(
        check(json!({"iss": "https://evil"})),
        Err(TokenRejection::Issuer)
    );
    assert_eq!(check(json!({"iss": null})), Err(TokenRejection::Issuer));
    assert_eq!(
        check(json!({"aud": "other"})),
        Err(TokenRejection::Audience)
    );
    assert_eq!(check(json!({"aud": "shop"})), Ok("alice".into()));
    assert_eq!(
        check(json!({"sub": 7})),
        Err(TokenRejection::UnknownSubject)
    );
    // Another secret: the signature, before any claim.
    let other = Signer::Hmac(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"other"));
    let token = other.sign(&json!({"alg": "HS256"}), &json!({"exp": 0}));
    assert_eq!(
        v.verify(token.as_bytes(), NOW),
        Err(TokenRejection::Signature)
    );
}

/// A JWK set selects by `kid`; an unknown kid is refused.
#[test]
fn jwk_sets_select_by_kid() {
    let (a, a_point) = ec_pair(&ECDSA_P256_SHA256_FIXED_SIGNING);
    let (b, b_point) = ec_pair(&ECDSA_P256_SHA256_FIXED_SIGNING);
    let set = json!({"keys": [jwk_of(&PublicKey::P256(a_point), "a"),
                              jwk_of(&PublicKey::P256(b_point), "b")]});
    let v = Verifier::new(&config("ES256", json!({"alg": "", "jwks": set}))).unwrap();
    let (a, b) = (Signer::Ec(a), Signer::Ec(b));
    let tok = |s: &Signer, kid: Option<&str>| {
        let mut h = json!({"alg": "ES256"});
        if let Some(k) = kid {
            h["kid"] = json!(k);
        }
        s.sign(&h, &claims())
    };
    assert!(v.verify(tok(&a, Some("a")).as_bytes(), NOW).is_ok());
    assert!(v.verify(tok(&b, Some("b")).as_bytes(), NOW).is_ok());
    assert_eq!(
        v.verify(tok(&a, Some("b")).as_bytes(), NOW),
        Err(TokenRejection::Signature)
    );
    assert_eq!(
        v.verify(tok(&a, Some("c")).as_bytes(), NOW),
        Err(TokenRejection::UnknownKey)
    );
    assert_eq!(
        v.verify(tok(&a, None).as_bytes(), NOW),
        Err(TokenRejection::UnknownKey)
    );
}

#[test]
fn every_refusal_has_a_distinct_code_per_issue_kind() {
    let all = [
        TokenRejection::Malformed,
        TokenRejection::Signature,
        TokenRejection::Expired,
        TokenRejection::NotYetValid,
        TokenRejection::Issuer,
        TokenRejection::Audience,
        TokenRejection::UnknownSubject,
    ];
    let codes: std::collections::HashSet<_> = all.iter().map(|r| r.code()).collect();
    assert_eq!(codes.len(), all.len());
    assert_eq!(TokenRejection::Algorithm.code(), "token_bad_signature");
    for r in all {
        assert!(
            crate::flow::REJECTION_REASONS.contains(&r.reason()),
            "{r:?}"
        );
    }
}

/// The cache answers within its generation and until `exp` + leeway, and stays bounded.
#[test]
fn the_cache_honours_generation_expiry_and_its_bound() {
    let mut cache = TokenCache::new();
    let d: &[u8] = b"a.b.c";
    let entry = CachedToken {
        generation: 7,
        consumer: 1,
        subscription: 2,
        valid_until_ms: NOW + 1000,
    };
    cache.insert(d, entry, NOW);
    assert_eq!(cache.get(d, 7, NOW), Some(entry));
    assert_eq!(cache.get(b"a.b.d", 7, NOW), None, "another token");
    assert_eq!(cache.get(d, 8, NOW), None, "a new snapshot drops it");
    assert!(cache.is_empty());
    cache.insert(d, entry, NOW);
    assert_eq!(cache.get(d, 7, NOW + 1000), None, "expired");
    for i in 0..(TokenCache::CAPACITY as u32 + 10) {
        cache.insert(&i.to_le_bytes(), entry, NOW);
        assert!(cache.len() <= TokenCache::CAPACITY);
    }
    cache.insert(&vec![b'a'; TokenCache::MAX_TOKEN + 1], entry, NOW);
    assert_eq!(
        cache.get(&vec![b'a'; TokenCache::MAX_TOKEN + 1], 7, NOW),
        None,
        "too long"
    );
}

#[test]
fn secrets_are_not_in_debug_output() {
    let secret = "topsecret".repeat(8);
    let cfg = JwtConsumerConfig {
        verifier: JwtVerifierConfig {
            alg: "HS256".into(),
            secret: Some(Secret::new(secret.clone())),
            public_key: None,
            jwks: None,
        },
        issuer: None,
        audience: None,
        leeway_s: 0,
        subject_claim: "sub".into(),
    };
    let v = Verifier::new(&cfg).unwrap();
    assert!(!format!("{v:?}").contains("topsecret"));
}
