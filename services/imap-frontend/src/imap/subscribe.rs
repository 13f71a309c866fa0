//! SUBSCRIBE and UNSUBSCRIBE (RFC 9051 §6.3.7–8): the subscription is kept by the mailstore,
//! so every frontend's LSUB and LIST (SUBSCRIBED) agree. A subscription is a name: one with no
//! mailbox may be subscribed, and it outlives a deleted mailbox.

use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::mailbox::Mailbox;
use kubemail_proto::mailstore::SetSubscribedRequest;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn subscribe(&mut self, tag: &Tag<'_>, mailbox: &Mailbox<'_>, subscribed: bool) {
        let Some(name) = self.name(tag, mailbox) else { return };
        let request = SetSubscribedRequest { account_id: self.account_id(), name, subscribed };
        match self.services.mailstore.clone().set_subscribed(request).await {
            Ok(_) => self.ok(tag, if subscribed { "SUBSCRIBE completed" } else { "UNSUBSCRIBE completed" }),
            Err(status) => self.mailstore_refused(tag, &status),
        }
    }
}
