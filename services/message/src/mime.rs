//! A message's MIME structure as IMAP shows it (RFC 9051 §7.5.2): ENVELOPE, BODY and
//! BODYSTRUCTURE, and the octets of a body section such as `1.2`, `2.HEADER`, `1.MIME`
//! (§6.4.5). The message is read with mail-parser; sizes and sections are its raw octets, as
//! stored, except for BINARY (RFC 3516), which undoes a part's content transfer encoding, and
//! PREVIEW (RFC 8970), a short plain-text start.
//! Messages are parsed with [`parse`], which a parser panic cannot take the session down with.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use mail_parser::{Address, ContentType, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType};

/// `body` parsed for its MIME structure; `None` when it cannot be. Stored mail comes from
/// anyone, and a parser that panics on some message (mail-parser 0.11.9 asserts on certain
/// malformed multipart nestings in debug builds) would otherwise end every session that
/// fetches or searches it: that message is shown as unparsed instead.
pub fn parse(body: &[u8]) -> Option<Parsed<'_>> {
    match std::panic::catch_unwind(|| MessageParser::default().parse(body)) {
        Ok(parsed) => parsed.map(Parsed),
        Err(_) => {
            tracing::warn!(octets = body.len(), "the MIME parser gave up on a message; it is shown unparsed");
            None
        }
    }
}

/// A parsed message, which is taken apart one encapsulated message at a time when dropped:
/// mail-parser nests message/rfc822 parts without limit, and its own recursive drop of a
/// message nested some ten thousand deep overflows the stack, which aborts the process.
pub struct Parsed<'a>(Message<'a>);

impl<'a> std::ops::Deref for Parsed<'a> {
    type Target = Message<'a>;

    fn deref(&self) -> &Message<'a> {
        &self.0
    }
}

impl Drop for Parsed<'_> {
    fn drop(&mut self) {
        let mut pending = Vec::new();
        take_nested(&mut self.0, &mut pending);
        while let Some(mut message) = pending.pop() {
            take_nested(&mut message, &mut pending);
            // `message` holds no nested message now, and drops without recursing.
        }
    }
}

/// Moves the messages encapsulated in `message`'s parts to `pending`.
fn take_nested<'a>(message: &mut Message<'a>, pending: &mut Vec<Message<'a>>) {
    for part in &mut message.parts {
        if matches!(part.body, PartType::Message(_))
            && let PartType::Message(inner) = std::mem::replace(&mut part.body, PartType::Text("".into()))
        {
            pending.push(inner);
        }
    }
}

/// Which octets of a part a section names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// The part's body (`1.2`); for an encapsulated message, the whole message.
    Body,
    /// The part's own MIME header (`1.MIME`).
    Mime,
    /// The header of an encapsulated message (`2.HEADER`, `2.HEADER.FIELDS …`).
    Header,
    /// The body of an encapsulated message (`2.TEXT`).
    Text,
}

/// The octets of the section `path` (part numbers from 1) as `piece`; `None` when the message
/// has no such part.
pub fn section<'a>(message: &'a Message<'a>, path: &[u32], piece: Piece) -> Option<&'a [u8]> {
    let (message, part) = locate(message, path)?;
    match piece {
        Piece::Body => raw_octets(message, part.offset_body, part.offset_end),
        Piece::Mime => raw_octets(message, part.offset_header, part.offset_body),
        Piece::Header | Piece::Text => {
            let PartType::Message(inner) = &part.body else { return None };
            let root = inner.root_part();
            match piece {
                Piece::Header => raw_octets(inner, root.offset_header, root.offset_body),
                // To the end of the part that holds the message: the epilogue of a multipart
                // body too, which the encapsulated message's own parts end before. (Unless
                // the part was transfer-encoded, when only the decoded message has its text.)
                _ => {
                    let encapsulated = raw_octets(message, part.offset_body, part.offset_end)?;
                    let header_size = root.offset_body.checked_sub(root.offset_header)? as usize;
                    match encapsulated.starts_with(inner.raw_message()) {
                        true => encapsulated.get(header_size..),
                        false => raw_octets(inner, root.offset_body, root.offset_end),
                    }
                }
            }
        }
    }
}

/// A content transfer encoding BINARY cannot undo (RFC 3516 §4.3: `UNKNOWN-CTE`).
#[derive(Debug, PartialEq, Eq)]
pub struct UnknownEncoding;

/// The body of the part `path` with its content transfer encoding undone, for BINARY
/// (RFC 3516); `Ok(None)` when the message has no such part. The path must not be empty: the
/// whole message is sent as stored.
pub fn decoded(message: &Message<'_>, path: &[u32]) -> Result<Option<Vec<u8>>, UnknownEncoding> {
    let Some((message, part)) = locate(message, path) else { return Ok(None) };
    let Some(body) = raw_octets(message, part.offset_body, part.offset_end) else { return Ok(None) };
    let encoding = part.content_transfer_encoding().unwrap_or("7bit").trim().to_ascii_lowercase();
    match encoding.as_str() {
        "7bit" | "8bit" | "binary" => Ok(Some(body.to_vec())),
        "base64" => Ok(Some(decode_base64(body))),
        "quoted-printable" => Ok(Some(decode_quoted_printable(body))),
        _ => Err(UnknownEncoding),
    }
}

/// Base64 as mail carries it: line breaks and stray characters skipped, padding optional.
fn decode_base64(encoded: &[u8]) -> Vec<u8> {
    let mut alphabet: Vec<u8> =
        encoded.iter().copied().filter(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/')).collect();
    // A lone character left over encodes no whole octet.
    if alphabet.len() % 4 == 1 {
        alphabet.pop();
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    engine.decode(&alphabet).unwrap_or_default()
}

/// Quoted-printable (RFC 2045 §6.7), line by line: white space at the end of a line was added
/// on the way and goes (rule 3); a line that then ends in `=` continues on the next (a soft
/// line break, rule 5); `=XX` is an octet (rule 1). Anything malformed is kept as it is.
fn decode_quoted_printable(encoded: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::with_capacity(encoded.len());
    for line in encoded.split_inclusive(|&byte| byte == b'\n') {
        let (text, line_break) = match line {
            [text @ .., b'\r', b'\n'] => (text, &b"\r\n"[..]),
            [text @ .., b'\n'] => (text, &b"\n"[..]),
            text => (text, &b""[..]),
        };
        let text = text.trim_ascii_end();
        match text.strip_suffix(b"=") {
            Some(continued) => decode_quoted_octets(continued, &mut decoded),
            None => {
                decode_quoted_octets(text, &mut decoded);
                decoded.extend_from_slice(line_break);
            }
        }
    }
    decoded
}

/// The octets of one quoted-printable line without its line break: `=XX` (either case) as the
/// octet, the rest as it is.
fn decode_quoted_octets(text: &[u8], decoded: &mut Vec<u8>) {
    let mut index = 0;
    while index < text.len() {
        let escaped = (text[index] == b'=')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match escaped {
            Some(octet) => {
                decoded.push(octet);
                index += 3;
            }
            None => {
                decoded.push(text[index]);
                index += 1;
            }
        }
    }
}

/// The part `path` names and the message it belongs to (the innermost encapsulated one).
fn locate<'m, 'a>(message: &'m Message<'a>, path: &[u32]) -> Option<(&'m Message<'a>, &'m MessagePart<'a>)> {
    let (mut message, mut id) = (message, 0usize);
    for (depth, number) in path.iter().enumerate() {
        // Below an encapsulated message, numbering continues inside it.
        if depth > 0
            && let PartType::Message(inner) = &message.parts.get(id)?.body
        {
            (message, id) = (inner, 0);
        }
        match &message.parts.get(id)?.body {
            PartType::Multipart(children) => id = *children.get((*number as usize).checked_sub(1)?)? as usize,
            // A part that is not multipart has one part, itself.
            _ if *number == 1 => {}
            _ => return None,
        }
    }
    Some((message, message.parts.get(id)?))
}

/// The octets between two part offsets of `message`. mail-parser counts the offsets of an
/// encapsulated message's parts from the start of the outermost message, while its raw octets
/// start at its own header.
fn raw_octets<'a>(message: &'a Message<'a>, from: u32, to: u32) -> Option<&'a [u8]> {
    let base = message.root_part().offset_header;
    message.raw_message().get(from.checked_sub(base)? as usize..to.checked_sub(base)? as usize)
}

/// The characters a PREVIEW holds at most; RFC 8970 §3.2 allows up to 256.
const PREVIEW_CHARACTERS: usize = 200;

/// PREVIEW (RFC 8970): the start of the message's first text part (its HTML part's text when it
/// has no plain one), with each run of white space made one space; `None` when it has no text.
pub fn preview(message: &Message<'_>) -> Option<String> {
    // Generously more octets than shown: white space is folded after the cut.
    let text = message.body_preview(PREVIEW_CHARACTERS * 8)?;
    let preview: String = text
        .split_whitespace()
        .flat_map(|word| std::iter::once(' ').chain(word.chars()))
        .skip(1)
        .take(PREVIEW_CHARACTERS)
        .collect();
    (!preview.is_empty()).then_some(preview)
}

/// ENVELOPE: date, subject, the address lists, In-Reply-To and Message-ID.
pub fn envelope(message: &Message<'_>, utf8: bool) -> String {
    let raw = |name: &str| nstring(message.header_raw(name).map(str::trim), utf8);
    let from = addresses(message.from(), utf8);
    let or_from = |list: String| if list == "NIL" { from.clone() } else { list };
    format!(
        "({} {} {from} {} {} {} {} {} {} {})",
        raw("Date"),
        raw("Subject"),
        // Sender and Reply-To default to From (RFC 9051 §7.5.2).
        or_from(addresses(message.sender(), utf8)),
        or_from(addresses(message.reply_to(), utf8)),
        addresses(message.to(), utf8),
        addresses(message.cc(), utf8),
        addresses(message.bcc(), utf8),
        raw("In-Reply-To"),
        raw("Message-ID"),
    )
}

/// Levels described, multiparts and encapsulated messages alike; a part deeper down is shown
/// as one opaque part, so a message nested thousands deep costs neither the stack nor a
/// response of its depth.
const MAX_DEPTH: usize = 64;
/// Parts described in one structure at the most. Real mail has a handful; a part listed under
/// several parents (a parser inconsistency a crafted message can cause) would otherwise be
/// described again for each path to it, doubling at every level.
const MAX_PARTS: usize = 10_000;

/// A structure being written: its options, and how many more parts it may describe.
struct Walk {
    extensible: bool,
    utf8: bool,
    parts_left: usize,
}

/// BODYSTRUCTURE, or BODY without the extension data when `extensible` is false.
pub fn body_structure(message: &Message<'_>, extensible: bool, utf8: bool) -> String {
    let mut out = String::new();
    write_part(message, 0, 0, &mut Walk { extensible, utf8, parts_left: MAX_PARTS }, &mut out);
    out
}

fn write_part(message: &Message<'_>, id: usize, depth: usize, walk: &mut Walk, out: &mut String) {
    let Some(part) = message.parts.get(id) else { return };
    let (extensible, utf8) = (walk.extensible, walk.utf8);
    let content_type = part.content_type();
    let nested = matches!(&part.body, PartType::Multipart(_) | PartType::Message(_));
    let empty = matches!(&part.body, PartType::Multipart(children) if children.is_empty());
    if (nested && depth >= MAX_DEPTH) || walk.parts_left == 0 || empty {
        let size = raw_octets(message, part.offset_body, part.offset_end).map_or(0, <[u8]>::len);
        out.push_str(&format!("(\"application\" \"octet-stream\" NIL NIL NIL \"7BIT\" {size})"));
        return;
    }
    walk.parts_left -= 1;
    if let PartType::Multipart(children) = &part.body {
        out.push('(');
        for child in children {
            write_part(message, *child as usize, depth + 1, walk, out);
        }
        let subtype = content_type.and_then(ContentType::subtype).unwrap_or("mixed");
        out.push_str(&format!(" {}", quoted(subtype, utf8)));
        if extensible {
            out.push_str(&format!(" {} {}", parameters(content_type, utf8), extension_fields(part, utf8)));
        }
        out.push(')');
        return;
    }
    let (kind, subtype) = match (&part.body, content_type) {
        (_, Some(content_type)) => (content_type.ctype(), content_type.subtype().unwrap_or("")),
        (PartType::Message(_), None) => ("message", "rfc822"),
        // RFC 2045 §5.2: no Content-Type means text/plain.
        (_, None) => ("text", "plain"),
    };
    let body = raw_octets(message, part.offset_body, part.offset_end).unwrap_or_default();
    let parameters = match (kind.eq_ignore_ascii_case("text"), content_type.and_then(ContentType::attributes)) {
        (true, None) => "(\"charset\" \"us-ascii\")".to_string(),
        _ => parameters(content_type, utf8),
    };
    let encoding = part.content_transfer_encoding().unwrap_or("7bit").to_ascii_uppercase();
    out.push_str(&format!(
        "({} {} {parameters} {} {} {} {}",
        quoted(kind, utf8),
        quoted(subtype, utf8),
        nstring(part.content_id(), utf8),
        nstring(part.content_description(), utf8),
        quoted(&encoding, utf8),
        body.len()
    ));
    // Text lines: line feeds, and a last line that has none (before a MIME boundary, the line
    // break belongs to the boundary, RFC 2046 §5.1.1).
    let lines =
        body.iter().filter(|&&byte| byte == b'\n').count() + usize::from(!body.is_empty() && !body.ends_with(b"\n"));
    match &part.body {
        PartType::Message(inner) => {
            out.push_str(&format!(" {} ", envelope(inner, utf8)));
            write_part(inner, 0, depth + 1, walk, out);
            out.push_str(&format!(" {lines}"));
        }
        _ if kind.eq_ignore_ascii_case("text") => out.push_str(&format!(" {lines}")),
        _ => {}
    }
    if extensible {
        // No MD5 (RFC 1864) is kept.
        out.push_str(&format!(" NIL {}", extension_fields(part, utf8)));
    }
    out.push(')');
}

/// Disposition, language and location of a part.
fn extension_fields(part: &MessagePart<'_>, utf8: bool) -> String {
    let disposition = match part.content_disposition() {
        Some(disposition) => {
            format!("({} {})", quoted(disposition.ctype(), utf8), parameters(Some(disposition), utf8))
        }
        None => "NIL".to_string(),
    };
    let language = match part.content_language() {
        HeaderValue::Text(language) => quoted(language, utf8),
        HeaderValue::TextList(languages) => {
            format!("({})", languages.iter().map(|l| quoted(l, utf8)).collect::<Vec<_>>().join(" "))
        }
        _ => "NIL".to_string(),
    };
    format!("{disposition} {language} {}", nstring(part.content_location(), utf8))
}

/// `("name" "value" …)` of a Content-Type or Content-Disposition, or NIL.
fn parameters(content_type: Option<&ContentType<'_>>, utf8: bool) -> String {
    match content_type.and_then(ContentType::attributes) {
        Some(attributes) if !attributes.is_empty() => {
            let pairs: Vec<String> = attributes
                .iter()
                .map(|attribute| format!("{} {}", quoted(&attribute.name, utf8), quoted(&attribute.value, utf8)))
                .collect();
            format!("({})", pairs.join(" "))
        }
        _ => "NIL".to_string(),
    }
}

/// An address list: `((name adl mailbox host) …)`, groups as their start and end markers. An
/// obsolete source route (`<@relay,@hop:user@host>`, RFC 5322 §4.4) is the adl; a comment
/// with no address (`group: (nobody);`) is no address at all.
fn addresses(list: Option<&Address<'_>>, utf8: bool) -> String {
    let Some(list) = list else { return "NIL".to_string() };
    let address = |name: Option<&str>, email: Option<&str>| {
        let Some(email) = email else { return String::new() };
        let (route, email) = match email.strip_prefix('@').and_then(|_| email.split_once(':')) {
            Some((route, email)) => (Some(route), email),
            None => (None, email),
        };
        let (mailbox, host) = match email.rsplit_once('@') {
            Some((mailbox, host)) => (Some(mailbox), Some(host)),
            None => (Some(email), None),
        };
        let (name, route) = (phrase(name, utf8), nstring(route, utf8));
        format!("({name} {route} {} {})", nstring(mailbox, utf8), nstring(host, utf8))
    };
    let mut out = String::new();
    match list {
        Address::List(entries) => {
            for entry in entries {
                out.push_str(&address(entry.name(), entry.address()));
            }
        }
        Address::Group(groups) => {
            for group in groups {
                if let Some(name) = &group.name {
                    out.push_str(&format!("(NIL NIL {} NIL)", quoted(name, utf8)));
                }
                for entry in &group.addresses {
                    out.push_str(&address(entry.name(), entry.address()));
                }
                if group.name.is_some() {
                    out.push_str("(NIL NIL NIL NIL)");
                }
            }
        }
    }
    if out.is_empty() { "NIL".to_string() } else { format!("({out})") }
}

/// A display name; for a client without UTF-8, non-ASCII names go back into an RFC 2047
/// encoded word, as they came.
fn phrase(name: Option<&str>, utf8: bool) -> String {
    match name {
        Some(name) if !utf8 && !name.is_ascii() => quoted(&format!("=?UTF-8?B?{}?=", BASE64.encode(name)), utf8),
        other => nstring(other, utf8),
    }
}

fn nstring(text: Option<&str>, utf8: bool) -> String {
    text.map_or_else(|| "NIL".to_string(), |text| quoted(text, utf8))
}

fn quoted(text: &str, utf8: bool) -> String {
    crate::string(text, utf8)
}

#[cfg(test)]
mod tests {
    use mail_parser::MessageParser;

    use super::*;

    const MIXED: &str = "From: =?UTF-8?Q?J=C3=BCrgen?= <j@example.org>\r\nTo: a@example.org, B <b@example.org>\r\nSubject: Files\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\nthere\r\n--b1\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\n\r\nJVBERi0=\r\n--b1--\r\n";

    #[test]
    fn a_preview_is_at_most_200_characters_of_folded_text() {
        let body = format!("Subject: long\r\n\r\n{}", "wörd\r\n  ".repeat(300));
        let message = MessageParser::default().parse(body.as_bytes()).unwrap();
        let shown = preview(&message).unwrap();
        assert_eq!(shown.chars().count(), PREVIEW_CHARACTERS);
        assert!(shown.starts_with("wörd wörd wörd"), "{shown}");
        let mixed = MessageParser::default().parse(MIXED.as_bytes()).unwrap();
        assert_eq!(preview(&mixed).as_deref(), Some("Hello there"), "the text part, not the attachment");
    }

    #[test]
    fn envelopes_list_the_addresses_and_default_sender_to_from() {
        let message = MessageParser::default().parse(MIXED).unwrap();
        let from = "((\"=?UTF-8?B?SsO8cmdlbg==?=\" NIL \"j\" \"example.org\"))";
        assert_eq!(
            envelope(&message, false),
            format!(
                "(\"Thu, 26 Nov 2026 10:00:00 +0000\" \"Files\" {from} {from} {from} ((NIL NIL \"a\" \"example.org\")(\"B\" NIL \"b\" \"example.org\")) NIL NIL NIL \"<1@example.org>\")"
            )
        );
        assert!(
            envelope(&message, true).starts_with("(\"Thu, 26 Nov 2026 10:00:00 +0000\" \"Files\" ((\"Jürgen\" NIL")
        );
    }

    #[test]
    fn body_structures_describe_every_part() {
        let message = MessageParser::default().parse(MIXED).unwrap();
        assert_eq!(
            body_structure(&message, false, false),
            "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 12 2)(\"application\" \"pdf\" (\"name\" \"a.pdf\") NIL NIL \"BASE64\" 8) \"mixed\")"
        );
        let extended = body_structure(&message, true, false);
        assert!(extended.contains("\"BASE64\" 8 NIL (\"attachment\" (\"filename\" \"a.pdf\")) NIL NIL)"), "{extended}");
        assert!(extended.ends_with(" \"mixed\" (\"boundary\" \"b1\") NIL NIL NIL)"), "{extended}");
        let plain = MessageParser::default().parse("Subject: x\r\n\r\nHi\r\n").unwrap();
        assert_eq!(
            body_structure(&plain, false, false),
            "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 4 1)"
        );
    }

    #[test]
    fn sections_name_parts_by_number() {
        let message = MessageParser::default().parse(MIXED).unwrap();
        // The line break before a boundary belongs to the boundary.
        assert_eq!(section(&message, &[1], Piece::Body), Some(&b"Hello\r\nthere"[..]));
        assert_eq!(section(&message, &[2], Piece::Body), Some(&b"JVBERi0="[..]));
        let mime = section(&message, &[2], Piece::Mime).unwrap();
        assert!(mime.starts_with(b"Content-Type: application/pdf") && mime.ends_with(b"\r\n\r\n"));
        assert_eq!(section(&message, &[3], Piece::Body), None);
        assert_eq!(section(&message, &[1, 1], Piece::Body), Some(&b"Hello\r\nthere"[..]));
        assert_eq!(section(&message, &[1], Piece::Header), None, "not an encapsulated message");
        let plain = MessageParser::default().parse("Subject: x\r\n\r\nHi\r\n").unwrap();
        assert_eq!(section(&plain, &[1], Piece::Body), Some(&b"Hi\r\n"[..]));
    }

    #[test]
    fn a_message_the_parser_panics_on_is_shown_unparsed() {
        // Found by the mime_structure fuzzer: a part whose headers run into a NUL and an
        // unterminated nested message trips mail-parser's debug assertion.
        let crash = include_bytes!("../../../fuzz/regressions/mime_structure/nested-multipart-assertion");
        let parsed = parse(&crash[4..]);
        if cfg!(debug_assertions) {
            assert!(parsed.is_none());
        }
        let plain = parse(b"Subject: x\r\n\r\nHi\r\n").expect("a plain message parses");
        assert_eq!(plain.subject(), Some("x"));
    }

    #[test]
    fn thousands_of_nested_messages_are_described_to_a_bounded_depth() {
        let raw = "Subject: deep\r\nContent-Type: message/rfc822\r\n\r\n".repeat(20_000) + "\r\nbottom\r\n";
        // Parsed (and dropped) through `parse`: mail-parser's own drop would overflow the stack.
        let message = parse(raw.as_bytes()).unwrap();
        let structure = body_structure(&message, true, false);
        assert!(structure.matches("\"message\" \"rfc822\"").count() <= MAX_DEPTH, "{} octets", structure.len());
    }

    #[test]
    fn a_part_listed_under_many_parents_is_not_described_again_and_again() {
        // Found by the mime_structure fuzzer: mail-parser lists some part under more than one
        // parent, and describing it on every path doubled at each level until memory ran out.
        let crash = include_bytes!("../../../fuzz/regressions/mime_structure/part-listed-under-many-parents");
        let Some(message) = parse(&crash[4..]) else { return };
        let structure = body_structure(&message, true, false);
        assert!(structure.matches("(\"").count() <= MAX_PARTS + 1, "{} octets", structure.len());
    }

    #[test]
    fn thousands_of_nested_multiparts_are_described_to_a_bounded_depth() {
        let mut raw = String::from("Subject: deep\r\nContent-Type: multipart/mixed; boundary=\"b0\"\r\n\r\n");
        for level in 1..5000 {
            raw.push_str(&format!("--b{}\r\nContent-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n", level - 1));
        }
        raw.push_str("--b4999\r\n\r\nbottom\r\n");
        let message = MessageParser::default().parse(&raw).unwrap();
        let structure = body_structure(&message, true, false);
        let deepest = structure
            .chars()
            .scan(0i32, |open, c| {
                *open += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                Some(*open)
            })
            .max()
            .unwrap();
        assert!(deepest < 3 * MAX_DEPTH as i32, "{deepest} levels in {} octets", structure.len());
    }

    #[test]
    fn quoted_printable_drops_trailing_white_space_and_joins_soft_line_breaks() {
        let decoded = decode_quoted_printable(b"Caf=E9 \t\r\nsoft=  \r\nbreak=3d=\r\nend\nlast =\n");
        assert_eq!(decoded, b"Caf\xe9\r\nsoftbreak=end\nlast ");
        assert_eq!(decode_quoted_printable(b"=ZZ =4"), b"=ZZ =4", "malformed is kept");
    }

    #[test]
    fn a_group_holds_only_addresses_and_a_source_route_is_the_route() {
        let message = MessageParser::default()
            .parse("To: undisclosed-recipients: (nobody);\r\nCc: <@relay.example.net,@hop.example.net:joe@example.org>\r\nSubject: x\r\n\r\nx\r\n")
            .unwrap();
        assert_eq!(addresses(message.to(), false), "((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL))");
        assert_eq!(
            addresses(message.cc(), false),
            "((NIL \"@relay.example.net,@hop.example.net\" \"joe\" \"example.org\"))"
        );
    }

    #[test]
    fn the_text_of_an_encapsulated_multipart_runs_to_its_epilogue() {
        let inner = "Subject: inner\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n--i\r\n\r\none\r\n--i--\r\nepilogue\r\n";
        let outer = format!("Subject: outer\r\nContent-Type: message/rfc822\r\n\r\n{inner}");
        let message = MessageParser::default().parse(outer.as_bytes()).unwrap();
        let text = section(&message, &[1], Piece::Text).unwrap();
        assert_eq!(String::from_utf8_lossy(text), "--i\r\n\r\none\r\n--i--\r\nepilogue\r\n");
    }
}
