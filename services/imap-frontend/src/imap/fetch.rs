//! FETCH and UID FETCH (RFC 9051 §6.4.5): UID, FLAGS, INTERNALDATE, RFC822.SIZE, MODSEQ,
//! ENVELOPE, BODY and BODYSTRUCTURE, and body sections — the whole message, its header or text,
//! chosen header fields, a MIME part and its header (`BODY[1.2]`, `BODY[2.MIME]`,
//! `BODY[3.HEADER]`) — each with a partial range; also RFC822, RFC822.HEADER and RFC822.TEXT.
//! BINARY and BINARY.SIZE (RFC 3516) send a part with its content transfer encoding undone.
//! Reading a body without PEEK sets \Seen in a read-write selection. The CHANGEDSINCE modifier
//! (RFC 7162 §3.1.4) limits the answer to messages whose MODSEQ is above a value; with QRESYNC's
//! VANISHED modifier (§3.2.6) the UIDs expunged since that value come first. Beyond imap-codec's
//! items: PREVIEW (RFC 8970), a short plain-text start of the message; SAVEDATE (RFC 8514);
//! EMAILID and THREADID (OBJECTID, RFC 8474).
//!
//! ENVELOPE, BODY, BODYSTRUCTURE, PREVIEW and the header fields clients list messages by come
//! from the items the mailstore derived when it stored each message (kubemail-message's
//! `cached`), so a FETCH of them and of metadata reads no body; the frontend holds what never
//! changes of a message once read, and a FETCH of that and of flags is answered with no round
//! trip at all. Bodies stream from the mailstore one message after the other and each message's
//! response is written before the next is read, so a FETCH of a whole mailbox holds one message
//! at a time, and tells its progress as it goes (INPROGRESS, RFC 9585). Whole messages read
//! are kept a while (`body_cache.rs`): the next pieces a client reads of one, its parts one after
//! the other or the message again, are cut from what is kept, with no round trip.

use std::collections::HashMap;
use std::sync::Arc;

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::command::{CommandBody, FetchModifier};
use imap_codec::imap_types::core::{AString, Tag, Vec1};
use imap_codec::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName, Part, Section};
use imap_codec::imap_types::sequence::SequenceSet;
use kubemail_message::cached;
use kubemail_message::fields::{all_common, header_fields};
use kubemail_message::mime::{self, Piece, UnknownEncoding};
use kubemail_proto::mailstore::store_flags_request::Operation;
use kubemail_proto::mailstore::{ExpungedSinceRequest, Flags, MessageMeta, StoreFlagsRequest, SystemFlag};
use kubemail_runtime::clock::imap_date_time;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::messages::{uid_ranges, written_uid_ranges};
use super::progress::Progress;
use super::selection::flag_list;
use crate::extended_syntax::FetchExtra;
use crate::response::Status;

/// What a FETCH asks for, checked before anything is sent.
#[derive(Clone)]
struct Request<'a> {
    items: Vec<MessageDataItemName<'a>>,
    /// Items imap-codec does not parse, answered after `items`.
    extra: &'a [FetchExtra],
    /// Some item reads the message's octets.
    needs_body: bool,
    /// Every item that reads the message's octets needs its header only.
    headers_only: bool,
    /// Some item is one the mailstore keeps derived with the message (ENVELOPE, BODY,
    /// BODYSTRUCTURE, PREVIEW, common header fields), answered from its cached items rather
    /// than the body.
    with_cached: bool,
    /// Some item is HEADER.FIELDS of common fields, answered from the cached items' lines.
    cached_header: bool,
    /// Reads a body without PEEK: \Seen is set.
    marks_seen: bool,
}

/// The modifiers of a FETCH: CHANGEDSINCE (RFC 7162 §3.1.4), 0 when not given, and VANISHED
/// (§3.2.6).
struct Modifiers {
    changed_since: u64,
    vanished: bool,
}

impl Modifiers {
    fn new(modifiers: &[FetchModifier]) -> Modifiers {
        let mut changed_since = 0;
        let mut vanished = false;
        for modifier in modifiers {
            match modifier {
                FetchModifier::ChangedSince(modseq) => changed_since = modseq.get(),
                FetchModifier::Vanished => vanished = true,
            }
        }
        Modifiers { changed_since, vanished }
    }
}

/// Lines per write of a FETCH answered from the snapshot.
const SNAPSHOT_LINES_PER_WRITE: usize = 1000;

/// Appends `number` in decimal: `write!` costs more than the rest of a FLAGS line.
fn push_number(out: &mut String, number: u32) {
    let mut digits = [0u8; 10];
    let mut at = digits.len();
    let mut rest = number;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|digit| char::from(*digit)));
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn fetch(
        &mut self,
        tag: &Tag<'_>,
        set: &SequenceSet,
        items: &MacroOrMessageDataItemNames<'_>,
        uid: bool,
        modifiers: &[FetchModifier],
        (extra, placeholder): (&[FetchExtra], bool),
    ) {
        // Changes that arrived are applied first: the snapshot answers UID and FLAGS, and
        // knows what was expunged meanwhile.
        self.report_changes();
        self.read_new_flags().await;
        let Some(mut messages) = self.selected_messages(tag, set, uid, false) else { return };
        let Modifiers { changed_since, vanished } = Modifiers::new(modifiers);
        if vanished && !self.report_vanished(tag, set, uid, changed_since).await {
            return;
        }
        let Some(selection) = &self.selected else { return };
        let read_only = selection.read_only;
        let request = self.fetch_request(items, uid, read_only, changed_since, (extra, placeholder));
        if let Some(missing) = self.fetch_responses(Some(tag), &mut messages, &request, changed_since).await {
            self.fetch_done(tag, uid, missing);
        }
    }

    /// The FETCH responses for new messages that NOTIFY's MessageNew asks for (RFC 5465 §5.2),
    /// untagged; a failure is told as an untagged NO.
    pub(super) async fn fetch_untagged(
        &mut self,
        mut messages: Vec<(u32, u32)>,
        items: &MacroOrMessageDataItemNames<'_>,
    ) {
        let Some(selection) = &self.selected else { return };
        let read_only = selection.read_only;
        let request = self.fetch_request(items, true, read_only, 0, (&[], false));
        self.fetch_responses(None, &mut messages, &request, 0).await;
    }

    /// Writes the responses of `request` for `messages` (narrowed to those changed since
    /// `changed_since` when it is set); how many had no data (expunged meanwhile), or `None`
    /// after answering why it stopped (to `tag`, or untagged without one).
    async fn fetch_responses(
        &mut self,
        tag: Option<&Tag<'_>>,
        messages: &mut Vec<(u32, u32)>,
        request: &Request<'_>,
        changed_since: u64,
    ) -> Option<usize> {
        if changed_since == 0
            && request.extra.is_empty()
            && request.items.iter().all(|item| matches!(item, MessageDataItemName::Uid | MessageDataItemName::Flags))
        {
            // What a client asks most, on every sync: answered from the snapshot, which the
            // mailbox's events keep current.
            return self.fetch_from_snapshot(messages, &request.items).await;
        }
        if changed_since == 0 && request.held() {
            // What never changes of a message, from what this frontend holds, with its flags
            // from the snapshot: a client reading envelopes again costs no round trip.
            let held = self.held_meta(tag, messages).await?;
            if held.values().all(|(meta, _)| request.has_cached(meta)) {
                let lookup = |uid: &u32| held.get(uid).map(|(meta, flags)| (&**meta, Some(flags)));
                return Some(self.write_from_meta(messages, request, lookup));
            }
        }
        let account_id = self.account_id();
        let mailbox_id = self.selected.as_ref()?.mailbox_id;
        if request.marks_seen {
            self.mark_seen(account_id, mailbox_id, messages).await;
        }
        if changed_since == 0 && request.needs_body && !request.items.contains(&MessageDataItemName::ModSeq) {
            // The next pieces of messages read lately, cut from the bodies this frontend kept.
            if let Some(bodies) = self.kept_bodies(messages) {
                return self.write_from_kept_bodies(tag, messages, request, &bodies).await;
            }
        }
        let meta = self.read_meta(tag, (account_id, mailbox_id), messages, request, changed_since).await?;
        if !request.needs_body {
            if request.with_cached && meta.values().any(|meta| !request.has_cached(meta)) {
                // Items derived before the mailstore kept them (or kept these): they come from
                // the bodies.
                let from_bodies = Request { needs_body: true, headers_only: false, ..request.clone() };
                return self.write_from_bodies(tag, (account_id, mailbox_id), messages, &from_bodies, meta).await;
            }
            return Some(self.write_from_meta(messages, request, |uid| meta.get(uid).map(|meta| (meta, None))));
        }
        self.write_from_bodies(tag, (account_id, mailbox_id), messages, request, meta).await
    }

    /// VANISHED (EARLIER): the UIDs of `set` expunged since `changed_since`. Whether the FETCH
    /// goes on; false after answering why not.
    async fn report_vanished(&mut self, tag: &Tag<'_>, set: &SequenceSet, uid: bool, changed_since: u64) -> bool {
        // RFC 7162 §3.2.6: a UID FETCH with CHANGEDSINCE, once QRESYNC is enabled.
        if !(self.qresync && uid && changed_since > 0) {
            let reason = "VANISHED needs ENABLE QRESYNC, UID FETCH and CHANGEDSINCE";
            self.respond(Some(tag), Status::Bad, None, reason);
            return false;
        }
        let Some(selection) = &self.selected else { return false };
        let request = ExpungedSinceRequest {
            account_id: self.account_id(),
            mailbox_id: selection.mailbox_id,
            modseq: changed_since,
            uids: written_uid_ranges(set),
        };
        match self.services.mailstore.clone().expunged_since(request).await {
            Ok(answer) => {
                let Some(selection) = &self.selected else { return false };
                let line = selection.vanished_earlier(answer.into_inner().uids);
                self.io.write(line.as_bytes());
                true
            }
            Err(status) => {
                self.mailstore_refused(tag, &status);
                false
            }
        }
    }

    /// What the FETCH asks for, with the MODSEQ that CONDSTORE adds; asking for MODSEQ turns
    /// CONDSTORE on.
    fn fetch_request<'a>(
        &mut self,
        items: &'a MacroOrMessageDataItemNames<'a>,
        uid: bool,
        read_only: bool,
        changed_since: u64,
        extra: (&'a [FetchExtra], bool),
    ) -> Request<'a> {
        let mut request = Request::new(items, uid, read_only, extra);
        if changed_since > 0 && !request.items.contains(&MessageDataItemName::ModSeq) {
            // RFC 7162 §3.1.4.1: CHANGEDSINCE implies MODSEQ.
            request.items.push(MessageDataItemName::ModSeq);
        }
        if request.items.contains(&MessageDataItemName::ModSeq) {
            self.enable_condstore();
        }
        if self.condstore && request.marks_seen && !request.items.contains(&MessageDataItemName::ModSeq) {
            // The \Seen set here changes the MODSEQ, reported with the flags.
            request.items.push(MessageDataItemName::ModSeq);
        }
        request
    }

    /// The metadata of `messages` by UID (with their cached items when `request` answers from
    /// it alone), and `messages` narrowed to those changed since `changed_since` when it is set;
    /// `None` after answering why it could not be read.
    async fn read_meta(
        &mut self,
        tag: Option<&Tag<'_>>,
        mailbox: (i64, i64),
        messages: &mut Vec<(u32, u32)>,
        request: &Request<'_>,
        changed_since: u64,
    ) -> Option<HashMap<u32, MessageMeta>> {
        // Bodies come with their metadata: asked for on its own only without bodies, or to
        // know which messages changed since CHANGEDSINCE.
        let mut meta = HashMap::new();
        if !request.needs_body || changed_since > 0 {
            let uids: Vec<u32> = messages.iter().map(|(_, uid)| *uid).collect();
            let with_cached = request.with_cached && !request.needs_body;
            meta = match self.fetch_meta(mailbox, &uids, changed_since, with_cached).await {
                Ok(meta) => meta,
                Err(status) => {
                    self.refused(tag, &status);
                    return None;
                }
            };
        }
        if changed_since > 0 {
            messages.retain(|(_, uid)| meta.contains_key(uid));
        }
        Some(meta)
    }

    /// The metadata of `messages` by UID for [`Request::held`] items: what never changes from
    /// [`Services::held`](crate::services::Services::held), read once from the mailstore (with
    /// the cached items) for messages it lacks, beside the flags the snapshot holds (shared, not
    /// copied: the cached items are most of a message's metadata).
    /// Messages expunged meanwhile are left out; `None` after answering why the mailstore could
    /// not be read.
    async fn held_meta(
        &mut self,
        tag: Option<&Tag<'_>>,
        messages: &[(u32, u32)],
    ) -> Option<HashMap<u32, (Arc<MessageMeta>, Flags)>> {
        let selection = self.selected.as_ref()?;
        let (mailbox_id, uidvalidity) = (selection.mailbox_id, selection.uidvalidity);
        let uids: Vec<u32> = messages.iter().map(|(_, uid)| *uid).collect();
        let mut held = self.services.held.get(mailbox_id, uidvalidity, &uids);
        let missing: Vec<u32> = uids.iter().copied().filter(|uid| !held.contains_key(uid)).collect();
        if !missing.is_empty() {
            let read = match self.fetch_meta((self.account_id(), mailbox_id), &missing, 0, true).await {
                Ok(read) => read,
                Err(status) => {
                    self.refused(tag, &status);
                    return None;
                }
            };
            // Flags and MODSEQs change: only the rest is kept.
            let unchanging: Vec<(u32, Arc<MessageMeta>)> = read
                .into_values()
                .map(|meta| (meta.uid, Arc::new(MessageMeta { flags: None, modseq: 0, ..meta })))
                .collect();
            let complete: Vec<(u32, Arc<MessageMeta>)> =
                unchanging.iter().filter(|(_, meta)| meta.cached.is_some()).cloned().collect();
            self.services.held.put(mailbox_id, uidvalidity, &complete);
            held.extend(unchanging);
        }
        let selection = self.selected.as_ref()?;
        let mut meta = HashMap::with_capacity(messages.len());
        for (number, uid) in messages {
            let index = *number as usize - 1;
            let Some(unchanging) = held.get(uid) else { continue };
            if selection.expunged_meanwhile(*uid) {
                continue;
            }
            let keywords = selection.keywords_of(index).split_whitespace().map(str::to_string).collect();
            meta.insert(*uid, (unchanging.clone(), Flags { system: selection.flags[index], keywords }));
        }
        Some(meta)
    }

    /// Writes the answer for `messages` from their metadata alone, which `lookup` gives by UID
    /// with their flags when the metadata has none of its own; how many had none (they were
    /// expunged meanwhile).
    fn write_from_meta<'m>(
        &mut self,
        messages: &[(u32, u32)],
        request: &Request<'_>,
        lookup: impl Fn(&u32) -> Option<(&'m MessageMeta, Option<&'m Flags>)>,
    ) -> usize {
        let mut missing = 0;
        for (number, uid) in messages {
            let Some((meta, flags)) = lookup(uid) else {
                missing += 1;
                continue;
            };
            // Without a body there is nothing to decode.
            let recent = self.selected.as_ref().is_some_and(|selection| selection.is_recent(*uid));
            let line = response_line(*number, request, (meta, flags), recent, None, self.utf8).unwrap_or_default();
            self.io.write(&line);
        }
        missing
    }

    /// Writes the answer for `messages` from their bodies, each written before the next is
    /// read; how many had none (they were expunged meanwhile), or `None` when the FETCH ended
    /// early (answered already, or the client gone).
    async fn write_from_bodies(
        &mut self,
        tag: Option<&Tag<'_>>,
        mailbox: (i64, i64),
        messages: &[(u32, u32)],
        request: &Request<'_>,
        mut meta: HashMap<u32, MessageMeta>,
    ) -> Option<usize> {
        let uids: Vec<u32> = messages.iter().map(|(_, uid)| *uid).collect();
        let numbers: HashMap<u32, u32> = messages.iter().map(|(number, uid)| (*uid, *number)).collect();
        let mut bodies = self.bodies(tag, mailbox, &uids, request.headers_only, request.with_cached).await?;
        // Whole bodies of the selected mailbox are kept for the pieces clients read next.
        let keep_in = (!request.headers_only)
            .then(|| self.selected.as_ref().filter(|selection| selection.mailbox_id == mailbox.1))
            .flatten()
            .map(|selection| (selection.mailbox_id, selection.uidvalidity));
        let mut progress = tag.map(|tag| Progress::new(tag, self.services.settings.progress_interval));
        let mut written = 0;
        while let Some(next) = bodies.next().await {
            let body = match next {
                Ok(body) => body,
                Err(status) => {
                    self.refused(tag, &status);
                    return None;
                }
            };
            if body.meta.is_none() && meta.is_empty() {
                // A mailstore that sends bodies without their metadata: asked for it once.
                meta = match self.fetch_meta(mailbox, &uids, 0, false).await {
                    Ok(meta) => meta,
                    Err(status) => {
                        self.refused(tag, &status);
                        return None;
                    }
                };
            }
            if let Some((mailbox_id, uidvalidity)) = keep_in {
                self.services.bodies.put(mailbox_id, uidvalidity, body.uid, &body.octets);
            }
            let message_meta = body.meta.as_ref().or_else(|| meta.get(&body.uid));
            if let (Some(number), Some(message_meta)) = (numbers.get(&body.uid), message_meta) {
                if !self.write_response(tag, *number, request, (message_meta, None), &body.octets) {
                    return None;
                }
                written += 1;
                if let Some(line) = progress
                    .as_mut()
                    .and_then(|progress| progress.tick(Some(written), Some(messages.len()), "Fetching the messages"))
                {
                    self.io.write(line.as_bytes());
                }
                // A batch of responses at a time in memory, however many were asked for.
                if self.io.flush_when_full().await.is_err() {
                    return None;
                }
            }
        }
        Some(messages.len() - written)
    }

    /// The bodies of `messages`, in their order, when this frontend kept every one of them.
    fn kept_bodies(&self, messages: &[(u32, u32)]) -> Option<Vec<Arc<[u8]>>> {
        let selection = self.selected.as_ref()?;
        let uids: Vec<u32> = messages.iter().map(|(_, uid)| *uid).collect();
        self.services.bodies.get_all(selection.mailbox_id, selection.uidvalidity, &uids)
    }

    /// Writes the answer for `messages` from the bodies this frontend kept (`bodies`, in their
    /// order), with what never changes of them held and their flags from the snapshot (where a
    /// read without PEEK has set \Seen already). How many had no data (expunged meanwhile), or
    /// `None` when the FETCH ended early (answered already, or the client gone).
    async fn write_from_kept_bodies(
        &mut self,
        tag: Option<&Tag<'_>>,
        messages: &[(u32, u32)],
        request: &Request<'_>,
        bodies: &[Arc<[u8]>],
    ) -> Option<usize> {
        let held = self.held_meta(tag, messages).await?;
        let mut missing = 0;
        for ((number, uid), body) in messages.iter().zip(bodies) {
            let Some((meta, flags)) = held.get(uid) else {
                missing += 1;
                continue;
            };
            if !self.write_response(tag, *number, request, (meta, Some(flags)), body) {
                return None;
            }
            if self.io.flush_when_full().await.is_err() {
                return None;
            }
        }
        Some(missing)
    }

    /// Writes the response of message `number` from its `body`; false after answering that its
    /// content transfer encoding cannot be undone for BINARY.
    fn write_response(
        &mut self,
        tag: Option<&Tag<'_>>,
        number: u32,
        request: &Request<'_>,
        meta: (&MessageMeta, Option<&Flags>),
        body: &[u8],
    ) -> bool {
        let recent = self.selected.as_ref().is_some_and(|selection| selection.is_recent(meta.0.uid));
        match response_line(number, request, meta, recent, Some(body), self.utf8) {
            Ok(line) => {
                self.io.write(&line);
                true
            }
            Err(UnknownEncoding) => {
                let text = format!("Message {number} has a content transfer encoding BINARY cannot undo");
                self.respond(tag, Status::No, Some("UNKNOWN-CTE"), &text);
                false
            }
        }
    }

    /// Answers a FETCH of UID and FLAGS only from the selection's snapshot. The lines go out
    /// [`SNAPSHOT_LINES_PER_WRITE`] at a time, so the client reads the first while the rest are
    /// made (10,000 lines are about 0.4 MB).
    /// How many had no data (expunged meanwhile); `None` when the client is gone.
    async fn fetch_from_snapshot(
        &mut self,
        messages: &[(u32, u32)],
        items: &[MessageDataItemName<'_>],
    ) -> Option<usize> {
        let mut missing = 0;
        for batch in messages.chunks(SNAPSHOT_LINES_PER_WRITE) {
            let selection = self.selected.as_ref()?;
            let mut lines = String::with_capacity(batch.len() * 40);
            for (number, message_uid) in batch {
                if selection.expunged_meanwhile(*message_uid) {
                    missing += 1;
                    continue;
                }
                lines.push_str("* ");
                push_number(&mut lines, *number);
                lines.push_str(" FETCH (");
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        lines.push(' ');
                    }
                    match item {
                        MessageDataItemName::Uid => {
                            lines.push_str("UID ");
                            push_number(&mut lines, *message_uid);
                        }
                        _ => {
                            lines.push_str("FLAGS (");
                            selection.write_flag_list(*number as usize - 1, &mut lines);
                            lines.push(')');
                        }
                    }
                }
                lines.push_str(")\r\n");
            }
            self.io.write(lines.as_bytes());
            self.io.flush().await.ok()?;
        }
        Some(missing)
    }

    /// The tagged answer to a FETCH that found no data for `missing` of its messages: they
    /// were expunged elsewhere, and the client hears so with its next command that allows it.
    /// The FETCH still succeeds with what exists (RFC 2180 §4.1.3), so a client reading a
    /// mailbox others clean up is not told it failed.
    fn fetch_done(&mut self, tag: &Tag<'_>, uid: bool, missing: usize) {
        let done = if uid { "UID FETCH completed" } else { "FETCH completed" };
        if missing > 0 {
            let text = format!("{done}; some messages were expunged in the meantime");
            self.respond(Some(tag), Status::Ok, Some("EXPUNGEISSUED"), &text);
        } else {
            self.ok(tag, done);
        }
    }

    /// Sets \Seen on the messages that lack it; the metadata read next carries the new flags.
    async fn mark_seen(&mut self, account_id: i64, mailbox_id: i64, messages: &[(u32, u32)]) {
        let Some(selection) = &mut self.selected else { return };
        let seen = SystemFlag::Seen as u32;
        let unseen: Vec<(u32, u32)> =
            messages.iter().copied().filter(|(number, _)| selection.flags[*number as usize - 1] & seen == 0).collect();
        if unseen.is_empty() {
            return;
        }
        let uids: Vec<u32> = unseen.iter().map(|(_, uid)| *uid).collect();
        let request = StoreFlagsRequest {
            account_id,
            mailbox_id,
            uids: uid_ranges(&uids),
            operation: Operation::Add as i32,
            flags: Some(Flags { system: seen, keywords: Vec::new() }),
            unchanged_since: 0,
            held: selection.held_flags(&unseen).unwrap_or_default(),
        };
        match self.services.mailstore.clone().store_flags(request).await {
            Ok(response) => {
                for (number, _) in messages {
                    selection.flags[*number as usize - 1] |= seen;
                }
                // With their new MODSEQ, so a later STORE can work from the flags held.
                for meta in response.into_inner().updated {
                    let (Ok(index), Some(flags)) = (selection.uids.binary_search(&meta.uid), &meta.flags) else {
                        continue;
                    };
                    selection.set_flags(index, flags.system, &flags.keywords, meta.modseq);
                }
            }
            // The content is still served; the flag is set on the next read.
            Err(status) => tracing::warn!(%status, "setting \\Seen failed"),
        }
    }
}

/// FETCH items written on their own (`(UID FLAGS)`, `BODY.PEEK[1.MIME]`), read as imap-codec
/// reads a FETCH's: NOTIFY's MessageNew items, an IMAP URL's section.
pub(super) fn fetch_items(items: &[u8]) -> Option<MacroOrMessageDataItemNames<'static>> {
    let mut command = b"n UID FETCH 1 ".to_vec();
    command.extend_from_slice(items);
    command.extend_from_slice(b"\r\n");
    match CommandCodec::default().decode(&command) {
        Ok((b"", command)) => match command.body {
            CommandBody::Fetch { macro_or_item_names, .. } => Some(macro_or_item_names.into_static()),
            _ => None,
        },
        _ => None,
    }
}

impl<'a> Request<'a> {
    /// Whether every item is one a session answers from what it holds: the snapshot's UID and
    /// flags, and what never changes of a message (INTERNALDATE, RFC822.SIZE, the cached
    /// items, SAVEDATE, EMAILID, THREADID). MODSEQ is asked of the mailstore, whose value is
    /// exact when the snapshot has not heard of a change yet.
    fn held(&self) -> bool {
        !self.needs_body
            && !self.marks_seen
            && self.items.iter().all(|item| {
                matches!(
                    item,
                    MessageDataItemName::Uid
                        | MessageDataItemName::Flags
                        | MessageDataItemName::InternalDate
                        | MessageDataItemName::Rfc822Size
                        | MessageDataItemName::Envelope
                        | MessageDataItemName::Body
                        | MessageDataItemName::BodyStructure
                ) || reads_common_fields(item)
            })
    }

    /// Whether `meta` carries every cached item this request answers from them.
    fn has_cached(&self, meta: &MessageMeta) -> bool {
        meta.cached.as_ref().is_some_and(|cached| !self.cached_header || cached.common_header.is_some())
    }

    /// The items of `requested` (UID first for UID FETCH) and `extra`; with `placeholder`, the
    /// UID in `requested` only stood in for an item list that had `extra` alone.
    fn new(
        requested: &'a MacroOrMessageDataItemNames<'a>,
        uid: bool,
        read_only: bool,
        (extra, placeholder): (&'a [FetchExtra], bool),
    ) -> Self {
        let mut items = match requested {
            MacroOrMessageDataItemNames::Macro(name) => name.expand(),
            MacroOrMessageDataItemNames::MessageDataItemNames(items) => items.clone(),
        };
        if placeholder {
            items.clear();
        }
        if uid && !items.contains(&MessageDataItemName::Uid) {
            items.insert(0, MessageDataItemName::Uid);
        }
        let mut needs_body = false;
        let mut marks_seen = false;
        let mut with_cached = extra.iter().any(FetchExtra::is_preview);
        let mut cached_header = false;
        for item in &items {
            match item {
                MessageDataItemName::BodyExt { peek, .. } if reads_common_fields(item) => {
                    with_cached = true;
                    cached_header = true;
                    marks_seen |= !peek;
                }
                MessageDataItemName::Rfc822 | MessageDataItemName::Rfc822Text => {
                    needs_body = true;
                    marks_seen = true;
                }
                MessageDataItemName::Rfc822Header => needs_body = true,
                MessageDataItemName::BodyExt { peek, .. } => {
                    needs_body = true;
                    marks_seen |= !peek;
                }
                MessageDataItemName::Body | MessageDataItemName::BodyStructure | MessageDataItemName::Envelope => {
                    with_cached = true;
                }
                MessageDataItemName::Binary { peek, .. } => {
                    needs_body = true;
                    marks_seen |= !peek;
                }
                MessageDataItemName::BinarySize { .. } => needs_body = true,
                _ => {}
            }
        }
        if marks_seen && !read_only && !items.contains(&MessageDataItemName::Flags) {
            // RFC 9051 §6.4.5: the changed flags are reported with the data.
            items.push(MessageDataItemName::Flags);
        }
        let headers_only = needs_body && items.iter().all(|item| !reads_octets(item) || reads_header_only(item));
        Request {
            items,
            extra,
            needs_body,
            headers_only,
            with_cached,
            cached_header,
            marks_seen: marks_seen && !read_only,
        }
    }
}

/// `* n FETCH (…)` for one message, from its metadata and its flags when they are held apart
/// from it; `body` is the whole message when a body item was asked for.
fn response_line(
    number: u32,
    request: &Request<'_>,
    (meta, flags): (&MessageMeta, Option<&Flags>),
    recent: bool,
    body: Option<&[u8]>,
    utf8: bool,
) -> Result<Vec<u8>, UnknownEncoding> {
    // Without a body, the only sections asked for are common header fields, kept with the
    // cached items.
    let common_header = body.is_none().then(|| meta.cached.as_ref().and_then(|c| c.common_header.as_deref())).flatten();
    let body = body.unwrap_or_default();
    let header_end = (meta.header_size as usize).min(body.len());
    let items = &request.items;
    let cached = meta.cached.as_ref();
    // Parsed once, and only when an item needs the MIME structure: a part, or a cached item
    // the mailstore did not send.
    let parsed = (items.iter().any(needs_mime) || (request.with_cached && cached.is_none()))
        .then(|| mime::parse(body))
        .flatten();
    let preview = || match cached {
        Some(cached) => cached.preview.clone(),
        None => parsed.as_ref().and_then(|message| mime::preview(message)),
    };
    let mut line = format!("* {number} FETCH (").into_bytes();
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            line.push(b' ');
        }
        match item {
            MessageDataItemName::Uid => line.extend(format!("UID {}", meta.uid).bytes()),
            MessageDataItemName::Flags => {
                let (system, keywords) =
                    flags.or(meta.flags.as_ref()).map_or((0, &[][..]), |f| (f.system, &f.keywords[..]));
                line.extend(format!("FLAGS ({})", flag_list(system, recent, keywords)).bytes());
            }
            MessageDataItemName::InternalDate => {
                line.extend(format!("INTERNALDATE \"{}\"", imap_date_time(meta.internal_date)).bytes());
            }
            MessageDataItemName::Rfc822Size => line.extend(format!("RFC822.SIZE {}", meta.size).bytes()),
            MessageDataItemName::ModSeq => line.extend(format!("MODSEQ ({})", meta.modseq).bytes()),
            MessageDataItemName::Rfc822 => literal(&mut line, "RFC822", body),
            MessageDataItemName::Rfc822Header => literal(&mut line, "RFC822.HEADER", &body[..header_end]),
            MessageDataItemName::Rfc822Text => literal(&mut line, "RFC822.TEXT", &body[header_end..]),
            MessageDataItemName::Envelope => {
                line.extend_from_slice(b"ENVELOPE ");
                match (cached, &parsed) {
                    (Some(cached), _) => line.extend_from_slice(cached::envelope(cached, utf8).as_bytes()),
                    (None, Some(message)) => line.extend(mime::envelope(message, utf8).bytes()),
                    (None, None) => line.extend_from_slice(b"NIL"),
                }
            }
            MessageDataItemName::Body | MessageDataItemName::BodyStructure => {
                let extensible = *item == MessageDataItemName::BodyStructure;
                line.extend_from_slice(if extensible { b"BODYSTRUCTURE " } else { b"BODY " });
                match (cached, &parsed) {
                    (Some(cached), _) => {
                        line.extend_from_slice(cached::body_structure(cached, extensible, utf8).as_bytes());
                    }
                    (None, Some(message)) => line.extend(mime::body_structure(message, extensible, utf8).bytes()),
                    (None, None) => line.extend_from_slice(b"NIL"),
                }
            }
            MessageDataItemName::BodyExt { section, partial, .. } => {
                let (name, data) = match common_header {
                    Some(lines) => section_data(section.as_ref(), lines, lines.len(), None),
                    None => section_data(section.as_ref(), body, header_end, parsed.as_deref()),
                };
                let Some(data) = data else {
                    // A part the message does not have.
                    line.extend(format!("BODY[{name}] NIL").bytes());
                    continue;
                };
                match partial {
                    Some((offset, length)) => {
                        let start = (*offset as usize).min(data.len());
                        let end = start.saturating_add(length.get() as usize).min(data.len());
                        literal(&mut line, &format!("BODY[{name}]<{offset}>"), &data[start..end]);
                    }
                    None => literal(&mut line, &format!("BODY[{name}]"), &data),
                }
            }
            MessageDataItemName::Binary { section, partial, .. } => {
                let path: Vec<u32> = section.iter().map(|number| number.get()).collect();
                let name = format!("BINARY[{}]", path.iter().map(u32::to_string).collect::<Vec<_>>().join("."));
                let Some(data) = binary_data(&path, body, parsed.as_deref())? else {
                    line.extend(format!("{name} NIL").bytes());
                    continue;
                };
                match partial {
                    Some((offset, length)) => {
                        let start = (*offset as usize).min(data.len());
                        let end = start.saturating_add(length.get() as usize).min(data.len());
                        literal8(&mut line, &format!("{name}<{offset}>"), &data[start..end]);
                    }
                    None => literal8(&mut line, &name, &data),
                }
            }
            MessageDataItemName::BinarySize { section } => {
                let path: Vec<u32> = section.iter().map(|number| number.get()).collect();
                let name = format!("BINARY.SIZE[{}]", path.iter().map(u32::to_string).collect::<Vec<_>>().join("."));
                match binary_data(&path, body, parsed.as_deref())? {
                    Some(data) => line.extend(format!("{name} {}", data.len()).bytes()),
                    None => line.extend(format!("{name} NIL").bytes()),
                }
            }
        }
    }
    for (index, item) in request.extra.iter().enumerate() {
        if index > 0 || !items.is_empty() {
            line.push(b' ');
        }
        match item {
            FetchExtra::Preview => {
                line.extend_from_slice(b"PREVIEW ");
                match preview() {
                    Some(text) => string(&mut line, &text),
                    None => line.extend_from_slice(b"NIL"),
                }
            }
            FetchExtra::FuzzyPreview { snippet } => {
                line.extend_from_slice(if *snippet { b"SNIPPET (FUZZY " } else { b"PREVIEW (FUZZY " });
                match preview() {
                    Some(text) => string(&mut line, &text),
                    None => line.extend_from_slice(b"NIL"),
                }
                line.push(b')');
            }
            FetchExtra::SaveDate if meta.save_date > 0 => {
                line.extend(format!("SAVEDATE \"{}\"", imap_date_time(meta.save_date)).bytes());
            }
            FetchExtra::SaveDate => line.extend_from_slice(b"SAVEDATE NIL"),
            FetchExtra::EmailId => line.extend(format!("EMAILID ({})", meta.email_id).bytes()),
            // Threads have no identifier of their own here (RFC 8474 §5.2 allows NIL).
            FetchExtra::ThreadId => line.extend_from_slice(b"THREADID NIL"),
        }
    }
    line.extend_from_slice(b")\r\n");
    Ok(line)
}

/// `text` as a quoted string, or as a literal when quoting cannot carry it.
fn string(line: &mut Vec<u8>, text: &str) {
    if text.bytes().all(|byte| (0x20..0x7f).contains(&byte) && byte != b'"' && byte != b'\\') {
        line.push(b'"');
        line.extend_from_slice(text.as_bytes());
        line.push(b'"');
    } else {
        line.extend(format!("{{{}}}\r\n", text.len()).bytes());
        line.extend_from_slice(text.as_bytes());
    }
}

/// The octets BINARY[path] names: the part decoded, or the whole message as stored.
fn binary_data(
    path: &[u32],
    body: &[u8],
    parsed: Option<&mail_parser::Message<'_>>,
) -> Result<Option<Vec<u8>>, UnknownEncoding> {
    match (path.is_empty(), parsed) {
        (true, _) => Ok(Some(body.to_vec())),
        (false, Some(message)) => mime::decoded(message, path),
        (false, None) => Ok(None),
    }
}

/// Whether the item is answered from the message's octets rather than its metadata or its
/// cached items.
fn reads_octets(item: &MessageDataItemName<'_>) -> bool {
    matches!(
        item,
        MessageDataItemName::Rfc822
            | MessageDataItemName::Rfc822Header
            | MessageDataItemName::Rfc822Text
            | MessageDataItemName::BodyExt { .. }
            | MessageDataItemName::Binary { .. }
            | MessageDataItemName::BinarySize { .. }
    )
}

/// Whether the item is HEADER.FIELDS of the message itself, of common fields only: answered
/// from the lines the cached items keep.
fn reads_common_fields(item: &MessageDataItemName<'_>) -> bool {
    matches!(item, MessageDataItemName::BodyExt { section: Some(Section::HeaderFields(None, fields)), .. }
        if all_common(fields.as_ref()))
}

/// Whether the item reads nothing past the message's header: the header, chosen header
/// fields — of the message itself, not of a part.
fn reads_header_only(item: &MessageDataItemName<'_>) -> bool {
    match item {
        MessageDataItemName::Rfc822Header => true,
        MessageDataItemName::BodyExt { section: Some(section), .. } => matches!(
            section,
            Section::Header(None) | Section::HeaderFields(None, _) | Section::HeaderFieldsNot(None, _)
        ),
        _ => false,
    }
}

/// Whether the item needs the parsed MIME structure of the octets read: a part's section.
fn needs_mime(item: &MessageDataItemName<'_>) -> bool {
    match item {
        MessageDataItemName::BodyExt { section: Some(section), .. } => section_part(section).is_some(),
        MessageDataItemName::Binary { section, .. } | MessageDataItemName::BinarySize { section } => {
            !section.is_empty()
        }
        _ => false,
    }
}

/// The part a section is inside, if it is not the whole message.
fn section_part<'s>(section: &'s Section<'_>) -> Option<&'s Part> {
    match section {
        Section::Part(part) | Section::Mime(part) => Some(part),
        Section::Header(part)
        | Section::Text(part)
        | Section::HeaderFields(part, _)
        | Section::HeaderFieldsNot(part, _) => part.as_ref(),
    }
}

/// The name of a section as the response repeats it, and its octets (`None` when the message
/// has no such part).
pub(super) fn section_data(
    section: Option<&Section<'_>>,
    body: &[u8],
    header_end: usize,
    parsed: Option<&mail_parser::Message<'_>>,
) -> (String, Option<Vec<u8>>) {
    let Some(section) = section else { return (String::new(), Some(body.to_vec())) };
    let path: Vec<u32> =
        section_part(section).map_or_else(Vec::new, |part| part.0.as_ref().iter().map(|n| n.get()).collect());
    let prefix =
        if path.is_empty() { String::new() } else { path.iter().map(u32::to_string).collect::<Vec<_>>().join(".") };
    let dot = if prefix.is_empty() { "" } else { "." };
    // The header of the message, or of an encapsulated one.
    let header = || match (path.is_empty(), parsed) {
        (true, _) => Some(&body[..header_end]),
        (false, Some(message)) => mime::section(message, &path, Piece::Header),
        (false, None) => None,
    };
    match section {
        Section::Part(_) => (prefix, parsed.and_then(|m| mime::section(m, &path, Piece::Body)).map(<[u8]>::to_vec)),
        Section::Mime(_) => {
            (format!("{prefix}.MIME"), parsed.and_then(|m| mime::section(m, &path, Piece::Mime)).map(<[u8]>::to_vec))
        }
        Section::Header(_) => (format!("{prefix}{dot}HEADER"), header().map(<[u8]>::to_vec)),
        Section::Text(_) => {
            let text = match (path.is_empty(), parsed) {
                (true, _) => Some(&body[header_end..]),
                (false, Some(message)) => mime::section(message, &path, Piece::Text),
                (false, None) => None,
            };
            (format!("{prefix}{dot}TEXT"), text.map(<[u8]>::to_vec))
        }
        Section::HeaderFields(_, fields) => (
            format!("{prefix}{dot}HEADER.FIELDS ({})", field_names(fields)),
            header().map(|header| header_fields(header, fields.as_ref(), true)),
        ),
        Section::HeaderFieldsNot(_, fields) => (
            format!("{prefix}{dot}HEADER.FIELDS.NOT ({})", field_names(fields)),
            header().map(|header| header_fields(header, fields.as_ref(), false)),
        ),
    }
}

/// `name` and `data` as a literal8 (RFC 3516 §4.2) when it holds a NUL, which a plain
/// literal may not.
fn literal8(line: &mut Vec<u8>, name: &str, data: &[u8]) {
    if data.contains(&0) {
        line.extend(format!("{name} ~{{{}}}\r\n", data.len()).bytes());
        line.extend_from_slice(data);
    } else {
        literal(line, name, data);
    }
}

/// `name` and `data` as a literal. A literal may not hold NUL (RFC 9051 §4.3), which a message
/// APPENDed as a literal8 can: each shows as 0x80, octet for octet, so sizes and partial
/// offsets stay true; BINARY gives the octets as they are.
fn literal(line: &mut Vec<u8>, name: &str, data: &[u8]) {
    line.extend(format!("{name} {{{}}}\r\n", data.len()).bytes());
    let start = line.len();
    line.extend_from_slice(data);
    // Rare, and bodies can be large: a memchr scan first, the rewrite only when there is one.
    if data.contains(&0) {
        line[start..].iter_mut().filter(|octet| **octet == 0).for_each(|octet| *octet = 0x80);
    }
}

/// The field names of a HEADER.FIELDS section as the response repeats them.
fn field_names(fields: &Vec1<AString<'_>>) -> String {
    let names: Vec<String> = fields
        .as_ref()
        .iter()
        .map(|field| crate::response::string(&String::from_utf8_lossy(field.as_ref()), false))
        .collect();
    names.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_header_fields_are_answered_without_a_body() {
        let request = |items: &[u8]| {
            let items = fetch_items(items).unwrap();
            let request = Request::new(&items, false, false, (&[], false));
            (request.needs_body, request.held(), request.cached_header)
        };
        assert_eq!(request(b"(UID BODY.PEEK[HEADER.FIELDS (From SUBJECT message-id)])"), (false, true, true));
        // Without PEEK \Seen is set: from the cached lines, but through the mailstore.
        assert_eq!(request(b"BODY[HEADER.FIELDS (From)]"), (false, false, true));
        assert_eq!(request(b"BODY.PEEK[HEADER.FIELDS (From X-Spam-Score)]"), (true, false, false));
        assert_eq!(request(b"BODY.PEEK[HEADER.FIELDS.NOT (From)]"), (true, false, false));
        assert_eq!(request(b"BODY.PEEK[1.HEADER.FIELDS (From)]"), (true, false, false));
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        let mut out = String::new();
        for number in [0, 7, 10, 1234, u32::MAX] {
            push_number(&mut out, number);
            out.push(' ');
        }
        assert_eq!(out, "0 7 10 1234 4294967295 ");
    }
}
