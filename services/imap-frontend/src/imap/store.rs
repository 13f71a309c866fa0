//! STORE and UID STORE (RFC 9051 §6.4.6): flags set, added or removed, refused in a read-only
//! (EXAMINE) selection; with CONDSTORE's UNCHANGEDSINCE (RFC 7162 §3.1.3) only on messages not
//! changed since.

use imap_codec::imap_types::command::StoreModifier;
use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::flag::{Flag, StoreResponse, StoreType};
use imap_codec::imap_types::sequence::SequenceSet;
use kubemail_proto::mailstore::store_flags_request::Operation;
use kubemail_proto::mailstore::{Flags, MessageMeta, StoreFlagsRequest, SystemFlag};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::messages::uid_ranges;
use super::selection::flag_list;
use crate::response::{self, Status};

/// What a STORE changes and how it answers.
pub(super) struct Change<'c, 'a> {
    pub kind: StoreType,
    pub response: StoreResponse,
    pub flags: &'c [Flag<'a>],
    /// UNCHANGEDSINCE (RFC 7162 §3.1.3).
    pub modifiers: &'c [StoreModifier],
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn store(&mut self, tag: &Tag<'_>, set: &SequenceSet, change: Change<'_, '_>, uid: bool) {
        let Some(messages) = self.selected_messages(tag, set, uid, true) else { return };
        let flags = match stored_flags(change.flags) {
            Ok(flags) => flags,
            Err(reason) => {
                self.respond(Some(tag), Status::Bad, None, &reason);
                return;
            }
        };
        let unchanged_since = change.modifiers.iter().map(|StoreModifier::UnchangedSince(modseq)| *modseq).next_back();
        if unchanged_since.is_some() {
            self.enable_condstore();
        }
        let Some(selection) = &self.selected else { return };
        let (mailbox_id, held) = (selection.mailbox_id, selection.held_flags(&messages).unwrap_or_default());
        let uids: Vec<u32> = messages.iter().map(|(_, uid)| *uid).collect();
        let done = if uid { "UID STORE completed" } else { "STORE completed" };
        if uids.is_empty() {
            self.ok(tag, done);
            return;
        }
        if unchanged_since == Some(0) {
            // Every message has a MODSEQ above 0, so none passes (RFC 7162 §3.1.3); the
            // mailstore reads 0 as "unconditional".
            let failed: Vec<u32> =
                messages.iter().map(|(number, message_uid)| if uid { *message_uid } else { *number }).collect();
            let code = format!("MODIFIED {}", response::sequence_set(&failed));
            self.respond(Some(tag), Status::Ok, Some(&code), "Conditional STORE failed");
            return;
        }
        let operation = match change.kind {
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
            unchanged_since: unchanged_since.unwrap_or(0),
            held,
        };
        let (updated, mut modified, unchanged) = match self.services.mailstore.clone().store_flags(request).await {
            Ok(response) => {
                let response = response.into_inner();
                (response.updated, response.modified, response.unchanged)
            }
            Err(status) => {
                self.mailstore_refused(tag, &status);
                return;
            }
        };
        modified.sort_unstable();
        let answer = change.response == StoreResponse::Answer;
        // Without .SILENT every message of the set that passed is reported, changed or not
        // (RFC 9051 §6.4.6), the unchanged ones with their flags as the mailstore read them.
        let mut reported = updated;
        if answer {
            reported.extend(unchanged);
            let unread: Vec<u32> = uids
                .iter()
                .copied()
                .filter(|uid| !reported.iter().any(|meta| meta.uid == *uid) && modified.binary_search(uid).is_err())
                .collect();
            // Expunged meanwhile, or a mailstore from before it sent the unchanged ones.
            if !unread.is_empty() {
                match self.fetch_meta((self.account_id(), mailbox_id), &unread, 0, false).await {
                    Ok(meta) => reported.extend(meta.into_values()),
                    Err(status) => tracing::warn!(%status, "reading flags after STORE failed"),
                }
            }
            reported.sort_unstable_by_key(|meta| meta.uid);
        }
        let condstore = self.condstore;
        let Some(selection) = &mut self.selected else { return };
        // The new flags may change what an UPDATE search finds.
        selection.contexts_stale = true;
        let mut lines = String::new();
        for meta in &reported {
            let Some(index) = selection.uids.binary_search(&meta.uid).ok() else { continue };
            let flags = meta.flags.clone().unwrap_or_default();
            selection.set_flags(index, flags.system, &flags.keywords, meta.modseq);
            // With CONDSTORE even a silent STORE tells the new MODSEQ (RFC 7162 §3.1.3).
            if answer || condstore {
                let recent = selection.is_recent(meta.uid);
                lines.push_str(&flags_response(index + 1, meta, recent, uid, answer, condstore));
            }
        }
        let lines = selection.take_flags_update() + &lines;
        let failed: Vec<u32> = match uid {
            true => modified.clone(),
            false => {
                modified.iter().filter_map(|uid| selection.uids.binary_search(uid).ok()).map(|i| i as u32 + 1).collect()
            }
        };
        self.io.write(lines.as_bytes());
        if failed.is_empty() {
            self.ok(tag, done);
        } else {
            let code = format!("MODIFIED {}", response::sequence_set(&failed));
            self.respond(Some(tag), Status::Ok, Some(&code), "Conditional STORE failed for some messages");
        }
    }
}

/// `* n FETCH (…)` after a flag change: the UID for a UID command, the flags unless the STORE
/// was silent, the MODSEQ once CONDSTORE is in use.
fn flags_response(number: usize, meta: &MessageMeta, recent: bool, uid: bool, flags: bool, modseq: bool) -> String {
    let mut items = Vec::new();
    if uid {
        items.push(format!("UID {}", meta.uid));
    }
    if flags {
        let flags = meta.flags.clone().unwrap_or_default();
        items.push(format!("FLAGS ({})", flag_list(flags.system, recent, &flags.keywords)));
    }
    if modseq {
        items.push(format!("MODSEQ ({})", meta.modseq));
    }
    format!("* {number} FETCH ({})\r\n", items.join(" "))
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
