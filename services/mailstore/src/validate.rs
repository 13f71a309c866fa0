//! Checks on everything a client sends before it reaches SQL: addresses, domains, mailbox
//! names, keywords, UID ranges. Each check returns the normalised value or an
//! `INVALID_ARGUMENT` error whose message names the problem.

use kubemail_proto::mailstore::UidRange;

use crate::{Error, Result};

/// RFC 5321 §4.5.3.1.1: a local part has at most 64 octets.
const MAX_LOCAL_PART: usize = 64;
/// RFC 5321 §4.5.3.1.2: a domain has at most 255 octets; DNS limits it to 253 in text form.
const MAX_DOMAIN: usize = 253;
/// RFC 1035 §2.3.4: a label has at most 63 octets.
const MAX_LABEL: usize = 63;
/// Mailbox names are UTF-8; long names are hard on clients and on the database index.
const MAX_MAILBOX_NAME: usize = 512;
const MAX_MAILBOX_DEPTH: usize = 32;
/// The hierarchy separator of mailbox names.
pub const SEPARATOR: char = '/';
/// RFC 3501 §5.1: the name INBOX is case-insensitive.
pub const INBOX: &str = "INBOX";

/// A domain name, lower-cased: dot-separated labels of letters, digits and hyphens (no
/// leading or trailing hyphen). Non-ASCII letters are accepted for internationalised domains.
pub fn domain(input: &str) -> Result<String> {
    let name = input.trim_end_matches('.').to_lowercase();
    let problem = if name.is_empty() {
        Some("is empty".to_string())
    } else if name.len() > MAX_DOMAIN {
        Some(format!("is longer than {MAX_DOMAIN} octets"))
    } else {
        name.split('.').find_map(|label| {
            if label.is_empty() {
                Some("has an empty label".to_string())
            } else if label.len() > MAX_LABEL {
                Some(format!("has a label longer than {MAX_LABEL} octets"))
            } else if label.starts_with('-') || label.ends_with('-') {
                Some(format!("has a label starting or ending with '-' ({label})"))
            } else {
                label.chars().find(|c| !(c.is_alphanumeric() || *c == '-')).map(|c| format!("contains {c:?}"))
            }
        })
    };
    match problem {
        Some(problem) => Err(Error::invalid(format!("domain {input:?} {problem}"))),
        None => Ok(name),
    }
}

/// An email address `local@domain` (RFC 5321 dot-atom local part, UTF-8 allowed as in
/// RFC 6531), lower-cased as a whole: kubemail treats local parts case-insensitively, as
/// users expect. Returns (address, local part, domain).
pub fn address(input: &str) -> Result<(String, String, String)> {
    let invalid = |problem: &str| Error::invalid(format!("address {input:?} {problem}"));
    let (local, domain_part) = input.rsplit_once('@').ok_or_else(|| invalid("has no '@'"))?;
    if local.is_empty() {
        return Err(invalid("has an empty local part"));
    }
    if local.len() > MAX_LOCAL_PART {
        return Err(invalid("has a local part longer than 64 octets"));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(invalid("has a misplaced '.' in the local part"));
    }
    // RFC 5322 atext, plus any non-ASCII character (RFC 6531 UTF8-non-ascii).
    let atext = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c) || !c.is_ascii();
    if let Some(c) = local.chars().find(|c| !atext(*c) || c.is_control() || c.is_whitespace()) {
        return Err(invalid(&format!("contains {c:?} in the local part")));
    }
    let domain = domain(domain_part).map_err(|e| invalid(&format!("has a bad domain: {e}")))?;
    let local = local.to_lowercase();
    Ok((format!("{local}@{domain}"), local, domain))
}

/// A mailbox (folder) name: non-empty UTF-8 segments separated by `/`, without control
/// characters or the LIST wildcards `*` and `%`. `INBOX` (any case, also as the first segment
/// of a child) is normalised to upper case.
pub fn mailbox_name(input: &str) -> Result<String> {
    let invalid = |problem: &str| Error::invalid(format!("mailbox name {input:?} {problem}"));
    if input.is_empty() {
        return Err(invalid("is empty"));
    }
    if input.len() > MAX_MAILBOX_NAME {
        return Err(invalid(&format!("is longer than {MAX_MAILBOX_NAME} octets")));
    }
    if let Some(c) = input.chars().find(|c| c.is_control() || *c == '*' || *c == '%') {
        return Err(invalid(&format!("contains {c:?}")));
    }
    let segments: Vec<&str> = input.split(SEPARATOR).collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(invalid("has an empty hierarchy level"));
    }
    if segments.len() > MAX_MAILBOX_DEPTH {
        return Err(invalid(&format!("is nested deeper than {MAX_MAILBOX_DEPTH} levels")));
    }
    if segments[0].eq_ignore_ascii_case(INBOX) {
        let rest = &input[segments[0].len()..];
        return Ok(format!("{INBOX}{rest}"));
    }
    Ok(input.to_string())
}

/// RFC 6154 special-use attributes a mailbox may carry (without the backslash).
const SPECIAL_USES: &[&str] = &["All", "Archive", "Drafts", "Flagged", "Junk", "Sent", "Trash"];

/// A special-use attribute, with or without its backslash, any case; empty for none.
pub fn special_use(input: &str) -> Result<String> {
    let bare = input.strip_prefix('\\').unwrap_or(input);
    if bare.is_empty() {
        return Ok(String::new());
    }
    SPECIAL_USES
        .iter()
        .find(|known| known.eq_ignore_ascii_case(bare))
        .map(|known| known.to_string())
        .ok_or_else(|| Error::invalid(format!("unknown special-use attribute {input:?}")))
}

/// An IMAP keyword (RFC 3501 flag-keyword = atom): printable ASCII without atom-specials.
/// A METADATA entry name (RFC 5464 §3.2): `/private/…` or `/shared/…`, printable ASCII
/// without the LIST wildcards, no empty component; in lower case, as entry names are matched.
pub fn metadata_entry(input: &str) -> Result<String> {
    let name = input.to_ascii_lowercase();
    let scoped = ["/private/", "/shared/"].iter().any(|scope| name.starts_with(scope) && name.len() > scope.len());
    let printable = name.bytes().all(|byte| (0x21..0x7f).contains(&byte) && byte != b'*' && byte != b'%');
    if !scoped || !printable || name.contains("//") || name.ends_with('/') || name.len() > 1024 {
        return Err(Error::invalid(format!("{input:?} is not a METADATA entry name")));
    }
    Ok(name)
}

pub fn keyword(input: &str) -> Result<&str> {
    let special = |c: char| "(){ %*\"\\]".contains(c) || !c.is_ascii_graphic();
    if input.is_empty() || input.len() > 128 || input.chars().any(special) {
        return Err(Error::invalid(format!("invalid keyword {input:?}")));
    }
    Ok(input)
}

/// System flag bits in use (`SystemFlag` values OR-ed together).
pub const SYSTEM_FLAGS_MASK: u32 = 0b1_1111;

/// System flag bits; unknown bits are rejected rather than stored.
pub fn system_flags(bits: u32) -> Result<u32> {
    if bits & !SYSTEM_FLAGS_MASK != 0 {
        return Err(Error::invalid(format!("unknown system flag bits {:#x}", bits & !SYSTEM_FLAGS_MASK)));
    }
    Ok(bits)
}

/// A UID set: each range starts at 1 or above and does not end before it starts (`last` 0
/// means "*", the highest UID). Returns inclusive (first, last) pairs with "*" as u32::MAX.
pub fn uid_ranges(ranges: &[UidRange]) -> Result<Vec<(i64, i64)>> {
    ranges
        .iter()
        .map(|range| {
            let last = if range.last == 0 { u32::MAX } else { range.last };
            if range.first == 0 {
                Err(Error::invalid("UID ranges start at 1"))
            } else if last < range.first {
                Err(Error::invalid(format!(
                    "reversed UID range {}:{} (send it as {}:{})",
                    range.first, range.last, range.last, range.first
                )))
            } else {
                Ok((i64::from(range.first), i64::from(last)))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised_and_checked() {
        assert_eq!(address("Alice@Example.ORG").unwrap().0, "alice@example.org");
        assert_eq!(address("first.last+tag@mail.example.org").unwrap().1, "first.last+tag");
        assert_eq!(address("jörg@bücher.example").unwrap().2, "bücher.example");
        for bad in [
            "",
            "alice",
            "@example.org",
            "alice@",
            "a..b@example.org",
            ".a@example.org",
            "a b@example.org",
            "a\"b@example.org",
            "alice@exa mple.org",
            "alice@-x.org",
            "alice@x..org",
            "a<b>@example.org",
        ] {
            assert!(address(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(address(&format!("{}@example.org", "a".repeat(65))).is_err());
    }

    #[test]
    fn mailbox_names_are_normalised_and_checked() {
        assert_eq!(mailbox_name("inbox").unwrap(), "INBOX");
        assert_eq!(mailbox_name("Inbox/Lists").unwrap(), "INBOX/Lists");
        assert_eq!(mailbox_name("Archive/2026").unwrap(), "Archive/2026");
        assert_eq!(mailbox_name("Entwürfe").unwrap(), "Entwürfe");
        assert_eq!(mailbox_name("INBOXES").unwrap(), "INBOXES");
        for bad in ["", "/", "a//b", "a/", "/a", "a*", "a%b", "a\nb", "a\0b"] {
            assert!(mailbox_name(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn uid_ranges_must_ascend() {
        let range = |first, last| UidRange { first, last };
        assert_eq!(uid_ranges(&[range(1, 0)]).unwrap(), vec![(1, i64::from(u32::MAX))]);
        assert_eq!(uid_ranges(&[range(3, 3)]).unwrap(), vec![(3, 3)]);
        assert!(uid_ranges(&[range(5, 3)]).unwrap_err().to_string().contains("reversed"));
        assert!(uid_ranges(&[range(0, 3)]).is_err());
    }

    #[test]
    fn keywords_and_flags() {
        assert!(keyword("$Forwarded").is_ok());
        assert!(keyword("a b").is_err());
        assert!(keyword("\\Seen").is_err());
        assert!(system_flags(0b1_0001).is_ok());
        assert!(system_flags(0b10_0000).is_err());
        assert_eq!(special_use("\\sent").unwrap(), "Sent");
        assert!(special_use("Spam").is_err());
    }
}
