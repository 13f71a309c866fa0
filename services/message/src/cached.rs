//! The items of a message that FETCH asks most and that only its octets tell — ENVELOPE, BODY,
//! BODYSTRUCTURE, PREVIEW and the lines of the header fields clients list messages by
//! ([`fields::COMMON_FIELDS`]) — derived once, when the mailstore stores the message, and kept
//! with its body ([`CachedItems`]), as Dovecot keeps them in its cache file. A FETCH of them
//! then reads and parses no body: clients ask for them on every sync, of tens of messages at a
//! time, and parsing each body again was most of what such a FETCH cost.
//!
//! The renderings are [`mime`]'s, the frontend's own, in both of a session's modes (with and
//! without UTF-8), so an answer from the cache is the answer parsing the body would give.

use kubemail_proto::mailstore::CachedItems;

use crate::{fields, mime};

/// The cached items of the message `body`.
pub fn derive(body: &[u8]) -> CachedItems {
    let common_header = Some(fields::common_header(body));
    let Some(message) = mime::parse(body) else {
        // What the frontend shows for a message the parser cannot read.
        let nil = || "NIL".to_string();
        return CachedItems {
            envelope: nil(),
            body: nil(),
            body_structure: nil(),
            common_header,
            ..CachedItems::default()
        };
    };
    // The UTF-8 rendering is kept only where it differs: most mail is ASCII in its headers.
    let unless_same = |utf8: String, plain: &str| if utf8 == plain { String::new() } else { utf8 };
    let envelope = mime::envelope(&message, false);
    let structure = mime::body_structure(&message, false, false);
    let extended = mime::body_structure(&message, true, false);
    CachedItems {
        envelope_utf8: unless_same(mime::envelope(&message, true), &envelope),
        body_utf8: unless_same(mime::body_structure(&message, false, true), &structure),
        body_structure_utf8: unless_same(mime::body_structure(&message, true, true), &extended),
        envelope,
        body: structure,
        body_structure: extended,
        preview: mime::preview(&message),
        common_header,
    }
}

/// ENVELOPE as a session shows it: with UTF-8 enabled (`utf8`) or not.
pub fn envelope(cached: &CachedItems, utf8: bool) -> &str {
    pick(&cached.envelope, &cached.envelope_utf8, utf8)
}

/// BODYSTRUCTURE, or BODY when not `extensible`, as a session shows it.
pub fn body_structure(cached: &CachedItems, extensible: bool, utf8: bool) -> &str {
    match extensible {
        true => pick(&cached.body_structure, &cached.body_structure_utf8, utf8),
        false => pick(&cached.body, &cached.body_utf8, utf8),
    }
}

fn pick<'a>(plain: &'a str, utf8_form: &'a str, utf8: bool) -> &'a str {
    if utf8 && !utf8_form.is_empty() { utf8_form } else { plain }
}

#[cfg(test)]
mod tests {
    use super::*;

    // That the items equal what the frontend writes from the parsed body, for every message of
    // the corpora, is proven end to end, through a mailstore and FETCH: imap-frontend's
    // tests/fetch.rs.

    #[test]
    fn a_utf8_rendering_is_kept_only_where_it_differs() {
        let ascii = derive(b"From: a@example.org\r\nSubject: plain\r\n\r\nHello\r\n");
        assert!(ascii.envelope_utf8.is_empty() && ascii.body_utf8.is_empty() && ascii.body_structure_utf8.is_empty());
        assert_eq!(envelope(&ascii, true), envelope(&ascii, false));
        assert_eq!(ascii.preview.as_deref(), Some("Hello"));

        let encoded =
            "From: =?UTF-8?Q?J=C3=BCrgen?= <j@example.org>\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n\r\nHallo\r\n";
        let cached = derive(encoded.as_bytes());
        // The display name is decoded; the subject is shown as it was written.
        assert!(envelope(&cached, true).contains("((\"Jürgen\" NIL \"j\""), "{}", envelope(&cached, true));
        assert!(!envelope(&cached, false).contains("Jürgen"), "{}", envelope(&cached, false));
        assert!(envelope(&cached, false).contains("=?UTF-8?B?"), "the name as an encoded word without UTF-8");
        assert!(!cached.envelope_utf8.is_empty(), "the two renderings differ, so both are kept");
        assert_eq!(body_structure(&cached, false, true), body_structure(&cached, false, false), "ASCII structure");
        assert!(body_structure(&cached, true, false).starts_with("(\"text\" \"plain\""));
        assert!(!body_structure(&cached, false, false).contains(" NIL NIL NIL)"), "BODY has no extension data");
    }

    #[test]
    fn a_message_without_text_has_no_preview() {
        let cached = derive(b"Subject: nothing\r\n\r\n");
        assert_eq!(cached.preview, None);
    }
}
