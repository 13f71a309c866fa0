//! The conformance suite of the transports: every check is written once against the `Spool`,
//! `Queue` and `EventBus` traits and runs against NATS JetStream (`nats::<check>`, the server
//! `scripts/test` provides) and against the local SQLite implementation (`local::<check>`).
//!
//! Timing assertions use lower bounds (nothing comes back before its lease or delay) and
//! generous upper bounds, so a busy machine slows the suite down without failing it.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use kubemail_runtime::local::{LocalConfig, LocalTransport};
use kubemail_runtime::nats::{NatsConfig, NatsTransport};
use kubemail_runtime::{Error, EventBus, EventStream, Headers, Lease, Queue, QueueMessage, Spool};

/// Lease used by every fixture: short for a fast suite, long enough that a loaded machine still
/// extends and acks in time.
const LEASE: Duration = Duration::from_secs(2);
/// Slack for clock granularity when asserting lower bounds.
const CLOCK_SLACK: Duration = Duration::from_millis(50);
/// Upper bound for anything that should happen "soon".
const PATIENCE: Duration = Duration::from_secs(10);

/// One service's view of the transports.
#[derive(Clone)]
struct Services {
    spool: Arc<dyn Spool>,
    queue: Arc<dyn Queue>,
    events: Arc<dyn EventBus>,
}

type OpenReplica = Box<dyn Fn() -> BoxFuture<'static, Services> + Send + Sync>;

struct Fixture {
    services: Services,
    /// Opens another replica of a service on the same queue, spool and bus: its own
    /// connection for NATS, another handle in the same process for local.
    open_replica: OpenReplica,
    /// A subject prefix no other test publishes under.
    subject_root: String,
    /// Keeps the local SQLite directory alive.
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    async fn replica(&self) -> Services {
        (self.open_replica)().await
    }
}

async fn nats_fixture() -> Fixture {
    let config = NatsConfig { lease: LEASE, ..common::unique_nats_config() };
    let connect = move || {
        let config = config.clone();
        async move {
            let transport = NatsTransport::connect(&config).await.expect("connect to NATS");
            Services {
                spool: Arc::new(transport.spool),
                queue: Arc::new(transport.queue),
                events: Arc::new(transport.events),
            }
        }
        .boxed()
    };
    Fixture {
        services: connect().await,
        open_replica: Box::new(connect),
        subject_root: kubemail_testkit::unique_name("events"),
        _dir: None,
    }
}

async fn local_fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = LocalConfig { lease: LEASE, ..LocalConfig::new(dir.path().join("kubemail.db")) };
    let transport = LocalTransport::open(&config).await.expect("open SQLite");
    let services = Services {
        spool: Arc::new(transport.spool),
        queue: Arc::new(transport.queue),
        events: Arc::new(transport.events),
    };
    let shared = services.clone();
    Fixture {
        services,
        open_replica: Box::new(move || {
            let shared = shared.clone();
            async move { shared }.boxed()
        }),
        subject_root: "events".into(),
        _dir: Some(dir),
    }
}

fn headers(pairs: &[(&str, &str)]) -> Headers {
    pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
}

fn message(id: &str, payload: &str) -> QueueMessage {
    QueueMessage {
        id: id.into(),
        payload: Bytes::from(payload.to_owned()),
        headers: headers(&[("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]),
    }
}

async fn publish_new(queue: &dyn Queue, message: QueueMessage) {
    let published = queue.publish(message).await.expect("publish");
    assert!(!published.duplicate, "a new id is not a duplicate");
}

/// Pulls until one message arrives (or panics after `PATIENCE`).
async fn pull_one(queue: &dyn Queue) -> Lease {
    let mut leases = queue.pull(1, PATIENCE).await.expect("pull");
    assert_eq!(leases.len(), 1, "one message within {PATIENCE:?}");
    leases.remove(0)
}

async fn assert_nothing_pulled(queue: &dyn Queue, wait: Duration, why: &str) {
    let leases = queue.pull(10, wait).await.expect("pull");
    let ids: Vec<_> = leases.iter().map(|lease| lease.id.clone()).collect();
    assert!(ids.is_empty(), "{why}, yet pulled {ids:?}");
}

// ---- spool ----

async fn spool_stores_replaces_and_deletes_bodies(fixture: Fixture) {
    let spool = &fixture.services.spool;
    let key = "0190a3c2-7b1e@mx.example.org";
    // Bytes a text-only store would mangle, and large enough to span several NATS messages
    // (1 MiB each by default).
    let body: Bytes = (0..2_500_000u32).map(|i| (i % 251) as u8).chain(*b"\r\n.\r\n\0").collect();

    assert_eq!(spool.get(key).await.expect("get missing"), None, "nothing stored yet");
    spool.put(key, body.clone()).await.expect("put");
    assert_eq!(spool.get(key).await.expect("get").as_ref(), Some(&body));

    let replacement = Bytes::from_static(b"Subject: retried\r\n\r\nshorter body\r\n");
    spool.put(key, replacement.clone()).await.expect("put again");
    assert_eq!(spool.get(key).await.expect("get replaced"), Some(replacement), "put replaces");

    spool.put("empty", Bytes::new()).await.expect("put empty");
    assert_eq!(spool.get("empty").await.expect("get empty"), Some(Bytes::new()), "empty is not missing");

    spool.delete(key).await.expect("delete");
    assert_eq!(spool.get(key).await.expect("get deleted"), None);
    spool.delete(key).await.expect("deleting a deleted key succeeds");
    spool.delete("never-stored").await.expect("deleting a missing key succeeds");
    assert_eq!(spool.get("empty").await.expect("get other"), Some(Bytes::new()), "delete is per key");

    // Another replica sees the same bodies.
    let replica = fixture.replica().await;
    assert_eq!(replica.spool.get("empty").await.expect("replica get"), Some(Bytes::new()));
}

// ---- queue ----

async fn publish_is_idempotent_on_the_message_id(fixture: Fixture) {
    let queue = &*fixture.services.queue;
    publish_new(queue, message("m-1", "first")).await;
    let again = queue.publish(message("m-1", "second copy")).await.expect("publish again");
    assert!(again.duplicate, "same id again reports a duplicate");

    let lease = pull_one(queue).await;
    assert_eq!((lease.id.as_str(), lease.payload.as_ref()), ("m-1", b"first".as_slice()));
    lease.ack().await.expect("ack");

    // A publisher retrying after a lost acknowledgement, after delivery already finished.
    let late = queue.publish(message("m-1", "late retry")).await.expect("publish after ack");
    assert!(late.duplicate, "an acked id is still remembered within the window");
    assert_nothing_pulled(queue, Duration::from_millis(500), "one id is one message").await;
}

async fn pull_returns_payload_headers_and_first_attempt(fixture: Fixture) {
    let queue = &*fixture.services.queue;
    let sent: Vec<QueueMessage> = (0..3)
        .map(|i| QueueMessage {
            id: format!("envelope-{i}"),
            payload: Bytes::from(vec![i as u8, 0, 255, b'\n']),
            headers: headers(&[
                ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
                ("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
                ("X-Kubemail-Note", &format!("retry {i} of the same, kept verbatim")),
            ]),
        })
        .collect();
    for message in &sent {
        publish_new(queue, message.clone()).await;
    }

    let mut received = Vec::new();
    while received.len() < sent.len() {
        let leases = queue.pull(10, PATIENCE).await.expect("pull");
        assert!(!leases.is_empty(), "all published messages arrive within {PATIENCE:?}");
        received.extend(leases);
    }
    received.sort_by(|a, b| a.id.cmp(&b.id));
    for (lease, message) in received.iter().zip(&sent) {
        assert_eq!(lease.id, message.id);
        assert_eq!(lease.payload, message.payload, "payload of {}", lease.id);
        assert_eq!(lease.headers, message.headers, "headers of {} (and no broker ones)", lease.id);
        assert_eq!(lease.attempt, 1, "first delivery of {}", lease.id);
    }
    for lease in received {
        lease.ack().await.expect("ack");
    }
}

async fn acked_messages_never_come_back(fixture: Fixture) {
    let queue = &*fixture.services.queue;
    publish_new(queue, message("done", "delivered")).await;
    pull_one(queue).await.ack().await.expect("ack");
    assert_nothing_pulled(queue, LEASE * 3 / 2, "an acked message is gone, also after its lease").await;
}

async fn expired_lease_redelivers_to_another_consumer(fixture: Fixture) {
    let worker = fixture.services.queue.clone();
    publish_new(&*worker, message("orphan", "body")).await;

    let leased_at = Instant::now();
    let lease = pull_one(&*worker).await;
    assert_eq!(lease.attempt, 1);
    // The worker dies holding the lease: no ack, no retry, no extend.
    drop(lease);
    drop(worker);

    let other = fixture.replica().await.queue;
    assert_nothing_pulled(&*other, LEASE / 2, "the lease still holds").await;
    let redelivered = pull_one(&*other).await;
    let after = leased_at.elapsed();
    assert_eq!(redelivered.id, "orphan");
    assert_eq!(redelivered.payload, Bytes::from_static(b"body"));
    assert_eq!(redelivered.attempt, 2, "the expired lease counts as an attempt");
    assert!(after + CLOCK_SLACK >= LEASE, "redelivered after {after:?}, before the {LEASE:?} lease ended");
    redelivered.ack().await.expect("ack by the other consumer");
    assert_nothing_pulled(&*other, Duration::from_millis(300), "acked").await;
}

async fn late_ack_from_a_lost_lease_still_completes_the_message(fixture: Fixture) {
    let slow_worker = fixture.services.queue.clone();
    publish_new(&*slow_worker, message("late", "body")).await;
    let late = pull_one(&*slow_worker).await;

    // The slow worker's lease runs out and another replica takes the message over...
    let other = fixture.replica().await.queue;
    let taken_over = pull_one(&*other).await;
    assert_eq!((taken_over.id.as_str(), taken_over.attempt), ("late", 2));
    // ...then the slow worker finishes after all: the work is done, its ack counts.
    late.ack().await.expect("a late ack is accepted");
    // Even if the second worker dies without acking, the message does not come back.
    drop(taken_over);
    assert_nothing_pulled(&*other, LEASE * 3 / 2, "the late ack removed the message").await;
}

async fn retry_after_delays_redelivery(fixture: Fixture) {
    let queue = &*fixture.services.queue;
    publish_new(queue, message("deferred", "body")).await;
    let delay = Duration::from_millis(1500);

    let lease = pull_one(queue).await;
    let released_at = Instant::now();
    lease.retry_after(delay).await.expect("retry_after");
    assert_nothing_pulled(queue, delay / 2, "the retry is not due yet").await;

    let retried = pull_one(queue).await;
    let after = released_at.elapsed();
    assert_eq!(retried.id, "deferred");
    assert_eq!(retried.attempt, 2, "a retry counts as an attempt");
    assert!(after + CLOCK_SLACK >= delay, "retried after {after:?}, before the {delay:?} delay");
    retried.ack().await.expect("ack");
}

/// More deferred messages than a JetStream consumer lets out unacknowledged by default (1,000):
/// mail for a domain that is down must not hold up the rest of the queue until its retries.
async fn a_large_retry_backlog_does_not_hold_up_new_messages(fixture: Fixture) {
    const DEFERRED: usize = 1_200;
    let queue = &*fixture.services.queue;
    for i in 0..DEFERRED {
        publish_new(queue, message(&format!("deferred-{i}"), "body")).await;
    }
    let mut released = 0;
    while released < DEFERRED {
        let leases = queue.pull(DEFERRED - released, PATIENCE).await.expect("pull the backlog");
        assert!(!leases.is_empty(), "{released} of {DEFERRED} deferred messages pulled, then nothing");
        for lease in leases {
            assert!(lease.id.starts_with("deferred-"), "{} before the backlog was pulled", lease.id);
            lease.retry_after(Duration::from_secs(3600)).await.expect("retry in an hour");
            released += 1;
        }
    }

    publish_new(queue, message("fresh", "body")).await;
    let fresh = pull_one(queue).await;
    assert_eq!(fresh.id, "fresh", "new mail goes out while {DEFERRED} messages wait for their retry");
    fresh.ack().await.expect("ack");
}

async fn extend_keeps_the_lease_past_its_duration(fixture: Fixture) {
    let queue = &*fixture.services.queue;
    publish_new(queue, message("slow", "body")).await;
    let lease = pull_one(queue).await;
    let leased_at = Instant::now();

    // A long delivery: extend well before each lease end, until past the original lease.
    while leased_at.elapsed() < LEASE + LEASE / 4 {
        tokio::time::sleep(LEASE * 2 / 5).await;
        lease.extend().await.expect("extend");
    }
    let other = fixture.replica().await.queue;
    assert_nothing_pulled(&*other, LEASE / 4, "the extended lease still holds").await;
    assert!(leased_at.elapsed() > LEASE, "the check ran past the original lease end");

    lease.ack().await.expect("ack after extending");
    assert_nothing_pulled(&*other, Duration::from_millis(300), "acked").await;
}

async fn empty_pull_waits_then_returns_nothing(fixture: Fixture) {
    let queue = &*fixture.services.queue;
    let wait = Duration::from_secs(1);
    let started = Instant::now();
    let leases = queue.pull(5, wait).await.expect("pull");
    let took = started.elapsed();
    assert!(leases.is_empty(), "nothing was published");
    assert!(took + CLOCK_SLACK >= wait * 9 / 10, "returned after {took:?}, not waiting {wait:?}");
    assert!(took < wait + PATIENCE, "returned after {took:?}, far beyond {wait:?}");

    let started = Instant::now();
    assert!(queue.pull(5, Duration::ZERO).await.expect("pull without waiting").is_empty());
    assert!(started.elapsed() < PATIENCE / 2, "a zero wait does not wait");
}

async fn waiting_pull_wakes_up_for_a_new_message(fixture: Fixture) {
    let queue = fixture.services.queue.clone();
    let waiting = tokio::spawn({
        let queue = queue.clone();
        async move {
            let started = Instant::now();
            let leases = queue.pull(10, Duration::from_secs(30)).await.expect("pull");
            (leases, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let publisher = fixture.replica().await.queue;
    publish_new(&*publisher, message("wake-up", "body")).await;

    let (leases, took) = waiting.await.expect("pull task");
    assert_eq!(leases.iter().map(|l| l.id.as_str()).collect::<Vec<_>>(), ["wake-up"]);
    assert!(took < PATIENCE, "the waiting pull returned after {took:?}, not at the publish");
    for lease in leases {
        lease.ack().await.expect("ack");
    }
}

async fn concurrent_consumers_share_the_work_without_overlap(fixture: Fixture) {
    const MESSAGES: usize = 40;
    const CONSUMERS: usize = 4;
    let publisher = &*fixture.services.queue;
    for i in 0..MESSAGES {
        publish_new(publisher, message(&format!("parcel-{i:02}"), "body")).await;
    }

    let received = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + PATIENCE * 3;
    let mut consumers = Vec::new();
    for _ in 0..CONSUMERS {
        let queue = fixture.replica().await.queue;
        let received = received.clone();
        consumers.push(tokio::spawn(async move {
            while Instant::now() < deadline && received.lock().unwrap().len() < MESSAGES {
                for lease in queue.pull(3, Duration::from_millis(500)).await.expect("pull") {
                    received.lock().unwrap().push(lease.id.clone());
                    lease.ack().await.expect("ack");
                }
            }
        }));
    }
    for consumer in consumers {
        consumer.await.expect("consumer task");
    }

    let mut received = received.lock().unwrap().clone();
    received.sort();
    let expected: Vec<String> = (0..MESSAGES).map(|i| format!("parcel-{i:02}")).collect();
    assert_eq!(received, expected, "every message exactly once across {CONSUMERS} consumers");
    assert_nothing_pulled(publisher, Duration::from_millis(300), "all acked").await;
}

async fn dead_letters_are_kept_aside_with_their_reason_and_never_return(fixture: Fixture) {
    let queue = &*fixture.services.queue;
    assert_eq!(queue.dead_letters(10).await.expect("no dead letters yet"), Vec::new());
    publish_new(queue, message("bad-1", "\u{0}not an envelope")).await;
    publish_new(queue, message("good-1", "fine")).await;
    let lease = pull_one(queue).await;
    assert_eq!(lease.id, "bad-1");
    lease.dead_letter("cannot decode the envelope:\r\ninvalid wire type").await.expect("dead letter");

    let next = pull_one(queue).await;
    assert_eq!(next.id, "good-1", "the queue goes on");
    next.ack().await.expect("ack");
    assert_nothing_pulled(queue, LEASE + CLOCK_SLACK, "a dead letter is not delivered again").await;

    let letters = queue.dead_letters(10).await.expect("dead letters");
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].message, message("bad-1", "\u{0}not an envelope"), "kept as it was queued");
    assert_eq!(letters[0].reason, "cannot decode the envelope:  invalid wire type", "one line");
    // Another replica sees them too.
    let replica = fixture.replica().await;
    assert_eq!(replica.queue.dead_letters(10).await.expect("replica dead letters"), letters);
}

async fn bad_input_is_refused_not_carried(fixture: Fixture) {
    let Services { spool, queue, events } = &fixture.services;
    let refused = |result: Result<(), Error>, what: &str| {
        assert!(matches!(result, Err(Error::Invalid { .. })), "{what}: {result:?}");
    };
    let with_header =
        |name: &str, value: &str| QueueMessage { headers: headers(&[(name, value)]), ..message("bad-header", "body") };
    refused(queue.publish(message("", "body")).await.map(drop), "empty id");
    refused(queue.publish(message("id\r\nx", "body")).await.map(drop), "id with a line break");
    refused(queue.publish(with_header("Nats-Expected-Stream", "x")).await.map(drop), "NATS header");
    refused(queue.publish(with_header("bad:name", "x")).await.map(drop), "header name with ':'");
    refused(queue.publish(with_header("x", "two\nlines")).await.map(drop), "header value with a line break");
    refused(spool.put("", Bytes::new()).await, "empty spool key");
    let root = &fixture.subject_root;
    refused(events.publish(&format!("{root}.has space"), Bytes::new(), Headers::new()).await, "subject with a space");
    refused(events.publish(&format!("{root}.*"), Bytes::new(), Headers::new()).await, "wildcard subject");
    refused(events.subscribe(&format!("{root}.>.x")).await.map(drop), "`>` not last");
    refused(events.subscribe(&format!("{root}..x")).await.map(drop), "empty token");
    assert_nothing_pulled(&**queue, Duration::ZERO, "refused messages are not queued").await;
}

// ---- events ----

/// Collects `count` events from `stream`.
async fn receive(stream: &mut EventStream, count: usize, pattern: &str) -> Vec<String> {
    let mut subjects = Vec::new();
    while subjects.len() < count {
        match tokio::time::timeout(PATIENCE, stream.next()).await {
            Ok(Some(event)) => subjects.push(event.subject),
            Ok(None) => panic!("{pattern}: stream ended"),
            Err(_) => panic!("{pattern}: got {subjects:?}, expected {count} events"),
        }
    }
    subjects
}

/// After a moment for stragglers, checks that none of `streams` holds another event.
async fn assert_no_more_events<'a>(streams: impl IntoIterator<Item = (&'a str, &'a mut EventStream)>) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (pattern, stream) in streams {
        if let Some(Some(extra)) = stream.next().now_or_never() {
            panic!("{pattern}: unexpected event {}", extra.subject);
        }
    }
}

async fn events_fan_out_to_every_matching_subscriber(fixture: Fixture) {
    let root = &fixture.subject_root;
    // Subscribers in another service (another connection for NATS) than the publisher.
    let listener = fixture.replica().await.events;
    let cases: [(String, &[&str]); 5] = [
        (format!("{root}.alice.*"), &["alice.INBOX", "alice.Drafts"]),
        (format!("{root}.>"), &["alice.INBOX", "bob.Sent", "alice.Drafts", "alice.INBOX.Archive"]),
        (format!("{root}.alice.INBOX"), &["alice.INBOX"]),
        (format!("{root}.*.Sent"), &["bob.Sent"]),
        (format!("{root}.carol.>"), &[]),
    ];
    let mut streams = Vec::new();
    for (pattern, _) in &cases {
        streams.push(listener.subscribe(pattern).await.expect("subscribe"));
    }

    let trace = headers(&[("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]);
    for mailbox in ["alice.INBOX", "bob.Sent", "alice.Drafts", "alice.INBOX.Archive"] {
        let payload = Bytes::from(format!("changed {mailbox}"));
        fixture.services.events.publish(&format!("{root}.{mailbox}"), payload, trace.clone()).await.expect("publish");
    }

    // The first subscriber also checks what an event carries.
    let first = tokio::time::timeout(PATIENCE, streams[0].next()).await.expect("event in time").expect("open stream");
    assert_eq!(first.subject, format!("{root}.alice.INBOX"));
    assert_eq!(first.payload, Bytes::from_static(b"changed alice.INBOX"));
    assert_eq!(first.headers, trace, "headers travel with the event, no broker ones");

    for (index, ((pattern, expected), stream)) in cases.iter().zip(&mut streams).enumerate() {
        let already = usize::from(index == 0);
        let mut got = receive(stream, expected.len() - already, pattern).await;
        if already == 1 {
            got.insert(0, first.subject.clone());
        }
        let expected: Vec<String> = expected.iter().map(|mailbox| format!("{root}.{mailbox}")).collect();
        assert_eq!(got, expected, "{pattern} receives the matching events in publish order");
    }
    assert_no_more_events(cases.iter().map(|(pattern, _)| pattern.as_str()).zip(&mut streams)).await;
}

async fn dropped_subscription_stops_and_others_continue(fixture: Fixture) {
    let root = &fixture.subject_root;
    let events = &fixture.services.events;
    let pattern = format!("{root}.dave.*");
    let dropped = events.subscribe(&pattern).await.expect("subscribe");
    let mut kept = events.subscribe(&pattern).await.expect("subscribe");
    drop(dropped);
    events.publish(&format!("{root}.dave.INBOX"), Bytes::new(), Headers::new()).await.expect("publish after a drop");
    let got = receive(&mut kept, 1, &pattern).await;
    assert_eq!(got, [format!("{root}.dave.INBOX")]);
    assert_no_more_events([(pattern.as_str(), &mut kept)]).await;
}

/// Instantiates each check for both implementations.
macro_rules! conformance_suite {
    ($($check:ident),+ $(,)?) => {
        mod nats {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(super::nats_fixture().await).await;
                }
            )+
        }
        mod local {
            $(
                #[tokio::test]
                async fn $check() {
                    super::$check(super::local_fixture().await).await;
                }
            )+
        }
    };
}

conformance_suite!(
    spool_stores_replaces_and_deletes_bodies,
    publish_is_idempotent_on_the_message_id,
    pull_returns_payload_headers_and_first_attempt,
    acked_messages_never_come_back,
    expired_lease_redelivers_to_another_consumer,
    late_ack_from_a_lost_lease_still_completes_the_message,
    retry_after_delays_redelivery,
    a_large_retry_backlog_does_not_hold_up_new_messages,
    extend_keeps_the_lease_past_its_duration,
    empty_pull_waits_then_returns_nothing,
    waiting_pull_wakes_up_for_a_new_message,
    concurrent_consumers_share_the_work_without_overlap,
    dead_letters_are_kept_aside_with_their_reason_and_never_return,
    bad_input_is_refused_not_carried,
    events_fan_out_to_every_matching_subscriber,
    dropped_subscription_stops_and_others_continue,
);
