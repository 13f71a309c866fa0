//! Removing messages and leaving the mailbox: EXPUNGE and UID EXPUNGE (RFC 9051 §6.4.3,
//! RFC 4315), refused in a read-only (EXAMINE) selection; CLOSE (§6.4.1), which removes the
//! \Deleted messages silently; UNSELECT (§6.4.2, RFC 3691), which removes nothing.

use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::sequence::SequenceSet;
use kubemail_proto::mailstore::ExpungeRequest;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::messages::uid_ranges;
use crate::response::Status;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// EXPUNGE, or UID EXPUNGE of the messages in `set`.
    pub(super) async fn expunge(&mut self, tag: &Tag<'_>, set: Option<&SequenceSet>) {
        let Some(selection) = &self.selected else { return };
        let mailbox_id = selection.mailbox_id;
        let uids = match set {
            // Every \Deleted message.
            None if selection.read_only => return self.refuse_read_only(tag),
            None => Vec::new(),
            Some(set) => {
                let Some(messages) = self.selected_messages(tag, set, true, true) else { return };
                if messages.is_empty() {
                    self.ok(tag, "UID EXPUNGE completed");
                    return;
                }
                uid_ranges(&messages.iter().map(|(_, uid)| *uid).collect::<Vec<_>>())
            }
        };
        let request = ExpungeRequest { account_id: self.account_id(), mailbox_id, uids };
        let (mut expunged, highest_modseq) = match self.services.mailstore.clone().expunge(request).await {
            Ok(response) => {
                let response = response.into_inner();
                (response.expunged, response.highest_modseq)
            }
            Err(status) => {
                self.mailstore_refused(tag, &status);
                return;
            }
        };
        expunged.sort_unstable();
        let Some(selection) = &mut self.selected else { return };
        let lines = selection.forget(&expunged);
        self.io.write(lines.as_bytes());
        let text = if set.is_some() { "UID EXPUNGE completed" } else { "EXPUNGE completed" };
        // With CONDSTORE the client learns the MODSEQ the expunge brought (RFC 7162 §3.2.10).
        let code = self.condstore.then(|| format!("HIGHESTMODSEQ {highest_modseq}"));
        self.respond(Some(tag), Status::Ok, code.as_deref(), text);
    }

    /// CLOSE: leaves the mailbox, first removing its \Deleted messages when it was selected
    /// read-write (silently: no EXPUNGE responses, RFC 9051 §6.4.1).
    pub(super) async fn close(&mut self, tag: &Tag<'_>) {
        let Some(selection) = self.selected.take() else {
            self.respond(Some(tag), Status::Bad, None, "No mailbox selected");
            return;
        };
        if !selection.read_only {
            let request =
                ExpungeRequest { account_id: self.account_id(), mailbox_id: selection.mailbox_id, uids: Vec::new() };
            if let Err(status) = self.services.mailstore.clone().expunge(request).await {
                // Still selected, as nothing was removed: the client may try again.
                self.selected = Some(selection);
                self.mailstore_refused(tag, &status);
                return;
            }
        }
        self.ok(tag, "CLOSE completed");
    }

    /// UNSELECT (RFC 3691): leaves the mailbox without removing anything.
    pub(super) fn unselect(&mut self, tag: &Tag<'_>) {
        match self.selected.take() {
            Some(_) => self.ok(tag, "UNSELECT completed"),
            None => self.respond(Some(tag), Status::Bad, None, "No mailbox selected"),
        }
    }
}
