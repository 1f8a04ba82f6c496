use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use super::Secret;
use crate::x509::{self, CertError, CertInfo};

/// A certificate (Otoroshi's `Cert`, `/api/certificates`): a PEM chain and, for a certificate
/// Tollgate serves or presents, its private key.
///
/// The private key is a [`Secret`]: never in `Debug`, sealed in the entity log, `***` in
/// every view. Fields Otoroshi computes from the certificate (`domain`, `subject`, `from`,
/// `to`, `sans`, `selfSigned`, `valid`) are read-only here too: [`Certificate::fill_derived`]
/// recomputes them from the leaf on every write, whatever was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    /// Unique id among certificates.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// PEM certificates: the leaf first, then the intermediates (as served).
    pub chain: String,
    /// PEM private key of the leaf (PKCS#8, PKCS#1 RSA or SEC1 EC, not encrypted); empty for a
    /// CA certificate that is only trusted.
    #[serde(default)]
    pub private_key: Secret,
    /// Id of the certificate entity of the CA that issued this one.
    #[serde(default)]
    pub ca_ref: Option<String>,
    /// Read-only: the leaf's common name (or first DNS name).
    #[serde(default)]
    pub domain: String,
    /// Read-only: the leaf's issuer is its subject.
    #[serde(default)]
    pub self_signed: bool,
    /// A CA certificate: trusted to verify client certificates and backends
    /// (`tls_config.trusted_certs`); the only kind that may come without a private key.
    #[serde(default)]
    pub ca: bool,
    /// A client certificate, presented to backends (`tls_config.certs`).
    #[serde(default)]
    pub client: bool,
    /// A key pair (Otoroshi signs JWTs with those); stored, not used by Tollgate yet.
    #[serde(default)]
    pub keypair: bool,
    /// Otoroshi publishes exposed public keys in its JWKS; Tollgate has no such endpoint, so
    /// `true` is refused (an Otoroshi import turns it off with a warning).
    #[serde(default)]
    pub exposed: bool,
    /// A revoked certificate is kept but never served, presented or trusted.
    #[serde(default)]
    pub revoked: bool,
    /// Automatic renewal: not supported (refused; turned off with a warning on import).
    #[serde(default)]
    pub auto_renew: bool,
    /// Let's Encrypt issuance and renewal: not supported (refused; turned off with a warning
    /// on import).
    #[serde(default)]
    pub lets_encrypt: bool,
    /// Read-only: the chain parses and the key matches the leaf (Otoroshi's meaning; dates
    /// are in `from` and `to`).
    #[serde(default)]
    pub valid: bool,
    /// Read-only: the leaf's subject DN (most specific RDN first).
    #[serde(default)]
    pub subject: String,
    /// Read-only: start of the leaf's validity, ms since the Unix epoch.
    #[serde(default)]
    pub from: i64,
    /// Read-only: end of the leaf's validity, ms since the Unix epoch.
    #[serde(default)]
    pub to: i64,
    /// Read-only: the leaf's subject alternative names.
    #[serde(default)]
    pub sans: Vec<String>,
    /// The password of an encrypted private key: not supported, must be empty or `null`.
    #[serde(default, skip_serializing)]
    pub password: Option<Secret>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// String metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Otoroshi's computed `certType`: accepted and dropped.
    #[serde(default, skip_serializing)]
    pub cert_type: Option<IgnoredAny>,
    /// Otoroshi's `entityMetadata`: accepted and dropped.
    #[serde(default, skip_serializing)]
    pub entity_metadata: Option<IgnoredAny>,
    /// Otoroshi's tenant and teams (`_loc`): accepted and dropped.
    #[serde(default, rename = "_loc", skip_serializing)]
    pub location: Option<IgnoredAny>,
}

/// The flags Tollgate cannot honour: `(JSON field, why)`. A Tollgate document or an admin
/// write with one of them `true` is refused; an Otoroshi import turns them off with a warning.
pub(crate) const UNSUPPORTED_FLAGS: [(&str, &str); 3] = [
    (
        "autoRenew",
        "not supported by Tollgate (certificates are not renewed automatically)",
    ),
    ("letsEncrypt", "not supported by Tollgate (no ACME client)"),
    (
        "exposed",
        "not supported by Tollgate (no JWKS of certificate public keys)",
    ),
];

/// The unsupported flags set on `cert`, as `(JSON field, why)`.
pub(crate) fn unsupported_flags(cert: &Certificate) -> Vec<(&'static str, &'static str)> {
    let set = [cert.auto_renew, cert.lets_encrypt, cert.exposed];
    UNSUPPORTED_FLAGS
        .iter()
        .zip(set)
        .filter(|(_, on)| *on)
        .map(|(flag, _)| *flag)
        .collect()
}

impl Certificate {
    /// The private key in PEM, when there is one (an empty `privateKey` is none).
    pub fn key_pem(&self) -> Option<&str> {
        Some(self.private_key.expose()).filter(|k| !k.trim().is_empty())
    }

    /// Reads the leaf certificate of the chain.
    ///
    /// # Errors
    /// When the chain is not PEM or its first certificate is not X.509.
    pub fn leaf(&self) -> Result<CertInfo, CertError> {
        let chain = x509::parse_pem_chain(&self.chain)?;
        let leaf = chain.first().ok_or(CertError::NoCertificate)?;
        x509::inspect(leaf)
    }

    /// Recomputes the read-only fields from the leaf (`domain`, `subject`, `from`, `to`,
    /// `sans`, `selfSigned`, `valid`), drops an empty `password` and the Otoroshi fields that
    /// are only tolerated, and normalises an empty `caRef` to none, so that the same
    /// certificate always reads back equal. Called on every write, after validation.
    ///
    /// # Errors
    /// When the chain does not parse (validation refuses such a certificate first).
    pub fn fill_derived(&mut self) -> Result<(), CertError> {
        let leaf = self.leaf()?;
        self.domain = leaf
            .common_name
            .clone()
            .or_else(|| leaf.dns_names().into_iter().next())
            .unwrap_or_default();
        self.subject = leaf.subject.clone();
        self.from = leaf.not_before_ms;
        self.to = leaf.not_after_ms;
        self.sans = leaf.sans.iter().map(ToString::to_string).collect();
        self.self_signed = leaf.self_issued;
        self.valid = true;
        if self.password.as_ref().is_some_and(Secret::is_empty) {
            self.password = None;
        }
        if self.ca_ref.as_deref().is_some_and(|r| r.trim().is_empty()) {
            self.ca_ref = None;
        }
        self.cert_type = None;
        self.entity_metadata = None;
        self.location = None;
        Ok(())
    }
}
