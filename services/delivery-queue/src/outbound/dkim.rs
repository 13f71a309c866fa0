//! DKIM signing (RFC 6376) of outgoing mail with the sending domain's key.
//!
//! Keys live in a directory with one subdirectory per domain, as a mounted Secret per domain:
//! `<dir>/<domain>/dkim.key` (PEM: RSA in PKCS#1 or PKCS#8, or Ed25519 in PKCS#8) and
//! `<dir>/<domain>/selector` (one line). A changed key file is read again at the next message.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use kubemail_runtime::deployment::file;
use mail_auth::common::crypto::{DkimKey, Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::{DkimSigner, Done};
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject as _;

/// Headers signed when present (and From always): what a reader sees and replies use.
const SIGNED_HEADERS: [&str; 12] = [
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// Signers per domain, loaded from the key directory on first use and when the key changes.
pub struct Keys {
    dir: PathBuf,
    loaded: Mutex<HashMap<String, Loaded>>,
}

struct Loaded {
    modified: SystemTime,
    signer: Arc<DkimSigner<DkimKey, Done>>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    #[error("{path}: not a PEM RSA or Ed25519 private key ({detail})")]
    Key { path: PathBuf, detail: String },
    #[error("{path}: the selector is empty or not a DNS label")]
    Selector { path: PathBuf },
}

impl Keys {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Keys { dir: dir.into(), loaded: Mutex::new(HashMap::new()) }
    }

    /// The `DKIM-Signature` header for `message` from `domain`, or `Ok(None)` when the domain
    /// has no key.
    pub fn sign(&self, domain: &str, message: &[u8]) -> Result<Option<String>, KeyError> {
        let domain = domain.to_ascii_lowercase();
        // A domain name from an address: never a path of its own.
        if domain.is_empty() || domain.contains(['/', '\\']) || domain.starts_with('.') {
            return Ok(None);
        }
        let Some(signer) = self.signer(&domain)? else {
            return Ok(None);
        };
        match signer.sign(message) {
            Ok(signature) => Ok(Some(signature.to_header())),
            // A message without any of the signed headers (not even From) goes unsigned.
            Err(error) => {
                tracing::warn!(%domain, %error, "message not DKIM-signed");
                Ok(None)
            }
        }
    }

    fn signer(&self, domain: &str) -> Result<Option<Arc<DkimSigner<DkimKey, Done>>>, KeyError> {
        let key_path = self.dir.join(domain).join(file::DKIM_KEY);
        let modified = match std::fs::metadata(&key_path).and_then(|meta| meta.modified()) {
            Ok(modified) => modified,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(KeyError::Io { path: key_path, error }),
        };
        let mut loaded = self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(current) = loaded.get(domain).filter(|current| current.modified == modified) {
            return Ok(Some(current.signer.clone()));
        }
        let key = read_key(&key_path)?;
        let selector = read_selector(&self.dir.join(domain).join(file::DKIM_SELECTOR))?;
        let signer = Arc::new(DkimSigner::from_key(key).domain(domain).selector(selector).headers(SIGNED_HEADERS));
        loaded.insert(domain.to_string(), Loaded { modified, signer: signer.clone() });
        Ok(Some(signer))
    }
}

fn read_key(path: &Path) -> Result<DkimKey, KeyError> {
    let pem = std::fs::read(path).map_err(|error| KeyError::Io { path: path.into(), error })?;
    let bad = |detail: String| KeyError::Key { path: path.into(), detail };
    let der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| bad(e.to_string()))?;
    if let PrivateKeyDer::Pkcs8(pkcs8) = &der
        && let Ok(ed25519) = Ed25519Key::from_pkcs8_maybe_unchecked_der(pkcs8.secret_pkcs8_der())
    {
        return Ok(DkimKey::Ed25519(ed25519));
    }
    RsaKey::<Sha256>::from_key_der(der).map(DkimKey::Rsa).map_err(|e| bad(e.to_string()))
}

fn read_selector(path: &Path) -> Result<String, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|error| KeyError::Io { path: path.into(), error })?;
    let selector = text.trim();
    let label =
        |part: &str| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if selector.split('.').all(label) {
        Ok(selector.to_string())
    } else {
        Err(KeyError::Selector { path: path.into() })
    }
}
