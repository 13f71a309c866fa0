//! LOGIN and AUTHENTICATE (RFC 9051 §6.2.2–3), the latter with the PLAIN (RFC 4616) and LOGIN
//! mechanisms, both with SASL-IR (RFC 4959); and UNAUTHENTICATE (RFC 8437), which lets a client
//! log in as someone else on the same connection.
//!
//! Passwords travel only inside TLS: before STARTTLS, port 143 advertises LOGINDISABLED and
//! refuses both commands with PRIVACYREQUIRED (unless `kubemail dev` allows plain text on
//! loopback). Failed attempts are answered after a delay and end the connection after a few.
//! Successful logins are remembered for a while (`kubemail_runtime::login_cache`), so a client
//! logging in again skips the argon2id verification.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use imap_codec::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_codec::imap_types::core::Tag;
use tokio::io::{AsyncRead, AsyncWrite};

use super::io::{End, Input};
use super::{Flow, Session, State};
use crate::credentials::{self, Account, Refused};
use crate::response::Status;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn login(&mut self, tag: &Tag<'_>, username: &[u8], password: &[u8]) -> Flow {
        if !self.may_authenticate(tag) {
            return Flow::Continue;
        }
        match (std::str::from_utf8(username), std::str::from_utf8(password)) {
            (Ok(username), Ok(password)) => self.verify(tag, username.to_string(), password.to_string()).await,
            _ => self.failed(tag).await,
        }
    }

    pub(super) async fn authenticate(
        &mut self,
        tag: &Tag<'_>,
        mechanism: AuthMechanism<'_>,
        initial_response: Option<Vec<u8>>,
    ) -> Flow {
        if !self.may_authenticate(tag) {
            return Flow::Continue;
        }
        let credentials = match mechanism {
            AuthMechanism::Plain => {
                let Some(response) = self.sasl_step(tag, initial_response, "").await else { return Flow::Continue };
                credentials::plain_credentials(&response)
            }
            AuthMechanism::Login => {
                let Some(username) = self.sasl_step(tag, initial_response, "Username:").await else {
                    return Flow::Continue;
                };
                let Some(password) = self.sasl_step(tag, None, "Password:").await else { return Flow::Continue };
                match (String::from_utf8(username), String::from_utf8(password)) {
                    (Ok(username), Ok(password)) => Some((username, password)),
                    _ => None,
                }
            }
            other => {
                let text = format!("{other} is not supported; use PLAIN or LOGIN");
                self.respond(Some(tag), Status::No, Some("CANNOT"), &text);
                return Flow::Continue;
            }
        };
        match credentials {
            Some((username, password)) => self.verify(tag, username, password).await,
            None => self.failed(tag).await,
        }
    }

    /// Whether a password may be sent now; if not, the command is refused.
    fn may_authenticate(&mut self, tag: &Tag<'_>) -> bool {
        if self.io.is_tls() || self.plaintext_auth_allowed() {
            return true;
        }
        let text = "Passwords are only accepted over TLS: use STARTTLS or port 993";
        self.respond(Some(tag), Status::No, Some("PRIVACYREQUIRED"), text);
        false
    }

    /// One SASL step: the client's response (the initial response when it sent one, else the
    /// answer to the challenge `prompt`), or `None` when the exchange ended here (cancelled or
    /// malformed, answered already).
    async fn sasl_step(&mut self, tag: &Tag<'_>, initial: Option<Vec<u8>>, prompt: &str) -> Option<Vec<u8>> {
        if let Some(response) = initial {
            return Some(response);
        }
        self.io.write(format!("+ {}\r\n", BASE64.encode(prompt)).as_bytes());
        // Before login: the answer, too, must be in by the login deadline.
        let deadline = self.login_deadline;
        let timeout = deadline.saturating_duration_since(tokio::time::Instant::now());
        let answer = tokio::time::timeout_at(deadline, self.io.read_authenticate_data(timeout)).await;
        match answer.unwrap_or(Err(End::Timeout)) {
            Ok(Input::Message(AuthenticateData::Continue(data))) => Some(data.declassify().to_vec()),
            Ok(Input::Message(AuthenticateData::Cancel)) => {
                self.respond(Some(tag), Status::Bad, None, "Authentication cancelled");
                None
            }
            Ok(_) => {
                self.respond(Some(tag), Status::Bad, None, "Malformed authentication data (expected base64)");
                None
            }
            // The session ends on the next read, which fails the same way.
            Err(_) => None,
        }
    }

    /// Checks the credentials (`credentials::check`) and logs in.
    async fn verify(&mut self, tag: &Tag<'_>, username: String, password: String) -> Flow {
        match credentials::check(&self.services, username, password).await {
            Ok(account) => self.logged_in(tag, account),
            Err(Refused::Credentials) => self.failed(tag).await,
            Err(Refused::Suspended) => {
                self.respond(Some(tag), Status::No, Some("CONTACTADMIN"), "The account is suspended");
                Flow::Continue
            }
            Err(Refused::Unavailable) => {
                let text = "Authentication is unavailable, try again later";
                self.respond(Some(tag), Status::No, Some("UNAVAILABLE"), text);
                Flow::Continue
            }
        }
    }

    fn logged_in(&mut self, tag: &Tag<'_>, account: Account) -> Flow {
        tracing::debug!(client = %self.client_ip, account = %account.address, "logged in");
        self.state = State::Authenticated(account);
        let capabilities = format!("CAPABILITY {}", self.capabilities());
        self.respond(Some(tag), Status::Ok, Some(&capabilities), "Logged in");
        Flow::Continue
    }

    /// Back to the not authenticated state, as if the connection were new but for TLS and
    /// COMPRESS (RFC 8437 §3): the mailbox is left without expunging, and what ENABLE turned on
    /// is off again. A login that follows has the whole login time again.
    pub(super) fn unauthenticate(&mut self, tag: &Tag<'_>) -> Flow {
        let State::Authenticated(account) = &self.state else {
            self.respond(Some(tag), Status::Bad, None, "Log in before UNAUTHENTICATE");
            return Flow::Continue;
        };
        tracing::debug!(client = %self.client_ip, account = %account.address, "unauthenticated");
        self.selected = None;
        self.notify = None;
        (self.utf8, self.rev2, self.condstore, self.qresync) = (false, false, false, false);
        self.state = State::NotAuthenticated;
        self.login_deadline = tokio::time::Instant::now() + self.services.settings.login_timeout;
        self.ok(tag, "UNAUTHENTICATE completed");
        Flow::Continue
    }

    /// A failed login: answered after a delay that doubles with each failure from the client's
    /// address, in any session; too many in this session end the connection.
    async fn failed(&mut self, tag: &Tag<'_>) -> Flow {
        self.auth_failures += 1;
        metrics::counter!("kubemail_imap_auth_failures_total").increment(1);
        let delay = self.services.auth_failures.failed(self.client_ip, self.services.settings.auth_failure_delay);
        tokio::time::sleep(delay).await;
        self.respond(Some(tag), Status::No, Some("AUTHENTICATIONFAILED"), "Authentication failed");
        if self.auth_failures >= self.services.settings.max_auth_failures {
            self.bye(None, "Too many failed logins");
            return Flow::Close;
        }
        Flow::Continue
    }
}
