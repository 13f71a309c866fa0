//! Realistic RFC 5322 messages of about a requested size: the header fields a message carries
//! when it reaches final delivery (Received, From, To, Subject, Date, Message-ID, MIME; the
//! delivering server adds Return-Path, RFC 5321 §4.4) and a plain-text body of words in lines
//! under 78 characters (RFC 5322 §2.1.1), CRLF line endings.
//!
//! Every message has its own Message-ID, so every body is distinct: the mailstore stores bodies
//! once per content hash, and identical bodies would measure deduplication instead of storing.

/// Distinct body texts per size; messages pick one by index so they do not all share a text.
const BODY_VARIANTS: u64 = 16;
/// A fixed date keeps the generator free of a clock; the mailstore sets its own internal date.
const DATE: &str = "Thu, 01 Jan 2026 09:30:00 +0000";
const WORDS: &[&str] = &[
    "the", "queue", "mailbox", "delivery", "report", "meeting", "invoice", "attached", "please", "review", "schedule",
    "tomorrow", "project", "update", "status", "thanks", "regards", "cluster", "storage", "latency", "release",
    "notes", "customer", "question", "answer", "weekly", "budget", "draft", "final", "version", "with", "and", "for",
    "about", "from", "our", "team", "next", "week", "morning", "call", "agenda", "summary",
];

/// Builds messages of about `size` octets each.
pub struct MessageFactory {
    size: usize,
    /// Body texts at least `size` long; a message takes a prefix ending on a line break.
    bodies: Vec<String>,
}

impl MessageFactory {
    pub fn new(size: usize) -> Self {
        let bodies = (0..BODY_VARIANTS).map(|seed| body_text(size, seed)).collect();
        MessageFactory { size, bodies }
    }

    /// Message number `index` of a benchmark run tagged `tag`, addressed to `recipient`:
    /// `size` octets, or up to one body line (≤ 78 octets) less.
    pub fn message(&self, tag: &str, index: usize, recipient: &str) -> Vec<u8> {
        let header = format!(
            "Received: from mx.example.org (mx.example.org [192.0.2.10])\r\n\
             \tby mail.bench.test with ESMTPS id {tag}-{index}\r\n\
             \tfor <{recipient}>; {DATE}\r\n\
             From: Sender {n} <sender{n}@example.org>\r\n\
             To: <{recipient}>\r\n\
             Subject: Weekly status report {index}\r\n\
             Date: {DATE}\r\n\
             Message-ID: <{tag}.{index}@example.org>\r\n\
             MIME-Version: 1.0\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Transfer-Encoding: 7bit\r\n\
             \r\n",
            n = index % 97,
        );
        let body = &self.bodies[index % self.bodies.len()];
        let wanted = self.size.saturating_sub(header.len()).min(body.len());
        // Cut after the last complete line that fits, so the message still ends with CRLF.
        let cut = body[..wanted].rfind("\r\n").map_or(0, |end| end + 2);
        let mut message = Vec::with_capacity(header.len() + cut);
        message.extend_from_slice(header.as_bytes());
        message.extend_from_slice(&body.as_bytes()[..cut]);
        message
    }
}

/// Words chosen by a small deterministic generator (splitmix64), in lines of at most 76
/// characters, until the text is at least `size` octets.
fn body_text(size: usize, seed: u64) -> String {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut text = String::with_capacity(size + 80);
    let mut line = String::with_capacity(80);
    while text.len() < size {
        let word = WORDS[(next() % WORDS.len() as u64) as usize];
        if line.len() + 1 + word.len() > 76 {
            text.push_str(&line);
            text.push_str("\r\n");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_have_about_the_requested_size_and_end_with_crlf() {
        for size in [4096, 100 * 1024] {
            let factory = MessageFactory::new(size);
            for index in [0, 7, 12345] {
                let message = factory.message("t", index, "user1@bench.test");
                assert!(message.len() <= size && message.len() + 80 > size, "{} for {size}", message.len());
                assert!(message.ends_with(b"\r\n"));
                assert!(message.windows(4).any(|w| w == b"\r\n\r\n"), "header and body are separated");
            }
        }
    }

    #[test]
    fn every_message_is_distinct() {
        let factory = MessageFactory::new(4096);
        assert_ne!(factory.message("t", 1, "a@b.c"), factory.message("t", 1 + BODY_VARIANTS as usize, "a@b.c"));
    }
}
