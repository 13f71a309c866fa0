//! One SMTP client connection to another MTA (RFC 5321, client side): the greeting, EHLO (HELO
//! for an old server), STARTTLS when offered or required, AUTH for a relay host, then any number
//! of transactions, pipelined (RFC 2920) when the server offers it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use kubemail_runtime::line_io::dot_stuff;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use smtp_proto::response::parser::ResponseReceiver;
use smtp_proto::{EhloResponse, Response};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::outcome::{Failure, one_line};

/// RFC 5321 §4.5.3.2 client timeouts.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const GREETING_TIMEOUT: Duration = Duration::from_secs(5 * 60);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(5 * 60);
const DATA_INITIATION_TIMEOUT: Duration = Duration::from_secs(2 * 60);
const DATA_BLOCK_TIMEOUT: Duration = Duration::from_secs(3 * 60);
const DATA_TERMINATION_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// What TLS a connection must have.
#[derive(Clone)]
pub enum Security {
    /// STARTTLS when the server offers it, without checking its certificate (what MTAs do
    /// without DANE or MTA-STS); plain text otherwise.
    Opportunistic(Arc<ClientConfig>),
    /// STARTTLS (or TLS from the start, on port 465) with a verified certificate, or no mail.
    Required { config: Arc<ClientConfig>, implicit: bool },
}

/// A user name and password for AUTH PLAIN or LOGIN.
#[derive(Clone)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).finish_non_exhaustive()
    }
}

/// What the server offered in its EHLO reply.
#[derive(Clone, Copy, Debug, Default)]
pub struct Capabilities {
    pub pipelining: bool,
    pub starttls: bool,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    /// 0 when the server declares no limit.
    pub size: u64,
    pub auth_plain: bool,
    pub auth_login: bool,
}

/// One reply from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// The enhanced status code, or the class's generic one when the server sent none.
    pub status: String,
    pub text: String,
}

impl Reply {
    fn from_response(response: Response<String>) -> Reply {
        let [class, subject, detail] = response.esc;
        let status =
            if class == 0 { format!("{}.0.0", response.code / 100) } else { format!("{class}.{subject}.{detail}") };
        Reply { code: response.code, status, text: one_line(&response.message) }
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// The failure this refusal means, permanent for 5xx.
    pub fn failure(&self, host: &str) -> Failure {
        Failure {
            status: self.status.clone(),
            diagnostic_type: "smtp",
            diagnostic: format!("{} {} {}", self.code, self.status, self.text),
            remote_mta: Some(host.to_string()),
        }
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }
}

/// A failure of the connection itself (not a reply): the host is worth trying again later.
#[derive(Debug)]
pub struct Broken {
    pub failure: Failure,
}

impl Broken {
    fn new(host: &str, status: &str, what: impl std::fmt::Display) -> Broken {
        Broken {
            failure: Failure {
                status: status.into(),
                diagnostic_type: "x-kubemail",
                diagnostic: one_line(&format!("{host}: {what}")),
                remote_mta: Some(host.to_string()),
            },
        }
    }
}

/// How an opening ended without a usable session.
#[derive(Debug)]
pub enum OpenError {
    /// No answer, a broken connection or a failed TLS handshake: try another host.
    Broken(Broken),
    /// The server refused us (greeting, EHLO, AUTH) with this reply.
    Refused(Reply),
}

/// How one attempt at opening a session ended without one.
enum Opening {
    /// Opportunistic STARTTLS was refused or its handshake failed: worth a try without it.
    StartTlsFailed(OpenError),
    Failed(OpenError),
}

impl From<OpenError> for Opening {
    fn from(error: OpenError) -> Self {
        Opening::Failed(error)
    }
}

impl From<Opening> for OpenError {
    fn from(opening: Opening) -> Self {
        match opening {
            Opening::StartTlsFailed(error) | Opening::Failed(error) => error,
        }
    }
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while the plain stream is being wrapped in TLS.
    Closed,
}

/// One open session with a server.
pub struct Connection {
    stream: Stream,
    input: Vec<u8>,
    receiver: ResponseReceiver,
    /// The server's name, for diagnostics and Remote-MTA.
    pub host: String,
    pub capabilities: Capabilities,
    pub tls: bool,
}

/// The result of one transaction: the reply to each RCPT, then the reply that ended the data
/// (absent when no recipient was accepted).
pub struct Transaction {
    pub recipients: Vec<Reply>,
    pub data: Option<Reply>,
}

impl Connection {
    /// Connects to `address` (the server `host`), reads the greeting, introduces itself as
    /// `helo`, secures the session as `security` says and logs in with `credentials`.
    pub async fn open(
        host: &str,
        address: SocketAddr,
        helo: &str,
        security: &Security,
        credentials: Option<&Credentials>,
    ) -> Result<Connection, OpenError> {
        match Connection::open_once(host, address, helo, security, credentials, true).await {
            // Opportunistic TLS guards against passive listeners, not against a server that
            // cannot do TLS: a server whose STARTTLS is broken gets its mail in plain text on a
            // new connection, as other MTAs deliver it, rather than none until it expires.
            Err(Opening::StartTlsFailed(error)) => {
                tracing::warn!(host, %address, ?error, "opportunistic STARTTLS failed; delivering without TLS");
                Connection::open_once(host, address, helo, security, credentials, false).await.map_err(OpenError::from)
            }
            other => other.map_err(OpenError::from),
        }
    }

    async fn open_once(
        host: &str,
        address: SocketAddr,
        helo: &str,
        security: &Security,
        credentials: Option<&Credentials>,
        try_starttls: bool,
    ) -> Result<Connection, Opening> {
        let broken = |status: &str, what: String| OpenError::Broken(Broken::new(host, status, what));
        let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(error)) => return Err(broken("4.4.1", format!("cannot connect to {address}: {error}")).into()),
            Err(_) => return Err(broken("4.4.1", format!("no answer from {address}")).into()),
        };
        let _ = tcp.set_nodelay(true);
        let mut connection = Connection {
            stream: Stream::Plain(tcp),
            input: Vec::new(),
            receiver: ResponseReceiver::default(),
            host: host.to_string(),
            capabilities: Capabilities::default(),
            tls: false,
        };
        if let Security::Required { config, implicit: true } = security {
            connection.start_tls(config.clone()).await.map_err(OpenError::Broken)?;
        }
        let greeting = connection.reply(GREETING_TIMEOUT).await.map_err(OpenError::Broken)?;
        if greeting.code != 220 {
            return Err(OpenError::Refused(greeting).into());
        }
        connection.ehlo(helo).await?;
        match security {
            Security::Opportunistic(config) if try_starttls && connection.capabilities.starttls => {
                connection.starttls(helo, config.clone()).await.map_err(Opening::StartTlsFailed)?;
            }
            Security::Opportunistic(_) => {}
            Security::Required { .. } if connection.tls => {}
            Security::Required { .. } if !connection.capabilities.starttls => {
                return Err(broken("4.7.4", "TLS is required but the server does not offer STARTTLS".into()).into());
            }
            Security::Required { config, .. } => connection.starttls(helo, config.clone()).await?,
        }
        if let Some(credentials) = credentials {
            connection.login(credentials).await?;
        }
        Ok(connection)
    }

    /// STARTTLS and the handshake, then EHLO again.
    async fn starttls(&mut self, helo: &str, config: Arc<ClientConfig>) -> Result<(), OpenError> {
        let reply = self.command("STARTTLS\r\n", COMMAND_TIMEOUT).await.map_err(OpenError::Broken)?;
        if reply.code != 220 {
            return Err(OpenError::Refused(reply));
        }
        self.start_tls(config).await.map_err(OpenError::Broken)?;
        // RFC 3207 §4.2: everything known before the handshake is forgotten.
        self.ehlo(helo).await
    }

    async fn ehlo(&mut self, helo: &str) -> Result<(), OpenError> {
        self.send(format!("EHLO {helo}\r\n").as_bytes()).await.map_err(OpenError::Broken)?;
        let (reply, raw) = self.reply_with_text(COMMAND_TIMEOUT).await.map_err(OpenError::Broken)?;
        if reply.code == 250 {
            self.capabilities = capabilities(&raw);
            return Ok(());
        }
        // An old server without ESMTP (RFC 5321 §3.2).
        let reply = self.command(&format!("HELO {helo}\r\n"), COMMAND_TIMEOUT).await.map_err(OpenError::Broken)?;
        self.capabilities = Capabilities::default();
        if reply.code == 250 { Ok(()) } else { Err(OpenError::Refused(reply)) }
    }

    async fn login(&mut self, credentials: &Credentials) -> Result<(), OpenError> {
        let reply = if self.capabilities.auth_plain {
            let token = BASE64.encode(format!("\0{}\0{}", credentials.username, credentials.password));
            self.command(&format!("AUTH PLAIN {token}\r\n"), COMMAND_TIMEOUT).await.map_err(OpenError::Broken)?
        } else if self.capabilities.auth_login {
            let mut reply = self.command("AUTH LOGIN\r\n", COMMAND_TIMEOUT).await.map_err(OpenError::Broken)?;
            for secret in [&credentials.username, &credentials.password] {
                if reply.code != 334 {
                    break;
                }
                let line = format!("{}\r\n", BASE64.encode(secret));
                reply = self.command(&line, COMMAND_TIMEOUT).await.map_err(OpenError::Broken)?;
            }
            reply
        } else {
            return Err(OpenError::Broken(Broken::new(
                &self.host,
                "4.7.0",
                "the server offers no AUTH PLAIN or LOGIN",
            )));
        };
        if reply.code == 235 { Ok(()) } else { Err(OpenError::Refused(reply)) }
    }

    /// One mail transaction: MAIL with `parameters`, a RCPT per recipient, and the data
    /// (CRLF lines, dot-stuffed here) when at least one recipient was accepted. `Err` means
    /// the MAIL command was refused (the reply) or the connection broke.
    pub async fn transaction(
        &mut self,
        mail_from: &str,
        parameters: &str,
        recipients: &[&str],
        body: &[u8],
    ) -> Result<Transaction, Result<Reply, Broken>> {
        let mail = format!("MAIL FROM:<{}>{parameters}\r\n", path(mail_from));
        let rcpts: Vec<String> = recipients.iter().map(|address| format!("RCPT TO:<{}>\r\n", path(address))).collect();
        let (mail_reply, replies, data_reply) = if self.capabilities.pipelining {
            // RFC 2920: MAIL, every RCPT and DATA in one go, then the replies in order.
            let mut batch = mail.into_bytes();
            rcpts.iter().for_each(|rcpt| batch.extend_from_slice(rcpt.as_bytes()));
            batch.extend_from_slice(b"DATA\r\n");
            self.send(&batch).await.map_err(Err)?;
            let mail_reply = self.reply(COMMAND_TIMEOUT).await.map_err(Err)?;
            let mut replies = Vec::with_capacity(rcpts.len());
            for _ in &rcpts {
                replies.push(self.reply(COMMAND_TIMEOUT).await.map_err(Err)?);
            }
            let data_reply = self.reply(DATA_INITIATION_TIMEOUT).await.map_err(Err)?;
            (mail_reply, replies, data_reply)
        } else {
            let mail_reply = self.command(&mail, COMMAND_TIMEOUT).await.map_err(Err)?;
            if !mail_reply.is_positive() {
                return Err(Ok(mail_reply));
            }
            let mut replies = Vec::with_capacity(rcpts.len());
            for rcpt in &rcpts {
                replies.push(self.command(rcpt, COMMAND_TIMEOUT).await.map_err(Err)?);
            }
            if !replies.iter().any(Reply::is_positive) {
                return Ok(Transaction { recipients: replies, data: None });
            }
            let data_reply = self.command("DATA\r\n", DATA_INITIATION_TIMEOUT).await.map_err(Err)?;
            (mail_reply, replies, data_reply)
        };
        if !mail_reply.is_positive() {
            if data_reply.code == 354 {
                // A server that took DATA after refusing everything: end the empty message.
                self.send(b".\r\n").await.map_err(Err)?;
                self.reply(DATA_TERMINATION_TIMEOUT).await.map_err(Err)?;
            }
            return Err(Ok(mail_reply));
        }
        let accepted = replies.iter().any(Reply::is_positive);
        if data_reply.code != 354 {
            return Ok(Transaction { recipients: replies, data: accepted.then_some(data_reply) });
        }
        if !accepted {
            self.send(b".\r\n").await.map_err(Err)?;
            self.reply(DATA_TERMINATION_TIMEOUT).await.map_err(Err)?;
            return Ok(Transaction { recipients: replies, data: None });
        }
        let mut stuffed = Vec::new();
        dot_stuff(&mut stuffed, body);
        match tokio::time::timeout(DATA_BLOCK_TIMEOUT, self.write_all(&stuffed)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(Err(Broken::new(&self.host, "4.4.2", format!("sending the data: {error}")))),
            Err(_) => return Err(Err(Broken::new(&self.host, "4.4.2", "timed out sending the data"))),
        }
        let end = self.reply(DATA_TERMINATION_TIMEOUT).await.map_err(Err)?;
        Ok(Transaction { recipients: replies, data: Some(end) })
    }

    /// Makes the session ready for another transaction; false when it is not usable.
    pub async fn reset(&mut self) -> bool {
        matches!(self.command("RSET\r\n", COMMAND_TIMEOUT).await, Ok(reply) if reply.code == 250)
    }

    /// Ends the session politely.
    pub async fn quit(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.command("QUIT\r\n", COMMAND_TIMEOUT)).await;
    }

    async fn start_tls(&mut self, config: Arc<ClientConfig>) -> Result<(), Broken> {
        let name = ServerName::try_from(self.host.clone())
            .map_err(|e| Broken::new(&self.host, "4.7.5", format!("not a TLS server name: {e}")))?;
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Closed) else {
            return Err(Broken::new(&self.host, "4.7.5", "TLS is already on"));
        };
        match tokio::time::timeout(COMMAND_TIMEOUT, TlsConnector::from(config).connect(name, tcp)).await {
            Ok(Ok(tls)) => {
                self.stream = Stream::Tls(Box::new(tls));
                self.tls = true;
                self.input.clear();
                Ok(())
            }
            Ok(Err(error)) => Err(Broken::new(&self.host, "4.7.5", format!("TLS handshake failed: {error}"))),
            Err(_) => Err(Broken::new(&self.host, "4.7.5", "TLS handshake timed out")),
        }
    }

    async fn command(&mut self, line: &str, timeout: Duration) -> Result<Reply, Broken> {
        self.send(line.as_bytes()).await?;
        self.reply(timeout).await
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), Broken> {
        match tokio::time::timeout(COMMAND_TIMEOUT, self.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(Broken::new(&self.host, "4.4.2", format!("connection lost: {error}"))),
            Err(_) => Err(Broken::new(&self.host, "4.4.2", "timed out sending a command")),
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match &mut self.stream {
            Stream::Plain(tcp) => write_flush(tcp, bytes).await,
            Stream::Tls(tls) => write_flush(tls.as_mut(), bytes).await,
            Stream::Closed => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }

    async fn reply(&mut self, timeout: Duration) -> Result<Reply, Broken> {
        self.reply_with_text(timeout).await.map(|(reply, _)| reply)
    }

    /// The next reply, and its raw lines (for EHLO's capabilities).
    async fn reply_with_text(&mut self, timeout: Duration) -> Result<(Reply, Vec<u8>), Broken> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut raw = Vec::new();
        loop {
            if !self.input.is_empty() {
                let mut unread = self.input.iter();
                let parsed = self.receiver.parse(&mut unread);
                // The receiver keeps what it has read; the rest (pipelined replies) stays.
                let consumed = self.input.len() - unread.as_slice().len();
                raw.extend(self.input.drain(..consumed));
                match parsed {
                    Ok(response) => {
                        self.receiver.reset();
                        return Ok((Reply::from_response(response), raw));
                    }
                    Err(smtp_proto::Error::NeedsMoreData { .. }) => {}
                    Err(error) => {
                        return Err(Broken::new(&self.host, "4.5.0", format!("unreadable reply: {error:?}")));
                    }
                }
            }
            let mut buffer = [0u8; 4096];
            let read = match &mut self.stream {
                Stream::Plain(tcp) => tokio::time::timeout_at(deadline, tcp.read(&mut buffer)).await,
                Stream::Tls(tls) => tokio::time::timeout_at(deadline, tls.read(&mut buffer)).await,
                Stream::Closed => return Err(Broken::new(&self.host, "4.4.2", "the connection is closed")),
            };
            match read {
                Ok(Ok(0)) => return Err(Broken::new(&self.host, "4.4.2", "the server closed the connection")),
                Ok(Ok(n)) => self.input.extend_from_slice(&buffer[..n]),
                Ok(Err(error)) => return Err(Broken::new(&self.host, "4.4.2", format!("connection lost: {error}"))),
                Err(_) => return Err(Broken::new(&self.host, "4.4.2", "timed out waiting for a reply")),
            }
        }
    }
}

async fn write_flush<W: AsyncWrite + Unpin>(writer: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    writer.write_all(bytes).await?;
    writer.flush().await
}

/// The capabilities in a 250 reply to EHLO (unknown ones are ignored).
fn capabilities(raw: &[u8]) -> Capabilities {
    let Ok(ehlo) = EhloResponse::<String>::parse(&mut raw.iter()) else {
        return Capabilities::default();
    };
    Capabilities {
        pipelining: ehlo.has_capability(smtp_proto::EXT_PIPELINING),
        starttls: ehlo.has_capability(smtp_proto::EXT_START_TLS),
        eight_bit_mime: ehlo.has_capability(smtp_proto::EXT_8BIT_MIME),
        smtputf8: ehlo.has_capability(smtp_proto::EXT_SMTP_UTF8),
        size: if ehlo.has_capability(smtp_proto::EXT_SIZE) { ehlo.size as u64 } else { 0 },
        auth_plain: ehlo.auth() & smtp_proto::AUTH_PLAIN != 0,
        auth_login: ehlo.auth() & smtp_proto::AUTH_LOGIN != 0,
    }
}

/// `body` as DATA content: a line starting with `.` gets another (RFC 5321 §4.5.2), the last
/// line ends in CRLF, then the terminating `.` line.
/// An address as an SMTP path (RFC 5321 §4.1.2): a local part that is not a dot-string, such
/// as one that arrived quoted (`"john doe"@example.org`), is quoted again, so the next hop reads
/// the same mailbox.
fn path(address: &str) -> std::borrow::Cow<'_, str> {
    let Some((local, domain)) = address.rsplit_once('@') else { return address.into() };
    // atext (RFC 5322 §3.2.3), and any non-ASCII (RFC 6531 extends atext with UTF-8).
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii();
    if local.split('.').all(|atom| !atom.is_empty() && atom.chars().all(atext)) {
        return address.into();
    }
    let mut quoted = String::with_capacity(address.len() + 4);
    quoted.push('"');
    for c in local.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push_str("\"@");
    quoted.push_str(domain);
    quoted.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_parts_that_are_not_dot_strings_are_quoted_again() {
        assert_eq!(path("john.doe+tag@example.org"), "john.doe+tag@example.org");
        assert_eq!(path("jörg@bücher.de"), "jörg@bücher.de");
        assert_eq!(path("john doe@example.org"), "\"john doe\"@example.org");
        assert_eq!(path("a@evil@example.org"), "\"a@evil\"@example.org");
        assert_eq!(path("say \"hi\"\\@example.org"), "\"say \\\"hi\\\"\\\\\"@example.org");
        assert_eq!(path(".leading@example.org"), "\".leading\"@example.org");
        assert_eq!(path(""), "");
    }

    #[test]
    fn capabilities_come_from_the_ehlo_reply() {
        let raw = b"250-mx.remote.example\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-STARTTLS\r\n250-AUTH LOGIN\r\n250 8BITMIME\r\n";
        let offered = capabilities(raw);
        assert!(offered.pipelining && offered.starttls && offered.eight_bit_mime && offered.auth_login);
        assert!(!offered.smtputf8 && !offered.auth_plain);
        assert_eq!(offered.size, 1000);
    }

    #[test]
    fn replies_without_an_enhanced_code_get_the_generic_one() {
        let reply = Reply::from_response(Response::new(451, 0, 0, 0, "try later".to_string()));
        assert_eq!((reply.status.as_str(), reply.is_permanent()), ("4.0.0", false));
        let reply = Reply::from_response(Response::new(550, 5, 1, 1, "no such user\nhere".to_string()));
        assert_eq!((reply.status.as_str(), reply.text.as_str()), ("5.1.1", "no such user here"));
        assert_eq!(reply.failure("mx.remote.example").diagnostic, "550 5.1.1 no such user here");
    }
}
