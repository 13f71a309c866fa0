//! SMTP replies: a code, an enhanced status code (RFC 3463, advertised as ENHANCEDSTATUSCODES,
//! RFC 2034) and text, one or more lines.

use std::borrow::Cow;
use std::fmt::Write as _;

/// One SMTP reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// `class.subject.detail`; RFC 2034 leaves it out of the greeting and the EHLO/HELO reply.
    pub status: Option<&'static str>,
    /// One entry per line.
    pub lines: Vec<Cow<'static, str>>,
}

impl Reply {
    pub fn new(code: u16, status: &'static str, text: impl Into<Cow<'static, str>>) -> Self {
        Reply { code, status: Some(status), lines: vec![text.into()] }
    }

    /// A reply without an enhanced status code (greeting, EHLO, HELO).
    pub fn plain(code: u16, lines: Vec<Cow<'static, str>>) -> Self {
        Reply { code, status: None, lines }
    }

    /// Whether the reply refuses something (4xx or 5xx): these count as session errors.
    pub fn is_error(&self) -> bool {
        self.code >= 400
    }

    /// Appends the reply in wire form (`250-…` continuation lines, `250 …` last).
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let mut text = String::new();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let separator = if i == last { ' ' } else { '-' };
            let _ = write!(text, "{}{separator}", self.code);
            if let Some(status) = self.status {
                let _ = write!(text, "{status} ");
            }
            // Reply text is printable (RFC 5321 §4.2: textstring), and a client's input echoed
            // back can neither break the framing nor carry a NUL or an escape sequence.
            text.extend(line.chars().map(|c| if c.is_control() && c != '\t' { ' ' } else { c }));
            text.push_str("\r\n");
        }
        if self.lines.is_empty() {
            let _ = write!(text, "{} {}\r\n", self.code, self.status.unwrap_or_default());
        }
        out.extend_from_slice(text.as_bytes());
    }
}

/// Replies used in more than one place.
pub mod replies {
    use super::Reply;

    pub fn ok() -> Reply {
        Reply::new(250, "2.0.0", "OK")
    }

    pub fn bad_sequence(text: &'static str) -> Reply {
        Reply::new(503, "5.5.1", text)
    }

    pub fn syntax(text: impl Into<std::borrow::Cow<'static, str>>) -> Reply {
        Reply::new(501, "5.5.4", text)
    }

    pub fn line_too_long() -> Reply {
        Reply::new(500, "5.5.2", "Line too long")
    }

    pub fn temporary_failure() -> Reply {
        Reply::new(451, "4.3.0", "Temporary failure, please try again later")
    }

    pub fn too_many_errors() -> Reply {
        Reply::new(421, "4.7.0", "Too many errors, closing connection")
    }

    pub fn timeout() -> Reply {
        Reply::new(421, "4.4.2", "Timeout, closing connection")
    }

    pub fn shutting_down() -> Reply {
        Reply::new(421, "4.3.2", "Service shutting down, try again later")
    }

    pub fn message_too_big(limit: u64) -> Reply {
        Reply::new(552, "5.3.4", format!("Message exceeds the size limit of {limit} octets"))
    }

    pub fn auth_required() -> Reply {
        Reply::new(530, "5.7.0", "Authentication required")
    }

    pub fn tls_required() -> Reply {
        Reply::new(530, "5.7.0", "Must issue a STARTTLS command first")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(reply: &Reply) -> String {
        let mut out = Vec::new();
        reply.write_to(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn single_and_multi_line_replies_follow_the_wire_format() {
        assert_eq!(wire(&Reply::new(250, "2.1.0", "Sender OK")), "250 2.1.0 Sender OK\r\n");
        let ehlo = Reply::plain(250, vec!["mx.example.org".into(), "PIPELINING".into(), "SIZE 100".into()]);
        assert_eq!(wire(&ehlo), "250-mx.example.org\r\n250-PIPELINING\r\n250 SIZE 100\r\n");
    }

    #[test]
    fn line_breaks_in_text_cannot_forge_replies() {
        let reply = Reply::new(501, "5.1.3", "bad address x\r\n250 2.0.0 OK".to_string());
        assert_eq!(wire(&reply), "501 5.1.3 bad address x  250 2.0.0 OK\r\n");
    }

    #[test]
    fn echoed_control_characters_become_spaces() {
        let reply = Reply::plain(250, vec!["mx Hello client.e\u{1}\0\u{1b}[2Jxample\tx".into()]);
        assert_eq!(wire(&reply), "250 mx Hello client.e   [2Jxample\tx\r\n");
    }
}
