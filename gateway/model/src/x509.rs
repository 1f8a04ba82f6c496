//! X.509 certificates and private keys as Tollgate reads them: PEM text to DER, the facts a
//! gateway needs about a certificate (names, validity, serial, fingerprint), and whether a
//! private key belongs to a certificate.
//!
//! One implementation for every reader: certificate entities (validation here, the snapshot's
//! runtime certificates in the gateway), the TLS listener's PEM files and the client
//! certificates a handshake verified. PEM is read with `rustls-pki-types`, certificates with
//! `x509-parser`, and the key check loads the key with rustls's ring provider and compares its
//! public key with the certificate's: no cryptography is written here.
//!
//! Pure functions of bytes: no files, no sockets, no clock (validity is compared with a `now`
//! the caller passes). Loading an ECDSA key draws randomness for its signing nonces (ring);
//! nothing else does. Errors never quote key material.

use std::fmt::Write as _;
use std::net::IpAddr;

use rustls::pki_types::pem::{PemObject, SectionKind};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate, X509Name};
use x509_parser::x509::{AttributeTypeAndValue, SubjectPublicKeyInfo};

pub use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why PEM text, a certificate or a key was refused. The messages name what is wrong and
/// never quote key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    /// The text is not well-formed PEM (bad base64, a section without its END line…).
    #[error("not valid PEM: {0}")]
    Pem(String),
    /// No `CERTIFICATE` section at all.
    #[error("no PEM `CERTIFICATE` section found")]
    NoCertificate,
    /// A chain holds something else than certificates (a private key pasted into `chain`
    /// would be stored and shown unsealed, so it is refused).
    #[error("PEM section {index} is {label}; a chain holds only `CERTIFICATE` sections")]
    NotACertificate {
        /// 0-based position among the PEM sections.
        index: usize,
        /// What it is (`a private key`, `a public key`, …).
        label: &'static str,
    },
    /// A `CERTIFICATE` section is not a DER X.509 certificate.
    #[error("certificate {index} is not a valid X.509 certificate: {reason}")]
    X509 {
        /// 0-based position in the chain (0 is the leaf).
        index: usize,
        /// What the parser said.
        reason: String,
    },
    /// No private key section.
    #[error("no PEM private key found (`PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`)")]
    NoPrivateKey,
    /// More than one private key section.
    #[error("{count} private keys found; expected one")]
    SeveralPrivateKeys {
        /// How many.
        count: usize,
    },
    /// The key is encrypted (`ENCRYPTED PRIVATE KEY`, or a legacy `Proc-Type: 4,ENCRYPTED`).
    #[error("encrypted private keys are not supported; decrypt it first")]
    EncryptedKey,
    /// The key is malformed or of a type rustls's ring provider cannot sign with (RSA keys
    /// outside 2048 to 4096 bits, P-521, DSA, …).
    #[error(
        "the private key is malformed or of an unsupported type \
         (expected RSA of 2048 to 4096 bits, ECDSA P-256 or P-384, or Ed25519)"
    )]
    UnsupportedKey,
    /// The key is not the one the certificate was issued for.
    #[error("the private key does not match the public key of the certificate")]
    KeyMismatch,
}

/// A subject alternative name of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectAltName {
    /// `dNSName`, as written in the certificate (may be a wildcard such as `*.example.com`).
    Dns(String),
    /// `iPAddress`.
    Ip(IpAddr),
    /// `rfc822Name` (an e-mail address).
    Email(String),
    /// `uniformResourceIdentifier`.
    Uri(String),
}

impl std::fmt::Display for SubjectAltName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dns(s) | Self::Email(s) | Self::Uri(s) => f.write_str(s),
            Self::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// What Tollgate knows about one certificate (see [`inspect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    /// Subject DN, RFC 4514 order (most specific RDN first) with `, ` between RDNs, as
    /// Otoroshi (Java) prints it: `CN=api.example.com, O=Example, C=FR`.
    pub subject: String,
    /// Issuer DN, same form.
    pub issuer: String,
    /// The subject's first common name, if any.
    pub common_name: Option<String>,
    /// Serial number, lower-case hex without leading zeros (`0` for zero).
    pub serial_hex: String,
    /// Subject alternative names, in certificate order.
    pub sans: Vec<SubjectAltName>,
    /// Start of validity, ms since the Unix epoch.
    pub not_before_ms: i64,
    /// End of validity, ms since the Unix epoch.
    pub not_after_ms: i64,
    /// SHA-256 of the DER bytes (the certificate's fingerprint).
    pub sha256: [u8; 32],
    /// Basic constraints say `cA: true`.
    pub is_ca: bool,
    /// Issuer and subject are the same name (a self-signed root or a self-signed leaf).
    pub self_issued: bool,
}

/// Where a certificate stands in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// `now` is before `notBefore`.
    NotYetValid,
    /// `notBefore <= now <= notAfter`.
    Valid,
    /// `now` is after `notAfter`.
    Expired,
}

impl Validity {
    /// Where a validity period `[not_before_ms, not_after_ms]` (both included) stands at
    /// `now_ms`; all ms since the Unix epoch.
    pub fn at(not_before_ms: i64, not_after_ms: i64, now_ms: i64) -> Self {
        if now_ms < not_before_ms {
            Self::NotYetValid
        } else if now_ms > not_after_ms {
            Self::Expired
        } else {
            Self::Valid
        }
    }
}

impl CertInfo {
    /// The DNS names a TLS client may reach this certificate by: its DNS SANs lower-cased
    /// (wildcards kept as `*.example.com`, a trailing dot dropped) or, only when it has no DNS
    /// SAN, its subject CN when that looks like a host name.
    pub fn dns_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .sans
            .iter()
            .filter_map(|s| match s {
                SubjectAltName::Dns(d) => Some(normalise_dns(d)),
                _ => None,
            })
            .filter(|d| !d.is_empty())
            .collect();
        if names.is_empty() {
            if let Some(cn) = &self.common_name {
                let cn = normalise_dns(cn);
                let hostlike = !cn.is_empty()
                    && cn
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._*".contains(&b));
                if hostlike {
                    names.push(cn);
                }
            }
        }
        names.dedup();
        names
    }

    /// Where the certificate stands at `now_ms` (ms since the Unix epoch).
    pub fn validity_at(&self, now_ms: i64) -> Validity {
        Validity::at(self.not_before_ms, self.not_after_ms, now_ms)
    }

    /// The fingerprint as lower-case hex (64 digits).
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
}

fn normalise_dns(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Whether the PEM text carries an encrypted private key: PKCS#8 `ENCRYPTED PRIVATE KEY`, or
/// OpenSSL's legacy `Proc-Type: 4,ENCRYPTED` header inside a key section.
fn is_encrypted(pem: &str) -> bool {
    pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") || pem.contains("Proc-Type: 4,ENCRYPTED")
}

fn section_label(kind: SectionKind) -> &'static str {
    match kind {
        SectionKind::Certificate => "a certificate",
        SectionKind::PublicKey => "a public key",
        SectionKind::RsaPrivateKey | SectionKind::PrivateKey | SectionKind::EcPrivateKey => {
            "a private key"
        }
        SectionKind::Crl => "a certificate revocation list",
        SectionKind::Csr => "a certificate signing request",
        _ => "not a certificate",
    }
}

/// The PEM sections of `pem` that rustls knows (certificates, public and private keys, …), in
/// order; other sections are skipped.
///
/// # Errors
/// [`CertError::Pem`] for malformed PEM.
pub fn pem_sections(pem: &str) -> Result<Vec<(SectionKind, Vec<u8>)>, CertError> {
    sections(pem)
}

/// The PEM sections of `pem` that rustls knows, in order.
fn sections(pem: &str) -> Result<Vec<(SectionKind, Vec<u8>)>, CertError> {
    <(SectionKind, Vec<u8>)>::pem_slice_iter(pem.as_bytes())
        .map(|s| s.map_err(|e| CertError::Pem(pem_reason(&e))))
        .collect()
}

/// A PEM error in words, without the bytes it may carry.
fn pem_reason(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { .. } => "a section has no `-----END …-----` line".to_owned(),
        Error::IllegalSectionStart { .. } => "malformed `-----BEGIN …-----` line".to_owned(),
        Error::Base64Decode(_) => "bad base64 inside a section".to_owned(),
        Error::SectionTooLarge => "a section is too large".to_owned(),
        _ => "unreadable".to_owned(),
    }
}

/// Reads a PEM certificate chain: every `CERTIFICATE` section, in order (for a served chain:
/// the leaf first, then the intermediates). Text outside the sections (comments, OpenSSL's
/// `Bag Attributes`) is ignored. Only checks the PEM layer: see [`inspect`] for the X.509 one.
///
/// # Errors
/// [`CertError::Pem`] for malformed PEM, [`CertError::NotACertificate`] when another section
/// (a private key above all) is mixed in, [`CertError::NoCertificate`] when there is none.
pub fn parse_pem_chain(pem: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        return Err(CertError::NotACertificate {
            index: 0,
            label: "a private key",
        });
    }
    let mut chain = Vec::new();
    for (index, (kind, der)) in sections(pem)?.into_iter().enumerate() {
        match kind {
            SectionKind::Certificate => chain.push(CertificateDer::from(der)),
            other => {
                return Err(CertError::NotACertificate {
                    index,
                    label: section_label(other),
                });
            }
        }
    }
    if chain.is_empty() {
        return Err(CertError::NoCertificate);
    }
    Ok(chain)
}

/// Reads one PEM private key: PKCS#8 (`PRIVATE KEY`), PKCS#1 RSA (`RSA PRIVATE KEY`) or SEC1
/// EC (`EC PRIVATE KEY`). Other sections (an `EC PARAMETERS` block, a certificate in the same
/// file) are ignored. Only checks the PEM layer: [`keys_match`] loads the key.
///
/// # Errors
/// [`CertError::EncryptedKey`] for an encrypted key, [`CertError::Pem`] for malformed PEM,
/// [`CertError::NoPrivateKey`] or [`CertError::SeveralPrivateKeys`] unless there is exactly one.
pub fn parse_pem_key(pem: &str) -> Result<PrivateKeyDer<'static>, CertError> {
    if is_encrypted(pem) {
        return Err(CertError::EncryptedKey);
    }
    let mut keys: Vec<PrivateKeyDer<'static>> = sections(pem)?
        .into_iter()
        .filter_map(|(kind, der)| PrivateKeyDer::from_pem(kind, der))
        .collect();
    match keys.len() {
        0 => Err(CertError::NoPrivateKey),
        1 => keys.pop().ok_or(CertError::NoPrivateKey),
        count => Err(CertError::SeveralPrivateKeys { count }),
    }
}

fn parse_der<'a>(der: &'a [u8], index: usize) -> Result<X509Certificate<'a>, CertError> {
    let bad = |reason: String| CertError::X509 { index, reason };
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(bad("trailing bytes after the certificate".to_owned())),
        Err(e) => Err(bad(e.to_string())),
    }
}

/// Reads what Tollgate needs of a DER certificate: names, serial, SANs, validity, fingerprint.
///
/// # Errors
/// [`CertError::X509`] (index 0) when the bytes are not one X.509 certificate.
pub fn inspect(der: &CertificateDer<'_>) -> Result<CertInfo, CertError> {
    inspect_at(der, 0)
}

/// [`inspect`] for the certificate at `index` of a chain (the index goes into the error).
///
/// # Errors
/// [`CertError::X509`] naming `index`.
pub fn inspect_at(der: &CertificateDer<'_>, index: usize) -> Result<CertInfo, CertError> {
    let cert = parse_der(der.as_ref(), index)?;
    let bad = |reason: String| CertError::X509 { index, reason };
    let mut sans = Vec::new();
    let mut is_ca = false;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => sans.push(SubjectAltName::Dns((*d).to_owned())),
                        GeneralName::RFC822Name(e) => {
                            sans.push(SubjectAltName::Email((*e).to_owned()));
                        }
                        GeneralName::URI(u) => sans.push(SubjectAltName::Uri((*u).to_owned())),
                        GeneralName::IPAddress(bytes) => {
                            if let Some(ip) = ip_from(bytes) {
                                sans.push(SubjectAltName::Ip(ip));
                            }
                        }
                        _ => {}
                    }
                }
            }
            ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
            ParsedExtension::ParseError { error } if ext.critical => {
                return Err(bad(format!("critical extension unreadable: {error}")));
            }
            _ => {}
        }
    }
    let validity = cert.validity();
    let common_name = cert.subject().iter_common_name().next().and_then(atv_text);
    let serial = cert.raw_serial();
    let trimmed: &[u8] = match serial.iter().position(|b| *b != 0) {
        Some(i) => serial.get(i..).unwrap_or_default(),
        None => &[],
    };
    let mut serial_hex = hex(trimmed);
    if let Some(stripped) = serial_hex.strip_prefix('0') {
        serial_hex = stripped.to_owned();
    }
    if serial_hex.is_empty() {
        serial_hex.push('0');
    }
    Ok(CertInfo {
        subject: dn_string(cert.subject()),
        issuer: dn_string(cert.issuer()),
        common_name,
        serial_hex,
        sans,
        not_before_ms: validity.not_before.timestamp().saturating_mul(1000),
        not_after_ms: validity.not_after.timestamp().saturating_mul(1000),
        sha256: Sha256::digest(der.as_ref()).into(),
        is_ca,
        self_issued: cert.subject().as_raw() == cert.issuer().as_raw(),
    })
}

fn ip_from(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::from(v4));
    }
    <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from)
}

/// A DN in RFC 4514 order (the last RDN of the encoding first), `, ` between RDNs, `+` inside
/// a multi-valued RDN, values escaped as RFC 4514 says; a value that is not a string is written
/// `#` and its DER in hex.
fn dn_string(name: &X509Name<'_>) -> String {
    let registry = x509_parser::objects::oid_registry();
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| {
            let parts: Vec<String> = rdn
                .iter()
                .map(|atv| {
                    let oid = atv.attr_type();
                    let key = x509_parser::objects::oid2abbrev(oid, registry)
                        .map_or_else(|_| oid.to_id_string(), str::to_owned);
                    let value = match atv_text(atv) {
                        Some(s) => escape_dn_value(&s),
                        None => format!("#{}", hex(atv.as_slice())),
                    };
                    format!("{key}={value}")
                })
                .collect();
            parts.join("+")
        })
        .collect();
    let mut out = String::new();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(rdn);
    }
    out
}

/// The text of a DN attribute. Strings the parser refuses for their declared type are read
/// when their bytes are printable UTF-8: old tools write `*.example.com` as a PrintableString,
/// whose alphabet has no `*`.
fn atv_text(atv: &AttributeTypeAndValue<'_>) -> Option<String> {
    if let Ok(s) = atv.as_str() {
        return Some(s.to_owned());
    }
    std::str::from_utf8(atv.as_slice())
        .ok()
        .filter(|s| !s.is_empty() && !s.chars().any(char::is_control))
        .map(str::to_owned)
}

fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
            out.push(c);
        } else if c.is_control() {
            let _ = write!(out, "\\{:02x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `key` is the private key of the certificate `leaf`: the key is loaded with rustls's
/// ring provider (so what passes here is a key the TLS listener can sign with) and its public
/// key compared with the certificate's.
///
/// # Errors
/// [`CertError::UnsupportedKey`] when the key does not load, [`CertError::X509`] when the
/// certificate does not parse, [`CertError::KeyMismatch`] when they are not a pair.
pub fn keys_match(leaf: &CertificateDer<'_>, key: &PrivateKeyDer<'_>) -> Result<(), CertError> {
    let signing = rustls::crypto::ring::sign::any_supported_type(key)
        .map_err(|_| CertError::UnsupportedKey)?;
    let spki = signing.public_key().ok_or(CertError::UnsupportedKey)?;
    let (_, from_key) =
        SubjectPublicKeyInfo::from_der(spki.as_ref()).map_err(|_| CertError::UnsupportedKey)?;
    let cert = parse_der(leaf.as_ref(), 0)?;
    // The key bits, not the whole SubjectPublicKeyInfo: an RSA algorithm identifier may be
    // written with or without its NULL parameters.
    let from_cert = &cert.public_key().subject_public_key.data;
    if from_key.algorithm.algorithm == cert.public_key().algorithm.algorithm
        && from_key.subject_public_key.data == *from_cert
    {
        Ok(())
    } else {
        Err(CertError::KeyMismatch)
    }
}

/// Formats ms since the Unix epoch as a UTC date for messages (`Dec  7 10:58:45 2019 +00:00`).
pub fn format_ms(ms: i64) -> String {
    x509_parser::time::ASN1Time::from_timestamp(ms.div_euclid(1000))
        .map_or_else(|_| format!("{ms} ms"), |t| t.to_string())
}

#[cfg(test)]
mod tests;
