//! Changing the selected mailbox: STORE and UID STORE (RFC 9051 §6.4.6), EXPUNGE and UID
//! EXPUNGE (§6.4.3, RFC 4315). Both are refused in a read-only (EXAMINE) selection.

use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::sequence::SequenceSet;
use kubemail_proto::mailstore::store_flags_request::Operation;
use kubemail_proto::mailstore::{ExpungeRequest, Flags, MessageMeta, StoreFlagsRequest, SystemFlag};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::fetch::uid_ranges;
use super::selected::flag_list;
use crate::response::Status;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn store(
        &mut self,
        tag: &Tag<'_>,
        set: &SequenceSet,
        kind: &StoreType,
        response: &StoreResponse,
        flags: &[Flag<'_>],
        uid: bool,
    ) {
        let Some(messages) = self.selected_messages(tag, set, uid, true) else { return };
        let flags = match stored_flags(flags) {
            Ok(flags) => flags,
            Err(reason) => {
                self.respond(Some(tag), Status::Bad, None, &reason);
                return;
            }
        };
        let Some(mailbox_id) = self.selected.as_ref().map(|selection| selection.mailbox_id) else { return };
        let uids: Vec<u32> = messages.iter().map(|(_, uid)| *uid).collect();
        if uids.is_empty() {
            self.ok(tag, "STORE completed");
            return;
        }
        let operation = match kind {
            StoreType::Replace => Operation::Replace,
            StoreType::Add => Operation::Add,
            StoreType::Remove => Operation::Remove,
        };
        let request = StoreFlagsRequest {
            account_id: self.account_id(),
            mailbox_id,
            uids: uid_ranges(&uids),
            operation: operation as i32,
            flags: Some(flags),
            unchanged_since: 0,
        };
        let updated = match self.services.mailstore.clone().store_flags(request).await {
            Ok(response) => response.into_inner().updated,
            Err(status) => {
                self.mailstore_refused(tag, &status);
                return;
            }
        };
        // Without .SILENT every message of the set is reported, changed or not (RFC 9051
        // §6.4.6); the unchanged ones' flags are read back.
        let mut reported = updated;
        if *response == StoreResponse::Answer {
            let unchanged: Vec<u32> =
                uids.iter().copied().filter(|uid| !reported.iter().any(|meta| meta.uid == *uid)).collect();
            match self.fetch_meta(self.account_id(), mailbox_id, &unchanged).await {
                Ok(meta) => reported.extend(meta.into_values()),
                Err(status) => tracing::warn!(%status, "reading flags after STORE failed"),
            }
            reported.sort_unstable_by_key(|meta| meta.uid);
        }
        let Some(selection) = &mut self.selected else { return };
        let mut lines = String::new();
        for meta in &reported {
            let Some(index) = selection.uids.binary_search(&meta.uid).ok() else { continue };
            let flags = meta.flags.clone().unwrap_or_default();
            selection.set_flags(index, flags.system, &flags.keywords);
            if *response == StoreResponse::Answer {
                lines.push_str(&flags_response(index + 1, meta, uid));
            }
        }
        self.io.write(lines.as_bytes());
        self.ok(tag, if uid { "UID STORE completed" } else { "STORE completed" });
    }

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
        let mut expunged = match self.services.mailstore.clone().expunge(request).await {
            Ok(response) => response.into_inner().expunged,
            Err(status) => {
                self.mailstore_refused(tag, &status);
                return;
            }
        };
        expunged.sort_unstable();
        let Some(selection) = &mut self.selected else { return };
        let lines = selection.forget(&expunged);
        self.io.write(lines.as_bytes());
        self.ok(tag, if set.is_some() { "UID EXPUNGE completed" } else { "EXPUNGE completed" });
    }
}

/// `* n FETCH (FLAGS (…))` (with the UID for a UID command) after a flag change.
fn flags_response(number: usize, meta: &MessageMeta, uid: bool) -> String {
    let flags = meta.flags.clone().unwrap_or_default();
    let list = flag_list(flags.system, &flags.keywords);
    match uid {
        true => format!("* {number} FETCH (UID {} FLAGS ({list}))\r\n", meta.uid),
        false => format!("* {number} FETCH (FLAGS ({list}))\r\n"),
    }
}

/// The flags of a STORE as the mailstore takes them; \Recent and unknown system flags cannot
/// be stored.
pub(super) fn stored_flags(flags: &[Flag<'_>]) -> Result<Flags, String> {
    let mut stored = Flags::default();
    for flag in flags {
        match flag {
            Flag::Seen => stored.system |= SystemFlag::Seen as u32,
            Flag::Answered => stored.system |= SystemFlag::Answered as u32,
            Flag::Flagged => stored.system |= SystemFlag::Flagged as u32,
            Flag::Deleted => stored.system |= SystemFlag::Deleted as u32,
            Flag::Draft => stored.system |= SystemFlag::Draft as u32,
            Flag::Keyword(keyword) => stored.keywords.push(keyword.inner().to_string()),
            Flag::Extension(_) => return Err(format!("{flag} cannot be stored")),
        }
    }
    Ok(stored)
}
