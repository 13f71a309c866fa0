//! APPEND of several messages (MULTIAPPEND, RFC 3502).

use std::ops::Range;

use super::{Cursor, Extension};

/// `APPEND mailbox message message …` with each message `[(flags)] ["date"] literal`: the
/// first stays in the rewritten command, the others travel as APPENDs of their own. One
/// message is left to imap-codec.
pub(super) fn append(cursor: &mut Cursor<'_>, tag: &[u8]) -> Result<Option<(Vec<u8>, Extension)>, &'static str> {
    cursor.space().ok_or("Expected a mailbox name")?;
    let mailbox = cursor.astring().ok_or("Expected a mailbox name")?;
    let mut messages = Vec::new();
    while cursor.space().is_some() {
        let start = cursor.at;
        if cursor.peek() == Some(b'(') {
            cursor.list(Cursor::atom).ok_or("Malformed flag list")?;
            cursor.space().ok_or("Expected a message literal")?;
        }
        if cursor.peek() == Some(b'"') {
            cursor.astring().ok_or("Malformed date")?;
            cursor.space().ok_or("Expected a message literal")?;
        }
        if cursor.peek() == Some(b'~') {
            cursor.at += 1;
        }
        if cursor.peek() != Some(b'{') {
            return Err("Expected a message literal");
        }
        cursor.astring().ok_or("Malformed message literal")?;
        messages.push(start..cursor.at);
    }
    if !cursor.at_end() {
        return Err("Unexpected text after the APPEND messages");
    }
    if messages.len() < 2 {
        return Ok(None);
    }
    let command = |message: &Range<usize>| {
        let mut command = tag.to_vec();
        command.extend_from_slice(b" APPEND ");
        command.extend_from_slice(&cursor.bytes[mailbox.clone()]);
        command.push(b' ');
        command.extend_from_slice(&cursor.bytes[message.clone()]);
        command.extend_from_slice(b"\r\n");
        command
    };
    let more = messages[1..].iter().map(command).collect();
    Ok(Some((command(&messages[0]), Extension::MoreMessages(more))))
}

#[cfg(test)]
mod tests {
    use crate::extended_syntax::{Extension, rewrite, rewritten};
    #[test]
    fn multiappend_becomes_one_append_per_message() {
        let (command, extension) = rewritten(
            "a APPEND Drafts (\\Seen) {3+}\r\none \"01-Jan-2026 10:00:00 +0000\" ~{3+}\r\ntwo {5+}\r\nthree\r\n",
        );
        assert_eq!(command, "a APPEND Drafts (\\Seen) {3+}\r\none\r\n");
        let more = vec![
            b"a APPEND Drafts \"01-Jan-2026 10:00:00 +0000\" ~{3+}\r\ntwo\r\n".to_vec(),
            b"a APPEND Drafts {5+}\r\nthree\r\n".to_vec(),
        ];
        assert_eq!(extension, Extension::MoreMessages(more));
        assert_eq!(rewrite(b"a APPEND Drafts (\\Bogus) {3+}\r\none\r\n"), Ok(None), "one message is imap-codec's");
        assert_eq!(rewrite(b"a APPEND Drafts {3+}\r\none junk\r\n"), Err("Expected a message literal"));
    }
}
