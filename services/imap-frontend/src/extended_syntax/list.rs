//! LIST-EXTENDED (RFC 5258) with the SPECIAL-USE options of RFC 6154 and the STATUS return
//! option of RFC 5819.

use imap_codec::imap_types::status::StatusDataItemName;

use super::{Cursor, Extension};

/// LIST-EXTENDED selection and return options (RFC 5258 §3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Selection SUBSCRIBED: subscribed mailboxes only (implies returning \Subscribed).
    pub subscribed_only: bool,
    /// Selection SPECIAL-USE: mailboxes with a special use only (RFC 6154 §5.1).
    pub special_use_only: bool,
    /// Selection RECURSIVEMATCH: a parent whose children match the selection is listed with
    /// CHILDINFO.
    pub recursive_match: bool,
    /// Return SUBSCRIBED: \Subscribed on the subscribed mailboxes.
    pub return_subscribed: bool,
    /// Return STATUS (RFC 5819): a STATUS response after each selectable mailbox.
    pub status: Vec<StatusDataItemName>,
    /// MAILBOXID among the STATUS items (RFC 8474 §4.2).
    pub status_mailbox_id: bool,
    /// Patterns after the first, in wire form (LIST reference (pattern pattern …)).
    pub more_patterns: Vec<Vec<u8>>,
}

/// `LIST [(selection)] reference pattern-or-patterns [RETURN (options)]`.
pub(super) fn list(cursor: &mut Cursor<'_>, tag: &[u8]) -> Result<Option<(Vec<u8>, Extension)>, &'static str> {
    cursor.space().ok_or("Expected a reference name")?;
    let mut options = ListOptions::default();
    if cursor.peek() == Some(b'(') {
        for option in cursor.list(Cursor::atom).ok_or("Malformed LIST selection options")? {
            match option.to_ascii_uppercase().as_slice() {
                b"SUBSCRIBED" => {
                    options.subscribed_only = true;
                    options.return_subscribed = true;
                }
                b"SPECIAL-USE" => options.special_use_only = true,
                b"RECURSIVEMATCH" => options.recursive_match = true,
                // Only local mailboxes exist here (RFC 5258 §3.1).
                b"REMOTE" => {}
                _ => return Err("Unknown LIST selection option"),
            }
        }
        cursor.space().ok_or("Expected a reference name")?;
    }
    if options.recursive_match && !options.subscribed_only && !options.special_use_only {
        // RFC 5258 §3.1: RECURSIVEMATCH alone is an error.
        return Err("RECURSIVEMATCH needs another selection option");
    }
    let reference = cursor.astring().ok_or("Expected a reference name")?;
    cursor.space().ok_or("Expected a mailbox pattern")?;
    let patterns = if cursor.peek() == Some(b'(') {
        cursor.list(Cursor::astring).ok_or("Malformed LIST patterns")?
    } else {
        vec![cursor.astring().ok_or("Expected a mailbox pattern")?]
    };
    let first = patterns.first().ok_or("Expected at least one mailbox pattern")?.clone();
    if cursor.space().is_some() {
        if !cursor.atom().is_some_and(|word| word.eq_ignore_ascii_case(b"RETURN")) {
            return Err("Expected RETURN");
        }
        cursor.space().ok_or("Expected RETURN options")?;
        cursor.open().ok_or("Expected RETURN options in parentheses")?;
        while cursor.peek() != Some(b')') {
            let option = cursor.atom().ok_or("Malformed RETURN options")?;
            match option.to_ascii_uppercase().as_slice() {
                b"SUBSCRIBED" => options.return_subscribed = true,
                // Always returned: \HasChildren and the special-use attributes.
                b"CHILDREN" | b"SPECIAL-USE" => {}
                b"STATUS" => {
                    cursor.space().ok_or("Expected STATUS items")?;
                    for item in cursor.list(Cursor::atom).ok_or("Expected STATUS items in parentheses")? {
                        if item.eq_ignore_ascii_case(b"MAILBOXID") {
                            options.status_mailbox_id = true;
                            continue;
                        }
                        options.status.push(status_item(item).ok_or("Unknown STATUS item")?);
                    }
                }
                _ => return Err("Unknown LIST RETURN option"),
            }
            if cursor.peek() != Some(b')') {
                cursor.space().ok_or("Malformed RETURN options")?;
            }
        }
        cursor.at += 1;
    }
    if !cursor.at_end() {
        return Err("Unexpected text after the LIST command");
    }
    options.more_patterns = patterns[1..].iter().map(|range| cursor.value(range.clone())).collect();
    let mut rewritten = tag.to_vec();
    rewritten.extend_from_slice(b" LIST ");
    rewritten.extend_from_slice(&cursor.bytes[reference]);
    rewritten.push(b' ');
    rewritten.extend_from_slice(&cursor.bytes[first]);
    rewritten.extend_from_slice(b"\r\n");
    Ok(Some((rewritten, Extension::List(options))))
}

fn status_item(name: &[u8]) -> Option<StatusDataItemName> {
    Some(match name.to_ascii_uppercase().as_slice() {
        b"MESSAGES" => StatusDataItemName::Messages,
        b"UIDNEXT" => StatusDataItemName::UidNext,
        b"UIDVALIDITY" => StatusDataItemName::UidValidity,
        b"UNSEEN" => StatusDataItemName::Unseen,
        b"DELETED" => StatusDataItemName::Deleted,
        b"SIZE" => StatusDataItemName::Size,
        b"RECENT" => StatusDataItemName::Recent,
        b"HIGHESTMODSEQ" => StatusDataItemName::HighestModSeq,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extended_syntax::{Extension, rewrite, rewritten};
    #[test]
    fn list_selection_patterns_and_return_options_are_taken_out() {
        let (command, extension) = rewritten(
            "a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"INBOX\" {4+}\r\nSe*t %) RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n",
        );
        assert_eq!(command, "a LIST \"\" \"INBOX\"\r\n");
        let Extension::List(options) = extension else { panic!("{extension:?}") };
        assert!(options.subscribed_only && options.return_subscribed && options.recursive_match);
        assert_eq!(options.status, [StatusDataItemName::Messages, StatusDataItemName::Unseen]);
        assert_eq!(options.more_patterns, [b"Se*t".to_vec(), b"%".to_vec()]);

        let (command, extension) = rewritten("b LIST \"\" {1}\r\n* RETURN (SPECIAL-USE SUBSCRIBED)\r\n");
        assert_eq!(command, "b LIST \"\" {1}\r\n*\r\n");
        assert_eq!(extension, Extension::List(ListOptions { return_subscribed: true, ..Default::default() }));
        let (command, extension) = rewritten("c LIST (SPECIAL-USE) \"\" \"a\\\"b\"\r\n");
        assert_eq!(command, "c LIST \"\" \"a\\\"b\"\r\n");
        assert_eq!(extension, Extension::List(ListOptions { special_use_only: true, ..Default::default() }));

        assert_eq!(
            rewrite(b"d LIST (RECURSIVEMATCH) \"\" *\r\n"),
            Err("RECURSIVEMATCH needs another selection option")
        );
        assert_eq!(rewrite(b"d LIST (BOGUS) \"\" *\r\n"), Err("Unknown LIST selection option"));
        assert_eq!(rewrite(b"d LIST \"\" * RETURN (STATUS (BOGUS))\r\n"), Err("Unknown STATUS item"));
        assert_eq!(rewrite(b"d LIST \"\" * RETURN (CHILDREN\r\n"), Err("Malformed RETURN options"));
        assert_eq!(rewrite(b"d LIST \"\" () \r\n"), Err("Expected at least one mailbox pattern"));
    }
}
