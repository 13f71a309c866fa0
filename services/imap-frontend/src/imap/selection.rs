//! The selected mailbox (the selected state of RFC 9051 §3.3): the session's one piece of
//! mailbox state, a snapshot of the mailbox taken from the mailstore when it was selected.
//!
//! The snapshot maps message sequence numbers to UIDs and holds the flags the client was
//! last told about; every other fact about the messages is asked of the mailstore.

use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use kubemail_proto::mailstore::{Flags, HeldFlags, MailboxInfo, SystemFlag};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::context::SearchContext;
use super::recent::Recent;
use super::updates::Updates;
use crate::response::{self, Status};
use crate::snapshots::{KeywordLists, Snapshot};

/// The system flags every mailbox stores (RFC 9051 §2.3.2), with their bits.
pub(super) const SYSTEM_FLAGS: [(SystemFlag, &str); 5] = [
    (SystemFlag::Answered, "\\Answered"),
    (SystemFlag::Flagged, "\\Flagged"),
    (SystemFlag::Deleted, "\\Deleted"),
    (SystemFlag::Seen, "\\Seen"),
    (SystemFlag::Draft, "\\Draft"),
];

/// The flags of a message as IMAP lists them, e.g. `\Seen \Recent $Forwarded`.
pub(super) fn flag_list(system: u32, recent: bool, keywords: &[String]) -> String {
    let mut list = String::new();
    write_flags(system, recent, keywords.iter().map(String::as_str), &mut list);
    list
}

/// Appends the flags of a message to `out`, as [`flag_list`] lists them.
fn write_flags<'k>(system: u32, recent: bool, keywords: impl Iterator<Item = &'k str>, out: &mut String) {
    let system = SYSTEM_FLAGS.iter().filter(|(bit, _)| system & *bit as u32 != 0).map(|(_, name)| *name);
    let recent = recent.then_some("\\Recent");
    for (index, name) in system.chain(recent).chain(keywords).enumerate() {
        if index > 0 {
            out.push(' ');
        }
        out.push_str(name);
    }
}

/// The selected mailbox as this session knows it.
pub(super) struct Selection {
    pub mailbox_id: i64,
    pub read_only: bool,
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub highest_modseq: u64,
    /// UIDs in sequence order: message number n has `uids[n - 1]`.
    pub uids: Vec<u32>,
    /// System flag bits, parallel to `uids`.
    pub flags: Vec<u32>,
    /// Keyword lists, parallel to `uids`, numbered in `keywords`.
    keyword_ids: Vec<u32>,
    /// The MODSEQ of the flags known for each message, parallel to `uids` (0: not known yet):
    /// a change that arrives after a newer one is stale and left out, so neither the flags nor
    /// the MODSEQ a client hears ever go back (RFC 7162 §3.1).
    modseqs: Vec<u64>,
    keywords: KeywordLists,
    /// Expunged messages are reported as `VANISHED` UIDs (QRESYNC was enabled).
    vanished: bool,
    /// Changes from elsewhere, subscribed to before the snapshot was taken.
    pub updates: Updates,
    /// Messages that arrived by event, which names only their UIDs: their flags (APPEND and
    /// COPY store some) are read before anything answers with them.
    pub flags_unread: Vec<u32>,
    /// The keywords FLAGS and PERMANENTFLAGS have named to the client, in the order they were
    /// first seen.
    announced_keywords: Vec<String>,
    /// Whether a message now has a keyword they do not name yet.
    keywords_grew: bool,
    /// The messages \Recent in this session.
    pub recent: Recent,
    /// The UIDs SEARCH RETURN (SAVE) kept as `$` (RFC 5182), ascending; empty after SELECT.
    pub saved_result: Vec<u32>,
    /// FETCH responses about flags changed elsewhere carry the UID (NOTIFY, RFC 5465 §5.1).
    pub flag_updates_with_uid: bool,
    /// Searches whose results the client keeps up to date (CONTEXT=SEARCH).
    pub contexts: Vec<SearchContext>,
    /// Messages arrived or flags changed since the contexts were last brought up to date.
    pub contexts_stale: bool,
}

impl Selection {
    /// The selection of `mailbox` with the messages of `snapshot` (which may be older than
    /// `mailbox`'s counters, but not than its HIGHESTMODSEQ).
    pub fn new(
        mailbox: &MailboxInfo,
        snapshot: &Snapshot,
        read_only: bool,
        vanished: bool,
        updates: Updates,
    ) -> Selection {
        Selection {
            mailbox_id: mailbox.id,
            read_only,
            uidvalidity: mailbox.uidvalidity,
            uidnext: mailbox.uidnext,
            highest_modseq: mailbox.highest_modseq,
            uids: snapshot.uids.clone(),
            flags: snapshot.flags.clone(),
            keyword_ids: snapshot.keyword_ids.clone(),
            // Parallel to `uids` whatever the answer held: a MODSEQ not known is 0.
            modseqs: {
                let mut modseqs = snapshot.modseqs.clone();
                modseqs.resize(snapshot.uids.len(), 0);
                modseqs
            },
            keywords: snapshot.keywords.clone(),
            vanished,
            updates,
            flags_unread: Vec::new(),
            announced_keywords: snapshot.mailbox_keywords().into_iter().map(str::to_string).collect(),
            keywords_grew: false,
            recent: Recent::default(),
            saved_result: Vec::new(),
            flag_updates_with_uid: false,
            contexts: Vec::new(),
            contexts_stale: false,
        }
    }

    /// FLAGS and PERMANENTFLAGS (RFC 9051 §7.3.5, §7.1): every system flag and the keywords in
    /// the mailbox; read-write sessions may also make up keywords, read-only ones set nothing.
    pub fn flags_responses(&self) -> String {
        let every_system_flag = SYSTEM_FLAGS.iter().fold(0, |bits, (bit, _)| bits | *bit as u32);
        let flags = flag_list(every_system_flag, false, &[]);
        let keywords: String = self.announced_keywords.iter().map(|keyword| format!(" {keyword}")).collect();
        let permanent = if self.read_only { String::new() } else { format!("{flags}{keywords} \\*") };
        format!("* FLAGS ({flags}{keywords})\r\n* OK [PERMANENTFLAGS ({permanent})] Flags that stay\r\n")
    }

    /// FLAGS and PERMANENTFLAGS again when a keyword appeared since they were told: a client
    /// learns of the new keyword before a FETCH that names it.
    pub fn take_flags_update(&mut self) -> String {
        match std::mem::take(&mut self.keywords_grew) {
            true => self.flags_responses(),
            false => String::new(),
        }
    }

    /// Adds a message that arrived since the snapshot; its flags are still to be read.
    pub fn add(&mut self, uid: u32) {
        self.flags_unread.push(uid);
        self.add_told(uid);
    }

    /// Adds a message that arrived since the snapshot, whose flags the caller sets next.
    pub fn add_told(&mut self, uid: u32) {
        self.uids.push(uid);
        self.modseqs.push(0);
        self.flags.push(0);
        self.keyword_ids.push(KeywordLists::NONE);
    }

    /// The (sequence number, UID) pairs of the saved result (`$`) still in the mailbox.
    pub fn saved_messages(&self) -> Vec<(u32, u32)> {
        let present = |uid: &u32| self.uids.binary_search(uid).ok().map(|index| (index as u32 + 1, *uid));
        self.saved_result.iter().filter_map(present).collect()
    }

    /// The (sequence number, UID) pairs that `set` names, ascending. With `uid` the set holds
    /// UIDs: those of no message are skipped, and `*` is the highest UID. Otherwise it holds
    /// sequence numbers, and one past the last message is an error.
    pub fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<(u32, u32)>, &'static str> {
        let count = self.uids.len() as u32;
        let highest = if uid { self.uids.last().copied().unwrap_or(0) } else { count };
        let value = |bound: &SeqOrUid| match bound {
            SeqOrUid::Value(value) => value.get(),
            SeqOrUid::Asterisk => highest,
        };
        let mut numbers = Vec::new();
        for sequence in set.0.as_ref() {
            let (first, last) = match sequence {
                Sequence::Single(single) => (value(single), value(single)),
                Sequence::Range(from, to) => (value(from).min(value(to)), value(from).max(value(to))),
            };
            if uid {
                let start = self.uids.partition_point(|&existing| existing < first);
                let end = self.uids.partition_point(|&existing| existing <= last);
                numbers.extend((start..end).map(|index| index as u32 + 1));
            } else if last > count || first == 0 {
                // A set of only `*` in an empty mailbox names nothing rather than an error.
                if count == 0
                    && matches!(sequence, Sequence::Single(SeqOrUid::Asterisk) | Sequence::Range(_, SeqOrUid::Asterisk))
                {
                    continue;
                }
                return Err("No such message sequence number");
            } else {
                numbers.extend(first..=last);
            }
        }
        // Ascending and once each, however the set was written (`5,1:3,2`).
        if set.0.as_ref().len() > 1 {
            numbers.sort_unstable();
            numbers.dedup();
        }
        Ok(numbers.into_iter().map(|number| (number, self.uids[number as usize - 1])).collect())
    }

    /// Records the flags of the message at `index` as of `modseq`, as the client was told them;
    /// whether they differ from what it knew. Flags older than those known are left out.
    pub fn set_flags(&mut self, index: usize, system: u32, keywords: &[String], modseq: u64) -> bool {
        if modseq <= self.modseqs[index] {
            return false;
        }
        self.modseqs[index] = modseq;
        for keyword in keywords {
            if !self.announced_keywords.iter().any(|known| known.eq_ignore_ascii_case(keyword)) {
                self.announced_keywords.push(keyword.clone());
                self.keywords_grew = true;
            }
        }
        let keyword_id = self.keywords.intern(&keywords.join(" "));
        let changed = self.flags[index] != system || self.keyword_ids[index] != keyword_id;
        self.flags[index] = system;
        self.keyword_ids[index] = keyword_id;
        changed
    }

    /// Appends the flags of the message at `index` to `out`, as IMAP lists them.
    pub fn write_flag_list(&self, index: usize, out: &mut String) {
        let recent = self.is_recent(self.uids[index]);
        write_flags(self.flags[index], recent, self.keywords_of(index).split_whitespace(), out);
    }

    /// The flags this session holds for `messages` ((sequence number, UID) pairs), each with
    /// the MODSEQ they are as of, for a STORE that need not read them first; `None` when it
    /// does not know the MODSEQ of one, or has still to read its flags.
    pub fn held_flags(&self, messages: &[(u32, u32)]) -> Option<Vec<HeldFlags>> {
        let mut held = Vec::with_capacity(messages.len());
        for &(number, uid) in messages {
            let index = number as usize - 1;
            if self.modseqs[index] == 0 || self.flags_unread.contains(&uid) {
                return None;
            }
            let keywords = self.keywords_of(index).split_whitespace().map(str::to_string).collect();
            let flags = Some(Flags { system: self.flags[index], keywords });
            held.push(HeldFlags { uid, modseq: self.modseqs[index], flags });
        }
        Some(held)
    }

    /// The keywords of the message at `index`, space-separated.
    pub fn keywords_of(&self, index: usize) -> &str {
        self.keywords.get(self.keyword_ids[index])
    }

    /// The `VANISHED (EARLIER)` response for `uids`, which the mailstore reports expunged, or
    /// nothing when none is left: only those this selection no longer holds, as a message
    /// expunged after the snapshot is still here and is told as gone when its event comes.
    pub fn vanished_earlier(&self, mut uids: Vec<u32>) -> String {
        uids.retain(|uid| self.uids.binary_search(uid).is_err());
        if uids.is_empty() {
            return String::new();
        }
        format!("* VANISHED (EARLIER) {}\r\n", response::sequence_set(&uids))
    }

    /// Forgets the messages `uids` (ascending); the responses that tell the client: one
    /// EXPUNGE each, numbered as of its moment (every EXPUNGE renumbers the messages after
    /// it), or with QRESYNC one VANISHED naming their UIDs (RFC 7162 §3.2.10).
    pub fn forget(&mut self, uids: &[u32]) -> String {
        // Search contexts lose them first, while their numbers still hold (RFC 5267 §4.3.4).
        let mut lines = self.context_removals(uids);
        let mut gone = Vec::new();
        for uid in uids {
            if let Ok(index) = self.uids.binary_search(uid) {
                self.uids.remove(index);
                self.flags.remove(index);
                self.keyword_ids.remove(index);
                self.modseqs.remove(index);
                match self.vanished {
                    true => gone.push(*uid),
                    false => lines.push_str(&format!("* {} EXPUNGE\r\n", index + 1)),
                }
            }
        }
        if !gone.is_empty() {
            lines.push_str(&format!("* VANISHED {}\r\n", response::sequence_set(&gone)));
        }
        lines
    }

    /// The sequence number of the first message without \Seen.
    pub fn first_unseen(&self) -> Option<usize> {
        self.flags.iter().position(|flags| flags & SystemFlag::Seen as u32 == 0).map(|index| index + 1)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// The messages of the selected mailbox that `set` names (UIDs with `uid`), or `None` after
    /// answering why not: nothing selected, a set naming no message, or a command that
    /// `changes` the mailbox in a read-only selection.
    pub(super) fn selected_messages(
        &mut self,
        tag: &Tag<'_>,
        set: &SequenceSet,
        uid: bool,
        changes: bool,
    ) -> Option<Vec<(u32, u32)>> {
        let selection = self.selected.as_ref()?;
        if changes && selection.read_only {
            self.refuse_read_only(tag);
            return None;
        }
        if self.saved_result_set {
            // `$`: the saved messages still here, whether the command is a UID one or not
            // (RFC 5182 §2.2); none saved names nothing, which is no error.
            return Some(selection.saved_messages());
        }
        match selection.resolve(set, uid) {
            Ok(messages) => Some(messages),
            Err(reason) => {
                self.respond(Some(tag), Status::Bad, None, reason);
                None
            }
        }
    }

    /// Refuses a change to a mailbox selected with EXAMINE.
    pub(super) fn refuse_read_only(&mut self, tag: &Tag<'_>) {
        self.respond(Some(tag), Status::No, Some("READ-ONLY"), "The mailbox was selected with EXAMINE");
    }
}
