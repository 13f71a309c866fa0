//! The `Spool` trait: message bodies between acceptance and final delivery.

use async_trait::async_trait;
use bytes::Bytes;

use crate::Result;

/// Durable storage for message bodies, keyed by queue message id.
#[async_trait]
pub trait Spool: Send + Sync + 'static {
    /// Stores `body` under `key` and returns once it is durable. Putting an existing key again
    /// replaces it (a client that retries after a lost acknowledgement stores the same bytes).
    async fn put(&self, key: &str, body: Bytes) -> Result<()>;
    /// The body stored under `key`, or `None`.
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;
    /// Removes `key`; removing a missing key succeeds.
    async fn delete(&self, key: &str) -> Result<()>;
}
