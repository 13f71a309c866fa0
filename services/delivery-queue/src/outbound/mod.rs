//! Remote recipients: outbound SMTP.
//!
//! - [`Outbound`] — the route for remote recipients, as the worker sees it.
//! - [`SmtpOutbound`] — signs the message (DKIM), groups recipients by domain, finds the
//!   domain's servers and delivers over one connection per server, kept open for the next
//!   message to the same server.
//! - [`route`] — MX lookup, overrides, null MX.
//! - [`client`] — one SMTP client session.
//! - [`dkim`] — the domains' signing keys.
//! - [`tls`] — the TLS client settings: opportunistic, or verified for a relay host.

pub mod client;
pub mod dkim;
pub mod route;
pub mod tls;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use kubemail_proto::queue::{Envelope, Recipient};

use crate::outcome::{Failure, Outcome};
use client::{Connection, Credentials, OpenError, Reply, Security, Transaction};
use dkim::Keys;
use route::{Route, Router, Target};

/// Sends a message to recipients on other servers.
#[async_trait]
pub trait Outbound: Send + Sync + 'static {
    /// One outcome per recipient, in the order given.
    async fn deliver(&self, envelope: &Envelope, recipients: &[&Recipient], body: &Bytes) -> Vec<Outcome>;

    /// Ends the sessions kept open for later messages, at shutdown.
    async fn close(&self) {}
}

/// How long an idle connection is kept for the next message to the same server.
const IDLE_KEEP: Duration = Duration::from_secs(30);
/// Idle connections kept per server.
const IDLE_PER_SERVER: usize = 4;

/// A smart host all remote mail goes through (for clusters that may not send on port 25).
pub struct Relay {
    pub target: Target,
    pub credentials: Option<Credentials>,
    /// Always TLS with a verified certificate.
    pub security: Security,
}

/// Outbound SMTP: MX routing or a relay host, DKIM signing, connection reuse.
pub struct SmtpOutbound {
    pub router: Router,
    pub relay: Option<Relay>,
    pub keys: Option<Keys>,
    /// The EHLO name.
    pub hostname: String,
    pub opportunistic: Security,
    idle: Mutex<HashMap<Target, Vec<(Connection, Instant)>>>,
}

impl SmtpOutbound {
    pub fn new(router: Router, relay: Option<Relay>, keys: Option<Keys>, hostname: String) -> Self {
        SmtpOutbound {
            router,
            relay,
            keys,
            hostname,
            opportunistic: Security::Opportunistic(kubemail_runtime::tls::opportunistic_client()),
            idle: Mutex::new(HashMap::new()),
        }
    }

    /// The message with a `DKIM-Signature` of the From domain, else of the envelope sender's,
    /// when a key is configured for it.
    fn signed(&self, envelope: &Envelope, body: &Bytes) -> Bytes {
        let Some(keys) = &self.keys else {
            return body.clone();
        };
        let mut domains = Vec::new();
        if let Some(domain) = from_domain(body) {
            domains.push(domain);
        }
        if let Some((_, domain)) = envelope.mail_from.rsplit_once('@') {
            domains.push(domain.to_ascii_lowercase());
        }
        for domain in domains {
            match keys.sign(&domain, body) {
                Ok(Some(header)) => return [header.as_bytes(), body].concat().into(),
                Ok(None) => {}
                Err(error) => tracing::error!(%domain, %error, "DKIM key unusable; message sent unsigned"),
            }
        }
        body.clone()
    }

    /// Delivers to the recipients of one domain.
    async fn deliver_domain(
        &self,
        envelope: &Envelope,
        domain: &str,
        recipients: &[&str],
        message: &Bytes,
    ) -> Vec<Outcome> {
        let all = |outcome: Outcome| vec![outcome; recipients.len()];
        let (targets, security, credentials) = match &self.relay {
            Some(relay) if !self.router.overridden(domain) => {
                (vec![relay.target.clone()], &relay.security, relay.credentials.as_ref())
            }
            _ => match self.router.targets(domain).await {
                Ok(targets) => (targets, &self.opportunistic, None),
                Err(Route::Failed(failure)) => return all(Outcome::Failed(failure)),
                Err(Route::Deferred(failure)) => return all(Outcome::Deferred(failure)),
            },
        };
        let mut last = Failure::local("4.4.1", format!("no server for {domain} answered"));
        for target in targets {
            // A kept connection may have been closed by the server meanwhile: then once more
            // on a fresh one.
            for reused in [true, false] {
                let connection = if reused { self.take_idle(&target) } else { None };
                let was_reused = connection.is_some();
                let mut connection = match connection {
                    Some(connection) => connection,
                    None if reused => continue,
                    None => match self.open(&target, security, credentials).await {
                        Ok(connection) => connection,
                        Err(failure) => {
                            last = failure;
                            break;
                        }
                    },
                };
                match self.send(&mut connection, envelope, recipients, message).await {
                    Sent::Done { outcomes, reusable } => {
                        if reusable {
                            self.keep(target.clone(), connection).await;
                        }
                        return outcomes;
                    }
                    Sent::Broken(failure) if was_reused => {
                        tracing::debug!(%failure, "kept connection unusable; opening another");
                    }
                    Sent::Broken(failure) => return all(Outcome::Deferred(failure)),
                }
            }
        }
        all(Outcome::Deferred(last))
    }

    /// A new session with `target`, trying each of its addresses.
    async fn open(
        &self,
        target: &Target,
        security: &Security,
        credentials: Option<&Credentials>,
    ) -> Result<Connection, Failure> {
        let addresses = self.router.addresses(target).await?;
        let mut last = Failure::local("4.4.1", format!("{} has no address", target.host));
        for address in addresses {
            match Connection::open(&target.host, address, &self.hostname, security, credentials).await {
                Ok(connection) => return Ok(connection),
                Err(OpenError::Broken(broken)) => last = broken.failure,
                Err(OpenError::Refused(reply)) => last = reply.failure(&target.host),
            }
        }
        // Refusals at the greeting are never final for the message: another server, or this
        // one later, may take it.
        if last.status.starts_with('5') {
            last.status.replace_range(..1, "4");
        }
        Err(last)
    }

    /// One transaction on `connection`.
    async fn send(
        &self,
        connection: &mut Connection,
        envelope: &Envelope,
        recipients: &[&str],
        message: &Bytes,
    ) -> Sent {
        let all = |outcome: Outcome| Sent::Done { outcomes: vec![outcome; recipients.len()], reusable: true };
        let offered = connection.capabilities;
        if envelope.smtputf8 && !offered.smtputf8 {
            // RFC 6531 §3.2: such a message cannot be passed to this server.
            let failure =
                Failure::local("5.6.7", format!("{} does not accept internationalised addresses", connection.host));
            return all(Outcome::Failed(failure));
        }
        if offered.size > 0 && message.len() as u64 > offered.size {
            let failure =
                Failure::local("5.3.4", format!("{} takes messages up to {} octets", connection.host, offered.size));
            return all(Outcome::Failed(failure));
        }
        let mut parameters = String::new();
        if offered.size > 0 {
            parameters += &format!(" SIZE={}", message.len());
        }
        if envelope.body_8bit && offered.eight_bit_mime {
            parameters += " BODY=8BITMIME";
        }
        if envelope.smtputf8 {
            parameters += " SMTPUTF8";
        }
        let host = connection.host.clone();
        match connection.transaction(&envelope.mail_from, &parameters, recipients, message).await {
            Ok(Transaction { recipients: replies, data }) => {
                let outcomes = replies.iter().map(|rcpt| outcome_of(rcpt, data.as_ref(), &host)).collect();
                // After a complete transaction the session is ready for the next MAIL.
                let complete = data.as_ref().is_some_and(Reply::is_positive);
                let reusable = complete || connection.reset().await;
                Sent::Done { outcomes, reusable }
            }
            Err(Ok(refused)) => {
                let reusable = connection.reset().await;
                let failure = refused.failure(&host);
                let outcome =
                    if refused.is_permanent() { Outcome::Failed(failure) } else { Outcome::Deferred(failure) };
                Sent::Done { outcomes: vec![outcome; recipients.len()], reusable }
            }
            Err(Err(broken)) => Sent::Broken(broken.failure),
        }
    }

    /// Says QUIT on every idle connection, all at once (each bounded by its own timeout).
    async fn quit_idle(&self) {
        let idle: Vec<Connection> = {
            let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            idle.drain().flat_map(|(_, kept)| kept).map(|(connection, _)| connection).collect()
        };
        futures::future::join_all(idle.into_iter().map(Connection::quit)).await;
    }

    fn take_idle(&self, target: &Target) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let kept = idle.get_mut(target)?;
        while let Some((connection, since)) = kept.pop() {
            if since.elapsed() < IDLE_KEEP {
                return Some(connection);
            }
        }
        None
    }

    async fn keep(&self, target: Target, connection: Connection) {
        let surplus = {
            let mut idle = self.idle.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let kept = idle.entry(target).or_default();
            kept.retain(|(_, since)| since.elapsed() < IDLE_KEEP);
            if kept.len() < IDLE_PER_SERVER {
                kept.push((connection, Instant::now()));
                None
            } else {
                Some(connection)
            }
        };
        if let Some(connection) = surplus {
            connection.quit().await;
        }
    }
}

/// The end of one transaction.
enum Sent {
    /// An outcome per recipient; `reusable` when the session can carry another transaction.
    Done { outcomes: Vec<Outcome>, reusable: bool },
    /// The connection broke: nothing is known to have been delivered.
    Broken(Failure),
}

/// What a RCPT reply and the reply to the data mean for that recipient.
fn outcome_of(rcpt: &Reply, data: Option<&Reply>, host: &str) -> Outcome {
    let judged = |reply: &Reply| {
        if reply.is_positive() {
            Outcome::Delivered
        } else if reply.is_permanent() {
            Outcome::Failed(reply.failure(host))
        } else {
            Outcome::Deferred(reply.failure(host))
        }
    };
    match (judged(rcpt), data) {
        (Outcome::Delivered, Some(data)) => judged(data),
        (Outcome::Delivered, None) => {
            Outcome::Deferred(Failure::local("4.4.2", format!("{host} did not take the data")))
        }
        (refused, _) => refused,
    }
}

#[async_trait]
impl Outbound for SmtpOutbound {
    async fn close(&self) {
        self.quit_idle().await;
    }

    async fn deliver(&self, envelope: &Envelope, recipients: &[&Recipient], body: &Bytes) -> Vec<Outcome> {
        let message = self.signed(envelope, body);
        let mut by_domain: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (index, recipient) in recipients.iter().enumerate() {
            let domain = recipient.address.rsplit_once('@').map_or("", |(_, domain)| domain).to_ascii_lowercase();
            by_domain.entry(domain).or_default().push(index);
        }
        let mut outcomes = vec![Outcome::Delivered; recipients.len()];
        for (domain, indices) in by_domain {
            let addresses: Vec<&str> = indices.iter().map(|&i| recipients[i].address.as_str()).collect();
            let results = self.deliver_domain(envelope, &domain, &addresses, &message).await;
            for (index, outcome) in indices.into_iter().zip(results) {
                outcomes[index] = outcome;
            }
        }
        outcomes
    }
}

/// The domain of the first address in the message's From header, lower-case.
fn from_domain(message: &[u8]) -> Option<String> {
    let end = message.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(message.len());
    let header = String::from_utf8_lossy(&message[..end]);
    let mut lines = header.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        if line.len() > 5 && line[..5].eq_ignore_ascii_case("from:") {
            let mut value = line[5..].to_string();
            while let Some(next) = lines.peek().filter(|next| next.starts_with([' ', '\t'])) {
                value.push_str(next);
                lines.next();
            }
            let address = match (value.find('<'), value.find('>')) {
                (Some(open), Some(close)) if open < close => value[open + 1..close].to_string(),
                _ => value.trim().to_string(),
            };
            return address.rsplit_once('@').map(|(_, domain)| domain.trim().to_ascii_lowercase());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_from_domain_is_read_from_the_header() {
        let message =
            b"Subject: x\r\nFrom: \"Alice\r\n A.\" <Alice@Example.ORG>\r\nTo: b@c.d\r\n\r\nFrom: body@nope\r\n";
        assert_eq!(from_domain(message).as_deref(), Some("example.org"));
        assert_eq!(from_domain(b"From: plain@host.example\r\n\r\n").as_deref(), Some("host.example"));
        assert_eq!(from_domain(b"To: x@y.z\r\n\r\nFrom: a@b.c\r\n"), None);
    }

    #[test]
    fn rcpt_and_data_replies_decide_each_recipient() {
        let reply = |code, status: &str| Reply { code, status: status.into(), text: String::new() };
        let ok = reply(250, "2.0.0");
        assert_eq!(outcome_of(&ok, Some(&ok), "mx"), Outcome::Delivered);
        assert!(matches!(outcome_of(&reply(550, "5.1.1"), Some(&ok), "mx"), Outcome::Failed(_)));
        assert!(matches!(outcome_of(&reply(450, "4.2.1"), Some(&ok), "mx"), Outcome::Deferred(_)));
        assert!(matches!(outcome_of(&ok, Some(&reply(554, "5.6.0")), "mx"), Outcome::Failed(_)));
        assert!(matches!(outcome_of(&ok, Some(&reply(451, "4.3.0")), "mx"), Outcome::Deferred(_)));
        assert!(matches!(outcome_of(&ok, None, "mx"), Outcome::Deferred(_)));
    }
}
