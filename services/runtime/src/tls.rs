//! TLS for the mail listeners (SMTP, IMAP): one certificate per domain, chosen by SNI and reloaded when its
//! files change; self-signed certificates for `kubemail dev` and tests; and the client settings
//! of opportunistic STARTTLS, which checks no certificate.
//!
//! The certificate directory holds one subdirectory per domain with `tls.crt` (the chain, PEM)
//! and `tls.key`: the layout of a Kubernetes TLS Secret mounted as a volume, so cert-manager
//! renewals reach the server without a restart. A client asking for `mx.example.org` gets the
//! certificate of `mx.example.org/`, else of its closest parent domain (`example.org/`), else
//! the default one (`default/`, or the first domain in name order).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::shutdown::Shutdown;

/// A certificate chain and its key, in a domain's subdirectory (a mounted TLS Secret).
pub use crate::deployment::file::{CERTIFICATE as CERTIFICATE_FILE, KEY as KEY_FILE};
/// The subdirectory served when SNI names no known domain.
pub const DEFAULT_DOMAIN: &str = "default";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("no certificate directories (*/tls.crt and */tls.key) in {0}")]
    Empty(PathBuf),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// Client settings that encrypt without checking who is at the other end: opportunistic
/// STARTTLS between MTAs, and tests that must see whichever certificate a server presents.
pub fn opportunistic_client() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

/// Accepts any certificate, but still checks that the handshake is signed by its key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, certificate, signature, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, certificate, signature, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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

/// Writes `pair` as `dir/domain/tls.crt` and `tls.key` (the key readable by the owner only).
pub fn write_pair(dir: &Path, domain: &str, pair: &PemPair) -> std::io::Result<()> {
    let domain_dir = dir.join(domain);
    std::fs::create_dir_all(&domain_dir)?;
    std::fs::write(domain_dir.join(CERTIFICATE_FILE), &pair.certificate)?;
    let key = domain_dir.join(KEY_FILE);
    std::fs::write(&key, &pair.key)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// A server's TLS: the certificates it presents and the acceptor that does its handshakes. Made
/// from a directory it may be offered before any certificate is there, as a pod starts before
/// cert-manager has issued its certificate: until one appears, [`ServerTls::acceptor`] is
/// `None`, so STARTTLS is not offered and implicit-TLS connections are closed.
#[derive(Clone)]
pub struct ServerTls {
    store: Arc<CertificateStore>,
    acceptor: TlsAcceptor,
}

impl ServerTls {
    /// The certificates in `dir`, re-read every `reload_interval` until `shutdown`. An empty
    /// directory is not an error: its first certificate is taken into service when it appears.
    pub fn from_dir(dir: &Path, reload_interval: Duration, shutdown: &Shutdown) -> Result<ServerTls, TlsError> {
        let store = CertificateStore::unloaded(dir);
        match store.load() {
            Ok(()) => {}
            Err(TlsError::Empty(dir)) => tracing::warn!(
                dir = %dir.display(),
                "no TLS certificate yet: STARTTLS and implicit TLS are offered once one appears"
            ),
            Err(error) => return Err(error),
        }
        let store = Arc::new(store);
        tokio::spawn(store.clone().watch(reload_interval, shutdown.wait()));
        ServerTls::new(store)
    }

    /// Presents `pair` whatever name the client asks for.
    pub fn from_pair(pair: &PemPair) -> Result<ServerTls, TlsError> {
        let key = certified_key(pair, Path::new("<memory>"))?;
        ServerTls::new(Arc::new(CertificateStore { dir: PathBuf::new(), loaded: RwLock::new(Loaded::single(key)) }))
    }

    fn new(store: Arc<CertificateStore>) -> Result<ServerTls, TlsError> {
        Ok(ServerTls { acceptor: TlsAcceptor::from(store_config(store.clone())?), store })
    }

    /// The acceptor, once there is a certificate to present.
    pub fn acceptor(&self) -> Option<TlsAcceptor> {
        self.store.has_certificate().then(|| self.acceptor.clone())
    }
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls").field("store", &self.store).finish()
    }
}

/// A server configuration that asks `store` for the certificate of each handshake.
pub fn store_config(store: Arc<CertificateStore>) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(store);
    Ok(Arc::new(config))
}

/// The certificates of a directory, by domain, kept current by [`CertificateStore::reload`].
pub struct CertificateStore {
    dir: PathBuf,
    loaded: RwLock<Loaded>,
}

#[derive(Default)]
struct Loaded {
    by_domain: BTreeMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    /// What the files looked like when read, to notice a change.
    stamps: BTreeMap<PathBuf, (SystemTime, u64)>,
}

impl Loaded {
    fn single(key: Arc<CertifiedKey>) -> Self {
        Loaded { default: Some(key), ..Default::default() }
    }
}

impl fmt::Debug for CertificateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let domains: Vec<String> =
            self.loaded.read().map(|l| l.by_domain.keys().cloned().collect()).unwrap_or_default();
        f.debug_struct("CertificateStore").field("dir", &self.dir).field("domains", &domains).finish()
    }
}

impl CertificateStore {
    /// Loads every `dir/<domain>/tls.{crt,key}`; at least one must be valid.
    pub fn open(dir: &Path) -> Result<CertificateStore, TlsError> {
        let store = CertificateStore::unloaded(dir);
        store.load()?;
        Ok(store)
    }

    /// The store of `dir`, nothing read yet.
    fn unloaded(dir: &Path) -> CertificateStore {
        CertificateStore { dir: dir.to_path_buf(), loaded: RwLock::new(Loaded::default()) }
    }

    /// Whether there is a certificate to present.
    pub fn has_certificate(&self) -> bool {
        self.loaded.read().is_ok_and(|loaded| loaded.default.is_some())
    }

    /// The domains with a certificate.
    pub fn domains(&self) -> Vec<String> {
        self.loaded.read().map(|l| l.by_domain.keys().cloned().collect()).unwrap_or_default()
    }

    /// Reads the directory again if any file changed (or appeared, or went). A certificate that
    /// fails to load keeps its previous version in service.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let stamps = stamps(&self.dir);
        if self.loaded.read().is_ok_and(|loaded| loaded.stamps == stamps) {
            return Ok(false);
        }
        self.load()?;
        Ok(true)
    }

    fn load(&self) -> Result<(), TlsError> {
        let stamps = stamps(&self.dir);
        let previous: BTreeMap<String, Arc<CertifiedKey>> =
            self.loaded.read().map(|l| l.by_domain.clone()).unwrap_or_default();
        let mut by_domain = BTreeMap::new();
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| TlsError::File { path: self.dir.clone(), message: e.to_string() })?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(domain) = path.file_name().and_then(|n| n.to_str()).map(str::to_lowercase) else { continue };
            // Kubernetes volume internals (`..data`, `..2026_…`) are not domains.
            if domain.starts_with('.') || !path.join(CERTIFICATE_FILE).exists() {
                continue;
            }
            match read_pair(&path).and_then(|pair| certified_key(&pair, &path)) {
                Ok(key) => {
                    by_domain.insert(domain, key);
                }
                Err(error) => {
                    tracing::warn!(%error, "certificate not loaded");
                    if let Some(key) = previous.get(&domain) {
                        by_domain.insert(domain, key.clone());
                    }
                }
            }
        }
        if by_domain.is_empty() {
            return Err(TlsError::Empty(self.dir.clone()));
        }
        let default = by_domain.get(DEFAULT_DOMAIN).or_else(|| by_domain.values().next()).cloned();
        let mut loaded = self.loaded.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *loaded = Loaded { by_domain, default, stamps };
        tracing::info!(domains = ?loaded.by_domain.keys().collect::<Vec<_>>(), "TLS certificates loaded");
        Ok(())
    }

    /// The certificate for a client asking for `server_name`.
    fn resolve_name(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let loaded = self.loaded.read().ok()?;
        let mut name = server_name.map(|n| n.trim_end_matches('.').to_lowercase());
        while let Some(candidate) = name {
            if let Some(key) = loaded.by_domain.get(&candidate) {
                return Some(key.clone());
            }
            name = candidate.split_once('.').map(|(_, parent)| parent.to_string()).filter(|p| p.contains('.'));
        }
        loaded.default.clone()
    }

    /// Checks the directory every `interval` until `shutdown`, reloading what changed.
    pub async fn watch(self: Arc<Self>, interval: Duration, shutdown: impl std::future::Future<Output = ()>) {
        crate::shutdown::every(interval, shutdown, || {
            if let Err(error) = self.reload() {
                tracing::warn!(%error, "TLS certificates not reloaded; the loaded ones stay in service");
            }
        })
        .await
    }
}

impl ResolvesServerCert for CertificateStore {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.resolve_name(client_hello.server_name())
    }
}

/// Modification time and length of every file under `dir` (one level of subdirectories),
/// following symlinks as a mounted Secret's files are.
fn stamps(dir: &Path) -> BTreeMap<PathBuf, (SystemTime, u64)> {
    let mut stamps = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return stamps };
    for entry in entries.flatten() {
        for file in [CERTIFICATE_FILE, KEY_FILE] {
            let path = entry.path().join(file);
            if let Ok(metadata) = std::fs::metadata(&path) {
                stamps.insert(path, (metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH), metadata.len()));
            }
        }
    }
    stamps
}

fn read_pair(dir: &Path) -> Result<PemPair, TlsError> {
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read_to_string(&path).map_err(|e| TlsError::File { path, message: e.to_string() })
    };
    Ok(PemPair { certificate: read(CERTIFICATE_FILE)?, key: read(KEY_FILE)? })
}

fn certified_key(pair: &PemPair, origin: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let bad = |message: String| TlsError::File { path: origin.to_path_buf(), message };
    let chain = CertificateDer::pem_slice_iter(pair.certificate.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("certificate: {e}")))?;
    if chain.is_empty() {
        return Err(bad("no certificate in the PEM data".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(pair.key.as_bytes()).map_err(|e| bad(format!("private key: {e}")))?;
    let signing_key =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(|e| bad(format!("private key: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(chain, signing_key)))
}

/// The byte stream of a mail session: plain TCP (or an in-memory stream in tests), or TLS over
/// it after an implicit-TLS handshake or STARTTLS.
pub enum Connection<S> {
    Plain(S),
    Tls(Box<TlsStream<S>>),
    /// Only while a STARTTLS handshake owns the stream.
    Upgrading,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Replaces the plain stream with TLS (STARTTLS, after the server's go-ahead went out).
    pub async fn start_tls(&mut self, acceptor: &TlsAcceptor) -> std::io::Result<()> {
        let Connection::Plain(stream) = std::mem::replace(self, Connection::Upgrading) else {
            return Err(std::io::Error::other("STARTTLS on a connection that is not plain"));
        };
        *self = Connection::Tls(Box::new(acceptor.accept(stream).await?));
        Ok(())
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Connection::Tls(_))
    }

    /// The negotiated TLS version and cipher suite, e.g. for a Received header.
    pub fn tls_description(&self) -> Option<String> {
        let Connection::Tls(stream) = self else { return None };
        let (_, session) = stream.get_ref();
        let version = session.protocol_version()?.as_str()?.replace("TLSv1_", "TLSv1.");
        let suite = session.negotiated_cipher_suite()?.suite().as_str()?.to_string();
        Some(format!("{version} with cipher {suite}"))
    }

    /// The server name the client asked for in its TLS handshake.
    pub fn tls_server_name(&self) -> Option<&str> {
        let Connection::Tls(stream) = self else { return None };
        stream.get_ref().1.server_name()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Connection<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Connection::Tls(stream) => Pin::new(stream).poll_read(cx, buf),
            Connection::Upgrading => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Connection<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Connection::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
            Connection::Upgrading => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Connection::Tls(stream) => Pin::new(stream).poll_flush(cx),
            Connection::Upgrading => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Connection::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            Connection::Tls(stream) => Pin::new(stream).poll_shutdown(cx),
            Connection::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(key: &CertifiedKey) -> Vec<u8> {
        key.cert[0].to_vec()
    }

    #[test]
    fn sni_picks_the_domain_then_its_parent_then_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let pairs: Vec<_> = ["example.org", "mx.example.net", "default"]
            .iter()
            .map(|domain| {
                let pair = self_signed(&[domain.to_string()]).unwrap();
                write_pair(dir.path(), domain, &pair).unwrap();
                (domain.to_string(), pair)
            })
            .collect();
        let store = CertificateStore::open(dir.path()).unwrap();
        let der = |domain: &str| {
            let pair = &pairs.iter().find(|(d, _)| d == domain).unwrap().1;
            CertificateDer::pem_slice_iter(pair.certificate.as_bytes()).next().unwrap().unwrap().to_vec()
        };
        let served = |name: Option<&str>| fingerprint(&store.resolve_name(name).unwrap());
        assert_eq!(served(Some("example.org")), der("example.org"));
        assert_eq!(served(Some("MX.Example.ORG.")), der("example.org"), "parent domain, any case");
        assert_eq!(served(Some("mx.example.net")), der("mx.example.net"));
        assert_eq!(served(Some("example.net")), der("default"), "a child's certificate is not the parent's");
        assert_eq!(served(None), der("default"));
    }

    #[test]
    fn changed_files_are_reloaded_and_broken_ones_keep_the_old_certificate() {
        let dir = tempfile::tempdir().unwrap();
        write_pair(dir.path(), "example.org", &self_signed(&["example.org".into()]).unwrap()).unwrap();
        let store = CertificateStore::open(dir.path()).unwrap();
        let before = fingerprint(&store.resolve_name(Some("example.org")).unwrap());
        assert!(!store.reload().unwrap(), "nothing changed");

        let renewed = self_signed(&["example.org".into()]).unwrap();
        // Another length as well as another time, in case both writes fall in one mtime tick.
        let mut certificate = renewed.certificate.clone();
        certificate.push('\n');
        write_pair(dir.path(), "example.org", &PemPair { certificate, key: renewed.key.clone() }).unwrap();
        assert!(store.reload().unwrap());
        let after = fingerprint(&store.resolve_name(Some("example.org")).unwrap());
        assert_ne!(before, after, "the renewed certificate is served");

        std::fs::write(dir.path().join("example.org").join(KEY_FILE), "not a key").unwrap();
        assert!(store.reload().unwrap());
        assert_eq!(fingerprint(&store.resolve_name(Some("example.org")).unwrap()), after, "the last good one stays");
        assert!(matches!(CertificateStore::open(tempfile::tempdir().unwrap().path()), Err(TlsError::Empty(_))));
    }
}
