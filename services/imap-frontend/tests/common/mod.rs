//! Test fixture: a real mailstore (SQLite, served over gRPC on loopback) with the testkit's
//! accounts, and IMAP sessions driven through in-memory streams by a small scripted client.

#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use kubemail_imap_frontend::imap;
use kubemail_imap_frontend::services::Services;
pub use kubemail_imap_frontend::services::Settings;
use kubemail_imap_frontend::{ImapFrontend, ServiceSettings, Transports};
use kubemail_runtime::local::{LocalConfig, LocalTransport};
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::tls::{self, Connection, PemPair};
pub use kubemail_testkit::mailstore::{Mailstore, PASSWORD};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio_rustls::TlsConnector;

pub const HOSTNAME: &str = "imap.example.org";
pub const CLIENT_IP: &str = "192.0.2.20";
/// The largest literal the test sessions take.
pub const MAX_LITERAL: u32 = 64 * 1024;

pub struct Fixture {
    pub services: Arc<Services>,
    pub certificate: PemPair,
    pub mailstore: Mailstore,
    _dir: tempfile::TempDir,
}

/// Settings with short timeouts and no delay after a failed login, so tests run fast.
pub fn test_settings() -> Settings {
    Settings {
        hostname: HOSTNAME.into(),
        max_literal: MAX_LITERAL,
        idle_timeout: Duration::from_secs(30 * 60),
        idle_keepalive: Duration::from_secs(120),
        login_timeout: Duration::from_secs(10),
        max_auth_failures: 3,
        max_errors: 10,
        auth_failure_delay: Duration::ZERO,
        allow_plaintext_auth: false,
        default_domain: None,
        progress_interval: Duration::from_secs(2),
    }
}

impl Fixture {
    pub async fn start() -> Fixture {
        Fixture::with_settings(test_settings()).await
    }

    pub async fn with_settings(settings: Settings) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let transport =
            LocalTransport::open(&LocalConfig::new(dir.path().join("queue.db"))).await.expect("local transport");
        let mailstore = Mailstore::start(dir.path(), Arc::new(transport.events.clone())).await;
        let certificate = tls::self_signed(&[HOSTNAME.to_string()]).expect("certificate");
        let acceptor = tls::ServerTls::from_pair(&certificate).expect("TLS config");
        let settings = ServiceSettings {
            tls: Some(acceptor),
            // Every snapshot kept, so the sessions of every test select through the cache.
            select_cache_min_messages: 1,
            ..ServiceSettings::new(settings, Duration::from_secs(300), 100_000)
        };
        let transports =
            Transports { events: Arc::new(transport.events.clone()), mailstore: mailstore.channel.clone() };
        let services = ImapFrontend::new(settings, transports, Shutdown::new()).services();
        Fixture { services, certificate, mailstore, _dir: dir }
    }

    /// A new plain session, read up to and including its greeting (returned).
    pub async fn connect(&self) -> (Client<DuplexStream>, String) {
        self.connect_from(CLIENT_IP.parse().unwrap()).await
    }

    /// A new plain session from the client address `ip`.
    pub async fn connect_from(&self, ip: IpAddr) -> (Client<DuplexStream>, String) {
        let (client, server) = tokio::io::duplex(256 * 1024);
        tokio::spawn(imap::serve(Connection::Plain(server), ip, self.services.clone()));
        let mut client = Client::new(client);
        let greeting = client.line().await.expect("greeting");
        (client, greeting)
    }

    /// A session upgraded with STARTTLS and logged in as `user`.
    pub async fn logged_in(&self, user: &str) -> Client<tokio_rustls::client::TlsStream<DuplexStream>> {
        let (mut client, _) = self.connect().await;
        client.command("t STARTTLS").await.expect_ok();
        let mut client = self.upgrade(client).await;
        client.command(&format!("l LOGIN {user} {PASSWORD}")).await.expect_ok();
        client
    }

    /// Completes the TLS handshake after STARTTLS was accepted.
    pub async fn upgrade(&self, client: Client<DuplexStream>) -> Client<tokio_rustls::client::TlsStream<DuplexStream>> {
        let name = ServerName::try_from(HOSTNAME.to_string()).unwrap();
        let tls = self.tls_connector().connect(name, client.into_stream()).await.expect("TLS handshake");
        Client::new(tls)
    }

    /// A TLS connector that trusts the fixture's self-signed certificate.
    pub fn tls_connector(&self) -> TlsConnector {
        kubemail_testkit::tls::connector_trusting(&self.certificate.certificate)
    }
}

/// The responses to one command: the untagged and continuation lines before the tagged one.
#[derive(Debug)]
pub struct Responses {
    pub untagged: Vec<String>,
    pub tagged: String,
}

impl Responses {
    /// Checks that the command completed with OK; returns the untagged lines.
    pub fn expect_ok(self) -> Vec<String> {
        let status = self.tagged.split(' ').nth(1);
        assert_eq!(status, Some("OK"), "expected OK: {self:?}");
        self.untagged
    }

    /// The tagged line after its tag: `NO [CODE] text`.
    pub fn status(&self) -> &str {
        self.tagged.split_once(' ').map_or("", |(_, rest)| rest)
    }
}

/// A scripted IMAP client: sends lines, reads responses up to the tagged one.
pub struct Client<S> {
    pub stream: S,
    input: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(stream: S) -> Self {
        Client { stream, input: Vec::new() }
    }

    pub async fn send(&mut self, data: &[u8]) {
        self.stream.write_all(data).await.expect("write");
        self.stream.flush().await.expect("flush");
    }

    /// Sends what the server may stop reading half-way; a failed write is then ignored.
    pub async fn send_until_closed(&mut self, data: &[u8]) {
        let _ = self.stream.write_all(data).await;
        let _ = self.stream.flush().await;
    }

    /// Sends `line` (CRLF added) and reads up to the response tagged with its first word.
    pub async fn command(&mut self, line: &str) -> Responses {
        self.send(format!("{line}\r\n").as_bytes()).await;
        let tag = line.split(' ').next().unwrap().to_string();
        self.responses(&tag).await
    }

    /// Responses up to the one tagged `tag`; a response with literals is one string, each
    /// literal in it as `{n}\r\n` and its octets.
    pub async fn responses(&mut self, tag: &str) -> Responses {
        let mut untagged = Vec::new();
        loop {
            let line = self.response().await.unwrap_or_else(|| panic!("closed before {tag} completed: {untagged:?}"));
            if line.starts_with(&format!("{tag} ")) {
                return Responses { untagged, tagged: line };
            }
            untagged.push(line);
        }
    }

    /// The next response: a line, with the literals it announces and the lines after them.
    pub async fn response(&mut self) -> Option<String> {
        let mut response = self.line().await?;
        while let Some(length) = announced_literal(&response) {
            let data = self.octets(length).await?;
            response.push_str("\r\n");
            response.push_str(&String::from_utf8_lossy(&data));
            response.push_str(&self.line().await?);
        }
        Some(response)
    }

    /// Exactly `count` octets.
    async fn octets(&mut self, count: usize) -> Option<Vec<u8>> {
        while self.input.len() < count {
            self.fill().await?;
        }
        Some(self.input.drain(..count).collect())
    }

    /// The next line without its CRLF, or `None` once the server closed the connection.
    pub async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(end) = self.input.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.input[..end]).into_owned();
                self.input.drain(..end + 2);
                return Some(line);
            }
            self.fill().await?;
        }
    }

    /// Reads what the server sent next; `None` once it closed the connection.
    async fn fill(&mut self) -> Option<()> {
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(20), self.stream.read(&mut chunk))
            .await
            .expect("the server answers in time")
            .ok()?;
        if read == 0 {
            return None;
        }
        self.input.extend_from_slice(&chunk[..read]);
        Some(())
    }

    /// Whether the server closed the connection (after any lines still unread, returned).
    pub async fn rest_until_closed(&mut self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(line) = self.line().await {
            lines.push(line);
        }
        lines
    }

    /// The stream, for a TLS upgrade; nothing may be buffered unread.
    pub fn into_stream(self) -> S {
        assert!(self.input.is_empty(), "unread input before the TLS upgrade: {:?}", self.input);
        self.stream
    }
}

/// The length of the literal a line ends by announcing (`{12}`), if it does.
fn announced_literal(line: &str) -> Option<usize> {
    let open = line.strip_suffix('}')?.rfind('{')?;
    line[open + 1..line.len() - 1].trim_end_matches('+').parse().ok()
}
