//! Mailbox commands of the authenticated state (RFC 9051 §6.3): CREATE, DELETE, RENAME,
//! SUBSCRIBE, UNSUBSCRIBE, LIST, LSUB, NAMESPACE, STATUS; and ENABLE (RFC 5161).
//!
//! Every answer comes from the mailstore; the session keeps no mailbox list of its own, so a
//! folder made through another frontend shows up on the next LIST.

use std::collections::{BTreeMap, BTreeSet};

use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::extensions::enable::CapabilityEnable;
use imap_codec::imap_types::extensions::utf8::Utf8Kind;
use imap_codec::imap_types::mailbox::{ListMailbox, Mailbox};
use imap_codec::imap_types::status::StatusDataItemName;
use kubemail_proto::mailstore::{
    CreateMailboxRequest, DeleteMailboxRequest, ListMailboxesRequest, MailboxInfo, RenameMailboxRequest,
    SetSubscribedRequest,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::Code;

use super::Session;
use crate::extended_syntax::ListOptions;
use crate::mailbox_name::{self, SEPARATOR};
use crate::response::{self, Status};

const INBOX: &str = "INBOX";

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn create(&mut self, tag: &Tag<'_>, mailbox: &Mailbox<'_>) {
        let Some(name) = self.name(tag, mailbox) else { return };
        // A trailing separator only says the client means to make children (RFC 9051 §6.3.4).
        let name = name.trim_end_matches(SEPARATOR).to_string();
        if name.eq_ignore_ascii_case(INBOX) {
            self.respond(Some(tag), Status::No, Some("ALREADYEXISTS"), "INBOX always exists");
            return;
        }
        let request = CreateMailboxRequest { account_id: self.account_id(), name, special_use: String::new() };
        match self.services.mailstore.clone().create_mailbox(request).await {
            Ok(_) => self.ok(tag, "CREATE completed"),
            Err(status) => self.mailstore_refused(tag, &status),
        }
    }

    pub(super) async fn delete(&mut self, tag: &Tag<'_>, mailbox: &Mailbox<'_>) {
        let Some(name) = self.name(tag, mailbox) else { return };
        let request = DeleteMailboxRequest { account_id: self.account_id(), name };
        match self.services.mailstore.clone().delete_mailbox(request).await {
            Ok(_) => self.ok(tag, "DELETE completed"),
            Err(status) => self.mailstore_refused(tag, &status),
        }
    }

    pub(super) async fn rename(&mut self, tag: &Tag<'_>, from: &Mailbox<'_>, to: &Mailbox<'_>) {
        let (Some(from), Some(to)) = (self.name(tag, from), self.name(tag, to)) else { return };
        let request = RenameMailboxRequest { account_id: self.account_id(), from, to };
        match self.services.mailstore.clone().rename_mailbox(request).await {
            Ok(_) => self.ok(tag, "RENAME completed"),
            Err(status) => self.mailstore_refused(tag, &status),
        }
    }

    pub(super) async fn subscribe(&mut self, tag: &Tag<'_>, mailbox: &Mailbox<'_>, subscribed: bool) {
        let Some(name) = self.name(tag, mailbox) else { return };
        let request = SetSubscribedRequest { account_id: self.account_id(), name, subscribed };
        match self.services.mailstore.clone().set_subscribed(request).await {
            Ok(_) => self.ok(tag, if subscribed { "SUBSCRIBE completed" } else { "UNSUBSCRIBE completed" }),
            Err(status) => self.mailstore_refused(tag, &status),
        }
    }

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
        let Some(mailboxes) = self.mailboxes(tag).await else { return };
        let patterns: Vec<Pattern> =
            patterns.iter().map(|pattern| Pattern::new(&format!("{reference}{pattern}"))).collect();
        let existing: BTreeMap<&str, &MailboxInfo> = mailboxes.iter().map(|m| (m.name.as_str(), m)).collect();
        // Parents that are not mailboxes themselves still show up, as \Noselect.
        let mut names: BTreeSet<&str> = existing.keys().copied().collect();
        for name in existing.keys() {
            names.extend(name.match_indices(SEPARATOR).map(|(at, _)| &name[..at]));
        }
        let subscribed_only = lsub || options.subscribed_only;
        let selected = |name: &str| match existing.get(name) {
            Some(mailbox) => {
                (!subscribed_only || mailbox.subscribed)
                    && (!options.special_use_only || special_use(&mailbox.special_use).is_some())
            }
            // A parent that is no mailbox: listed as \Noselect, unless a selection option asks
            // for a property it cannot have.
            None => !subscribed_only && !options.special_use_only,
        };
        let mut lines = String::new();
        for name in names.into_iter().filter(|name| patterns.iter().any(|pattern| pattern.matches(name))) {
            // RECURSIVEMATCH: a parent that is not selected itself is listed when one of its
            // children is, and says so (RFC 5258 §3.5).
            let child_selected =
                options.recursive_match && existing.keys().any(|other| is_child(other, name) && selected(other));
            if !selected(name) && !child_selected {
                continue;
            }
            let mailbox = existing.get(name);
            let has_children = existing.keys().any(|other| is_child(other, name));
            let mut attributes = Vec::new();
            match mailbox {
                None => attributes.push("\\Noselect"),
                Some(mailbox) if !lsub => {
                    if let Some(special) = special_use(&mailbox.special_use) {
                        attributes.push(special);
                    }
                }
                Some(_) => {}
            }
            attributes.push(if has_children { "\\HasChildren" } else { "\\HasNoChildren" });
            if options.return_subscribed && mailbox.is_some_and(|m| m.subscribed) {
                attributes.push("\\Subscribed");
            }
            let child_info = match child_selected {
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
            if let Some(mailbox) = mailbox.filter(|_| !options.status.is_empty()) {
                let items = self.status_items(mailbox, &options.status);
                lines.push_str(&format!("* STATUS {} ({items})\r\n", self.quoted_name(name)));
            }
        }
        self.io.write(lines.as_bytes());
        self.ok(tag, &format!("{command} completed"));
    }

    pub(super) fn namespace(&mut self, tag: &Tag<'_>) {
        self.io.write(format!("* NAMESPACE ((\"\" \"{SEPARATOR}\")) NIL NIL\r\n").as_bytes());
        self.ok(tag, "NAMESPACE completed");
    }

    pub(super) async fn status(&mut self, tag: &Tag<'_>, mailbox: &Mailbox<'_>, items: &[StatusDataItemName]) {
        let Some(name) = self.name(tag, mailbox) else { return };
        let Some(mailboxes) = self.mailboxes(tag).await else { return };
        let Some(info) = mailboxes.iter().find(|m| m.name == name) else {
            self.respond(Some(tag), Status::No, Some("NONEXISTENT"), "No such mailbox");
            return;
        };
        let line = format!("* STATUS {} ({})\r\n", self.quoted_name(&info.name), self.status_items(info, items));
        self.io.write(line.as_bytes());
        self.ok(tag, "STATUS completed");
    }

    /// The values of the STATUS `items` of `info`, e.g. `MESSAGES 3 UNSEEN 1`.
    fn status_items(&mut self, info: &MailboxInfo, items: &[StatusDataItemName]) -> String {
        let mut condstore = false;
        let values: Vec<String> = items
            .iter()
            .map(|item| match item {
                StatusDataItemName::Messages => format!("MESSAGES {}", info.messages),
                StatusDataItemName::UidNext => format!("UIDNEXT {}", info.uidnext),
                StatusDataItemName::UidValidity => format!("UIDVALIDITY {}", info.uidvalidity),
                StatusDataItemName::Unseen => format!("UNSEEN {}", info.unseen),
                StatusDataItemName::Deleted => format!("DELETED {}", info.deleted),
                StatusDataItemName::Size => format!("SIZE {}", info.size),
                StatusDataItemName::HighestModSeq => {
                    condstore = true;
                    format!("HIGHESTMODSEQ {}", info.highest_modseq)
                }
                // No session of ours ever sees a message as \Recent (RFC 9051 drops it).
                StatusDataItemName::Recent => "RECENT 0".to_string(),
                // Deleted messages' octets (RFC 9208 §4.2.1).
                StatusDataItemName::DeletedStorage => "DELETED-STORAGE 0".to_string(),
            })
            .collect();
        // RFC 7162 §3.1: STATUS HIGHESTMODSEQ is one of the commands that turn CONDSTORE on.
        self.condstore |= condstore;
        values.join(" ")
    }

    pub(super) fn enable(&mut self, tag: &Tag<'_>, capabilities: &[CapabilityEnable<'_>]) {
        let mut enabled = Vec::new();
        for capability in capabilities {
            match capability {
                CapabilityEnable::Utf8(Utf8Kind::Accept) if !self.utf8 => {
                    self.utf8 = true;
                    enabled.push("UTF8=ACCEPT");
                }
                CapabilityEnable::Other(_)
                    if capability.to_string().eq_ignore_ascii_case("IMAP4rev2") && !self.rev2 =>
                {
                    // IMAP4rev2 clients get UTF-8 mailbox names too (RFC 9051 §6.3.1).
                    self.rev2 = true;
                    self.utf8 = true;
                    enabled.push("IMAP4rev2");
                }
                CapabilityEnable::CondStore if !self.condstore => {
                    self.condstore = true;
                    enabled.push("CONDSTORE");
                }
                // QRESYNC implies CONDSTORE (RFC 7162 §3.2.3).
                CapabilityEnable::Other(_)
                    if capability.to_string().eq_ignore_ascii_case("QRESYNC") && !self.qresync =>
                {
                    self.qresync = true;
                    self.condstore = true;
                    enabled.push("QRESYNC");
                }
                _ => {}
            }
        }
        self.io
            .write(format!("* ENABLED{}\r\n", enabled.iter().map(|c| format!(" {c}")).collect::<String>()).as_bytes());
        self.ok(tag, "ENABLE completed");
    }

    /// The account's mailboxes, or `None` after answering why they could not be listed.
    async fn mailboxes(&mut self, tag: &Tag<'_>) -> Option<Vec<MailboxInfo>> {
        let request = ListMailboxesRequest { account_id: self.account_id() };
        match self.services.mailstore.clone().list_mailboxes(request).await {
            Ok(response) => Some(response.into_inner().mailboxes),
            Err(status) => {
                self.mailstore_refused(tag, &status);
                None
            }
        }
    }

    /// The UTF-8 name of `mailbox`, or `None` after answering that it is not one.
    pub(super) fn name(&mut self, tag: &Tag<'_>, mailbox: &Mailbox<'_>) -> Option<String> {
        match mailbox {
            Mailbox::Inbox => Some(INBOX.to_string()),
            Mailbox::Other(other) => self.decode_name(tag, other.inner().as_ref()),
        }
    }

    fn pattern(&mut self, tag: &Tag<'_>, pattern: &ListMailbox<'_>) -> Option<String> {
        let wire: &[u8] = match pattern {
            ListMailbox::Token(token) => token.as_ref(),
            ListMailbox::String(string) => string.as_ref(),
        };
        self.decode_name(tag, wire)
    }

    fn decode_name(&mut self, tag: &Tag<'_>, wire: &[u8]) -> Option<String> {
        match mailbox_name::from_wire(wire, self.utf8) {
            Ok(name) => Some(name),
            Err(reason) => {
                self.respond(Some(tag), Status::Bad, None, reason);
                None
            }
        }
    }

    /// `name` as the client reads mailbox names, quoted (or a literal).
    pub(super) fn quoted_name(&self, name: &str) -> String {
        response::string(&mailbox_name::to_wire(name, self.utf8), self.utf8)
    }

    /// Answers a refused mailstore call with the RFC 5530 code that says why.
    pub(super) fn mailstore_refused(&mut self, tag: &Tag<'_>, status: &tonic::Status) {
        let code = match status.code() {
            Code::AlreadyExists => "ALREADYEXISTS",
            Code::NotFound => "NONEXISTENT",
            Code::InvalidArgument | Code::FailedPrecondition => "CANNOT",
            Code::ResourceExhausted => "OVERQUOTA",
            Code::PermissionDenied => "NOPERM",
            _ => {
                tracing::warn!(client = %self.client_ip, %status, "mailstore call failed");
                self.respond(Some(tag), Status::No, Some("UNAVAILABLE"), "Try again later");
                return;
            }
        };
        let text = status.message().lines().next().unwrap_or("Refused").to_string();
        self.respond(Some(tag), Status::No, Some(code), &text);
    }
}

/// Whether `name` is a descendant of `parent`.
fn is_child(name: &str, parent: &str) -> bool {
    name.len() > parent.len() && name.starts_with(parent) && name[parent.len()..].starts_with(SEPARATOR)
}

/// The RFC 6154 attribute of a special-use name stored without its backslash.
fn special_use(stored: &str) -> Option<&'static str> {
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
