//! RCPT TO (RFC 5321 §4.1.1.3) with NOTIFY and ORCPT (RFC 3461). The mailstore decides what is
//! local; this file decides what an unauthenticated client may do with the rest (nothing: no
//! open relay).

use std::borrow::Cow;

use kubemail_proto::queue::{DsnNotify, Recipient};
use smtp_proto::RcptTo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Session, Transaction};
use crate::address::Address;
use crate::directory::Resolution;
use crate::reply::{Reply, replies};

/// Recipients past the limit that a transaction may name before each further one counts as an
/// error (Postfix's `smtpd_recipient_overshoot_limit` has the same default).
const RECIPIENT_OVERSHOOT: usize = 1000;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// The reply to count towards the error limit, or `None` when one was queued that does not
    /// count.
    pub(super) async fn rcpt(&mut self, to: RcptTo<Cow<'_, str>>, line: &[u8]) -> Option<Reply> {
        let max_recipients = self.settings().max_recipients;
        let Some(transaction) = &mut self.transaction else {
            return Some(replies::bad_sequence("Need MAIL before RCPT"));
        };
        if transaction.recipients.len() >= max_recipients {
            // RFC 5321 §4.5.3.1.10: the client sends to the recipients accepted so far and the
            // rest in a later transaction, so these refusals are not errors; only a client that
            // goes on far beyond the limit has them counted.
            transaction.excess_recipients += 1;
            let reply = Reply::new(452, "4.5.3", "Too many recipients");
            if transaction.excess_recipients <= RECIPIENT_OVERSHOOT {
                self.io.reply(&reply);
                return None;
            }
            return Some(reply);
        }
        let (smtputf8, size_hint) = (transaction.smtputf8, transaction.declared_size);
        let address = if to.address.is_empty() {
            // smtp-proto reads both `<>` and `<Postmaster>` as an empty address; only the
            // second is a recipient (RFC 5321 §4.5.1), delivered to this host's postmaster.
            if !names_postmaster(line) {
                return Some(Reply::new(501, "5.1.3", "Empty recipient address"));
            }
            format!("postmaster@{}", self.settings().hostname.to_lowercase())
        } else {
            match Address::parse(&to.address, smtputf8, "recipient") {
                Ok(address) => address.to_string(),
                Err(reply) => return Some(reply),
            }
        };
        let named_before =
            |transaction: &Transaction| transaction.recipients.iter().any(|r| r.address.eq_ignore_ascii_case(&address));
        if self.transaction.as_ref().is_some_and(named_before) {
            return Some(Reply::new(250, "2.1.5", "Recipient OK"));
        }
        let local = match self.resolve(&address, size_hint).await {
            Ok(local) => local,
            Err(reply) => return Some(reply),
        };
        let recipient = Recipient {
            address,
            notify: notify_bits(to.flags),
            original_recipient: to.orcpt.map(|orcpt| format!("rfc822;{orcpt}")).unwrap_or_default(),
            local,
        };
        if let Some(transaction) = &mut self.transaction {
            transaction.recipients.push(recipient);
        }
        Some(Reply::new(250, "2.1.5", "Recipient OK"))
    }

    /// Whether mail for `address` is accepted here: `Ok(true)` for a local mailbox, `Ok(false)`
    /// for a remote one an authenticated user may send to, else the refusal.
    async fn resolve(&self, address: &str, size_hint: u64) -> Result<bool, Reply> {
        let resolution = match self.services.directory.resolve(address, size_hint).await {
            Ok(resolution) => resolution,
            Err(status) => {
                tracing::warn!(%status, "recipient lookup failed");
                return Err(Reply::new(451, "4.4.3", "Directory server failure, try again later"));
            }
        };
        match resolution {
            Resolution::Local => Ok(true),
            Resolution::Full => Err(Reply::new(452, "4.2.2", "Mailbox full, try again later")),
            Resolution::NeverFits => Err(Reply::new(552, "5.2.2", "Message exceeds the recipient's storage quota")),
            Resolution::Unknown => Err(Reply::new(550, "5.1.1", format!("No such user here: {address}"))),
            Resolution::Disabled => Err(Reply::new(550, "5.2.1", "Mailbox disabled")),
            Resolution::NotLocal if self.identity.is_some() => Ok(false),
            Resolution::NotLocal => Err(Reply::new(554, "5.7.1", "Relay access denied")),
        }
    }
}

/// Whether the RCPT line's path is `<Postmaster>` (any case), rather than `<>`.
fn names_postmaster(line: &[u8]) -> bool {
    let line = String::from_utf8_lossy(line).to_ascii_lowercase();
    line.split_once('<').and_then(|(_, rest)| rest.split_once('>')).is_some_and(|(path, _)| path == "postmaster")
}

/// smtp-proto's NOTIFY flags as the queue envelope's `DsnNotify` bits.
fn notify_bits(flags: u64) -> u32 {
    [
        (smtp_proto::RCPT_NOTIFY_NEVER, DsnNotify::Never),
        (smtp_proto::RCPT_NOTIFY_SUCCESS, DsnNotify::Success),
        (smtp_proto::RCPT_NOTIFY_FAILURE, DsnNotify::Failure),
        (smtp_proto::RCPT_NOTIFY_DELAY, DsnNotify::Delay),
    ]
    .into_iter()
    .filter(|(flag, _)| flags & flag != 0)
    .fold(0, |bits, (_, notify)| bits | notify as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postmaster_is_told_from_the_null_path() {
        assert!(names_postmaster(b"RCPT TO:<PostMaster>\r\n"));
        assert!(!names_postmaster(b"RCPT TO:<>\r\n"));
    }

    #[test]
    fn notify_flags_map_to_envelope_bits() {
        let bits = notify_bits(smtp_proto::RCPT_NOTIFY_SUCCESS | smtp_proto::RCPT_NOTIFY_DELAY);
        assert_eq!(bits, DsnNotify::Success as u32 | DsnNotify::Delay as u32);
        assert_eq!(notify_bits(0), 0);
    }
}
