//! STATUS (RFC 9051 §6.3.11): a mailbox's counters without selecting it, HIGHESTMODSEQ
//! (RFC 7162), DELETED-STORAGE (RFC 9208) and MAILBOXID (RFC 8474) among them. The same items
//! answer LIST-STATUS.

use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::status::StatusDataItemName;
use kubemail_proto::mailstore::MailboxInfo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use crate::response::Status;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn status(
        &mut self,
        tag: &Tag<'_>,
        mailbox: &Mailbox<'_>,
        items: &[StatusDataItemName],
        mailbox_id: bool,
    ) {
        let Some(name) = self.name(tag, mailbox) else { return };
        let Some(listing) = self.mailboxes(tag).await else { return };
        let Some(info) = listing.mailboxes.iter().find(|m| m.name == name) else {
            self.respond(Some(tag), Status::No, Some("NONEXISTENT"), "No such mailbox");
            return;
        };
        let line =
            format!("* STATUS {} ({})\r\n", self.quoted_name(&info.name), self.status_items(info, items, mailbox_id));
        self.io.write(line.as_bytes());
        self.ok(tag, "STATUS completed");
    }

    /// The values of the STATUS `items` of `info`, e.g. `MESSAGES 3 UNSEEN 1`, and its
    /// MAILBOXID when `mailbox_id`.
    pub(super) fn status_items(
        &mut self,
        info: &MailboxInfo,
        items: &[StatusDataItemName],
        mailbox_id: bool,
    ) -> String {
        let mut condstore = false;
        let mut values: Vec<String> = items
            .iter()
            .map(|item| match item {
                StatusDataItemName::Messages => format!("MESSAGES {}", info.messages),
                StatusDataItemName::UidNext => format!("UIDNEXT {}", info.uidnext),
                StatusDataItemName::UidValidity => format!("UIDVALIDITY {}", info.uidvalidity),
                StatusDataItemName::Unseen => format!("UNSEEN {}", info.unseen),
                StatusDataItemName::Deleted => format!("DELETED {}", info.deleted),
                StatusDataItemName::Size => format!("SIZE {}", info.size),
                StatusDataItemName::HighestModSeq => {
                    condstore = true;
                    format!("HIGHESTMODSEQ {}", info.highest_modseq)
                }
                // The messages no session has taken as \Recent yet.
                StatusDataItemName::Recent => format!("RECENT {}", info.recent),
                // Deleted messages' octets (RFC 9208 §4.2.1).
                StatusDataItemName::DeletedStorage => "DELETED-STORAGE 0".to_string(),
            })
            .collect();
        if mailbox_id {
            values.push(format!("MAILBOXID ({})", object_id(info.id, info.uidvalidity)));
        }
        // RFC 7162 §3.1: STATUS HIGHESTMODSEQ is one of the commands that turn CONDSTORE on.
        if condstore {
            self.enable_condstore();
        }
        values.join(" ")
    }
}

/// A mailbox's MAILBOXID (RFC 8474 §4): kept across RENAME, never given to another mailbox.
/// The row id alone could come back on SQLite once the newest mailbox is deleted; with the
/// UIDVALIDITY beside it, it cannot.
pub(super) fn object_id(id: i64, uidvalidity: u32) -> String {
    format!("F{id}-{uidvalidity}")
}
