//! One SMTP connection: the greeting, then one command after another until QUIT, a timeout,
//! too many errors or shutdown. Generic over the stream, so tests drive a session through an
//! in-memory duplex stream.
//!
//! - [`io`] — buffered lines, DATA and BDAT reading, reply batching, the TLS upgrade.
//! - `ehlo` — EHLO/HELO and the extensions offered; STARTTLS; the small verbs.
//! - `mail` — MAIL FROM: sender checks, parameters, the submission sender rule.
//! - `rcpt` — RCPT TO: recipient resolution, relay refusal, limits.
//! - `data` — DATA and BDAT, then the hand-off that earns the `250`.
//! - `auth` — AUTH PLAIN and LOGIN, failure throttling.

mod auth;
mod data;
mod ehlo;
pub mod io;
mod mail;
mod rcpt;

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use kubemail_proto::queue::Recipient;
use kubemail_runtime::limits::AuthFailures;
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::tls::ServerTls;
use smtp_proto::Request;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tracing::{Instrument, Span};

use crate::MailstoreClient;
use crate::address::Address;
use crate::directory::Directory;
use crate::handoff::Handoff;
use crate::reply::{Reply, replies};
use crate::verify::Verifier;
use io::{Connection, End, Io, Line};

/// Longest command line, CRLF included (RFC 5321 §4.5.3.1.4 allows 512; extensions add
/// parameters, so 1000 as for text lines).
pub const COMMAND_LINE_LIMIT: usize = 1000;
/// Longest SASL response line (RFC 4954 §4: at least 12288 octets must be accepted).
pub const AUTH_LINE_LIMIT: usize = 12288;

/// Which port a session arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// Port 25: mail for local domains from anyone; STARTTLS offered, AUTH only after it.
    Mx,
    /// Port 587: STARTTLS, then AUTH before MAIL.
    Submission,
    /// Port 465: implicit TLS (RFC 8314), AUTH before MAIL.
    Submissions,
}

impl Listener {
    fn requires_auth(self) -> bool {
        self != Listener::Mx
    }

    /// The `listener` label of the metrics.
    pub fn name(self) -> &'static str {
        match self {
            Listener::Mx => "smtp",
            Listener::Submission => "submission",
            Listener::Submissions => "submissions",
        }
    }
}

/// Limits and names shared by every session of a service; the defaults are those of the
/// flags in [`crate::config::LimitFlags`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// The name this server greets with and writes in Received headers.
    pub hostname: String,
    pub max_message_size: u64,
    pub max_recipients: usize,
    /// Refused commands after which the connection is closed.
    pub max_errors: u32,
    /// Waiting for a command (RFC 5321 §4.5.3.2.7: at least 5 minutes).
    pub command_timeout: Duration,
    /// Waiting for more of a message body.
    pub data_timeout: Duration,
    /// Failed AUTH attempts after which the connection is closed.
    pub max_auth_failures: u32,
    /// The delay of the reply to a client address's first failed AUTH; each further failure
    /// from it doubles it (`AuthFailures`).
    pub auth_failure_delay: Duration,
    /// Allows AUTH without TLS (for `kubemail dev` on loopback only).
    pub allow_plaintext_auth: bool,
}

/// What sessions share: the mailstore, the hand-off, TLS and the settings.
pub struct Services {
    /// Authentication.
    pub mailstore: MailstoreClient,
    /// Recipient lookups.
    pub directory: Directory,
    pub handoff: Handoff,
    /// `None` when no certificate is configured: STARTTLS is then not offered (nor while the
    /// certificate directory is still empty).
    pub tls: Option<ServerTls>,
    pub settings: Settings,
    /// Failed AUTH by client address, which sets how late the next failure is answered.
    pub auth_failures: Arc<AuthFailures>,
    /// SPF, DKIM and DMARC of mail from unauthenticated clients; `None` skips the checks.
    pub verifier: Option<Verifier>,
    pub shutdown: Shutdown,
}

impl Services {
    /// What STARTTLS hands the connection to, once there is a certificate.
    pub fn tls_acceptor(&self) -> Option<TlsAcceptor> {
        self.tls.as_ref().and_then(ServerTls::acceptor)
    }
}

/// The authenticated user of a session.
#[derive(Clone, Debug)]
pub struct Identity {
    pub address: String,
    /// Addresses it may use as MAIL FROM: its own and its aliases, lower-case.
    pub sender_addresses: Vec<String>,
}

/// The mail transaction between MAIL and the end of its message.
#[derive(Debug)]
struct Transaction {
    /// The root span of this message's trace: the recipient lookups and the hand-off run in
    /// it, and the queue carries its context on to delivery (DESIGN §5). A trace per message,
    /// not per session, as one session may carry many unrelated messages.
    span: Span,
    /// `None` for the null reverse-path `<>`.
    sender: Option<Address>,
    /// SIZE= (0 when not given).
    declared_size: u64,
    body_8bit: bool,
    smtputf8: bool,
    dsn_return: i32,
    dsn_envid: String,
    recipients: Vec<Recipient>,
    /// RCPT commands refused because the transaction already had the most recipients allowed.
    excess_recipients: usize,
    /// The message so far when it arrives in BDAT chunks; `None` before the first chunk.
    chunks: Option<Vec<u8>>,
}

/// What the loop does after a command.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// Serves one connection until it ends. For implicit TLS (port 465) the caller completes the
/// handshake and passes [`Connection::Tls`].
pub async fn serve<S>(connection: Connection<S>, client_ip: IpAddr, listener: Listener, services: Arc<Services>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut session = Session {
        io: Io::new(connection),
        services,
        client_ip,
        listener,
        helo: None,
        esmtp: false,
        identity: None,
        transaction: None,
        errors: 0,
        auth_failures: 0,
    };
    let span = tracing::info_span!("smtp.session", listener = listener.name(), client = %client_ip);
    session.run().instrument(span).await;
}

struct Session<S> {
    io: Io<S>,
    services: Arc<Services>,
    client_ip: IpAddr,
    listener: Listener,
    /// The EHLO/HELO argument, once given.
    helo: Option<String>,
    esmtp: bool,
    identity: Option<Identity>,
    transaction: Option<Transaction>,
    errors: u32,
    auth_failures: u32,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    fn settings(&self) -> &Settings {
        &self.services.settings
    }

    async fn run(&mut self) {
        let greeting = format!("{} ESMTP kubemail", self.settings().hostname);
        self.io.reply(&Reply::plain(220, vec![greeting.into()]));
        loop {
            let line = match self.next_command().await {
                Ok(Some(Line::Complete(line))) => line,
                Ok(Some(Line::TooLong)) => {
                    self.respond(replies::line_too_long());
                    if self.too_many_errors() {
                        break;
                    }
                    continue;
                }
                Ok(None) => {
                    self.io.reply(&replies::shutting_down());
                    break;
                }
                Err(End::Timeout) => {
                    self.io.reply(&replies::timeout());
                    break;
                }
                Err(End::Closed | End::Io(_)) => return,
            };
            // A command of a transaction runs in the message's span, the others in the session's.
            let span = self.transaction.as_ref().map_or_else(Span::current, |transaction| transaction.span.clone());
            match self.command(&line).instrument(span).await {
                Ok(Flow::Continue) if !self.too_many_errors() => {}
                Ok(_) => break,
                Err(End::Timeout) => {
                    self.io.reply(&replies::timeout());
                    break;
                }
                Err(End::Closed | End::Io(_)) => return,
            }
        }
        self.io.close().await;
    }

    /// The next command line, or `None` when the service shuts down between transactions.
    async fn next_command(&mut self) -> Result<Option<Line>, End> {
        let timeout = self.settings().command_timeout;
        if self.services.shutdown.is_triggered() && self.transaction.is_none() {
            return Ok(None);
        }
        let shutdown = self.services.shutdown.wait();
        tokio::select! {
            line = self.io.read_line(COMMAND_LINE_LIMIT, timeout) => line.map(Some),
            // A transaction under way is finished first: its client is about to send the rest.
            () = shutdown, if self.transaction.is_none() => Ok(None),
        }
    }

    /// Queues `reply`, counting refusals towards the error limit.
    fn respond(&mut self, reply: Reply) {
        if reply.is_error() {
            self.errors += 1;
        }
        self.io.reply(&reply);
    }

    fn too_many_errors(&mut self) -> bool {
        if self.errors >= self.settings().max_errors {
            self.io.reply(&replies::too_many_errors());
            return true;
        }
        false
    }

    async fn command(&mut self, line: &[u8]) -> Result<Flow, End> {
        // BDAT is parsed here: smtp-proto's chunk-size parser wraps on overflow, and a wrong
        // size would desynchronise the session (the rest of the chunk read as commands).
        if line.len() >= 4 && line[..4].eq_ignore_ascii_case(b"BDAT") {
            return self.bdat(line).await;
        }
        let request = match Request::parse(&mut line.iter()) {
            Ok(request) => request,
            Err(error) => {
                self.respond(parse_error(error));
                return Ok(Flow::Continue);
            }
        };
        let reply = match request {
            Request::Ehlo { host } => self.ehlo(&host, true),
            Request::Helo { host } => self.ehlo(&host, false),
            Request::Mail { from } => self.mail(from).await,
            Request::Rcpt { to } => match self.rcpt(to, line).await {
                Some(reply) => reply,
                None => return Ok(Flow::Continue),
            },
            Request::Data => return self.data().await,
            Request::Auth { mechanism, initial_response } => return self.auth(mechanism, &initial_response).await,
            Request::StartTls => return self.starttls().await,
            Request::Rset => {
                self.transaction = None;
                replies::ok()
            }
            Request::Noop { .. } => replies::ok(),
            Request::Vrfy { .. } => {
                Reply::new(252, "2.5.0", "Cannot VRFY user, but will accept message and attempt delivery")
            }
            Request::Help { .. } => Reply::new(
                214,
                "2.0.0",
                "See RFC 5321; commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY AUTH STARTTLS",
            ),
            Request::Quit => {
                self.io.reply(&Reply::new(221, "2.0.0", "Bye"));
                return Ok(Flow::Close);
            }
            // Handled before parsing (see above); unreachable, answered like a bad sequence.
            Request::Bdat { .. } => replies::bad_sequence("BDAT out of place"),
            Request::Lhlo { .. }
            | Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => Reply::new(502, "5.5.1", "Command not implemented"),
        };
        self.respond(reply);
        Ok(Flow::Continue)
    }
}

/// The reply to a command smtp-proto could not parse.
fn parse_error(error: smtp_proto::Error) -> Reply {
    use smtp_proto::Error;
    match error {
        Error::UnknownCommand => Reply::new(500, "5.5.1", "Command unrecognized"),
        Error::SyntaxError { syntax } => replies::syntax(format!("Syntax: {syntax}")),
        Error::InvalidSenderAddress => Reply::new(501, "5.1.7", "Bad sender address syntax"),
        Error::InvalidRecipientAddress => Reply::new(501, "5.1.3", "Bad recipient address syntax"),
        Error::InvalidParameter { param } => replies::syntax(format!("Invalid value for parameter {param}")),
        Error::UnsupportedParameter { param } => {
            Reply::new(555, "5.5.4", format!("Unsupported parameter {}", truncate(&param, 64)))
        }
        Error::NeedsMoreData { .. } | Error::ResponseTooLong | Error::InvalidResponse { .. } => {
            replies::syntax("Malformed command")
        }
    }
}

/// At most `max` characters of client input, for echoing it in a reply.
fn truncate(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        Some((end, _)) => Cow::Owned(format!("{}…", &text[..end])),
        None => Cow::Borrowed(text),
    }
}
