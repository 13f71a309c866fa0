//! NOTIFY (RFC 5465): `NOTIFY NONE`, or `NOTIFY SET [STATUS] (mailboxes events) …`. Travels as
//! a NOOP, which NOTIFY SET implies (§3.1); the event groups go beside it.

use super::{Cursor, Extension};

/// What `NOTIFY SET` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifySet {
    /// STATUS: a STATUS response for each watched mailbox before the tagged OK.
    pub status: bool,
    pub groups: Vec<NotifyGroup>,
}

/// One event group: which mailboxes, which events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifyGroup {
    pub mailboxes: NotifyMailboxes,
    /// Empty for NONE.
    pub events: Vec<NotifyEvent>,
}

/// The mailboxes an event group watches (RFC 5465 §6). Names are in wire form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotifyMailboxes {
    Selected,
    SelectedDelayed,
    Inboxes,
    Personal,
    Subscribed,
    Subtree(Vec<Vec<u8>>),
    Mailboxes(Vec<Vec<u8>>),
}

impl NotifyMailboxes {
    fn is_selected(&self) -> bool {
        matches!(self, NotifyMailboxes::Selected | NotifyMailboxes::SelectedDelayed)
    }
}

/// An event (RFC 5465 §5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotifyEvent {
    /// MessageNew, with the FETCH items to send for a new message in the selected mailbox, as
    /// written (`(UID FLAGS)`).
    MessageNew(Option<Vec<u8>>),
    MessageExpunge,
    FlagChange,
    MailboxName,
    SubscriptionChange,
    MailboxMetadataChange,
    ServerMetadataChange,
    /// An event this server does not send (AnnotationChange, or unknown): NOTIFY answers NO
    /// [BADEVENT].
    Unsupported(String),
}

impl NotifyEvent {
    fn is_message_event(&self) -> bool {
        matches!(self, NotifyEvent::MessageNew(_) | NotifyEvent::MessageExpunge | NotifyEvent::FlagChange)
    }
}

/// `NOTIFY NONE` or `NOTIFY SET …`, as a NOOP with [`Extension::Notify`].
pub(super) fn notify(cursor: &mut Cursor<'_>, tag: &[u8]) -> Result<Option<(Vec<u8>, Extension)>, &'static str> {
    cursor.space().ok_or("Expected SET or NONE")?;
    let verb = cursor.atom().ok_or("Expected SET or NONE")?;
    let set = if verb.eq_ignore_ascii_case(b"NONE") {
        None
    } else if verb.eq_ignore_ascii_case(b"SET") {
        Some(notify_set(cursor)?)
    } else {
        return Err("Expected SET or NONE");
    };
    if !cursor.at_end() {
        return Err("Unexpected text after NOTIFY");
    }
    let mut rewritten = tag.to_vec();
    rewritten.extend_from_slice(b" NOOP\r\n");
    Ok(Some((rewritten, Extension::Notify(set))))
}

fn notify_set(cursor: &mut Cursor<'_>) -> Result<NotifySet, &'static str> {
    let mut set = NotifySet { status: false, groups: Vec::new() };
    cursor.space().ok_or("Expected event groups")?;
    if cursor.peek() != Some(b'(') {
        let word = cursor.atom().ok_or("Expected event groups")?;
        if !word.eq_ignore_ascii_case(b"STATUS") {
            return Err("Expected STATUS or event groups");
        }
        set.status = true;
        cursor.space().ok_or("Expected event groups")?;
    }
    loop {
        set.groups.push(event_group(cursor)?);
        if cursor.at_end() {
            break;
        }
        cursor.space().ok_or("Malformed event groups")?;
    }
    if set.groups.iter().filter(|group| group.mailboxes.is_selected()).count() > 1 {
        return Err("Only one of SELECTED and SELECTED-DELAYED may be given");
    }
    Ok(set)
}

/// `(mailboxes events)`, checked against RFC 5465 §5: MessageNew and MessageExpunge come
/// together, FlagChange only with them, and SELECTED takes message events only.
fn event_group(cursor: &mut Cursor<'_>) -> Result<NotifyGroup, &'static str> {
    cursor.open().ok_or("Expected an event group in parentheses")?;
    let filter = cursor.atom().ok_or("Expected a mailbox filter")?;
    let names = |cursor: &mut Cursor<'_>| -> Result<Vec<Vec<u8>>, &'static str> {
        cursor.space().ok_or("Expected mailbox names")?;
        let ranges = if cursor.peek() == Some(b'(') {
            cursor.list(Cursor::astring).ok_or("Malformed mailbox names")?
        } else {
            vec![cursor.astring().ok_or("Expected a mailbox name")?]
        };
        Ok(ranges.into_iter().map(|range| cursor.value(range)).collect())
    };
    let mailboxes = match filter.to_ascii_uppercase().as_slice() {
        b"SELECTED" => NotifyMailboxes::Selected,
        b"SELECTED-DELAYED" => NotifyMailboxes::SelectedDelayed,
        b"INBOXES" => NotifyMailboxes::Inboxes,
        b"PERSONAL" => NotifyMailboxes::Personal,
        b"SUBSCRIBED" => NotifyMailboxes::Subscribed,
        b"SUBTREE" => NotifyMailboxes::Subtree(names(cursor)?),
        b"MAILBOXES" => NotifyMailboxes::Mailboxes(names(cursor)?),
        _ => return Err("Unknown mailbox filter"),
    };
    cursor.space().ok_or("Expected events")?;
    let mut events = Vec::new();
    if cursor.open().is_some() {
        while cursor.peek() != Some(b')') {
            if !events.is_empty() {
                cursor.space().ok_or("Malformed events")?;
            }
            let name = cursor.atom().ok_or("Malformed events")?;
            events.push(match name.to_ascii_uppercase().as_slice() {
                b"MESSAGENEW" if cursor.rest().starts_with(b" (") => {
                    cursor.space().ok_or("Malformed events")?;
                    let start = cursor.at;
                    cursor.balanced().ok_or("Malformed FETCH items after MessageNew")?;
                    NotifyEvent::MessageNew(Some(cursor.bytes[start..cursor.at].to_vec()))
                }
                b"MESSAGENEW" => NotifyEvent::MessageNew(None),
                b"MESSAGEEXPUNGE" => NotifyEvent::MessageExpunge,
                b"FLAGCHANGE" => NotifyEvent::FlagChange,
                b"MAILBOXNAME" => NotifyEvent::MailboxName,
                b"SUBSCRIPTIONCHANGE" => NotifyEvent::SubscriptionChange,
                b"MAILBOXMETADATACHANGE" => NotifyEvent::MailboxMetadataChange,
                b"SERVERMETADATACHANGE" => NotifyEvent::ServerMetadataChange,
                _ => NotifyEvent::Unsupported(String::from_utf8_lossy(name).into_owned()),
            });
        }
        cursor.at += 1;
        if events.is_empty() {
            return Err("Expected at least one event");
        }
    } else if !cursor.atom().is_some_and(|word| word.eq_ignore_ascii_case(b"NONE")) {
        return Err("Expected events in parentheses or NONE");
    }
    if cursor.peek() != Some(b')') {
        return Err("Expected the end of the event group");
    }
    cursor.at += 1;
    let has = |wanted: fn(&NotifyEvent) -> bool| events.iter().any(wanted);
    let new = has(|event| matches!(event, NotifyEvent::MessageNew(_)));
    let expunge = has(|event| matches!(event, NotifyEvent::MessageExpunge));
    if new != expunge {
        return Err("MessageNew and MessageExpunge go together");
    }
    if has(|event| matches!(event, NotifyEvent::FlagChange)) && !new {
        return Err("FlagChange needs MessageNew and MessageExpunge");
    }
    if mailboxes.is_selected() && !events.iter().all(NotifyEvent::is_message_event) {
        return Err("SELECTED takes message events only");
    }
    Ok(NotifyGroup { mailboxes, events })
}

impl Cursor<'_> {
    /// A parenthesized list, nested lists, bracketed sections and quoted strings included.
    pub(super) fn balanced(&mut self) -> Option<()> {
        let mut depth = 0usize;
        loop {
            match self.peek()? {
                b'(' | b'[' => depth += 1,
                b')' | b']' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        self.at += 1;
                        return Some(());
                    }
                }
                b'"' => {
                    self.astring()?;
                    continue;
                }
                b'\r' | b'\n' => return None,
                _ => {}
            }
            self.at += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extended_syntax::{rewrite, rewritten};

    #[test]
    fn notify_set_lists_its_groups() {
        let (command, extension) = rewritten(
            "n NOTIFY SET STATUS (selected (MessageNew (UID BODY.PEEK[HEADER.FIELDS (FROM)]) MessageExpunge FlagChange)) (subtree \"Lists\" (MessageNew MessageExpunge)) (mailboxes (INBOX Sent) (MailboxName SubscriptionChange)) (personal NONE)\r\n",
        );
        assert_eq!(command, "n NOOP\r\n");
        let groups = vec![
            NotifyGroup {
                mailboxes: NotifyMailboxes::Selected,
                events: vec![
                    NotifyEvent::MessageNew(Some(b"(UID BODY.PEEK[HEADER.FIELDS (FROM)])".to_vec())),
                    NotifyEvent::MessageExpunge,
                    NotifyEvent::FlagChange,
                ],
            },
            NotifyGroup {
                mailboxes: NotifyMailboxes::Subtree(vec![b"Lists".to_vec()]),
                events: vec![NotifyEvent::MessageNew(None), NotifyEvent::MessageExpunge],
            },
            NotifyGroup {
                mailboxes: NotifyMailboxes::Mailboxes(vec![b"INBOX".to_vec(), b"Sent".to_vec()]),
                events: vec![NotifyEvent::MailboxName, NotifyEvent::SubscriptionChange],
            },
            NotifyGroup { mailboxes: NotifyMailboxes::Personal, events: vec![] },
        ];
        assert_eq!(extension, Extension::Notify(Some(NotifySet { status: true, groups })));
        assert_eq!(rewritten("m NOTIFY NONE\r\n"), ("m NOOP\r\n".to_string(), Extension::Notify(None)));
    }

    #[test]
    fn notify_set_refuses_what_rfc_5465_forbids() {
        for (command, reason) in [
            ("a NOTIFY SET (selected (MessageNew))\r\n", "MessageNew and MessageExpunge go together"),
            ("a NOTIFY SET (personal (FlagChange))\r\n", "FlagChange needs MessageNew and MessageExpunge"),
            ("a NOTIFY SET (selected (MailboxName))\r\n", "SELECTED takes message events only"),
            (
                "a NOTIFY SET (selected NONE) (selected-delayed NONE)\r\n",
                "Only one of SELECTED and SELECTED-DELAYED may be given",
            ),
            ("a NOTIFY SET (everything (MailboxName))\r\n", "Unknown mailbox filter"),
            ("a NOTIFY SET (personal ())\r\n", "Expected at least one event"),
            ("a NOTIFY MAYBE\r\n", "Expected SET or NONE"),
        ] {
            assert_eq!(rewrite(command.as_bytes()), Err(reason), "{command}");
        }
        let (_, extension) = rewritten("a NOTIFY SET (personal (AnnotationChange MessageNew MessageExpunge))\r\n");
        let Extension::Notify(Some(set)) = extension else { panic!() };
        assert_eq!(set.groups[0].events[0], NotifyEvent::Unsupported("AnnotationChange".into()));
    }
}
