//! CREATE, DELETE and RENAME (RFC 9051 §6.3.4–6), done by the mailstore; a refusal is answered
//! with the RFC 5530 code that says why.

use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::mailbox::Mailbox;
use kubemail_proto::mailstore::{CreateMailboxRequest, DeleteMailboxRequest, RenameMailboxRequest};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{INBOX, Session};
use crate::mailbox_name::SEPARATOR;
use crate::response::Status;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn create(&mut self, tag: &Tag<'_>, mailbox: &Mailbox<'_>) {
        let Some(name) = self.name(tag, mailbox) else { return };
        // A trailing separator only says the client means to make children (RFC 9051 §6.3.4).
        let name = name.trim_end_matches(SEPARATOR).to_string();
        if name.eq_ignore_ascii_case(INBOX) {
            self.respond(Some(tag), Status::No, Some("ALREADYEXISTS"), "INBOX always exists");
            return;
        }
        let request = CreateMailboxRequest { account_id: self.account_id(), name, special_use: String::new() };
        match self.services.mailstore.clone().create_mailbox(request).await {
            Ok(_) => self.ok(tag, "CREATE completed"),
            Err(status) => self.mailstore_refused(tag, &status),
        }
    }

    pub(super) async fn delete(&mut self, tag: &Tag<'_>, mailbox: &Mailbox<'_>) {
        let Some(name) = self.name(tag, mailbox) else { return };
        let request = DeleteMailboxRequest { account_id: self.account_id(), name };
        match self.services.mailstore.clone().delete_mailbox(request).await {
            Ok(_) => self.ok(tag, "DELETE completed"),
            Err(status) => self.mailstore_refused(tag, &status),
        }
    }

    pub(super) async fn rename(&mut self, tag: &Tag<'_>, from: &Mailbox<'_>, to: &Mailbox<'_>) {
        let (Some(from), Some(to)) = (self.name(tag, from), self.name(tag, to)) else { return };
        let request = RenameMailboxRequest { account_id: self.account_id(), from, to };
        match self.services.mailstore.clone().rename_mailbox(request).await {
            Ok(_) => self.ok(tag, "RENAME completed"),
            Err(status) => self.mailstore_refused(tag, &status),
        }
    }
}
