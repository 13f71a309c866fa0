//! The `Queue` trait: envelopes waiting for delivery, consumed with leases.
//!
//! A consumer pulls messages; each comes with a [`Lease`]. While the lease is held no other
//! consumer gets the message. The holder ends it with [`Lease::ack`] (done, gone for good) or
//! [`Lease::retry_after`] (deliver again after a delay). A holder that dies simply stops
//! extending: when the lease expires the message is delivered again, to any consumer.
//!
//! A message that can never be processed (it cannot be parsed, or names no body) is moved aside
//! with [`Lease::dead_letter`], with the reason: it is kept for an operator to inspect
//! ([`Queue::dead_letters`]) and never delivered again.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Headers, Result};

/// A message to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueMessage {
    /// Unique id; publishing the same id again (within the deduplication window, at least two
    /// minutes) is a no-op, so a publisher may retry after a lost acknowledgement.
    pub id: String,
    pub payload: Bytes,
    pub headers: Headers,
}

/// The outcome of a publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    /// True when a message with this id was already in the queue and nothing was added.
    pub duplicate: bool,
}

/// A message moved aside, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub message: QueueMessage,
    /// One line of text.
    pub reason: String,
}

/// Implementation side of a lease: what [`Lease`] delegates to.
#[async_trait]
pub trait LeaseHandle: Send + Sync {
    async fn ack(&self) -> Result<()>;
    async fn retry_after(&self, delay: Duration) -> Result<()>;
    async fn extend(&self) -> Result<()>;
    /// Keeps `letter` aside, then removes the message from the queue as `ack` does.
    async fn dead_letter(&self, letter: DeadLetter) -> Result<()>;
}

/// A pulled message, held exclusively until acked, retried, or the lease expires.
pub struct Lease {
    pub id: String,
    pub payload: Bytes,
    pub headers: Headers,
    /// 1 for the first delivery, 2 after one retry or expired lease, and so on.
    pub attempt: u32,
    handle: Box<dyn LeaseHandle>,
}

impl Lease {
    pub fn new(id: String, payload: Bytes, headers: Headers, attempt: u32, handle: Box<dyn LeaseHandle>) -> Self {
        Lease { id, payload, headers, attempt, handle }
    }

    /// Done: the message is removed from the queue for good.
    pub async fn ack(self) -> Result<()> {
        self.handle.ack().await
    }

    /// Release the message to be delivered again no sooner than `delay` from now.
    pub async fn retry_after(self, delay: Duration) -> Result<()> {
        self.handle.retry_after(delay).await
    }

    /// Keep holding the message: restarts the lease timer (for long deliveries).
    pub async fn extend(&self) -> Result<()> {
        self.handle.extend().await
    }

    /// Moves the message aside for good, with `reason` (control characters become spaces).
    pub async fn dead_letter(self, reason: &str) -> Result<()> {
        let reason = reason.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        let message = QueueMessage { id: self.id, payload: self.payload, headers: self.headers };
        self.handle.dead_letter(DeadLetter { message, reason }).await
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("id", &self.id).field("attempt", &self.attempt).finish()
    }
}

/// A work queue shared by any number of publishers and consumers.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Adds a message; returns once it is durable. Idempotent on `message.id`.
    async fn publish(&self, message: QueueMessage) -> Result<Published>;
    /// Waits up to `wait` for messages and returns at most `max` of them, each leased to the
    /// caller. Returns an empty vector when nothing became available in time.
    async fn pull(&self, max: usize, wait: Duration) -> Result<Vec<Lease>>;
    /// The oldest `max` messages moved aside, oldest first.
    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>>;
}
