//! Deliver: the quota under concurrent deliveries, a burst into one mailbox (group commit),
//! idempotent redelivery, folders changing under deliveries. Every test runs against PostgreSQL and
//! SQLite, through the real gRPC server, with real clients.

mod common;

use std::collections::BTreeSet;

use common::{Backend, Fixture, churn_folder, deliver, deliver_to, message};
use futures::StreamExt;
use kubemail_proto::Message as _;
use kubemail_proto::admin::*;
use kubemail_proto::events::{MailboxEvent, mailbox_event::Change};
use kubemail_proto::mailstore::resolve_recipient_response::QuotaState;
use kubemail_proto::mailstore::*;
use kubemail_runtime::EventBus;
use sqlx::Connection as _;
use tonic::Code;

on_both_backends!(
    concurrent_deliveries_never_exceed_the_quota,
    a_burst_into_one_mailbox_is_stored_once_each_with_every_answer_right,
    redelivery_stores_one_copy_and_returns_the_same_uid,
    deliveries_racing_folder_changes_keep_usage_exact
);

async fn concurrent_deliveries_never_exceed_the_quota(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let body = message("quota", 1000);
    let size = body.len() as u64;
    let account = f.account("full@example.org", 10 * size, 0).await;

    let resolve = f
        .mailstore
        .resolve_recipient(ResolveRecipientRequest { address: "full@example.org".into(), size_hint: 11 * size })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolve.quota(), QuotaState::NeverFits, "a message larger than the whole quota can never fit");

    let deliveries = (0..50).map(|i| {
        let mut client = f.mailstore.clone();
        let body = body.clone();
        tokio::spawn(async move { deliver(&mut client, &format!("q-{i}"), "full@example.org", &body).await })
    });
    let results = futures::future::join_all(deliveries).await;
    let (mut stored, mut refused) = (0, 0);
    for result in results {
        match result.expect("task") {
            Ok(_) => stored += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "refusals are quota errors: {status}");
                assert!(status.message().contains("quota"), "the message says why: {}", status.message());
                refused += 1;
            }
        }
    }
    assert_eq!((stored, refused), (10, 40));

    let inbox = f.select(account, "INBOX").await;
    assert_eq!(inbox.uids.len(), 10);
    assert_eq!(inbox.mailbox.as_ref().unwrap().size, 10 * size);
    let usage = f.mailstore.get_quota(GetQuotaRequest { account_id: account }).await.unwrap().into_inner();
    assert_eq!((usage.storage_used, usage.messages_used, usage.storage_limit), (10 * size, 10, 10 * size));
    let resolve = f
        .mailstore
        .resolve_recipient(ResolveRecipientRequest { address: "full@example.org".into(), size_hint: size })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolve.quota(), QuotaState::Full);

    // Message-count quota too.
    let counted = f.account("counted@example.org", 0, 2).await;
    for i in 0..2 {
        f.deliver(&format!("c-{i}"), "counted@example.org", &body).await.unwrap();
    }
    let third = f.deliver("c-2", "counted@example.org", &body).await.unwrap_err();
    assert_eq!(third.code(), Code::ResourceExhausted);
    assert_eq!(f.select(counted, "INBOX").await.uids.len(), 2);
}

/// Many deliveries into one mailbox at once, as a queue with many workers makes them: new
/// messages, redeliveries of stored ones, and more than the quota holds. Each caller gets its
/// own right answer, each message is stored once under its own UID, the usage is exact, and
/// the IMAP sessions hear of every new UID. On PostgreSQL the burst shares commits (group
/// commit), which is what lets one mailbox take mail faster than one fsync per message.
async fn a_burst_into_one_mailbox_is_stored_once_each_with_every_answer_right(backend: Backend) {
    const STORED_FIRST: usize = 10;
    const QUOTA: usize = 40;
    const NEW: usize = 60;
    let mut f = Fixture::start(backend).await;
    let body = message("burst", 600);
    let account = f.account("busy@example.org", 0, QUOTA as u64).await;
    let mut events = f.bus.subscribe(&format!("events.{account}.*")).await.unwrap();
    let mut first_uids = Vec::new();
    for i in 0..STORED_FIRST {
        first_uids.push(f.deliver(&format!("q-{i}"), "busy@example.org", &body).await.unwrap().uid);
    }

    // The redeliveries race the new ones: q-0 … q-9 again, then q-10 … q-69.
    let calls = (0..STORED_FIRST + NEW).map(|i| {
        let mut client = f.mailstore.clone();
        let body = body.clone();
        tokio::spawn(async move { deliver(&mut client, &format!("q-{i}"), "busy@example.org", &body).await })
    });
    let calls: Vec<_> = calls.collect();
    let again = (0..STORED_FIRST).map(|i| {
        let mut client = f.mailstore.clone();
        let body = body.clone();
        tokio::spawn(async move { deliver(&mut client, &format!("q-{i}"), "busy@example.org", &body).await })
    });
    let again: Vec<_> = again.collect();

    let mut new_uids = BTreeSet::new();
    let mut refused = 0;
    for (i, call) in calls.into_iter().enumerate() {
        match call.await.expect("task") {
            Ok(answer) if i < STORED_FIRST => {
                assert!(answer.duplicate, "q-{i} was stored before: {answer:?}");
                assert_eq!(answer.uid, first_uids[i], "a redelivery answers the first delivery's UID");
            }
            Ok(answer) => {
                assert!(!answer.duplicate, "q-{i} is new");
                assert!(new_uids.insert(answer.uid), "UID {} handed out twice", answer.uid);
            }
            Err(status) => {
                assert!(i >= STORED_FIRST, "a redelivery is never refused: {status}");
                assert_eq!(status.code(), Code::ResourceExhausted, "only the quota refuses: {status}");
                refused += 1;
            }
        }
    }
    for (i, call) in again.into_iter().enumerate() {
        let answer = call.await.expect("task").expect("a redelivery is answered");
        assert!(answer.duplicate && answer.uid == first_uids[i], "q-{i} again: {answer:?}");
    }
    assert_eq!((new_uids.len(), refused), (QUOTA - STORED_FIRST, NEW - (QUOTA - STORED_FIRST)));

    let inbox = f.select(account, "INBOX").await;
    let stored: BTreeSet<u32> = inbox.uids.iter().copied().collect();
    let expected: BTreeSet<u32> = first_uids.iter().copied().chain(new_uids.iter().copied()).collect();
    assert_eq!(stored, expected, "the mailbox holds exactly the messages that were answered as stored");
    assert_eq!(f.quota(account).await.messages_used, QUOTA as u64);
    assert_eq!(inbox.mailbox.as_ref().unwrap().size, (QUOTA * body.len()) as u64);

    let mut announced = BTreeSet::new();
    while announced.len() < QUOTA {
        let event = tokio::time::timeout(std::time::Duration::from_secs(5), events.next())
            .await
            .unwrap_or_else(|_| panic!("every new UID is announced; heard of {announced:?}"))
            .expect("stream open");
        let event = MailboxEvent::decode(event.payload).expect("event decodes");
        if let Some(Change::Added(added)) = event.change {
            assert!(added.uids.iter().all(|uid| added.uidnext > *uid), "UIDNEXT follows the UIDs it announces");
            // Each message with its flags and its own MODSEQ, rising with its UID.
            assert_eq!((added.system_flags.len(), added.keywords.len()), (added.uids.len(), added.uids.len()));
            assert!(added.modseqs.windows(2).all(|pair| pair[0] < pair[1]), "{added:?}");
            assert_eq!(added.modseqs.last(), Some(&event.highest_modseq), "{added:?}");
            announced.extend(added.uids);
        }
    }
    assert_eq!(announced, expected);

    if let Some(url) = &f.database_url {
        // Rows written by one transaction share its id (xmin).
        let mut db = sqlx::PgConnection::connect(url).await.unwrap();
        let transactions: i64 =
            sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM messages WHERE account_id = $1 AND uid > $2")
                .bind(account)
                .bind(STORED_FIRST as i64)
                .fetch_one(&mut db)
                .await
                .unwrap();
        assert!(
            transactions <= (new_uids.len() / 2) as i64,
            "{} messages delivered at once took {transactions} commits",
            new_uids.len()
        );
    }
}

async fn redelivery_stores_one_copy_and_returns_the_same_uid(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    f.account("bob@example.org", 0, 0).await;
    let body = message("once", 500);
    let first = f.deliver("q-1", "alice@example.org", &body).await.unwrap();
    assert!(!first.duplicate);
    let again = f.deliver("q-1", "alice@example.org", &body).await.unwrap();
    assert!(again.duplicate);
    assert_eq!((again.uid, again.uidvalidity, again.mailbox_id), (first.uid, first.uidvalidity, first.mailbox_id));
    // Concurrent redeliveries of the same pair, as after a worker crash, still store once.
    let racing = (0..8).map(|_| {
        let mut client = f.mailstore.clone();
        let body = body.clone();
        tokio::spawn(async move { deliver(&mut client, "q-2", "alice@example.org", &body).await })
    });
    let uids: BTreeSet<u32> =
        futures::future::join_all(racing).await.into_iter().map(|r| r.unwrap().unwrap().uid).collect();
    assert_eq!(uids.len(), 1, "every racer got the same UID: {uids:?}");
    // A redelivery is a duplicate whatever happened to the account since: quota full,
    // suspended, or the address it was sent to gone.
    f.admin
        .add_alias(AddAliasRequest { address: "al@example.org".into(), target: "alice@example.org".into() })
        .await
        .unwrap();
    let via_alias = f.deliver("q-3", "al@example.org", &body).await.unwrap();
    f.admin.remove_alias(RemoveAliasRequest { address: "al@example.org".into() }).await.unwrap();
    f.admin
        .set_quota(SetQuotaRequest { address: "alice@example.org".into(), quota_storage: 1, quota_messages: 1 })
        .await
        .unwrap();
    f.admin
        .upsert_account(UpsertAccountRequest {
            address: "alice@example.org".into(),
            suspended: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    for (queue_id, recipient, uid) in
        [("q-1", "alice@example.org", first.uid), ("q-3", "al@example.org", via_alias.uid)]
    {
        let again = f.deliver(queue_id, recipient, &body).await.expect("a redelivery is answered as a duplicate");
        assert!(again.duplicate);
        assert_eq!(again.uid, uid);
    }
    f.admin
        .upsert_account(UpsertAccountRequest {
            address: "alice@example.org".into(),
            suspended: Some(false),
            ..Default::default()
        })
        .await
        .unwrap();
    f.admin
        .set_quota(SetQuotaRequest { address: "alice@example.org".into(), quota_storage: 0, quota_messages: 0 })
        .await
        .unwrap();

    // Once its record is pruned (past the queue's maximum age) a pair is new again.
    let pruned = f.store.prune_delivery_records(kubemail_mailstore::store::now() + 1).await.unwrap();
    assert_eq!(pruned, 3);
    assert!(!f.deliver("q-1", "alice@example.org", &body).await.unwrap().duplicate);
    // The same queue message to another recipient is another delivery.
    assert!(!f.deliver("q-1", "bob@example.org", &body).await.unwrap().duplicate);
    assert_eq!(f.select(alice, "INBOX").await.uids.len(), 4);
    let usage = f.quota(alice).await;
    assert_eq!(usage.messages_used, 4);
}

/// Deliveries into a folder that is deleted, recreated and renamed under them: each lands in
/// the folder or, when it is gone, in INBOX; none is lost or counted twice, and the account's
/// usage stays exactly what its mailboxes hold.
async fn deliveries_racing_folder_changes_keep_usage_exact(backend: Backend) {
    const WORKERS: usize = 6;
    const PER_WORKER: usize = 15;
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    let create =
        move |name: &str| CreateMailboxRequest { account_id: alice, name: name.into(), special_use: String::new() };
    f.mailstore.create_mailbox(create("Lists")).await.unwrap();

    let deliveries = (0..WORKERS).map(|worker| {
        let mut client = f.mailstore.clone();
        tokio::spawn(async move {
            let mut delivered = Vec::new();
            for i in 0..PER_WORKER {
                let queue_id = format!("q-{worker}-{i}");
                let body = message(&queue_id, 300 + 37 * (worker * PER_WORKER + i));
                let result = deliver_to(&mut client, &queue_id, "alice@example.org", "Lists", &body).await;
                delivered.push((queue_id, body, result.unwrap_or_else(|e| panic!("delivery refused: {e}"))));
            }
            delivered
        })
    });
    let folder_changes = churn_folder(f.mailstore.clone(), alice, PER_WORKER);
    let mut delivered = Vec::new();
    for worker in futures::future::join_all(deliveries).await {
        delivered.extend(worker.expect("delivery task"));
    }
    folder_changes.await.expect("folder task");
    assert_eq!(delivered.len(), WORKERS * PER_WORKER);

    // Usage equals what the mailboxes hold, message for message.
    let mailboxes =
        f.mailstore.list_mailboxes(ListMailboxesRequest { account_id: alice }).await.unwrap().into_inner().mailboxes;
    let (mut held_octets, mut held_messages) = (0, 0);
    for mailbox in &mailboxes {
        let snapshot = f.select(alice, &mailbox.name).await;
        let info = snapshot.mailbox.as_ref().unwrap();
        assert_eq!(info.messages as usize, snapshot.uids.len());
        held_octets += info.size;
        held_messages += u64::from(info.messages);
    }
    let usage = f.quota(alice).await;
    assert_eq!((usage.storage_used, usage.messages_used), (held_octets, held_messages));
    // Each delivery is recorded once: a redelivery answers the first one's placement.
    for (queue_id, body, first) in &delivered {
        let again = f.deliver(queue_id, "alice@example.org", body).await.unwrap();
        assert!(again.duplicate, "{queue_id} is a duplicate");
        assert_eq!((again.mailbox_id, again.uid), (first.mailbox_id, first.uid), "{queue_id}");
    }
    // What INBOX holds arrived there only as a fallback, each message once.
    let inbox = f.select(alice, "INBOX").await;
    let inbox_id = inbox.mailbox.as_ref().unwrap().id;
    let fell_back = delivered.iter().filter(|(_, _, d)| d.mailbox_id == inbox_id).count();
    assert_eq!(inbox.uids.len(), fell_back);
}
