//! The verified client certificate of a TLS connection, as the flow sees it, and the route
//! plugins that read it (Otoroshi's names and configs):
//! - `NgHasClientCertValidator`: no verified client certificate → 401 `client_cert_required`;
//! - `NgHasClientCertMatchingValidator` (`serial_numbers`, `subject_dns`, `issuer_dns`,
//!   `regex_subject_dns`, `regex_issuer_dns`): no certificate → 401; one is admitted when any
//!   certificate of its chain matches any rule, otherwise 403 `client_cert_forbidden`.
//!   `subject_dns`/`issuer_dns` match the whole DN, `*` standing for any run of characters (as
//!   Otoroshi's `RegexPool` patterns); the `regex_*` lists are full-match regexes; serial numbers
//!   compare as lower-case hex without leading zeros;
//! - `NgClientCertChainHeader` (`send_pem`, `pem_header_name`, `send_dns`, `dns_header_name`,
//!   `send_chain`, `chain_header_name`): the certificate goes to the backend in headers (the PEM
//!   chain percent-encoded, as nginx's `$ssl_client_escaped_cert`, since PEM has line breaks).
//!
//! The certificate's strings are computed once per connection by the shell (it parses X.509);
//! checking them is allocation-free.

use regex::RegexSet;

use crate::error::CoreError;

/// One certificate of a client's chain, for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainEntry {
    /// Subject DN, RFC 4514 order (`CN=…, O=…`).
    pub subject: String,
    /// Issuer DN.
    pub issuer: String,
    /// Serial number, lower-case hex without leading zeros.
    pub serial: String,
}

/// A verified client certificate (the leaf first in `chain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    /// The leaf's subject DN.
    pub subject: String,
    /// The leaf's issuer DN.
    pub issuer: String,
    /// The leaf's serial number (lower-case hex).
    pub serial: String,
    /// The leaf's subject alternative names (DNS names, e-mails, URIs, IPs), as text.
    pub sans: Vec<String>,
    /// SHA-256 of the leaf's DER, lower-case hex.
    pub sha256: String,
    /// Every certificate the client sent.
    pub chain: Vec<ChainEntry>,
    /// The chain as PEM, percent-encoded (a header value).
    pub pem_escaped: String,
    /// JSON array of the chain's subject DNs.
    pub dns_json: String,
    /// JSON array of `{subjectDN, issuerDN, notAfter, notBefore, serialNumber, subjectCN,
    /// issuerCN}`, as Otoroshi's `NgClientCertChainHeader` sends it.
    pub chain_json: String,
}

/// Why a client-certificate plugin refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CertRejection {
    /// No verified client certificate: 401.
    Missing,
    /// A certificate, but none of the chain matches: 403.
    NotMatching,
}

/// `NgHasClientCertMatchingValidator`'s rules, compiled.
#[derive(Debug, Clone)]
pub struct CertMatch {
    serials: Vec<String>,
    subject: Option<RegexSet>,
    issuer: Option<RegexSet>,
}

/// `NgClientCertChainHeader`'s config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertHeaders {
    /// Field for the escaped PEM chain, when sent.
    pub pem: Option<Box<str>>,
    /// Field for the JSON array of subject DNs, when sent.
    pub dns: Option<Box<str>>,
    /// Field for the JSON chain, when sent.
    pub chain: Option<Box<str>>,
}

fn strings(config: &serde_json::Value, field: &str) -> Result<Vec<String>, CoreError> {
    match config.get(field) {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| CoreError::field(format!("{field}: expected strings")))
            })
            .collect(),
        Some(_) => Err(CoreError::field(format!(
            "{field}: expected an array of strings"
        ))),
    }
}

/// A `*`-wildcard DN pattern as a full-match regex (everything else literal).
fn wildcard(pattern: &str) -> String {
    pattern
        .split('*')
        .map(regex::escape)
        .collect::<Vec<_>>()
        .join(".*")
}

impl CertMatch {
    /// Compiles the plugin's config.
    ///
    /// # Errors
    /// A [`CoreError`] saying what is wrong, naming the config field.
    pub fn from_config(config: &serde_json::Value) -> Result<Self, CoreError> {
        let set = |exact: &str, regex: &str| -> Result<Option<RegexSet>, CoreError> {
            let mut patterns: Vec<String> = strings(config, exact)?
                .iter()
                .map(|p| format!("^(?:{})$", wildcard(p)))
                .collect();
            for p in strings(config, regex)? {
                patterns.push(format!("^(?:{p})$"));
            }
            if patterns.is_empty() {
                return Ok(None);
            }
            RegexSet::new(patterns)
                .map(Some)
                .map_err(|e| CoreError::regex(format!("{regex}: invalid regex: {e}")))
        };
        Ok(Self {
            serials: strings(config, "serial_numbers")?
                .iter()
                .map(|s| normalise_serial(s))
                .collect(),
            subject: set("subject_dns", "regex_subject_dns")?,
            issuer: set("issuer_dns", "regex_issuer_dns")?,
        })
    }

    /// Whether any certificate of the chain matches any rule.
    pub fn matches(&self, cert: &ClientCert) -> bool {
        cert.chain.iter().any(|c| {
            self.serials.contains(&c.serial)
                || self
                    .subject
                    .as_ref()
                    .is_some_and(|r| r.is_match(&c.subject))
                || self.issuer.as_ref().is_some_and(|r| r.is_match(&c.issuer))
        })
    }
}

/// Serial numbers compare as lower-case hex without leading zeros or separators.
pub fn normalise_serial(serial: &str) -> String {
    let hex: String = serial
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_owned()
    } else {
        trimmed.to_owned()
    }
}

impl CertHeaders {
    /// Reads the plugin's config.
    ///
    /// # Errors
    /// A [`CoreError`]: a field name that is not a token, or a value of the wrong type.
    pub fn from_config(config: &serde_json::Value) -> Result<Self, CoreError> {
        let flag = |f: &str| match config.get(f) {
            None | Some(serde_json::Value::Null) => Ok(false),
            Some(serde_json::Value::Bool(b)) => Ok(*b),
            Some(_) => Err(CoreError::field(format!("{f}: expected a boolean"))),
        };
        let name = |f: &str, default: &str| -> Result<Box<str>, CoreError> {
            let n = match config.get(f) {
                None | Some(serde_json::Value::Null) => default,
                Some(serde_json::Value::String(s)) => s.as_str(),
                Some(_) => return Err(CoreError::field(format!("{f}: expected a header name"))),
            };
            if gateway_model::validate::field_name_ok(n) {
                Ok(n.into())
            } else {
                Err(CoreError::field(format!(
                    "{f}: expected a header name (token), got {n:?}"
                )))
            }
        };
        Ok(Self {
            pem: flag("send_pem")?
                .then(|| name("pem_header_name", "X-Client-Cert-Pem"))
                .transpose()?,
            dns: flag("send_dns")?
                .then(|| name("dns_header_name", "X-Client-Cert-DNs"))
                .transpose()?,
            chain: flag("send_chain")?
                .then(|| name("chain_header_name", "X-Client-Cert-Chain"))
                .transpose()?,
        })
    }

    /// The fields to write for `cert`: (name, value).
    pub fn fields<'a>(&'a self, cert: &'a ClientCert) -> impl Iterator<Item = (&'a str, &'a str)> {
        [
            (self.pem.as_deref(), cert.pem_escaped.as_str()),
            (self.dns.as_deref(), cert.dns_json.as_str()),
            (self.chain.as_deref(), cert.chain_json.as_str()),
        ]
        .into_iter()
        .filter_map(|(name, value)| name.map(|n| (n, value)))
    }

    /// Whether `name` is one of the fields this plugin writes (the client's own are dropped).
    pub fn sets(&self, name: &[u8]) -> bool {
        [&self.pem, &self.dns, &self.chain]
            .into_iter()
            .flatten()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
    }
}
