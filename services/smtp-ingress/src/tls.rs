//! TLS for the SMTP listeners: server configurations from PEM files, and self-signed
//! certificates for `kubemail dev` and tests.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("private key: {0}")]
    Key(String),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A certificate chain and its key, both PEM.
#[derive(Clone, Debug)]
pub struct PemPair {
    pub certificate: String,
    pub key: String,
}

/// A self-signed certificate for `names` (DNS names or IP addresses).
pub fn self_signed(names: &[String]) -> Result<PemPair, TlsError> {
    let generated = rcgen::generate_simple_self_signed(names.to_vec())?;
    Ok(PemPair { certificate: generated.cert.pem(), key: generated.signing_key.serialize_pem() })
}

/// A server configuration presenting `pair`, TLS 1.2 and 1.3, ring's algorithms.
pub fn server_config(pair: &PemPair) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(pair.certificate.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    if chain.is_empty() {
        return Err(TlsError::Certificate("no certificate in the PEM data".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(pair.key.as_bytes()).map_err(|e| TlsError::Key(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}
