//! CREATE with a special use (RFC 6154 §3).

use super::{Cursor, Extension};

/// `CREATE mailbox (USE (attributes))`.
pub(super) fn create(cursor: &mut Cursor<'_>, tag: &[u8]) -> Result<Option<(Vec<u8>, Extension)>, &'static str> {
    cursor.space().ok_or("Expected a mailbox name")?;
    let mailbox = cursor.astring().ok_or("Expected a mailbox name")?;
    if cursor.space().is_none() {
        return Ok(None);
    }
    cursor.open().ok_or("Expected CREATE parameters in parentheses")?;
    let parameter = cursor.atom().ok_or("Expected a CREATE parameter")?;
    if !parameter.eq_ignore_ascii_case(b"USE") {
        return Err("Unknown CREATE parameter");
    }
    cursor.space().ok_or("Expected USE attributes")?;
    let attributes = cursor.list(Cursor::atom).ok_or("Expected USE attributes in parentheses")?;
    if cursor.peek() != Some(b')') {
        return Err("Expected the end of the CREATE parameters");
    }
    cursor.at += 1;
    if !cursor.at_end() {
        return Err("Unexpected text after the CREATE parameters");
    }
    let attributes = attributes.iter().map(|attribute| String::from_utf8_lossy(attribute).into_owned()).collect();
    let mut rewritten = tag.to_vec();
    rewritten.extend_from_slice(b" CREATE ");
    rewritten.extend_from_slice(&cursor.bytes[mailbox]);
    rewritten.extend_from_slice(b"\r\n");
    Ok(Some((rewritten, Extension::CreateUse(attributes))))
}

#[cfg(test)]
mod tests {
    use crate::extended_syntax::{Extension, rewrite, rewritten};
    #[test]
    fn create_use_is_taken_out() {
        let (command, extension) = rewritten("c CREATE \"My Stash\" (USE (\\Archive))\r\n");
        assert_eq!(command, "c CREATE \"My Stash\"\r\n");
        assert_eq!(extension, Extension::CreateUse(vec!["\\Archive".to_string()]));
        assert!(rewrite(b"c CREATE x (COLOUR (red))\r\n").is_err());
        assert!(rewrite(b"c CREATE x (USE \\Archive)\r\n").is_err());
    }
}
