//! Certificates behind a real listener: rustls clients handshake over loopback with the runtime's
//! accept loop (implicit TLS, as on ports 465 and 993) and check which certificate they are
//! served, by SNI, and after a renewal on disk with the server left running; a handshake dripped
//! in slowly is cut off.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kubemail_runtime::limits::{ConnectionLimits, ConnectionTracker};
use kubemail_runtime::listener::{self, Admission, Service};
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::tls::{self, Connection, PemPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

/// Short, so a renewal shows within a test's patience; production uses seconds.
const RELOAD_INTERVAL: Duration = Duration::from_millis(50);
/// What each session sends before closing, to show the handshake led to a served session.
const GREETING: &[u8] = b"hello over TLS\r\n";

/// An implicit-TLS listener on loopback, stopped when dropped.
struct Server {
    address: SocketAddr,
    shutdown: Shutdown,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// Serves the certificates of `dir`, watched every [`RELOAD_INTERVAL`], through the runtime's
/// accept loop.
async fn serve(dir: &Path) -> Server {
    serve_with(dir, |_| {}).await
}

/// [`serve`], with `adjust` applied to the listener's admission rules.
async fn serve_with(dir: &Path, adjust: impl FnOnce(&mut Admission)) -> Server {
    let shutdown = Shutdown::new();
    let server_tls = tls::ServerTls::from_dir(dir, RELOAD_INTERVAL, &shutdown).expect("certificates load");
    let socket = listener::bind("127.0.0.1:0".parse().unwrap(), "--test-listen").await.unwrap();
    let address = socket.local_addr().unwrap();
    let service = Service {
        protocol: "test",
        listener: "implicit_tls",
        implicit_tls: Some(server_tls),
        refusal: |_| b"refused\r\n",
        serve: |mut connection: Connection<TcpStream>, _client: IpAddr| async move {
            let _ = connection.write_all(GREETING).await;
            let _ = connection.shutdown().await;
        },
    };
    let unlimited = ConnectionTracker::new(ConnectionLimits { per_ip: 0, per_ip_per_minute: 0 });
    let mut admission = Admission::new(unlimited, Vec::new());
    adjust(&mut admission);
    let admission = Arc::new(admission);
    tokio::spawn(listener::serve(vec![(socket, service)], admission, shutdown.clone(), Duration::from_secs(1)));
    Server { address, shutdown }
}

/// The certificate (DER) a new TLS connection to `address` asking for `name` is served. An IP
/// address as `name` sends no SNI, as a client connecting by address does.
async fn served(address: SocketAddr, name: &str) -> Vec<u8> {
    // Whatever chain the server presents is accepted, so the test sees which certificate it
    // was served whatever name it asked for; the handshake signature is still checked against
    // that certificate, so the server must hold its key.
    let mut config = (*tls::opportunistic_client()).clone();
    // A resumed session presents no certificate and the client reports the one it remembers,
    // which would hide a renewal.
    config.resumption = rustls::client::Resumption::disabled();
    let name = ServerName::try_from(name.to_string()).expect("server name");
    let exchange = async {
        let tcp = TcpStream::connect(address).await.expect("connect");
        let mut tls = TlsConnector::from(Arc::new(config)).connect(name, tcp).await.expect("TLS handshake");
        let mut greeting = Vec::new();
        tls.read_to_end(&mut greeting).await.expect("session over TLS");
        assert_eq!(greeting, GREETING);
        tls.get_ref().1.peer_certificates().expect("a certificate")[0].to_vec()
    };
    tokio::time::timeout(Duration::from_secs(10), exchange).await.expect("the server answers in time")
}

fn der(pair: &PemPair) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pair.certificate.as_bytes()).next().unwrap().unwrap().to_vec()
}

/// Mounts `pair` at `dir/domain` the way the kubelet mounts a TLS Secret and updates it when
/// cert-manager renews it: the files in a directory per version, `..data` pointing at the
/// current one, `tls.crt` and `tls.key` pointing through `..data`; a new version is switched
/// to in one rename and the old one then removed.
fn mount_secret(dir: &Path, domain: &str, version: &str, pair: &PemPair) {
    let volume = dir.join(domain);
    let data = volume.join(format!("..{version}"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join(tls::CERTIFICATE_FILE), &pair.certificate).unwrap();
    std::fs::write(data.join(tls::KEY_FILE), &pair.key).unwrap();
    let previous = std::fs::read_link(volume.join("..data")).ok();
    let swap = volume.join("..data_tmp");
    std::os::unix::fs::symlink(format!("..{version}"), &swap).unwrap();
    std::fs::rename(&swap, volume.join("..data")).unwrap();
    for file in [tls::CERTIFICATE_FILE, tls::KEY_FILE] {
        let link = volume.join(file);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(file), &link).unwrap();
        }
    }
    if let Some(previous) = previous {
        std::fs::remove_dir_all(volume.join(previous)).unwrap();
    }
}

#[tokio::test]
async fn a_renewed_certificate_is_served_at_the_next_handshake_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = tls::self_signed(&["mx.example".into()]).unwrap();
    mount_secret(dir.path(), "mx.example", "2026_01_01_00_00_00.1", &first);
    let server = serve(dir.path()).await;
    assert_eq!(served(server.address, "mx.example").await, der(&first));

    let renewed = tls::self_signed(&["mx.example".into()]).unwrap();
    // Another length as well as another time, in case both versions fall in one mtime tick.
    let certificate = format!("{}\n", renewed.certificate);
    mount_secret(dir.path(), "mx.example", "2026_03_01_00_00_00.2", &PemPair { certificate, ..renewed.clone() });
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now_served = served(server.address, "mx.example").await;
        if now_served == der(&renewed) {
            break;
        }
        assert_eq!(now_served, der(&first), "only the old or the renewed certificate is ever served");
        assert!(Instant::now() < deadline, "the renewed certificate was not served within 5 s");
        tokio::time::sleep(RELOAD_INTERVAL / 2).await;
    }
}

/// A pod starts before cert-manager has issued its certificate: the server runs, closes
/// implicit-TLS connections while its directory is empty, and serves the first certificate
/// once the Secret is mounted, without a restart.
#[tokio::test]
async fn a_server_without_certificates_serves_the_first_one_when_it_appears() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path()).await;
    let mut refused = TcpStream::connect(server.address).await.expect("the listener runs");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), refused.read_to_end(&mut rest)).await;
    assert!(closed.is_ok() && rest.is_empty(), "closed at once, no session served: {rest:?}");

    let issued = tls::self_signed(&["mx.example".into()]).unwrap();
    mount_secret(dir.path(), "mx.example", "2026_01_01_00_00_00.1", &issued);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !serves_tls(server.address).await {
        assert!(Instant::now() < deadline, "the new certificate was not served within 5 s");
        tokio::time::sleep(RELOAD_INTERVAL / 2).await;
    }
    assert_eq!(served(server.address, "mx.example").await, der(&issued));
}

/// Whether a TLS handshake with `address` succeeds.
async fn serves_tls(address: SocketAddr) -> bool {
    let Ok(tcp) = TcpStream::connect(address).await else { return false };
    let name = ServerName::try_from("mx.example").unwrap();
    let connector = TlsConnector::from(tls::opportunistic_client());
    tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp)).await.is_ok_and(|tls| tls.is_ok())
}

#[tokio::test]
async fn sni_picks_each_domains_certificate_and_the_default_for_any_other_name() {
    let dir = tempfile::tempdir().unwrap();
    let pair = |domain: &str| {
        let pair = tls::self_signed(&[domain.to_string()]).unwrap();
        tls::write_pair(dir.path(), domain, &pair).unwrap();
        pair
    };
    let (a, b, default) = (pair("a.example"), pair("b.example"), pair(tls::DEFAULT_DOMAIN));
    let server = serve(dir.path()).await;
    assert_eq!(served(server.address, "a.example").await, der(&a));
    assert_eq!(served(server.address, "b.example").await, der(&b));
    assert_eq!(served(server.address, "unknown.example").await, der(&default));
    let no_sni = IpAddr::V4(Ipv4Addr::LOCALHOST).to_string();
    assert_eq!(served(server.address, &no_sni).await, der(&default), "a client without SNI");
}

#[tokio::test]
async fn a_client_that_drips_its_handshake_is_cut_off_at_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    tls::write_pair(dir.path(), "mx.example", &tls::self_signed(&["mx.example".into()]).unwrap()).unwrap();
    let server = serve_with(dir.path(), |admission| admission.handshake_timeout = Duration::from_millis(500)).await;
    let started = Instant::now();
    let (mut from_server, mut to_server) = TcpStream::connect(server.address).await.unwrap().into_split();
    // The start of a ClientHello record announcing 512 octets, then one octet every 100 ms:
    // every read is prompt, the handshake never ends.
    let drip = tokio::spawn(async move {
        let _ = to_server.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]).await;
        for _ in 0..100 {
            if to_server.write_all(&[0]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut rest = Vec::new();
    let _ = from_server.read_to_end(&mut rest).await;
    assert!(rest.is_empty(), "no session was served: {rest:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());
    drip.abort();
}
