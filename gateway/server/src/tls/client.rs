//! TLS to upstream targets (`tls: true`): SNI from the target's host name, certificate
//! verification against the system's trust roots (or the target's `tls_config`), and never a
//! plaintext fallback: a failed handshake or verification fails the call with a 502.
//!
//! A config is built per target when the snapshot is built and shared read-only by the cores.
//! Resumption is off (rustls' client session cache takes a lock): upstream connections are
//! pooled, so handshakes are rare. Pooled connections are kept under the target's
//! [`UpstreamTls::identity`], so that one is only reused for the same name, trust and client
//! certificate it was made with.

use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

use crate::error::{GatewayError, GatewayErrorKind};

/// How far the upstream's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// Chain to a trusted root and the name (the default).
    #[default]
    Full,
    /// Chain, but not the name (Otoroshi's `loose`).
    Chain,
    /// Nothing but the handshake signatures (Otoroshi's `trust_all`); logged loudly.
    Nothing,
}

/// What one target's TLS needs.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// The rustls config.
    pub config: Arc<ClientConfig>,
    /// The name sent as SNI and verified.
    pub server_name: ServerName<'static>,
    /// A digest of everything the connection's security depends on: the name, the trust roots,
    /// the verification mode and the client certificate; never 0 (0 is plain TCP in
    /// [`crate::upstream::PoolKey`]). Two targets with equal identities may share connections.
    pub identity: u64,
}

/// The system's trust roots (Debian's `/etc/ssl/certs` via rustls-native-certs), loaded once.
pub fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!(
                    errors = found.errors.len(),
                    "no system trust roots found: TLS upstreams need tls_config.trusted_certs"
                );
            } else {
                tracing::debug!(added, ignored, "system trust roots loaded");
            }
            Arc::new(roots)
        })
        .clone()
}

/// What a target's TLS is made of.
#[derive(Debug)]
pub struct TargetTls<'a> {
    /// The target's host name (SNI and the verified name); an IP address is verified as one.
    pub hostname: &'a str,
    /// Trust roots (the system's unless the target names its own).
    pub roots: Arc<RootCertStore>,
    /// A client certificate for mTLS to the upstream.
    pub client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    /// How far the certificate is checked.
    pub verify: Verify,
}

/// Builds a target's TLS config.
///
/// # Errors
/// A [`GatewayErrorKind::Tls`] error: an invalid host name, or a client certificate rustls
/// refuses.
pub fn build(t: TargetTls<'_>) -> Result<UpstreamTls, GatewayError> {
    let identity = identity(&t);
    let provider = super::provider();
    let server_name = ServerName::try_from(t.hostname.to_owned()).map_err(GatewayError::map(
        GatewayErrorKind::Tls,
        format!("host name `{}`", t.hostname),
    ))?;
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| GatewayError::of(GatewayErrorKind::Tls, e))?;
    let builder = match t.verify {
        Verify::Full => builder.with_root_certificates(t.roots),
        Verify::Chain | Verify::Nothing => {
            let webpki = WebPkiServerVerifier::builder_with_provider(t.roots, provider.clone())
                .build()
                .map_err(|e| GatewayError::of(GatewayErrorKind::Tls, e))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient {
                    webpki,
                    provider: provider.clone(),
                    chain: t.verify == Verify::Chain,
                }))
        }
    };
    let mut config = match t.client_cert {
        Some((chain, key)) => {
            builder
                .with_client_auth_cert(chain, key)
                .map_err(GatewayError::map(
                    GatewayErrorKind::Tls,
                    "client certificate",
                ))?
        }
        None => builder.with_no_client_auth(),
    };
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(UpstreamTls {
        config: Arc::new(config),
        server_name,
        identity,
    })
}

/// SHA-256 over the name, the verification mode, every trust anchor and the client
/// certificate's chain (its key is bound to the leaf), each length-prefixed; the first 8 bytes,
/// never 0.
fn identity(t: &TargetTls<'_>) -> u64 {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let mut part = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    part(t.hostname.as_bytes());
    part(match t.verify {
        Verify::Full => b"full",
        Verify::Chain => b"chain",
        Verify::Nothing => b"nothing",
    });
    part(b"roots");
    for anchor in &t.roots.roots {
        part(anchor.subject.as_ref());
        part(anchor.subject_public_key_info.as_ref());
        part(anchor.name_constraints.as_deref().unwrap_or(b"-"));
    }
    part(b"client");
    if let Some((chain, _)) = &t.client_cert {
        for der in chain {
            part(der.as_ref());
        }
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    for (to, from) in first.iter_mut().zip(digest.iter()) {
        *to = *from;
    }
    u64::from_be_bytes(first).max(1)
}

/// `loose` (chain only) and `trust_all` (nothing) verification; the handshake signatures are
/// always checked.
#[derive(Debug)]
struct Lenient {
    webpki: Arc<WebPkiServerVerifier>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    chain: bool,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if !self.chain {
            return Ok(ServerCertVerified::assertion());
        }
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
