//! CREATE, DELETE and RENAME (RFC 9051 §6.3.4–6), done by the mailstore; a refusal is answered
//! with the RFC 5530 code that says why. CREATE may give the new mailbox a special use
//! (CREATE-SPECIAL-USE, RFC 6154 §3).

use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::mailbox::Mailbox;
use kubemail_proto::mailstore::{CreateMailboxRequest, DeleteMailboxRequest, RenameMailboxRequest};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{INBOX, Session};
use crate::mailbox_name::SEPARATOR;
use crate::response::Status;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// CREATE, with the special-use attributes of its USE parameter, if any.
    pub(super) async fn create(&mut self, tag: &Tag<'_>, mailbox: &Mailbox<'_>, special_use: Option<&[String]>) {
        let special_use = match special_use.unwrap_or_default() {
            [] => String::new(),
            [one] => match creatable_special_use(one) {
                Some(special_use) => special_use.to_string(),
                None => {
                    let text = format!("{one} cannot be given to a mailbox here");
                    self.respond(Some(tag), Status::No, Some("USEATTR"), &text);
                    return;
                }
            },
            _ => {
                self.respond(Some(tag), Status::No, Some("USEATTR"), "One special use per mailbox");
                return;
            }
        };
        let Some(name) = self.name(tag, mailbox) else { return };
        // A trailing separator only says the client means to make children (RFC 9051 §6.3.4).
        let name = name.trim_end_matches(SEPARATOR).to_string();
        if name.eq_ignore_ascii_case(INBOX) {
            self.respond(Some(tag), Status::No, Some("ALREADYEXISTS"), "INBOX always exists");
            return;
        }
        let request = CreateMailboxRequest { account_id: self.account_id(), name, special_use };
        match self.services.mailstore.clone().create_mailbox(request).await {
            Ok(created) => {
                let created = created.into_inner();
                // RFC 8474 §4.1: the new mailbox's MAILBOXID.
                let code = format!("MAILBOXID ({})", super::status::object_id(created.id, created.uidvalidity));
                self.respond(Some(tag), Status::Ok, Some(&code), "CREATE completed");
            }
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

/// The special use `attribute` names, as the mailstore stores it, if a mailbox made here may
/// have it: \All and \Flagged stand for virtual mailboxes (RFC 6154 §2), which there are none of.
fn creatable_special_use(attribute: &str) -> Option<&'static str> {
    let bare = attribute.strip_prefix('\\')?;
    ["Archive", "Drafts", "Junk", "Sent", "Trash"].into_iter().find(|known| known.eq_ignore_ascii_case(bare))
}
