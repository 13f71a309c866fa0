//! The route for remote recipients.

use async_trait::async_trait;
use bytes::Bytes;
use kubemail_proto::queue::{Envelope, Recipient};

use crate::outcome::Outcome;

/// Sends a message to recipients on other servers.
#[async_trait]
pub trait Outbound: Send + Sync + 'static {
    /// One outcome per recipient, in the order given.
    async fn deliver(&self, envelope: &Envelope, recipients: &[&Recipient], body: &Bytes) -> Vec<Outcome>;
}
