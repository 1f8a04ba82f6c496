use gateway_model::import::import_document;

use super::*;
use crate::snapshot::{QuotaSetup, Snapshot, SystemResolver};

/// The mtls Otoroshi export's certificates (expired in 2019; PKCS#8 and PKCS#1 RSA keys).
fn fixture() -> Vec<Certificate> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/otoroshi/otoroshi-export-mtls.json");
    let bytes = std::fs::read(path).unwrap();
    let out = import_document(&bytes, None).unwrap();
    assert!(out.is_clean(), "{}", out.problems);
    out.entities.certificates
}

#[test]
fn runtime_certificates_carry_der_key_names_and_facts() {
    let certs = fixture();
    let all = build_all(&certs, 1_750_000_000_000).unwrap();
    assert_eq!(all.len(), 3);
    let frontend = all
        .iter()
        .find(|c| c.id.starts_with("q3128"))
        .expect("the *.frontend.lol certificate");
    assert_eq!(frontend.chain.len(), 2, "leaf and its CA");
    assert!(matches!(
        frontend.key.as_deref(),
        Some(PrivateKeyDer::Pkcs1(_))
    ));
    // No SAN in these v1 certificates: the CN names it.
    assert_eq!(frontend.dns_names, vec!["*.frontend.lol"]);
    assert_eq!(frontend.subject, "CN=*.frontend.lol");
    assert_eq!(frontend.issuer, "CN=MTLSF");
    assert_eq!(frontend.serial_hex, "1");
    assert_eq!(frontend.not_after_ms, 1_575_735_521_000);
    assert_eq!(frontend.validity_at(1_750_000_000_000), Validity::Expired);
    assert_eq!(
        frontend.validity_at(frontend.not_before_ms),
        Validity::Valid
    );
    assert_eq!(frontend.sha256, inspect(&frontend.chain[0]).unwrap().sha256);
    assert!(!frontend.ca && !frontend.client && !frontend.revoked);
    let pkcs8 = all.iter().find(|c| c.id.starts_with("TnMo")).unwrap();
    assert!(matches!(
        pkcs8.key.as_deref(),
        Some(PrivateKeyDer::Pkcs8(_))
    ));
    // Debug never shows key material.
    let text = format!("{all:?}");
    let key_line = certs[1].private_key.expose().lines().nth(1).unwrap();
    assert!(!text.contains(key_line));
}

#[test]
fn warnings_are_logged_once_per_certificate() {
    let all = build_all(&fixture(), 1_750_000_000_000).unwrap();
    let mut again = all[0].clone();
    again.id = "warn-once-probe".into();
    assert!(first_sighting(&again));
    assert!(!first_sighting(&again), "a rebuild does not warn again");
    again.sha256[0] ^= 1;
    assert!(
        first_sighting(&again),
        "a new certificate under the same id does"
    );
}

#[test]
fn snapshots_hold_the_certificates_and_refuse_a_broken_one() {
    let mut entities = gateway_model::import::Entities {
        certificates: fixture(),
        ..Default::default()
    };
    let cal = gateway_core::window::Calendar::utc();
    let setup = QuotaSetup {
        calendar: &cal,
        cores: 1,
        previous: None,
    };
    let s = Snapshot::build(1, &entities, &mut SystemResolver, setup).unwrap();
    assert_eq!(s.certificates.len(), 3);
    // An entity that bypassed validation and does not parse: the build says which.
    entities.certificates[0].chain = "garbage".to_owned();
    let id = entities.certificates[0].id.clone();
    let err = Snapshot::build(2, &entities, &mut SystemResolver, setup).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("certificate `{id}`: no PEM `CERTIFICATE` section found")
    );
}
