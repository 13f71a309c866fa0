//! Outbound SMTP against a test MTA on loopback: DKIM-signed mail over STARTTLS (the signature
//! verified with mail-auth), replies injected behind STARTTLS, a server whose STARTTLS is broken,
//! a deferring server, a refusing one, an unreachable one past the maximum age, connection reuse,
//! and a relay host with required TLS and AUTH.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser as _;
use common::{Fixture, PATIENCE, envelope, message};
use kubemail_delivery_queue::outbound::Outbound;
use kubemail_proto::queue::Envelope;
use kubemail_testkit::dkim::{DkimResult, ed25519_key, rsa_key, verify};
use kubemail_testkit::mta::{Answers, Mta, Options};

const DAY: Duration = Duration::from_secs(86_400);

/// A remote recipient at the test MTA.
fn remote(id: &str, from: &str, to: &[&str]) -> Envelope {
    let mut envelope = envelope(id, from, to);
    for recipient in &mut envelope.recipients {
        recipient.local = !recipient.address.ends_with("@remote.example");
    }
    envelope
}

/// Outbound SMTP from `kubemail dev`-style flags.
fn outbound(args: &[&str]) -> Arc<dyn Outbound> {
    let flags = kubemail_delivery_queue::config::Config::parse_from(["delivery-queue"].iter().chain(args)).delivery;
    Arc::new(kubemail_delivery_queue::outbound(&flags, common::HOSTNAME).expect("outbound"))
}

fn to_mta(mta: &Mta) -> String {
    format!("remote.example={}", mta.address)
}

fn self_signed() -> (String, String) {
    let generated = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    (generated.cert.pem(), generated.signing_key.serialize_pem())
}

#[tokio::test]
async fn remote_mail_is_dkim_signed_sent_over_starttls_and_verifies() {
    let mta = Mta::start(Options { tls: Some(self_signed()), ..Options::default() }).await;
    let keys = tempfile::tempdir().unwrap();
    let rsa = rsa_key(keys.path(), "example.org", "rsa1");
    let ed25519 = ed25519_key(keys.path(), "other.example", "ed1");
    let dkim_dir = keys.path().to_str().unwrap();
    let sender = outbound(&["--mx-override", &to_mta(&mta), "--dkim-dir", dkim_dir]);
    let f = Fixture::build(DAY, DAY, Some(sender.clone())).await;

    let body = message("signed");
    f.queue(&remote("out-1", "alice@example.org", &["friend@remote.example", "bob@example.org"]), &body).await;
    let other = "From: someone@other.example\r\nTo: friend@remote.example\r\nSubject: ed25519\r\n\r\nHi.\r\n";
    f.queue(&remote("out-2", "someone@other.example", &["friend@remote.example"]), other).await;
    f.work(Duration::from_millis(300)).await;

    let received = mta.received();
    assert_eq!(received.len(), 2);
    assert_eq!(f.inbox("bob@example.org").await, [body], "the local recipient too, once");
    let first = &received[0];
    assert_eq!(
        (first.mail_from.as_str(), first.recipients.as_slice()),
        ("alice@example.org", &["friend@remote.example".to_string()][..])
    );
    assert!(first.tls, "STARTTLS was offered, so it was used");
    let text = String::from_utf8_lossy(&first.data);
    assert!(text.starts_with("DKIM-Signature: v=1; a=rsa-sha256; s=rsa1; d=example.org;"), "{text}");
    assert_eq!(verify(&first.data, "rsa1._domainkey.example.org.", &rsa).await, DkimResult::Pass);
    assert!(String::from_utf8_lossy(&received[1].data).contains("a=ed25519-sha256; s=ed1; d=other.example;"));
    assert_eq!(verify(&received[1].data, "ed1._domainkey.other.example.", &ed25519).await, DkimResult::Pass);
    // A changed header breaks it: the check can fail.
    let tampered = String::from_utf8_lossy(&first.data).replace("Subject: signed", "Subject: changed");
    assert!(matches!(verify(tampered.as_bytes(), "rsa1._domainkey.example.org.", &rsa).await, DkimResult::Fail(_)));
    assert_eq!(mta.connections.load(Ordering::SeqCst), 1, "one connection for both messages");
    assert_eq!(mta.quits.load(Ordering::SeqCst), 0, "kept open for the next message");
    sender.close().await;
    assert_eq!(mta.quits.load(Ordering::SeqCst), 1, "closed politely at shutdown");
}

#[tokio::test]
async fn a_server_whose_starttls_is_broken_gets_the_mail_in_plain_text_at_once() {
    let mta = Mta::start(Options { broken_starttls: true, ..Options::default() }).await;
    let f = Fixture::build(DAY, DAY, Some(outbound(&["--mx-override", &to_mta(&mta)]))).await;
    f.queue(&remote("broken-tls", "alice@example.org", &["friend@remote.example"]), &message("plain")).await;
    f.work(Duration::from_millis(300)).await;

    let received = mta.received();
    assert_eq!(received.len(), 1, "delivered on the first attempt, not deferred");
    assert!(!received[0].tls);
    assert_eq!(mta.connections.load(Ordering::SeqCst), 2, "STARTTLS, then plain text");
    assert!(f.inbox("alice@example.org").await.is_empty(), "no report");
}

#[tokio::test]
async fn replies_injected_in_the_clear_behind_starttls_are_never_read() {
    // CVE-2011-0411 from the client's side: if the injected refusals were read as the answers
    // to the commands sent inside TLS, the message would bounce.
    let injected = "250-mta.test\r\n250 AUTH PLAIN\r\n554 5.7.1 Injected refusal\r\n554 5.7.1 Injected refusal\r\n";
    let options =
        Options { tls: Some(self_signed()), inject_after_starttls: Some(injected.into()), ..Options::default() };
    let mta = Mta::start(options).await;
    let f = Fixture::build(DAY, DAY, Some(outbound(&["--mx-override", &to_mta(&mta)]))).await;
    f.queue(&remote("injected", "alice@example.org", &["friend@remote.example"]), &message("over TLS")).await;
    f.work(Duration::from_millis(300)).await;

    let received = mta.received();
    assert_eq!(received.len(), 1, "delivered on the first attempt");
    assert!(received[0].tls, "inside TLS");
    assert_eq!(mta.connections.load(Ordering::SeqCst), 1);
    assert!(f.inbox("alice@example.org").await.is_empty(), "no report");
}

#[tokio::test]
async fn a_deferring_server_gets_the_message_on_a_later_attempt() {
    let mta = Mta::start(Options::default()).await;
    let f = Fixture::build(Duration::from_secs(1), DAY, Some(outbound(&["--mx-override", &to_mta(&mta)]))).await;
    mta.set_answers(Answers { data: "451 4.3.0 Try again later".into(), ..Answers::default() });
    f.queue(&remote("later", "alice@example.org", &["friend@remote.example"]), &message("later")).await;

    let first = f.next(Duration::ZERO).await.unwrap();
    f.worker.process(first).await;
    assert!(mta.received().is_empty(), "deferred");
    mta.set_answers(Answers::default());
    let started = Instant::now();
    let retried = f.next(PATIENCE).await.expect("back on schedule");
    assert!(started.elapsed() >= Duration::from_millis(500), "not before the retry is due");
    f.worker.process(retried).await;
    assert_eq!(mta.received().len(), 1, "delivered once");
    assert!(f.next(Duration::from_millis(300)).await.is_none(), "done");
    assert!(f.inbox("alice@example.org").await.is_empty(), "no report");
}

#[tokio::test]
async fn a_refusing_server_produces_a_report_in_the_senders_inbox() {
    let mta = Mta::start(Options::default()).await;
    let f = Fixture::build(DAY, DAY, Some(outbound(&["--mx-override", &to_mta(&mta)]))).await;
    let refused = ("nobody@remote.example".to_string(), "550 5.1.1 <nobody@remote.example>: User unknown".to_string());
    mta.set_answers(Answers { refused: vec![refused], ..Answers::default() });
    let to = ["friend@remote.example", "nobody@remote.example"];
    f.queue(&remote("refused", "alice@example.org", &to), &message("refused")).await;
    f.work(Duration::from_millis(300)).await;

    assert_eq!(mta.received()[0].recipients, ["friend@remote.example"]);
    let reports = f.inbox("alice@example.org").await;
    assert_eq!(reports.len(), 1);
    for expected in [
        "Final-Recipient: rfc822; nobody@remote.example\r\nAction: failed\r\nStatus: 5.1.1\r\n",
        "Remote-MTA: dns; 127.0.0.1\r\n",
        "Diagnostic-Code: smtp; 550 5.1.1 <nobody@remote.example>: User unknown\r\n",
    ] {
        assert!(reports[0].contains(expected), "{expected:?} missing from\n{}", reports[0]);
    }
    assert!(!reports[0].contains("Final-Recipient: rfc822; friend@"), "only the failure");
}

#[tokio::test]
async fn an_unreachable_server_past_the_maximum_age_produces_a_report() {
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let route = format!("remote.example={closed}");
    let f = Fixture::build(Duration::from_secs(1), Duration::from_secs(2), Some(outbound(&["--mx-override", &route])))
        .await;
    f.queue(&remote("lost", "alice@example.org", &["friend@remote.example"]), &message("unreachable")).await;
    let deadline = Instant::now() + PATIENCE;
    while f.inbox("alice@example.org").await.is_empty() {
        assert!(Instant::now() < deadline, "returned within the maximum age and a little");
        if let Some(lease) = f.next(Duration::from_millis(500)).await {
            f.worker.process(lease).await;
        }
    }
    let report = &f.inbox("alice@example.org").await[0];
    assert!(report.contains("Action: failed\r\nStatus: 4.4.7\r\n"), "{report}");
    assert!(report.contains("cannot connect"), "{report}");
}

#[tokio::test]
async fn a_relay_host_gets_all_remote_mail_over_verified_tls_with_auth() {
    let (certificate, key) = self_signed();
    let login = ("relayuser".to_string(), "relay secret".to_string());
    let mta =
        Mta::start(Options { tls: Some((certificate.clone(), key)), login: Some(login), ..Options::default() }).await;
    let files = tempfile::tempdir().unwrap();
    let ca = files.path().join("ca.pem");
    std::fs::write(&ca, &certificate).unwrap();
    let password = files.path().join("password");
    std::fs::write(&password, "relay secret\n").unwrap();
    let relay = mta.address.to_string();
    let args = ["--relay-host", &relay, "--relay-username", "relayuser", "--relay-password-file"];
    let outbound =
        outbound(&[&args[..], &[password.to_str().unwrap(), "--relay-ca-file", ca.to_str().unwrap()]].concat());
    let f = Fixture::build(DAY, DAY, Some(outbound)).await;
    let mut envelope = remote("relayed", "alice@example.org", &[]);
    envelope.recipients =
        vec![kubemail_proto::queue::Recipient { address: "someone@anywhere.example".into(), ..Default::default() }];
    f.queue(&envelope, &message("relayed")).await;
    f.work(Duration::from_millis(300)).await;

    let received = mta.received();
    assert_eq!(received.len(), 1, "through the relay, whatever the domain's MX");
    assert!(received[0].tls);
    assert_eq!(received[0].user.as_deref(), Some("relayuser"));

    // A relay whose certificate is not trusted gets nothing.
    let untrusted = outbound_without_ca(&relay, password.to_str().unwrap());
    let g = Fixture::build(DAY, DAY, Some(untrusted)).await;
    g.queue(&envelope, &message("relayed")).await;
    g.work(Duration::from_millis(300)).await;
    assert_eq!(mta.received().len(), 1, "nothing sent over an unverified connection");
}

fn outbound_without_ca(relay: &str, password: &str) -> Arc<dyn Outbound> {
    outbound(&["--relay-host", relay, "--relay-username", "relayuser", "--relay-password-file", password])
}
