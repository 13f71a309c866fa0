//! The delivery worker against a real mailstore (SQLite over gRPC) and the real local queue and
//! spool: local delivery, idempotence, reports, retries, continuations and dead letters.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Fixture, PATIENCE, envelope, message};
use kubemail_delivery_queue::{local, mailstore_client};
use kubemail_proto::Message as _;
use kubemail_proto::admin::UpsertAccountRequest;
use kubemail_proto::queue::{DsnNotify, Envelope};
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::{Queue, Spool};

#[tokio::test]
async fn local_recipients_get_the_message_once_and_the_body_is_removed() {
    let f = Fixture::with_defaults().await;
    let body = message("once");
    // A worker that delivered to alice, then died before acknowledging.
    let client = mailstore_client(f.mailstore.channel.clone());
    local::deliver(&client, "m-1", "alice@example.org", &Bytes::from(body.clone())).await;

    f.queue(&envelope("m-1", "someone@remote.example", &["alice@example.org", "bob@example.org"]), &body).await;
    assert_eq!(f.work(Duration::from_millis(200)).await, ["m-1"]);

    assert_eq!(f.inbox("alice@example.org").await, std::slice::from_ref(&body), "delivered again, stored once");
    assert_eq!(f.inbox("bob@example.org").await, [body]);
    assert_eq!(f.transport.spool.get("m-1").await.unwrap(), None, "the body is gone once every recipient is done");
    assert!(f.next(Duration::from_millis(200)).await.is_none(), "acknowledged");
}

#[tokio::test]
async fn a_permanent_failure_is_reported_to_a_local_sender() {
    let f = Fixture::with_defaults().await;
    let body = message("to a suspended mailbox");
    f.queue(&envelope("m-2", "alice@example.org", &["carol@example.org", "bob@example.org"]), &body).await;
    assert_eq!(f.work(Duration::from_millis(200)).await, ["m-2", "m-2-report"], "the report is queued mail too");

    assert_eq!(f.inbox("bob@example.org").await, [body]);
    let reports = f.inbox("alice@example.org").await;
    assert_eq!(reports.len(), 1, "one report");
    let report = &reports[0];
    for expected in [
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>\r\n",
        "Subject: Undelivered Mail Returned to Sender\r\n",
        "Content-Type: multipart/report; report-type=delivery-status;",
        "Final-Recipient: rfc822; carol@example.org\r\nAction: failed\r\nStatus: 5.2.1\r\n",
        "Subject: to a suspended mailbox\r\n",
    ] {
        assert!(report.contains(expected), "{expected:?} missing from\n{report}");
    }
    assert!(!report.contains("bob@example.org\r\nAction"), "only the failure is reported by default");
}

#[tokio::test]
async fn the_null_sender_gets_no_report() {
    let f = Fixture::with_defaults().await;
    f.queue(&envelope("m-3", "", &["carol@example.org"]), &message("a bounce")).await;
    assert_eq!(f.work(Duration::from_millis(200)).await, ["m-3"], "no report queued");
    assert_eq!(f.transport.spool.get("m-3").await.unwrap(), None);
}

#[tokio::test]
async fn temporary_failures_come_back_on_schedule_and_are_returned_when_too_old() {
    let f = Fixture::start(Duration::from_secs(1), Duration::from_secs(3)).await;
    // bob's quota is 2,000 octets: with 1,500 used, this message waits for room.
    f.mailstore.deliver("bob@example.org", &[b'x'; 1500]).await;
    let started = Instant::now();
    f.queue(&envelope("m-4", "alice@example.org", &["bob@example.org"]), &message(&"x".repeat(600))).await;

    let first = f.next(Duration::ZERO).await.expect("queued");
    f.worker.process(first).await;
    assert!(f.next(Duration::from_millis(300)).await.is_none(), "not retried at once");
    let mut attempts = 1;
    while f.inbox("alice@example.org").await.is_empty() {
        let lease = f.next(PATIENCE).await.expect("retried on schedule");
        if lease.id == "m-4" {
            attempts += 1;
        }
        f.worker.process(lease).await;
        assert!(started.elapsed() < PATIENCE, "given up within the maximum age");
    }
    assert!(attempts >= 3, "retried each second until the age of 3 s: {attempts} attempts");
    assert!(started.elapsed() >= Duration::from_secs(2), "retries are delays");
    let report = &f.inbox("alice@example.org").await[0];
    assert!(
        report.contains("Final-Recipient: rfc822; bob@example.org\r\nAction: failed\r\nStatus: 4.4.7\r\n"),
        "{report}"
    );
    assert!(report.contains("mailbox full"), "{report}");
    assert_eq!(f.inbox("bob@example.org").await.len(), 1, "only the filler");
    assert_eq!(f.transport.spool.get("m-4").await.unwrap(), None);
}

#[tokio::test]
async fn a_partly_delivered_message_continues_with_the_pending_recipients_only() {
    let f = Fixture::start(Duration::from_secs(1), Duration::from_secs(60)).await;
    f.mailstore.deliver("bob@example.org", &[b'x'; 1500]).await;
    let body = message(&"y".repeat(600));
    f.queue(&envelope("m-5", "someone@remote.example", &["alice@example.org", "bob@example.org"]), &body).await;

    let first = f.next(Duration::ZERO).await.unwrap();
    f.worker.process(first).await;
    assert_eq!(f.inbox("alice@example.org").await, std::slice::from_ref(&body));
    let continuation = f.next(Duration::ZERO).await.expect("the continuation is queued at once");
    let pending = Envelope::decode(continuation.payload.clone()).unwrap();
    assert_eq!((pending.id.as_str(), pending.spool_key.as_str(), pending.generation), ("m-5-1", "m-5", 1));
    assert_eq!(pending.recipients.iter().map(|r| r.address.as_str()).collect::<Vec<_>>(), ["bob@example.org"]);
    assert!(pending.not_before > pending.received_at);

    // Room for bob; the continuation is tried when it is due.
    let raised =
        UpsertAccountRequest { address: "bob@example.org".into(), quota_storage: Some(0), ..Default::default() };
    f.mailstore.admin.clone().upsert_account(raised).await.unwrap();
    f.worker.process(continuation).await;
    f.work(Duration::from_secs(3)).await;
    assert_eq!(f.inbox("bob@example.org").await.len(), 2, "the filler and the message");
    assert_eq!(f.inbox("alice@example.org").await, [body], "alice was not sent it again");
    assert_eq!(f.transport.spool.get("m-5").await.unwrap(), None, "the shared body is removed at the end");
}

#[tokio::test]
async fn envelopes_that_can_never_be_delivered_are_dead_letters() {
    let f = Fixture::with_defaults().await;
    f.publish("garbage".into(), b"\xff\xfe not protobuf".to_vec()).await;
    // Queued without its body: the hand-off removed it, its acknowledgement was lost, and its
    // client was told to try again. Its sender is alice, whose inbox shows that no report goes
    // out for it.
    let orphan = envelope("orphan", "alice@example.org", &["alice@example.org"]);
    f.publish(orphan.id.clone(), orphan.encode_to_vec()).await;
    let nobody = Envelope { recipients: Vec::new(), ..envelope("nobody", "someone@remote.example", &[]) };
    f.queue(&nobody, &message("to nobody")).await;
    f.queue(&envelope("fine", "someone@remote.example", &["alice@example.org"]), &message("fine")).await;

    assert_eq!(f.work(Duration::from_millis(200)).await, ["garbage", "orphan", "nobody", "fine"]);
    assert_eq!(f.inbox("alice@example.org").await, [message("fine")], "the worker goes on, and reports nothing");
    let letters = f.transport.queue.dead_letters(10).await.unwrap();
    let reasons: Vec<(&str, &str)> = letters.iter().map(|l| (l.message.id.as_str(), l.reason.as_str())).collect();
    assert_eq!(reasons.len(), 3, "{reasons:?}");
    assert!(reasons[0].1.starts_with("the envelope cannot be decoded"), "{reasons:?}");
    assert_eq!(reasons[1], ("orphan", "no body in the spool under orphan"));
    assert_eq!(reasons[2], ("nobody", "the envelope has no recipients"));
}

#[tokio::test]
async fn a_message_back_after_a_finished_attempt_is_not_a_dead_letter() {
    let f = Fixture::with_defaults().await;
    f.queue(&envelope("twice", "someone@remote.example", &["alice@example.org"]), &message("once")).await;
    // The first attempt is slow: its lease runs out and the message is handed out again.
    let slow = f.next(Duration::ZERO).await.unwrap();
    let again = f.next(PATIENCE).await.expect("handed out again after the lease");
    assert_eq!((again.id.as_str(), again.attempt), ("twice", 2));
    f.worker.process(slow).await;
    f.worker.process(again).await;

    assert_eq!(f.inbox("alice@example.org").await, [message("once")]);
    assert!(f.transport.queue.dead_letters(10).await.unwrap().is_empty(), "nothing was wrong with it");
    assert_eq!(f.work(Duration::from_millis(200)).await, Vec::<String>::new(), "and it is done");
}

#[tokio::test]
async fn the_worker_loop_delivers_what_is_queued_and_stops_on_shutdown() {
    let f = Fixture::with_defaults().await;
    let shutdown = Shutdown::new();
    let running = tokio::spawn(f.worker.clone().run(shutdown.clone()));
    for i in 0..20 {
        f.queue(&envelope(&format!("loop-{i}"), "someone@remote.example", &["alice@example.org"]), &message("loop"))
            .await;
    }
    let deadline = Instant::now() + PATIENCE;
    while f.inbox("alice@example.org").await.len() < 20 {
        assert!(Instant::now() < deadline, "delivered within {PATIENCE:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.trigger();
    tokio::time::timeout(PATIENCE, running).await.expect("the loop stops").unwrap();
    assert_eq!(f.inbox("alice@example.org").await.len(), 20);
}

#[tokio::test]
async fn a_sender_who_asked_is_told_once_that_the_message_is_delayed() {
    let f = Fixture::build_with(|flags| {
        flags.retry_schedule = vec![Duration::from_secs(1)];
        flags.delay_warning = Duration::from_secs(1);
    })
    .await;
    f.mailstore.deliver("bob@example.org", &[b'x'; 1500]).await;
    let mut waiting = envelope("slow", "alice@example.org", &["bob@example.org"]);
    waiting.recipients[0].notify = DsnNotify::Delay as u32 | DsnNotify::Failure as u32;
    f.queue(&waiting, &message(&"z".repeat(600))).await;

    // Attempts for three seconds: past the warning, but not past the maximum age.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        if let Some(lease) = f.next(Duration::from_millis(300)).await {
            f.worker.process(lease).await;
        }
    }
    let reports = f.inbox("alice@example.org").await;
    assert_eq!(reports.len(), 1, "told once, not at every attempt");
    assert!(reports[0].contains("Final-Recipient: rfc822; bob@example.org\r\nAction: delayed\r\nStatus: 4.2.2\r\n"));
    assert!(reports[0].contains("Subject: Delayed Mail (still being retried)"));

    let raised =
        UpsertAccountRequest { address: "bob@example.org".into(), quota_storage: Some(0), ..Default::default() };
    f.mailstore.admin.clone().upsert_account(raised).await.unwrap();
    f.work(Duration::from_secs(2)).await;
    assert_eq!(f.inbox("bob@example.org").await.len(), 2, "delivered in the end");
    assert_eq!(f.inbox("alice@example.org").await.len(), 1, "no report on success without NOTIFY=SUCCESS");
}
