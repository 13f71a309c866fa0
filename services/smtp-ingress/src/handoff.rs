//! The durable hand-off: the body into the spool, then the envelope into the queue. A message
//! is accepted (`250`) only when both have acknowledged; otherwise the client is told to try
//! again (`451`) and the spooled body is removed.
//!
//! [`Handoff::discarding`] throws accepted mail away instead. It exists for one purpose: to
//! measure the SMTP exchange alone against Postfix's `smtp-sink` in `bench/smtp.sh`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kubemail_proto::Message as _;
use kubemail_proto::queue::Envelope;
use kubemail_runtime::{Headers, Queue, QueueMessage, Spool, propagation};

#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error("spool: {0}")]
    Spool(kubemail_runtime::Error),
    #[error("queue: {0}")]
    Queue(kubemail_runtime::Error),
    #[error("{0} did not acknowledge in time")]
    Timeout(&'static str),
}

/// Where accepted mail goes.
#[derive(Clone)]
pub struct Handoff {
    /// `None` when discarding.
    durable: Option<Durable>,
}

#[derive(Clone)]
struct Durable {
    spool: Arc<dyn Spool>,
    queue: Arc<dyn Queue>,
    /// How long the spool, then the queue, may take to acknowledge.
    timeout: Duration,
}

impl Handoff {
    pub fn new(spool: Arc<dyn Spool>, queue: Arc<dyn Queue>, timeout: Duration) -> Self {
        Handoff { durable: Some(Durable { spool, queue, timeout }) }
    }

    /// A hand-off that accepts every message and keeps nothing (benchmarks only).
    pub fn discarding() -> Self {
        Handoff { durable: None }
    }

    /// Stores `body` under the envelope's id, then queues the envelope with the current trace
    /// context. Returns the id once both are durable.
    pub async fn store(&self, envelope: Envelope, body: Bytes) -> Result<String, HandoffError> {
        match &self.durable {
            Some(durable) => durable.store(envelope, body).await,
            None => Ok(envelope.id),
        }
    }
}

impl Durable {
    async fn store(&self, mut envelope: Envelope, body: Bytes) -> Result<String, HandoffError> {
        let id = envelope.id.clone();
        match tokio::time::timeout(self.timeout, self.spool.put(&id, body)).await {
            Err(_) => return Err(HandoffError::Timeout("the spool")),
            Ok(Err(error)) => return Err(HandoffError::Spool(error)),
            Ok(Ok(())) => {}
        }
        let mut headers = Headers::new();
        propagation::inject_headers(&mut headers);
        envelope.trace_context = headers.clone().into_iter().collect();
        let message = QueueMessage { id: id.clone(), payload: envelope.encode_to_vec().into(), headers };
        let published = match tokio::time::timeout(self.timeout, self.queue.publish(message)).await {
            Err(_) => Err(HandoffError::Timeout("the queue")),
            Ok(Err(error)) => Err(HandoffError::Queue(error)),
            Ok(Ok(_)) => Ok(id.clone()),
        };
        if published.is_err() {
            // The client retries with a new id. Should the envelope have been queued after all
            // (an acknowledgement lost), its body is gone and it delivers nothing: the retry is
            // then the only copy, not a second one. A body left behind if this delete fails
            // belongs to no envelope.
            if let Err(error) = self.spool.delete(&id).await {
                tracing::warn!(%id, %error, "spooled body of a refused message not removed");
            }
        }
        published
    }
}

/// A new queue id: milliseconds since the epoch and 64 random bits, in hex, so ids sort by
/// acceptance time and never collide between replicas.
pub fn new_queue_id() -> String {
    let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!("{millis:011x}{:016x}", rand::random::<u64>())
}
