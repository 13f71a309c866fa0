//! The distributed mode: the mailstore on PostgreSQL, NATS JetStream, smtp-ingress, and
//! `delivery-queue` binaries as separate processes. Mail sent with swaks reaches the mailbox;
//! and with two workers, one killed with SIGKILL in the middle of 1,000 deliveries, every
//! message ends up in its mailbox exactly once and the spool is empty.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser as _;
use kubemail_proto::Message as _;
use kubemail_proto::queue::{Envelope, Recipient};
use kubemail_runtime::clock::unix_now;
use kubemail_runtime::nats::{NatsConfig, NatsTransport};
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::{Headers, Queue, QueueMessage, Spool};
use kubemail_testkit::mailstore::Mailstore;
use kubemail_testkit::{NatsServer, free_loopback_address};

const DELIVERY_QUEUE: &str = env!("CARGO_BIN_EXE_delivery-queue");
/// Short, so the killed worker's envelopes go to the other one soon.
const LEASE: &str = "2s";

/// A `delivery-queue` process, killed when dropped. Its log is kept for a failing test to show.
struct DeliveryWorker {
    process: Child,
    log: tempfile::NamedTempFile,
}

impl DeliveryWorker {
    fn start(mailstore: &Mailstore, nats_url: &str) -> DeliveryWorker {
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let process = Command::new(DELIVERY_QUEUE)
            .args(["--mailstore", &format!("http://{}", mailstore.address), "--nats-url", nats_url])
            .args(["--http-listen", &free_loopback_address(), "--lease", LEASE, "--hostname", "mx.example.org"])
            // A delivery deferred on a busy machine comes back within the test's patience.
            .args(["--retry-schedule", "1s"])
            .stdout(log.reopen().expect("the log file"))
            .stderr(Stdio::null())
            .spawn()
            .expect("delivery-queue starts");
        DeliveryWorker { process, log }
    }

    /// SIGKILL: no clean shutdown, as when a node is lost.
    fn kill(&mut self) {
        self.process.kill().expect("kill");
        self.process.wait().expect("reaped");
    }

    /// What the worker warned about, for a failure message.
    fn warnings(&self) -> String {
        let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|line| !line.contains(" INFO ")).collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for DeliveryWorker {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// NATS of the test's own (the services use the default stream names), and the mailstore on a
/// fresh PostgreSQL database, its events on NATS.
async fn platform() -> (NatsServer, NatsTransport, Mailstore) {
    let nats = NatsServer::start();
    let transport = NatsTransport::connect(&NatsConfig { url: nats.url(), ..Default::default() }).await.unwrap();
    let url = kubemail_testkit::postgres_database().await;
    let db = kubemail_mailstore::Db::connect(&url, 8).await.expect("mailstore on PostgreSQL");
    let mailstore = Mailstore::start_on(db, Arc::new(transport.events.clone())).await;
    (nats, transport, mailstore)
}

/// The queue's counts, for a failure message.
async fn queue_state(transport: &NatsTransport) -> String {
    let config = NatsConfig::default();
    let jetstream = async_nats::jetstream::new(transport.client.clone());
    let mut queue = jetstream.get_stream(&config.stream).await.expect("the queue stream");
    let queued = queue.info().await.expect("queue info").state.messages;
    let consumer = queue
        .get_consumer::<async_nats::jetstream::consumer::pull::Config>(&config.consumer)
        .await
        .expect("the workers' consumer");
    let info = consumer.cached_info();
    let dead =
        jetstream.get_stream(&config.dead_letter_stream).await.expect("dead letters").cached_info().state.messages;
    format!(
        "{queued} envelopes queued, {} not yet handed out, {} leased, {} handed out again, {dead} dead letters",
        info.num_pending, info.num_ack_pending, info.num_redelivered
    )
}

/// Polls `address`'s INBOX until it holds `count` messages or `patience` ran out.
async fn wait_for_inbox(mailstore: &Mailstore, address: &str, count: usize, patience: Duration) -> Vec<String> {
    let deadline = Instant::now() + patience;
    loop {
        let messages = mailstore.inbox(address).await;
        if messages.len() >= count || Instant::now() > deadline {
            return messages.iter().map(|m| String::from_utf8_lossy(m).into_owned()).collect();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mail_sent_with_swaks_reaches_the_mailbox() {
    let (nats, _transport, mailstore) = platform().await;
    let smtp = free_loopback_address();
    let ingress = kubemail_smtp_ingress::config::Config::parse_from([
        "smtp-ingress",
        "--smtp-listen",
        &smtp,
        "--submission-listen",
        &free_loopback_address(),
        "--http-listen",
        &free_loopback_address(),
        "--hostname",
        "mx.example.org",
        "--mailstore",
        &format!("http://{}", mailstore.address),
        "--nats-url",
        &nats.url(),
        "--verify-inbound",
        "false",
    ]);
    let stop = Shutdown::new();
    let ingress = tokio::spawn(kubemail_smtp_ingress::run(ingress, stop.clone()));
    let _worker = DeliveryWorker::start(&mailstore, &nats.url());

    let server = smtp.clone();
    let swaks = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&server).is_err() {
            assert!(Instant::now() < deadline, "smtp-ingress does not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Command::new("swaks")
            .args(["--server", &server, "--helo", "client.test", "--timeout", "20"])
            .args(["--from", "someone@remote.test", "--to", "alice@example.org,al@example.org"])
            .args(["--header", "Subject: distributed"])
            .stdin(Stdio::null())
            .output()
            .expect("swaks runs")
    })
    .await
    .unwrap();
    assert!(swaks.status.success(), "{}", String::from_utf8_lossy(&swaks.stdout));

    let inbox = wait_for_inbox(&mailstore, "alice@example.org", 1, Duration::from_secs(30)).await;
    assert_eq!(inbox.len(), 1, "one copy, though alice was named twice (her alias)");
    assert!(inbox[0].contains("Subject: distributed") && inbox[0].starts_with("Received: from client.test"));
    stop.trigger();
    ingress.await.unwrap().expect("smtp-ingress stops cleanly");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_run_loses_nothing_and_duplicates_nothing() {
    const MESSAGES: usize = 1000;
    let (nats, transport, mailstore) = platform().await;
    // Queued as smtp-ingress does: the body, then the envelope.
    for i in 0..MESSAGES {
        let id = format!("kill-{i:04}");
        let body =
            format!("From: someone@remote.test\r\nTo: alice@example.org\r\nSubject: {id}\r\n\r\nNumber {i}.\r\n");
        transport.spool.put(&id, Bytes::from(body)).await.unwrap();
        let envelope = Envelope {
            id: id.clone(),
            mail_from: "someone@remote.test".into(),
            recipients: vec![Recipient { address: "alice@example.org".into(), local: true, ..Default::default() }],
            received_at: unix_now(),
            ..Default::default()
        };
        let message = QueueMessage { id, payload: envelope.encode_to_vec().into(), headers: Headers::new() };
        transport.queue.publish(message).await.unwrap();
    }

    let mut doomed = DeliveryWorker::start(&mailstore, &nats.url());
    let survivor = DeliveryWorker::start(&mailstore, &nats.url());
    let midway = wait_for_inbox(&mailstore, "alice@example.org", MESSAGES / 4, Duration::from_secs(60)).await;
    assert!(midway.len() >= MESSAGES / 4 && midway.len() < MESSAGES, "killed midway: {} delivered", midway.len());
    doomed.kill();

    let inbox = wait_for_inbox(&mailstore, "alice@example.org", MESSAGES, Duration::from_secs(120)).await;
    let mut copies: BTreeMap<String, usize> = BTreeMap::new();
    for message in &inbox {
        let subject = message.lines().find_map(|line| line.strip_prefix("Subject: ")).expect("a subject");
        *copies.entry(subject.to_string()).or_default() += 1;
    }
    let duplicated: Vec<_> = copies.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(
        (copies.len(), inbox.len()),
        (MESSAGES, MESSAGES),
        "each message once; duplicated: {duplicated:?}; the queue: {}\nthe killed worker's warnings:\n{}\nthe survivor's:\n{}",
        queue_state(&transport).await,
        doomed.warnings(),
        survivor.warnings(),
    );

    // Settled: nothing left to deliver, and every body gone from the spool.
    let deadline = Instant::now() + Duration::from_secs(30);
    let jetstream = async_nats::jetstream::new(transport.client.clone());
    loop {
        let queued = jetstream.get_stream("QUEUE").await.unwrap().info().await.unwrap().state.messages;
        let spooled = jetstream.get_stream("SPOOL").await.unwrap().info().await.unwrap().state.messages;
        if (queued, spooled) == (0, 0) {
            break;
        }
        assert!(Instant::now() < deadline, "{queued} envelopes and {spooled} bodies left");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(nats);
}
