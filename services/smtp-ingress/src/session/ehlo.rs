//! EHLO and HELO (RFC 5321 §4.1.1.1) with the extensions offered, and STARTTLS (RFC 3207).

use std::borrow::Cow;

use tokio::io::{AsyncRead, AsyncWrite};

use super::{Flow, Session, io::End};
use crate::reply::{Reply, replies};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// EHLO (`extended`) or HELO: both start over (RFC 5321 §4.1.4) and are accepted whatever
    /// name the client gives; the name is only recorded in the Received header.
    pub(super) fn ehlo(&mut self, host: &str, extended: bool) -> Reply {
        self.helo = Some(super::truncate(host, 255).into_owned());
        self.esmtp = extended;
        self.transaction = None;
        let greeting = format!("{} Hello {}", self.settings().hostname, super::truncate(host, 64));
        if !extended {
            return Reply::plain(250, vec![greeting.into()]);
        }
        let mut lines: Vec<Cow<'static, str>> = vec![
            greeting.into(),
            "PIPELINING".into(),
            format!("SIZE {}", self.settings().max_message_size).into(),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
            "CHUNKING".into(),
            "DSN".into(),
        ];
        if self.services.tls_acceptor().is_some() && !self.io.is_tls() {
            lines.push("STARTTLS".into());
        }
        if self.identity.is_none() && self.auth_allowed() {
            lines.push("AUTH PLAIN LOGIN".into());
        }
        Reply::plain(250, lines)
    }

    /// AUTH only over TLS, so passwords never cross the network in clear (RFC 8314 §5.1 for
    /// submission; on MX it is offered only after STARTTLS too).
    pub(super) fn auth_allowed(&self) -> bool {
        self.io.is_tls() || self.settings().allow_plaintext_auth
    }

    pub(super) async fn starttls(&mut self) -> Result<Flow, End> {
        let Some(acceptor) = self.services.tls_acceptor() else {
            self.respond(Reply::new(502, "5.5.1", "STARTTLS not available"));
            return Ok(Flow::Continue);
        };
        if self.io.is_tls() {
            self.respond(replies::bad_sequence("Already running TLS"));
            return Ok(Flow::Continue);
        }
        if self.helo.is_none() {
            self.respond(replies::bad_sequence("Send EHLO first"));
            return Ok(Flow::Continue);
        }
        self.io.reply(&Reply::new(220, "2.0.0", "Ready to start TLS"));
        let timeout = self.settings().command_timeout;
        match self.io.start_tls(&acceptor, timeout).await {
            Ok(()) => {
                // RFC 3207 §4.2: everything known before the handshake is forgotten.
                self.helo = None;
                self.esmtp = false;
                self.transaction = None;
                Ok(Flow::Continue)
            }
            Err(End::Io(error)) => {
                tracing::debug!(client = %self.client_ip, %error, "TLS handshake failed");
                Ok(Flow::Close)
            }
            Err(end) => Err(end),
        }
    }
}
