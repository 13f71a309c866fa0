//! SELECT and EXAMINE (RFC 9051 §6.3.2–3): the mailbox's snapshot, read from the mailstore or
//! brought up to date from one kept between sessions (`snapshots`), becomes the session's
//! selection, and the client hears the mailbox's state before the tagged answer.
//!
//! A QRESYNC client (RFC 7162 §3.2.5) names what it knew of the mailbox when it selects it,
//! and hears what was expunged (VANISHED (EARLIER)) and what changed since before the answer.

use std::sync::Arc;

use imap_codec::imap_types::command::SelectParameter;
use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::mailbox::Mailbox;
use kubemail_proto::events::account_pattern;
use kubemail_proto::mailstore::{ExpungedSinceRequest, MailboxInfo, SelectMailboxRequest, UidRange};
use kubemail_runtime::EventStream;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::messages::written_uid_ranges;
use super::recent::Recent;
use super::selection::Selection;
use super::updates::Updates;
use crate::response::Status;
use crate::snapshots::{self, Snapshot};

/// What a QRESYNC client knew of the mailbox: UIDVALIDITY, HIGHESTMODSEQ and the UIDs it holds.
struct Known {
    uidvalidity: u32,
    modseq: u64,
    uids: Vec<UidRange>,
}

/// What a QRESYNC client missed: the MODSEQ it knew, and the UIDs it holds that were expunged
/// since.
struct Resync {
    modseq: u64,
    vanished: Vec<u32>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// SELECT, or EXAMINE when `read_only`; the CONDSTORE parameter turns CONDSTORE on.
    pub(super) async fn select(
        &mut self,
        tag: &Tag<'_>,
        mailbox: &Mailbox<'_>,
        parameters: &[SelectParameter],
        read_only: bool,
    ) {
        // Whatever happens next, the mailbox selected before is left (RFC 9051 §6.3.2).
        if self.selected.take().is_some() {
            self.respond(None, Status::Ok, Some("CLOSED"), "Previous mailbox closed");
        }
        let known = match self.select_parameters(parameters) {
            Ok(known) => known,
            Err(reason) => return self.respond(Some(tag), Status::Bad, None, reason),
        };
        let Some(name) = self.name(tag, mailbox) else { return };
        // Subscribed first: a change made while the snapshot is read is either in it or in an
        // event after it, never lost between the two.
        let Some(events) = self.subscribe_to_changes(tag).await else { return };
        let Some((mailbox, snapshot)) = self.read_snapshot(tag, &name).await else { return };
        // QRESYNC (RFC 7162 §3.2.5): what the client knew of this mailbox, unless it was another
        // mailbox by that name (a new UIDVALIDITY), is brought up to date before the tagged
        // answer: the UIDs expunged since, then the messages changed since.
        let mut resync = None;
        if let Some(known) = known
            && known.uidvalidity == mailbox.uidvalidity
        {
            let Some(missed) = self.resync(tag, mailbox.id, known).await else { return };
            resync = Some(missed);
        }
        let mut selection = Selection::new(&mailbox, &snapshot, read_only, self.qresync, Updates::new(events));
        if !self.rev2 {
            selection.recent =
                if read_only { Recent::above(mailbox.recent_uid) } else { Recent::claiming(mailbox.recent_uid) };
            selection.claim_recent(self.services.mailstore.clone(), self.account_id()).await;
        }
        let mut lines = self.mailbox_state(&selection, &name);
        if let Some(resync) = resync {
            lines.push_str(&resync_responses(&selection, &snapshot, resync));
        }
        self.io.write(lines.as_bytes());
        let (code, command) = if read_only { ("READ-ONLY", "EXAMINE") } else { ("READ-WRITE", "SELECT") };
        self.selected = Some(selection);
        self.set_flag_updates_with_uid();
        self.respond(Some(tag), Status::Ok, Some(code), &format!("{command} completed"));
    }

    /// Takes the SELECT parameters: CONDSTORE turns CONDSTORE on, QRESYNC says what the client
    /// knew. The reason for a BAD answer when QRESYNC was not enabled first.
    fn select_parameters(&mut self, parameters: &[SelectParameter]) -> Result<Option<Known>, &'static str> {
        let mut known = None;
        for parameter in parameters {
            match parameter {
                // The mailbox before was left already, so SELECT itself tells HIGHESTMODSEQ.
                SelectParameter::CondStore => self.enable_condstore(),
                SelectParameter::QResync { .. } if !self.qresync => {
                    return Err("QRESYNC must be enabled first (ENABLE QRESYNC)");
                }
                SelectParameter::QResync { uid_validity, mod_sequence_value, known_uids, .. } => {
                    let uids = known_uids.as_ref().map(written_uid_ranges).unwrap_or_default();
                    known = Some(Known { uidvalidity: uid_validity.get(), modseq: mod_sequence_value.get(), uids });
                }
            }
        }
        Ok(known)
    }

    /// The account's mailbox events, or `None` after answering that they cannot be had.
    async fn subscribe_to_changes(&mut self, tag: &Tag<'_>) -> Option<EventStream> {
        match self.services.events.subscribe(&account_pattern(self.account_id())).await {
            Ok(events) => Some(events),
            Err(error) => {
                tracing::warn!(client = %self.client_ip, %error, "subscribing to mailbox events failed");
                self.respond(Some(tag), Status::No, Some("UNAVAILABLE"), "Try again later");
                None
            }
        }
    }

    /// The mailbox `name` and the snapshot of its messages: the kept one when the mailstore
    /// says nothing changed since it was taken, else one made from the mailstore's answer and
    /// kept for the next session; `None` after answering why the mailbox cannot be read.
    async fn read_snapshot(&mut self, tag: &Tag<'_>, name: &str) -> Option<(MailboxInfo, Arc<Snapshot>)> {
        let account_id = self.account_id();
        let kept = self.services.snapshots.get(account_id, name);
        let request = SelectMailboxRequest {
            account_id,
            name: name.to_string(),
            known_mailbox_id: kept.as_ref().map_or(0, |kept| kept.mailbox.id),
            known_modseq: kept.as_ref().map_or(0, |kept| kept.mailbox.highest_modseq),
            with_sizes: false,
        };
        match (self.services.mailstore.clone().select_mailbox(request).await, kept) {
            // Nothing changed since the kept snapshot: it is used with the fresh counters.
            (Ok(reply), Some(kept)) if reply.get_ref().unchanged => {
                Some((reply.into_inner().mailbox.unwrap_or_default(), kept))
            }
            // A few changes since: applied to the kept snapshot, which is kept in its place.
            (Ok(reply), Some(kept)) if reply.get_ref().delta => {
                let snapshot = Arc::new(snapshots::apply_delta(&kept, reply.into_inner()));
                self.services.snapshots.put(account_id, name, &snapshot);
                Some((snapshot.mailbox.clone(), snapshot))
            }
            (Ok(reply), _) => {
                let snapshot = Arc::new(Snapshot::from_answer(reply.into_inner()));
                self.services.snapshots.put(account_id, name, &snapshot);
                Some((snapshot.mailbox.clone(), snapshot))
            }
            (Err(status), _) => {
                self.mailstore_refused(tag, &status);
                None
            }
        }
    }

    /// What a QRESYNC client that `known` mailbox `mailbox_id` missed, or `None` after
    /// answering why it could not be read.
    async fn resync(&mut self, tag: &Tag<'_>, mailbox_id: i64, known: Known) -> Option<Resync> {
        let modseq = known.modseq;
        let request = ExpungedSinceRequest { account_id: self.account_id(), mailbox_id, modseq, uids: known.uids };
        match self.services.mailstore.clone().expunged_since(request).await {
            Ok(answer) => Some(Resync { modseq, vanished: answer.into_inner().uids }),
            Err(status) => {
                self.mailstore_refused(tag, &status);
                None
            }
        }
    }

    /// The untagged responses that describe the newly selected mailbox (RFC 9051 §6.3.2):
    /// EXISTS, FLAGS, PERMANENTFLAGS, UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, MAILBOXID, and LIST for an
    /// IMAP4rev2 client or RECENT and UNSEEN for an IMAP4rev1 one.
    fn mailbox_state(&self, selection: &Selection, name: &str) -> String {
        let mut lines = format!("* {} EXISTS\r\n", selection.uids.len());
        lines.push_str(&selection.flags_responses());
        lines.push_str(&format!("* OK [UIDVALIDITY {}] UIDs valid\r\n", selection.uidvalidity));
        lines.push_str(&format!("* OK [UIDNEXT {}] Predicted next UID\r\n", selection.uidnext));
        lines.push_str(&format!("* OK [HIGHESTMODSEQ {}] Highest\r\n", selection.highest_modseq));
        let id = super::status::object_id(selection.mailbox_id, selection.uidvalidity);
        lines.push_str(&format!("* OK [MAILBOXID ({id})] Ok\r\n"));
        if self.rev2 {
            lines.push_str(&format!("* LIST () \"/\" {}\r\n", self.quoted_name(name)));
        } else {
            // IMAP4rev1 responses that RFC 9051 dropped.
            lines.push_str(&format!("* {} RECENT\r\n", selection.recent_count()));
            if let Some(unseen) = selection.first_unseen() {
                lines.push_str(&format!("* OK [UNSEEN {unseen}] First unseen\r\n"));
            }
        }
        lines
    }
}

/// What a QRESYNC client missed, told before the tagged answer: VANISHED (EARLIER) for the
/// messages expunged since, then FETCH for those changed since.
fn resync_responses(selection: &Selection, snapshot: &Snapshot, resync: Resync) -> String {
    let mut lines = selection.vanished_earlier(resync.vanished);
    for (index, _) in snapshot.modseqs.iter().enumerate().filter(|(_, changed)| **changed > resync.modseq) {
        lines.push_str(&format!("* {} FETCH (UID {} FLAGS (", index + 1, selection.uids[index]));
        selection.write_flag_list(index, &mut lines);
        lines.push_str(&format!(") MODSEQ ({}))\r\n", snapshot.modseqs[index]));
    }
    lines
}
