//! SEARCH, SORT and THREAD beyond imap-codec: RETURN options (RFC 4731, ESORT of RFC 5267)
//! with PARTIAL windows (RFC 9394), and the search keys SAVEDBEFORE, SAVEDON, SAVEDSINCE,
//! SAVEDATESUPPORTED (RFC 8514), EMAILID and THREADID (RFC 8474).

use super::{Cursor, Extension};

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
    /// `$`, or `UID $`: the saved search result (RFC 5182 §2.2).
    SavedResult,
}

impl SearchExtra {
    /// Whether the key is matched against the message's metadata (its save date, its EMAILID).
    pub fn needs_meta(&self) -> bool {
        matches!(
            self,
            SearchExtra::SavedBefore(_)
                | SearchExtra::SavedOn(_)
                | SearchExtra::SavedSince(_)
                | SearchExtra::EmailId(_)
        )
    }
}

/// The prefix of the stand-in header field name of a [`SearchExtra`].
pub const SEARCH_EXTRA_FIELD: &str = "kubemail:";

/// ESEARCH result options (RFC 4731 §3.1, RFC 9394 §3.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SearchReturn {
    pub min: bool,
    pub max: bool,
    pub all: bool,
    pub count: bool,
    pub partial: Option<PartialRange>,
    /// SAVE (RFC 5182 §2.1): the result is kept as `$` for later commands.
    pub save: bool,
    /// UPDATE (RFC 5267 §4.3): the client is told how the result changes.
    pub update: bool,
}

impl SearchReturn {
    /// Whether anything is to be answered: SAVE alone answers nothing (RFC 5182 §2.1), UPDATE
    /// alone an ESEARCH with the tag only.
    pub fn answers(&self) -> bool {
        self.min || self.max || self.all || self.count || self.partial.is_some() || self.update
    }
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

/// `SEARCH [RETURN (options)] criteria`, `SORT [RETURN (options)] (keys) charset criteria`
/// and `THREAD algorithm charset criteria`, with RETURN taken out and the keys imap-codec
/// lacks replaced by their stand-ins.
pub(super) fn search(
    cursor: &mut Cursor<'_>,
    tag: &[u8],
    uid: bool,
    command: &str,
) -> Result<Option<(Vec<u8>, Extension)>, &'static str> {
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
            b"SAVE" => options.save = true,
            b"UPDATE" => options.update = true,
            _ => return Err("Unknown SEARCH RETURN option"),
        }
    }
    if options.all && options.partial.is_some() {
        // RFC 9394 §3.1: the two ask for different answers.
        return Err("PARTIAL and ALL cannot be combined");
    }
    // RETURN () means ALL (RFC 4731 §3.1); RETURN (SAVE) means nothing more.
    if !(options.answers() || options.save) {
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
        b"$" => SearchExtra::SavedResult,
        b"UID"
            if cursor.rest().starts_with(b" $") && matches!(cursor.rest().get(2), None | Some(b' ' | b')' | b'\r')) =>
        {
            cursor.at += 2;
            SearchExtra::SavedResult
        }
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
    let valid = (1..=255).contains(&text.len())
        && text.iter().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_'));
    if !valid {
        return Err("Malformed object identifier");
    }
    Ok(String::from_utf8_lossy(text).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extended_syntax::{Extension, rewrite, rewritten};
    #[test]
    fn search_return_options_are_taken_out() {
        let (command, extension) = rewritten("a UID SEARCH RETURN (MIN count) UNSEEN\r\n");
        assert_eq!(command, "a UID SEARCH UNSEEN\r\n");
        assert_eq!(extension, returning(SearchReturn { min: true, count: true, ..Default::default() }));
        let (_, extension) = rewritten("b SEARCH RETURN () ALL\r\n");
        assert_eq!(extension, returning(SearchReturn { all: true, ..Default::default() }));
        let (_, extension) = rewritten("c SEARCH RETURN (SAVE) ALL\r\n");
        assert_eq!(
            extension,
            returning(SearchReturn { save: true, ..Default::default() }),
            "SAVE alone answers nothing"
        );
        let (command, extension) = rewritten("c UID SEARCH UID $ OR $ (UID $)\r\n");
        assert_eq!(
            command,
            "c UID SEARCH HEADER kubemail:0 \"\" OR HEADER kubemail:1 \"\" (HEADER kubemail:2 \"\")\r\n"
        );
        assert_eq!(extension, Extension::Search { returns: None, keys: vec![SearchExtra::SavedResult; 3] });
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
        assert_eq!(
            extension,
            Extension::Search { returns: Some(SearchReturn { count: true, ..Default::default() }), keys }
        );
        let (command, extension) =
            rewritten("t THREAD REFERENCES UTF-8 SAVEDATESUPPORTED MODSEQ \"/flags/\\\\Seen\" all 5\r\n");
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
}
