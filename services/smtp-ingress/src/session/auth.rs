//! AUTH (RFC 4954) with the PLAIN (RFC 4616) and LOGIN mechanisms, checked by the mailstore.
//! Failures slow the client down and, repeated, end the session.
//!
//! SCRAM-SHA-256 is not offered: it needs per-account SCRAM credentials on the server, and
//! accounts hold argon2id hashes only.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use kubemail_proto::mailstore::AuthenticateRequest;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::Code;

use super::io::{End, Line};
use super::{AUTH_LINE_LIMIT, Flow, Identity, Session};
use crate::reply::{Reply, replies};

/// A SASL exchange that did not produce credentials: the reply that ends it.
type Refused = Reply;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn auth(&mut self, mechanism: u64, initial_response: &str) -> Result<Flow, End> {
        let refusal = if self.identity.is_some() {
            Some(replies::bad_sequence("Already authenticated"))
        } else if self.transaction.is_some() {
            Some(replies::bad_sequence("AUTH is not allowed during a mail transaction"))
        } else if self.helo.is_none() {
            Some(replies::bad_sequence("Send EHLO first"))
        } else if !self.auth_allowed() {
            Some(Reply::new(538, "5.7.11", "Encryption required for requested authentication mechanism"))
        } else {
            None
        };
        if let Some(reply) = refusal {
            self.respond(reply);
            return Ok(Flow::Continue);
        }
        let credentials = match mechanism {
            smtp_proto::AUTH_PLAIN => self.plain(initial_response).await?,
            smtp_proto::AUTH_LOGIN => self.login(initial_response).await?,
            _ => Err(Reply::new(504, "5.5.4", "Unrecognized authentication type")),
        };
        let (username, password) = match credentials {
            Ok(credentials) => credentials,
            Err(reply) => {
                self.respond(reply);
                return Ok(Flow::Continue);
            }
        };
        let request = AuthenticateRequest { username, password };
        match self.services.mailstore.clone().authenticate(request).await {
            Ok(response) => {
                let response = response.into_inner();
                let mut sender_addresses: Vec<String> =
                    response.sender_addresses.iter().map(|address| address.to_lowercase()).collect();
                sender_addresses.push(response.address.to_lowercase());
                self.identity = Some(Identity { address: response.address, sender_addresses });
                self.io.reply(&Reply::new(235, "2.7.0", "Authentication successful"));
                Ok(Flow::Continue)
            }
            Err(status)
                if matches!(
                    status.code(),
                    Code::Unauthenticated | Code::InvalidArgument | Code::PermissionDenied | Code::FailedPrecondition
                ) =>
            {
                self.auth_failed().await
            }
            Err(status) => {
                tracing::warn!(%status, "authentication could not be checked");
                self.respond(Reply::new(454, "4.7.0", "Temporary authentication failure"));
                Ok(Flow::Continue)
            }
        }
    }

    /// A wrong user name or password: answered the later the more failures came from the
    /// client's address (in any session), and the session ends after too many of its own.
    async fn auth_failed(&mut self) -> Result<Flow, End> {
        self.auth_failures += 1;
        tracing::info!(client = %self.client_ip, failures = self.auth_failures, "authentication failed");
        let delay = self.services.auth_failures.failed(self.client_ip, self.settings().auth_failure_delay);
        self.io.flush().await?;
        tokio::time::sleep(delay).await;
        self.respond(Reply::new(535, "5.7.8", "Authentication credentials invalid"));
        if self.auth_failures >= self.settings().max_auth_failures {
            self.io.reply(&Reply::new(421, "4.7.0", "Too many authentication failures, closing connection"));
            return Ok(Flow::Close);
        }
        Ok(Flow::Continue)
    }

    /// PLAIN: `authzid NUL authcid NUL password`, in the initial response or after `334 `.
    async fn plain(&mut self, initial_response: &str) -> Result<Result<(String, String), Refused>, End> {
        let response = match initial_response {
            "" => match self.challenge("").await? {
                Ok(response) => response,
                Err(refused) => return Ok(Err(refused)),
            },
            // RFC 4954 §4: "=" is an empty initial response.
            "=" => Vec::new(),
            text => match decode(text.as_bytes()) {
                Ok(response) => response,
                Err(refused) => return Ok(Err(refused)),
            },
        };
        let mut parts = response.split(|&byte| byte == 0);
        let (Some(authzid), Some(authcid), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Ok(Err(Reply::new(501, "5.5.2", "Malformed PLAIN response")));
        };
        if !authzid.is_empty() && authzid != authcid {
            return Ok(Err(Reply::new(535, "5.7.8", "Authorization identity must be the authentication identity")));
        }
        Ok(utf8_credentials(authcid, password))
    }

    /// LOGIN: the user name (or the initial response) and the password after two challenges.
    async fn login(&mut self, initial_response: &str) -> Result<Result<(String, String), Refused>, End> {
        let username = if initial_response.is_empty() {
            match self.challenge("VXNlcm5hbWU6").await? {
                Ok(username) => username,
                Err(refused) => return Ok(Err(refused)),
            }
        } else {
            match decode(initial_response.as_bytes()) {
                Ok(username) => username,
                Err(refused) => return Ok(Err(refused)),
            }
        };
        let password = match self.challenge("UGFzc3dvcmQ6").await? {
            Ok(password) => password,
            Err(refused) => return Ok(Err(refused)),
        };
        Ok(utf8_credentials(&username, &password))
    }

    /// Sends `334 <challenge>` and reads the client's base64 answer; `*` cancels (RFC 4954 §4).
    async fn challenge(&mut self, challenge: &'static str) -> Result<Result<Vec<u8>, Refused>, End> {
        self.io.reply(&Reply::plain(334, vec![challenge.into()]));
        let timeout = self.settings().command_timeout;
        let line = match self.io.read_line(AUTH_LINE_LIMIT, timeout).await? {
            Line::Complete(line) => line,
            Line::TooLong => return Ok(Err(replies::line_too_long())),
        };
        let answer = line.trim_ascii_end();
        if answer == b"*" {
            return Ok(Err(Reply::new(501, "5.0.0", "Authentication cancelled")));
        }
        Ok(decode(answer))
    }
}

fn decode(text: &[u8]) -> Result<Vec<u8>, Refused> {
    BASE64.decode(text).map_err(|_| Reply::new(501, "5.5.2", "Invalid base64 data"))
}

fn utf8_credentials(username: &[u8], password: &[u8]) -> Result<(String, String), Refused> {
    match (std::str::from_utf8(username), std::str::from_utf8(password)) {
        (Ok(username), Ok(password)) if !username.is_empty() => Ok((username.to_string(), password.to_string())),
        _ => Err(Reply::new(501, "5.5.2", "Malformed credentials")),
    }
}
