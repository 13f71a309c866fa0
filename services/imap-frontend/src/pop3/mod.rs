//! POP3 (RFC 1939) for devices that speak nothing else, served by the access tier beside IMAP
//! and stateless like it: the same mailstore client, password check, remembered logins,
//! failure delays, certificates and listener limits ([`Services`]). A session sees the INBOX as
//! it was at login; what it deletes is removed at QUIT, and a connection that drops removes
//! nothing.
//!
//! Also CAPA and response codes (RFC 2449), STLS (RFC 2595), AUTH with PLAIN and LOGIN
//! (RFC 5034) and PIPELINING. Passwords travel only inside TLS (STLS, or port 995), unless
//! `kubemail dev` allows plain text from loopback, as for IMAP.
//!
//! - [`maildrop`] — the INBOX snapshot: message numbers, DELE, RSET, the UPDATE state.

pub mod maildrop;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use kubemail_runtime::line_io::{End, Line, LineIo, dot_stuff};
use kubemail_runtime::tls::Connection;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::credentials::{self, Refused};
use crate::services::Services;
use maildrop::{Maildrop, NoMessage};

/// Longest command line, CRLF included (RFC 2449 §4).
pub const COMMAND_LINE_LIMIT: usize = 255;
/// Longest SASL response line (RFC 5034 §4 lifts the command limit for them; 12288 as in
/// RFC 4954 for SMTP).
pub const AUTH_LINE_LIMIT: usize = 12288;
/// The SASL mechanisms AUTH takes, as CAPA lists them and as a bare AUTH does.
const SASL_MECHANISMS: [&str; 2] = ["PLAIN", "LOGIN"];
/// How long a STLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// RFC 1939 §3.
enum State {
    Authorization { user: Option<String> },
    Transaction { maildrop: Maildrop },
}

/// Whether the session goes on after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// Runs one POP3 session on `connection` until QUIT, a timeout, too many errors, or shutdown.
pub async fn serve<S>(connection: Connection<S>, client_ip: IpAddr, services: Arc<Services>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let login_deadline = tokio::time::Instant::now() + services.settings.login_timeout;
    let mut session = Session {
        io: LineIo::new(connection),
        services,
        client_ip,
        state: State::Authorization { user: None },
        login_deadline,
        auth_failures: 0,
        errors: 0,
    };
    session.run().await;
    session.io.close().await;
}

struct Session<S> {
    io: LineIo<S>,
    services: Arc<Services>,
    client_ip: IpAddr,
    state: State,
    /// Logging in, however slowly its octets arrive, must be done by then.
    login_deadline: tokio::time::Instant,
    auth_failures: u32,
    /// Refused commands so far.
    errors: u32,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    async fn run(&mut self) {
        self.ok(&format!("{} POP3 server ready", self.services.settings.hostname));
        let shutdown = self.services.shutdown.clone();
        loop {
            let timeout = self.read_timeout();
            let line = tokio::select! {
                line = self.io.read_line(COMMAND_LINE_LIMIT, timeout) => line,
                () = shutdown.wait() => {
                    // Nothing is removed: the client deletes again in its next session.
                    self.err("[SYS/TEMP] Server shutting down, please reconnect");
                    return;
                }
            };
            let flow = match line {
                Ok(Line::Complete(line)) => self.command(&line).await,
                Ok(Line::TooLong) => self.refuse("Line too long"),
                // RFC 1939 §3: the autologout timer closes the connection without a response,
                // and without the UPDATE state.
                Err(End::Timeout | End::Closed | End::Io(_)) => return,
            };
            if flow == Flow::Close {
                return;
            }
        }
    }

    /// Before login, what is left of the time to log in; after it, the autologout time
    /// (RFC 1939 §3: at least 10 minutes) for each command.
    fn read_timeout(&self) -> Duration {
        match self.state {
            State::Authorization { .. } => self.login_deadline.saturating_duration_since(tokio::time::Instant::now()),
            State::Transaction { .. } => self.services.settings.idle_timeout,
        }
    }

    async fn command(&mut self, line: &[u8]) -> Flow {
        let line = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(line));
        let line = line.strip_suffix('\r').unwrap_or(&line);
        let (keyword, argument) = match line.split_once(' ') {
            Some((keyword, argument)) => (keyword, argument),
            None => (line, ""),
        };
        let keyword = keyword.to_ascii_uppercase();
        match (keyword.as_str(), &self.state) {
            ("CAPA", _) => self.capa(),
            ("QUIT", _) => self.quit().await,
            ("NOOP", State::Transaction { .. }) => self.ok(""),
            ("STLS", State::Authorization { .. }) => self.stls().await,
            ("USER", State::Authorization { .. }) => self.user(argument),
            ("PASS", State::Authorization { .. }) => self.pass(argument).await,
            ("AUTH", State::Authorization { .. }) => self.auth(argument).await,
            ("APOP", State::Authorization { .. }) => self.refuse("APOP is not supported; use USER and PASS or AUTH"),
            ("STAT" | "LIST" | "RETR" | "DELE" | "RSET" | "TOP" | "UIDL", State::Transaction { .. }) => {
                self.transaction(&keyword, argument).await
            }
            (
                "STAT" | "LIST" | "RETR" | "DELE" | "RSET" | "TOP" | "UIDL" | "NOOP" | "STLS" | "USER" | "PASS"
                | "AUTH" | "APOP",
                _,
            ) => self.refuse("Not allowed in this state"),
            _ => self.refuse("Unknown command"),
        }
    }

    fn capa(&mut self) -> Flow {
        let mut capabilities: Vec<String> =
            ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"].map(String::from).into();
        if matches!(self.state, State::Authorization { .. }) {
            if self.services.tls_acceptor().is_some() && !self.io.is_tls() {
                capabilities.push("STLS".into());
            }
            if self.passwords_allowed() {
                capabilities.push("USER".into());
                capabilities.push(format!("SASL {}", SASL_MECHANISMS.join(" ")));
            }
        }
        capabilities.push("IMPLEMENTATION kubemail".into());
        self.ok("Capability list follows");
        for capability in capabilities {
            self.line(capability.as_bytes());
        }
        self.line(b".");
        Flow::Continue
    }

    async fn stls(&mut self) -> Flow {
        let acceptor = match (self.services.tls_acceptor(), self.io.is_tls()) {
            (_, true) => return self.refuse("TLS is already active"),
            (None, false) => return self.refuse("TLS is not configured on this server"),
            (Some(acceptor), false) => acceptor,
        };
        self.ok("Begin TLS negotiation now");
        // Whatever the client pipelined behind STLS was sent in the clear and is dropped
        // unread (RFC 2595 §3.1).
        match self.io.start_tls(&acceptor, HANDSHAKE_TIMEOUT).await {
            Ok(()) => Flow::Continue,
            Err(error) => {
                tracing::debug!(client = %self.client_ip, ?error, "STLS handshake failed");
                Flow::Close
            }
        }
    }

    fn passwords_allowed(&self) -> bool {
        self.io.is_tls() || (self.services.settings.allow_plaintext_auth && self.client_ip.is_loopback())
    }

    /// Refuses a password sent in the clear; `None` when one may be sent.
    fn refuse_plain_text(&mut self) -> Option<Flow> {
        if self.passwords_allowed() {
            return None;
        }
        Some(self.refuse("[AUTH] Passwords are only accepted over TLS: use STLS or port 995"))
    }

    fn user(&mut self, name: &str) -> Flow {
        if let Some(refused) = self.refuse_plain_text() {
            return refused;
        }
        if name.is_empty() {
            return self.refuse("USER needs a name");
        }
        self.state = State::Authorization { user: Some(name.to_string()) };
        self.ok("Send your password")
    }

    async fn pass(&mut self, password: &str) -> Flow {
        if let Some(refused) = self.refuse_plain_text() {
            return refused;
        }
        let State::Authorization { user: Some(user) } = &mut self.state else {
            return self.refuse("USER first");
        };
        let user = std::mem::take(user);
        self.state = State::Authorization { user: None };
        self.log_in(user, password.to_string()).await
    }

    /// `AUTH mechanism [initial-response]` (RFC 5034) with PLAIN (RFC 4616) or LOGIN, as IMAP
    /// offers them; `=` is an empty initial response. A bare `AUTH` lists the mechanisms, as
    /// clients from before CAPA ask.
    async fn auth(&mut self, argument: &str) -> Flow {
        if let Some(refused) = self.refuse_plain_text() {
            return refused;
        }
        let mut words = argument.split(' ').filter(|word| !word.is_empty());
        let Some(mechanism) = words.next() else {
            self.ok("Mechanisms follow");
            for mechanism in SASL_MECHANISMS {
                self.line(mechanism.as_bytes());
            }
            self.line(b".");
            return Flow::Continue;
        };
        let initial = words.next();
        let credentials = if mechanism.eq_ignore_ascii_case("PLAIN") {
            match self.sasl_step(initial, "").await {
                Ok(response) => response.and_then(|plain| credentials::plain_credentials(&plain)),
                Err(flow) => return flow,
            }
        } else if mechanism.eq_ignore_ascii_case("LOGIN") {
            let user = match self.sasl_step(initial, "Username:").await {
                Ok(user) => user,
                Err(flow) => return flow,
            };
            let password = match self.sasl_step(None, "Password:").await {
                Ok(password) => password,
                Err(flow) => return flow,
            };
            match (user.map(String::from_utf8), password.map(String::from_utf8)) {
                (Some(Ok(user)), Some(Ok(password))) => Some((user, password)),
                _ => None,
            }
        } else {
            return self.refuse("Unsupported mechanism; use PLAIN or LOGIN");
        };
        match credentials {
            Some((user, password)) => self.log_in(user, password).await,
            None => self.failed().await,
        }
    }

    /// One SASL step: the decoded response (the initial response when the client sent one,
    /// else its answer to the challenge `prompt`), `None` when it is not base64; `Err` when the
    /// exchange ended here (cancelled, too long or the connection gone), answered already.
    async fn sasl_step(&mut self, initial: Option<&str>, prompt: &str) -> Result<Option<Vec<u8>>, Flow> {
        let response = match initial {
            Some("=") => String::new(),
            Some(initial) => initial.to_string(),
            None => {
                self.line(format!("+ {}", BASE64.encode(prompt)).as_bytes());
                let timeout = self.read_timeout();
                match self.io.read_line(AUTH_LINE_LIMIT, timeout).await {
                    Ok(Line::Complete(line)) => String::from_utf8_lossy(&line).trim_end().to_string(),
                    Ok(Line::TooLong) => return Err(self.refuse("Authentication response too long")),
                    Err(_) => return Err(Flow::Close),
                }
            }
        };
        if response == "*" {
            return Err(self.refuse("Authentication cancelled"));
        }
        Ok(BASE64.decode(response.as_bytes()).ok())
    }

    async fn log_in(&mut self, user: String, password: String) -> Flow {
        let account = match credentials::check(&self.services, user, password).await {
            Ok(account) => account,
            Err(Refused::Credentials) => return self.failed().await,
            Err(Refused::Suspended) => return self.refuse("[AUTH] The account is suspended"),
            Err(Refused::Unavailable) => {
                return self.unavailable("[SYS/TEMP] Authentication is unavailable, try again later");
            }
        };
        match Maildrop::open(&self.services.mailstore, &account).await {
            Ok(maildrop) => {
                let (count, octets) = maildrop.stat();
                tracing::debug!(client = %self.client_ip, account = %account.address, "logged in over POP3");
                self.state = State::Transaction { maildrop };
                self.ok(&format!("{} ({octets} octets)", messages(count)))
            }
            Err(status) => {
                tracing::warn!(client = %self.client_ip, %status, "the INBOX could not be opened for POP3");
                self.unavailable("[SYS/TEMP] The mailbox cannot be opened now, try again later")
            }
        }
    }

    /// A failed login: answered after a delay that doubles with each failure from the client's
    /// address, in any session and either protocol; too many end the connection.
    async fn failed(&mut self) -> Flow {
        self.auth_failures += 1;
        metrics::counter!("kubemail_pop3_auth_failures_total").increment(1);
        let delay = self.services.auth_failures.failed(self.client_ip, self.services.settings.auth_failure_delay);
        tokio::time::sleep(delay).await;
        self.err("[AUTH] Authentication failed");
        if self.auth_failures >= self.services.settings.max_auth_failures {
            self.err("Too many failed logins, closing");
            return Flow::Close;
        }
        Flow::Continue
    }

    async fn transaction(&mut self, keyword: &str, argument: &str) -> Flow {
        let State::Transaction { maildrop, .. } = &mut self.state else { return Flow::Continue };
        let mut arguments = argument.split(' ').filter(|word| !word.is_empty());
        match keyword {
            "STAT" => {
                let (count, octets) = maildrop.stat();
                self.ok(&format!("{count} {octets}"))
            }
            "RSET" => {
                maildrop.undelete_all();
                let (count, octets) = maildrop.stat();
                self.ok(&format!("Maildrop has {} ({octets} octets)", messages(count)))
            }
            "LIST" | "UIDL" => {
                let listing = |maildrop: &Maildrop, entry: &maildrop::Entry| match keyword {
                    "LIST" => entry.size.to_string(),
                    _ => maildrop.unique_id(entry),
                };
                match arguments.next() {
                    Some(number) => match message(maildrop, number) {
                        Ok((number, entry)) => {
                            let text = format!("{number} {}", listing(maildrop, entry));
                            self.ok(&text)
                        }
                        Err(text) => self.refuse(&text),
                    },
                    None => {
                        let lines: Vec<String> = maildrop
                            .live()
                            .map(|(number, entry)| format!("{number} {}", listing(maildrop, entry)))
                            .collect();
                        self.ok("Listing follows");
                        for line in lines {
                            self.line(line.as_bytes());
                        }
                        self.line(b".");
                        Flow::Continue
                    }
                }
            }
            "DELE" => match message(maildrop, arguments.next().unwrap_or_default()) {
                Ok((number, _)) => {
                    let _ = maildrop.delete(number);
                    self.ok(&format!("Message {number} deleted"))
                }
                Err(text) => self.refuse(&text),
            },
            "RETR" | "TOP" => {
                let number = match message(maildrop, arguments.next().unwrap_or_default()) {
                    Ok((number, _)) => number,
                    Err(text) => return self.refuse(&text),
                };
                let lines = match (keyword, arguments.next().map(str::parse::<usize>)) {
                    ("RETR", _) => None,
                    (_, Some(Ok(lines))) => Some(lines),
                    _ => return self.refuse("TOP needs a message number and a count of lines"),
                };
                match maildrop.body(&self.services.mailstore, number, lines.is_none()).await {
                    Ok(Some(body)) => {
                        if lines.is_none() {
                            maildrop.retrieved(number);
                        }
                        let body = match lines {
                            Some(lines) => top(&body, lines),
                            None => &body[..],
                        };
                        self.ok(&format!("{} octets", body.len()));
                        self.multiline(body);
                        Flow::Continue
                    }
                    Ok(None) => self.unavailable(&format!("Message {number} was removed by another session")),
                    Err(status) => {
                        tracing::warn!(client = %self.client_ip, %status, "a message could not be read for POP3");
                        self.unavailable("[SYS/TEMP] The message cannot be read now, try again later")
                    }
                }
            }
            _ => self.refuse("Unknown command"),
        }
    }

    /// QUIT: in the TRANSACTION state, the UPDATE state first (RFC 1939 §6).
    async fn quit(&mut self) -> Flow {
        let hostname = self.services.settings.hostname.clone();
        let State::Transaction { maildrop, .. } = &self.state else {
            self.ok(&format!("{hostname} signing off"));
            return Flow::Close;
        };
        match maildrop.update(&self.services.mailstore).await {
            Ok(left) => {
                self.ok(&format!("{hostname} signing off ({} left)", messages(left)));
            }
            Err(status) => {
                tracing::warn!(client = %self.client_ip, %status, "POP3 deletions could not be applied");
                self.err("[SYS/TEMP] Some deleted messages were not removed");
            }
        }
        Flow::Close
    }

    fn ok(&mut self, text: &str) -> Flow {
        let line = if text.is_empty() { "+OK".to_string() } else { format!("+OK {text}") };
        self.line(line.as_bytes());
        Flow::Continue
    }

    fn err(&mut self, text: &str) {
        self.line(format!("-ERR {text}").as_bytes());
    }

    /// An `-ERR` that is not the client's doing (the server's trouble, or another session's
    /// change): it does not count towards the errors that end a session, so a client retrying
    /// through an outage or reading a mailbox that another session emptied keeps its session
    /// and the deletions it has marked.
    fn unavailable(&mut self, text: &str) -> Flow {
        self.err(text);
        Flow::Continue
    }

    /// An `-ERR` to a command the client got wrong; too many of them end the session.
    fn refuse(&mut self, text: &str) -> Flow {
        self.err(text);
        self.errors += 1;
        if self.errors >= self.services.settings.max_errors {
            self.err("Too many errors, closing");
            return Flow::Close;
        }
        Flow::Continue
    }

    fn line(&mut self, text: &[u8]) {
        let output = self.io.output();
        output.extend_from_slice(text);
        output.extend_from_slice(b"\r\n");
    }

    /// A multi-line body (RFC 1939 §3), byte-stuffed and ended with a lone `.`.
    fn multiline(&mut self, body: &[u8]) {
        dot_stuff(self.io.output(), body);
    }
}

/// "1 message", "2 messages".
fn messages(count: usize) -> String {
    if count == 1 { "1 message".into() } else { format!("{count} messages") }
}

/// The message a number argument names; the `-ERR` text when it names none.
fn message<'m>(maildrop: &'m Maildrop, argument: &str) -> Result<(usize, &'m maildrop::Entry), String> {
    if argument.is_empty() || !argument.bytes().all(|octet| octet.is_ascii_digit()) {
        return Err("A message number is needed".into());
    }
    let Ok(number) = argument.parse::<usize>() else { return Err("No such message".into()) };
    match maildrop.get(number) {
        Ok(entry) => Ok((number, entry)),
        Err(NoMessage::NoSuchMessage) => Err("No such message".into()),
        Err(NoMessage::AlreadyDeleted) => Err(format!("Message {number} already deleted")),
    }
}

/// The header of `message`, the blank line after it, and the first `lines` lines of its body
/// (TOP).
fn top(message: &[u8], lines: usize) -> &[u8] {
    let body_start = memchr::memmem::find(message, b"\r\n\r\n").map_or(message.len(), |at| at + 4);
    let mut end = body_start;
    for _ in 0..lines {
        match memchr::memchr(b'\n', &message[end..]) {
            Some(at) => end += at + 1,
            None => return message,
        }
    }
    &message[..end]
}

#[cfg(test)]
mod tests {
    use super::top;

    #[test]
    fn top_takes_the_header_and_so_many_body_lines() {
        let message = b"Subject: x\r\nFrom: a@b\r\n\r\none\r\ntwo\r\nthree\r\n";
        assert_eq!(top(message, 0), b"Subject: x\r\nFrom: a@b\r\n\r\n");
        assert_eq!(top(message, 2), b"Subject: x\r\nFrom: a@b\r\n\r\none\r\ntwo\r\n");
        assert_eq!(top(message, 99), &message[..]);
        assert_eq!(top(b"Subject: no body", 3), b"Subject: no body");
    }
}
