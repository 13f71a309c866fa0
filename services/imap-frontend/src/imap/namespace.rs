//! NAMESPACE (RFC 9051 §6.3.10, RFC 2342): one personal namespace, the account's own
//! mailboxes; no other users' and no shared ones.

use imap_codec::imap_types::core::Tag;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use crate::mailbox_name::SEPARATOR;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) fn namespace(&mut self, tag: &Tag<'_>) {
        self.io.write(format!("* NAMESPACE ((\"\" \"{SEPARATOR}\")) NIL NIL\r\n").as_bytes());
        self.ok(tag, "NAMESPACE completed");
    }
}
