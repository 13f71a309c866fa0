//! STARTTLS (RFC 9051 §6.2.1): the plain connection on port 143 becomes a TLS one before
//! login, so passwords never travel in the clear.

use std::time::Duration;

use imap_codec::imap_types::core::Tag;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Flow, Session};
use crate::response::Status;

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn starttls(&mut self, tag: &Tag<'_>) -> Flow {
        let acceptor = match (self.services.tls_acceptor(), self.io.is_tls()) {
            (_, true) => {
                self.respond(Some(tag), Status::Bad, None, "TLS is already active");
                return Flow::Continue;
            }
            (None, false) => {
                self.respond(Some(tag), Status::No, None, "TLS is not configured on this server");
                return Flow::Continue;
            }
            (Some(acceptor), false) => acceptor,
        };
        self.ok(tag, "Begin TLS negotiation now");
        match self.io.start_tls(&acceptor, HANDSHAKE_TIMEOUT).await {
            Ok(()) => Flow::Continue,
            Err(error) => {
                tracing::debug!(client = %self.client_ip, ?error, "STARTTLS handshake failed");
                Flow::Close
            }
        }
    }
}
