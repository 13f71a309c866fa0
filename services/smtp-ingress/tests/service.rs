//! Black-box: the `smtp-ingress` binary on NATS JetStream, with a mailstore on loopback. The
//! NATS server is killed while a client sends its data: the client must get `451`, never `250`,
//! and after a restart the next message is accepted; what the queue holds at the end is exactly
//! what got `250`. A queue that refuses after the spool took the body also means `451`, and the
//! body is removed. And a client flooding a line without end neither grows the process's memory
//! nor stalls another client.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Client, HOSTNAME, Mailstore};
use kubemail_proto::Message as _;
use kubemail_proto::queue::Envelope;
use kubemail_runtime::local::LocalEventBus;
use kubemail_runtime::nats::{NatsConfig, NatsTransport};
use kubemail_runtime::tls;
use kubemail_runtime::{Queue, Spool};
use kubemail_testkit::{NatsServer, free_loopback_address};
use tokio::net::TcpStream;

const SMTP_INGRESS: &str = env!("CARGO_BIN_EXE_smtp-ingress");

struct Service {
    process: Child,
    smtp: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Service {
    /// The process's peak resident memory so far, in KiB (Linux).
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.process.id())).expect("its status");
        let line = status.lines().find(|line| line.starts_with("VmHWM:")).expect("VmHWM");
        line.split_whitespace().nth(1).and_then(|kib| kib.parse().ok()).expect("a number of KiB")
    }

    fn start(mailstore: &Mailstore, nats_url: &str, tls_dir: &std::path::Path) -> Service {
        let (smtp, http) = (free_loopback_address(), free_loopback_address());
        let process = Command::new(SMTP_INGRESS)
            .args(["--smtp-listen", &smtp, "--submission-listen", &free_loopback_address()])
            .args(["--submissions-listen", &free_loopback_address(), "--http-listen", &http, "--hostname", HOSTNAME])
            .args(["--mailstore", &format!("http://{}", mailstore.address), "--nats-url", nats_url])
            .arg("--tls-dir")
            .arg(tls_dir)
            .args(["--handoff-timeout", "3s", "--verify-inbound", "false"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("smtp-ingress starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&smtp).is_err() {
            assert!(Instant::now() < deadline, "smtp-ingress does not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Service { process, smtp }
    }

    /// A NATS server of its own, a mailstore, and the service on both with a self-signed
    /// certificate; what else the service needs comes third, to be kept until the end.
    async fn start_on_nats() -> (NatsServer, Service, (Mailstore, tempfile::TempDir)) {
        let dir = tempfile::tempdir().unwrap();
        let nats = NatsServer::start();
        let mailstore = Mailstore::start(dir.path(), Arc::new(LocalEventBus::new(64))).await;
        let tls_dir = dir.path().join("tls");
        tls::write_pair(&tls_dir, HOSTNAME, &tls::self_signed(&[HOSTNAME.to_string()]).unwrap()).unwrap();
        let service = Service::start(&mailstore, &nats.url(), &tls_dir);
        (nats, service, (mailstore, dir))
    }

    /// SIGTERM, then whether it exited cleanly within the shutdown grace period.
    fn terminate(mut self) -> bool {
        Command::new("kill").args(["-TERM", &self.process.id().to_string()]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(40);
        while Instant::now() < deadline {
            if let Some(status) = self.process.try_wait().unwrap() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

/// One transaction to bob; the reply to its data.
async fn send(smtp: &str, subject: &str, before_data_ends: impl FnOnce()) -> common::Reply {
    let mut client = Client::new(TcpStream::connect(smtp).await.expect("connect"));
    client.expect(220).await;
    client.command("EHLO client.test", 250).await;
    client.command("MAIL FROM:<sender@remote.test>", 250).await;
    client.command("RCPT TO:<bob@example.org>", 250).await;
    client.command("DATA", 354).await;
    client.send(&format!("Subject: {subject}\r\n\r\nbody\r\n")).await;
    before_data_ends();
    client.send(".\r\n").await;
    client.reply().await.expect("a reply to the data")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nats_outage_during_data_is_451_never_250_and_nothing_is_lost() {
    let (mut nats, service, _rest) = Service::start_on_nats().await;

    let first = send(&service.smtp, "before", || {}).await;
    assert_eq!(first.code, 250, "{first:?}");

    let during = send(&service.smtp, "during", || nats.kill()).await;
    assert_eq!(during.code, 451, "a message the queue could not take is refused: {during:?}");
    assert!(during.text().starts_with("4.3.0"), "{during:?}");

    nats.restart();
    // The service reconnects on its own; until it has, a client may still see 451 (never 250
    // without the message being queued).
    let deadline = Instant::now() + Duration::from_secs(30);
    let after = loop {
        let reply = send(&service.smtp, "after", || {}).await;
        if reply.code == 250 || Instant::now() > deadline {
            break reply;
        }
        assert_eq!(reply.code, 451, "{reply:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(after.code, 250, "accepted again after the restart: {after:?}");
    assert!(service.terminate(), "smtp-ingress exits 0 on SIGTERM");

    // Exactly what got 250 is queued, bodies in the spool.
    let transport = NatsTransport::connect(&NatsConfig { url: nats.url(), ..Default::default() }).await.unwrap();
    let mut subjects = BTreeSet::new();
    for lease in transport.queue.pull(100, Duration::from_millis(500)).await.unwrap() {
        let envelope = Envelope::decode(lease.payload.clone()).unwrap();
        let body = transport.spool.get(&envelope.id).await.unwrap().expect("the body is spooled");
        let body = String::from_utf8_lossy(&body).into_owned();
        subjects.insert(body.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap().to_string());
    }
    assert_eq!(subjects, BTreeSet::from(["before".to_string(), "after".to_string()]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queue_that_fails_after_the_spool_took_the_body_gets_451_and_the_body_is_removed() {
    let (nats, service, _rest) = Service::start_on_nats().await;
    let kept = send(&service.smtp, "kept", || {}).await;
    assert_eq!(kept.code, 250, "{kept:?}");

    // The queue's stream goes away (an operator's mistake, a broken cluster) while the spool's
    // stays: the body is stored, then the envelope cannot be.
    let streams = NatsConfig::default();
    let jetstream = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let spooled = || async {
        let mut spool = jetstream.get_stream(&streams.spool_stream).await.unwrap();
        spool.info().await.unwrap().state.messages
    };
    assert_eq!(spooled().await, 1);
    jetstream.delete_stream(&streams.stream).await.unwrap();

    let refused = send(&service.smtp, "refused", || {}).await;
    assert_eq!(refused.code, 451, "a message the queue did not take is refused: {refused:?}");
    assert!(refused.text().starts_with("4.3.0"), "{refused:?}");
    assert_eq!(spooled().await, 1, "the refused message's body is removed from the spool; the accepted one stays");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_without_line_ends_is_refused_in_bounded_memory_while_others_are_served() {
    const FLOOD: usize = 256 * 1024 * 1024;
    let (_nats, service, _rest) = Service::start_on_nats().await;
    assert_eq!(send(&service.smtp, "warm-up", || {}).await.code, 250);
    let peak_before = service.peak_rss_kib();

    let mut flooder = Client::new(TcpStream::connect(&service.smtp).await.expect("connect"));
    flooder.expect(220).await;
    flooder.command("EHLO flood.example", 250).await;
    let flood = tokio::spawn(async move {
        let block = vec![b'A'; 64 * 1024];
        for _ in 0..FLOOD / block.len() {
            flooder.send_bytes(&block).await;
        }
        flooder.send("\r\n").await;
        flooder
    });
    // Meanwhile another client's mail goes through.
    assert_eq!(send(&service.smtp, "alongside", || {}).await.code, 250);

    let mut flooder = flood.await.expect("the flood was read to its end");
    assert!(flooder.expect(500).await.starts_with("5.5.2"), "line too long");
    flooder.command("NOOP", 250).await;
    let growth_kib = service.peak_rss_kib().saturating_sub(peak_before);
    assert!(growth_kib < 16 * 1024, "a {FLOOD}-octet line grew the peak memory by {growth_kib} KiB");
}
