//! TLS client settings for outbound SMTP.
//!
//! Between MTAs, STARTTLS is opportunistic (`kubemail_runtime::tls::opportunistic_client`): a
//! server's certificate is not checked, as no name to check it against is authenticated
//! without DANE or MTA-STS, and refusing mail over a self-signed certificate would only push it
//! to plain text. A relay host is different: it is named in the configuration, so its
//! certificate is verified (web PKI roots, plus a CA file for a private relay).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use rustls::{ClientConfig, RootCertStore};

/// Verifies the server's certificate against the web PKI roots and the certificates in
/// `extra_roots` (PEM), if given.
pub fn verified(extra_roots: Option<&Path>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(path) = extra_roots {
        let certificates = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("{}: {e}", path.display()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if certificates.is_empty() {
            return Err(format!("{}: no certificate in it", path.display()));
        }
        for certificate in certificates {
            roots.add(certificate).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
