use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// A scratch directory for the openssl CLI (no key is committed), removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tollgate-model-jose-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn openssl(&self, args: &[&str]) -> String {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.0)
            .output()
            .expect("the openssl CLI makes the test keys");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A private key (`genpkey` arguments) and its `PUBLIC KEY` PEM.
    fn key(&self, name: &str, genpkey: &[&str]) -> (String, String) {
        let file = format!("{name}.key");
        let mut args = vec!["genpkey", "-out", &file];
        args.extend_from_slice(genpkey);
        self.openssl(&args);
        let public = self.openssl(&["pkey", "-in", &file, "-pubout"]);
        (std::fs::read_to_string(self.0.join(&file)).unwrap(), public)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn algorithm_names_are_exact() {
    for alg in ALGS {
        assert_eq!(Alg::from_name(alg.name()), Some(alg));
    }
    for bad in ["none", "None", "hs256", "RS1", "ES512", "Ed25519", ""] {
        assert_eq!(Alg::from_name(bad), None, "{bad}");
    }
    assert_eq!(Alg::Ps384.family(), Family::Rsa);
    assert_eq!(Alg::Hs512.min_secret_len(), 64);
}

#[test]
fn pem_public_keys_of_every_family_are_read_and_round_trip_as_jwks() {
    let s = Scratch::new();
    let cases: [(&str, &[&str], Family); 4] = [
        (
            "rsa",
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            Family::Rsa,
        ),
        (
            "p256",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Family::P256,
        ),
        (
            "p384",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            Family::P384,
        ),
        ("ed", &["-algorithm", "ED25519"], Family::Ed25519),
    ];
    for (name, args, family) in cases {
        let (private, public) = s.key(name, args);
        let key = public_key_pem(&public).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(key.family(), family, "{name}");
        // The same key as a JWK.
        let mut members = key.jwk_members();
        members.insert("kid".into(), serde_json::json!(name));
        members.insert("use".into(), serde_json::json!("sig"));
        let back = jwk(&serde_json::Value::Object(members)).unwrap();
        assert_eq!(back.key, key, "{name}");
        assert_eq!(back.kid.as_deref(), Some(name));
        // A private key is never a verifier's key.
        let err = public_key_pem(&private).unwrap_err();
        assert_eq!(err.kind, KeyErrorKind::Private, "{name}: {err}");
        assert!(err.to_string().contains("private key"), "{name}: {err}");
    }
    // A certificate gives its key.
    s.openssl(&[
        "req", "-x509", "-nodes", "-days", "1", "-subj", "/CN=t", "-key", "p256.key", "-out",
        "p256.crt",
    ]);
    let cert = std::fs::read_to_string(s.0.join("p256.crt")).unwrap();
    assert_eq!(public_key_pem(&cert).unwrap().family(), Family::P256);
}

#[test]
fn weak_odd_and_misencoded_keys_are_refused_in_words() {
    let s = Scratch::new();
    let (_, rsa1024) = s.key(
        "small",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
    );
    let err = public_key_pem(&rsa1024).unwrap_err();
    assert_eq!(err.kind, KeyErrorKind::Weak);
    assert!(err.to_string().contains("1024 bits"), "{err}");
    let (_, p521) = s.key(
        "p521",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"],
    );
    let err = public_key_pem(&p521).unwrap_err();
    assert_eq!(err.kind, KeyErrorKind::Unsupported);
    assert!(err.to_string().contains("P-256 or P-384"), "{err}");
    s.key(
        "r",
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    );
    let pkcs1 = s.openssl(&["rsa", "-in", "r.key", "-RSAPublicKey_out"]);
    let err = public_key_pem(&pkcs1).unwrap_err();
    assert_eq!(err.kind, KeyErrorKind::Malformed);
    assert_eq!(
        err.to_string(),
        "a PKCS#1 `RSA PUBLIC KEY`: give it as a `PUBLIC KEY` (openssl rsa -RSAPublicKey_in \
         -pubout)"
    );
    let err = public_key_pem("not pem").unwrap_err();
    assert_eq!(err.kind, KeyErrorKind::Malformed);
    assert!(err.to_string().contains("no `PUBLIC KEY`"), "{err}");
}

#[test]
fn private_symmetric_and_malformed_jwks_are_refused_with_the_member() {
    use serde_json::json;
    let member = |v: serde_json::Value| jwk(&v).unwrap_err().0;
    assert_eq!(member(json!({"kty": "oct", "k": "c2VjcmV0"})), "k");
    assert_eq!(member(json!({"kty": "oct"})), "kty");
    assert_eq!(
        member(json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA"})),
        "d"
    );
    assert_eq!(
        member(json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"})),
        "crv"
    );
    assert_eq!(
        member(json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"})),
        "x"
    );
    assert_eq!(
        member(json!({"kty": "OKP", "crv": "X25519", "x": "AA"})),
        "crv"
    );
    assert_eq!(member(json!({"kty": "RSA", "n": "!!", "e": "AQAB"})), "n");
    assert_eq!(
        member(json!({"kty": "RSA", "n": "AQAB", "e": "AQAB", "use": "enc"})),
        "use"
    );
    assert_eq!(
        member(json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"})),
        "n",
        "a tiny modulus"
    );
    assert_eq!(member(json!("a string")), "");
}
