//! What became of one recipient in one attempt.

use std::fmt;

/// The result of delivering to one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// In the mailbox, or accepted by the next MTA.
    Delivered,
    /// Permanent: reported to the sender now.
    Failed(Failure),
    /// Temporary: tried again later, reported as failed once the message is too old.
    Deferred(Failure),
}

/// Why a delivery did not happen, in the terms of a DSN (RFC 3464 §2.3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// RFC 3463 enhanced status code, e.g. `5.1.1`.
    pub status: String,
    /// `Diagnostic-Code` as type and text, e.g. (`smtp`, `550 5.1.1 No such user`).
    pub diagnostic_type: &'static str,
    pub diagnostic: String,
    /// The MTA that said so, when it was a remote one.
    pub remote_mta: Option<String>,
}

impl Failure {
    /// A failure found here rather than reported by another MTA.
    pub fn local(status: &str, diagnostic: impl Into<String>) -> Self {
        Failure {
            status: status.into(),
            diagnostic_type: "x-kubemail",
            diagnostic: one_line(&diagnostic.into()),
            remote_mta: None,
        }
    }

    /// The same failure, final because the message ran out of time (RFC 3463 4.4.7).
    pub fn expired(&self) -> Self {
        Failure { status: "4.4.7".into(), ..self.clone() }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}; {})", self.status, self.diagnostic_type, self.diagnostic)
    }
}

/// `text` on one line: what a header field or a log line can carry.
pub fn one_line(text: &str) -> String {
    text.split(['\r', '\n']).map(str::trim).filter(|part| !part.is_empty()).collect::<Vec<_>>().join(" ")
}
