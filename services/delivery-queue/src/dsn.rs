//! Delivery status notifications (RFC 3464) in a `multipart/report` (RFC 6522): a text part
//! for people, the `message/delivery-status` part for programs, and the original message (in
//! full, or only its header when the sender asked for `RET=HDRS` or the message is large).

use kubemail_proto::queue::{DsnReturn, Envelope};
use kubemail_runtime::clock::rfc5322_date;

use crate::outcome::{Failure, one_line};

/// A message larger than this comes back as its header only.
const FULL_RETURN_LIMIT: usize = 256 * 1024;

/// What a report says about one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Failed(Failure),
    Delayed(Failure),
    Delivered,
}

/// One recipient's entry in a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub recipient: String,
    /// RFC 3461 ORCPT as carried in the envelope (`rfc822;addr`), or empty.
    pub original_recipient: String,
    pub action: Action,
}

/// A report on `envelope`'s recipients in `entries`, from this MTA.
pub struct Report<'a> {
    /// This host's name: `Reporting-MTA` and the sender of the report.
    pub reporting_mta: &'a str,
    pub envelope: &'a Envelope,
    pub entries: Vec<Entry>,
    /// The message as spooled.
    pub original: &'a [u8],
    /// Unix seconds.
    pub now: i64,
    /// Unique per report: the Message-ID's left part and the MIME boundary's seed.
    pub id: &'a str,
}

impl Report<'_> {
    /// The whole report message, CRLF line ends.
    pub fn render(&self) -> Vec<u8> {
        let boundary = format!("=_report_{}", self.id);
        let subject = if self.entries.iter().any(|entry| matches!(entry.action, Action::Failed(_))) {
            "Undelivered Mail Returned to Sender"
        } else if self.entries.iter().any(|entry| matches!(entry.action, Action::Delayed(_))) {
            "Delayed Mail (still being retried)"
        } else {
            "Successful Mail Delivery Report"
        };
        let mut out = String::new();
        let mta = self.reporting_mta;
        out += &format!("From: Mail Delivery System <MAILER-DAEMON@{mta}>\r\n");
        out += &format!("To: <{}>\r\n", self.envelope.mail_from);
        out += &format!("Subject: {subject}\r\n");
        out += &format!("Date: {}\r\n", rfc5322_date(self.now));
        out += &format!("Message-ID: <{}@{mta}>\r\n", self.id);
        // RFC 3834: never answered by vacation responders and the like.
        out += "Auto-Submitted: auto-replied\r\n";
        out += "MIME-Version: 1.0\r\n";
        out += &format!(
            "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n"
        );
        out += "This is a MIME-encapsulated delivery status notification.\r\n";

        out += &format!("\r\n--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n");
        out += &self.explanation();

        out += &format!("\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n");
        out += &self.status_fields();

        let full = self.envelope.dsn_return() != DsnReturn::Headers && self.original.len() <= FULL_RETURN_LIMIT;
        let (content_type, returned) =
            if full { ("message/rfc822", self.original) } else { ("text/rfc822-headers", header_of(self.original)) };
        out += &format!("\r\n--{boundary}\r\nContent-Type: {content_type}\r\n\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(returned);
        if !returned.ends_with(b"\r\n") {
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        bytes
    }

    fn explanation(&self) -> String {
        let failed = self.entries.iter().any(|entry| matches!(entry.action, Action::Failed(_)));
        let delayed = self.entries.iter().any(|entry| matches!(entry.action, Action::Delayed(_)));
        let summary = match (failed, delayed) {
            (true, _) => "could not be delivered to the recipients below",
            (false, true) => "has not been delivered yet to the recipients below; delivery is still being tried",
            (false, false) => "was delivered to the recipients below",
        };
        let mut text = format!(
            "This is the mail system at {}.\r\n\r\nYour message {}sent {} {summary}.\r\n\r\n",
            self.reporting_mta,
            subject_phrase(self.original),
            rfc5322_date(self.envelope.received_at),
        );
        for entry in &self.entries {
            let line = match &entry.action {
                Action::Failed(failure) => format!("<{}>: delivery failed: {}", entry.recipient, failure.diagnostic),
                Action::Delayed(failure) => {
                    format!("<{}>: not delivered yet, still trying: {}", entry.recipient, failure.diagnostic)
                }
                Action::Delivered => format!("<{}>: delivered", entry.recipient),
            };
            text += &one_line(&line);
            text += "\r\n";
        }
        text
    }

    /// The per-message fields, then one block per recipient (RFC 3464 §2.2, §2.3).
    fn status_fields(&self) -> String {
        let mut fields = format!("Reporting-MTA: dns; {}\r\n", self.reporting_mta);
        if !self.envelope.dsn_envid.is_empty() {
            fields += &format!("Original-Envelope-Id: {}\r\n", one_line(&self.envelope.dsn_envid));
        }
        fields += &format!("Arrival-Date: {}\r\n", rfc5322_date(self.envelope.received_at));
        for entry in &self.entries {
            fields += "\r\n";
            fields += &format!("Final-Recipient: rfc822; {}\r\n", entry.recipient);
            if let Some((kind, address)) = entry.original_recipient.split_once(';') {
                fields += &format!("Original-Recipient: {}; {}\r\n", kind.trim(), one_line(address.trim()));
            }
            let (action, status, failure) = match &entry.action {
                Action::Failed(failure) => ("failed", failure.status.as_str(), Some(failure)),
                Action::Delayed(failure) => ("delayed", failure.status.as_str(), Some(failure)),
                Action::Delivered => ("delivered", "2.0.0", None),
            };
            fields += &format!("Action: {action}\r\nStatus: {status}\r\n");
            if let Some(failure) = failure {
                if let Some(mta) = &failure.remote_mta {
                    fields += &format!("Remote-MTA: dns; {}\r\n", one_line(mta));
                }
                fields +=
                    &format!("Diagnostic-Code: {}; {}\r\n", failure.diagnostic_type, one_line(&failure.diagnostic));
                fields += &format!("Last-Attempt-Date: {}\r\n", rfc5322_date(self.now));
            }
        }
        fields
    }
}

/// The header section of a message, up to and including the empty line.
fn header_of(message: &[u8]) -> &[u8] {
    match message.windows(4).position(|window| window == b"\r\n\r\n") {
        Some(end) => &message[..end + 4],
        None => message,
    }
}

/// `"Hello" ` when the message has a Subject, else nothing: for the explanation's sentence.
fn subject_phrase(message: &[u8]) -> String {
    let header = String::from_utf8_lossy(header_of(message));
    let mut subject = None;
    let mut lines = header.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        if line.len() > 8 && line[..8].eq_ignore_ascii_case("subject:") {
            let mut value = line[8..].trim().to_string();
            // Folded continuation lines (RFC 5322 §2.2.3).
            while let Some(next) = lines.peek().filter(|next| next.starts_with([' ', '\t'])) {
                value.push(' ');
                value.push_str(next.trim());
                lines.next();
            }
            subject = Some(value);
            break;
        }
    }
    match subject {
        Some(subject) if !subject.is_empty() => format!("\"{}\" ", one_line(&subject)),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope() -> Envelope {
        Envelope {
            id: "q1".into(),
            mail_from: "alice@example.org".into(),
            received_at: 1_795_689_147,
            dsn_envid: "env-7".into(),
            ..Default::default()
        }
    }

    const ORIGINAL: &[u8] = b"From: alice@example.org\r\nSubject: Lunch\r\n\tplans\r\n\r\nSee you.\r\n";

    fn report(envelope: &Envelope, entries: Vec<Entry>) -> String {
        let report = Report {
            reporting_mta: "mx.example.org",
            envelope,
            entries,
            original: ORIGINAL,
            now: 1_795_689_200,
            id: "r1",
        };
        String::from_utf8(report.render()).unwrap()
    }

    #[test]
    fn a_failure_report_has_the_three_parts_and_the_status_fields() {
        let envelope = envelope();
        let failure = Failure {
            status: "5.1.1".into(),
            diagnostic_type: "smtp",
            diagnostic: "550 5.1.1 <bob@remote.example>: no such user\r\nsecond line".into(),
            remote_mta: Some("mx.remote.example".into()),
        };
        let text = report(
            &envelope,
            vec![Entry {
                recipient: "bob@remote.example".into(),
                original_recipient: "rfc822;Bob@Remote.example".into(),
                action: Action::Failed(failure),
            }],
        );
        assert!(
            text.starts_with(
                "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\nTo: <alice@example.org>\r\n"
            )
        );
        assert!(text.contains("Auto-Submitted: auto-replied\r\n"));
        assert!(text.contains("Content-Type: multipart/report; report-type=delivery-status;"));
        for field in [
            "Reporting-MTA: dns; mx.example.org\r\n",
            "Original-Envelope-Id: env-7\r\n",
            "Arrival-Date: Thu, 26 Nov 2026 10:32:27 +0000\r\n",
            "Final-Recipient: rfc822; bob@remote.example\r\n",
            "Original-Recipient: rfc822; Bob@Remote.example\r\n",
            "Action: failed\r\nStatus: 5.1.1\r\n",
            "Remote-MTA: dns; mx.remote.example\r\n",
            "Diagnostic-Code: smtp; 550 5.1.1 <bob@remote.example>: no such user second line\r\n",
        ] {
            assert!(text.contains(field), "{field:?} missing from\n{text}");
        }
        assert!(text.contains("Your message \"Lunch plans\" sent"), "{text}");
        assert!(text.contains("Content-Type: message/rfc822\r\n\r\nFrom: alice@example.org\r\n"));
        assert!(text.ends_with("See you.\r\n\r\n--=_report_r1--\r\n"));
    }

    #[test]
    fn ret_hdrs_returns_the_header_only() {
        let envelope = Envelope { dsn_return: DsnReturn::Headers as i32, ..envelope() };
        let text = report(
            &envelope,
            vec![Entry {
                recipient: "bob@example.org".into(),
                original_recipient: String::new(),
                action: Action::Delivered,
            }],
        );
        assert!(text.contains("Content-Type: text/rfc822-headers\r\n\r\nFrom: alice@example.org\r\n"));
        assert!(!text.contains("See you."));
        assert!(text.contains("Action: delivered\r\nStatus: 2.0.0\r\n"));
        assert!(!text.contains("Original-Recipient"));
    }
}
