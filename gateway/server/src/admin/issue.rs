//! Client certificates for `mtls` subscriptions (DESIGN §8), made with rcgen (ring underneath;
//! no hand-written cryptography).
//!
//! Each API has its own CA, generated at its first issued certificate: a `certificates` entity
//! (`ca: true`, metadata `tollgate.api_ca` = the API's id) whose private key is sealed in the
//! entity log like every certificate key, `***` in every view. The HTTPS listener trusts it (beside
//! its `client_ca` bundle) to verify client certificates. A subscription's certificate is an ECDSA
//! P-256 leaf signed by that CA (subject `CN=<subscription>, O=<api>`, extended key usage
//! clientAuth, two years); its private key is answered once and kept nowhere.

use gateway_model::entity::{
    API_CA_META, Certificate, Secret, TOKEN_KEY_CREATED_META, TOKEN_KEY_META, TOKEN_KEY_RETIRE_META,
};
use gateway_model::event::EntityKind;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SerialNumber, date_time_ymd,
};
use sha2::{Digest as _, Sha256};

use crate::entitylog::{Entity, State};
use crate::error::{GatewayError, GatewayErrorKind};

/// An API's CA: its certificate and key (PEM).
#[derive(Debug, Clone)]
pub(super) struct Ca {
    pub cert_pem: String,
    pub key_pem: Secret,
}

/// A certificate issued to a subscription, answered once.
#[derive(Debug, Clone)]
pub(super) struct IssuedCert {
    /// PEM certificate.
    pub certificate: String,
    /// PEM PKCS#8 private key.
    pub private_key: Secret,
    /// SHA-256 of the certificate's DER, lower-case hex.
    pub fingerprint: String,
}

fn this_year() -> i32 {
    let secs = gateway_events::clock::now_ms().max(0).unsigned_abs() / 1000;
    // Mean Gregorian year: off by a day at most around new year, which only moves a bound.
    i32::try_from(1970 + secs / 31_556_952).unwrap_or(2026)
}

fn serial() -> SerialNumber {
    let mut bytes = crate::seal::random_bytes(16).unwrap_or_else(|_| vec![0x5a; 16]);
    if let Some(first) = bytes.first_mut() {
        // Positive and never zero-led.
        *first = (*first & 0x7f) | 0x40;
    }
    SerialNumber::from(bytes)
}

/// The CA's parameters: a function of the API's id, so that a stored CA signs again with the
/// same issuer name.
fn ca_params(api: &str, year: i32) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // Encoded O then CN: read in RFC 4514 order, `CN=Tollgate API CA <api>, O=Tollgate` (what
    // regex_issuer_dns matches).
    dn.push(DnType::OrganizationName, "Tollgate");
    dn.push(DnType::CommonName, format!("Tollgate API CA {api}"));
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = date_time_ymd(year - 1, 1, 1);
    p.not_after = date_time_ymd(year + 10, 1, 1);
    p
}

/// The CA of `api` in `state`, if it has one (not revoked).
pub(super) fn find_ca(state: &State, api: &str) -> Option<Ca> {
    state
        .list(EntityKind::Certificate)
        .find_map(|(e, _)| match e {
            Entity::Certificate(c)
                if c.ca
                    && !c.revoked
                    && c.metadata.get(API_CA_META).map(String::as_str) == Some(api) =>
            {
                Some(Ca {
                    cert_pem: c.chain.clone(),
                    key_pem: c.private_key.clone(),
                })
            }
            _ => None,
        })
}

/// A [`GatewayErrorKind::Crypto`] error that is what rcgen (or the entity's encoding) said.
fn crypto(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> GatewayError {
    GatewayError::of(GatewayErrorKind::Crypto, e)
}

/// A new CA for `api`, and its entity.
///
/// # Errors
/// A [`GatewayErrorKind::Crypto`] error: what rcgen or the certificate's parsing said.
pub(super) fn new_ca(api: &str, id: String) -> Result<(Ca, Certificate), GatewayError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(crypto)?;
    let mut params = ca_params(api, this_year());
    params.serial_number = Some(serial());
    let cert = params.self_signed(&key).map_err(crypto)?;
    let ca = Ca {
        cert_pem: cert.pem(),
        key_pem: Secret::new(key.serialize_pem()),
    };
    let mut entity: Certificate = serde_json::from_value(serde_json::json!({
        "id": id,
        "name": format!("API CA of {api}"),
        "description": format!("Issues the client certificates of the mtls subscriptions of API `{api}`"),
        "chain": ca.cert_pem,
        "privateKey": ca.key_pem.expose(),
        "ca": true,
        "metadata": {API_CA_META: api},
    }))
    .map_err(crypto)?;
    entity.fill_derived().map_err(crypto)?;
    Ok((ca, entity))
}

/// A client certificate for subscription `sub` of `api`, signed by `ca`.
///
/// # Errors
/// A [`GatewayErrorKind::Crypto`] error: what rcgen said (a CA key that does not load, …).
pub(super) fn client_cert(ca: &Ca, api: &str, sub: &str) -> Result<IssuedCert, GatewayError> {
    let ca_key = KeyPair::from_pem(ca.key_pem.expose()).map_err(crypto)?;
    let year = this_year();
    let issuer = Issuer::new(ca_params(api, year), ca_key);
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(crypto)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    // `CN=<subscription>, O=<api>` in RFC 4514 order.
    dn.push(DnType::OrganizationName, api);
    dn.push(DnType::CommonName, sub);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(serial());
    params.not_before = date_time_ymd(year - 1, 1, 1);
    params.not_after = date_time_ymd(year + 2, 1, 1);
    let cert = params.signed_by(&key, &issuer).map_err(crypto)?;
    let fingerprint = Sha256::digest(cert.der().as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(IssuedCert {
        certificate: cert.pem(),
        private_key: Secret::new(key.serialize_pem()),
        fingerprint,
    })
}

/// Whether `state` holds a token key that signs (ES256, not revoked, not retiring).
pub(super) fn has_signing_token_key(state: &State) -> bool {
    state.list(EntityKind::Certificate).any(|(e, _)| match e {
        Entity::Certificate(c) => {
            !c.revoked
                && c.metadata.get(TOKEN_KEY_META).map(String::as_str) == Some("ES256")
                && !c.metadata.contains_key(TOKEN_KEY_RETIRE_META)
        }
        _ => false,
    })
}

/// The token keys of `state` that still sign or verify (id, entity).
pub(super) fn token_keys(state: &State) -> Vec<Certificate> {
    state
        .list(EntityKind::Certificate)
        .filter_map(|(e, _)| match e {
            Entity::Certificate(c) if c.metadata.contains_key(TOKEN_KEY_META) => {
                Some((**c).clone())
            }
            _ => None,
        })
        .collect()
}

/// A new ES256 token key of the cluster: a `keypair` certificate entity (a self-signed
/// certificate for the key, which only carries it), its private key sealed in the entity log.
///
/// # Errors
/// A [`GatewayErrorKind::Crypto`] error: what rcgen or the certificate's parsing said.
pub(super) fn new_token_key(id: String, now_ms: i64) -> Result<Certificate, GatewayError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(crypto)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Tollgate");
    dn.push(DnType::CommonName, format!("Tollgate token key {id}"));
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.serial_number = Some(serial());
    let year = this_year();
    params.not_before = date_time_ymd(year - 1, 1, 1);
    params.not_after = date_time_ymd(year + 10, 1, 1);
    let cert = params.self_signed(&key).map_err(crypto)?;
    let mut entity: Certificate = serde_json::from_value(serde_json::json!({
        "id": id,
        "name": "Tollgate token key",
        "description": "Signs the access tokens of oauth consumers (ES256); kid = this id",
        "chain": cert.pem(),
        "privateKey": key.serialize_pem(),
        "keypair": true,
        "metadata": {TOKEN_KEY_META: "ES256", TOKEN_KEY_CREATED_META: now_ms.to_string()},
    }))
    .map_err(crypto)?;
    entity.fill_derived().map_err(crypto)?;
    Ok(entity)
}
