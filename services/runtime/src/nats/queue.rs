//! [`NatsQueue`]: envelopes in a JetStream work-queue stream, leased through a durable pull
//! consumer.
//!
//! The lease is JetStream's own delivery tracking: a pulled message stays pending on the
//! consumer until it is acked, NAKed or its `ack_wait` (the lease) runs out, after which the
//! server delivers it again to whichever replica pulls next.

use std::sync::Arc;
use std::time::Duration;

use async_nats::header::HeaderValue;
use async_nats::header::NATS_MESSAGE_ID;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, DirectGetErrorKind, RetentionPolicy, StorageType, Stream};
use async_nats::jetstream::{self, AckKind};
use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::OnceCell;

use super::{NatsConfig, nats_headers, unavailable, user_headers};
use crate::queue::LeaseHandle;
use crate::{DeadLetter, Error, Lease, Published, Queue, QueueMessage, Result, contract};

/// Header of a dead letter that says why it was moved aside.
const REASON_HEADER: &str = "Kubemail-Dead-Letter-Reason";

/// The queue of one stream and its shared consumer. Cloning shares the connection.
#[derive(Clone)]
pub struct NatsQueue {
    jetstream: jetstream::Context,
    stream: String,
    /// Envelopes go to one subject under the prefix; the stream captures the whole prefix so
    /// later kinds of work can get their own subjects.
    subject: String,
    consumer: Consumer,
    dead_letters: DeadLetters,
}

/// The shared pull consumer, created (or updated) on the first pull: a service that only
/// publishes never touches it, so it cannot reset the lease the delivery workers configured.
#[derive(Clone)]
struct Consumer {
    stream: Stream,
    config: pull::Config,
    pulling: Arc<OnceCell<PullConsumer>>,
}

impl Consumer {
    async fn get(&self) -> Result<&PullConsumer> {
        self.pulling
            .get_or_try_init(|| async {
                // `create_consumer` creates or updates, so a deploy that changes the lease
                // takes effect.
                self.stream.create_consumer(self.config.clone()).await.map_err(unavailable)
            })
            .await
    }
}

/// The stream messages are moved aside to (limits retention: kept until removed).
#[derive(Clone)]
struct DeadLetters {
    stream: Stream,
    subject: String,
}

impl NatsQueue {
    pub(super) async fn open(jetstream: jetstream::Context, config: &NatsConfig) -> Result<Self> {
        let stream = jetstream
            .get_or_create_stream(stream::Config {
                name: config.stream.clone(),
                description: Some("kubemail envelopes awaiting delivery".into()),
                subjects: vec![format!("{}.>", config.subject_prefix)],
                // Each message is removed once acked: the stream is the queue, not a log.
                retention: RetentionPolicy::WorkQueue,
                storage: StorageType::File,
                num_replicas: config.replicas,
                duplicate_window: config.dedupe_window,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        // An existing stream keeps its configuration; refuse one that would not behave as a
        // queue rather than lose or duplicate mail quietly.
        let existing = &stream.cached_info().config;
        if existing.retention != RetentionPolicy::WorkQueue {
            return Err(Error::Config(format!(
                "NATS stream {} exists with {:?} retention, not work-queue",
                config.stream, existing.retention
            )));
        }
        let subject = format!("{}.envelope", config.subject_prefix);
        let captured = existing.subjects.iter().any(|s| contract::subject_matches(s, &subject));
        if !captured {
            return Err(Error::Config(format!(
                "NATS stream {} exists but does not capture {subject} (its subjects: {:?})",
                config.stream, existing.subjects
            )));
        }

        let consumer_config = pull::Config {
            durable_name: Some(config.consumer.clone()),
            description: Some("kubemail delivery workers".into()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: config.lease,
            // Retries are scheduled by the application (retry_after) and end in a bounce,
            // so the server never gives up on a message by itself.
            max_deliver: -1,
            // A message waiting for its retry counts as unacknowledged. With the server's limit
            // (1,000 by default) a backlog of deferred mail, say for a domain that is down,
            // would stop every new message until the retries came due. Workers bound what they
            // hold through the size of their pulls instead.
            max_ack_pending: -1,
            ..Default::default()
        };

        let name = &config.dead_letter_stream;
        let dead_letter_stream = jetstream
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                description: Some("kubemail queue messages that can never be processed".into()),
                subjects: vec![format!("{name}.>")],
                retention: RetentionPolicy::Limits,
                storage: StorageType::File,
                num_replicas: config.replicas,
                duplicate_window: config.dedupe_window,
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let dead_letters = DeadLetters { stream: dead_letter_stream, subject: format!("{name}.message") };
        let consumer = Consumer { stream, config: consumer_config, pulling: Arc::new(OnceCell::new()) };
        Ok(NatsQueue { jetstream, stream: config.stream.clone(), subject, consumer, dead_letters })
    }

    fn lease_for(&self, message: jetstream::Message) -> Result<Lease> {
        let info = message.info().map_err(|e| Error::Corrupt {
            what: "queue delivery",
            detail: format!("no JetStream delivery info: {e}"),
        })?;
        let attempt = u32::try_from(info.delivered).unwrap_or(u32::MAX).max(1);
        let stream_sequence = info.stream_sequence;
        let id = match message.headers.as_ref().and_then(|h| h.get(NATS_MESSAGE_ID)) {
            Some(id) => id.as_str().to_owned(),
            None => {
                // Published around this API: there is no id to deduplicate on, but the message
                // is still mail; hand it over under a stable name rather than drop it.
                tracing::warn!(stream_sequence, "queue message without Nats-Msg-Id");
                format!("nats-stream-sequence-{stream_sequence}")
            }
        };
        let headers = user_headers(message.headers.as_ref());
        let (message, acker) = message.split();
        let handle = NatsLease { acker, jetstream: self.jetstream.clone(), dead_letters: self.dead_letters.clone() };
        Ok(Lease::new(id, message.payload, headers, attempt, Box::new(handle)))
    }
}

#[async_trait]
impl Queue for NatsQueue {
    async fn publish(&self, message: QueueMessage) -> Result<Published> {
        contract::check_message_id(&message.id)?;
        let headers = nats_headers(&message.headers)?;
        let publish = PublishMessage::build()
            .payload(message.payload)
            .headers(headers)
            .message_id(&message.id)
            // Fail instead of landing in some other stream that captures the same subject.
            .expected_stream(&self.stream);
        let ack = self
            .jetstream
            .send_publish(self.subject.clone(), publish)
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        Ok(Published { duplicate: ack.duplicate })
    }

    async fn pull(&self, max: usize, wait: Duration) -> Result<Vec<Lease>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        // A no-wait request with an expiry waits up to `wait` for the first message, then
        // returns at once with what is available, up to `max`. A plain batch request would
        // hold on until `max` arrive, and dropping it early would strand messages delivered
        // to it until their lease ran out.
        let mut fetch = self.consumer.get().await?.fetch().max_messages(max);
        if !wait.is_zero() {
            fetch = fetch.expires(wait);
        }
        let mut batch = fetch.messages().await.map_err(unavailable)?;
        let mut leases = Vec::new();
        while let Some(message) = batch.next().await {
            match message {
                Ok(message) => leases.push(self.lease_for(message)?),
                // What was already delivered is leased to us: hand it out rather than leave it
                // stuck until the lease expires.
                Err(error) if !leases.is_empty() => {
                    tracing::warn!(%error, "pull ended early");
                    break;
                }
                Err(error) => return Err(unavailable(error)),
            }
        }
        Ok(leases)
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>> {
        let mut stream = self.dead_letters.stream.clone();
        let state = stream.info().await.map_err(unavailable)?.state.clone();
        let mut letters = Vec::new();
        for sequence in state.first_sequence..=state.last_sequence {
            if letters.len() >= max || state.messages == 0 {
                break;
            }
            let stored = match stream.direct_get(sequence).await {
                Ok(stored) => stored,
                // Removed by an operator: a gap in the sequence.
                Err(error) if error.kind() == DirectGetErrorKind::NotFound => continue,
                Err(error) => return Err(unavailable(error)),
            };
            let header = |name: &str| stored.headers.get(name).map(|value| value.as_str().to_owned());
            let id = header(NATS_MESSAGE_ID.as_ref()).unwrap_or_else(|| format!("dead-letter-sequence-{sequence}"));
            let reason = header(REASON_HEADER).unwrap_or_default();
            let mut headers = user_headers(Some(&stored.headers));
            headers.remove(REASON_HEADER);
            letters.push(DeadLetter { message: QueueMessage { id, payload: stored.payload, headers }, reason });
        }
        Ok(letters)
    }
}

/// The reply subject of one delivery. Every acknowledgement waits for the server's
/// confirmation: an ack that got lost would otherwise look like success and the message would
/// come back after the lease.
struct NatsLease {
    acker: Acker,
    jetstream: jetstream::Context,
    dead_letters: DeadLetters,
}

impl NatsLease {
    async fn confirm(&self, kind: AckKind) -> Result<()> {
        self.acker.double_ack_with(kind).await.map_err(unavailable)
    }
}

#[async_trait]
impl LeaseHandle for NatsLease {
    async fn ack(&self) -> Result<()> {
        self.confirm(AckKind::Ack).await
    }

    async fn retry_after(&self, delay: Duration) -> Result<()> {
        self.confirm(AckKind::Nak(Some(delay))).await
    }

    async fn extend(&self) -> Result<()> {
        self.confirm(AckKind::Progress).await
    }

    async fn dead_letter(&self, letter: DeadLetter) -> Result<()> {
        let mut headers = nats_headers(&letter.message.headers)?;
        let reason: HeaderValue =
            letter.reason.parse().map_err(|e| Error::invalid("dead letter reason", format!("{e}")))?;
        headers.insert(REASON_HEADER, reason);
        let publish = PublishMessage::build()
            .payload(letter.message.payload)
            .headers(headers)
            // A second holder moving the same message aside adds nothing.
            .message_id(&letter.message.id)
            .expected_stream(self.dead_letters.stream.cached_info().config.name.as_str());
        self.jetstream
            .send_publish(self.dead_letters.subject.clone(), publish)
            .await
            .map_err(unavailable)?
            .await
            .map_err(unavailable)?;
        self.confirm(AckKind::Ack).await
    }
}
