//! A message as the IMAP frontend shows it in FETCH: ENVELOPE, BODY and BODYSTRUCTURE in every
//! mode, and the body sections a path names. The first octet picks UTF-8 mode and the next
//! three a part path (zeros end it); the rest is the message. Every structure must be one
//! well-formed IMAP value, whatever the message's headers hold.

use kubemail_message::mime::{self, Piece};

use crate::wire;

/// Lets a panic inside mail-parser unwind to the IMAP frontend's [`mime::parse`], which shows
/// the message unparsed: that is the behaviour under test, not a fault. Any other panic still
/// aborts, which is how libFuzzer learns of it. Call once, after libFuzzer set its hook.
pub fn tolerate_parser_panics() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |panic| {
        if !panic.location().is_some_and(|location| location.file().contains("/mail-parser-")) {
            report(panic);
        }
    }));
}

/// Runs the FETCH views of `input`; panics on anything a client would notice.
pub fn structure(input: &[u8]) {
    let [mode, a, b, c, message @ ..] = input else { return };
    let utf8 = mode & 1 == 1;
    let path: Vec<u32> = [a, b, c].into_iter().map(|n| u32::from(n % 4)).take_while(|&n| n != 0).collect();
    let Some(parsed) = mime::parse(message) else { return };
    let check = |what: &str, text: String| {
        if let Err(problem) = wire::imap_value(text.as_bytes()) {
            panic!("{what} is not one IMAP value ({problem}): {text:?}");
        }
    };
    check("ENVELOPE", mime::envelope(&parsed, utf8));
    check("BODY", mime::body_structure(&parsed, false, utf8));
    check("BODYSTRUCTURE", mime::body_structure(&parsed, true, utf8));
    // Sections and BINARY are slices of the message or decodings of one: what could go wrong is
    // a panic on a path the structure does not have.
    for piece in [Piece::Body, Piece::Mime, Piece::Header, Piece::Text] {
        let _ = mime::section(&parsed, &path, piece);
    }
    if !path.is_empty() {
        let _ = mime::decoded(&parsed, &path);
    }
}
