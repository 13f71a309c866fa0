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

use std::ops::Range;

use imap_codec::imap_types::status::StatusDataItemName;

/// Options of a command beyond what imap-codec parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Extension {
    List(ListOptions),
    /// SEARCH, SORT or THREAD: the RETURN options (SEARCH and SORT only) and the search keys
    /// imap-codec does not parse, each standing in the criteria as `HEADER kubemail:N ""`, N
    /// its index in `keys`. No message has a header field whose name holds a colon (RFC 5322
    /// §3.6.8), so the stand-in can mean nothing else.
    Search { returns: Option<SearchReturn>, keys: Vec<SearchExtra> },
    /// UNAUTHENTICATE, carried by a NOOP.
    Unauthenticate,
    /// CREATE's USE parameter: the special-use attributes asked for, as written.
    CreateUse(Vec<String>),
    /// MULTIAPPEND: the messages after the first, each rewritten as an APPEND of its own to the
    /// same mailbox (`tag APPEND mailbox [flags] [date] literal`), for imap-codec to read.
    MoreMessages(Vec<Vec<u8>>),
    /// FETCH items beyond imap-codec's, taken out of the item list. When nothing else was
    /// asked for, `UID` stands in for the list and `placeholder` says so.
    Fetch { extra: Vec<FetchExtra>, placeholder: bool },
    /// STATUS with MAILBOXID (RFC 8474 §4.2), taken out of the item list. When nothing else
    /// was asked for, `MESSAGES` stands in for the list and `placeholder` says so.
    StatusMailboxId { placeholder: bool },
}

/// A search key imap-codec does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SearchExtra {
    /// SAVEDBEFORE, SAVEDON and SAVEDSINCE (RFC 8514 §4): the save date against a day, given
    /// as days since 1970-01-01.
    SavedBefore(i64),
    SavedOn(i64),
    SavedSince(i64),
    /// SAVEDATESUPPORTED (RFC 8514 §4): every message, as every mailbox keeps save dates.
    SaveDateSupported,
    /// EMAILID and THREADID (RFC 8474 §6).
    EmailId(String),
    ThreadId(String),
}

/// The prefix of the stand-in header field name of a [`SearchExtra`].
pub const SEARCH_EXTRA_FIELD: &str = "kubemail:";

/// A FETCH item imap-codec does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FetchExtra {
    /// PREVIEW, or PREVIEW (LAZY) (RFC 8970).
    Preview,
    /// SAVEDATE (RFC 8514).
    SaveDate,
    /// EMAILID (RFC 8474).
    EmailId,
    /// THREADID (RFC 8474).
    ThreadId,
}

/// LIST-EXTENDED selection and return options (RFC 5258 §3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Selection SUBSCRIBED: subscribed mailboxes only (implies returning \Subscribed).
    pub subscribed_only: bool,
    /// Selection SPECIAL-USE: mailboxes with a special use only (RFC 6154 §5.1).
    pub special_use_only: bool,
    /// Selection RECURSIVEMATCH: a parent whose children match the selection is listed with
    /// CHILDINFO.
    pub recursive_match: bool,
    /// Return SUBSCRIBED: \Subscribed on the subscribed mailboxes.
    pub return_subscribed: bool,
    /// Return STATUS (RFC 5819): a STATUS response after each selectable mailbox.
    pub status: Vec<StatusDataItemName>,
    /// MAILBOXID among the STATUS items (RFC 8474 §4.2).
    pub status_mailbox_id: bool,
    /// Patterns after the first, in wire form (LIST reference (pattern pattern …)).
    pub more_patterns: Vec<Vec<u8>>,
}

/// ESEARCH result options (RFC 4731 §3.1, RFC 9394 §3.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchReturn {
    pub min: bool,
    pub max: bool,
    pub all: bool,
    pub count: bool,
    pub partial: Option<PartialRange>,
}

/// PARTIAL's window on a result (RFC 9394 §3.1): positions from 1, counted from the first
/// result, or from the last when negative (`-1:-100` is the last hundred).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartialRange {
    /// The lower position, as written (negative from the end).
    pub low: i64,
    /// The higher position, as written.
    pub high: i64,
}

impl PartialRange {
    /// `first:last` or `-first:-last`, in either order; zero and mixed signs are refused.
    fn parse(text: &[u8]) -> Option<PartialRange> {
        let text = std::str::from_utf8(text).ok()?;
        let (a, b) = text.split_once(':')?;
        let number = |part: &str| -> Option<i64> {
            let (negative, digits) = part.strip_prefix('-').map_or((false, part), |rest| (true, rest));
            if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
                return None;
            }
            let value: u32 = digits.parse().ok().filter(|&value| value != 0)?;
            Some(if negative { -i64::from(value) } else { i64::from(value) })
        };
        let (a, b) = (number(a)?, number(b)?);
        if (a < 0) != (b < 0) {
            return None;
        }
        // -1:-100 and 100:1 name the same window as -100:-1 and 1:100.
        let (low, high) = if a.abs() <= b.abs() { (a, b) } else { (b, a) };
        Some(PartialRange { low, high })
    }

    /// The indexes of a result of `len` items that the window covers.
    pub fn window(&self, len: usize) -> std::ops::Range<usize> {
        let len = len as i64;
        let (start, end) = if self.low > 0 {
            (self.low - 1, self.high)
        } else {
            // -1 is the last item; -high.. counts further back.
            (len + self.high, len + self.low + 1)
        };
        let clamp = |at: i64| at.clamp(0, len) as usize;
        clamp(start)..clamp(end).max(clamp(start))
    }

    /// The window as the answer repeats it.
    pub fn wire(&self) -> String {
        format!("{}:{}", self.low, self.high)
    }
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
    let searches = ["SEARCH", "SORT", "THREAD"].into_iter().find(|command| name.eq_ignore_ascii_case(command.as_bytes()));
    if let Some(command) = searches {
        search(&mut cursor, &tag, uid, command)
    } else if name.eq_ignore_ascii_case(b"LIST") && !uid {
        list(&mut cursor, &tag)
    } else if name.eq_ignore_ascii_case(b"CREATE") && !uid {
        create(&mut cursor, &tag)
    } else if name.eq_ignore_ascii_case(b"STATUS") && !uid {
        status(&mut cursor, &tag)
    } else if name.eq_ignore_ascii_case(b"FETCH") {
        fetch(&mut cursor, &tag, uid)
    } else if name.eq_ignore_ascii_case(b"APPEND") && !uid {
        append(&mut cursor, &tag)
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

/// `SEARCH [RETURN (options)] criteria`, `SORT [RETURN (options)] (keys) charset criteria`
/// and `THREAD algorithm charset criteria`, with RETURN taken out and the keys imap-codec
/// lacks replaced by their stand-ins.
fn search(cursor: &mut Cursor<'_>, tag: &[u8], uid: bool, command: &str) -> Result<Option<(Vec<u8>, Extension)>, &'static str> {
    cursor.space().ok_or("Expected search criteria")?;
    let start = cursor.at;
    let returns = if command != "THREAD" && cursor.atom().is_some_and(|word| word.eq_ignore_ascii_case(b"RETURN")) {
        cursor.space().ok_or("Expected RETURN options")?;
        let returns = search_return(cursor)?;
        cursor.space().ok_or("Expected search criteria")?;
        Some(returns)
    } else {
        cursor.at = start;
        None
    };
    let mut criteria = Vec::new();
    // What SORT and THREAD take before the search criteria: sort keys or the algorithm, then
    // the charset.
    if command != "SEARCH" {
        let start = cursor.at;
        match command {
            "SORT" => cursor.list(Cursor::atom).map(drop).ok_or("Expected sort keys in parentheses")?,
            _ => cursor.atom().map(drop).ok_or("Expected a threading algorithm")?,
        }
        cursor.space().ok_or("Expected a charset")?;
        cursor.astring().ok_or("Expected a charset")?;
        criteria.extend_from_slice(&cursor.bytes[start..cursor.at]);
    }
    let mut keys = Vec::new();
    while !cursor.at_end() {
        if !criteria.is_empty() {
            cursor.space().ok_or("Malformed search criteria")?;
            criteria.push(b' ');
        }
        search_key(cursor, &mut criteria, &mut keys)?;
    }
    if returns.is_none() && keys.is_empty() {
        return Ok(None);
    }
    let mut rewritten = tag.to_vec();
    rewritten.extend_from_slice(if uid { b" UID " } else { b" " });
    rewritten.extend_from_slice(command.as_bytes());
    rewritten.push(b' ');
    rewritten.extend_from_slice(&criteria);
    rewritten.extend_from_slice(b"\r\n");
    Ok(Some((rewritten, Extension::Search { returns, keys })))
}

/// `(option option …)` of SEARCH or SORT RETURN.
fn search_return(cursor: &mut Cursor<'_>) -> Result<SearchReturn, &'static str> {
    let mut options = SearchReturn::default();
    let words = cursor.list(Cursor::atom).ok_or("Expected RETURN options in parentheses")?;
    let mut words = words.into_iter();
    while let Some(option) = words.next() {
        match option.to_ascii_uppercase().as_slice() {
            b"MIN" => options.min = true,
            b"MAX" => options.max = true,
            b"ALL" => options.all = true,
            b"COUNT" => options.count = true,
            b"PARTIAL" if options.partial.is_none() => {
                let range = words.next().ok_or("Expected a PARTIAL range")?;
                options.partial = Some(PartialRange::parse(range).ok_or("Malformed PARTIAL range")?);
            }
            b"PARTIAL" => return Err("PARTIAL may be given once"),
            // A hint that the client will page through the result (RFC 5267 §4.2).
            b"CONTEXT" => {}
            b"SAVE" => return Err("SEARCH RETURN (SAVE) is not supported"),
            _ => return Err("Unknown SEARCH RETURN option"),
        }
    }
    if options.all && options.partial.is_some() {
        // RFC 9394 §3.1: the two ask for different answers.
        return Err("PARTIAL and ALL cannot be combined");
    }
    // RETURN () means ALL (RFC 4731 §3.1).
    if !(options.min || options.max || options.count || options.partial.is_some()) {
        options.all = true;
    }
    Ok(options)
}

/// Copies one search key (with its arguments, or a parenthesized list of keys) from `cursor`
/// to `out`, a key of [`SearchExtra`] as its stand-in.
fn search_key(cursor: &mut Cursor<'_>, out: &mut Vec<u8>, keys: &mut Vec<SearchExtra>) -> Result<(), &'static str> {
    if cursor.open().is_some() {
        out.push(b'(');
        while cursor.peek() != Some(b')') {
            if out.last() != Some(&b'(') {
                cursor.space().ok_or("Malformed search key list")?;
                out.push(b' ');
            }
            search_key(cursor, out, keys)?;
        }
        cursor.at += 1;
        out.push(b')');
        return Ok(());
    }
    let word = cursor.atom().ok_or("Malformed search key")?;
    let argument = |cursor: &mut Cursor<'_>| -> Result<Vec<u8>, &'static str> {
        cursor.space().ok_or("Expected a search key argument")?;
        let range = cursor.astring().ok_or("Expected a search key argument")?;
        Ok(cursor.value(range))
    };
    let extra = match word.to_ascii_uppercase().as_slice() {
        b"SAVEDBEFORE" => SearchExtra::SavedBefore(search_day(&argument(cursor)?)?),
        b"SAVEDON" => SearchExtra::SavedOn(search_day(&argument(cursor)?)?),
        b"SAVEDSINCE" => SearchExtra::SavedSince(search_day(&argument(cursor)?)?),
        b"SAVEDATESUPPORTED" => SearchExtra::SaveDateSupported,
        b"EMAILID" => SearchExtra::EmailId(object_id(&argument(cursor)?)?),
        b"THREADID" => SearchExtra::ThreadId(object_id(&argument(cursor)?)?),
        upper => {
            out.extend_from_slice(word);
            let arguments = match upper {
                b"NOT" | b"OR" => {
                    for _ in 0..if upper == b"OR" { 2 } else { 1 } {
                        cursor.space().ok_or("Expected a search key")?;
                        out.push(b' ');
                        search_key(cursor, out, keys)?;
                    }
                    0
                }
                b"HEADER" => 2,
                // MODSEQ ["/flags/name" type] value (RFC 7162 §3.1.5).
                b"MODSEQ" if cursor.rest().get(1) == Some(&b'"') => 3,
                b"BCC" | b"BEFORE" | b"BODY" | b"CC" | b"FROM" | b"KEYWORD" | b"LARGER" | b"ON" | b"SENTBEFORE"
                | b"SENTON" | b"SENTSINCE" | b"SINCE" | b"SMALLER" | b"SUBJECT" | b"TEXT" | b"TO" | b"UID"
                | b"UNKEYWORD" | b"OLDER" | b"YOUNGER" | b"MODSEQ" | b"CHARSET" => 1,
                _ => 0,
            };
            for _ in 0..arguments {
                cursor.space().ok_or("Expected a search key argument")?;
                let range = cursor.astring().ok_or("Expected a search key argument")?;
                out.push(b' ');
                out.extend_from_slice(&cursor.bytes[range]);
            }
            return Ok(());
        }
    };
    out.extend_from_slice(format!("HEADER {SEARCH_EXTRA_FIELD}{} \"\"", keys.len()).as_bytes());
    keys.push(extra);
    Ok(())
}

/// A search date (`1-Feb-2026`, RFC 9051 §9) as days since 1970-01-01.
fn search_day(text: &[u8]) -> Result<i64, &'static str> {
    const MONTHS: [&str; 12] = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"];
    let malformed = "Malformed date";
    let text = std::str::from_utf8(text).map_err(|_| malformed)?;
    let mut parts = text.split('-');
    let (Some(day), Some(month), Some(year), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(malformed);
    };
    if day.is_empty() || !day.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(malformed);
    }
    let day: i64 = day.parse().ok().filter(|day| (1..=31).contains(day)).ok_or(malformed)?;
    let month = MONTHS.iter().position(|name| name.eq_ignore_ascii_case(month)).ok_or(malformed)? as i64 + 1;
    let year: i64 = year.parse().ok().filter(|_| year.len() == 4).ok_or(malformed)?;
    Ok(kubemail_runtime::clock::days_from_civil(year, month, day))
}

/// An object identifier (RFC 8474 §3): 1 to 255 of letters, digits, `-` and `_`.
fn object_id(text: &[u8]) -> Result<String, &'static str> {
    let valid = (1..=255).contains(&text.len()) && text.iter().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_'));
    if !valid {
        return Err("Malformed object identifier");
    }
    Ok(String::from_utf8_lossy(text).into_owned())
}

/// `APPEND mailbox message message …` with each message `[(flags)] ["date"] literal`: the
/// first stays in the rewritten command, the others travel as APPENDs of their own. One
/// message is left to imap-codec.
fn append(cursor: &mut Cursor<'_>, tag: &[u8]) -> Result<Option<(Vec<u8>, Extension)>, &'static str> {
    cursor.space().ok_or("Expected a mailbox name")?;
    let mailbox = cursor.astring().ok_or("Expected a mailbox name")?;
    let mut messages = Vec::new();
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
        if cursor.peek() == Some(b'~') {
            cursor.at += 1;
        }
        if cursor.peek() != Some(b'{') {
            return Err("Expected a message literal");
        }
        cursor.astring().ok_or("Malformed message literal")?;
        messages.push(start..cursor.at);
    }
    if !cursor.at_end() {
        return Err("Unexpected text after the APPEND messages");
    }
    if messages.len() < 2 {
        return Ok(None);
    }
    let command = |message: &Range<usize>| {
        let mut command = tag.to_vec();
        command.extend_from_slice(b" APPEND ");
        command.extend_from_slice(&cursor.bytes[mailbox.clone()]);
        command.push(b' ');
        command.extend_from_slice(&cursor.bytes[message.clone()]);
        command.extend_from_slice(b"\r\n");
        command
    };
    let more = messages[1..].iter().map(command).collect();
    Ok(Some((command(&messages[0]), Extension::MoreMessages(more))))
}

/// `FETCH set items [modifiers]` whose items include one of [`FetchExtra`].
fn fetch(cursor: &mut Cursor<'_>, tag: &[u8], uid: bool) -> Result<Option<(Vec<u8>, Extension)>, &'static str> {
    cursor.space().ok_or("Expected a sequence set")?;
    let set = cursor.atom().ok_or("Expected a sequence set")?;
    cursor.space().ok_or("Expected FETCH items")?;
    let listed = cursor.peek() == Some(b'(');
    if listed {
        cursor.at += 1;
    }
    let (mut kept, mut extra) = (Vec::new(), Vec::new());
    loop {
        let item = cursor.fetch_item().ok_or("Malformed FETCH item")?;
        let known = match item.to_ascii_uppercase().as_slice() {
            b"PREVIEW" => Some(FetchExtra::Preview),
            b"SAVEDATE" => Some(FetchExtra::SaveDate),
            b"EMAILID" => Some(FetchExtra::EmailId),
            b"THREADID" => Some(FetchExtra::ThreadId),
            _ => None,
        };
        match known {
            Some(FetchExtra::Preview) if cursor.rest().len() > 1 && cursor.rest()[1] == b'(' => {
                // PREVIEW (LAZY): the preview is made here at once, so LAZY changes nothing.
                cursor.space().ok_or("Malformed PREVIEW modifiers")?;
                for modifier in cursor.list(Cursor::atom).ok_or("Malformed PREVIEW modifiers")? {
                    if !modifier.eq_ignore_ascii_case(b"LAZY") {
                        return Err("Unknown PREVIEW modifier");
                    }
                }
                extra.push(FetchExtra::Preview);
            }
            Some(known) => extra.push(known),
            None => kept.push(item),
        }
        if !listed || cursor.peek() == Some(b')') {
            break;
        }
        cursor.space().ok_or("Malformed FETCH items")?;
    }
    if listed {
        cursor.at += 1;
    }
    if extra.is_empty() {
        return Ok(None);
    }
    let placeholder = kept.is_empty();
    let mut rewritten = tag.to_vec();
    rewritten.extend_from_slice(if uid { b" UID FETCH " } else { b" FETCH " });
    rewritten.extend_from_slice(set);
    rewritten.extend_from_slice(b" (");
    rewritten.extend_from_slice(&if placeholder { b"UID".to_vec() } else { kept.join(&b' ') });
    rewritten.push(b')');
    rewritten.extend_from_slice(cursor.rest());
    Ok(Some((rewritten, Extension::Fetch { extra, placeholder })))
}

/// `STATUS mailbox (items)` whose items include MAILBOXID.
fn status(cursor: &mut Cursor<'_>, tag: &[u8]) -> Result<Option<(Vec<u8>, Extension)>, &'static str> {
    cursor.space().ok_or("Expected a mailbox name")?;
    let mailbox = cursor.astring().ok_or("Expected a mailbox name")?;
    cursor.space().ok_or("Expected STATUS items")?;
    let items = cursor.list(Cursor::atom).ok_or("Expected STATUS items in parentheses")?;
    if !cursor.at_end() {
        return Err("Unexpected text after the STATUS items");
    }
    let (ids, kept): (Vec<&[u8]>, Vec<&[u8]>) = items.into_iter().partition(|item| item.eq_ignore_ascii_case(b"MAILBOXID"));
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

/// `CREATE mailbox (USE (attributes))`.
fn create(cursor: &mut Cursor<'_>, tag: &[u8]) -> Result<Option<(Vec<u8>, Extension)>, &'static str> {
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

/// `LIST [(selection)] reference pattern-or-patterns [RETURN (options)]`.
fn list(cursor: &mut Cursor<'_>, tag: &[u8]) -> Result<Option<(Vec<u8>, Extension)>, &'static str> {
    cursor.space().ok_or("Expected a reference name")?;
    let mut options = ListOptions::default();
    if cursor.peek() == Some(b'(') {
        for option in cursor.list(Cursor::atom).ok_or("Malformed LIST selection options")? {
            match option.to_ascii_uppercase().as_slice() {
                b"SUBSCRIBED" => {
                    options.subscribed_only = true;
                    options.return_subscribed = true;
                }
                b"SPECIAL-USE" => options.special_use_only = true,
                b"RECURSIVEMATCH" => options.recursive_match = true,
                // Only local mailboxes exist here (RFC 5258 §3.1).
                b"REMOTE" => {}
                _ => return Err("Unknown LIST selection option"),
            }
        }
        cursor.space().ok_or("Expected a reference name")?;
    }
    if options.recursive_match && !options.subscribed_only && !options.special_use_only {
        // RFC 5258 §3.1: RECURSIVEMATCH alone is an error.
        return Err("RECURSIVEMATCH needs another selection option");
    }
    let reference = cursor.astring().ok_or("Expected a reference name")?;
    cursor.space().ok_or("Expected a mailbox pattern")?;
    let patterns = if cursor.peek() == Some(b'(') {
        cursor.list(Cursor::astring).ok_or("Malformed LIST patterns")?
    } else {
        vec![cursor.astring().ok_or("Expected a mailbox pattern")?]
    };
    let first = patterns.first().ok_or("Expected at least one mailbox pattern")?.clone();
    if cursor.space().is_some() {
        if !cursor.atom().is_some_and(|word| word.eq_ignore_ascii_case(b"RETURN")) {
            return Err("Expected RETURN");
        }
        cursor.space().ok_or("Expected RETURN options")?;
        cursor.open().ok_or("Expected RETURN options in parentheses")?;
        while cursor.peek() != Some(b')') {
            let option = cursor.atom().ok_or("Malformed RETURN options")?;
            match option.to_ascii_uppercase().as_slice() {
                b"SUBSCRIBED" => options.return_subscribed = true,
                // Always returned: \HasChildren and the special-use attributes.
                b"CHILDREN" | b"SPECIAL-USE" => {}
                b"STATUS" => {
                    cursor.space().ok_or("Expected STATUS items")?;
                    for item in cursor.list(Cursor::atom).ok_or("Expected STATUS items in parentheses")? {
                        if item.eq_ignore_ascii_case(b"MAILBOXID") {
                            options.status_mailbox_id = true;
                            continue;
                        }
                        options.status.push(status_item(item).ok_or("Unknown STATUS item")?);
                    }
                }
                _ => return Err("Unknown LIST RETURN option"),
            }
            if cursor.peek() != Some(b')') {
                cursor.space().ok_or("Malformed RETURN options")?;
            }
        }
        cursor.at += 1;
    }
    if !cursor.at_end() {
        return Err("Unexpected text after the LIST command");
    }
    options.more_patterns = patterns[1..].iter().map(|range| cursor.value(range.clone())).collect();
    let mut rewritten = tag.to_vec();
    rewritten.extend_from_slice(b" LIST ");
    rewritten.extend_from_slice(&cursor.bytes[reference]);
    rewritten.push(b' ');
    rewritten.extend_from_slice(&cursor.bytes[first]);
    rewritten.extend_from_slice(b"\r\n");
    Ok(Some((rewritten, Extension::List(options))))
}

fn status_item(name: &[u8]) -> Option<StatusDataItemName> {
    Some(match name.to_ascii_uppercase().as_slice() {
        b"MESSAGES" => StatusDataItemName::Messages,
        b"UIDNEXT" => StatusDataItemName::UidNext,
        b"UIDVALIDITY" => StatusDataItemName::UidValidity,
        b"UNSEEN" => StatusDataItemName::Unseen,
        b"DELETED" => StatusDataItemName::Deleted,
        b"SIZE" => StatusDataItemName::Size,
        b"RECENT" => StatusDataItemName::Recent,
        b"HIGHESTMODSEQ" => StatusDataItemName::HighestModSeq,
        _ => return None,
    })
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

    /// One FETCH item as written: an atom that may carry a section in brackets, with spaces
    /// and parentheses inside (`BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.100>`).
    fn fetch_item(&mut self) -> Option<&'a [u8]> {
        let start = self.at;
        let mut depth = 0usize;
        while let Some(byte) = self.peek() {
            match byte {
                b'[' => depth += 1,
                b']' => depth = depth.checked_sub(1)?,
                b' ' | b'(' | b')' if depth == 0 => break,
                b'\r' | b'\n' => break,
                _ => {}
            }
            self.at += 1;
        }
        (self.at > start && depth == 0).then(|| &self.bytes[start..self.at])
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(command: &str) -> (String, Extension) {
        let (bytes, extension) = rewrite(command.as_bytes()).unwrap().unwrap();
        (String::from_utf8(bytes).unwrap(), extension)
    }

    #[test]
    fn create_use_is_taken_out() {
        let (command, extension) = rewritten("c CREATE \"My Stash\" (USE (\\Archive))\r\n");
        assert_eq!(command, "c CREATE \"My Stash\"\r\n");
        assert_eq!(extension, Extension::CreateUse(vec!["\\Archive".to_string()]));
        assert!(rewrite(b"c CREATE x (COLOUR (red))\r\n").is_err());
        assert!(rewrite(b"c CREATE x (USE \\Archive)\r\n").is_err());
    }

    #[test]
    fn multiappend_becomes_one_append_per_message() {
        let (command, extension) =
            rewritten("a APPEND Drafts (\\Seen) {3+}\r\none \"01-Jan-2026 10:00:00 +0000\" ~{3+}\r\ntwo {5+}\r\nthree\r\n");
        assert_eq!(command, "a APPEND Drafts (\\Seen) {3+}\r\none\r\n");
        let more = vec![
            b"a APPEND Drafts \"01-Jan-2026 10:00:00 +0000\" ~{3+}\r\ntwo\r\n".to_vec(),
            b"a APPEND Drafts {5+}\r\nthree\r\n".to_vec(),
        ];
        assert_eq!(extension, Extension::MoreMessages(more));
        assert_eq!(rewrite(b"a APPEND Drafts (\\Bogus) {3+}\r\none\r\n"), Ok(None), "one message is imap-codec's");
        assert_eq!(rewrite(b"a APPEND Drafts {3+}\r\none junk\r\n"), Err("Expected a message literal"));
    }

    #[test]
    fn fetch_items_imap_codec_lacks_are_taken_out() {
        let (command, extension) =
            rewritten("f UID FETCH 1:* (FLAGS PREVIEW (LAZY) BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10> EMAILID) (CHANGEDSINCE 5)\r\n");
        assert_eq!(command, "f UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10>) (CHANGEDSINCE 5)\r\n");
        let extra = vec![FetchExtra::Preview, FetchExtra::EmailId];
        assert_eq!(extension, Extension::Fetch { extra, placeholder: false });
        let (command, extension) = rewritten("g FETCH 2 savedate\r\n");
        assert_eq!(command, "g FETCH 2 (UID)\r\n");
        assert_eq!(extension, Extension::Fetch { extra: vec![FetchExtra::SaveDate], placeholder: true });
        assert_eq!(rewrite(b"h FETCH 1 (FLAGS BOGUS)\r\n"), Ok(None), "imap-codec's to refuse");
        assert_eq!(rewrite(b"h FETCH 1 (PREVIEW (EAGER))\r\n"), Err("Unknown PREVIEW modifier"));
    }

    #[test]
    fn status_mailboxid_is_taken_out() {
        let (command, extension) = rewritten("s STATUS Sent (MESSAGES MAILBOXID)\r\n");
        assert_eq!((command.as_str(), extension), ("s STATUS Sent (MESSAGES)\r\n", Extension::StatusMailboxId { placeholder: false }));
        let (command, extension) = rewritten("s STATUS \"a b\" (mailboxid)\r\n");
        assert_eq!((command.as_str(), extension), ("s STATUS \"a b\" (MESSAGES)\r\n", Extension::StatusMailboxId { placeholder: true }));
        assert_eq!(rewrite(b"s STATUS Sent (BOGUS)\r\n"), Ok(None));
    }

    #[test]
    fn unauthenticate_travels_as_a_noop() {
        assert_eq!(rewritten("u UNAUTHENTICATE\r\n"), ("u NOOP\r\n".to_string(), Extension::Unauthenticate));
        assert!(rewrite(b"u UNAUTHENTICATE now\r\n").is_err());
    }

    #[test]
    fn search_return_options_are_taken_out() {
        let (command, extension) = rewritten("a UID SEARCH RETURN (MIN count) UNSEEN\r\n");
        assert_eq!(command, "a UID SEARCH UNSEEN\r\n");
        assert_eq!(extension, returning(SearchReturn { min: true, count: true, ..Default::default() }));
        let (_, extension) = rewritten("b SEARCH RETURN () ALL\r\n");
        assert_eq!(extension, returning(SearchReturn { all: true, ..Default::default() }));
        assert_eq!(rewrite(b"c SEARCH RETURN (SAVE) ALL\r\n"), Err("SEARCH RETURN (SAVE) is not supported"));
        assert_eq!(rewrite(b"c SEARCH RETURN (BOGUS) ALL\r\n"), Err("Unknown SEARCH RETURN option"));
        assert_eq!(rewrite(b"d SEARCH ALL\r\n"), Ok(None));
        assert_eq!(rewrite(b"c SEARCH RETURN (PARTIAL 1:10 ALL) ALL\r\n"), Err("PARTIAL and ALL cannot be combined"));
        for broken in ["0:10", "1:-5", "x:2", "5", "-0:-3"] {
            let command = format!("c SEARCH RETURN (PARTIAL {broken}) ALL\r\n");
            assert_eq!(rewrite(command.as_bytes()), Err("Malformed PARTIAL range"), "{broken}");
        }
        assert_eq!(rewrite(b"e FETCH 1 (FLAGS)\r\n"), Ok(None));
    }

    #[test]
    fn sort_return_and_partial_are_taken_out() {
        let (command, extension) = rewritten("a UID SORT RETURN (PARTIAL -1:-50 COUNT CONTEXT) (DATE) UTF-8 ALL\r\n");
        assert_eq!(command, "a UID SORT (DATE) UTF-8 ALL\r\n");
        let partial = Some(PartialRange { low: -1, high: -50 });
        assert_eq!(extension, returning(SearchReturn { count: true, partial, ..Default::default() }));
        let (_, extension) = rewritten("b SORT RETURN () (SUBJECT) UTF-8 ALL\r\n");
        assert_eq!(extension, returning(SearchReturn { all: true, ..Default::default() }));
    }

    fn returning(returns: SearchReturn) -> Extension {
        Extension::Search { returns: Some(returns), keys: Vec::new() }
    }

    #[test]
    fn search_keys_imap_codec_lacks_become_stand_ins() {
        let (command, extension) = rewritten(
            "a UID SEARCH RETURN (COUNT) OR SAVEDSINCE 1-Feb-2026 (EMAILID Mabc_1 NOT SUBJECT savedon) HEADER X \"SAVEDON\"\r\n",
        );
        assert_eq!(
            command,
            "a UID SEARCH OR HEADER kubemail:0 \"\" (HEADER kubemail:1 \"\" NOT SUBJECT savedon) HEADER X \"SAVEDON\"\r\n"
        );
        let keys = vec![SearchExtra::SavedSince(20485), SearchExtra::EmailId("Mabc_1".into())];
        assert_eq!(extension, Extension::Search { returns: Some(SearchReturn { count: true, ..Default::default() }), keys });
        let (command, extension) = rewritten("t THREAD REFERENCES UTF-8 SAVEDATESUPPORTED MODSEQ \"/flags/\\\\Seen\" all 5\r\n");
        assert_eq!(command, "t THREAD REFERENCES UTF-8 HEADER kubemail:0 \"\" MODSEQ \"/flags/\\\\Seen\" all 5\r\n");
        assert_eq!(extension, Extension::Search { returns: None, keys: vec![SearchExtra::SaveDateSupported] });
        assert_eq!(rewrite(b"s SORT (DATE) UTF-8 SAVEDON 31-Foo-2026\r\n"), Err("Malformed date"));
        assert_eq!(rewrite(b"s SEARCH EMAILID a.b\r\n"), Err("Malformed object identifier"));
        assert_eq!(rewrite(b"s SEARCH FROM bob\r\n"), Ok(None));
    }

    #[test]
    fn a_partial_window_counts_from_either_end() {
        let window = |text: &str, len| PartialRange::parse(text.as_bytes()).unwrap().window(len);
        assert_eq!(window("1:3", 10), 0..3);
        assert_eq!(window("3:1", 10), 0..3);
        assert_eq!(window("8:20", 10), 7..10);
        assert_eq!(window("11:20", 10), 10..10);
        assert_eq!(window("-1:-3", 10), 7..10);
        assert_eq!(window("-3:-1", 10), 7..10);
        assert_eq!(window("-5:-20", 10), 0..6);
        assert_eq!(window("-11:-20", 10), 0..0);
        assert_eq!(PartialRange::parse(b"-3:-1").unwrap().wire(), "-1:-3");
    }

    #[test]
    fn list_selection_patterns_and_return_options_are_taken_out() {
        let (command, extension) = rewritten(
            "a LIST (SUBSCRIBED RECURSIVEMATCH) \"\" (\"INBOX\" {4+}\r\nSe*t %) RETURN (CHILDREN STATUS (MESSAGES UNSEEN))\r\n",
        );
        assert_eq!(command, "a LIST \"\" \"INBOX\"\r\n");
        let Extension::List(options) = extension else { panic!("{extension:?}") };
        assert!(options.subscribed_only && options.return_subscribed && options.recursive_match);
        assert_eq!(options.status, [StatusDataItemName::Messages, StatusDataItemName::Unseen]);
        assert_eq!(options.more_patterns, [b"Se*t".to_vec(), b"%".to_vec()]);

        let (command, extension) = rewritten("b LIST \"\" {1}\r\n* RETURN (SPECIAL-USE SUBSCRIBED)\r\n");
        assert_eq!(command, "b LIST \"\" {1}\r\n*\r\n");
        assert_eq!(extension, Extension::List(ListOptions { return_subscribed: true, ..Default::default() }));
        let (command, extension) = rewritten("c LIST (SPECIAL-USE) \"\" \"a\\\"b\"\r\n");
        assert_eq!(command, "c LIST \"\" \"a\\\"b\"\r\n");
        assert_eq!(extension, Extension::List(ListOptions { special_use_only: true, ..Default::default() }));

        assert_eq!(
            rewrite(b"d LIST (RECURSIVEMATCH) \"\" *\r\n"),
            Err("RECURSIVEMATCH needs another selection option")
        );
        assert_eq!(rewrite(b"d LIST (BOGUS) \"\" *\r\n"), Err("Unknown LIST selection option"));
        assert_eq!(rewrite(b"d LIST \"\" * RETURN (STATUS (BOGUS))\r\n"), Err("Unknown STATUS item"));
        assert_eq!(rewrite(b"d LIST \"\" * RETURN (CHILDREN\r\n"), Err("Malformed RETURN options"));
        assert_eq!(rewrite(b"d LIST \"\" () \r\n"), Err("Expected at least one mailbox pattern"));
    }
}
