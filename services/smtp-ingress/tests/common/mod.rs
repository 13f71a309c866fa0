//! Test fixture: a real mailstore (SQLite, served over gRPC on loopback), the local spool and
//! queue, and SMTP sessions driven through in-memory streams by a small scripted client.

#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use kubemail_proto::Message as _;
use kubemail_proto::admin::admin_client::AdminClient;
use kubemail_proto::queue::Envelope;
use kubemail_runtime::local::{LocalConfig, LocalTransport};
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::tls::{self, PemPair};
use kubemail_runtime::{Queue, Spool};
use kubemail_smtp_ingress::session::io::Connection;
use kubemail_smtp_ingress::session::{self, Listener, Services, Settings};
use kubemail_smtp_ingress::verify::Verifier;
use kubemail_smtp_ingress::{ServiceSettings, SmtpIngress, Transports};
pub use kubemail_testkit::mailstore::Mailstore;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio_rustls::TlsConnector;
use tonic::transport::Channel;

pub const HOSTNAME: &str = "mx.example.org";
pub const CLIENT_IP: &str = "192.0.2.10";
/// Sessions reuse recipient lookups as long as the service does by default.
pub const RECIPIENT_CACHE_TTL: Duration = Duration::from_secs(5);

pub struct Fixture {
    pub services: Arc<Services>,
    pub admin: AdminClient<Channel>,
    pub transport: LocalTransport,
    pub certificate: PemPair,
    pub mailstore: Mailstore,
    _dir: tempfile::TempDir,
}

/// Settings with short timeouts and no AUTH failure delay, so tests run fast.
pub fn test_settings() -> Settings {
    Settings {
        hostname: HOSTNAME.into(),
        max_message_size: 64 * 1024,
        max_recipients: 5,
        max_errors: 10,
        command_timeout: Duration::from_secs(10),
        data_timeout: Duration::from_secs(10),
        max_auth_failures: 3,
        auth_failure_delay: Duration::ZERO,
        allow_plaintext_auth: false,
    }
}

impl Fixture {
    pub async fn start() -> Fixture {
        Fixture::with_settings(test_settings()).await
    }

    pub async fn with_settings(settings: Settings) -> Fixture {
        Fixture::build(settings, None).await
    }

    /// Sessions over the local spool and queue, and a mailstore with [`Mailstore::start`]'s
    /// accounts; `verifier` checks inbound mail.
    pub async fn build(settings: Settings, verifier: Option<Verifier>) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let transport =
            LocalTransport::open(&LocalConfig::new(dir.path().join("queue.db"))).await.expect("local transport");
        let mailstore = Mailstore::start(dir.path(), Arc::new(transport.events.clone())).await;
        let channel = mailstore.channel.clone();
        let admin = mailstore.admin.clone();
        let certificate = tls::self_signed(&[HOSTNAME.to_string()]).expect("certificate");
        let acceptor = tls::ServerTls::from_pair(&certificate).expect("TLS config");
        let settings = ServiceSettings {
            tls: Some(acceptor),
            recipient_cache_ttl: RECIPIENT_CACHE_TTL,
            verifier,
            ..ServiceSettings::new(settings, Duration::from_secs(5))
        };
        let transports = Transports {
            handoff: Some((Arc::new(transport.spool.clone()), Arc::new(transport.queue.clone()))),
            mailstore: channel,
        };
        let services = SmtpIngress::new(settings, transports, Shutdown::new()).services();
        Fixture { services, admin, transport, certificate, mailstore, _dir: dir }
    }

    /// A new session on `listener`, read up to and including its greeting.
    pub async fn connect(&self, listener: Listener) -> Client<DuplexStream> {
        let (client, server) = tokio::io::duplex(256 * 1024);
        let ip: IpAddr = CLIENT_IP.parse().unwrap();
        tokio::spawn(session::serve(Connection::Plain(server), ip, listener, self.services.clone()));
        let mut client = Client::new(client);
        client.expect(220).await;
        client
    }

    /// The envelopes queued so far, with their spooled bodies.
    pub async fn queued(&self) -> Vec<(Envelope, String)> {
        let leases = self.transport.queue.pull(100, Duration::from_millis(50)).await.expect("pull");
        let mut queued = Vec::new();
        for lease in leases {
            let envelope = Envelope::decode(lease.payload.clone()).expect("envelope decodes");
            let body = self.transport.spool.get(&envelope.id).await.expect("spool").expect("body is spooled");
            queued.push((envelope, String::from_utf8_lossy(&body).into_owned()));
            lease.ack().await.expect("ack");
        }
        queued
    }

    /// A TLS connector that trusts the fixture's self-signed certificate.
    pub fn tls_connector(&self) -> TlsConnector {
        kubemail_testkit::tls::connector_trusting(&self.certificate.certificate)
    }
}

/// A scripted SMTP client: sends lines, reads whole replies.
pub struct Client<S> {
    pub stream: S,
    input: Vec<u8>,
}

/// One reply: its code and its lines' text (after the code and separator).
#[derive(Debug)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(stream: S) -> Self {
        Client { stream, input: Vec::new() }
    }

    pub async fn send(&mut self, data: &str) {
        self.send_bytes(data.as_bytes()).await;
    }

    /// Sends what the server may stop reading half-way (it closes on a timeout or too many
    /// errors); a failed write is then expected and ignored.
    pub async fn send_until_closed(&mut self, data: &[u8]) {
        let _ = self.stream.write_all(data).await;
        let _ = self.stream.flush().await;
    }

    pub async fn send_bytes(&mut self, data: &[u8]) {
        self.stream.write_all(data).await.expect("write");
        self.stream.flush().await.expect("flush");
    }

    /// The next reply, or `None` once the server closed the connection.
    pub async fn reply(&mut self) -> Option<Reply> {
        let mut lines = Vec::new();
        loop {
            let line = self.line().await?;
            let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("bad reply {line:?}"));
            let last = line.as_bytes().get(3) != Some(&b'-');
            lines.push(line.get(4..).unwrap_or_default().to_string());
            if last {
                return Some(Reply { code, lines });
            }
        }
    }

    async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.input.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.input[..end]).into_owned();
                self.input.drain(..end + 2);
                return Some(line);
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout(Duration::from_secs(20), self.stream.read(&mut chunk))
                .await
                .expect("the server answers in time")
                .ok()?;
            if read == 0 {
                return None;
            }
            self.input.extend_from_slice(&chunk[..read]);
        }
    }

    /// Reads a reply and checks its code; returns its text.
    pub async fn expect(&mut self, code: u16) -> String {
        let reply = self.reply().await.unwrap_or_else(|| panic!("connection closed, expected {code}"));
        assert_eq!(reply.code, code, "unexpected reply: {reply:?}");
        reply.text()
    }

    /// Sends one command line (CRLF added) and checks the reply code.
    pub async fn command(&mut self, line: &str, code: u16) -> String {
        self.send(&format!("{line}\r\n")).await;
        self.expect(code).await
    }

    /// Whether the server closed the connection (after any replies still unread).
    pub async fn closed(&mut self) -> bool {
        self.reply().await.is_none()
    }

    /// The stream, for a TLS upgrade; nothing may be buffered unread.
    pub fn into_stream(self) -> S {
        assert!(self.input.is_empty(), "unread input before the TLS upgrade");
        self.stream
    }
}

impl Client<DuplexStream> {
    /// STARTTLS and the handshake; the client then has to EHLO again.
    pub async fn starttls(mut self, connector: &TlsConnector) -> Client<tokio_rustls::client::TlsStream<DuplexStream>> {
        self.command("STARTTLS", 220).await;
        let stream = self.into_stream();
        let tls =
            connector.connect(ServerName::try_from(HOSTNAME).expect("name"), stream).await.expect("TLS handshake");
        Client::new(tls)
    }
}

/// `AUTH PLAIN` initial response for `user` / `password`.
/// A message of exactly `size` octets from alice to bob.
pub fn message_of(size: usize) -> Vec<u8> {
    let mut message = b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: filler\r\n\r\n".to_vec();
    while message.len() + 2 < size {
        message.push(b'x');
    }
    message.extend_from_slice(b"\r\n");
    message.truncate(size);
    message
}

pub fn plain(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

pub fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
