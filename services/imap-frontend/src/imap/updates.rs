//! Untagged updates (RFC 9051 §7.4–5): changes made elsewhere — a delivery, another session,
//! another frontend — reach a session as mailbox events from the event bus, are applied to the
//! selection's snapshot and are told to the client as EXISTS, EXPUNGE and FETCH (FLAGS)
//! responses: before the tagged response of any command, and at once during IDLE.
//!
//! EXPUNGE renumbers messages, so it is held back while a FETCH, STORE or SEARCH (not their UID
//! forms) is answered, and while no command is in progress (RFC 9051 §7.5.1); EXISTS and FLAGS
//! may go at any time.

use futures::FutureExt;
use futures::StreamExt;
use kubemail_proto::Message;
use kubemail_proto::events::{MailboxEvent, mailbox_event::Change};
use kubemail_runtime::{EventStream, propagation};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::selection::{Selection, flag_list};

/// The events of one account, and what they still have to tell.
pub(super) struct Updates {
    events: EventStream,
    /// Expunged UIDs not told yet, ascending.
    pending_expunges: Vec<u32>,
    /// The MODSEQ of the earliest of them.
    pending_since: Option<u64>,
}

impl Updates {
    pub fn new(events: EventStream) -> Updates {
        Updates { events, pending_expunges: Vec::new(), pending_since: None }
    }

    /// The next event, waiting for it (IDLE), with the span that tells it to the client: a
    /// child of the change's own trace, so a delivery's trace ends at the IDLE push.
    pub async fn next(&mut self) -> Option<(MailboxEvent, tracing::Span)> {
        loop {
            let event = self.events.next().await?;
            if let Ok(decoded) = MailboxEvent::decode(event.payload) {
                let span = tracing::info_span!("imap.idle_update", subject = %event.subject);
                propagation::set_parent_from_headers(&span, &event.headers);
                return Some((decoded, span));
            }
        }
    }

    /// An event that has already arrived, without waiting.
    fn ready(&mut self) -> Option<MailboxEvent> {
        loop {
            let event = self.events.next().now_or_never()??;
            if let Ok(event) = MailboxEvent::decode(event.payload) {
                return Some(event);
            }
        }
    }
}

impl Selection {
    /// Applies `event` to the snapshot; returns the untagged responses it makes, flag changes
    /// with their MODSEQ when `condstore`. Expunges are only queued:
    /// [`Selection::take_expunges`] tells them when IMAP allows.
    pub(super) fn apply(&mut self, event: MailboxEvent, condstore: bool) -> String {
        let mut lines = String::new();
        if event.mailbox_id != self.mailbox_id || event.uidvalidity != self.uidvalidity {
            return lines;
        }
        self.highest_modseq = self.highest_modseq.max(event.highest_modseq);
        if matches!(event.change, Some(Change::Added(_) | Change::Flags(_))) {
            self.contexts_stale = true;
        }
        match event.change {
            Some(Change::Added(added)) => {
                let before = self.uids.len();
                // The new messages' flags, when the event carries them (else they are read
                // before the next command that needs them).
                let told = added.system_flags.len() == added.uids.len()
                    && added.keywords.len() == added.uids.len()
                    && added.modseqs.len() == added.uids.len();
                for (index, uid) in added.uids.iter().copied().enumerate() {
                    // Already known from the snapshot taken after subscribing, or out of order.
                    if self.uids.last().is_some_and(|last| uid <= *last) {
                        continue;
                    }
                    if !told {
                        self.add(uid);
                        continue;
                    }
                    self.add_told(uid);
                    let keywords: Vec<String> = added.keywords[index].split_whitespace().map(str::to_string).collect();
                    self.set_flags(self.uids.len() - 1, added.system_flags[index], &keywords, added.modseqs[index]);
                }
                self.uidnext = self.uidnext.max(added.uidnext);
                if self.uids.len() != before {
                    lines.push_str(&format!("* {} EXISTS\r\n", self.uids.len()));
                }
            }
            Some(Change::Flags(changed)) => {
                let keywords = changed.keywords.iter().map(String::as_str).chain(std::iter::repeat(""));
                let modseqs = changed.modseqs.iter().copied().chain(std::iter::repeat(event.highest_modseq));
                for (((uid, system), keywords), modseq) in
                    changed.uids.iter().zip(&changed.system_flags).zip(keywords).zip(modseqs)
                {
                    let Ok(index) = self.uids.binary_search(uid) else { continue };
                    let keywords: Vec<String> = keywords.split_whitespace().map(str::to_string).collect();
                    // This session's own STORE was told already, with the same flags.
                    if self.set_flags(index, *system, &keywords, modseq) {
                        let flags = flag_list(*system, self.is_recent(*uid), &keywords);
                        let modseq = if condstore { format!(" MODSEQ ({modseq})") } else { String::new() };
                        let uid = if self.flag_updates_with_uid { format!("UID {uid} ") } else { String::new() };
                        lines.push_str(&format!("* {} FETCH ({uid}FLAGS ({flags}){modseq})\r\n", index + 1));
                    }
                }
            }
            Some(Change::Expunged(expunged)) => {
                let updates = &mut self.updates;
                updates.pending_expunges.extend(expunged.uids);
                updates.pending_expunges.sort_unstable();
                updates.pending_expunges.dedup();
                let since = updates.pending_since.map_or(event.highest_modseq, |since| since.min(event.highest_modseq));
                updates.pending_since = Some(since);
            }
            _ => {}
        }
        lines
    }

    /// While expunges are held back, a CONDSTORE client may hear MODSEQs above theirs (its own
    /// STORE, a FETCH, a change from elsewhere); a HIGHESTMODSEQ below the first of them keeps
    /// it from resynchronising past them should the connection drop first (RFC 7162 §3.2).
    pub(super) fn held_back_highest_modseq(&self) -> Option<String> {
        let since = self.updates.pending_since?;
        Some(format!("* OK [HIGHESTMODSEQ {}] Expunges are still to be told\r\n", since.saturating_sub(1)))
    }

    /// Whether `uid` was expunged elsewhere and the client not told yet.
    pub(super) fn expunged_meanwhile(&self, uid: u32) -> bool {
        self.updates.pending_expunges.binary_search(&uid).is_ok()
    }

    /// The queued expunges, told as EXPUNGE (or VANISHED) responses.
    pub(super) fn take_expunges(&mut self) -> String {
        self.updates.pending_since = None;
        let pending = std::mem::take(&mut self.updates.pending_expunges);
        self.forget(&pending)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Takes the messages that arrived by event as \Recent, and reads their flags, so that
    /// FETCH FLAGS and SEARCH answer with the flags they were stored with (and FLAGS is told again first when they
    /// bring a new keyword). Should the mailstore not answer, they are read again before the
    /// next command that needs them.
    pub(super) async fn read_new_flags(&mut self) {
        self.claim_new_recent().await;
        let Some(selection) = &mut self.selected else { return };
        if selection.flags_unread.is_empty() {
            return;
        }
        let (uids, mailbox_id) = (std::mem::take(&mut selection.flags_unread), selection.mailbox_id);
        let read = self.fetch_meta((self.account_id(), mailbox_id), &uids, 0, false).await;
        let Some(selection) = &mut self.selected else { return };
        match read {
            Ok(metas) => {
                for (uid, meta) in metas {
                    if let Ok(index) = selection.uids.binary_search(&uid) {
                        let flags = meta.flags.unwrap_or_default();
                        selection.set_flags(index, flags.system, &flags.keywords, meta.modseq);
                    }
                }
                let update = selection.take_flags_update();
                self.io.write(update.as_bytes());
            }
            Err(status) => {
                tracing::warn!(%status, "the flags of new messages were not read");
                selection.flags_unread = uids;
            }
        }
    }

    /// Tells the client what changed in the selected mailbox since it was last told.
    pub(super) fn report_changes(&mut self) {
        let (expunges_allowed, condstore) = (self.expunges_allowed, self.condstore);
        let Some(selection) = &mut self.selected else { return };
        let mut lines = String::new();
        while let Some(event) = selection.updates.ready() {
            lines.push_str(&selection.apply(event, condstore));
        }
        // Held-back expunges go out with the first command that may carry them.
        if expunges_allowed {
            lines.push_str(&selection.take_expunges());
        }
        let lines = selection.take_flags_update() + &lines;
        self.io.write(lines.as_bytes());
    }
}
