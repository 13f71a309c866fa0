//! Envelope addresses: the checks made on the path smtp-proto parsed, before any lookup.
//!
//! smtp-proto already strips source routes (`<@a,@b:user@c>` becomes `user@c`, RFC 5321 §4.1.2
//! says to ignore them) and unquotes quoted local parts. What remains is split at its last `@`
//! (so `"a@evil"@local` stays an address at `local`), the domain is lower-cased and checked,
//! and non-ASCII is allowed only in a transaction that declared SMTPUTF8 (RFC 6531).

use crate::reply::Reply;

/// Longest local part and domain (RFC 5321 §4.5.3.1.1 and §4.5.3.1.2).
const MAX_LOCAL_PART: usize = 64;
const MAX_DOMAIN: usize = 255;

/// A checked envelope address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub local: String,
    /// Lower-cased.
    pub domain: String,
}

impl Address {
    /// Checks `raw` (as smtp-proto returned it, never empty). `utf8` is whether the transaction
    /// declared SMTPUTF8; `role` names the address in replies ("sender" or "recipient").
    pub fn parse(raw: &str, utf8: bool, role: &str) -> Result<Address, Reply> {
        let bad = |why: &str| Reply::new(501, "5.1.3", format!("Bad {role} address syntax: {why}"));
        if !utf8 && !raw.is_ascii() {
            return Err(Reply::new(553, "5.6.7", format!("Non-ASCII {role} address requires SMTPUTF8")));
        }
        let (local, domain) = raw.rsplit_once('@').ok_or_else(|| bad("no domain"))?;
        if local.is_empty() || local.len() > MAX_LOCAL_PART {
            return Err(bad("local part empty or too long"));
        }
        if local.chars().any(char::is_control) {
            return Err(bad("control character in local part"));
        }
        if domain.is_empty() || domain.len() > MAX_DOMAIN || !domain.split('.').all(valid_label) {
            return Err(bad("invalid domain"));
        }
        Ok(Address { local: local.to_string(), domain: domain.to_lowercase() })
    }

    /// Whether the domain is `domain` (already lower-case).
    pub fn in_domain(&self, domain: &str) -> bool {
        self.domain == domain
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.local, self.domain)
    }
}

/// A DNS label: letters, digits and inner hyphens, 1 to 63 octets; non-ASCII letters (a
/// U-label) are allowed here, the SMTPUTF8 check comes first.
fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.chars().all(|c| c.is_alphanumeric() || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_at_sign_separates_the_domain() {
        let address = Address::parse("a@evil@Example.ORG", false, "recipient").unwrap();
        assert_eq!((address.local.as_str(), address.domain.as_str()), ("a@evil", "example.org"));
        assert_eq!(address.to_string(), "a@evil@example.org");
    }

    #[test]
    fn non_ascii_needs_smtputf8() {
        let refused = Address::parse("jörg@bücher.de", false, "recipient").unwrap_err();
        assert_eq!((refused.code, refused.status), (553, Some("5.6.7")));
        assert_eq!(Address::parse("jörg@BÜCHER.de", true, "recipient").unwrap().domain, "bücher.de");
    }

    #[test]
    fn malformed_addresses_get_501_5_1_3() {
        for raw in ["nodomain", "@example.org", "a@", "a@-bad.org", "a@exa mple.org", "a@example..org", "a\u{7}b@x.org"]
        {
            let refused = Address::parse(raw, true, "recipient").unwrap_err();
            assert_eq!((refused.code, refused.status), (501, Some("5.1.3")), "{raw}");
        }
        let long = format!("{}@example.org", "a".repeat(65));
        assert_eq!(Address::parse(&long, false, "sender").unwrap_err().code, 501);
    }
}
