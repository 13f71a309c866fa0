//! A component's identity in use: its certificate, key and CA, and the rustls settings of both
//! ends made from them, swapped whole when the identity is renewed. Connections made after a
//! renewal use the new certificate; open ones keep theirs until they end (the mailstore ends
//! each after an hour at most, see `MAX_CONNECTION_AGE` there).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::authority::{CertificateAuthority, IssuedIdentity};
use super::{CA_FILE, IdentityError, Role};
use crate::tls::{CERTIFICATE_FILE, KEY_FILE};

/// gRPC is HTTP/2; both ends say so in the handshake.
const ALPN_H2: &[u8] = b"h2";

/// One component's identity, kept current.
pub struct ServiceIdentity {
    role: Role,
    source: Source,
    current: RwLock<Arc<Settings>>,
}

/// Where renewed identities come from.
enum Source {
    /// A directory laid out as a TLS Secret with `ca.crt` (cert-manager's, or the operator's),
    /// re-read when its files change.
    Files { dir: PathBuf, stamps: Mutex<Stamps> },
    /// An identity handed over whole (read from a Secret through the API); whoever holds it
    /// makes a new one when that one is renewed.
    Fixed,
    /// A CA at hand: the identity is issued here, again once two thirds of its life are gone.
    Authority { authority: Box<CertificateAuthority>, validity: Duration, renew_at: Mutex<SystemTime> },
}

type Stamps = BTreeMap<PathBuf, (SystemTime, u64)>;

/// The rustls settings of one version of the identity.
struct Settings {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl ServiceIdentity {
    /// The identity of `role` in `dir` (`tls.crt`, `tls.key`, `ca.crt`), as mounted from a
    /// Secret. The certificate must name `role`: a Secret mounted into the wrong component is a
    /// configuration error, found at start.
    pub fn from_dir(role: Role, dir: &Path) -> Result<Arc<ServiceIdentity>, IdentityError> {
        let stamps = stamps(dir);
        let settings = settings(role, &read_identity(dir)?, dir)?;
        Ok(Arc::new(ServiceIdentity {
            role,
            source: Source::Files { dir: dir.to_path_buf(), stamps: Mutex::new(stamps) },
            current: RwLock::new(Arc::new(settings)),
        }))
    }

    /// The identity of `role`, issued by `authority` for `validity` and renewed before it ends.
    pub fn from_authority(
        role: Role,
        authority: CertificateAuthority,
        validity: Duration,
    ) -> Result<Arc<ServiceIdentity>, IdentityError> {
        let issued = authority.issue(role, validity)?;
        let settings = settings(role, &issued, Path::new("<issued>"))?;
        Ok(Arc::new(ServiceIdentity {
            role,
            source: Source::Authority {
                authority: Box::new(authority),
                validity,
                renew_at: Mutex::new(renewal_time(validity)),
            },
            current: RwLock::new(Arc::new(settings)),
        }))
    }

    /// `identity`, as it is; [`ServiceIdentity::renew`] never changes it.
    pub fn from_issued(role: Role, identity: &IssuedIdentity) -> Result<Arc<ServiceIdentity>, IdentityError> {
        let settings = settings(role, identity, Path::new("<given>"))?;
        Ok(Arc::new(ServiceIdentity { role, source: Source::Fixed, current: RwLock::new(Arc::new(settings)) }))
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The settings of a server that requires a client certificate from the same CA.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current().server.clone()
    }

    /// The settings of a client that presents this identity and checks the server's.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.current().client.clone()
    }

    fn current(&self) -> Arc<Settings> {
        self.current.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Takes a renewed identity into use if there is one; `Ok(true)` when it did. An identity
    /// that fails to load leaves the current one in use.
    pub fn renew(&self) -> Result<bool, IdentityError> {
        let settings = match &self.source {
            Source::Fixed => return Ok(false),
            Source::Files { dir, stamps: known } => {
                let now = stamps(dir);
                let mut known = known.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if *known == now {
                    return Ok(false);
                }
                // Remembered before loading: a broken file is reported once, not on every tick.
                *known = now;
                settings(self.role, &read_identity(dir)?, dir)?
            }
            Source::Authority { authority, validity, renew_at } => {
                let mut renew_at = renew_at.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if SystemTime::now() < *renew_at {
                    return Ok(false);
                }
                let settings = settings(self.role, &authority.issue(self.role, *validity)?, Path::new("<issued>"))?;
                *renew_at = renewal_time(*validity);
                settings
            }
        };
        *self.current.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(settings);
        tracing::info!(role = %self.role, "service identity renewed");
        Ok(true)
    }

    /// Renews the identity every `interval` until `shutdown` when there is a new one.
    pub async fn watch(self: Arc<Self>, interval: Duration, shutdown: impl std::future::Future<Output = ()>) {
        crate::shutdown::every(interval, shutdown, || {
            if let Err(error) = self.renew() {
                tracing::warn!(%error, role = %self.role, "service identity not renewed; the current one stays in use");
            }
        })
        .await
    }
}

/// When an identity valid for `validity` from now is renewed: with a third of its life left.
fn renewal_time(validity: Duration) -> SystemTime {
    SystemTime::now() + validity * 2 / 3
}

fn read_identity(dir: &Path) -> Result<IssuedIdentity, IdentityError> {
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read_to_string(&path).map_err(|e| IdentityError::File { path, message: e.to_string() })
    };
    Ok(IssuedIdentity { certificate: read(CERTIFICATE_FILE)?, key: read(KEY_FILE)?, ca: read(CA_FILE)? })
}

fn settings(role: Role, identity: &IssuedIdentity, origin: &Path) -> Result<Settings, IdentityError> {
    let bad = |message: String| IdentityError::File { path: origin.to_path_buf(), message };
    let chain = CertificateDer::pem_slice_iter(identity.certificate.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("{CERTIFICATE_FILE}: {e}")))?;
    let Some(leaf) = chain.first() else { return Err(bad(format!("{CERTIFICATE_FILE}: no certificate"))) };
    match super::role_of_certificate(leaf) {
        Some(named) if named == role => {}
        Some(named) => return Err(bad(format!("the certificate is the identity of {named}, not of {role}"))),
        None => return Err(bad(format!("the certificate names no role; {role}'s must name {}", role.dns_name()))),
    }
    let key = PrivateKeyDer::from_pem_slice(identity.key.as_bytes()).map_err(|e| bad(format!("{KEY_FILE}: {e}")))?;
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(identity.ca.as_bytes()) {
        roots.add(ca.map_err(|e| bad(format!("{CA_FILE}: {e}")))?).map_err(|e| bad(format!("{CA_FILE}: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad(format!("{CA_FILE}: no CA certificate")));
    }
    let roots = Arc::new(roots);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| bad(format!("{CA_FILE}: {e}")))?;
    let mut server = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())?;
    server.alpn_protocols = vec![ALPN_H2.to_vec()];
    let mut client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    client.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Settings { server: Arc::new(server), client: Arc::new(client) })
}

/// Modification time and length of the identity's files, following the symlinks of a mounted
/// Secret, to notice a renewal.
fn stamps(dir: &Path) -> Stamps {
    [CA_FILE, CERTIFICATE_FILE, KEY_FILE]
        .into_iter()
        .filter_map(|file| {
            let path = dir.join(file);
            let metadata = std::fs::metadata(&path).ok()?;
            Some((path, (metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH), metadata.len())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_of_another_role_or_none_is_refused_at_start() {
        let authority = CertificateAuthority::generate("test").unwrap();
        let dir = tempfile::tempdir().unwrap();
        authority.issue(Role::ImapFrontend, Duration::from_secs(3600)).unwrap().write(dir.path()).unwrap();
        assert!(ServiceIdentity::from_dir(Role::ImapFrontend, dir.path()).is_ok());
        let error = ServiceIdentity::from_dir(Role::Mailstore, dir.path()).err().unwrap().to_string();
        assert!(error.contains("identity of imap-frontend, not of mailstore"), "{error}");

        let stranger = crate::tls::self_signed(&["mail.example.org".into()]).unwrap();
        let identity = IssuedIdentity {
            certificate: stranger.certificate,
            key: stranger.key,
            ca: authority.certificate_pem().into(),
        };
        identity.write(dir.path()).unwrap();
        let error = ServiceIdentity::from_dir(Role::ImapFrontend, dir.path()).err().unwrap().to_string();
        assert!(error.contains("names no role"), "{error}");
    }

    #[test]
    fn a_renewed_secret_is_taken_into_use_and_a_broken_one_is_not() {
        let authority = CertificateAuthority::generate("test").unwrap();
        let dir = tempfile::tempdir().unwrap();
        authority.issue(Role::Mailstore, Duration::from_secs(3600)).unwrap().write(dir.path()).unwrap();
        let identity = ServiceIdentity::from_dir(Role::Mailstore, dir.path()).unwrap();
        let first = identity.server_config();
        assert!(!identity.renew().unwrap(), "nothing changed");
        authority.issue(Role::Mailstore, Duration::from_secs(7200)).unwrap().write(dir.path()).unwrap();
        assert!(identity.renew().unwrap());
        assert!(!Arc::ptr_eq(&first, &identity.server_config()));
        let renewed = identity.server_config();
        std::fs::write(dir.path().join(KEY_FILE), "not a key").unwrap();
        assert!(identity.renew().is_err());
        assert!(Arc::ptr_eq(&renewed, &identity.server_config()), "the last good identity stays in use");
    }
}
