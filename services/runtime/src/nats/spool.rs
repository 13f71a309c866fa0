//! [`NatsSpool`]: message bodies in a JetStream object store bucket.

use async_nats::jetstream;
use async_nats::jetstream::context::ObjectStoreErrorKind;
use async_nats::jetstream::object_store::{self, DeleteErrorKind, GetErrorKind, ObjectStore};
use async_nats::jetstream::stream::StorageType;
use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncReadExt;

use super::{NatsConfig, unavailable};
use crate::{Error, Result, Spool, contract};

/// Bodies as objects named by their key. `put` returns after JetStream acknowledged every chunk
/// and the metadata, so a body is durable (on `replicas` servers) before SMTP says `250`.
#[derive(Clone)]
pub struct NatsSpool {
    bucket: ObjectStore,
}

impl NatsSpool {
    pub(super) async fn open(jetstream: &jetstream::Context, config: &NatsConfig) -> Result<Self> {
        let bucket = match jetstream.get_object_store(&config.bucket).await {
            Ok(bucket) => bucket,
            Err(error) if error.kind() == ObjectStoreErrorKind::GetStore => {
                // Missing (or unreadable: then creating fails too and says why). Replicas
                // racing here is fine: creating with an identical configuration succeeds.
                jetstream
                    .create_object_store(object_store::Config {
                        bucket: config.bucket.clone(),
                        description: Some("kubemail message bodies awaiting delivery".into()),
                        storage: StorageType::File,
                        num_replicas: config.replicas,
                        ..Default::default()
                    })
                    .await
                    .map_err(unavailable)?
            }
            Err(error) => return Err(unavailable(error)),
        };
        Ok(NatsSpool { bucket })
    }
}

#[async_trait]
impl Spool for NatsSpool {
    async fn put(&self, key: &str, body: Bytes) -> Result<()> {
        contract::check_spool_key(key)?;
        self.bucket.put(key, &mut body.as_ref()).await.map_err(unavailable)?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        contract::check_spool_key(key)?;
        let mut object = match self.bucket.get(key).await {
            Ok(object) => object,
            Err(error) if error.kind() == GetErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(unavailable(error)),
        };
        let mut body = Vec::with_capacity(object.info().size);
        // The reader checks the SHA-256 digest stored at `put` and fails on a mismatch.
        object.read_to_end(&mut body).await.map_err(|error| match error.kind() {
            std::io::ErrorKind::InvalidData => {
                Error::Corrupt { what: "spooled body", detail: format!("{key}: {error}") }
            }
            _ => unavailable(error),
        })?;
        Ok(Some(body.into()))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        contract::check_spool_key(key)?;
        match self.bucket.delete(key).await {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == DeleteErrorKind::NotFound => Ok(()),
            Err(error) => Err(unavailable(error)),
        }
    }
}
