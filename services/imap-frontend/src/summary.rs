//! What SORT and THREAD (RFC 5256, RFC 5957) read of a message: its sent date, the first
//! addresses of From, To and Cc, its base subject, and the Message-IDs that link it to its
//! thread ([`Summary`]); and the summaries kept between commands and sessions
//! ([`SummaryCache`]).
//!
//! A message never changes once stored, so its summary is kept by mailbox, UIDVALIDITY and
//! UID for as long as there is room: a webmail client that sorts the same mailbox page after
//! page reads each header from the mailstore once.

use mail_parser::{Address, Message};

use crate::casemap;
use crate::uid_cache::UidCache;

/// The summaries kept, over all mailboxes: some 200 octets each.
pub const CACHE_MESSAGES: usize = 200_000;

/// What SORT and THREAD compare and link. Strings are kept folded with i;unicode-casemap
/// ([`casemap`]), which RFC 5256 compares with, so sorting does not fold them again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// INTERNALDATE, seconds since the epoch (SORT ARRIVAL).
    pub arrival: i64,
    /// The Date header in UTC, or INTERNALDATE when it is missing or unreadable (RFC 5256
    /// §2.2).
    pub sent: i64,
    /// RFC822.SIZE.
    pub size: u64,
    /// The local part (addr-mailbox) of the first address of From, To and Cc.
    pub from: String,
    pub to: String,
    pub cc: String,
    /// The display name of the first From and To address, or its address when it has none
    /// (RFC 5957 §3).
    pub display_from: String,
    pub display_to: String,
    /// The base subject (RFC 5256 §2.1).
    pub subject: String,
    /// Whether the subject said the message is a reply or a forward ("Re:", "Fwd:", "(fwd)").
    pub reply_or_forward: bool,
    /// The first valid Message-ID, without angle brackets (compared case-sensitively).
    pub message_id: Option<String>,
    /// The message's ancestors, oldest first: the References, or else the first
    /// In-Reply-To (RFC 5256 §3, REFERENCES step 1).
    pub references: Vec<String>,
}

impl Summary {
    /// The summary of `message` (its header is enough), stored with `arrival` and `size`.
    pub fn new(message: &Message<'_>, arrival: i64, size: u64) -> Summary {
        let sent = message.date().filter(|date| date.is_valid()).map_or(arrival, |date| date.to_timestamp());
        let (subject, reply_or_forward) = base_subject(message.subject().unwrap_or(""));
        let mut references: Vec<String> = fields(message, "References").flat_map(message_ids).collect();
        if references.is_empty() {
            references.extend(fields(message, "In-Reply-To").flat_map(message_ids).take(1));
        }
        Summary {
            arrival,
            sent,
            size,
            from: local_part(message.from()),
            to: local_part(message.to()),
            cc: local_part(message.cc()),
            display_from: display_name(message.from()),
            display_to: display_name(message.to()),
            subject: casemap::fold(&subject),
            reply_or_forward,
            message_id: fields(message, "Message-ID").flat_map(message_ids).next(),
            references,
        }
    }
}

/// The values of every field `name` in the header, raw.
fn fields<'m>(message: &'m Message<'_>, name: &'static str) -> impl Iterator<Item = &'m str> {
    message.headers_raw().filter(move |(field, _)| field.eq_ignore_ascii_case(name)).map(|(_, value)| value)
}

/// The addr-mailbox of the first address, folded; empty when there is none.
fn local_part(addresses: Option<&Address<'_>>) -> String {
    let address = addresses.and_then(Address::first).and_then(|first| first.address()).unwrap_or("");
    let local = address.rsplit_once('@').map_or(address, |(local, _)| local);
    casemap::fold(local)
}

/// The display name of the first address, or its address without one (RFC 5957 §3), folded.
fn display_name(addresses: Option<&Address<'_>>) -> String {
    let Some(first) = addresses.and_then(Address::first) else { return String::new() };
    match first.name().map(str::trim).filter(|name| !name.is_empty()) {
        Some(name) => casemap::fold(name),
        None => casemap::fold(first.address().unwrap_or("")),
    }
}

/// The valid message IDs (`<left@right>`, RFC 5322 §3.6.4) in a header field, without their
/// angle brackets; anything else in the field is skipped, as RFC 5256 asks.
fn message_ids(field: &str) -> impl Iterator<Item = String> + '_ {
    field.split('<').skip(1).filter_map(|rest| {
        let id = rest.split_once('>')?.0;
        let (left, right) = id.split_once('@')?;
        let valid = !left.is_empty()
            && !right.is_empty()
            && !right.contains('@')
            && id.bytes().all(|octet| octet.is_ascii_graphic() && octet != b'<');
        valid.then(|| id.to_string())
    })
}

/// The base subject of `subject` (RFC 5256 §2.1), and whether taking it off removed a reply
/// or forward marker. `subject` is already decoded from RFC 2047.
pub fn base_subject(subject: &str) -> (String, bool) {
    // Step 1: whitespace runs, folds included, become one space.
    let mut text = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut reply_or_forward = false;
    loop {
        // Step 2: trailing "(fwd)" and whitespace.
        loop {
            let trimmed = text.trim_end();
            if let Some(rest) = strip_suffix_ignore_case(trimmed, "(fwd)") {
                reply_or_forward = true;
                text = rest.to_string();
            } else if trimmed.len() != text.len() {
                text = trimmed.to_string();
            } else {
                break;
            }
        }
        // Steps 3 to 5: leading "Re:", "Fwd:" (with blobs before and inside them) and blobs.
        loop {
            let before = text.len();
            let (rest, was_reply) = strip_leader(&text);
            reply_or_forward |= was_reply;
            let mut rest = rest.to_string();
            if let Some(after_blob) = blob(&rest).map(str::trim_start)
                && !after_blob.is_empty()
            {
                rest = after_blob.to_string();
            }
            text = rest;
            if text.len() == before {
                break;
            }
        }
        // Step 6: "[fwd: …]" around the whole subject.
        let wrapped = strip_prefix_ignore_case(&text, "[fwd:").and_then(|rest| rest.strip_suffix(']'));
        match wrapped {
            Some(inner) => {
                reply_or_forward = true;
                text = inner.to_string();
            }
            None => return (text, reply_or_forward),
        }
    }
}

/// `text` without one subj-leader (`*subj-blob subj-refwd` or a space), and whether that
/// leader was a reply or forward marker; `text` itself when it starts with neither.
fn strip_leader(text: &str) -> (&str, bool) {
    if let Some(rest) = text.strip_prefix(' ') {
        return (rest, false);
    }
    let mut rest = text;
    while let Some(after) = blob(rest) {
        rest = after;
    }
    match refwd(rest) {
        Some(after) => (after, true),
        None => (text, false),
    }
}

/// What follows a subj-blob (`[…]` and spaces) at the start of `text`.
fn blob(text: &str) -> Option<&str> {
    let inner = text.strip_prefix('[')?;
    let end = inner.find([']', '['])?;
    inner[end..].strip_prefix(']').map(str::trim_start)
}

/// What follows a subj-refwd (`re`, `fw` or `fwd`, spaces, an optional blob, `:`) at the
/// start of `text`.
fn refwd(text: &str) -> Option<&str> {
    let rest = strip_prefix_ignore_case(text, "re")
        .or_else(|| strip_prefix_ignore_case(text, "fwd"))
        .or_else(|| strip_prefix_ignore_case(text, "fw"))?
        .trim_start();
    let rest = blob(rest).unwrap_or(rest);
    rest.strip_prefix(':')
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

fn strip_suffix_ignore_case<'a>(text: &'a str, suffix: &str) -> Option<&'a str> {
    let start = text.len().checked_sub(suffix.len())?;
    let tail = text.get(start..)?;
    tail.eq_ignore_ascii_case(suffix).then(|| &text[..start])
}

/// The summaries kept between commands and sessions.
pub type SummaryCache = UidCache<Summary>;

#[cfg(test)]
mod tests {
    use super::*;

    fn base(subject: &str) -> (String, bool) {
        base_subject(subject)
    }

    #[test]
    fn base_subject_takes_off_reply_and_forward_markers() {
        assert_eq!(base("Re: lunch"), ("lunch".to_string(), true));
        assert_eq!(base("RE: Re: re:lunch"), ("lunch".to_string(), true));
        assert_eq!(base("Fwd: lunch"), ("lunch".to_string(), true));
        assert_eq!(base("FW: lunch (fwd)"), ("lunch".to_string(), true));
        assert_eq!(base("Re[2]: lunch"), ("lunch".to_string(), true));
        assert_eq!(base("[list] Re: lunch"), ("lunch".to_string(), true));
        assert_eq!(base("[Fwd: Re: lunch]"), ("lunch".to_string(), true));
        assert_eq!(base("  lunch \t  plans  "), ("lunch plans".to_string(), false));
        assert_eq!(base("lunch"), ("lunch".to_string(), false));
    }

    #[test]
    fn base_subject_keeps_a_blob_that_is_all_there_is() {
        assert_eq!(base("[list]"), ("[list]".to_string(), false));
        assert_eq!(base("[list] lunch"), ("lunch".to_string(), false));
        assert_eq!(base("Re: [list]"), ("[list]".to_string(), true));
    }

    #[test]
    fn base_subject_keeps_words_that_only_start_like_markers() {
        assert_eq!(base("Reply needed"), ("Reply needed".to_string(), false));
        assert_eq!(base("Fwdx: lunch"), ("Fwdx: lunch".to_string(), false));
        assert_eq!(base("Re lunch"), ("Re lunch".to_string(), false));
    }

    #[test]
    fn message_ids_skip_what_is_not_one() {
        let ids: Vec<String> = message_ids("<a@x> junk <no-at> <b@y>\r\n <c@z>").collect();
        assert_eq!(ids, ["a@x", "b@y", "c@z"]);
    }
}
