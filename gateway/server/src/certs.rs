//! Certificates as the data plane holds them: every certificate entity parsed once per
//! snapshot into DER (for rustls) and the facts the TLS layer selects and reports by (DNS names,
//! DNs, serial, validity, fingerprint, flags).
//!
//! The PEM and X.509 readers are gateway-model's ([`gateway_model::x509`]), re-exported here so
//! that the TLS code reads the listener's PEM files, the certificate entities and the client
//! certificates of a handshake with the same functions and the same errors.
//!
//! Built off the request path (snapshot builds). It never logs key material; an expired or
//! not-yet-valid certificate is kept (the SNI resolver prefers valid ones) and logged once per
//! process, not at every rebuild.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use gateway_model::entity::Certificate;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use gateway_model::x509::{
    CertError, CertInfo, SubjectAltName, Validity, format_ms, inspect, inspect_at, keys_match,
    parse_pem_chain, parse_pem_key,
};

/// A certificate entity, ready for the TLS layer.
#[derive(Debug, Clone)]
pub struct CertificateRuntime {
    /// The entity's id.
    pub id: Box<str>,
    /// The chain in DER, the leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's private key (`None` for a CA certificate stored without one). Its `Debug`
    /// shows no key material.
    pub key: Option<Arc<PrivateKeyDer<'static>>>,
    /// DNS names the leaf answers to, lower-cased: its DNS SANs (wildcards kept as
    /// `*.example.com`), or its subject CN only when it has no DNS SAN.
    pub dns_names: Vec<String>,
    /// The leaf's subject DN, RFC 4514 order (`CN=…, O=…, C=…`).
    pub subject: String,
    /// The leaf's issuer DN, same form.
    pub issuer: String,
    /// The leaf's serial number, lower-case hex without leading zeros.
    pub serial_hex: String,
    /// Start of the leaf's validity, ms since the Unix epoch.
    pub not_before_ms: i64,
    /// End of the leaf's validity, ms since the Unix epoch.
    pub not_after_ms: i64,
    /// SHA-256 of the leaf's DER (its fingerprint).
    pub sha256: [u8; 32],
    /// The entity's `ca` flag.
    pub ca: bool,
    /// The entity's `client` flag.
    pub client: bool,
    /// The entity's `keypair` flag.
    pub keypair: bool,
    /// The entity's `revoked` flag: never serve, present or trust it.
    pub revoked: bool,
}

impl CertificateRuntime {
    /// Parses a certificate entity: its chain (every certificate must be X.509) and its key.
    /// Whether the key matches the leaf is checked when the entity is written (validation), not
    /// again here.
    ///
    /// # Errors
    /// When the chain or the key does not parse (a validated entity always does).
    pub fn from_entity(cert: &Certificate) -> Result<Self, CertError> {
        let chain = parse_pem_chain(&cert.chain)?;
        let mut leaf = None;
        for (i, der) in chain.iter().enumerate() {
            let info = inspect_at(der, i)?;
            leaf.get_or_insert(info);
        }
        let leaf = leaf.ok_or(CertError::NoCertificate)?;
        let key = match cert.key_pem() {
            Some(pem) => Some(Arc::new(parse_pem_key(pem)?)),
            None => None,
        };
        Ok(Self {
            id: cert.id.as_str().into(),
            chain,
            key,
            dns_names: leaf.dns_names(),
            subject: leaf.subject,
            issuer: leaf.issuer,
            serial_hex: leaf.serial_hex,
            not_before_ms: leaf.not_before_ms,
            not_after_ms: leaf.not_after_ms,
            sha256: leaf.sha256,
            ca: cert.ca,
            client: cert.client,
            keypair: cert.keypair,
            revoked: cert.revoked,
        })
    }

    /// Where the leaf stands at `now_ms`.
    pub fn validity_at(&self, now_ms: i64) -> Validity {
        Validity::at(self.not_before_ms, self.not_after_ms, now_ms)
    }
}

/// Why a certificate entity did not make it into a snapshot.
#[derive(Debug, thiserror::Error)]
#[error("certificate `{id}`: {source}")]
pub struct CertificateError {
    /// The entity's id.
    pub id: String,
    /// Why.
    pub source: CertError,
}

/// Parses every certificate entity (in order) for a snapshot, and logs one warning per
/// certificate outside its validity at `now_ms` the first time this process sees it.
///
/// # Errors
/// The first certificate that does not parse.
pub fn build_all(
    certificates: &[Certificate],
    now_ms: i64,
) -> Result<Vec<CertificateRuntime>, CertificateError> {
    let mut out = Vec::with_capacity(certificates.len());
    for cert in certificates {
        let runtime = CertificateRuntime::from_entity(cert).map_err(|source| CertificateError {
            id: cert.id.clone(),
            source,
        })?;
        let validity = runtime.validity_at(now_ms);
        if validity != Validity::Valid && first_sighting(&runtime) {
            let (state, at) = match validity {
                Validity::Expired => ("expired", runtime.not_after_ms),
                _ => ("not yet valid", runtime.not_before_ms),
            };
            tracing::warn!(
                certificate = %runtime.id,
                state,
                since = %format_ms(at),
                "certificate outside its validity: kept, but a valid one is preferred"
            );
        }
        out.push(runtime);
    }
    Ok(out)
}

/// Whether this process has not yet warned about this certificate (id and leaf): snapshots are
/// rebuilt at every change and every name refresh, and one warning per certificate is enough.
fn first_sighting(runtime: &CertificateRuntime) -> bool {
    /// (certificate id, leaf fingerprint)
    type Seen = HashSet<(Box<str>, [u8; 32])>;
    static SEEN: OnceLock<Mutex<Seen>> = OnceLock::new();
    SEEN.get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert((runtime.id.clone(), runtime.sha256))
}

#[cfg(test)]
mod tests;
