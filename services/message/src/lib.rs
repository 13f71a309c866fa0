//! kubemail-message: what is read from a message's octets, in the services that need it.
//!
//! - [`mime`] — the MIME structure as IMAP shows it: ENVELOPE, BODY, BODYSTRUCTURE, body
//!   sections, BINARY's decoding and PREVIEW.
//! - [`cached`] — the items FETCH asks most, derived once when the mailstore stores a message,
//!   so that answering them reads no body.
//! - [`fields`] — chosen header fields (HEADER.FIELDS), and the ones clients ask for on every
//!   sync, whose lines the cached items keep.
//! - [`string`] — an IMAP string, quoted or literal, as the structures carry their text.
//!
//! The IMAP frontend renders sections and BINARY from the bodies it reads; the mailstore
//! derives the cached items when it stores a body. Both use the same code, so what the cache
//! holds is exactly what the frontend would have written.

pub mod cached;
pub mod fields;
pub mod mime;

/// An IMAP quoted string, or a literal when the text cannot be quoted (a line break or a NUL,
/// or non-ASCII octets for a client that has not enabled UTF-8).
pub fn string(text: &str, utf8: bool) -> String {
    let quotable = text.bytes().all(|byte| byte != b'\r' && byte != b'\n' && byte != 0 && (utf8 || byte.is_ascii()));
    if quotable {
        let mut quoted = String::with_capacity(text.len() + 2);
        quoted.push('"');
        for character in text.chars() {
            if character == '"' || character == '\\' {
                quoted.push('\\');
            }
            quoted.push(character);
        }
        quoted.push('"');
        quoted
    } else {
        format!("{{{}}}\r\n{text}", text.len())
    }
}
