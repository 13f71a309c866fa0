//! What the delivery-queue tests share: a worker on the local queue and spool, delivering into a
//! real mailstore (SQLite over gRPC), with or without outbound SMTP.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kubemail_delivery_queue::config::DeliveryFlags;
use kubemail_delivery_queue::outbound::Outbound;
use kubemail_delivery_queue::worker::Worker;
use kubemail_delivery_queue::{DeliveryQueue, ServiceSettings, Transports};
use kubemail_proto::Message as _;
use kubemail_proto::queue::{Envelope, Recipient};
use kubemail_runtime::clock::unix_now;
use kubemail_runtime::local::{LocalConfig, LocalTransport};
use kubemail_runtime::{Headers, Lease, Queue, QueueMessage, Spool};
use kubemail_testkit::mailstore::Mailstore;

pub const HOSTNAME: &str = "mx.example.org";
/// Longer than any step of the tests' schedules.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub struct Fixture {
    pub transport: LocalTransport,
    pub mailstore: Mailstore,
    pub worker: Arc<Worker>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    /// Retries every `step`, giving up after `max_age`; no outbound route.
    pub async fn start(step: Duration, max_age: Duration) -> Fixture {
        Fixture::build(step, max_age, None).await
    }

    /// Retries every `step`, giving up after `max_age`, remote mail through `outbound`.
    pub async fn build(step: Duration, max_age: Duration, outbound: Option<Arc<dyn Outbound>>) -> Fixture {
        Fixture::with_flags(DeliveryFlags { concurrency: 4, retry_schedule: vec![step], max_age, ..flags() }, outbound)
            .await
    }

    /// The default flags as `change` leaves them; no outbound route.
    pub async fn build_with(change: impl FnOnce(&mut DeliveryFlags)) -> Fixture {
        let mut flags = DeliveryFlags { concurrency: 4, ..flags() };
        change(&mut flags);
        Fixture::with_flags(flags, None).await
    }

    async fn with_flags(flags: DeliveryFlags, outbound: Option<Arc<dyn Outbound>>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let config = LocalConfig { lease: Duration::from_secs(5), ..LocalConfig::new(dir.path().join("queue.db")) };
        let transport = LocalTransport::open(&config).await.unwrap();
        let mailstore = Mailstore::start(dir.path(), Arc::new(transport.events.clone())).await;
        let transports = Transports {
            queue: Arc::new(transport.queue.clone()),
            spool: Arc::new(transport.spool.clone()),
            mailstore: mailstore.channel.clone(),
            outbound,
        };
        let settings = ServiceSettings { delivery: flags, hostname: HOSTNAME.into(), lease: config.lease };
        let worker = DeliveryQueue::new(settings, transports).worker();
        Fixture { transport, mailstore, worker, _dir: dir }
    }

    pub async fn with_defaults() -> Fixture {
        Fixture::start(Duration::from_secs(60), Duration::from_secs(5 * 86_400)).await
    }

    /// Spools `body` and queues `envelope`, as smtp-ingress does.
    pub async fn queue(&self, envelope: &Envelope, body: &str) {
        self.transport.spool.put(&envelope.id, Bytes::from(body.to_owned())).await.unwrap();
        self.publish(envelope.id.clone(), envelope.encode_to_vec()).await;
    }

    pub async fn publish(&self, id: String, payload: Vec<u8>) {
        let published =
            self.transport.queue.publish(QueueMessage { id, payload: payload.into(), headers: Headers::new() });
        assert!(!published.await.unwrap().duplicate);
    }

    /// The next queue message, waiting up to `wait`.
    pub async fn next(&self, wait: Duration) -> Option<Lease> {
        self.transport.queue.pull(1, wait).await.unwrap().pop()
    }

    /// Processes queue messages until none comes within `quiet`; returns the ids processed.
    pub async fn work(&self, quiet: Duration) -> Vec<String> {
        let mut ids = Vec::new();
        while let Some(lease) = self.next(quiet).await {
            ids.push(lease.id.clone());
            self.worker.process(lease).await;
        }
        ids
    }

    pub async fn inbox(&self, address: &str) -> Vec<String> {
        self.mailstore.inbox(address).await.into_iter().map(|m| String::from_utf8_lossy(&m).into_owned()).collect()
    }
}

pub fn envelope(id: &str, from: &str, to: &[&str]) -> Envelope {
    Envelope {
        id: id.into(),
        mail_from: from.into(),
        recipients: to
            .iter()
            .map(|a| Recipient { address: a.to_string(), local: true, ..Default::default() })
            .collect(),
        received_at: unix_now(),
        ..Default::default()
    }
}

pub fn message(subject: &str) -> String {
    format!("From: alice@example.org\r\nTo: bob@example.org\r\nSubject: {subject}\r\n\r\nHello.\r\n")
}

/// The delivery flags' defaults.
pub fn flags() -> DeliveryFlags {
    use clap::Parser as _;
    kubemail_delivery_queue::config::Config::parse_from(["delivery-queue"]).delivery
}
