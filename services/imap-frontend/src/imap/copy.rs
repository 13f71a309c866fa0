//! COPY and MOVE with their UID forms (RFC 9051 §6.4.7–8, RFC 6851). Each answers with the
//! new UIDs (COPYUID, RFC 4315), so a client knows where its messages went without searching
//! for them. A copy that takes a while says so with INPROGRESS (RFC 9585).

use std::time::Duration;

use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::mailbox::Mailbox;
use imap_codec::imap_types::sequence::SequenceSet;
use kubemail_proto::mailstore::CopyMessagesRequest;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::Code;

use super::Session;
use super::messages::uid_ranges;
use super::progress::Progress;
use crate::response::{self, Status};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// COPY, or MOVE when `move_messages`.
    pub(super) async fn copy(
        &mut self,
        tag: &Tag<'_>,
        set: &SequenceSet,
        destination: &Mailbox<'_>,
        uid: bool,
        move_messages: bool,
    ) {
        let command = match (uid, move_messages) {
            (false, false) => "COPY",
            (true, false) => "UID COPY",
            (false, true) => "MOVE",
            (true, true) => "UID MOVE",
        };
        let Some(messages) = self.selected_messages(tag, set, uid, move_messages) else { return };
        let Some(source_mailbox_id) = self.selected.as_ref().map(|selection| selection.mailbox_id) else { return };
        let Some(destination) = self.name(tag, destination) else { return };
        if messages.is_empty() {
            self.ok(tag, &format!("{command} completed: nothing to copy"));
            return;
        }
        let uids: Vec<u32> = messages.iter().map(|(_, uid)| *uid).collect();
        let request = CopyMessagesRequest {
            account_id: self.account_id(),
            source_mailbox_id,
            uids: uid_ranges(&uids),
            destination,
            r#move: move_messages,
        };
        let mut mailstore = self.services.mailstore.clone();
        let copying = mailstore.copy_messages(request);
        tokio::pin!(copying);
        let mut progress = Progress::new(tag, self.services.settings.progress_interval);
        let mut ticks = tokio::time::interval(self.services.settings.progress_interval.max(Duration::from_millis(10)));
        let answer = loop {
            tokio::select! {
                answer = &mut copying => break answer,
                _ = ticks.tick() => {
                    // The mailstore copies in one transaction: how far it got is not known.
                    if let Some(line) = progress.tick(None, Some(uids.len()), "Copying the messages") {
                        self.io.write(line.as_bytes());
                        let _ = self.io.flush().await;
                    }
                }
            }
        };
        let copied = match answer {
            Ok(response) => response.into_inner(),
            Err(status) => {
                self.destination_refused(tag, &status);
                return;
            }
        };
        let code = format!(
            "COPYUID {} {} {}",
            copied.destination_uidvalidity,
            response::sequence_set(&copied.source_uids),
            response::sequence_set(&copied.destination_uids)
        );
        if !move_messages {
            self.respond(Some(tag), Status::Ok, Some(&code), &format!("{command} completed"));
            return;
        }
        // MOVE reports the new UIDs untagged, then the messages leaving (RFC 6851 §4.3).
        self.respond(None, Status::Ok, Some(&code), "Moved");
        let Some(selection) = &mut self.selected else { return };
        let mut moved = copied.source_uids;
        moved.sort_unstable();
        let lines = selection.forget(&moved);
        self.io.write(lines.as_bytes());
        self.ok(tag, &format!("{command} completed"));
    }

    /// A refused COPY, MOVE or APPEND: a missing destination is one the client may create
    /// (TRYCREATE, RFC 9051 §7.1), a full account is over quota.
    pub(super) fn destination_refused(&mut self, tag: &Tag<'_>, status: &tonic::Status) {
        match status.code() {
            Code::NotFound => self.respond(Some(tag), Status::No, Some("TRYCREATE"), "No such mailbox"),
            Code::ResourceExhausted => {
                self.respond(Some(tag), Status::No, Some("OVERQUOTA"), "The mailbox is over its quota")
            }
            _ => self.mailstore_refused(tag, status),
        }
    }
}
