//! Command syntax imap-codec does not parse yet: LIST-EXTENDED (RFC 5258, with the SPECIAL-USE
//! options of RFC 6154 and the STATUS return option of RFC 5819), SEARCH RETURN (RFC 4731,
//! RFC 9051 §6.4.4) and SORT RETURN (ESORT, RFC 5267) with PARTIAL (RFC 9394), CREATE with a
//! special use (RFC 6154 §3), UNAUTHENTICATE (RFC 8437), APPEND of several messages
//! (MULTIAPPEND, RFC 3502) and of parts (CATENATE, RFC 4469), the FETCH items PREVIEW (RFC 8970), SAVEDATE (RFC 8514), EMAILID
//! and THREADID, the STATUS item MAILBOXID (RFC 8474), and `$` (SEARCHRES, RFC 5182).
//!
//! A command imap-codec refused is looked at once more here. If it is one of these, its
//! options are taken out and it is rewritten into the base command imap-codec parses (`LIST
//! reference pattern`, `SEARCH criteria`); the options travel beside it as an [`Extension`]. A
//! command with no base command (UNAUTHENTICATE) travels as a NOOP with its [`Extension`].
//! Strings keep their wire form (quoted, literal or atom), so the rewritten command reads them
//! exactly as the original would have been read.
//!
//! - [`search`]: SEARCH, SORT and THREAD — RETURN options, PARTIAL, the keys imap-codec lacks.
//! - `$`, the saved search result (SEARCHRES, RFC 5182), as the message set of FETCH, STORE,
//!   COPY, MOVE and UID EXPUNGE: here.
//! - [`fetch`]: FETCH items imap-codec lacks.
//! - [`append`]: MULTIAPPEND and CATENATE.
//! - [`list`]: LIST-EXTENDED and LIST-STATUS.
//! - [`status`]: STATUS MAILBOXID.
//! - [`create`]: CREATE with a special use.
//! - [`notify`]: NOTIFY (RFC 5465), carried by a NOOP.

mod append;
mod create;
mod fetch;
mod list;
mod notify;
mod search;
mod status;

use std::ops::Range;

pub use append::{AppendMore, CatenatePart};
pub use fetch::FetchExtra;
pub use list::ListOptions;
pub use notify::{NotifyEvent, NotifyGroup, NotifyMailboxes, NotifySet};
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
    /// MULTIAPPEND's further messages, CATENATE's parts.
    Append(AppendMore),
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
    /// NOTIFY, carried by a NOOP: SET with its event groups, or NONE.
    Notify(Option<NotifySet>),
    /// CANCELUPDATE (RFC 5267 §4.3.5), carried by a NOOP: the tags of the searches to stop.
    CancelUpdate(Vec<String>),
}

/// A command rewritten for imap-codec.
#[derive(Debug, PartialEq, Eq)]
pub struct Rewritten {
    /// The command imap-codec reads.
    pub command: Vec<u8>,
    /// What it asks for beyond that command.
    pub extension: Option<Extension>,
    /// Its message set was `$`, the saved search result (RFC 5182 §2.2); a set imap-codec
    /// reads stands in for it.
    pub saved_result: bool,
}

/// The commands whose message set may be `$`, after their optional UID.
const SET_COMMANDS: [&str; 5] = ["FETCH", "STORE", "COPY", "MOVE", "EXPUNGE"];

/// `message` (a whole command with its literals) rewritten for imap-codec, with its options;
/// `Ok(None)` when it is none of the commands handled here, `Err` with the reason when it is
/// one but its options are wrong.
pub fn rewrite(message: &[u8]) -> Result<Option<Rewritten>, &'static str> {
    let replaced = saved_result_set(message);
    let command = replaced.as_deref().unwrap_or(message);
    let saved_result = replaced.is_some();
    Ok(match (rewrite_options(command)?, saved_result) {
        (Some((command, extension)), _) => Some(Rewritten { command, extension: Some(extension), saved_result }),
        (None, true) => Some(Rewritten { command: command.to_vec(), extension: None, saved_result }),
        (None, false) => None,
    })
}

/// `message` with `1` for the `$` that is its message set, if it is one of [`SET_COMMANDS`]
/// and its set is `$`.
fn saved_result_set(message: &[u8]) -> Option<Vec<u8>> {
    let mut cursor = Cursor { bytes: message, at: 0 };
    let (_, uid, name) = cursor.command_name()?;
    // EXPUNGE takes a set only as UID EXPUNGE (RFC 4315).
    if !SET_COMMANDS.iter().any(|command| name.eq_ignore_ascii_case(command.as_bytes()))
        || (name.eq_ignore_ascii_case(b"EXPUNGE") && !uid)
    {
        return None;
    }
    cursor.space()?;
    let set = cursor.at;
    if cursor.atom()? != b"$" {
        return None;
    }
    let mut replaced = message[..set].to_vec();
    replaced.push(b'1');
    replaced.extend_from_slice(&message[set + 1..]);
    Some(replaced)
}

/// The options of `message` taken out, when it is one of the commands with options handled here.
fn rewrite_options(message: &[u8]) -> Result<Option<(Vec<u8>, Extension)>, &'static str> {
    let mut cursor = Cursor { bytes: message, at: 0 };
    let Some((tag, uid, name)) = cursor.command_name() else { return Ok(None) };
    let tag = tag.to_vec();
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
    } else if name.eq_ignore_ascii_case(b"NOTIFY") && !uid {
        notify::notify(&mut cursor, &tag)
    } else if name.eq_ignore_ascii_case(b"CANCELUPDATE") && !uid {
        let mut tags = Vec::new();
        while cursor.space().is_some() {
            let range = cursor.astring().ok_or("Expected the tag of an UPDATE search")?;
            tags.push(String::from_utf8_lossy(&cursor.value(range)).into_owned());
        }
        if tags.is_empty() || !cursor.at_end() {
            return Err("Expected the tags of UPDATE searches");
        }
        let mut rewritten = tag;
        rewritten.extend_from_slice(b" NOOP\r\n");
        Ok(Some((rewritten, Extension::CancelUpdate(tags))))
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
    /// A command's tag, whether it is a UID command, and its name (after UID).
    fn command_name(&mut self) -> Option<(&'a [u8], bool, &'a [u8])> {
        let tag = self.atom()?;
        self.space()?;
        let mut name = self.atom()?;
        let uid = name.eq_ignore_ascii_case(b"UID");
        if uid {
            self.space()?;
            name = self.atom()?;
        }
        Some((tag, uid, name))
    }

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

/// `command` rewritten, with its extension; panics when it is not rewritten or has none.
#[cfg(test)]
fn rewritten(command: &str) -> (String, Extension) {
    let rewritten = rewrite(command.as_bytes()).unwrap().unwrap();
    (String::from_utf8(rewritten.command).unwrap(), rewritten.extension.unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn a_saved_result_as_the_message_set_is_marked() {
        for (command, expected) in [
            ("a UID FETCH $ (FLAGS)\r\n", "a UID FETCH 1 (FLAGS)\r\n"),
            ("b STORE $ +FLAGS (\\Seen)\r\n", "b STORE 1 +FLAGS (\\Seen)\r\n"),
            ("c MOVE $ Trash\r\n", "c MOVE 1 Trash\r\n"),
            ("d UID EXPUNGE $\r\n", "d UID EXPUNGE 1\r\n"),
        ] {
            let rewritten = rewrite(command.as_bytes()).unwrap().unwrap();
            assert_eq!(String::from_utf8(rewritten.command).unwrap(), expected);
            assert!(rewritten.saved_result && rewritten.extension.is_none(), "{command}");
        }
        let rewritten = rewrite(b"e FETCH $ (PREVIEW)\r\n").unwrap().unwrap();
        assert_eq!(rewritten.command, b"e FETCH 1 (UID)\r\n");
        assert!(rewritten.saved_result && rewritten.extension.is_some());
        assert_eq!(rewrite(b"f EXPUNGE $\r\n"), Ok(None));
        assert_eq!(rewrite(b"g FETCH $$ (FLAGS)\r\n"), Ok(None));
    }

    #[test]
    fn cancelupdate_lists_its_tags() {
        let (command, extension) = rewritten("c CANCELUPDATE \"B01\" B02\r\n");
        assert_eq!(command, "c NOOP\r\n");
        assert_eq!(extension, Extension::CancelUpdate(vec!["B01".into(), "B02".into()]));
        assert_eq!(rewrite(b"c CANCELUPDATE\r\n"), Err("Expected the tags of UPDATE searches"));
    }

    #[test]
    fn unauthenticate_travels_as_a_noop() {
        assert_eq!(rewritten("u UNAUTHENTICATE\r\n"), ("u NOOP\r\n".to_string(), Extension::Unauthenticate));
        assert!(rewrite(b"u UNAUTHENTICATE now\r\n").is_err());
    }
}
