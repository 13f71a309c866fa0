//! What a client needs of the octets a server sends, checked on every fuzzed session: whole
//! lines, valid codes and status words, and nothing the input put there that could break the
//! framing (a line break in echoed text would let a client read a reply the server never gave).

/// The longest SMTP reply line, code and CRLF included (RFC 5321 §4.5.3.1.5).
pub const SMTP_REPLY_LINE_LIMIT: usize = 512;

/// Checks `output` as a sequence of SMTP replies and returns their codes. A `220` after the
/// greeting answers STARTTLS: TLS records follow it, and are not read.
pub fn smtp_replies(output: &[u8]) -> Result<Vec<u16>, String> {
    let mut codes = Vec::new();
    let mut rest = output;
    let mut continued: Option<u16> = None;
    while !rest.is_empty() {
        let Some(end) = rest.windows(2).position(|pair| pair == b"\r\n") else {
            return Err(format!("a reply line without CRLF: {:?}", String::from_utf8_lossy(rest)));
        };
        let line = &rest[..end];
        rest = &rest[end + 2..];
        let shown = || String::from_utf8_lossy(line).into_owned();
        if line.len() + 2 > SMTP_REPLY_LINE_LIMIT {
            return Err(format!("a reply line of {} octets: {:?}", line.len() + 2, shown()));
        }
        if line.iter().any(|&octet| octet == b'\r' || octet == b'\n' || octet == 0) {
            return Err(format!("a bare CR, LF or NUL in a reply line: {:?}", shown()));
        }
        let code = match line.get(..3).and_then(|c| std::str::from_utf8(c).ok()).and_then(|c| c.parse::<u16>().ok()) {
            Some(code @ 200..=559) => code,
            _ => return Err(format!("a reply line without a code: {:?}", shown())),
        };
        if continued.is_some_and(|previous| previous != code) {
            return Err(format!("a multi-line reply changes its code: {:?}", shown()));
        }
        let text = match line.get(3) {
            None => &[][..],
            Some(b' ') | Some(b'-') => &line[4..],
            Some(_) => return Err(format!("a reply line with no separator after its code: {:?}", shown())),
        };
        // RFC 3463 §2: an enhanced status code's class is the reply code's first digit.
        if let [class @ b'2'..=b'5', b'.', ..] = text
            && *class != line[0]
        {
            return Err(format!("an enhanced status code of another class than the reply: {:?}", shown()));
        }
        if line.get(3) == Some(&b'-') {
            continued = Some(code);
            continue;
        }
        continued = None;
        codes.push(code);
        if code == 220 && codes.len() > 1 {
            return Ok(codes);
        }
    }
    if continued.is_some() {
        return Err("the last reply is cut off after a continuation line".into());
    }
    Ok(codes)
}

/// One IMAP response as [`imap_responses`] reads it.
#[derive(Debug, PartialEq, Eq)]
pub enum Response {
    /// `* …`: data or an untagged status.
    Untagged,
    /// `+ …`: the server waits for a literal or a SASL response.
    Continuation,
    /// `tag OK|NO|BAD …`, with its tag and status.
    Tagged { tag: String, status: String },
}

/// The text of the tagged OK to STARTTLS; TLS starts after it.
const STARTTLS_OK: &str = "Begin TLS negotiation now";

/// Checks `output` as a sequence of IMAP responses (RFC 9051 §7), literals included, and
/// returns them. Reading stops after the tagged OK to STARTTLS, as TLS records follow it.
pub fn imap_responses(output: &[u8]) -> Result<Vec<Response>, String> {
    let mut responses = Vec::new();
    let mut rest = output;
    while !rest.is_empty() {
        let (line, after) = response_line(rest)?;
        rest = after;
        let shown = || String::from_utf8_lossy(&line).into_owned();
        let response = if line == b"+" || line.starts_with(b"+ ") {
            Response::Continuation
        } else if line.starts_with(b"* ") {
            Response::Untagged
        } else {
            let text = String::from_utf8_lossy(&line);
            let mut words = text.splitn(3, ' ');
            let tag = words.next().unwrap_or_default();
            let status = words.next().unwrap_or_default();
            if tag.is_empty() || !tag.bytes().all(is_tag_char) {
                return Err(format!("a response with no valid tag: {:?}", shown()));
            }
            if !matches!(status, "OK" | "NO" | "BAD") {
                return Err(format!("a tagged response with no status: {:?}", shown()));
            }
            let starts_tls = status == "OK" && words.next().is_some_and(|text| text.ends_with(STARTTLS_OK));
            responses.push(Response::Tagged { tag: tag.into(), status: status.into() });
            if starts_tls {
                return Ok(responses);
            }
            continue;
        };
        responses.push(response);
    }
    Ok(responses)
}

/// One response line with its literals spliced out (`{n}` or `~{n}` then CRLF then n octets),
/// and the output after it.
fn response_line(mut rest: &[u8]) -> Result<(Vec<u8>, &[u8]), String> {
    let mut line = Vec::new();
    loop {
        let Some(end) = rest.windows(2).position(|pair| pair == b"\r\n") else {
            return Err(format!("a response without CRLF: {:?}", String::from_utf8_lossy(rest)));
        };
        let part = &rest[..end];
        if part.iter().any(|&octet| octet == b'\r' || octet == b'\n' || octet == 0) {
            return Err(format!("a bare CR, LF or NUL in a response line: {:?}", String::from_utf8_lossy(part)));
        }
        line.extend_from_slice(part);
        rest = &rest[end + 2..];
        match literal_size(part) {
            Some(size) if size > rest.len() => {
                return Err(format!("a literal of {size} octets with {} sent", rest.len()));
            }
            Some(size) => {
                rest = &rest[size..];
            }
            None => return Ok((line, rest)),
        }
    }
}

/// The size of the literal announced at the end of a line part: `{n}` or `~{n}`.
fn literal_size(part: &[u8]) -> Option<usize> {
    let open = part.strip_suffix(b"}")?;
    let start = open.iter().rposition(|&octet| octet == b'{')?;
    std::str::from_utf8(&open[start + 1..]).ok()?.parse().ok()
}

/// RFC 9051 `tag`: ASTRING-CHAR except `+`.
fn is_tag_char(octet: u8) -> bool {
    octet.is_ascii_graphic() && !matches!(octet, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b'+')
}

/// Checks that `text` is one IMAP parenthesised value as the server writes ENVELOPE and
/// BODYSTRUCTURE: balanced lists of NIL, numbers, quoted strings and literals, with no line
/// break outside a literal.
pub fn imap_value(text: &[u8]) -> Result<(), String> {
    let mut depth = 0usize;
    let mut at = 0;
    let shown =
        |at: usize| String::from_utf8_lossy(&text[at.saturating_sub(40)..(at + 40).min(text.len())]).into_owned();
    while at < text.len() {
        match text[at] {
            b'(' => depth += 1,
            b')' => depth = depth.checked_sub(1).ok_or_else(|| format!("an unopened ')' near {:?}", shown(at)))?,
            b' ' => {}
            b'"' => {
                at += 1;
                loop {
                    match text.get(at) {
                        None => return Err("a quoted string is not closed".into()),
                        Some(b'"') => break,
                        Some(b'\\') if matches!(text.get(at + 1), Some(b'"' | b'\\')) => at += 1,
                        Some(b'\\') => {
                            return Err(format!("a stray backslash in a quoted string near {:?}", shown(at)));
                        }
                        Some(b'\r' | b'\n' | 0) => {
                            return Err(format!("a CR, LF or NUL in a quoted string near {:?}", shown(at)));
                        }
                        Some(_) => {}
                    }
                    at += 1;
                }
            }
            b'{' => {
                let close = text[at..].iter().position(|&octet| octet == b'}').map(|offset| at + offset);
                let size = close
                    .and_then(|close| std::str::from_utf8(&text[at + 1..close]).ok())
                    .and_then(|digits| digits.parse::<usize>().ok());
                let (Some(close), Some(size)) = (close, size) else {
                    return Err(format!("a malformed literal near {:?}", shown(at)));
                };
                if text.get(close + 1..close + 3) != Some(b"\r\n") || close + 3 + size > text.len() {
                    return Err(format!("a literal without its CRLF or octets near {:?}", shown(at)));
                }
                at = close + 3 + size;
                continue;
            }
            octet if octet.is_ascii_alphanumeric() => {}
            other => return Err(format!("an unexpected {:?} near {:?}", other as char, shown(at))),
        }
        at += 1;
    }
    if depth != 0 {
        return Err(format!("{depth} unclosed '('"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_replies_are_read_and_broken_framing_is_caught() {
        let good = b"220 mx ESMTP\r\n250-mx\r\n250 8BITMIME\r\n501 5.5.4 Syntax\r\n";
        assert_eq!(smtp_replies(good), Ok(vec![220, 250, 501]));
        assert_eq!(smtp_replies(b"220 mx\r\n220 2.0.0 Ready\r\n\x16\x03garbage"), Ok(vec![220, 220]));
        assert!(smtp_replies(b"220 mx\r\n250 ok").is_err());
        assert!(smtp_replies(b"250-a\r\n251 b\r\n").is_err());
        assert!(smtp_replies(b"550 2.0.0 mixed classes\r\n").is_err());
        assert!(smtp_replies(format!("500 {}\r\n", "x".repeat(600)).as_bytes()).is_err());
    }

    #[test]
    fn imap_responses_splice_literals_and_catch_broken_framing() {
        let good = b"* OK ready\r\n* 1 FETCH (BODY[] {5}\r\na\r\nbc)\r\n+ go on\r\na1 OK done\r\n";
        let responses = imap_responses(good).expect("well framed");
        assert_eq!(responses.len(), 4);
        assert_eq!(responses[3], Response::Tagged { tag: "a1".into(), status: "OK".into() });
        assert!(imap_responses(b"* 1 FETCH (BODY[] {9}\r\nab)\r\n").is_err());
        assert!(imap_responses(b"a1 MAYBE\r\n").is_err());
        assert!(imap_responses(b"* OK\r\na1 OK").is_err());
        assert!(imap_responses(b"s OK Begin TLS negotiation now\r\n\x15\x03").is_ok());
    }

    #[test]
    fn imap_values_must_balance_and_keep_line_breaks_in_literals() {
        assert!(imap_value(b"(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 5 1)").is_ok());
        assert!(imap_value(b"(NIL {3}\r\na\r\n)").is_ok());
        assert!(imap_value(b"(\"a\\\"b\")").is_ok());
        assert!(imap_value(b"((NIL)").is_err());
        assert!(imap_value(b"(\"a\r\nb\")").is_err());
        assert!(imap_value(b"(\"a\\b\")").is_err());
    }
}
