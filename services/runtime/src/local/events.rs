//! [`LocalEventBus`]: in-process fan-out of change events with NATS subject wildcards.

use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio_stream::wrappers::ReceiverStream;

use crate::{Event, EventBus, EventStream, Headers, Result, contract};

/// Each subscriber has its own bounded buffer and publishing never waits: when a subscriber's
/// buffer is full the event is dropped for that subscriber only (events are hints; an IMAP
/// session that misses one sees the change at its next poll or command).
#[derive(Clone)]
pub struct LocalEventBus {
    shared: Arc<Subscribers>,
}

struct Subscribers {
    buffer: usize,
    list: Mutex<Vec<Subscriber>>,
}

struct Subscriber {
    pattern: String,
    sender: mpsc::Sender<Event>,
}

impl LocalEventBus {
    /// A bus buffering up to `buffer` events per subscriber (at least one).
    pub fn new(buffer: usize) -> Self {
        LocalEventBus { shared: Arc::new(Subscribers { buffer: buffer.max(1), list: Mutex::new(Vec::new()) }) }
    }

    fn subscribers(&self) -> std::sync::MutexGuard<'_, Vec<Subscriber>> {
        // Nothing panics while holding the lock, and the list stays valid if something did.
        self.shared.list.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl EventBus for LocalEventBus {
    async fn publish(&self, subject: &str, payload: Bytes, headers: Headers) -> Result<()> {
        contract::check_subject(subject)?;
        let headers: Headers = contract::carried_headers(&headers)?
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect();
        let event = Event { subject: subject.to_owned(), payload, headers };
        // Dropped streams unsubscribe here, lazily.
        self.subscribers().retain(|subscriber| {
            if !contract::subject_matches(&subscriber.pattern, subject) {
                return !subscriber.sender.is_closed();
            }
            match subscriber.sender.try_send(event.clone()) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    tracing::debug!(pattern = %subscriber.pattern, subject, "slow subscriber, event dropped");
                    true
                }
                Err(TrySendError::Closed(_)) => false,
            }
        });
        Ok(())
    }

    async fn subscribe(&self, pattern: &str) -> Result<EventStream> {
        contract::check_pattern(pattern)?;
        let (sender, receiver) = mpsc::channel(self.shared.buffer);
        self.subscribers().push(Subscriber { pattern: pattern.to_owned(), sender });
        Ok(ReceiverStream::new(receiver).boxed())
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    #[tokio::test]
    async fn a_slow_subscriber_loses_events_without_blocking_the_publisher() {
        let bus = LocalEventBus::new(2);
        let mut slow = bus.subscribe("events.>").await.expect("subscribe");
        let mut other = bus.subscribe("events.alice.*").await.expect("subscribe");
        let publish_all = async {
            for i in 0..10 {
                let subject = format!("events.alice.box{i}");
                bus.publish(&subject, Bytes::new(), Headers::new()).await.expect("publish");
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), publish_all)
            .await
            .expect("publishing does not wait for subscribers");

        for stream in [&mut slow, &mut other] {
            let mut kept = Vec::new();
            while let Some(Some(event)) = stream.next().now_or_never() {
                kept.push(event.subject);
            }
            assert_eq!(kept, ["events.alice.box0", "events.alice.box1"], "the buffer keeps the oldest");
        }
        // Once drained, a subscriber receives again.
        bus.publish("events.alice.late", Bytes::new(), Headers::new()).await.expect("publish");
        let late = slow.next().now_or_never().flatten().map(|event| event.subject);
        assert_eq!(late.as_deref(), Some("events.alice.late"));
    }
}
