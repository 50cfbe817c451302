//! The streaming server's TLS: its serving certificate, and client certificates
//! signed by the cluster CA as the callers' identities.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use super::StreamingError;
use super::auth::Identity;

/// Reads the identity of a DER client certificate.
pub fn identity_of(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(Identity {
        user,
        groups,
        uid: None,
        extra: Default::default(),
    })
}

fn pem_err(e: impl std::fmt::Display) -> StreamingError {
    StreamingError::Tls(e.to_string())
}

/// A rustls configuration: HTTP/1.1 only (upgrades need it), client certificates
/// verified against `client_ca_pem` when presented (requests without one need a
/// bearer token).
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    client_ca_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, StreamingError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(pem_err)?;
    if certs.is_empty() {
        return Err(StreamingError::Tls("no serving certificate in PEM".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(pem_err)?;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        roots.add(c.map_err(pem_err)?).map_err(pem_err)?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(pem_err)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(pem_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(pem_err)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
