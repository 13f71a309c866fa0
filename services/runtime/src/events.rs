//! The `EventBus` trait: fire-and-forget fan-out of change events to every subscriber.
//!
//! Subjects are dot-separated tokens (`events.<account>.<mailbox>`); subscription patterns use
//! NATS wildcards: `*` matches one token, `>` (last) matches one or more.

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::{Headers, Result};

/// One event as a subscriber receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub subject: String,
    pub payload: Bytes,
    pub headers: Headers,
}

/// The events matching one subscription, in publish order per publisher. Dropping the stream
/// unsubscribes.
pub type EventStream = BoxStream<'static, Event>;

/// Publish/subscribe for change events. Delivery is at most once: events are hints for live
/// sessions, the store stays the source of truth.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    async fn publish(&self, subject: &str, payload: Bytes, headers: Headers) -> Result<()>;
    /// Every event published after this returns whose subject matches `pattern`.
    async fn subscribe(&self, pattern: &str) -> Result<EventStream>;
}
