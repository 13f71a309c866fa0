//! STATUS with MAILBOXID (RFC 8474 §4.2).

use super::{Cursor, Extension};

/// `STATUS mailbox (items)` whose items include MAILBOXID.
pub(super) fn status(cursor: &mut Cursor<'_>, tag: &[u8]) -> Result<Option<(Vec<u8>, Extension)>, &'static str> {
    cursor.space().ok_or("Expected a mailbox name")?;
    let mailbox = cursor.astring().ok_or("Expected a mailbox name")?;
    cursor.space().ok_or("Expected STATUS items")?;
    let items = cursor.list(Cursor::atom).ok_or("Expected STATUS items in parentheses")?;
    if !cursor.at_end() {
        return Err("Unexpected text after the STATUS items");
    }
    let (ids, kept): (Vec<&[u8]>, Vec<&[u8]>) =
        items.into_iter().partition(|item| item.eq_ignore_ascii_case(b"MAILBOXID"));
    if ids.is_empty() {
        return Ok(None);
    }
    let placeholder = kept.is_empty();
    let mut rewritten = tag.to_vec();
    rewritten.extend_from_slice(b" STATUS ");
    rewritten.extend_from_slice(&cursor.bytes[mailbox]);
    rewritten.extend_from_slice(b" (");
    rewritten.extend_from_slice(&if placeholder { b"MESSAGES".to_vec() } else { kept.join(&b' ') });
    rewritten.extend_from_slice(b")\r\n");
    Ok(Some((rewritten, Extension::StatusMailboxId { placeholder })))
}

#[cfg(test)]
mod tests {
    use crate::extended_syntax::{Extension, rewrite, rewritten};
    #[test]
    fn status_mailboxid_is_taken_out() {
        let (command, extension) = rewritten("s STATUS Sent (MESSAGES MAILBOXID)\r\n");
        assert_eq!(
            (command.as_str(), extension),
            ("s STATUS Sent (MESSAGES)\r\n", Extension::StatusMailboxId { placeholder: false })
        );
        let (command, extension) = rewritten("s STATUS \"a b\" (mailboxid)\r\n");
        assert_eq!(
            (command.as_str(), extension),
            ("s STATUS \"a b\" (MESSAGES)\r\n", Extension::StatusMailboxId { placeholder: true })
        );
        assert_eq!(rewrite(b"s STATUS Sent (BOGUS)\r\n"), Ok(None));
    }
}
