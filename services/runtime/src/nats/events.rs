//! [`NatsEventBus`]: change events over core NATS (no JetStream: events are hints, a missed
//! one costs an IMAP client a later refresh, not mail).

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::{NatsAccess, nats_headers, unavailable, user_headers};
use crate::{Event, EventBus, EventStream, Headers, Result, contract};

/// Publish/subscribe on the shared connection. A subscriber that falls too far behind loses
/// events (async-nats drops them and reports a slow consumer) rather than slowing the server.
#[derive(Clone)]
pub struct NatsEventBus {
    client: async_nats::Client,
}

impl NatsEventBus {
    pub fn new(client: async_nats::Client) -> Self {
        NatsEventBus { client }
    }

    /// Connects to the server at `url`, for services that need events only (no queue or spool).
    pub async fn connect(url: &str, access: &NatsAccess) -> Result<Self> {
        Ok(NatsEventBus::new(access.connect(url).await?))
    }
}

#[async_trait]
impl EventBus for NatsEventBus {
    async fn publish(&self, subject: &str, payload: Bytes, headers: Headers) -> Result<()> {
        contract::check_subject(subject)?;
        let headers = nats_headers(&headers)?;
        self.client.publish_with_headers(subject.to_owned(), headers, payload).await.map_err(unavailable)
    }

    async fn subscribe(&self, pattern: &str) -> Result<EventStream> {
        contract::check_pattern(pattern)?;
        let subscriber = self.client.subscribe(pattern.to_owned()).await.map_err(unavailable)?;
        // The trait promises every event published after we return, also from other
        // connections: wait until the server has processed the subscription. Flushing only
        // sends it; the server answers a request nobody serves ("no responders") after it has
        // read everything this connection sent before.
        match self.client.request(self.client.new_inbox(), Bytes::new()).await {
            Err(error) if error.kind() == async_nats::RequestErrorKind::NoResponders => {}
            Ok(_) => {}
            Err(error) => return Err(unavailable(error)),
        }
        let events = subscriber.map(|message| Event {
            subject: message.subject.to_string(),
            headers: user_headers(message.headers.as_ref()),
            payload: message.payload,
        });
        Ok(events.boxed())
    }
}
