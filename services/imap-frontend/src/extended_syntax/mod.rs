//! Command syntax imap-codec does not parse yet: LIST-EXTENDED (RFC 5258, with the SPECIAL-USE
//! options of RFC 6154 and the STATUS return option of RFC 5819), SEARCH RETURN (RFC 4731,
//! RFC 9051 §6.4.4) and SORT RETURN (ESORT, RFC 5267) with PARTIAL (RFC 9394), CREATE with a
//! special use (RFC 6154 §3), UNAUTHENTICATE (RFC 8437), APPEND of several messages
//! (MULTIAPPEND, RFC 3502), the FETCH items PREVIEW (RFC 8970), SAVEDATE (RFC 8514), EMAILID
//! and THREADID, and the STATUS item MAILBOXID (RFC 8474).
//!
//! A command imap-codec refused is looked at once more here. If it is one of these, its
//! options are taken out and it is rewritten into the base command imap-codec parses (`LIST
//! reference pattern`, `SEARCH criteria`); the options travel beside it as an [`Extension`]. A
//! command with no base command (UNAUTHENTICATE) travels as a NOOP with its [`Extension`].
//! Strings keep their wire form (quoted, literal or atom), so the rewritten command reads them
//! exactly as the original would have been read.
//!
//! - [`search`]: SEARCH, SORT and THREAD — RETURN options, PARTIAL, the keys imap-codec lacks.
//! - [`fetch`]: FETCH items imap-codec lacks.
//! - [`append`]: MULTIAPPEND.
//! - [`list`]: LIST-EXTENDED and LIST-STATUS.
//! - [`status`]: STATUS MAILBOXID.
//! - [`create`]: CREATE with a special use.

mod append;
mod create;
mod fetch;
mod list;
mod search;
mod status;

use std::ops::Range;

pub use fetch::FetchExtra;
pub use list::ListOptions;
pub use search::{SEARCH_EXTRA_FIELD, SearchExtra, SearchReturn};

/// Options of a command beyond what imap-codec parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Extension {
    List(ListOptions),
    /// SEARCH, SORT or THREAD: the RETURN options (SEARCH and SORT only) and the search keys
    /// imap-codec does not parse, each standing in the criteria as `HEADER kubemail:N ""`, N
    /// its index in `keys`. No message has a header field whose name holds a colon (RFC 5322
    /// §3.6.8), so the stand-in can mean nothing else.
    Search {
        returns: Option<SearchReturn>,
        keys: Vec<SearchExtra>,
    },
    /// UNAUTHENTICATE, carried by a NOOP.
    Unauthenticate,
    /// CREATE's USE parameter: the special-use attributes asked for, as written.
    CreateUse(Vec<String>),
    /// MULTIAPPEND: the messages after the first, each rewritten as an APPEND of its own to the
    /// same mailbox (`tag APPEND mailbox [flags] [date] literal`), for imap-codec to read.
    MoreMessages(Vec<Vec<u8>>),
    /// FETCH items beyond imap-codec's, taken out of the item list. When nothing else was
    /// asked for, `UID` stands in for the list and `placeholder` says so.
    Fetch {
        extra: Vec<FetchExtra>,
        placeholder: bool,
    },
    /// STATUS with MAILBOXID (RFC 8474 §4.2), taken out of the item list. When nothing else
    /// was asked for, `MESSAGES` stands in for the list and `placeholder` says so.
    StatusMailboxId {
        placeholder: bool,
    },
}

/// `message` (a whole command with its literals) rewritten for imap-codec, with its options;
/// `Ok(None)` when it is none of the commands handled here, `Err` with the reason when it is
/// one but its options are wrong.
pub fn rewrite(message: &[u8]) -> Result<Option<(Vec<u8>, Extension)>, &'static str> {
    let mut cursor = Cursor { bytes: message, at: 0 };
    let Some(tag) = cursor.atom() else { return Ok(None) };
    let tag = tag.to_vec();
    if cursor.space().is_none() {
        return Ok(None);
    }
    let Some(mut name) = cursor.atom() else { return Ok(None) };
    let uid = name.eq_ignore_ascii_case(b"UID");
    if uid {
        if cursor.space().is_none() {
            return Ok(None);
        }
        let Some(next) = cursor.atom() else { return Ok(None) };
        name = next;
    }
    let searches =
        ["SEARCH", "SORT", "THREAD"].into_iter().find(|command| name.eq_ignore_ascii_case(command.as_bytes()));
    if let Some(command) = searches {
        search::search(&mut cursor, &tag, uid, command)
    } else if name.eq_ignore_ascii_case(b"LIST") && !uid {
        list::list(&mut cursor, &tag)
    } else if name.eq_ignore_ascii_case(b"CREATE") && !uid {
        create::create(&mut cursor, &tag)
    } else if name.eq_ignore_ascii_case(b"STATUS") && !uid {
        status::status(&mut cursor, &tag)
    } else if name.eq_ignore_ascii_case(b"FETCH") {
        fetch::fetch(&mut cursor, &tag, uid)
    } else if name.eq_ignore_ascii_case(b"APPEND") && !uid {
        append::append(&mut cursor, &tag)
    } else if name.eq_ignore_ascii_case(b"UNAUTHENTICATE") && !uid {
        if !cursor.at_end() {
            return Err("UNAUTHENTICATE takes no arguments");
        }
        let mut rewritten = tag;
        rewritten.extend_from_slice(b" NOOP\r\n");
        Ok(Some((rewritten, Extension::Unauthenticate)))
    } else {
        Ok(None)
    }
}

/// A reading position in a command.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn space(&mut self) -> Option<()> {
        (self.peek() == Some(b' ')).then(|| self.at += 1)
    }

    fn open(&mut self) -> Option<()> {
        (self.peek() == Some(b'(')).then(|| self.at += 1)
    }

    /// Whether only the final CRLF is left.
    fn at_end(&self) -> bool {
        &self.bytes[self.at..] == b"\r\n"
    }

    fn rest(&self) -> &'a [u8] {
        &self.bytes[self.at..]
    }

    /// A run of characters that are not spaces, parentheses, quotes, braces or line ends:
    /// atoms and the LIST wildcards.
    fn atom(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        while let Some(byte) = self.peek() {
            if matches!(byte, b' ' | b'(' | b')' | b'"' | b'{' | b'\r' | b'\n') || byte < 0x20 || byte == 0x7f {
                break;
            }
            self.at += 1;
        }
        (self.at > start).then(|| &self.bytes[start..self.at])
    }

    /// An atom, quoted string or literal; its range in the command, wire form included.
    fn astring(&mut self) -> Option<Range<usize>> {
        let start = self.at;
        match self.peek()? {
            b'"' => {
                self.at += 1;
                loop {
                    match self.peek()? {
                        b'\\' => self.at += 2,
                        b'"' => break,
                        b'\r' | b'\n' => return None,
                        _ => self.at += 1,
                    }
                }
                self.at += 1;
            }
            b'{' => {
                let close = self.bytes[self.at..].iter().position(|&byte| byte == b'}')? + self.at;
                let digits = std::str::from_utf8(&self.bytes[self.at + 1..close]).ok()?;
                let length: usize = digits.trim_end_matches('+').parse().ok()?;
                if self.bytes.get(close + 1..close + 3)? != b"\r\n" {
                    return None;
                }
                self.at = close + 3 + length;
                if self.at > self.bytes.len() {
                    return None;
                }
            }
            _ => {
                self.atom()?;
            }
        }
        Some(start..self.at)
    }

    /// The value of an astring whose wire form is `range`: unquoted, or a literal's octets.
    fn value(&self, range: Range<usize>) -> Vec<u8> {
        let wire = &self.bytes[range];
        match wire.first() {
            Some(b'"') => {
                let mut value = Vec::with_capacity(wire.len());
                let mut escaped = false;
                for &byte in &wire[1..wire.len() - 1] {
                    if byte == b'\\' && !escaped {
                        escaped = true;
                        continue;
                    }
                    escaped = false;
                    value.push(byte);
                }
                value
            }
            Some(b'{') => {
                let data = wire.iter().position(|&byte| byte == b'\n').map_or(wire.len(), |at| at + 1);
                wire[data..].to_vec()
            }
            _ => wire.to_vec(),
        }
    }

    /// `(item item …)`, possibly empty.
    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        self.open()?;
        let mut items = Vec::new();
        while self.peek() != Some(b')') {
            if !items.is_empty() {
                self.space()?;
            }
            items.push(item(self)?);
        }
        self.at += 1;
        Some(items)
    }
}

/// `command` rewritten, with its extension; panics when it is not rewritten.
#[cfg(test)]
fn rewritten(command: &str) -> (String, Extension) {
    let (bytes, extension) = rewrite(command.as_bytes()).unwrap().unwrap();
    (String::from_utf8(bytes).unwrap(), extension)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn unauthenticate_travels_as_a_noop() {
        assert_eq!(rewritten("u UNAUTHENTICATE\r\n"), ("u NOOP\r\n".to_string(), Extension::Unauthenticate));
        assert!(rewrite(b"u UNAUTHENTICATE now\r\n").is_err());
    }
}
