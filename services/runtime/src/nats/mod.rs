//! The NATS JetStream transports used in production.
//!
//! - [`NatsConfig`] — names and timings: streams, subjects, consumer, lease.
//! - [`NatsAccess`] (`access.rs`) — the component's user and the server's CA; [`NatsFlags`]
//!   (`flags.rs`) — the flags that give them.
//! - [`NatsTransport`] — connects once and builds all three implementations on one client,
//!   creating the streams when they are missing (the consumer on the first pull).
//! - [`NatsSpool`] (`spool.rs`) — bodies in a stream with one subject per body.
//! - [`NatsQueue`] (`queue.rs`) — envelopes in a work-queue stream, consumed through one durable
//!   pull consumer that every replica shares; dead letters in a stream of their own.
//! - [`NatsEventBus`] (`events.rs`) — core NATS publish/subscribe.

mod access;
mod events;
mod flags;
mod queue;
mod spool;

use std::fmt::Display;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::header::{HeaderName, HeaderValue};

use crate::{Error, Headers, Result, contract};

pub use access::{NatsAccess, NatsCredentials};
pub use events::NatsEventBus;
pub use flags::NatsFlags;
pub use queue::NatsQueue;
pub use spool::NatsSpool;

/// Where the transports live on the NATS server, and how long a lease lasts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsConfig {
    /// Server URL, e.g. `nats://nats.kubemail.svc:4222`.
    pub url: String,
    /// The component's user and the server's CA.
    pub access: NatsAccess,
    /// JetStream stream holding queued envelopes (work-queue retention, file storage).
    pub stream: String,
    /// The stream captures `<subject_prefix>.>`; envelopes are published under it.
    pub subject_prefix: String,
    /// Durable pull consumer shared by every delivery worker.
    pub consumer: String,
    /// JetStream stream holding message bodies, on subjects `<spool_stream>.<key>.<chunk>`.
    pub spool_stream: String,
    /// JetStream stream holding queue messages moved aside, on `<dead_letter_stream>.message`.
    pub dead_letter_stream: String,
    /// How long a pulled message stays leased (the consumer's `ack_wait`, set by whoever pulls:
    /// the delivery workers).
    pub lease: Duration,
    /// How long the stream remembers message ids for idempotent publishing.
    pub dedupe_window: Duration,
    /// Copies of both streams kept in a JetStream cluster (1 for a single server;
    /// 3 survives the loss of one node).
    pub replicas: usize,
}

impl Default for NatsConfig {
    fn default() -> Self {
        NatsConfig {
            url: "nats://127.0.0.1:4222".into(),
            access: NatsAccess::default(),
            stream: "QUEUE".into(),
            subject_prefix: "queue".into(),
            consumer: "delivery".into(),
            spool_stream: "SPOOL".into(),
            dead_letter_stream: "DEADLETTER".into(),
            lease: contract::DEFAULT_LEASE,
            dedupe_window: contract::MIN_DEDUPE_WINDOW,
            replicas: 1,
        }
    }
}

impl NatsConfig {
    fn validate(&self) -> Result<()> {
        for (what, name) in [
            ("stream", &self.stream),
            ("consumer", &self.consumer),
            ("spool stream", &self.spool_stream),
            ("dead letter stream", &self.dead_letter_stream),
        ] {
            // JetStream names become subject tokens (`$JS.API.STREAM.INFO.<name>`).
            let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !valid {
                return Err(Error::Config(format!(
                    "NATS {what} name {name:?} must be non-empty ASCII letters, digits, '_' or '-'"
                )));
            }
        }
        contract::check_subject(&self.subject_prefix)
            .map_err(|e| Error::Config(format!("NATS subject prefix: {e}")))?;
        for name in [&self.spool_stream, &self.dead_letter_stream] {
            if *name == self.subject_prefix {
                return Err(Error::Config(format!("the NATS stream {name} would capture the queue's subjects")));
            }
        }
        if self.spool_stream == self.dead_letter_stream {
            return Err(Error::Config(format!(
                "the spool and dead letters need two streams, not {}",
                self.spool_stream
            )));
        }
        contract::check_queue_settings(self.lease, self.dedupe_window)?;
        if self.replicas == 0 || self.replicas > 5 {
            return Err(Error::Config(format!(
                "NATS replicas must be 1 to 5 (JetStream's limit), got {}",
                self.replicas
            )));
        }
        Ok(())
    }
}

/// The three NATS implementations, sharing one connection.
#[derive(Clone)]
pub struct NatsTransport {
    pub client: async_nats::Client,
    pub spool: NatsSpool,
    pub queue: NatsQueue,
    pub events: NatsEventBus,
}

impl NatsTransport {
    /// Connects to `config.url` and sets up the streams.
    pub async fn connect(config: &NatsConfig) -> Result<Self> {
        config.validate()?;
        let client = config.access.connect(&config.url).await?;
        Self::from_client(client, config).await
    }

    /// Builds the transports on an existing connection, creating the streams when missing.
    /// Every replica runs this at start; it is idempotent.
    pub async fn from_client(client: async_nats::Client, config: &NatsConfig) -> Result<Self> {
        config.validate()?;
        let jetstream = async_nats::jetstream::new(client.clone());
        let queue = NatsQueue::open(jetstream, config).await?;
        let spool = NatsSpool::open(&client, config).await?;
        let events = NatsEventBus::new(client.clone());
        Ok(NatsTransport { client, spool, queue, events })
    }
}

/// The broker failed or refused an operation: a temporary failure for the caller.
fn unavailable(error: impl Display) -> Error {
    Error::unavailable("nats", error)
}

/// NATS headers for a message; the caller's headers are checked by [`contract`] first, so
/// nothing here can hit async-nats' panicking conversions.
fn nats_headers(headers: &Headers) -> Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for (name, value) in contract::carried_headers(headers)? {
        let name: HeaderName = name.parse().map_err(|e| Error::invalid("header name", e))?;
        let value: HeaderValue = value.parse().map_err(|e| Error::invalid("header value", e))?;
        map.insert(name, value);
    }
    Ok(map)
}

/// The caller's headers of a received message, without the ones NATS adds for itself.
fn user_headers(headers: Option<&HeaderMap>) -> Headers {
    let Some(headers) = headers else {
        return Headers::new();
    };
    headers
        .iter()
        .filter(|(name, _)| !contract::is_reserved_header(name.as_ref()))
        .filter_map(|(name, values)| {
            // We publish one value per name; take the first if a foreign publisher sent more.
            values.first().map(|value| (name.to_string(), value.as_str().to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn invalid_settings_are_refused_before_connecting() {
        // Nothing listens here: a refusal must come from the checks, not the network.
        let base = NatsConfig { url: "nats://127.0.0.1:1".into(), ..NatsConfig::default() };
        for config in [
            NatsConfig { stream: "QUEUE.main".into(), ..base.clone() },
            NatsConfig { consumer: String::new(), ..base.clone() },
            NatsConfig { spool_stream: "spool bodies".into(), ..base.clone() },
            NatsConfig { spool_stream: "queue".into(), ..base.clone() },
            NatsConfig { subject_prefix: "queue.>".into(), ..base.clone() },
            NatsConfig { lease: Duration::ZERO, ..base.clone() },
            NatsConfig { dedupe_window: Duration::from_secs(30), ..base.clone() },
            NatsConfig { replicas: 0, ..base.clone() },
        ] {
            let connected = NatsTransport::connect(&config).await;
            assert!(matches!(connected, Err(Error::Config(_))), "{config:?}");
        }
        let unreachable = NatsTransport::connect(&base).await;
        assert!(
            matches!(unreachable, Err(Error::Unavailable { what: "nats", .. })),
            "a server that is down is a temporary failure"
        );
    }

    #[test]
    fn broker_headers_are_not_user_headers() {
        let mut map = HeaderMap::new();
        map.insert("Nats-Msg-Id", "m-1");
        map.insert("traceparent", "00-ab-cd-01");
        let expected: Headers = [("traceparent".to_string(), "00-ab-cd-01".to_string())].into();
        assert_eq!(user_headers(Some(&map)), expected);
        assert_eq!(user_headers(None), Headers::new());
    }
}
