//! What the NATS and the local transports accept and promise alike.
//!
//! Both implementations check their input here before touching a broker or a table, so a value
//! that NATS would refuse (or silently alter) is refused by `kubemail dev` too: code that works
//! on a laptop keeps working in production. Also here: NATS wildcard matching for the local
//! event bus, and the queue defaults both configurations start from.

use std::time::Duration;

use crate::{Error, Headers, Result};

/// How long a pulled message stays leased without [`crate::Lease::extend`]: long enough for one
/// delivery attempt to a slow remote MTA (RFC 5321 §4.5.3.2 allows minutes per command), short
/// enough that a crashed worker's mail moves on quickly.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// The deduplication window [`crate::QueueMessage`] promises: at least two minutes.
pub(crate) const MIN_DEDUPE_WINDOW: Duration = Duration::from_secs(120);

/// Header names NATS reserves for itself (`Nats-Msg-Id`, `Nats-Expected-Stream`, …): a caller's
/// header with this prefix would change how JetStream stores the message.
const RESERVED_HEADER_PREFIX: &str = "nats-";

/// Checks the queue settings both configurations share.
pub(crate) fn check_queue_settings(lease: Duration, dedupe_window: Duration) -> Result<()> {
    if lease.is_zero() {
        return Err(Error::Config("the queue lease must be longer than zero".into()));
    }
    if dedupe_window < MIN_DEDUPE_WINDOW {
        return Err(Error::Config(format!(
            "the deduplication window must be at least {} s (the Queue contract), got {:?}",
            MIN_DEDUPE_WINDOW.as_secs(),
            dedupe_window
        )));
    }
    Ok(())
}

/// A subject to publish on: dot-separated tokens, no wildcards.
pub(crate) fn check_subject(subject: &str) -> Result<()> {
    for token in subject.split('.') {
        check_token(token, "subject", subject)?;
        if token.contains(['*', '>']) {
            return Err(Error::invalid("subject", format!("{subject:?} contains a wildcard")));
        }
    }
    Ok(())
}

/// A subscription pattern: like a subject, with `*` as a whole token anywhere and `>` as the
/// whole last token.
pub(crate) fn check_pattern(pattern: &str) -> Result<()> {
    let mut tokens = pattern.split('.').peekable();
    while let Some(token) = tokens.next() {
        check_token(token, "subscription pattern", pattern)?;
        let is_last = tokens.peek().is_none();
        let valid_wildcard = token == "*" || (token == ">" && is_last);
        if token.contains(['*', '>']) && !valid_wildcard {
            return Err(Error::invalid(
                "subscription pattern",
                format!("{pattern:?}: `*` must be a whole token and `>` the whole last token"),
            ));
        }
    }
    Ok(())
}

fn check_token(token: &str, what: &'static str, whole: &str) -> Result<()> {
    if token.is_empty() {
        return Err(Error::invalid(what, format!("{whole:?} has an empty token")));
    }
    // Whitespace ends a subject in the NATS protocol line; control characters corrupt it.
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid(what, format!("{whole:?} contains whitespace or a control character")));
    }
    Ok(())
}

/// Whether `subject` matches `pattern` (both already checked).
pub(crate) fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for pattern_token in pattern.split('.') {
        if pattern_token == ">" {
            // `>` needs at least one token to stand for.
            return subject_tokens.next().is_some();
        }
        match subject_tokens.next() {
            Some(token) if pattern_token == "*" || pattern_token == token => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// A queue message id: it travels as the `Nats-Msg-Id` header value, which NATS trims, so
/// surrounding whitespace would make two different ids collide.
pub(crate) fn check_message_id(id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(Error::invalid("message id", "empty"));
    }
    if id.trim() != id || id.chars().any(char::is_control) {
        return Err(Error::invalid("message id", format!("{id:?} has surrounding whitespace or a control character")));
    }
    Ok(())
}

/// A spool key (an empty one would make an empty NATS subject token).
pub(crate) fn check_spool_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid("spool key", "empty"));
    }
    Ok(())
}

/// The headers as they travel: names checked, values trimmed of surrounding whitespace (NATS
/// trims them on the wire, as HTTP does with field values), reserved names refused.
pub(crate) fn carried_headers(headers: &Headers) -> Result<Vec<(&str, &str)>> {
    headers
        .iter()
        .map(|(name, value)| {
            if name.is_empty() || name.chars().any(|c| !c.is_ascii_graphic() || c == ':') {
                return Err(Error::invalid("header name", format!("{name:?} must be printable ASCII without ':'")));
            }
            if is_reserved_header(name) {
                return Err(Error::invalid("header name", format!("{name:?} is reserved by NATS")));
            }
            if value.contains(['\r', '\n']) {
                return Err(Error::invalid("header value", format!("{name}: contains a line break")));
            }
            Ok((name.as_str(), value.trim()))
        })
        .collect()
}

/// Whether a header belongs to NATS rather than to the caller.
pub(crate) fn is_reserved_header(name: &str) -> bool {
    name.get(..RESERVED_HEADER_PREFIX.len()).is_some_and(|prefix| prefix.eq_ignore_ascii_case(RESERVED_HEADER_PREFIX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_nats() {
        assert!(subject_matches("events.*.INBOX", "events.alice.INBOX"));
        assert!(!subject_matches("events.*.INBOX", "events.alice.Sent"));
        assert!(!subject_matches("events.*", "events.alice.INBOX"));
        assert!(subject_matches("events.>", "events.alice.INBOX"));
        assert!(subject_matches("events.>", "events.alice"));
        assert!(!subject_matches("events.>", "events"));
        assert!(subject_matches("events.alice", "events.alice"));
        assert!(!subject_matches("events.alice", "events.alice.INBOX"));
        assert!(!subject_matches("events.alice.INBOX", "events.alice"));
        assert!(subject_matches("*.*", "a.b"));
    }

    #[test]
    fn subjects_and_patterns_are_checked() {
        assert!(check_subject("events.alice.INBOX").is_ok());
        for bad in ["", "events..x", "events.", ".events", "events.a b", "events.*", "events.>", "a.b*"] {
            assert!(matches!(check_subject(bad), Err(Error::Invalid { .. })), "{bad:?}");
        }
        for good in ["events.>", "events.*.INBOX", "*", ">", "events.alice"] {
            assert!(check_pattern(good).is_ok(), "{good:?}");
        }
        for bad in ["", "events.>.x", "events.a*", "events..*", "events.\t"] {
            assert!(matches!(check_pattern(bad), Err(Error::Invalid { .. })), "{bad:?}");
        }
    }

    #[test]
    fn headers_are_checked_and_trimmed() {
        let headers: Headers = [("traceparent".to_string(), " 00-abc-01 ".to_string())].into();
        assert_eq!(carried_headers(&headers).ok(), Some(vec![("traceparent", "00-abc-01")]));
        for (name, value) in [
            ("Nats-Msg-Id", "x"),
            ("nats-expected-stream", "x"),
            ("a:b", "x"),
            ("", "x"),
            ("a b", "x"),
            ("x", "a\r\nb"),
        ] {
            let headers: Headers = [(name.to_string(), value.to_string())].into();
            assert!(matches!(carried_headers(&headers), Err(Error::Invalid { .. })), "{name:?}: {value:?}");
        }
        assert!(!is_reserved_header("Nat"));
        assert!(!is_reserved_header("Natś-x"));
    }

    #[test]
    fn message_ids_are_checked() {
        assert!(check_message_id("0190a3c2-7b.example@host").is_ok());
        for bad in ["", " id", "id ", "a\nb"] {
            assert!(matches!(check_message_id(bad), Err(Error::Invalid { .. })), "{bad:?}");
        }
    }
}
