//! The client certificate of a TLS connection, read once per connection (after the handshake
//! verified it) into the strings the flow's client-certificate plugins use.

use base64::Engine as _;
use rustls::pki_types::CertificateDer;
use sha2::Digest as _;
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate, X509Name};

use gateway_core::flow::{ChainEntry, ClientCert, normalise_serial};

/// The client certificate's strings, or `None` when the leaf does not parse (rustls verified
/// it, so that does not happen for a verified chain).
pub fn client_cert(chain: &[CertificateDer<'_>]) -> Option<ClientCert> {
    let leaf_der = chain.first()?;
    let (_, leaf) = X509Certificate::from_der(leaf_der.as_ref()).ok()?;
    let mut entries = Vec::with_capacity(chain.len());
    let mut json_chain = Vec::with_capacity(chain.len());
    let mut pem = String::new();
    for der in chain {
        let Ok((_, cert)) = X509Certificate::from_der(der.as_ref()) else {
            continue;
        };
        let subject = dn(cert.subject());
        let issuer = dn(cert.issuer());
        let serial = serial_hex(&cert);
        json_chain.push(serde_json::json!({
            "subjectDN": subject,
            "issuerDN": issuer,
            "notAfter": cert.validity().not_after.timestamp().saturating_mul(1000),
            "notBefore": cert.validity().not_before.timestamp().saturating_mul(1000),
            "serialNumber": serial,
            "subjectCN": common_name(cert.subject()).unwrap_or_else(|| subject.clone()),
            "issuerCN": common_name(cert.issuer()).unwrap_or_else(|| issuer.clone()),
        }));
        pem.push_str(&to_pem(der.as_ref()));
        entries.push(ChainEntry {
            subject,
            issuer,
            serial,
        });
    }
    let dns: Vec<&str> = entries.iter().map(|e| e.subject.as_str()).collect();
    Some(ClientCert {
        subject: dn(leaf.subject()),
        issuer: dn(leaf.issuer()),
        serial: serial_hex(&leaf),
        sans: sans(&leaf),
        sha256: hex(&sha2::Sha256::digest(leaf_der.as_ref())),
        pem_escaped: percent_encode(&pem),
        dns_json: serde_json::to_string(&dns).unwrap_or_default(),
        chain_json: serde_json::Value::Array(json_chain).to_string(),
        chain: entries,
    })
}

/// A DN as text, most specific attribute first (`CN=…, OU=…, O=…, C=…`, as Java prints it).
pub fn dn(name: &X509Name<'_>) -> String {
    let mut parts: Vec<String> = Vec::new();
    for rdn in name.iter() {
        for attr in rdn.iter() {
            let oid = attr.attr_type().to_id_string();
            let key = match oid.as_str() {
                "2.5.4.3" => "CN",
                "2.5.4.11" => "OU",
                "2.5.4.10" => "O",
                "2.5.4.7" => "L",
                "2.5.4.8" => "ST",
                "2.5.4.6" => "C",
                "2.5.4.9" => "STREET",
                "0.9.2342.19200300.100.1.25" => "DC",
                "0.9.2342.19200300.100.1.1" => "UID",
                "1.2.840.113549.1.9.1" => "EMAILADDRESS",
                _ => "",
            };
            let value = attr
                .as_str()
                .unwrap_or("")
                .replace('\\', "\\\\")
                .replace(',', "\\,");
            if key.is_empty() {
                parts.push(format!("{oid}={value}"));
            } else {
                parts.push(format!("{key}={value}"));
            }
        }
    }
    parts.reverse();
    parts.join(", ")
}

fn common_name(name: &X509Name<'_>) -> Option<String> {
    name.iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
}

fn serial_hex(cert: &X509Certificate<'_>) -> String {
    normalise_serial(&hex(cert.raw_serial()))
}

fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(ext)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    ext.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(s) | GeneralName::RFC822Name(s) | GeneralName::URI(s) => {
                Some((*s).to_owned())
            }
            GeneralName::IPAddress(ip) => match ip.len() {
                4 => <[u8; 4]>::try_from(*ip)
                    .ok()
                    .map(|b| std::net::Ipv4Addr::from(b).to_string()),
                16 => <[u8; 16]>::try_from(*ip)
                    .ok()
                    .map(|b| std::net::Ipv6Addr::from(b).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn to_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Percent-encodes everything but unreserved characters (a PEM chain as one header value, as
/// nginx's `$ssl_client_escaped_cert`).
fn percent_encode(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() * 3 / 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}
