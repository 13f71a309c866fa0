//! What only the NATS transports go through: a spooled body spread over several messages of
//! which one is lost, or whose head never arrived (a reader must never get a silently shortened
//! body); and a publisher connecting with other settings than the delivery workers'.

mod common;

use std::time::Duration;

use async_nats::jetstream;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use kubemail_runtime::nats::{NatsConfig, NatsTransport};
use kubemail_runtime::{Error, Headers, Queue, QueueMessage, Spool};

async fn spool() -> (NatsTransport, NatsConfig) {
    let config = common::unique_nats_config();
    (NatsTransport::connect(&config).await.expect("connect to NATS"), config)
}

/// Removes one stored message of `key`'s body, as a lost write or a damaged store would.
async fn lose_part(transport: &NatsTransport, config: &NatsConfig, key: &str, part: usize) {
    let jetstream = jetstream::new(transport.client.clone());
    let stream = jetstream.get_stream(&config.spool_stream).await.expect("spool stream");
    let subject = format!("{}.{}.{part}", config.spool_stream, URL_SAFE_NO_PAD.encode(key));
    let purged = stream.purge().filter(subject).await.expect("purge one part");
    assert_eq!(purged.purged, 1, "part {part} of {key} was stored");
}

/// Several NATS messages' worth (1 MiB each by default).
fn large_body() -> Bytes {
    (0..3_000_000u32).map(|i| (i % 253) as u8).collect()
}

#[tokio::test]
async fn a_body_missing_a_chunk_is_reported_corrupt() {
    let (transport, config) = spool().await;
    transport.spool.put("q-1", large_body()).await.expect("put");
    lose_part(&transport, &config, "q-1", 1).await;

    let read = transport.spool.get("q-1").await;
    assert!(matches!(read, Err(Error::Corrupt { .. })), "got {:?}", read.map(|body| body.map(|b| b.len())));

    transport.spool.delete("q-1").await.expect("delete what is left");
    assert_eq!(transport.spool.get("q-1").await.expect("get deleted"), None);
}

#[tokio::test]
async fn chunks_without_their_head_are_no_body() {
    let (transport, config) = spool().await;
    transport.spool.put("q-2", large_body()).await.expect("put");
    // The head is written last: a put interrupted before it leaves chunks that name no body.
    lose_part(&transport, &config, "q-2", 0).await;
    assert_eq!(transport.spool.get("q-2").await.expect("get"), None);
}

#[tokio::test]
async fn a_small_body_replaces_a_chunked_one() {
    let (transport, _config) = spool().await;
    transport.spool.put("q-3", large_body()).await.expect("put large");
    let small = Bytes::from_static(b"Subject: again\r\n\r\nsmall\r\n");
    transport.spool.put("q-3", small.clone()).await.expect("put small");
    assert_eq!(transport.spool.get("q-3").await.expect("get"), Some(small));
    let large = large_body();
    transport.spool.put("q-3", large.clone()).await.expect("put large again");
    assert_eq!(transport.spool.get("q-3").await.expect("get"), Some(large));
}

#[tokio::test]
async fn a_publisher_does_not_reset_the_workers_lease() {
    let lease = Duration::from_secs(2);
    let config = NatsConfig { lease, ..common::unique_nats_config() };
    let worker = NatsTransport::connect(&config).await.expect("worker connects");
    assert!(worker.queue.pull(1, Duration::ZERO).await.expect("first pull").is_empty());
    // smtp-ingress connects with the default lease and only publishes.
    let publisher = NatsTransport::connect(&NatsConfig { lease: Duration::from_secs(60), ..config })
        .await
        .expect("publisher connects");
    let message = QueueMessage { id: "m-1".into(), payload: "envelope".into(), headers: Headers::new() };
    publisher.queue.publish(message).await.expect("publish");

    let held = worker.queue.pull(1, Duration::from_secs(5)).await.expect("pull");
    assert_eq!(held.len(), 1);
    // Not acked: it must come back after the workers' lease, not the publisher's.
    let again = worker.queue.pull(1, lease * 3).await.expect("pull again");
    assert_eq!(again.iter().map(|l| (l.id.as_str(), l.attempt)).collect::<Vec<_>>(), [("m-1", 2)]);
    drop(held);
}
