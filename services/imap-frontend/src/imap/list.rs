//! LIST (RFC 9051 §6.3.9) and LSUB (RFC 3501 §6.3.9), with LIST-EXTENDED's selection and
//! return options (RFC 5258), LIST-STATUS (RFC 5819) and the special-use attributes
//! (RFC 6154).
//!
//! Every answer comes from the mailstore; the session keeps no mailbox list of its own, so a
//! folder made through another frontend shows up on the next LIST.

use std::collections::{BTreeMap, BTreeSet};

use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use kubemail_proto::mailstore::{ListMailboxesRequest, ListMailboxesResponse, MailboxInfo};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{INBOX, Session};
use crate::extended_syntax::ListOptions;
use crate::mailbox_name::SEPARATOR;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// LIST, with the LIST-EXTENDED `options`, or LSUB when `lsub`.
    pub(super) async fn list(
        &mut self,
        tag: &Tag<'_>,
        reference: &Mailbox<'_>,
        pattern: &ListMailbox<'_>,
        lsub: bool,
        options: &ListOptions,
    ) {
        let command = if lsub { "LSUB" } else { "LIST" };
        let (Some(reference), Some(first)) = (self.name(tag, reference), self.pattern(tag, pattern)) else { return };
        let mut patterns = vec![first];
        for wire in &options.more_patterns {
            let Some(pattern) = self.decode_name(tag, wire) else { return };
            patterns.push(pattern);
        }
        if patterns == [""] && !lsub {
            // The hierarchy separator and the root of the reference (RFC 9051 §6.3.9).
            let root = reference.split(SEPARATOR).next().unwrap_or_default();
            let line = format!("* LIST (\\Noselect) \"{SEPARATOR}\" {}\r\n", self.quoted_name(root));
            self.io.write(line.as_bytes());
            self.ok(tag, "LIST completed");
            return;
        }
        let Some(listing) = self.mailboxes(tag).await else { return };
        let patterns: Vec<Pattern> =
            patterns.iter().map(|pattern| Pattern::new(&format!("{reference}{pattern}"))).collect();
        let matched = |name: &str| patterns.iter().any(|pattern| pattern.matches(name));
        let existing: BTreeMap<&str, &MailboxInfo> = listing.mailboxes.iter().map(|m| (m.name.as_str(), m)).collect();
        let subscribed: BTreeSet<&str> = existing
            .values()
            .filter(|mailbox| mailbox.subscribed)
            .map(|mailbox| mailbox.name.as_str())
            .chain(listing.subscribed_without_mailbox.iter().map(String::as_str))
            .collect();
        let subscribed_only = lsub || options.subscribed_only;
        // Subscribed names are listed whether a mailbox has them or not (RFC 9051 §6.3.7), and
        // parents that are not mailboxes themselves show up too.
        let mut names: BTreeSet<&str> = existing.keys().copied().collect();
        if subscribed_only {
            names.extend(subscribed.iter().copied());
        }
        for name in names.clone() {
            names.extend(name.match_indices(SEPARATOR).map(|(at, _)| &name[..at]));
        }
        let selected = |name: &str| match existing.get(name) {
            Some(mailbox) => {
                (!subscribed_only || subscribed.contains(name))
                    && (!options.special_use_only || special_use(&mailbox.special_use).is_some())
            }
            None if subscribed_only => subscribed.contains(name) && !options.special_use_only,
            // A parent that is no mailbox: listed as \Noselect, unless a selection option asks
            // for a property it cannot have.
            None => !options.special_use_only,
        };
        let extended = options.subscribed_only || options.special_use_only || options.recursive_match;
        let mut lines = String::new();
        for name in names.iter().copied().filter(|name| matched(name)) {
            // A descendant that is selected but that the pattern does not reach (`%`): with
            // RECURSIVEMATCH its parent is listed with CHILDINFO (RFC 5258 §3.5), and LSUB
            // lists its parent as \Noselect (RFC 3501 §6.3.9).
            let selected_below = (options.recursive_match || lsub)
                && names.iter().any(|other| is_child(other, name) && selected(other) && !matched(other));
            let child_info = options.recursive_match && selected_below;
            let listed = selected(name) || child_info || (lsub && selected_below);
            if !listed {
                continue;
            }
            let mailbox = existing.get(name);
            let mut attributes = Vec::new();
            match mailbox {
                // A name no mailbox has: for LIST-EXTENDED, \NonExistent (RFC 5258 §3.4).
                None if extended => attributes.push("\\NonExistent"),
                None => attributes.push("\\Noselect"),
                // An unsubscribed parent LSUB lists for a subscribed child.
                Some(_) if lsub && !selected(name) => attributes.push("\\Noselect"),
                Some(mailbox) if !lsub => {
                    if let Some(special) = special_use(&mailbox.special_use) {
                        attributes.push(special);
                    }
                }
                Some(_) => {}
            }
            if mailbox.is_some() || !extended {
                let has_children = existing.keys().any(|other| is_child(other, name));
                attributes.push(if has_children { "\\HasChildren" } else { "\\HasNoChildren" });
            }
            if options.return_subscribed && subscribed.contains(name) {
                attributes.push("\\Subscribed");
            }
            let child_info = match child_info {
                true if options.subscribed_only => " (\"CHILDINFO\" (\"SUBSCRIBED\"))",
                true => " (\"CHILDINFO\" (\"SPECIAL-USE\"))",
                false => "",
            };
            lines.push_str(&format!(
                "* {command} ({}) \"{SEPARATOR}\" {}{child_info}\r\n",
                attributes.join(" "),
                self.quoted_name(name)
            ));
            // LIST-STATUS (RFC 5819): the STATUS of each selectable mailbox listed.
            if let Some(mailbox) = mailbox.filter(|_| !options.status.is_empty() || options.status_mailbox_id) {
                let items = self.status_items(mailbox, &options.status, options.status_mailbox_id);
                lines.push_str(&format!("* STATUS {} ({items})\r\n", self.quoted_name(name)));
            }
        }
        self.io.write(lines.as_bytes());
        self.ok(tag, &format!("{command} completed"));
    }

    /// The account's mailboxes and subscriptions, or `None` after answering why they could
    /// not be listed.
    pub(super) async fn mailboxes(&mut self, tag: &Tag<'_>) -> Option<ListMailboxesResponse> {
        match self.list_mailboxes().await {
            Ok(listing) => Some(listing),
            Err(status) => {
                self.mailstore_refused(tag, &status);
                None
            }
        }
    }

    /// The account's mailboxes and subscriptions, as the mailstore answers.
    pub(super) async fn list_mailboxes(&mut self) -> Result<ListMailboxesResponse, tonic::Status> {
        let request = ListMailboxesRequest { account_id: self.account_id() };
        Ok(self.services.mailstore.clone().list_mailboxes(request).await?.into_inner())
    }

    fn pattern(&mut self, tag: &Tag<'_>, pattern: &ListMailbox<'_>) -> Option<String> {
        let wire: &[u8] = match pattern {
            ListMailbox::Token(token) => token.as_ref(),
            ListMailbox::String(string) => string.as_ref(),
        };
        self.decode_name(tag, wire)
    }
}

/// Whether `name` is a descendant of `parent`.
pub(super) fn is_child(name: &str, parent: &str) -> bool {
    name.len() > parent.len() && name.starts_with(parent) && name[parent.len()..].starts_with(SEPARATOR)
}

/// The RFC 6154 attribute of a special-use name stored without its backslash.
pub(super) fn special_use(stored: &str) -> Option<&'static str> {
    Some(match stored {
        "All" => "\\All",
        "Archive" => "\\Archive",
        "Drafts" => "\\Drafts",
        "Flagged" => "\\Flagged",
        "Junk" => "\\Junk",
        "Sent" => "\\Sent",
        "Trash" => "\\Trash",
        _ => return None,
    })
}

/// A LIST pattern: `*` matches anything, `%` anything but the separator (RFC 9051 §6.3.9).
/// INBOX matches in any case, as it is named in any case.
struct Pattern {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    Any,
    AnyInLevel,
}

impl Pattern {
    fn new(pattern: &str) -> Pattern {
        let mut parts = Vec::new();
        let mut text = String::new();
        for character in pattern.chars() {
            let wildcard = match character {
                '*' => Part::Any,
                '%' => Part::AnyInLevel,
                other => {
                    text.push(other);
                    continue;
                }
            };
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(wildcard);
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Pattern { parts }
    }

    fn matches(&self, name: &str) -> bool {
        let inbox_spelled = |name: &str| match name.get(..INBOX.len()) {
            Some(head) if head.eq_ignore_ascii_case(INBOX) && !name[INBOX.len()..].starts_with(|c| c != SEPARATOR) => {
                format!("{INBOX}{}", &name[INBOX.len()..])
            }
            _ => name.to_string(),
        };
        // The pattern's INBOX is matched whatever case the client used.
        let pattern_parts: Vec<Part> = self
            .parts
            .iter()
            .enumerate()
            .map(|(index, part)| match part {
                Part::Text(text) if index == 0 => Part::Text(inbox_spelled(text)),
                other => other.clone(),
            })
            .collect();
        matches(&pattern_parts, name)
    }
}

fn matches(parts: &[Part], name: &str) -> bool {
    match parts.split_first() {
        None => name.is_empty(),
        Some((Part::Text(text), rest)) => name.strip_prefix(text.as_str()).is_some_and(|tail| matches(rest, tail)),
        Some((wildcard, rest)) => {
            let mut end = 0;
            loop {
                if matches(rest, &name[end..]) {
                    return true;
                }
                let Some(next) = name[end..].chars().next() else { return false };
                if *wildcard == Part::AnyInLevel && next == SEPARATOR {
                    return false;
                }
                end += next.len_utf8();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Pattern;

    #[test]
    fn list_patterns_match_levels_and_inbox_in_any_case() {
        let names = ["INBOX", "Drafts", "Lists", "Lists/rust", "Lists/rust/old", "Sent"];
        let matching = |pattern: &str| -> Vec<&str> {
            let pattern = Pattern::new(pattern);
            names.iter().copied().filter(|name| pattern.matches(name)).collect()
        };
        assert_eq!(matching("*"), names);
        assert_eq!(matching("%"), ["INBOX", "Drafts", "Lists", "Sent"]);
        assert_eq!(matching("Lists/%"), ["Lists/rust"]);
        assert_eq!(matching("Lists*"), ["Lists", "Lists/rust", "Lists/rust/old"]);
        assert_eq!(matching("%/%/old"), ["Lists/rust/old"]);
        assert_eq!(matching("inbox"), ["INBOX"]);
        assert_eq!(matching("D*s"), ["Drafts"]);
        assert_eq!(matching("nothing"), Vec::<&str>::new());
    }
}
