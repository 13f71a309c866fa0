//! [`NatsSpool`]: message bodies in a JetStream stream, one subject per body.
//!
//! A body that fits in one NATS message is stored as one message on `<stream>.<key>.0`, so
//! storing it costs one acknowledged publish: the SMTP reply waits on it. A larger body is cut
//! into chunks on `<stream>.<key>.1`, `.2`, …, published together, and only then the head on
//! `.0`, which carries the first chunk and says how many there are, how long the body is and
//! its SHA-256 digest. A body is therefore readable only once every chunk is stored. The stream
//! keeps one message per subject, so putting a key again replaces it; deleting purges the key's
//! subjects. Keys are encoded (base64url) into one subject token, so any key is accepted.

use async_nats::HeaderMap;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, DirectGetErrorKind, DiscardPolicy, RetentionPolicy, StorageType, Stream};
use async_nats::jetstream::{self, context::PublishAckFuture};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::{Bytes, BytesMut};
use futures::future::try_join_all;
use sha2::{Digest, Sha256};

use super::{NatsConfig, unavailable};
use crate::{Error, Result, Spool, contract};

/// Head headers of a chunked body.
const CHUNKS_HEADER: &str = "Kubemail-Spool-Chunks";
const LENGTH_HEADER: &str = "Kubemail-Spool-Length";
const DIGEST_HEADER: &str = "Kubemail-Spool-Sha256";
/// Room left in each message for the subject, headers and protocol framing.
const MESSAGE_OVERHEAD: usize = 4 * 1024;

/// The spool stream. Cloning shares the connection.
#[derive(Clone)]
pub struct NatsSpool {
    jetstream: jetstream::Context,
    stream: Stream,
    name: String,
    /// The largest chunk a message may carry on this server.
    chunk_size: usize,
}

impl NatsSpool {
    pub(super) async fn open(client: &async_nats::Client, config: &NatsConfig) -> Result<Self> {
        let jetstream = jetstream::new(client.clone());
        let name = config.spool_stream.clone();
        let stream = jetstream
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                description: Some("kubemail message bodies awaiting delivery".into()),
                subjects: vec![format!("{name}.>")],
                retention: RetentionPolicy::Limits,
                // One message per subject: a new put of a key replaces the old one.
                max_messages_per_subject: 1,
                discard: DiscardPolicy::Old,
                allow_direct: true,
                storage: StorageType::File,
                num_replicas: config.replicas,
                ..Default::default()
            })
            .await
            .map_err(unavailable)?;
        let existing = &stream.cached_info().config;
        if existing.max_messages_per_subject != 1 || !existing.allow_direct {
            return Err(Error::Config(format!(
                "NATS stream {name} exists but does not keep exactly one message per subject with direct get \
                 (max_messages_per_subject {}, allow_direct {})",
                existing.max_messages_per_subject, existing.allow_direct
            )));
        }
        let max_payload = client.server_info().max_payload;
        let chunk_size = max_payload.saturating_sub(MESSAGE_OVERHEAD).max(MESSAGE_OVERHEAD);
        Ok(NatsSpool { jetstream, stream, name, chunk_size })
    }

    fn subject(&self, key: &str, chunk: usize) -> String {
        format!("{}.{}.{chunk}", self.name, URL_SAFE_NO_PAD.encode(key))
    }

    /// Sends one message of the body without waiting for its acknowledgement.
    async fn send(&self, subject: String, payload: Bytes, headers: HeaderMap) -> Result<PublishAckFuture> {
        let message = PublishMessage::build()
            .payload(payload)
            .headers(headers)
            // Fail instead of landing in some other stream that captures the same subject.
            .expected_stream(&self.name);
        self.jetstream.send_publish(subject, message).await.map_err(unavailable)
    }

    async fn fetch(&self, subject: String) -> Result<Option<jetstream::message::StreamMessage>> {
        match self.stream.direct_get_last_for_subject(subject).await {
            Ok(message) => Ok(Some(message)),
            Err(error) if error.kind() == DirectGetErrorKind::NotFound => Ok(None),
            Err(error) => Err(unavailable(error)),
        }
    }
}

#[async_trait]
impl Spool for NatsSpool {
    async fn put(&self, key: &str, body: Bytes) -> Result<()> {
        contract::check_spool_key(key)?;
        if body.len() <= self.chunk_size {
            let ack = self.send(self.subject(key, 0), body, HeaderMap::new()).await?;
            ack.await.map_err(unavailable)?;
            return Ok(());
        }
        let chunks: Vec<Bytes> = (0..body.len())
            .step_by(self.chunk_size)
            .map(|at| body.slice(at..body.len().min(at + self.chunk_size)))
            .collect();
        let mut acks = Vec::with_capacity(chunks.len() - 1);
        for (index, chunk) in chunks.iter().enumerate().skip(1) {
            acks.push(self.send(self.subject(key, index), chunk.clone(), HeaderMap::new()).await?);
        }
        try_join_all(acks.into_iter().map(std::future::IntoFuture::into_future)).await.map_err(unavailable)?;
        let mut head = HeaderMap::new();
        head.insert(CHUNKS_HEADER, chunks.len().to_string().as_str());
        head.insert(LENGTH_HEADER, body.len().to_string().as_str());
        head.insert(DIGEST_HEADER, hex::encode(Sha256::digest(&body)).as_str());
        let ack = self.send(self.subject(key, 0), chunks[0].clone(), head).await?;
        ack.await.map_err(unavailable)?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        contract::check_spool_key(key)?;
        let Some(head) = self.fetch(self.subject(key, 0)).await? else {
            return Ok(None);
        };
        let Some(chunks) = head.headers.get(CHUNKS_HEADER) else {
            return Ok(Some(head.payload));
        };
        let corrupt = |detail: String| Error::Corrupt { what: "spooled body", detail: format!("{key}: {detail}") };
        let header_number = |name: &str| -> Result<usize> {
            head.headers
                .get(name)
                .and_then(|value| value.as_str().parse().ok())
                .ok_or_else(|| corrupt(format!("head without a valid {name}")))
        };
        let count: usize = chunks.as_str().parse().map_err(|_| corrupt(format!("{CHUNKS_HEADER}: {chunks}")))?;
        let length = header_number(LENGTH_HEADER)?;
        let rest = try_join_all((1..count).map(|index| self.fetch(self.subject(key, index)))).await?;
        let mut body = BytesMut::with_capacity(length);
        body.extend_from_slice(&head.payload);
        for (index, chunk) in rest.into_iter().enumerate() {
            let chunk = chunk.ok_or_else(|| corrupt(format!("chunk {} of {count} missing", index + 1)))?;
            body.extend_from_slice(&chunk.payload);
        }
        let digest = hex::encode(Sha256::digest(&body));
        let expected = head.headers.get(DIGEST_HEADER).map(|value| value.as_str());
        if body.len() != length || expected != Some(digest.as_str()) {
            return Err(corrupt(format!(
                "{} octets with SHA-256 {digest}, the head says {length} and {expected:?}",
                body.len()
            )));
        }
        Ok(Some(body.freeze()))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        contract::check_spool_key(key)?;
        let filter = format!("{}.{}.>", self.name, URL_SAFE_NO_PAD.encode(key));
        self.stream.purge().filter(filter).await.map_err(unavailable)?;
        Ok(())
    }
}
