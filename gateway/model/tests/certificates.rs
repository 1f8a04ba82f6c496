//! Certificates as entities: PEM and X.509 reading, the key check, validation with paths, the
//! honour-or-refuse flags (strict files refuse, Otoroshi exports import with a warning), expiry
//! warnings, references. Test certificates are made here with the `openssl` CLI; no key is
//! committed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use gateway_model::entity::Certificate;
use gateway_model::import::{Dialect, import_document, import_document_at};
use gateway_model::validate::{Problems, Validate};
use gateway_model::x509::{self, CertError, SubjectAltName, Validity};
use serde_json::{Value, json};

/// A scratch directory for openssl's files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tollgate-model-certs-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.0)
            .output()
            .expect("the openssl CLI makes the test certificates");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.0.join(name)).unwrap()
    }

    /// A self-signed certificate `<name>.crt` with key `<name>.key` (PKCS#8, unencrypted).
    /// `alg` is `ec` (P-256) or `rsa` (2048 bits).
    fn self_signed(&self, name: &str, alg: &str, cn: &str, sans: &str) -> (String, String) {
        let (crt, key) = (format!("{name}.crt"), format!("{name}.key"));
        let mut args = vec!["req", "-x509", "-nodes", "-days", "2", "-subj"];
        let subj = format!("/CN={cn}/O=Tollgate Tests/C=FR");
        args.push(&subj);
        let san = format!("subjectAltName={sans}");
        if !sans.is_empty() {
            args.extend(["-addext", &san]);
        }
        match alg {
            "ec" => args.extend(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]),
            _ => args.extend(["-newkey", "rsa:2048"]),
        }
        args.extend(["-keyout", &key, "-out", &crt]);
        self.openssl(&args);
        (self.read(&crt), self.read(&key))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn path_of(dir: &Path, name: &str) -> String {
    dir.join(name).display().to_string()
}

fn problems(cert: &Value) -> Vec<String> {
    let c: Certificate = serde_json::from_value(cert.clone()).unwrap();
    let mut p = Problems::default();
    c.validate("certificates[0]", &mut p);
    p.iter().map(ToString::to_string).collect()
}

#[test]
fn an_ec_certificate_reads_whole() {
    let s = Scratch::new();
    let (crt, key) = s.self_signed(
        "api",
        "ec",
        "api.example.com",
        "DNS:api.example.com,DNS:*.API.example.com,IP:127.0.0.1,email:ops@example.com",
    );
    let chain = x509::parse_pem_chain(&crt).unwrap();
    assert_eq!(chain.len(), 1);
    let info = x509::inspect(&chain[0]).unwrap();
    assert_eq!(info.subject, "C=FR, O=Tollgate Tests, CN=api.example.com");
    assert_eq!(info.issuer, info.subject);
    assert!(info.self_issued);
    assert_eq!(info.common_name.as_deref(), Some("api.example.com"));
    assert_eq!(
        info.sans,
        vec![
            SubjectAltName::Dns("api.example.com".to_owned()),
            SubjectAltName::Dns("*.API.example.com".to_owned()),
            SubjectAltName::Ip([127, 0, 0, 1].into()),
            SubjectAltName::Email("ops@example.com".to_owned()),
        ]
    );
    assert_eq!(
        info.dns_names(),
        vec!["api.example.com", "*.api.example.com"]
    );
    let now = 1000
        * i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap();
    assert_eq!(info.validity_at(now), Validity::Valid);
    assert!(info.not_after_ms - info.not_before_ms >= 2 * 86_400_000 - 1000);
    // Serial and fingerprint as openssl prints them.
    s.openssl(&[
        "x509",
        "-in",
        "api.crt",
        "-noout",
        "-serial",
        "-fingerprint",
        "-sha256",
        "-out",
        "facts",
    ]);
    let facts = s.read("facts").to_ascii_lowercase().replace(':', "");
    assert!(
        facts.contains(&format!("serial={}", info.serial_hex.to_ascii_lowercase()))
            || facts.contains(&format!("serial=0{}", info.serial_hex)),
        "{facts} vs {}",
        info.serial_hex
    );
    assert!(facts.contains(&info.sha256_hex()), "{facts}");
    // The key: PKCS#8 as made, and SEC1 as `openssl ec` writes it.
    let pkcs8 = x509::parse_pem_key(&key).unwrap();
    assert!(matches!(pkcs8, x509::PrivateKeyDer::Pkcs8(_)));
    x509::keys_match(&chain[0], &pkcs8).unwrap();
    s.openssl(&["ec", "-in", "api.key", "-out", "api.sec1"]);
    let sec1 = x509::parse_pem_key(&s.read("api.sec1")).unwrap();
    assert!(matches!(sec1, x509::PrivateKeyDer::Sec1(_)));
    x509::keys_match(&chain[0], &sec1).unwrap();
    // openssl's `ecparam -genkey` writes an EC PARAMETERS block first: ignored.
    let with_params = format!(
        "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{}",
        s.read("api.sec1")
    );
    x509::keys_match(&chain[0], &x509::parse_pem_key(&with_params).unwrap()).unwrap();
    // A key is never in Debug.
    assert!(!format!("{pkcs8:?}").contains(key.lines().nth(1).unwrap()));
}

#[test]
fn rsa_keys_in_pkcs8_and_pkcs1_match_and_other_keys_do_not() {
    let s = Scratch::new();
    let (crt, key) = s.self_signed("rsa", "rsa", "rsa.example.com", "DNS:rsa.example.com");
    s.openssl(&["rsa", "-in", "rsa.key", "-traditional", "-out", "rsa.pkcs1"]);
    let pkcs1 = s.read("rsa.pkcs1");
    assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let leaf = x509::parse_pem_chain(&crt).unwrap().remove(0);
    x509::keys_match(&leaf, &x509::parse_pem_key(&key).unwrap()).unwrap();
    x509::keys_match(&leaf, &x509::parse_pem_key(&pkcs1).unwrap()).unwrap();
    // Another RSA key, an EC key: not this certificate's.
    let (_, other_rsa) = s.self_signed("rsa2", "rsa", "rsa.example.com", "");
    let (ec_crt, ec_key) = s.self_signed("ec", "ec", "ec.example.com", "");
    assert_eq!(
        x509::keys_match(&leaf, &x509::parse_pem_key(&other_rsa).unwrap()),
        Err(CertError::KeyMismatch)
    );
    assert_eq!(
        x509::keys_match(&leaf, &x509::parse_pem_key(&ec_key).unwrap()),
        Err(CertError::KeyMismatch)
    );
    let ec_leaf = x509::parse_pem_chain(&ec_crt).unwrap().remove(0);
    assert_eq!(
        x509::keys_match(&ec_leaf, &x509::parse_pem_key(&key).unwrap()),
        Err(CertError::KeyMismatch)
    );
}

#[test]
fn pem_chains_and_keys_are_refused_with_a_reason() {
    let s = Scratch::new();
    let (crt, key) = s.self_signed("a", "ec", "a.example.com", "");
    assert_eq!(
        x509::parse_pem_chain("hello"),
        Err(CertError::NoCertificate)
    );
    assert_eq!(
        x509::parse_pem_chain(&format!("{crt}{key}")),
        Err(CertError::NotACertificate {
            index: 1,
            label: "a private key"
        })
    );
    assert!(matches!(
        x509::parse_pem_chain("-----BEGIN CERTIFICATE-----\nMIIB\n"),
        Err(CertError::Pem(_))
    ));
    // A CERTIFICATE section that is not X.509 passes the PEM layer, not inspection.
    let junk = "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n";
    let der = x509::parse_pem_chain(junk).unwrap().remove(0);
    assert!(matches!(
        x509::inspect(&der),
        Err(CertError::X509 { index: 0, .. })
    ));
    // Keys: none, two, encrypted (PKCS#8 and OpenSSL's legacy form).
    assert_eq!(x509::parse_pem_key(&crt), Err(CertError::NoPrivateKey));
    assert_eq!(
        x509::parse_pem_key(&format!("{key}{key}")),
        Err(CertError::SeveralPrivateKeys { count: 2 })
    );
    s.openssl(&[
        "pkcs8",
        "-topk8",
        "-in",
        "a.key",
        "-v2",
        "aes-256-cbc",
        "-passout",
        "pass:pw",
        "-out",
        "a.enc",
    ]);
    assert_eq!(
        x509::parse_pem_key(&s.read("a.enc")),
        Err(CertError::EncryptedKey)
    );
    s.openssl(&[
        "ec", "-in", "a.key", "-aes128", "-passout", "pass:pw", "-out", "a.legacy",
    ]);
    assert_eq!(
        x509::parse_pem_key(&s.read("a.legacy")),
        Err(CertError::EncryptedKey)
    );
    // A key of a type rustls cannot sign with.
    s.openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-521",
        "-out",
        "p521.key",
    ]);
    let p521 = x509::parse_pem_key(&s.read("p521.key")).unwrap();
    let leaf = x509::parse_pem_chain(&crt).unwrap().remove(0);
    assert_eq!(
        x509::keys_match(&leaf, &p521),
        Err(CertError::UnsupportedKey)
    );
    // Nor an RSA key ring does not sign with (under 2048 bits).
    s.openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:1024",
        "-out",
        "short.key",
    ]);
    let short = x509::parse_pem_key(&s.read("short.key")).unwrap();
    let e = x509::keys_match(&leaf, &short).unwrap_err();
    assert_eq!(e, CertError::UnsupportedKey);
    assert!(e.to_string().contains("RSA of 2048 to 4096 bits"), "{e}");
}

#[test]
fn validation_names_the_field() {
    let s = Scratch::new();
    let (crt, key) = s.self_signed("v", "ec", "v.example.com", "DNS:v.example.com");
    let (_, other) = s.self_signed("w", "ec", "w.example.com", "");
    let good = json!({"id": "v", "chain": crt, "privateKey": key});
    assert_eq!(problems(&good), Vec::<String>::new());
    let mut bad = good.clone();
    bad["privateKey"] = json!(other);
    assert_eq!(
        problems(&bad),
        vec![
            "certificates[0].privateKey: the private key does not match the public key of the \
             certificate"
        ]
    );
    bad["privateKey"] = json!("not a key");
    assert_eq!(
        problems(&bad),
        vec![
            "certificates[0].privateKey: no PEM private key found (`PRIVATE KEY`, `RSA PRIVATE \
             KEY` or `EC PRIVATE KEY`)"
        ]
    );
    let mut bad = good.clone();
    bad["chain"] = json!("-----BEGIN CERTIFICATE-----\nnot base64 !\n-----END CERTIFICATE-----\n");
    assert_eq!(
        problems(&bad),
        vec!["certificates[0].chain: not valid PEM: bad base64 inside a section"]
    );
    bad["chain"] = json!(format!("{crt}{key}"));
    let p = problems(&bad);
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("certificates[0].chain: PEM section 1 is a private key"));
    // Without a key: only a CA.
    let mut no_key = good.clone();
    no_key["privateKey"] = json!("");
    assert_eq!(
        problems(&no_key),
        vec![
            "certificates[0].privateKey: expected a PEM private key: only a CA certificate \
             (`ca: true`) may come without one"
        ]
    );
    no_key["ca"] = json!(true);
    assert!(problems(&no_key).is_empty());
    // Honour or refuse: what Tollgate cannot do is refused with its path.
    let mut flags = good.clone();
    flags["autoRenew"] = json!(true);
    flags["letsEncrypt"] = json!(true);
    flags["exposed"] = json!(true);
    flags["password"] = json!("pw");
    flags["caRef"] = json!("v");
    let p = problems(&flags);
    for want in [
        "certificates[0].autoRenew: not supported by Tollgate",
        "certificates[0].letsEncrypt: not supported by Tollgate",
        "certificates[0].exposed: not supported by Tollgate",
        "certificates[0].password: encrypted private keys are not supported; decrypt it first",
        "certificates[0].caRef: a certificate cannot be its own CA",
    ] {
        assert!(
            p.iter().any(|x| x.starts_with(want)),
            "{want} not in {p:#?}"
        );
    }
    // The private key never shows in Debug.
    let c: Certificate = serde_json::from_value(good).unwrap();
    assert!(!format!("{c:?}").contains(key.lines().nth(1).unwrap()));
}

#[test]
fn read_only_fields_are_computed_from_the_leaf() {
    let s = Scratch::new();
    let (crt, key) = s.self_signed(
        "d",
        "ec",
        "d.example.com",
        "DNS:d.example.com,DNS:*.d.example.com",
    );
    let mut c: Certificate = serde_json::from_value(json!({
        "id": "d", "chain": crt, "privateKey": key, "subject": "lies", "from": 1, "to": 2,
        "sans": ["x"], "valid": false, "domain": "nope", "password": "",
        "_loc": {"tenant": "default"}, "certType": "certificate", "entityMetadata": {}
    }))
    .unwrap();
    c.fill_derived().unwrap();
    let leaf = c.leaf().unwrap();
    assert_eq!(c.subject, leaf.subject);
    assert_eq!((c.from, c.to), (leaf.not_before_ms, leaf.not_after_ms));
    assert_eq!(c.sans, vec!["d.example.com", "*.d.example.com"]);
    assert_eq!(c.domain, "d.example.com");
    assert!(c.valid && c.self_signed);
    assert!(c.password.is_none() && c.location.is_none());
    // What is written back has Otoroshi's names and no tolerated-only field.
    let back = serde_json::to_value(&c).unwrap();
    for field in [
        "privateKey",
        "caRef",
        "selfSigned",
        "autoRenew",
        "letsEncrypt",
        "from",
        "to",
    ] {
        assert!(back.get(field).is_some(), "{field} missing in {back}");
    }
    for field in ["_loc", "certType", "entityMetadata", "password"] {
        assert!(back.get(field).is_none(), "{field} in {back}");
    }
}

/// An Otoroshi export of the repository's `fixtures/otoroshi/`.
fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/otoroshi")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn otoroshi_exports_import_their_certificates_with_warnings() {
    let now = 1_750_000_000_000; // June 2025: every leaf of both exports has expired.
    let mtls = import_document_at(&fixture("otoroshi-export-mtls.json"), None, Some(now)).unwrap();
    assert!(mtls.is_clean(), "{}", mtls.problems);
    assert_eq!(mtls.entities.certificates.len(), 3);
    assert!(!mtls.skipped.iter().any(|s| s.kind == "certificates"));
    for i in 0..3 {
        assert!(
            mtls.warnings
                .iter()
                .any(|w| w.path == format!("certificates[{i}]") && w.message.contains("expired")),
            "{}",
            mtls.warnings
        );
    }
    // The PKCS#1 RSA keys of this export match their v1 certificates.
    let frontend = &mtls.entities.certificates[1];
    assert!(
        frontend
            .private_key
            .expose()
            .starts_with("-----BEGIN RSA PRIVATE KEY-----")
    );
    assert_eq!(frontend.domain, "*.frontend.lol");
    let tunnel =
        import_document_at(&fixture("otoroshi-export-tunnel.json"), None, Some(now)).unwrap();
    assert!(tunnel.is_clean(), "{}", tunnel.problems);
    assert_eq!(tunnel.entities.certificates.len(), 5);
    let ids: Vec<&str> = tunnel
        .entities
        .certificates
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(
        ids,
        [
            "otoroshi-wildcard",
            "otoroshi-intermediate-ca",
            "otoroshi-root-ca",
            "otoroshi-client",
            "otoroshi-jwt-signing"
        ]
    );
    // autoRenew and exposed are on in the export: turned off, one warning each.
    for c in &tunnel.entities.certificates {
        assert!(!c.auto_renew && !c.exposed, "{}", c.id);
    }
    for i in 0..5 {
        for flag in ["autoRenew", "exposed"] {
            assert!(
                tunnel
                    .warnings
                    .iter()
                    .any(|w| w.path == format!("certificates[{i}].{flag}")),
                "{}",
                tunnel.warnings
            );
        }
    }
    // The CAs are valid until 2032: no expiry warning for them.
    assert!(!tunnel.warnings.iter().any(|w| w.path == "certificates[1]"));
    assert!(tunnel.warnings.iter().any(|w| w.path == "certificates[0]"));
    // Without a clock, no expiry warning.
    let plain = import_document(&fixture("otoroshi-export-mtls.json"), None).unwrap();
    assert!(plain.warnings.is_empty(), "{}", plain.warnings);
}

#[test]
fn strict_files_refuse_unsupported_flags_and_dangling_references() {
    let s = Scratch::new();
    let (crt, key) = s.self_signed("s", "ec", "s.example.com", "");
    let (ca_crt, _) = s.self_signed("ca", "ec", "Tests CA", "");
    let doc = json!({
        "certificates": [
            {"id": "s", "chain": crt, "privateKey": key, "autoRenew": true, "caRef": "missing"},
            {"id": "ca", "chain": ca_crt, "ca": true},
        ],
        "routes": [{"id": "r", "frontend": {"domains": ["a"]},
            "backend": {"targets": [{"hostname": "h", "port": 443, "tls": true,
                "tls_config": {"enabled": true, "certs": ["ghost"], "trusted_certs": ["ca"]}}]}}],
        "backends": [{"id": "b", "backend": {"targets": [{"hostname": "h", "port": 80,
                "tls_config": {"enabled": true, "trusted_certs": ["bad id!"]}}]}}],
    });
    let out = import_document(doc.to_string().as_bytes(), Some(Dialect::Tollgate)).unwrap();
    let p: Vec<String> = out.problems.iter().map(ToString::to_string).collect();
    for want in [
        "certificates[0].autoRenew: not supported by Tollgate",
        "routes[0].backend.targets[0].tls_config.certs[0]: no certificate with id `ghost`",
        "backends[0].backend.targets[0].tls_config.enabled: TLS settings of a plaintext target",
        "backends[0].backend.targets[0].tls_config.trusted_certs[0]: expected 1 to 128",
    ] {
        assert!(
            p.iter().any(|x| x.starts_with(want)),
            "{want} not in {p:#?}"
        );
    }
    // Without the flag, the dangling caRef is the problem.
    let mut doc = doc;
    doc["certificates"][0]["autoRenew"] = json!(false);
    let out = import_document(doc.to_string().as_bytes(), Some(Dialect::Tollgate)).unwrap();
    assert!(
        out.problems.iter().any(|p| p.to_string()
            == "certificates[0].caRef: no certificate with id `missing` in this document"),
        "{}",
        out.problems
    );
    // The same in an Otoroshi export: imported, the flag and the dangling caRef dropped with a
    // warning each; the route that names a missing certificate is left out.
    doc["certificates"][0]["autoRenew"] = json!(true);
    let out = import_document(doc.to_string().as_bytes(), Some(Dialect::Otoroshi)).unwrap();
    let c = &out.entities.certificates[0];
    assert!(!c.auto_renew && c.ca_ref.is_none());
    let w: Vec<String> = out.warnings.iter().map(ToString::to_string).collect();
    assert!(
        w.iter()
            .any(|x| x.starts_with("certificates[0].autoRenew: not supported")),
        "{w:#?}"
    );
    assert!(
        w.iter()
            .any(|x| x.starts_with("certificates[0].caRef: no certificate")),
        "{w:#?}"
    );
    assert!(out.entities.routes.is_empty());
    assert!(
        out.skipped
            .iter()
            .any(|s| s.kind == "routes" && s.reason.contains("ghost"))
    );
    // A problem certificate (here: a key that is not its own) is skipped, never half-imported.
    let (_, other) = s.self_signed("o", "ec", "o.example.com", "");
    let doc = json!({"certificates": [{"id": "x", "chain": path_of(&s.0, "nothing"), "privateKey": other},
                                      {"id": "y", "chain": ca_crt, "privateKey": other}]});
    let out = import_document(doc.to_string().as_bytes(), Some(Dialect::Otoroshi)).unwrap();
    assert!(out.entities.certificates.is_empty());
    let p: Vec<String> = out.problems.iter().map(ToString::to_string).collect();
    assert!(
        p.iter()
            .any(|x| x.starts_with("certificates[0].chain: no PEM")),
        "{p:#?}"
    );
    assert!(
        p.iter()
            .any(|x| x.starts_with("certificates[1].privateKey: the private key does not match")),
        "{p:#?}"
    );
    assert_eq!(
        out.skipped
            .iter()
            .filter(|s| s.kind == "certificates")
            .count(),
        2
    );
}

#[test]
fn references_must_name_the_right_kind_of_certificate() {
    let s = Scratch::new();
    let (crt, key) = s.self_signed("leaf", "ec", "leaf.example.com", "");
    let (ca_crt, _) = s.self_signed("ca", "ec", "Tests CA", "");
    let doc = json!({
        "certificates": [
            {"id": "leaf", "chain": crt, "privateKey": key},
            {"id": "ca", "chain": ca_crt, "ca": true},
            {"id": "child", "chain": crt, "privateKey": key, "caRef": "leaf"},
        ],
        "backends": [{"id": "b", "backend": {"targets": [{"hostname": "h", "port": 443,
            "tls": true, "tls_config": {"enabled": true, "certs": ["ca"], "trusted_certs": ["leaf"]}}]}}],
    });
    let out = import_document(doc.to_string().as_bytes(), Some(Dialect::Tollgate)).unwrap();
    let p: Vec<String> = out.problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        p,
        vec![
            "certificates[2].caRef: certificate `leaf` is not a CA certificate (`ca: false`)",
            "backends[0].backend.targets[0].tls_config.certs[0]: certificate `ca` has no private \
             key; a client certificate needs one",
        ]
    );
    // A trusted certificate need not be a CA, nor have a key: `trusted_certs: ["leaf"]` passed.
    assert_eq!(out.entities.certificates.len(), 2);
    assert!(out.entities.backends.is_empty());
}
