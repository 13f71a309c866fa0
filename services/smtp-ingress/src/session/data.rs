//! DATA (RFC 5321 §4.1.1.4) and BDAT (RFC 3030 CHUNKING); then the message is handed off, and
//! only once the spool and the queue both hold it does the client get its `250`.

use kubemail_proto::queue::Envelope;
use tokio::io::{AsyncRead, AsyncWrite};

use super::io::{Body, End, normalize_line_endings};
use super::{Flow, Session, Transaction};
use crate::received::{self, Received};
use crate::reply::{Reply, replies};
use crate::verify::{self, Verdict};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn data(&mut self) -> Result<Flow, End> {
        let refusal = match &self.transaction {
            Some(transaction) if transaction.chunks.is_some() => {
                Some(replies::bad_sequence("DATA cannot follow BDAT in one transaction"))
            }
            _ => self.no_message_expected(),
        };
        if let Some(reply) = refusal {
            self.respond(reply);
            return Ok(Flow::Continue);
        }
        self.io.reply(&Reply::plain(354, vec!["End data with <CR><LF>.<CR><LF>".into()]));
        let (limit, timeout) = (self.settings().max_message_size, self.settings().data_timeout);
        let reply = match self.io.read_data(limit, timeout).await? {
            Body::Complete(body) => self.accept(body).await,
            Body::TooBig => {
                self.transaction = None;
                replies::message_too_big(limit)
            }
        };
        self.respond(reply);
        Ok(Flow::Continue)
    }

    /// `BDAT <size> [LAST]`: the chunk is read whatever happens, so the session stays in step
    /// with the client; a size that cannot be parsed ends the session for the same reason.
    pub(super) async fn bdat(&mut self, line: &[u8]) -> Result<Flow, End> {
        let Some((size, last)) = parse_bdat(line) else {
            self.io.reply(&Reply::new(501, "5.5.4", "Syntax: BDAT chunk-size [LAST]; closing connection"));
            return Ok(Flow::Close);
        };
        let (limit, timeout) = (self.settings().max_message_size, self.settings().data_timeout);
        if let Some(reply) = self.no_message_expected() {
            self.io.read_chunk(size, &mut Vec::new(), true, timeout).await?;
            self.respond(reply);
            return Ok(Flow::Continue);
        }
        let Some(transaction) = self.transaction.as_mut() else { return Ok(Flow::Continue) };
        let chunks = transaction.chunks.get_or_insert_with(Vec::new);
        let too_big = chunks.len() as u64 + size > limit;
        self.io.read_chunk(size, chunks, too_big, timeout).await?;
        let reply = if too_big {
            // The transaction fails at this chunk (RFC 3030 §2); chunks the client pipelined
            // behind it find no transaction and are read and refused.
            self.transaction = None;
            replies::message_too_big(limit)
        } else if !last {
            Reply::new(250, "2.0.0", format!("{size} octets received"))
        } else {
            let body = self.transaction.as_mut().and_then(|t| t.chunks.take()).unwrap_or_default();
            self.accept(body).await
        };
        self.respond(reply);
        Ok(Flow::Continue)
    }

    /// Why no message body can be taken now: no transaction, or no recipient accepted.
    fn no_message_expected(&self) -> Option<Reply> {
        match &self.transaction {
            None => Some(replies::bad_sequence("Need MAIL command")),
            Some(transaction) if transaction.recipients.is_empty() => {
                Some(Reply::new(554, "5.5.1", "No valid recipients"))
            }
            Some(_) => None,
        }
    }

    /// Ends the transaction with `body`: makes its line endings CRLF, adds the Received header
    /// and hands the message off.
    async fn accept(&mut self, body: Vec<u8>) -> Reply {
        let body = normalize_line_endings(body);
        let Some(transaction) = self.transaction.take() else {
            return replies::bad_sequence("Need MAIL command");
        };
        let id = crate::handoff::new_queue_id();
        transaction.span.record("queue_id", &id);
        let received_at = kubemail_runtime::clock::unix_now();
        let header = Received {
            helo: self.helo.as_deref().unwrap_or("unknown"),
            client_ip: self.client_ip,
            hostname: &self.settings().hostname,
            protocol: received::protocol(self.esmtp, self.io.is_tls(), self.identity.is_some()),
            tls: self.io.tls_description(),
            id: &id,
            recipient: match transaction.recipients.as_slice() {
                [only] => Some(only.address.as_str()),
                _ => None,
            },
            at: received_at,
        }
        .to_string();
        let (results, body) = match self.inbound_results(body, &transaction).await {
            Ok(checked) => checked,
            Err(refusal) => return refusal,
        };
        let mut message = Vec::with_capacity(header.len() + results.len() + body.len());
        message.extend_from_slice(header.as_bytes());
        message.extend_from_slice(results.as_bytes());
        message.extend_from_slice(&body);
        let envelope = self.envelope(transaction, id, message.len() as u64, received_at);
        let size = message.len();
        let listener = self.listener.name();
        match self.services.handoff.store(envelope, message.into()).await {
            Ok(id) => {
                metrics::counter!("kubemail_smtp_messages_total", "listener" => listener, "outcome" => "accepted")
                    .increment(1);
                metrics::histogram!("kubemail_smtp_message_size_bytes", "listener" => listener).record(size as f64);
                tracing::info!(%id, client = %self.client_ip, size, "message accepted");
                Reply::new(250, "2.0.0", format!("OK: queued as {id}"))
            }
            Err(error) => {
                metrics::counter!("kubemail_smtp_messages_total", "listener" => listener, "outcome" => "deferred")
                    .increment(1);
                tracing::warn!(%error, "message not accepted: the hand-off failed");
                replies::temporary_failure()
            }
        }
    }

    /// For mail from an unauthenticated client: the message without Authentication-Results
    /// fields forged in this server's name, and the header with the SPF, DKIM and DMARC results
    /// (empty when the checks are off) — or the refusal DMARC asks for.
    async fn inbound_results(&self, body: Vec<u8>, transaction: &Transaction) -> Result<(String, Vec<u8>), Reply> {
        if self.identity.is_some() {
            return Ok((String::new(), body));
        }
        let body = verify::strip_forged_results(body, &self.settings().hostname);
        let Some(verifier) = &self.services.verifier else {
            return Ok((String::new(), body));
        };
        let mail_from = transaction.sender.as_ref().map(|sender| sender.to_string()).unwrap_or_default();
        let helo = self.helo.as_deref().unwrap_or_default();
        match verifier.verify(&body, self.client_ip, helo, &mail_from).await {
            Verdict::Accept(header) => Ok((header, body)),
            Verdict::Reject(reply) => Err(reply),
        }
    }

    fn envelope(&self, transaction: Transaction, id: String, size: u64, received_at: i64) -> Envelope {
        Envelope {
            id,
            mail_from: transaction.sender.map(|sender| sender.to_string()).unwrap_or_default(),
            recipients: transaction.recipients,
            size,
            received_at,
            dsn_return: transaction.dsn_return,
            dsn_envid: transaction.dsn_envid,
            body_8bit: transaction.body_8bit,
            smtputf8: transaction.smtputf8,
            client_ip: self.client_ip.to_string(),
            helo: self.helo.clone().unwrap_or_default(),
            auth_identity: self.identity.as_ref().map(|identity| identity.address.clone()).unwrap_or_default(),
            ..Default::default()
        }
    }
}

/// `BDAT <size> [LAST]` → (size, last); `None` when malformed (RFC 3030 §2: chunk-size is
/// 1*DIGIT; one that does not fit in 64 bits is malformed too).
fn parse_bdat(line: &[u8]) -> Option<(u64, bool)> {
    let line = std::str::from_utf8(line).ok()?.strip_suffix('\n')?;
    let line = line.strip_suffix('\r').unwrap_or(line);
    let mut words = line.split(' ');
    let _command = words.next()?;
    let size = words.next().filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))?.parse().ok()?;
    let last = match words.next() {
        None => false,
        Some(word) if word.eq_ignore_ascii_case("LAST") => true,
        Some(_) => return None,
    };
    words.next().is_none().then_some((size, last))
}

#[cfg(test)]
mod tests {
    use super::parse_bdat;

    #[test]
    fn bdat_sizes_are_exact_or_refused() {
        assert_eq!(parse_bdat(b"BDAT 100\r\n"), Some((100, false)));
        assert_eq!(parse_bdat(b"bdat 0 last\r\n"), Some((0, true)));
        assert_eq!(parse_bdat(b"BDAT 99999999999999999999999\r\n"), None, "no wrap-around");
        assert_eq!(parse_bdat(b"BDAT -1\r\n"), None);
        assert_eq!(parse_bdat(b"BDAT 10 LAST extra\r\n"), None);
        assert_eq!(parse_bdat(b"BDAT\r\n"), None);
    }
}
