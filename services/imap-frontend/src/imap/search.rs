//! SEARCH and UID SEARCH (RFC 9051 §6.4.4) with every search key of RFC 3501: flags, sizes,
//! dates, sequence and UID sets, NOT, OR and lists, OLDER and YOUNGER (WITHIN, RFC 5032), and the keys on content — addresses,
//! subject, any header, body and text — matched case-insensitively against the decoded
//! message. Answered with `* SEARCH`, or `* ESEARCH` for an IMAP4rev2 client and whenever the
//! client asks for MIN, MAX, ALL, COUNT (RETURN, RFC 4731) or a PARTIAL window (RFC 9394).
//!
//! Keys on flags come from the session's snapshot, dates and sizes from the mailstore's
//! metadata; the messages themselves are read only when a key needs content, one at a time. A
//! search that reads them tells its progress (INPROGRESS, RFC 9585).

use std::collections::HashMap;

use imap_codec::imap_types::core::{AString, Charset, Tag};
use imap_codec::imap_types::datetime::NaiveDate;
use imap_codec::imap_types::search::SearchKey;
use kubemail_proto::mailstore::{MessageMeta, SystemFlag};
use kubemail_runtime::clock::{days_from_civil, unix_now};
use mail_parser::Message;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::progress::Progress;
use super::selection::Selection;
use crate::casemap;
use crate::extended_syntax::{SEARCH_EXTRA_FIELD, SearchExtra, SearchReturn};
use crate::response::{self, Status};

const DAY: i64 = 86_400;

/// What an IMAP4rev2 SEARCH without RETURN answers.
const ALL: SearchReturn =
    SearchReturn { min: false, max: false, all: true, count: false, partial: None, save: false, update: false };

/// What a search found.
pub(super) struct Matched {
    /// (sequence number, UID) of each message found, ascending.
    pub found: Vec<(u32, u32)>,
    /// Metadata by UID, when a key needed it.
    pub meta: HashMap<u32, MessageMeta>,
    /// Whether a key was on MODSEQ: the answer then tells the highest MODSEQ it returns.
    pub by_modseq: bool,
}

impl Matched {
    /// What the answer tells after a search on MODSEQ (RFC 7162 §3.1.5): the highest MODSEQ of
    /// the messages it returns, some or all of those found; `None` for other searches.
    pub fn highest_modseq<'a>(&self, returned: impl IntoIterator<Item = &'a (u32, u32)>) -> Option<u64> {
        let modseqs = returned.into_iter().filter_map(|(_, uid)| self.meta.get(uid)).map(|meta| meta.modseq);
        modseqs.max().filter(|_| self.by_modseq)
    }
}

/// What a search key is evaluated against: one message.
struct Candidate<'a> {
    number: u32,
    uid: u32,
    system: u32,
    keywords: Vec<&'a str>,
    meta: Option<&'a MessageMeta>,
    /// The parsed message, when a key needs content.
    content: Option<&'a Message<'a>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn search(
        &mut self,
        tag: &Tag<'_>,
        charset: Option<&Charset<'_>>,
        criteria: &[SearchKey<'_>],
        uid: bool,
        returns: Option<&SearchReturn>,
        keys: &[SearchExtra],
    ) {
        let update = returns.is_some_and(|returns| returns.update);
        if update && !self.context_tag_free(tag) {
            return;
        }
        let Some(matched) = self.matching(Some(tag), charset, (criteria, keys)).await else {
            self.save_result(&[], returns);
            return;
        };
        self.save_result(&matched.found, returns);
        if update {
            self.keep_context(tag, uid, (criteria, keys), None, &matched.found);
        }
        let line = if let Some(returns) = returns.or(self.rev2.then_some(&ALL)) {
            // SAVE alone answers nothing (RFC 5182 §2.1).
            if returns.answers() { esearch(tag, uid, &matched.found, returns, &matched) } else { String::new() }
        } else {
            let found = &matched.found;
            let numbers: String = found
                .iter()
                .map(|&(number, message_uid)| format!(" {}", if uid { message_uid } else { number }))
                .collect();
            let modseq = matched.highest_modseq(found).map_or_else(String::new, |modseq| format!(" (MODSEQ {modseq})"));
            format!("* SEARCH{numbers}{modseq}\r\n")
        };
        self.io.write(line.as_bytes());
        self.ok(tag, if uid { "UID SEARCH completed" } else { "SEARCH completed" });
    }

    /// The messages that match `criteria` as (sequence number, UID), ascending, with the
    /// metadata that was read for them; `None` after answering why there are none to give.
    /// SEARCH, SORT and THREAD all search this way. `keys` are the keys imap-codec does not
    /// parse, standing in `criteria` as headers (see [`Extension::Search`]).
    ///
    /// [`Extension::Search`]: crate::extended_syntax::Extension::Search
    pub(super) async fn matching(
        &mut self,
        tag: Option<&Tag<'_>>,
        charset: Option<&Charset<'_>>,
        (criteria, keys): (&[SearchKey<'_>], &[SearchExtra]),
    ) -> Option<Matched> {
        if let Some(charset) = charset
            && !["UTF-8", "US-ASCII"].iter().any(|known| charset.as_ref().eq_ignore_ascii_case(known))
        {
            self.respond(tag, Status::No, Some("BADCHARSET (UTF-8 US-ASCII)"), "Unsupported charset");
            return None;
        }
        self.read_new_flags().await;
        let Some(selection) = &self.selected else { return None };
        let key = SearchKey::And(criteria.to_vec().try_into().expect("SEARCH has at least one key"));
        if let Err(reason) = check_sets(&key, selection) {
            self.respond(tag, Status::Bad, None, reason);
            return None;
        }
        let (account_id, mailbox_id) = (self.account_id(), selection.mailbox_id);
        let all_uids = selection.uids.clone();
        let meta = if needs(&key, &|key| {
            matches!(
                key,
                SearchKey::Before(_)
                    | SearchKey::On(_)
                    | SearchKey::Since(_)
                    | SearchKey::Larger(_)
                    | SearchKey::Smaller(_)
                    | SearchKey::ModSequence { .. }
                    | SearchKey::Older(_)
                    | SearchKey::Younger(_)
            ) || stand_in(key).and_then(|index| keys.get(index)).is_some_and(SearchExtra::needs_meta)
        }) {
            match self.fetch_meta((account_id, mailbox_id), &all_uids, 0, false).await {
                Ok(meta) => meta,
                Err(status) => {
                    self.refused(tag, &status);
                    return None;
                }
            }
        } else {
            HashMap::new()
        };
        let mut found = Vec::new();
        if needs(&key, &is_content_key) {
            let mut bodies = self.bodies(tag, (account_id, mailbox_id), &all_uids, false, false).await?;
            let mut progress = tag.map(|tag| Progress::new(tag, self.services.settings.progress_interval));
            let mut read = 0;
            while let Some(next) = bodies.next().await {
                read += 1;
                if let Some(line) = progress
                    .as_mut()
                    .and_then(|progress| progress.tick(Some(read), Some(all_uids.len()), "Searching the messages"))
                {
                    self.io.write(line.as_bytes());
                    let _ = self.io.flush().await;
                }
                let (uid, body) = match next {
                    Ok(message) => (message.uid, message.octets),
                    Err(status) => {
                        self.refused(tag, &status);
                        return None;
                    }
                };
                let parsed = kubemail_message::mime::parse(&body);
                // Borrowed anew after each wait: the selection is not held across one.
                let Some(selection) = &self.selected else { return None };
                if let Some(candidate) = candidate(selection, uid, &meta, parsed.as_deref())
                    && matches(&key, &candidate, selection, keys)
                {
                    found.push((candidate.number, candidate.uid));
                }
            }
        } else {
            let Some(selection) = &self.selected else { return None };
            for &uid_of_message in &selection.uids {
                if let Some(candidate) = candidate(selection, uid_of_message, &meta, None)
                    && matches(&key, &candidate, selection, keys)
                {
                    found.push((candidate.number, candidate.uid));
                }
            }
        }
        // A search on MODSEQ turns CONDSTORE on (RFC 7162 §3.1).
        let by_modseq = needs(&key, &|key| matches!(key, SearchKey::ModSequence { .. }));
        if by_modseq {
            self.enable_condstore();
        }
        Some(Matched { found, meta, by_modseq })
    }

    /// With RETURN (SAVE), keeps as `$` (RFC 5182 §2.1) the messages of `order` (the result,
    /// in the answer's order) that the answer names; a search that failed saves nothing.
    pub(super) fn save_result(&mut self, order: &[(u32, u32)], returns: Option<&SearchReturn>) {
        if let (Some(returns), Some(selection)) = (returns.filter(|returns| returns.save), &mut self.selected) {
            let mut saved: Vec<u32> = returned(order, returns).into_iter().map(|&(_, uid)| uid).collect();
            saved.sort_unstable();
            saved.dedup();
            selection.saved_result = saved;
        }
    }
}

/// The messages of `order` an ESEARCH answer names: all of them with ALL or COUNT, else the
/// first and last for MIN and MAX and the PARTIAL window.
fn returned<'a>(order: &'a [(u32, u32)], returns: &SearchReturn) -> Vec<&'a (u32, u32)> {
    if returns.all || returns.count || !returns.answers() {
        return order.iter().collect();
    }
    let ends = [returns.min.then(|| order.first()), returns.max.then(|| order.last())];
    let window = returns.partial.map_or(&[][..], |partial| &order[partial.window(order.len())]);
    ends.into_iter().flatten().flatten().chain(window).collect()
}

/// `* ESEARCH (TAG "t") [UID] …` with the results `returns` asks for (RFC 4731 §3.1, RFC 9394
/// §3.1), from `order`: the messages found as (sequence number, UID), ascending for SEARCH and
/// in sort order for SORT (RFC 5267 §3.1), where MIN and MAX are the first and the last.
/// MIN, MAX and ALL are left out when nothing was found.
pub(super) fn esearch(
    tag: &Tag<'_>,
    uid: bool,
    order: &[(u32, u32)],
    returns: &SearchReturn,
    matched: &Matched,
) -> String {
    let id = |&(number, message_uid): &(u32, u32)| if uid { message_uid } else { number };
    let window = returns.partial.map(|partial| (partial, &order[partial.window(order.len())]));
    let mut line = format!("* ESEARCH (TAG \"{}\")", tag.inner());
    if uid {
        line.push_str(" UID");
    }
    if let (true, Some(first)) = (returns.min, order.first()) {
        line.push_str(&format!(" MIN {}", id(first)));
    }
    if let (true, Some(last)) = (returns.max, order.last()) {
        line.push_str(&format!(" MAX {}", id(last)));
    }
    if returns.all && !order.is_empty() {
        let ids: Vec<u32> = order.iter().map(id).collect();
        line.push_str(&format!(" ALL {}", response::sequence_set(&ids)));
    }
    if let Some((partial, items)) = window {
        let ids: Vec<u32> = items.iter().map(id).collect();
        let set = if ids.is_empty() { "NIL".to_string() } else { response::sequence_set(&ids) };
        line.push_str(&format!(" PARTIAL ({} {set})", partial.wire()));
    }
    if returns.count {
        line.push_str(&format!(" COUNT {}", order.len()));
    }
    // The MODSEQ told is that of the messages the answer names (RFC 7162 §3.1.5).
    if let Some(modseq) = matched.highest_modseq(returned(order, returns)) {
        line.push_str(&format!(" MODSEQ {modseq}"));
    }
    line.push_str("\r\n");
    line
}

fn candidate<'a>(
    selection: &'a Selection,
    uid: u32,
    meta: &'a HashMap<u32, MessageMeta>,
    content: Option<&'a Message<'a>>,
) -> Option<Candidate<'a>> {
    let index = selection.uids.binary_search(&uid).ok()?;
    Some(Candidate {
        number: index as u32 + 1,
        uid,
        system: selection.flags[index],
        keywords: selection.keywords_of(index).split_whitespace().collect(),
        meta: meta.get(&uid),
        content,
    })
}

/// Whether `key` or a key inside it satisfies `wanted`.
fn needs(key: &SearchKey<'_>, wanted: &dyn Fn(&SearchKey<'_>) -> bool) -> bool {
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().any(|key| needs(key, wanted)),
        SearchKey::Not(key) => needs(key, wanted),
        SearchKey::Or(left, right) => needs(left, wanted) || needs(right, wanted),
        other => wanted(other),
    }
}

fn is_content_key(key: &SearchKey<'_>) -> bool {
    if stand_in(key).is_some() {
        return false;
    }
    matches!(
        key,
        SearchKey::Bcc(_)
            | SearchKey::Body(_)
            | SearchKey::Cc(_)
            | SearchKey::From(_)
            | SearchKey::Header(..)
            | SearchKey::SentBefore(_)
            | SearchKey::SentOn(_)
            | SearchKey::SentSince(_)
            | SearchKey::Subject(_)
            | SearchKey::Text(_)
            | SearchKey::To(_)
    )
}

/// Sequence sets in the keys name existing messages (UID sets may name any UID).
fn check_sets(key: &SearchKey<'_>, selection: &Selection) -> Result<(), &'static str> {
    match key {
        SearchKey::And(keys) => keys.as_ref().iter().try_for_each(|key| check_sets(key, selection)),
        SearchKey::Not(key) => check_sets(key, selection),
        SearchKey::Or(left, right) => check_sets(left, selection).and(check_sets(right, selection)),
        SearchKey::SequenceSet(set) => selection.resolve(set, false).map(|_| ()),
        _ => Ok(()),
    }
}

/// The index in the command's [`SearchExtra`] keys of the key that `key` stands in for.
fn stand_in(key: &SearchKey<'_>) -> Option<usize> {
    let SearchKey::Header(name, _) = key else { return None };
    std::str::from_utf8(name.as_ref()).ok()?.strip_prefix(SEARCH_EXTRA_FIELD)?.parse().ok()
}

fn matches(key: &SearchKey<'_>, message: &Candidate<'_>, selection: &Selection, keys: &[SearchExtra]) -> bool {
    let flag = |bit: SystemFlag| message.system & bit as u32 != 0;
    let internal_day = message.meta.map(|meta| meta.internal_date.div_euclid(DAY));
    let size = message.meta.map_or(0, |meta| meta.size);
    match key {
        SearchKey::And(all) => all.as_ref().iter().all(|key| matches(key, message, selection, keys)),
        SearchKey::Not(key) => !matches(key, message, selection, keys),
        SearchKey::Or(left, right) => {
            matches(left, message, selection, keys) || matches(right, message, selection, keys)
        }
        SearchKey::Header(..) if let Some(index) = stand_in(key) => {
            keys.get(index).is_some_and(|extra| matches_extra(extra, message, selection))
        }
        SearchKey::All => true,
        SearchKey::Recent => selection.is_recent(message.uid),
        SearchKey::New => selection.is_recent(message.uid) && !flag(SystemFlag::Seen),
        SearchKey::Old => !selection.is_recent(message.uid),
        SearchKey::SequenceSet(set) => {
            selection.resolve(set, false).is_ok_and(|found| found.iter().any(|(number, _)| *number == message.number))
        }
        SearchKey::Uid(set) => {
            selection.resolve(set, true).is_ok_and(|found| found.iter().any(|(_, uid)| *uid == message.uid))
        }
        SearchKey::Answered => flag(SystemFlag::Answered),
        SearchKey::Deleted => flag(SystemFlag::Deleted),
        SearchKey::Draft => flag(SystemFlag::Draft),
        SearchKey::Flagged => flag(SystemFlag::Flagged),
        SearchKey::Seen => flag(SystemFlag::Seen),
        SearchKey::Unanswered => !flag(SystemFlag::Answered),
        SearchKey::Undeleted => !flag(SystemFlag::Deleted),
        SearchKey::Undraft => !flag(SystemFlag::Draft),
        SearchKey::Unflagged => !flag(SystemFlag::Flagged),
        SearchKey::Unseen => !flag(SystemFlag::Seen),
        SearchKey::Keyword(keyword) => message.keywords.iter().any(|k| k.eq_ignore_ascii_case(keyword.inner())),
        SearchKey::Unkeyword(keyword) => !message.keywords.iter().any(|k| k.eq_ignore_ascii_case(keyword.inner())),
        SearchKey::Larger(octets) => size > u64::from(*octets),
        SearchKey::Smaller(octets) => message.meta.is_some() && size < u64::from(*octets),
        SearchKey::Before(date) => internal_day.is_some_and(|day| day < day_of(date)),
        SearchKey::On(date) => internal_day == Some(day_of(date)),
        SearchKey::Since(date) => internal_day.is_some_and(|day| day >= day_of(date)),
        SearchKey::SentBefore(date) => sent_day(message).is_some_and(|day| day < day_of(date)),
        SearchKey::SentOn(date) => sent_day(message) == Some(day_of(date)),
        SearchKey::SentSince(date) => sent_day(message).is_some_and(|day| day >= day_of(date)),
        SearchKey::From(text) => addresses_contain(message.content.and_then(Message::from), text),
        SearchKey::To(text) => addresses_contain(message.content.and_then(Message::to), text),
        SearchKey::Cc(text) => addresses_contain(message.content.and_then(Message::cc), text),
        SearchKey::Bcc(text) => addresses_contain(message.content.and_then(Message::bcc), text),
        SearchKey::Subject(text) => contains(message.content.and_then(Message::subject).unwrap_or(""), text),
        SearchKey::Header(name, text) => message.content.is_some_and(|content| {
            let name = String::from_utf8_lossy(name.as_ref()).into_owned();
            // Any occurrence of a repeated field (Received, Comments) may match, and an empty
            // string matches every message that has the field (RFC 9051 §6.4.4).
            content.headers_raw().any(|(field, value)| field.eq_ignore_ascii_case(&name) && contains(value, text))
        }),
        SearchKey::Body(text) => message.content.is_some_and(|content| body_contains(content, text)),
        SearchKey::Text(text) => message.content.is_some_and(|content| {
            let header_end = content.root_part().offset_body as usize;
            let header = String::from_utf8_lossy(content.raw_message().get(..header_end).unwrap_or_default());
            contains(&header, text) || body_contains(content, text)
        }),
        // WITHIN (RFC 5032): INTERNALDATE at least, or less than, that many seconds ago.
        SearchKey::Older(seconds) => {
            message.meta.is_some_and(|meta| meta.internal_date <= unix_now() - i64::from(seconds.get()))
        }
        SearchKey::Younger(seconds) => {
            message.meta.is_some_and(|meta| meta.internal_date > unix_now() - i64::from(seconds.get()))
        }
        // One MODSEQ per message: the metadata item named, if any, changed no later than it.
        SearchKey::ModSequence { modseq, .. } => message.meta.is_some_and(|meta| meta.modseq >= *modseq),
    }
}

/// Whether `message` matches a key imap-codec does not parse.
fn matches_extra(key: &SearchExtra, message: &Candidate<'_>, selection: &Selection) -> bool {
    let saved_day = message.meta.map(|meta| meta.save_date).filter(|&date| date > 0).map(|date| date.div_euclid(DAY));
    match key {
        SearchExtra::SavedBefore(day) => saved_day.is_some_and(|saved| saved < *day),
        SearchExtra::SavedOn(day) => saved_day == Some(*day),
        SearchExtra::SavedSince(day) => saved_day.is_some_and(|saved| saved >= *day),
        SearchExtra::SaveDateSupported => true,
        SearchExtra::EmailId(id) => message.meta.is_some_and(|meta| meta.email_id == *id),
        // No thread has an identifier (FETCH THREADID is NIL).
        SearchExtra::ThreadId(_) => false,
        SearchExtra::SavedResult => selection.saved_result.binary_search(&message.uid).is_ok(),
    }
}

/// The day count of a search date (midnight UTC).
fn day_of(date: &NaiveDate) -> i64 {
    date.as_ref().and_hms_opt(0, 0, 0).map_or(0, |start| start.and_utc().timestamp().div_euclid(DAY))
}

/// The day of the message's Date header, as written there (RFC 9051: time and timezone are
/// disregarded).
fn sent_day(message: &Candidate<'_>) -> Option<i64> {
    let date = message.content?.date()?;
    Some(days_from_civil(i64::from(date.year), i64::from(date.month), i64::from(date.day)))
}

fn contains(haystack: &str, needle: &AString<'_>) -> bool {
    let needle = casemap::fold(&String::from_utf8_lossy(needle.as_ref()));
    casemap::fold(haystack).contains(&needle)
}

fn addresses_contain(addresses: Option<&mail_parser::Address<'_>>, text: &AString<'_>) -> bool {
    addresses.is_some_and(|addresses| {
        // A group's display name (`Team: a@example.org, b@example.org;`, RFC 5322 §3.4) is
        // part of the field a client searches.
        let groups = addresses.as_group().unwrap_or_default();
        groups.iter().any(|group| group.name.as_deref().is_some_and(|name| contains(name, text)))
            || addresses.iter().any(|address| {
                let name = address.name().unwrap_or("");
                let email = address.address().unwrap_or("");
                contains(&format!("{name} <{email}>"), text)
            })
    })
}

fn body_contains(content: &Message<'_>, text: &AString<'_>) -> bool {
    (0..content.text_body_count()).any(|index| content.body_text(index).is_some_and(|body| contains(&body, text)))
        || (0..content.html_body_count())
            .any(|index| content.body_html(index).is_some_and(|body| contains(&body, text)))
}
