//! `jose/*`: a `jwt` consumer's token checks. `jose/verify_cold_{rs256,es256,eddsa}`: a token
//! seen for the first time (shape, header, signature with ring, claims); `jose/cache_hit`: the
//! same RS256 token again on a core that verified it (a 64-bit hash of the token, a lookup in the
//! per-core cache and a constant-time comparison of the whole token), the target being well
//! under a microsecond.

use std::hint::black_box;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use criterion::Criterion;
use gateway_core::jose::{CachedToken, TokenCache, Verifier};
use gateway_model::entity::JwtConsumerConfig;
use gateway_model::jose::PublicKey;
use ring::rand::SystemRandom;
use ring::signature::{self, KeyPair as _};
use serde_json::json;

const NOW: i64 = 1_800_000_000_000;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn signing_input(alg: &str) -> String {
    let header = json!({"alg": alg, "typ": "JWT", "kid": "k"});
    // A realistic identity provider's claims (~300 bytes).
    let claims = json!({"sub": "acme-client", "iss": "https://idp.example.com/realms/partners",
        "aud": "shop-api", "iat": NOW / 1000, "nbf": NOW / 1000, "exp": NOW / 1000 + 3600,
        "jti": "8c7f0d3e-2b7a-4d55-9f63-0f5a3c9d2e11", "scope": "orders:read orders:write",
        "azp": "acme-portal"});
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

fn verifier(alg: &str, key: &PublicKey) -> Verifier {
    let mut jwk = key.jwk_members();
    jwk.insert("kid".into(), json!("k"));
    let cfg: JwtConsumerConfig = serde_json::from_value(json!({
        "verifier": {"alg": alg, "jwks": {"keys": [jwk]}},
        "issuer": "https://idp.example.com/realms/partners", "audience": "shop-api"}))
    .unwrap();
    Verifier::new(&cfg).unwrap()
}

fn rs256() -> (String, Verifier) {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl makes the bench's RSA key");
    let pem = String::from_utf8(out.stdout).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let pair = signature::RsaKeyPair::from_pkcs8(&STANDARD.decode(body).unwrap()).unwrap();
    let parts = signature::RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    let key = PublicKey::Rsa {
        n: parts.n.iter().copied().skip_while(|b| *b == 0).collect(),
        e: parts.e.iter().copied().skip_while(|b| *b == 0).collect(),
    };
    let input = signing_input("RS256");
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(
        &signature::RSA_PKCS1_SHA256,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    (format!("{input}.{}", b64(&sig)), verifier("RS256", &key))
}

fn es256() -> (String, Verifier) {
    let rng = SystemRandom::new();
    let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
    let pair = signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
    let key = PublicKey::P256(pair.public_key().as_ref().to_vec());
    let input = signing_input("ES256");
    let sig = pair.sign(&rng, input.as_bytes()).unwrap();
    (
        format!("{input}.{}", b64(sig.as_ref())),
        verifier("ES256", &key),
    )
}

fn eddsa() -> (String, Verifier) {
    let pkcs8 = signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let key = PublicKey::Ed25519(pair.public_key().as_ref().to_vec());
    let input = signing_input("EdDSA");
    let sig = pair.sign(input.as_bytes());
    (
        format!("{input}.{}", b64(sig.as_ref())),
        verifier("EdDSA", &key),
    )
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let (rs_token, rs) = rs256();
    for (name, (token, v)) in [
        ("jose/verify_cold_es256", es256()),
        ("jose/verify_cold_eddsa", eddsa()),
    ] {
        assert!(v.verify(token.as_bytes(), NOW).is_ok());
        c.bench_function(name, |b| {
            b.iter(|| black_box(v.verify(black_box(token.as_bytes()), NOW)))
        });
    }
    assert!(rs.verify(rs_token.as_bytes(), NOW).is_ok());
    c.bench_function("jose/verify_cold_rs256", |b| {
        b.iter(|| black_box(rs.verify(black_box(rs_token.as_bytes()), NOW)))
    });
    // A core's cache with 1,000 other tokens in it.
    let mut cache = TokenCache::new();
    let entry = CachedToken {
        generation: 1,
        consumer: 0,
        subscription: 0,
        valid_until_ms: NOW + 3_600_000,
    };
    for i in 0u32..1000 {
        cache.insert(&i.to_le_bytes(), entry, NOW);
    }
    cache.insert(rs_token.as_bytes(), entry, NOW);
    eprintln!("RS256 token: {} bytes", rs_token.len());
    c.bench_function("jose/cache_hit", |b| {
        b.iter(|| black_box(cache.get(black_box(rs_token.as_bytes()), 1, NOW)))
    });
    c.final_summary();
}
