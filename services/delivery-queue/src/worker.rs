//! The delivery worker: pulls envelopes, delivers each recipient, then settles the envelope.
//!
//! Settling an envelope after an attempt:
//! - every recipient final (delivered or failed): report what the sender asked to hear about,
//!   delete the body, ack;
//! - some recipients still pending and nothing else changed: release the message to come back
//!   at the next point of the retry schedule (a delayed NAK: nothing polls);
//! - some final, some pending: report the final ones, queue a continuation envelope with only
//!   the pending recipients (same body, `not_before` the next attempt), then ack. A remote
//!   recipient that accepted the message is thereby never sent it again. A message older than
//!   the delay warning whose pending recipients asked for delay notices (NOTIFY=DELAY) is
//!   reported as delayed once, and continues the same way, remembering that it was.
//!
//! An envelope that cannot be decoded, or whose body is gone on its first attempt, is moved
//! aside as a dead letter with the reason: retrying could never help. On a later attempt a body
//! that is gone means the attempt before finished the message and only its ack was lost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kubemail_proto::Message as _;
use kubemail_proto::queue::{DsnNotify, Envelope, Recipient};
use kubemail_runtime::clock::unix_now;
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::{Error, Lease, Queue, QueueMessage, Spool, propagation};
use tokio::sync::Semaphore;
use tracing::Instrument as _;

use crate::dsn::{Action, Entry};
use crate::local::{self, MailstoreClient};
use crate::outbound::Outbound;
use crate::outcome::{Failure, Outcome};
use crate::report::Reporter;
use crate::schedule::{Next, RetrySchedule};

/// How long one pull waits for work before looking at shutdown again.
const PULL_WAIT: Duration = Duration::from_secs(5);
/// Pause after the queue failed, before pulling again.
const QUEUE_BACKOFF: Duration = Duration::from_secs(1);
/// How long to wait before retrying an envelope that failed for a reason of our own (the
/// spool or the queue unavailable), outside the retry schedule.
const INFRASTRUCTURE_RETRY: Duration = Duration::from_secs(30);
/// How long shutdown waits for deliveries in progress; the rest lose their lease.
const DRAIN: Duration = Duration::from_secs(30);

/// Everything a worker needs; shared by its delivery tasks.
pub struct Worker {
    pub queue: Arc<dyn Queue>,
    pub spool: Arc<dyn Spool>,
    pub mailstore: MailstoreClient,
    /// Remote recipients; `None` when this deployment sends no mail out.
    pub outbound: Option<Arc<dyn Outbound>>,
    pub reporter: Reporter,
    pub schedule: RetrySchedule,
    /// Age after which pending recipients are reported as delayed, once; zero never.
    pub delay_warning: Duration,
    /// Envelopes in progress at once.
    pub concurrency: usize,
    /// How often a lease is extended while its envelope is being delivered (well inside the
    /// queue's lease).
    pub lease_renewal: Duration,
}

impl Worker {
    /// Pulls and delivers until `shutdown`, then waits for deliveries in progress.
    pub async fn run(self: Arc<Self>, shutdown: Shutdown) {
        let slots = Arc::new(Semaphore::new(self.concurrency.max(1)));
        loop {
            let first = tokio::select! {
                slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
                () = shutdown.wait() => break,
            };
            let free = 1 + slots.available_permits();
            let pulled = tokio::select! {
                pulled = self.queue.pull(free, PULL_WAIT) => pulled,
                () = shutdown.wait() => break,
            };
            let leases = match pulled {
                Ok(leases) => leases,
                Err(error) => {
                    tracing::warn!(%error, "pulling from the queue failed");
                    tokio::time::sleep(QUEUE_BACKOFF).await;
                    continue;
                }
            };
            let mut first = Some(first);
            for lease in leases {
                let slot = match first.take() {
                    Some(slot) => slot,
                    None => slots.clone().acquire_owned().await.expect("the semaphore is never closed"),
                };
                let worker = self.clone();
                tokio::spawn(async move {
                    worker.process(lease).await;
                    drop(slot);
                });
            }
        }
        let all = u32::try_from(self.concurrency.max(1)).unwrap_or(u32::MAX);
        if tokio::time::timeout(DRAIN, slots.acquire_many(all)).await.is_err() {
            tracing::warn!("deliveries still in progress at shutdown; their messages come back after the lease");
        }
        if let Some(outbound) = &self.outbound {
            outbound.close().await;
        }
    }

    /// Delivers one envelope and settles it. Never fails: what goes wrong is logged, and the
    /// message comes back (retry or lease expiry) unless it is dead-lettered.
    pub async fn process(&self, lease: Lease) {
        let envelope = match Envelope::decode(lease.payload.clone()) {
            Ok(envelope) => envelope,
            Err(error) => return dead_letter(lease, &format!("the envelope cannot be decoded: {error}")).await,
        };
        if let Err(problem) = check(&envelope, &lease.id) {
            return dead_letter(lease, &problem).await;
        }
        let span = tracing::info_span!("deliver", id = %envelope.id, attempt = lease.attempt);
        propagation::set_parent_from_headers(&span, &lease.headers);
        self.deliver(lease, envelope).instrument(span).await;
    }

    async fn deliver(&self, lease: Lease, envelope: Envelope) {
        let now = unix_now();
        if envelope.not_before > now {
            let wait = Duration::from_secs(u64::try_from(envelope.not_before - now).unwrap_or(0));
            return release(lease, wait).await;
        }
        let key = spool_key(&envelope).to_string();
        let body = match self.spool.get(&key).await {
            Ok(Some(body)) => body,
            // Bodies go once every recipient is final: an envelope back after its lease whose
            // body is gone was finished by the attempt before, which ended before its ack (a
            // worker killed, an ack lost). There is nothing left to do.
            Ok(None) if lease.attempt > 1 => {
                tracing::info!(%key, "no body left: an earlier attempt finished this message");
                return acknowledge(lease).await;
            }
            // The hand-off removes the body of a message it refused; an envelope queued anyway
            // (its acknowledgement lost) was retried by the client under a new id.
            Ok(None) => return dead_letter(lease, &format!("no body in the spool under {key}")).await,
            Err(Error::Corrupt { detail, .. }) => {
                return dead_letter(lease, &format!("the spooled body is damaged: {detail}")).await;
            }
            Err(error) => {
                tracing::warn!(%error, "spool unavailable");
                return release(lease, INFRASTRUCTURE_RETRY).await;
            }
        };

        let started = Instant::now();
        let outcomes = tokio::select! {
            outcomes = self.attempt(&envelope, &body) => outcomes,
            () = keep_leased(&lease, self.lease_renewal) => unreachable!("keep_leased never returns"),
        };
        metrics::histogram!("kubemail_delivery_attempt_seconds").record(started.elapsed().as_secs_f64());
        self.settle(lease, envelope, &body, outcomes).await;
    }

    /// One attempt at every recipient of `envelope`.
    async fn attempt(&self, envelope: &Envelope, body: &Bytes) -> Vec<(Recipient, Outcome)> {
        let mut outcomes = Vec::with_capacity(envelope.recipients.len());
        let (local, remote): (Vec<&Recipient>, Vec<&Recipient>) = envelope.recipients.iter().partition(|r| r.local);
        let addresses: Vec<&str> = local.iter().map(|recipient| recipient.address.as_str()).collect();
        // The root id, not a continuation's: the mailstore deduplicates on it.
        let results = local::deliver_all(&self.mailstore, spool_key(envelope), &addresses, body).await;
        for (recipient, outcome) in local.into_iter().zip(results) {
            count("local", &outcome);
            outcomes.push((recipient.clone(), outcome));
        }
        if !remote.is_empty() {
            let results = match &self.outbound {
                Some(outbound) => outbound.deliver(envelope, &remote, body).await,
                None => remote
                    .iter()
                    .map(|_| Outcome::Deferred(Failure::local("4.4.0", "this deployment has no outbound route")))
                    .collect(),
            };
            for (recipient, outcome) in remote.into_iter().zip(results) {
                count("remote", &outcome);
                outcomes.push((recipient.clone(), outcome));
            }
        }
        outcomes
    }

    /// Reports, continues or retries, and acks, as the module documentation describes.
    async fn settle(&self, lease: Lease, envelope: Envelope, body: &Bytes, outcomes: Vec<(Recipient, Outcome)>) {
        let now = unix_now();
        let next = self.schedule.next(envelope.received_at, now);
        let mut entries = Vec::new();
        let mut pending = Vec::new();
        let mut last_failure = None;
        for (recipient, outcome) in outcomes {
            let entry = |action| Entry {
                recipient: recipient.address.clone(),
                original_recipient: recipient.original_recipient.clone(),
                action,
            };
            match outcome {
                Outcome::Delivered => entries.push(entry(Action::Delivered)),
                Outcome::Failed(failure) => {
                    tracing::info!(recipient = %recipient.address, %failure, "delivery failed");
                    entries.push(entry(Action::Failed(failure)));
                }
                Outcome::Deferred(failure) if next == Next::GiveUp => {
                    tracing::info!(recipient = %recipient.address, %failure, "giving up: the message is too old");
                    entries.push(entry(Action::Failed(failure.expired())));
                }
                Outcome::Deferred(failure) => {
                    tracing::info!(recipient = %recipient.address, %failure, "delivery deferred");
                    last_failure = Some(failure);
                    pending.push(recipient);
                }
            }
        }
        // Nothing pending, also when the message was too old: its deferrals became failures.
        let (Next::At(next_attempt), false) = (next, pending.is_empty()) else {
            return self.finish(lease, &envelope, body, entries, now).await;
        };
        let retry_in = Duration::from_secs(u64::try_from(next_attempt - now).unwrap_or(0));
        let delay_reported = envelope.delay_reported || self.delay_due(&envelope, &pending, now);
        if delay_reported && !envelope.delay_reported {
            let failure = last_failure.clone().unwrap_or_else(|| Failure::local("4.4.7", "still trying"));
            entries.extend(pending.iter().map(|recipient| Entry {
                recipient: recipient.address.clone(),
                original_recipient: recipient.original_recipient.clone(),
                action: Action::Delayed(failure.clone()),
            }));
        }
        if entries.is_empty() {
            tracing::debug!(?last_failure, retry_in_seconds = retry_in.as_secs(), "every recipient deferred");
            return release(lease, retry_in).await;
        }
        // Some recipients are done: continue with the others only, under a new id.
        if let Err(error) = self.reporter.report(&envelope, entries, body, now).await {
            tracing::warn!(%error, "report not queued; the envelope is tried again");
            return release(lease, INFRASTRUCTURE_RETRY).await;
        }
        let continuation = Envelope {
            id: format!("{}-{}", spool_key(&envelope), envelope.generation + 1),
            spool_key: spool_key(&envelope).to_string(),
            recipients: pending,
            not_before: next_attempt,
            generation: envelope.generation + 1,
            delay_reported,
            ..envelope
        };
        let message = QueueMessage {
            id: continuation.id.clone(),
            payload: continuation.encode_to_vec().into(),
            headers: lease.headers.clone(),
        };
        if let Err(error) = self.queue.publish(message).await {
            tracing::warn!(%error, "continuation not queued; the envelope is tried again");
            return release(lease, INFRASTRUCTURE_RETRY).await;
        }
        acknowledge(lease).await;
    }

    /// Whether `pending` recipients of `envelope` are now owed a delay notice.
    fn delay_due(&self, envelope: &Envelope, pending: &[Recipient], now: i64) -> bool {
        let age = Duration::from_secs(u64::try_from(now - envelope.received_at).unwrap_or(0));
        !self.delay_warning.is_zero()
            && age >= self.delay_warning
            && pending.iter().any(|recipient| recipient.notify & DsnNotify::Delay as u32 != 0)
    }

    /// Every recipient is final: report, remove the body, ack.
    async fn finish(&self, lease: Lease, envelope: &Envelope, body: &Bytes, entries: Vec<Entry>, now: i64) {
        if let Err(error) = self.reporter.report(envelope, entries, body, now).await {
            tracing::warn!(%error, "report not queued; the envelope is tried again");
            return release(lease, INFRASTRUCTURE_RETRY).await;
        }
        if let Err(error) = self.spool.delete(spool_key(envelope)).await {
            // The envelope is done either way; the body is only left behind.
            tracing::warn!(%error, "delivered message's body not removed from the spool");
        }
        acknowledge(lease).await;
    }
}

/// What every envelope must have; otherwise it is a dead letter.
fn check(envelope: &Envelope, lease_id: &str) -> Result<(), String> {
    if envelope.id != lease_id {
        return Err(format!("the envelope's id {:?} is not the queue message's {lease_id:?}", envelope.id));
    }
    if envelope.recipients.is_empty() {
        return Err("the envelope has no recipients".into());
    }
    if let Some(bad) = envelope.recipients.iter().find(|r| !r.address.contains('@')) {
        return Err(format!("recipient {:?} is not an address", bad.address));
    }
    Ok(())
}

/// The spool key of the envelope's body: its own id unless it continues an earlier envelope.
fn spool_key(envelope: &Envelope) -> &str {
    if envelope.spool_key.is_empty() { &envelope.id } else { &envelope.spool_key }
}

/// Extends the lease every `every`, for as long as it is polled.
async fn keep_leased(lease: &Lease, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(error) = lease.extend().await {
            tracing::warn!(%error, "lease not extended");
        }
    }
}

async fn release(lease: Lease, delay: Duration) {
    let id = lease.id.clone();
    if let Err(error) = lease.retry_after(delay).await {
        tracing::warn!(%id, %error, "retry not scheduled; the message comes back when its lease ends");
    }
}

async fn acknowledge(lease: Lease) {
    let id = lease.id.clone();
    if let Err(error) = lease.ack().await {
        tracing::warn!(%id, %error, "ack failed; the message comes back and is delivered idempotently");
    }
}

async fn dead_letter(lease: Lease, reason: &str) {
    let id = lease.id.clone();
    tracing::error!(%id, reason, "queue message moved aside as a dead letter");
    metrics::counter!("kubemail_delivery_dead_letters_total").increment(1);
    if let Err(error) = lease.dead_letter(reason).await {
        tracing::warn!(%id, %error, "dead letter not stored; the message comes back when its lease ends");
    }
}

fn count(route: &'static str, outcome: &Outcome) {
    let outcome = match outcome {
        Outcome::Delivered => "delivered",
        Outcome::Failed(_) => "failed",
        Outcome::Deferred(_) => "deferred",
    };
    metrics::counter!("kubemail_delivery_recipients_total", "route" => route, "outcome" => outcome).increment(1);
}
