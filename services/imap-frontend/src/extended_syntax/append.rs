//! APPEND of several messages (MULTIAPPEND, RFC 3502), and of messages made of parts
//! (CATENATE, RFC 4469): text given in the command and IMAP URLs of messages or parts already
//! stored.

use std::ops::Range;

use super::{Cursor, Extension};

/// What a message of a CATENATE is made of, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatenatePart {
    /// TEXT: octets given in the command.
    Text(Vec<u8>),
    /// URL: a message or part on this server, for the session's account (RFC 5092).
    Url(String),
}

/// One message of an APPEND as written: its flags and date, then its literal, or its CATENATE
/// parts.
type Written = (Range<usize>, Result<Range<usize>, Vec<CatenatePart>>);

/// The messages of an APPEND beyond what imap-codec reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendMore {
    /// MULTIAPPEND: the messages after the first, each rewritten as an APPEND of its own to
    /// the same mailbox (`tag APPEND mailbox [flags] [date] literal`), for imap-codec to read.
    pub more: Vec<Vec<u8>>,
    /// For each message, the first included, its parts when it is a CATENATE (its literal in
    /// the rewritten command is then empty and stands in for them).
    pub catenated: Vec<Option<Vec<CatenatePart>>>,
}

/// `APPEND mailbox message message …` with each message `[(flags)] ["date"] literal` or
/// `[(flags)] ["date"] CATENATE (parts)`: the first stays in the rewritten command, the others
/// travel as APPENDs of their own. One plain message is left to imap-codec.
pub(super) fn append(cursor: &mut Cursor<'_>, tag: &[u8]) -> Result<Option<(Vec<u8>, Extension)>, &'static str> {
    cursor.space().ok_or("Expected a mailbox name")?;
    let mailbox = cursor.astring().ok_or("Expected a mailbox name")?;
    let mut messages: Vec<Written> = Vec::new();
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
        let attributes = start..cursor.at;
        if cursor.rest().len() > 8 && cursor.rest()[..8].eq_ignore_ascii_case(b"CATENATE") {
            cursor.at += 8;
            cursor.space().ok_or("Expected CATENATE parts")?;
            messages.push((attributes, Err(catenate_parts(cursor)?)));
            continue;
        }
        let literal = cursor.at;
        if cursor.peek() == Some(b'~') {
            cursor.at += 1;
        }
        if cursor.peek() != Some(b'{') {
            return Err("Expected a message literal");
        }
        cursor.astring().ok_or("Malformed message literal")?;
        messages.push((attributes, Ok(literal..cursor.at)));
    }
    if !cursor.at_end() {
        return Err("Unexpected text after the APPEND messages");
    }
    if messages.len() < 2 && messages.iter().all(|(_, message)| message.is_ok()) {
        return Ok(None);
    }
    let command = |(attributes, message): &Written| {
        let mut command = tag.to_vec();
        command.extend_from_slice(b" APPEND ");
        command.extend_from_slice(&cursor.bytes[mailbox.clone()]);
        command.push(b' ');
        command.extend_from_slice(&cursor.bytes[attributes.clone()]);
        match message {
            Ok(literal) => command.extend_from_slice(&cursor.bytes[literal.clone()]),
            Err(_) => command.extend_from_slice(b"{0}\r\n"),
        }
        command.extend_from_slice(b"\r\n");
        command
    };
    let catenated = messages.iter().map(|(_, message)| message.as_ref().err().cloned()).collect();
    let more = messages[1..].iter().map(command).collect();
    Ok(Some((command(&messages[0]), Extension::Append(AppendMore { more, catenated }))))
}

/// `(TEXT literal URL url …)`.
fn catenate_parts(cursor: &mut Cursor<'_>) -> Result<Vec<CatenatePart>, &'static str> {
    cursor.open().ok_or("Expected CATENATE parts in parentheses")?;
    let mut parts = Vec::new();
    while cursor.peek() != Some(b')') {
        if !parts.is_empty() {
            cursor.space().ok_or("Malformed CATENATE parts")?;
        }
        let kind = cursor.atom().ok_or("Expected TEXT or URL")?;
        cursor.space().ok_or("Malformed CATENATE part")?;
        let value = cursor.astring().ok_or("Malformed CATENATE part")?;
        let is_literal = cursor.bytes[value.start] == b'{';
        let value = cursor.value(value);
        parts.push(match kind.to_ascii_uppercase().as_slice() {
            b"TEXT" if is_literal => CatenatePart::Text(value),
            b"URL" => CatenatePart::Url(String::from_utf8(value).map_err(|_| "A URL is ASCII")?),
            b"TEXT" => return Err("TEXT takes a literal"),
            _ => return Err("Expected TEXT or URL"),
        });
    }
    cursor.at += 1;
    if parts.is_empty() {
        return Err("CATENATE needs at least one part");
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extended_syntax::{rewrite, rewritten};

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
        assert_eq!(extension, Extension::Append(AppendMore { more, catenated: vec![None, None, None] }));
        assert_eq!(rewrite(b"a APPEND Drafts (\\Bogus) {3+}\r\none\r\n"), Ok(None), "one message is imap-codec's");
        assert_eq!(rewrite(b"a APPEND Drafts {3+}\r\none junk\r\n"), Err("Expected a message literal"));
    }

    #[test]
    fn catenate_parts_are_taken_out() {
        let (command, extension) = rewritten(
            "c APPEND Drafts (\\Draft) CATENATE (URL \"/INBOX;UIDVALIDITY=7/;UID=20/;SECTION=HEADER\" TEXT {6+}\r\n\r\nBody) {3+}\r\nabc\r\n",
        );
        assert_eq!(command, "c APPEND Drafts (\\Draft) {0}\r\n\r\n");
        let parts = vec![
            CatenatePart::Url("/INBOX;UIDVALIDITY=7/;UID=20/;SECTION=HEADER".into()),
            CatenatePart::Text(b"\r\nBody".to_vec()),
        ];
        let more = vec![b"c APPEND Drafts {3+}\r\nabc\r\n".to_vec()];
        assert_eq!(extension, Extension::Append(AppendMore { more, catenated: vec![Some(parts), None] }));
        assert_eq!(rewrite(b"c APPEND Drafts CATENATE ()\r\n"), Err("CATENATE needs at least one part"));
        assert_eq!(rewrite(b"c APPEND Drafts CATENATE (TEXT \"inline\")\r\n"), Err("TEXT takes a literal"));
    }
}
