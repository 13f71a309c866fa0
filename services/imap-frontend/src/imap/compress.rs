//! COMPRESS DEFLATE (RFC 4978): after login, the client may have both directions compressed,
//! which makes a full-mailbox header fetch a fraction of its size on slow links.

use imap_codec::imap_types::core::Tag;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Flow, Session};
use crate::response::Status;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn compress(&mut self, tag: &Tag<'_>) -> Flow {
        if self.io.is_compressed() {
            self.respond(Some(tag), Status::No, Some("COMPRESSIONACTIVE"), "DEFLATE is already active");
            return Flow::Continue;
        }
        self.ok(tag, "DEFLATE active");
        match self.io.start_deflate().await {
            Ok(()) => Flow::Continue,
            Err(error) => {
                tracing::debug!(client = %self.client_ip, ?error, "could not start COMPRESS");
                Flow::Close
            }
        }
    }
}
