//! The mailstore suite: every test runs against PostgreSQL and SQLite, through the real gRPC
//! server, with real clients.

mod common;

use std::collections::BTreeSet;

use common::{Backend, Fixture, TEST_MAX_MESSAGE, append_to, deliver, deliver_to, message};
use futures::StreamExt;
use kubemail_proto::Message as _;
use kubemail_proto::admin::*;
use kubemail_proto::events::{MailboxEvent, mailbox_event::Change};
use kubemail_proto::mailstore::resolve_recipient_response::{Outcome, QuotaState};
use kubemail_proto::mailstore::store_flags_request::Operation;
use kubemail_proto::mailstore::*;
use kubemail_runtime::EventBus;
use sqlx::Connection as _;
use tonic::Code;

on_both_backends!(
    directory_resolves_aliases_catch_all_and_subaddresses,
    authentication_checks_password_and_suspension,
    concurrent_deliveries_never_exceed_the_quota,
    a_burst_into_one_mailbox_is_stored_once_each_with_every_answer_right,
    redelivery_stores_one_copy_and_returns_the_same_uid,
    deliveries_racing_folder_changes_keep_usage_exact,
    appends_racing_folder_changes_keep_usage_exact,
    a_burst_of_appends_into_one_mailbox_is_stored_once_each_within_the_quota,
    uids_ascend_never_repeat_and_uidvalidity_changes_on_recreate,
    flag_changes_raise_modseq_and_conditional_store_respects_it,
    one_account_can_never_reach_another_accounts_mail,
    bad_input_is_refused_and_leaves_nothing_behind,
    mailboxes_create_rename_delete_subscribe,
    renames_match_names_exactly_and_refuse_clashes,
    copy_move_expunge_keep_usage_and_bodies_right,
    search_filters_on_flags_dates_sizes_and_uids,
    bodies_stream_back_whole_and_in_ranges,
    every_change_publishes_a_mailbox_event,
    deleting_an_account_suspends_by_default_and_purges_on_request,
    mailbox_counters_follow_every_change,
    writers_racing_on_one_mailbox_never_deadlock,
    racing_flag_changes_to_the_same_messages_all_take_effect,
    a_known_snapshot_is_reported_unchanged_until_the_mailbox_changes,
    expunged_uids_are_told_since_any_modseq,
    pop3_removal_takes_the_listed_messages_whatever_their_flags,
    a_snapshot_with_sizes_gives_every_message_its_size,
);

/// Database connections dropped while the pools held them idle (a database restart, a proxy's
/// idle timeout) are noticed and replaced before use: no call fails for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_dropped_while_idle_are_replaced_before_use() {
    let mut f = Fixture::start(Backend::Postgres).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    f.deliver("q-1", "alice@example.org", &message("before", 300)).await.unwrap();
    assert_eq!(f.select(alice, "INBOX").await.uids.len(), 1);

    let url = f.database_url.clone().expect("PostgreSQL");
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let dropped: i64 = sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(dropped > 0, "the mailstore's pooled connections were open");
    tokio::time::sleep(kubemail_runtime::pools::CHECK_WHEN_IDLE_FOR + std::time::Duration::from_millis(200)).await;

    // Reads and writes on both pools (the typed one of the hot paths and the general one).
    f.deliver("q-2", "alice@example.org", &message("after", 300)).await.expect("delivery after the drop");
    let inbox = f.select(alice, "INBOX").await;
    assert_eq!(inbox.uids.len(), 2);
    let mailbox_id = inbox.mailbox.unwrap().id;
    assert_eq!(f.messages(alice, mailbox_id).await.len(), 2, "a read after the drop");
}

/// Drops the answer of a call whose failure is what a test checks.
fn discard<T>(result: Result<T, tonic::Status>) -> Result<(), tonic::Status> {
    result.map(|_| ())
}

fn uid_range(first: u32, last: u32) -> UidRange {
    UidRange { first, last }
}

/// STORE +FLAGS (\Deleted) on `uids`.
fn add_deleted(account_id: i64, mailbox_id: i64, uids: Vec<UidRange>) -> StoreFlagsRequest {
    let deleted = flags(SystemFlag::Deleted as u32, &[]);
    StoreFlagsRequest {
        account_id,
        mailbox_id,
        uids,
        operation: Operation::Add as i32,
        flags: deleted,
        unchanged_since: 0,
    }
}

fn flags(system: u32, keywords: &[&str]) -> Option<Flags> {
    Some(Flags { system, keywords: keywords.iter().map(|k| k.to_string()).collect() })
}

async fn directory_resolves_aliases_catch_all_and_subaddresses(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    let bob = f.account("Bob@Example.org", 0, 0).await;
    f.admin
        .add_alias(AddAliasRequest { address: "postmaster@example.org".into(), target: "alice@example.org".into() })
        .await
        .unwrap();

    let mut resolve = async |address: &str| {
        f.mailstore
            .resolve_recipient(ResolveRecipientRequest { address: address.into(), size_hint: 0 })
            .await
            .unwrap()
            .into_inner()
    };
    let direct = resolve("ALICE@example.ORG").await;
    assert_eq!(
        (direct.outcome(), direct.account_id, direct.canonical_address.as_str()),
        (Outcome::Local, alice, "alice@example.org")
    );
    assert_eq!(resolve("bob@example.org").await.account_id, bob, "addresses are case-insensitive");
    assert_eq!(resolve("postmaster@example.org").await.account_id, alice, "aliases reach their target");
    assert_eq!(resolve("alice+lists@example.org").await.account_id, alice, "subaddresses reach the base address");
    assert_eq!(resolve("nobody@example.org").await.outcome(), Outcome::UnknownRecipient);
    assert_eq!(resolve("alice@elsewhere.net").await.outcome(), Outcome::NotLocal);

    f.admin
        .upsert_domain(UpsertDomainRequest {
            name: "example.org".into(),
            catch_all: "bob@example.org".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let caught = resolve("anything@example.org").await;
    assert_eq!((caught.outcome(), caught.account_id), (Outcome::Local, bob), "catch-all takes unknown local parts");

    let domains = f.admin.list_domains(ListDomainsRequest {}).await.unwrap().into_inner().domains;
    assert_eq!(domains.len(), 1);
    assert_eq!((domains[0].name.as_str(), domains[0].accounts), ("example.org", 2));
    let aliases =
        f.admin.list_aliases(ListAliasesRequest { domain: "example.org".into() }).await.unwrap().into_inner().aliases;
    assert_eq!(aliases, vec![Alias { address: "postmaster@example.org".into(), target: "alice@example.org".into() }]);
    let accounts =
        f.admin.list_accounts(ListAccountsRequest { domain: String::new() }).await.unwrap().into_inner().accounts;
    let listed: Vec<(&str, Vec<String>)> = accounts.iter().map(|a| (a.address.as_str(), a.aliases.clone())).collect();
    assert_eq!(
        listed,
        vec![("alice@example.org", vec!["postmaster@example.org".to_string()]), ("bob@example.org", vec![])]
    );

    // An alias cannot shadow an account, nor an account an alias.
    let clash = f
        .admin
        .add_alias(AddAliasRequest { address: "bob@example.org".into(), target: "alice@example.org".into() })
        .await;
    assert_eq!(clash.unwrap_err().code(), Code::AlreadyExists);
    let clash = f
        .admin
        .upsert_account(UpsertAccountRequest {
            address: "postmaster@example.org".into(),
            password: "x".into(),
            ..Default::default()
        })
        .await;
    assert_eq!(clash.unwrap_err().code(), Code::AlreadyExists);

    f.admin.remove_alias(RemoveAliasRequest { address: "postmaster@example.org".into() }).await.unwrap();
    assert_eq!(resolve("postmaster@example.org").await.account_id, bob, "with the alias gone the catch-all takes it");

    let busy = f.admin.delete_domain(DeleteDomainRequest { name: "example.org".into(), force: false }).await;
    assert_eq!(busy.unwrap_err().code(), Code::FailedPrecondition, "a domain with accounts is not dropped silently");
    f.admin.delete_domain(DeleteDomainRequest { name: "example.org".into(), force: true }).await.unwrap();
    assert_eq!(resolve("alice@example.org").await.outcome(), Outcome::NotLocal);
}

async fn authentication_checks_password_and_suspension(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    f.admin
        .add_alias(AddAliasRequest { address: "a@example.org".into(), target: "alice@example.org".into() })
        .await
        .unwrap();
    let mut login = async |user: &str, password: &str| {
        f.mailstore.authenticate(AuthenticateRequest { username: user.into(), password: password.into() }).await
    };
    let ok = login("Alice@example.org", "secret").await.unwrap().into_inner();
    assert_eq!((ok.account_id, ok.address.as_str()), (alice, "alice@example.org"));
    assert_eq!(ok.sender_addresses, vec!["alice@example.org", "a@example.org"]);
    assert_eq!(login("alice@example.org", "wrong").await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(login("nobody@example.org", "secret").await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(login("not an address", "secret").await.unwrap_err().code(), Code::Unauthenticated);

    f.admin
        .set_password(SetPasswordRequest { address: "alice@example.org".into(), password: "new secret".into() })
        .await
        .unwrap();
    let mut login = async |user: &str, password: &str| {
        f.mailstore.authenticate(AuthenticateRequest { username: user.into(), password: password.into() }).await
    };
    assert_eq!(login("alice@example.org", "secret").await.unwrap_err().code(), Code::Unauthenticated);
    assert!(login("alice@example.org", "new secret").await.is_ok());

    f.admin
        .upsert_account(UpsertAccountRequest {
            address: "alice@example.org".into(),
            suspended: Some(true),
            ..Default::default()
        })
        .await
        .unwrap();
    let denied = f
        .mailstore
        .authenticate(AuthenticateRequest { username: "alice@example.org".into(), password: "new secret".into() })
        .await;
    assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);
    let resolved = f
        .mailstore
        .resolve_recipient(ResolveRecipientRequest { address: "alice@example.org".into(), size_hint: 0 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resolved.outcome(), Outcome::Disabled);
    let refused = f.deliver("q-suspended", "alice@example.org", &message("hi", 100)).await;
    assert_eq!(refused.unwrap_err().code(), Code::FailedPrecondition);
}

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
        if let Some(Change::Added(added)) = MailboxEvent::decode(event.payload).expect("event decodes").change {
            assert!(added.uids.iter().all(|uid| added.uidnext > *uid), "UIDNEXT follows the UIDs it announces");
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

/// APPENDs from many connections at once into one mailbox of an account that has room for
/// some of them: each is stored with a UID of its own or refused as over quota, the usage is
/// exactly what is stored, and on PostgreSQL they share commits.
async fn a_burst_of_appends_into_one_mailbox_is_stored_once_each_within_the_quota(backend: Backend) {
    const ATTEMPTS: usize = 40;
    const ROOM: u64 = 25;
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, ROOM).await;
    let appends = (0..ATTEMPTS).map(|i| {
        let mut client = f.mailstore.clone();
        tokio::spawn(async move { append_to(&mut client, alice, "INBOX", &message(&format!("burst-{i}"), 500)).await })
    });
    let mut uids = Vec::new();
    for answer in futures::future::join_all(appends).await {
        match answer.expect("append task") {
            Ok(stored) => uids.push(stored.uid),
            Err(status) => assert_eq!(status.code(), Code::ResourceExhausted, "{status}"),
        }
    }
    uids.sort_unstable();
    assert_eq!(uids, (1..=ROOM as u32).collect::<Vec<_>>(), "the quota's worth stored, each with its own UID");
    let inbox = f.select(alice, "INBOX").await;
    assert_eq!(inbox.uids, uids);
    let usage = f.quota(alice).await;
    assert_eq!((usage.messages_used, usage.storage_used), (ROOM, inbox.mailbox.unwrap().size));

    if let Some(url) = &f.database_url {
        let mut db = sqlx::PgConnection::connect(url).await.unwrap();
        let transactions: i64 =
            sqlx::query_scalar("SELECT count(DISTINCT xmin::text) FROM messages WHERE account_id = $1")
                .bind(alice)
                .fetch_one(&mut db)
                .await
                .unwrap();
        assert!(transactions < ROOM as i64, "{ROOM} messages appended at once took {transactions} commits");
    }
}

/// `rounds` times: deletes "Lists", creates it, renames it to "Old", creates it again and
/// deletes "Old", each change allowed to fail cleanly as it races others.
fn churn_folder(
    mut changer: kubemail_proto::mailstore::mail_store_client::MailStoreClient<tonic::transport::Channel>,
    alice: i64,
    rounds: usize,
) -> tokio::task::JoinHandle<()> {
    let create =
        move |name: &str| CreateMailboxRequest { account_id: alice, name: name.into(), special_use: String::new() };
    tokio::spawn(async move {
        for _ in 0..rounds {
            let outcomes = [
                changer
                    .delete_mailbox(DeleteMailboxRequest { account_id: alice, name: "Lists".into() })
                    .await
                    .map(drop),
                changer.create_mailbox(create("Lists")).await.map(drop),
                changer
                    .rename_mailbox(RenameMailboxRequest { account_id: alice, from: "Lists".into(), to: "Old".into() })
                    .await
                    .map(drop),
                changer.create_mailbox(create("Lists")).await.map(drop),
                changer.delete_mailbox(DeleteMailboxRequest { account_id: alice, name: "Old".into() }).await.map(drop),
            ];
            for outcome in outcomes {
                if let Err(status) = outcome {
                    assert!(
                        matches!(status.code(), Code::NotFound | Code::AlreadyExists | Code::Aborted),
                        "a racing folder change fails cleanly: {status}"
                    );
                }
            }
        }
    })
}

/// IMAP APPENDs into a folder that is deleted, recreated and renamed under them: each is stored
/// or refused as NotFound, and the account's usage stays exactly what its mailboxes hold (an
/// APPEND that counted its message must not lose the mailbox it was for).
async fn appends_racing_folder_changes_keep_usage_exact(backend: Backend) {
    const WORKERS: usize = 6;
    const PER_WORKER: usize = 15;
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    let create = CreateMailboxRequest { account_id: alice, name: "Lists".into(), special_use: String::new() };
    f.mailstore.create_mailbox(create).await.unwrap();

    let appends = (0..WORKERS).map(|worker| {
        let mut client = f.mailstore.clone();
        tokio::spawn(async move {
            let mut stored = 0;
            for i in 0..PER_WORKER {
                let body = message(&format!("a-{worker}-{i}"), 300 + 37 * (worker * PER_WORKER + i));
                match append_to(&mut client, alice, "Lists", &body).await {
                    Ok(_) => stored += 1,
                    Err(status) => assert_eq!(status.code(), Code::NotFound, "a refused APPEND: {status}"),
                }
            }
            stored
        })
    });
    let folder_changes = churn_folder(f.mailstore.clone(), alice, PER_WORKER);
    let mut stored = 0;
    for worker in futures::future::join_all(appends).await {
        stored += worker.expect("append task");
    }
    folder_changes.await.expect("folder task");
    assert!(stored > 0, "some APPENDs found the folder");

    let mailboxes =
        f.mailstore.list_mailboxes(ListMailboxesRequest { account_id: alice }).await.unwrap().into_inner().mailboxes;
    let (mut held_octets, mut held_messages) = (0, 0);
    for mailbox in &mailboxes {
        let info = f.select(alice, &mailbox.name).await.mailbox.unwrap();
        held_octets += info.size;
        held_messages += u64::from(info.messages);
    }
    let usage = f.quota(alice).await;
    assert_eq!((usage.storage_used, usage.messages_used), (held_octets, held_messages));
}

async fn uids_ascend_never_repeat_and_uidvalidity_changes_on_recreate(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    let mut uids = Vec::new();
    for i in 0..3 {
        uids.push(f.deliver(&format!("q-{i}"), "alice@example.org", &message("u", 100)).await.unwrap().uid);
    }
    assert_eq!(uids, vec![1, 2, 3]);
    let inbox = f.select(alice, "INBOX").await;
    let mailbox_id = inbox.mailbox.as_ref().unwrap().id;
    f.mailstore
        .store_flags(StoreFlagsRequest {
            account_id: alice,
            mailbox_id,
            uids: vec![uid_range(3, 3)],
            operation: Operation::Add as i32,
            flags: flags(SystemFlag::Deleted as u32, &[]),
            unchanged_since: 0,
        })
        .await
        .unwrap();
    let expunged =
        f.mailstore.expunge(ExpungeRequest { account_id: alice, mailbox_id, uids: vec![] }).await.unwrap().into_inner();
    assert_eq!(expunged.expunged, vec![3]);
    let next = f.deliver("q-3", "alice@example.org", &message("u", 100)).await.unwrap();
    assert_eq!(next.uid, 4, "the expunged UID 3 is never handed out again");
    let inbox = f.select(alice, "INBOX").await;
    assert_eq!(inbox.uids, vec![1, 2, 4]);
    assert_eq!(inbox.mailbox.unwrap().uidnext, 5);

    let created = f
        .mailstore
        .create_mailbox(CreateMailboxRequest { account_id: alice, name: "Projects".into(), special_use: String::new() })
        .await
        .unwrap()
        .into_inner();
    f.mailstore.delete_mailbox(DeleteMailboxRequest { account_id: alice, name: "Projects".into() }).await.unwrap();
    let recreated = f
        .mailstore
        .create_mailbox(CreateMailboxRequest { account_id: alice, name: "Projects".into(), special_use: String::new() })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(created.uidvalidity, recreated.uidvalidity, "a recreated mailbox gets a new UIDVALIDITY");
    assert!(recreated.uidvalidity > created.uidvalidity);
    assert_eq!(recreated.uidnext, 1);
}

async fn flag_changes_raise_modseq_and_conditional_store_respects_it(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    for i in 0..3 {
        f.deliver(&format!("q-{i}"), "alice@example.org", &message("m", 100)).await.unwrap();
    }
    let before = f.select(alice, "INBOX").await;
    let mailbox_id = before.mailbox.as_ref().unwrap().id;
    let highest = before.mailbox.as_ref().unwrap().highest_modseq;
    let mut store = async |uids: Vec<UidRange>, operation: Operation, flags: Option<Flags>, unchanged_since: u64| {
        f.mailstore
            .store_flags(StoreFlagsRequest {
                account_id: alice,
                mailbox_id,
                uids,
                operation: operation as i32,
                flags,
                unchanged_since,
            })
            .await
            .unwrap()
            .into_inner()
    };
    let seen = store(vec![uid_range(1, 2)], Operation::Add, flags(SystemFlag::Seen as u32, &["$Label1"]), 0).await;
    assert_eq!(seen.updated.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![1, 2]);
    assert!(seen.updated.iter().all(|m| m.modseq > highest), "every changed message gets a higher MODSEQ");
    assert!(seen.highest_modseq > highest);
    let m1 = seen.updated[0].modseq;

    let again = store(vec![uid_range(1, 2)], Operation::Add, flags(SystemFlag::Seen as u32, &[]), 0).await;
    assert!(again.updated.is_empty(), "setting flags a message already has changes nothing");

    let removed = store(vec![uid_range(1, 1)], Operation::Remove, flags(0, &["$label1"]), 0).await;
    assert_eq!(
        removed.updated[0].flags.as_ref().unwrap().keywords,
        Vec::<String>::new(),
        "keywords match case-insensitively"
    );
    assert!(removed.updated[0].modseq > m1);

    // CONDSTORE: UID 1 changed after m1, UID 3 did not.
    let conditional =
        store(vec![uid_range(1, 0)], Operation::Replace, flags(SystemFlag::Flagged as u32, &[]), m1).await;
    assert_eq!(conditional.modified, vec![1]);
    let changed: Vec<u32> = conditional.updated.iter().map(|m| m.uid).collect();
    assert_eq!(changed, vec![2, 3]);

    // Keywords set on UID 3 before UID 1: the snapshot still lists everything in UID order.
    store(vec![uid_range(3, 3)], Operation::Add, flags(0, &["$Later"]), 0).await;
    store(vec![uid_range(1, 1)], Operation::Add, flags(0, &["$Later"]), 0).await;
    let after = f.select(alice, "INBOX").await;
    assert_eq!(after.uids, vec![1, 2, 3]);
    assert_eq!(after.flags, vec![SystemFlag::Seen as u32, SystemFlag::Flagged as u32, SystemFlag::Flagged as u32]);
    assert_eq!((after.keyword_uids.clone(), after.keywords.clone()), (vec![1, 3], vec!["$Later".to_string(); 2]));
    assert_eq!(after.mailbox_keywords, vec!["$Later".to_string()]);
    assert_eq!(after.mailbox.unwrap().highest_modseq, *after.modseqs.iter().max().unwrap());
    let changed_since = f
        .mailstore
        .fetch_messages(FetchMessagesRequest { account_id: alice, mailbox_id, uids: vec![], changed_since: m1 })
        .await
        .unwrap()
        .into_inner()
        .messages;
    assert_eq!(changed_since.iter().map(|m| m.uid).collect::<Vec<_>>(), vec![1, 2, 3]);

    // Keywords may hold what other formats treat as separators or quotes; stored for several
    // messages at once, each keeps them exactly.
    let odd = ["a,b}c", "it's", "x=y;z"];
    let replace = StoreFlagsRequest {
        account_id: alice,
        mailbox_id,
        uids: vec![uid_range(1, 3)],
        operation: Operation::Replace as i32,
        flags: flags(SystemFlag::Answered as u32, &odd),
        unchanged_since: 0,
    };
    f.mailstore.store_flags(replace).await.unwrap();
    let after = f.select(alice, "INBOX").await;
    assert_eq!(after.flags, vec![SystemFlag::Answered as u32; 3]);
    assert_eq!(after.keyword_uids, vec![1, 2, 3]);
    assert!(after.keywords.iter().all(|stored| stored.split(' ').eq(odd)), "{:?}", after.keywords);
}

async fn one_account_can_never_reach_another_accounts_mail(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    let mallory = f.account("mallory@example.net", 0, 0).await;
    f.deliver("q-1", "alice@example.org", &message("private", 200)).await.unwrap();
    let inbox = f.select(alice, "INBOX").await;
    let alice_inbox = inbox.mailbox.as_ref().unwrap().id;
    let before = inbox.clone();

    let m = &mut f.mailstore;
    let all = vec![uid_range(1, 0)];
    let not_found = |result: Result<tonic::Response<_>, tonic::Status>, what: &str| {
        let status = result.err().unwrap_or_else(|| panic!("{what} must fail"));
        assert_eq!(status.code(), Code::NotFound, "{what}: {status}");
    };
    not_found(
        m.fetch_messages(FetchMessagesRequest {
            account_id: mallory,
            mailbox_id: alice_inbox,
            uids: all.clone(),
            changed_since: 0,
        })
        .await
        .map(|_| tonic::Response::new(())),
        "fetch",
    );
    let body = m
        .fetch_body(FetchBodyRequest {
            account_id: mallory,
            mailbox_id: alice_inbox,
            uids: vec![uid_range(1, 1)],
            offset: 0,
            length: 0,
            headers_only: false,
        })
        .await;
    not_found(body.map(|_| tonic::Response::new(())), "fetch body");
    not_found(
        m.store_flags(add_deleted(mallory, alice_inbox, all.clone())).await.map(|_| tonic::Response::new(())),
        "store",
    );
    not_found(
        m.expunge(ExpungeRequest { account_id: mallory, mailbox_id: alice_inbox, uids: vec![] })
            .await
            .map(|_| tonic::Response::new(())),
        "expunge",
    );
    not_found(
        m.copy_messages(CopyMessagesRequest {
            account_id: mallory,
            source_mailbox_id: alice_inbox,
            uids: all.clone(),
            destination: "INBOX".into(),
            r#move: true,
        })
        .await
        .map(|_| tonic::Response::new(())),
        "move out",
    );
    not_found(
        m.search(SearchRequest { account_id: mallory, mailbox_id: alice_inbox, ..Default::default() })
            .await
            .map(|_| tonic::Response::new(())),
        "search",
    );
    // Mallory's own mailbox as the source, Alice's INBOX as a name: names are per account.
    let mallory_inbox = f.select(mallory, "INBOX").await.mailbox.unwrap().id;
    let m = &mut f.mailstore;
    let copied = m
        .copy_messages(CopyMessagesRequest {
            account_id: alice,
            source_mailbox_id: mallory_inbox,
            uids: all.clone(),
            destination: "INBOX".into(),
            r#move: false,
        })
        .await;
    not_found(copied.map(|_| tonic::Response::new(())), "copy from another account's mailbox");
    let listed = m.list_mailboxes(ListMailboxesRequest { account_id: mallory }).await.unwrap().into_inner().mailboxes;
    assert!(listed.iter().all(|mb| mb.id != alice_inbox), "listing shows only one's own mailboxes");
    let quota = m.get_quota(GetQuotaRequest { account_id: mallory }).await.unwrap().into_inner();
    assert_eq!(quota.messages_used, 0);

    let after = f.select(alice, "INBOX").await;
    assert_eq!(after, before, "nothing of Alice's changed");
}

async fn bad_input_is_refused_and_leaves_nothing_behind(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    f.deliver("q-0", "alice@example.org", &message("keep", 100)).await.unwrap();
    let before = f.select(alice, "INBOX").await;
    let mailbox_id = before.mailbox.as_ref().unwrap().id;

    let expect = |result: Result<(), tonic::Status>, code: Code, what: &str| {
        let status = result.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status}");
        assert!(!status.message().is_empty(), "{what} says why");
    };

    for address in ["", "alice", "a b@example.org", "alice@@example.org", "alice@exa mple.org"] {
        let result =
            f.mailstore.resolve_recipient(ResolveRecipientRequest { address: address.into(), size_hint: 0 }).await;
        expect(discard(result), Code::InvalidArgument, &format!("resolve {address:?}"));
        expect(
            discard(f.deliver("q-bad", address, &message("x", 10)).await),
            Code::InvalidArgument,
            &format!("deliver to {address:?}"),
        );
        let account = f
            .admin
            .upsert_account(UpsertAccountRequest {
                address: address.into(),
                password: "pw".into(),
                ..Default::default()
            })
            .await;
        expect(discard(account), Code::InvalidArgument, &format!("account {address:?}"));
    }
    expect(
        discard(f.admin.upsert_domain(UpsertDomainRequest { name: "bad_domain!".into(), ..Default::default() }).await),
        Code::InvalidArgument,
        "domain",
    );
    let no_password =
        f.admin.upsert_account(UpsertAccountRequest { address: "new@example.org".into(), ..Default::default() }).await;
    expect(discard(no_password), Code::InvalidArgument, "new account without password");
    let foreign = f
        .admin
        .upsert_account(UpsertAccountRequest {
            address: "x@unknown.example".into(),
            password: "pw".into(),
            ..Default::default()
        })
        .await;
    expect(discard(foreign), Code::NotFound, "account in an unknown domain");

    expect(discard(f.deliver("q-empty", "alice@example.org", b"").await), Code::InvalidArgument, "empty body");
    let huge = vec![b'x'; TEST_MAX_MESSAGE as usize + 1];
    expect(discard(f.deliver("q-huge", "alice@example.org", &huge).await), Code::InvalidArgument, "oversized body");
    expect(discard(f.deliver("", "alice@example.org", &message("x", 10)).await), Code::InvalidArgument, "no queue id");
    expect(
        discard(f.deliver("q-nobody", "nobody@example.org", &message("x", 10)).await),
        Code::NotFound,
        "unknown recipient",
    );
    let headerless = f
        .mailstore
        .deliver(tokio_stream::iter(vec![DeliverChunk { part: Some(deliver_chunk::Part::Data(b"body".to_vec())) }]))
        .await;
    expect(discard(headerless), Code::InvalidArgument, "stream without header");

    for name in ["", "a//b", "trailing/", "star*", "pct%", "ctl\u{7}"] {
        let created = f
            .mailstore
            .create_mailbox(CreateMailboxRequest { account_id: alice, name: name.into(), special_use: String::new() })
            .await;
        expect(discard(created), Code::InvalidArgument, &format!("mailbox {name:?}"));
    }
    let special = f
        .mailstore
        .create_mailbox(CreateMailboxRequest { account_id: alice, name: "Spam".into(), special_use: "\\Spam".into() })
        .await;
    expect(discard(special), Code::InvalidArgument, "unknown special use");
    expect(
        discard(f.mailstore.delete_mailbox(DeleteMailboxRequest { account_id: alice, name: "INBOX".into() }).await),
        Code::FailedPrecondition,
        "delete INBOX",
    );
    expect(
        discard(f.mailstore.delete_mailbox(DeleteMailboxRequest { account_id: alice, name: "Nope".into() }).await),
        Code::NotFound,
        "delete missing",
    );
    expect(
        discard(
            f.mailstore
                .select_mailbox(SelectMailboxRequest { account_id: alice, name: "Nope".into(), ..Default::default() })
                .await,
        ),
        Code::NotFound,
        "select missing",
    );
    let dup = f
        .mailstore
        .create_mailbox(CreateMailboxRequest { account_id: alice, name: "Sent".into(), special_use: String::new() })
        .await;
    expect(discard(dup), Code::AlreadyExists, "create existing");

    let reversed = f
        .mailstore
        .fetch_messages(FetchMessagesRequest {
            account_id: alice,
            mailbox_id,
            uids: vec![uid_range(5, 2)],
            changed_since: 0,
        })
        .await;
    expect(discard(reversed), Code::InvalidArgument, "reversed UID range");
    let zero = f
        .mailstore
        .store_flags(StoreFlagsRequest {
            account_id: alice,
            mailbox_id,
            uids: vec![uid_range(0, 3)],
            operation: Operation::Add as i32,
            flags: flags(SystemFlag::Seen as u32, &[]),
            unchanged_since: 0,
        })
        .await;
    expect(discard(zero), Code::InvalidArgument, "UID 0");
    let bad_bits = f
        .mailstore
        .store_flags(StoreFlagsRequest {
            account_id: alice,
            mailbox_id,
            uids: vec![uid_range(1, 0)],
            operation: Operation::Add as i32,
            flags: flags(1 << 9, &[]),
            unchanged_since: 0,
        })
        .await;
    expect(discard(bad_bits), Code::InvalidArgument, "unknown flag bits");
    let no_uids = f
        .mailstore
        .store_flags(StoreFlagsRequest {
            account_id: alice,
            mailbox_id,
            uids: vec![],
            operation: Operation::Add as i32,
            flags: flags(SystemFlag::Deleted as u32, &[]),
            unchanged_since: 0,
        })
        .await;
    expect(discard(no_uids), Code::InvalidArgument, "a STORE without UIDs does not mean every message");
    expect(
        discard(f.copy(alice, mailbox_id, vec![], "Trash", true).await),
        Code::InvalidArgument,
        "a MOVE without UIDs",
    );
    let unknown_account = f.mailstore.list_mailboxes(ListMailboxesRequest { account_id: 987_654 }).await;
    expect(discard(unknown_account), Code::NotFound, "mailboxes of an unknown account");
    let bad_keyword = f
        .mailstore
        .store_flags(StoreFlagsRequest {
            account_id: alice,
            mailbox_id,
            uids: vec![uid_range(1, 0)],
            operation: Operation::Add as i32,
            flags: flags(0, &["two words"]),
            unchanged_since: 0,
        })
        .await;
    expect(discard(bad_keyword), Code::InvalidArgument, "bad keyword");
    let bad_op = f
        .mailstore
        .store_flags(StoreFlagsRequest {
            account_id: alice,
            mailbox_id,
            uids: vec![uid_range(1, 0)],
            operation: 42,
            flags: None,
            unchanged_since: 0,
        })
        .await;
    expect(discard(bad_op), Code::InvalidArgument, "unknown operation");
    let unknown_mailbox = f
        .mailstore
        .fetch_messages(FetchMessagesRequest { account_id: alice, mailbox_id: 987_654, uids: vec![], changed_since: 0 })
        .await;
    expect(discard(unknown_mailbox), Code::NotFound, "unknown mailbox id");
    let unknown_uid = f
        .mailstore
        .fetch_body(FetchBodyRequest {
            account_id: alice,
            mailbox_id,
            uids: vec![uid_range(99, 99)],
            offset: 0,
            length: 0,
            headers_only: false,
        })
        .await
        .expect("fetching a missing UID is not an error")
        .into_inner();
    assert!(unknown_uid.collect::<Vec<_>>().await.is_empty(), "a missing UID is skipped, as IMAP UID FETCH skips it");
    let unknown_account = f.mailstore.get_quota(GetQuotaRequest { account_id: 987_654 }).await;
    expect(discard(unknown_account), Code::NotFound, "unknown account");
    let copy_nowhere = f.copy(alice, mailbox_id, vec![uid_range(1, 0)], "Nope", false).await;
    expect(discard(copy_nowhere), Code::NotFound, "copy to a missing mailbox");
    let append_nowhere = f
        .mailstore
        .append(tokio_stream::iter(vec![
            AppendChunk {
                part: Some(append_chunk::Part::Header(AppendHeader {
                    account_id: alice,
                    mailbox: "Nope".into(),
                    ..Default::default()
                })),
            },
            AppendChunk { part: Some(append_chunk::Part::Data(message("x", 10))) },
        ]))
        .await;
    expect(discard(append_nowhere), Code::NotFound, "append to a missing mailbox");

    let after = f.select(alice, "INBOX").await;
    assert_eq!(after, before, "refused requests changed nothing");
    let quota = f.quota(alice).await;
    assert_eq!(quota.messages_used, 1);
    let names: Vec<String> = f
        .mailstore
        .list_mailboxes(ListMailboxesRequest { account_id: alice })
        .await
        .unwrap()
        .into_inner()
        .mailboxes
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, vec!["Drafts", "INBOX", "Junk", "Sent", "Trash"]);
}

async fn mailboxes_create_rename_delete_subscribe(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    let names = async |f: &mut Fixture| -> Vec<String> {
        f.mailstore
            .list_mailboxes(ListMailboxesRequest { account_id: alice })
            .await
            .unwrap()
            .into_inner()
            .mailboxes
            .into_iter()
            .map(|m| m.name)
            .collect()
    };
    let created = f
        .mailstore
        .create_mailbox(CreateMailboxRequest {
            account_id: alice,
            name: "Work/2026/Q4".into(),
            special_use: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.name, "Work/2026/Q4");
    assert_eq!(
        names(&mut f).await,
        vec!["Drafts", "INBOX", "Junk", "Sent", "Trash", "Work", "Work/2026", "Work/2026/Q4"],
        "parents are created"
    );

    let renamed = f
        .mailstore
        .rename_mailbox(RenameMailboxRequest { account_id: alice, from: "Work".into(), to: "Archive/Work".into() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (renamed.name.as_str(), renamed.id),
        ("Archive/Work", f.select(alice, "Archive/Work").await.mailbox.unwrap().id)
    );
    assert_eq!(
        names(&mut f).await,
        vec![
            "Archive",
            "Archive/Work",
            "Archive/Work/2026",
            "Archive/Work/2026/Q4",
            "Drafts",
            "INBOX",
            "Junk",
            "Sent",
            "Trash"
        ]
    );
    let into_child = f
        .mailstore
        .rename_mailbox(RenameMailboxRequest { account_id: alice, from: "Archive".into(), to: "Archive/Work/x".into() })
        .await;
    assert_eq!(into_child.unwrap_err().code(), Code::InvalidArgument);
    let onto_existing = f
        .mailstore
        .rename_mailbox(RenameMailboxRequest { account_id: alice, from: "Archive".into(), to: "Sent".into() })
        .await;
    assert_eq!(onto_existing.unwrap_err().code(), Code::AlreadyExists);

    // Renaming INBOX moves its messages and leaves it empty.
    for i in 0..2 {
        f.deliver(&format!("q-{i}"), "alice@example.org", &message("inbox", 100)).await.unwrap();
    }
    let old_inbox = f.select(alice, "INBOX").await.mailbox.unwrap();
    f.mailstore
        .rename_mailbox(RenameMailboxRequest { account_id: alice, from: "inbox".into(), to: "Old".into() })
        .await
        .unwrap();
    let inbox = f.select(alice, "INBOX").await;
    assert_eq!((inbox.uids.len(), inbox.mailbox.as_ref().unwrap().id), (0, old_inbox.id));
    assert!(inbox.mailbox.unwrap().uidnext >= 3, "INBOX keeps counting UIDs");
    assert_eq!(f.select(alice, "Old").await.uids, vec![1, 2]);
    let quota = f.quota(alice).await;
    assert_eq!(quota.messages_used, 2, "moving messages by rename does not change usage");

    f.mailstore
        .set_subscribed(SetSubscribedRequest { account_id: alice, name: "Old".into(), subscribed: false })
        .await
        .unwrap();
    let listed =
        f.mailstore.list_mailboxes(ListMailboxesRequest { account_id: alice }).await.unwrap().into_inner().mailboxes;
    let old = listed.iter().find(|m| m.name == "Old").unwrap();
    assert!(!old.subscribed);
    assert_eq!((old.messages, old.unseen), (2, 2));
    assert_eq!(listed.iter().find(|m| m.name == "Sent").unwrap().special_use, "Sent");

    f.mailstore.delete_mailbox(DeleteMailboxRequest { account_id: alice, name: "Old".into() }).await.unwrap();
    let quota = f.quota(alice).await;
    assert_eq!((quota.messages_used, quota.storage_used), (0, 0), "deleting a mailbox frees its usage");
    assert!(!names(&mut f).await.contains(&"Old".to_string()));
}

async fn copy_move_expunge_keep_usage_and_bodies_right(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    let body = message("copied", 300);
    let size = body.len() as u64;
    for i in 0..3 {
        f.deliver(&format!("q-{i}"), "alice@example.org", &body).await.unwrap();
    }
    let inbox = f.select(alice, "INBOX").await.mailbox.unwrap().id;
    f.mailstore
        .create_mailbox(CreateMailboxRequest { account_id: alice, name: "Keep".into(), special_use: String::new() })
        .await
        .unwrap();

    let copied = f.copy(alice, inbox, vec![uid_range(1, 2)], "Keep", false).await.unwrap();
    assert_eq!((copied.source_uids, copied.destination_uids), (vec![1, 2], vec![1, 2]));
    assert_eq!(copied.destination_uidvalidity, f.select(alice, "Keep").await.mailbox.unwrap().uidvalidity);
    let quota = f.quota(alice).await;
    assert_eq!((quota.messages_used, quota.storage_used), (5, 5 * size), "copies count against the quota");

    let moved = f.copy(alice, inbox, vec![uid_range(3, 3)], "Keep", true).await.unwrap();
    assert_eq!(moved.destination_uids, vec![3]);
    assert_eq!(f.select(alice, "INBOX").await.uids, vec![1, 2]);
    assert_eq!(f.select(alice, "Keep").await.uids, vec![1, 2, 3]);
    let quota = f.quota(alice).await;
    assert_eq!(quota.messages_used, 5, "a move does not change usage");

    // Copy refused by quota leaves everything as it was.
    f.admin
        .set_quota(SetQuotaRequest { address: "alice@example.org".into(), quota_storage: 0, quota_messages: 6 })
        .await
        .unwrap();
    let refused = f.copy(alice, inbox, vec![uid_range(1, 2)], "Keep", false).await;
    assert_eq!(refused.unwrap_err().code(), Code::ResourceExhausted);
    assert_eq!(f.select(alice, "Keep").await.uids, vec![1, 2, 3]);

    // Expunge only removes \Deleted messages, within the given UIDs.
    let keep = f.select(alice, "Keep").await.mailbox.unwrap().id;
    f.mailstore.store_flags(add_deleted(alice, keep, vec![uid_range(1, 0)])).await.unwrap();
    let partial = f
        .mailstore
        .expunge(ExpungeRequest { account_id: alice, mailbox_id: keep, uids: vec![uid_range(2, 2)] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(partial.expunged, vec![2]);
    let rest = f
        .mailstore
        .expunge(ExpungeRequest { account_id: alice, mailbox_id: keep, uids: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.expunged, vec![1, 3]);
    let quota = f.quota(alice).await;
    assert_eq!((quota.messages_used, quota.storage_used), (2, 2 * size));

    // The two INBOX messages share one stored body with the expunged ones: it must survive.
    let text = f
        .mailstore
        .fetch_body(FetchBodyRequest {
            account_id: alice,
            mailbox_id: inbox,
            uids: vec![uid_range(1, 1)],
            offset: 0,
            length: 0,
            headers_only: false,
        })
        .await
        .unwrap()
        .into_inner();
    let chunks: Vec<BodyChunk> = text.map(|c| c.unwrap()).collect().await;
    assert_eq!(chunks.concat_data(), body);
}

trait ConcatData {
    fn concat_data(&self) -> Vec<u8>;
}

impl ConcatData for Vec<BodyChunk> {
    fn concat_data(&self) -> Vec<u8> {
        self.iter().flat_map(|c| c.data.clone()).collect()
    }
}

async fn search_filters_on_flags_dates_sizes_and_uids(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    let append = async |f: &mut Fixture, size: usize, system: u32, keywords: &[&str], date: i64| {
        f.mailstore
            .append(tokio_stream::iter(vec![
                AppendChunk {
                    part: Some(append_chunk::Part::Header(AppendHeader {
                        account_id: alice,
                        mailbox: "INBOX".into(),
                        flags: flags(system, keywords),
                        internal_date: date,
                        size: size as u64,
                    })),
                },
                AppendChunk { part: Some(append_chunk::Part::Data(message("s", size))) },
            ]))
            .await
            .unwrap()
            .into_inner()
            .uid
    };
    let day = 86_400;
    let base = 1_780_000_000;
    assert_eq!(append(&mut f, 200, SystemFlag::Seen as u32, &["$Work"], base).await, 1);
    assert_eq!(append(&mut f, 5_000, 0, &[], base + day).await, 2);
    assert_eq!(append(&mut f, 200, SystemFlag::Seen as u32 | SystemFlag::Flagged as u32, &[], base + 2 * day).await, 3);
    let mailbox_id = f.select(alice, "INBOX").await.mailbox.unwrap().id;
    let mut search = async |request: SearchRequest| {
        f.mailstore.search(SearchRequest { account_id: alice, mailbox_id, ..request }).await.unwrap().into_inner().uids
    };
    assert_eq!(
        search(SearchRequest { with_flags: flags(SystemFlag::Seen as u32, &[]), ..Default::default() }).await,
        vec![1, 3]
    );
    assert_eq!(
        search(SearchRequest { without_flags: flags(SystemFlag::Seen as u32, &[]), ..Default::default() }).await,
        vec![2]
    );
    assert_eq!(search(SearchRequest { with_flags: flags(0, &["$work"]), ..Default::default() }).await, vec![1]);
    assert_eq!(search(SearchRequest { larger: 1_000, ..Default::default() }).await, vec![2]);
    assert_eq!(search(SearchRequest { smaller: 1_000, ..Default::default() }).await, vec![1, 3]);
    assert_eq!(search(SearchRequest { since: base + day, ..Default::default() }).await, vec![2, 3]);
    assert_eq!(search(SearchRequest { before: base + day, ..Default::default() }).await, vec![1]);
    assert_eq!(
        search(SearchRequest {
            uids: vec![uid_range(2, 0)],
            with_flags: flags(SystemFlag::Seen as u32, &[]),
            ..Default::default()
        })
        .await,
        vec![3]
    );
    assert_eq!(search(SearchRequest::default()).await, vec![1, 2, 3]);
}

async fn bodies_stream_back_whole_and_in_ranges(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    let big = message("big", 300 * 1024);
    let delivered = f.deliver("q-big", "alice@example.org", &big).await.unwrap();
    let meta = f
        .mailstore
        .fetch_messages(FetchMessagesRequest {
            account_id: alice,
            mailbox_id: delivered.mailbox_id,
            uids: vec![uid_range(1, 1)],
            changed_since: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .messages;
    let header_end = big.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert_eq!((meta[0].size, meta[0].header_size), (big.len() as u64, header_end as u64));

    let mailbox_id = delivered.mailbox_id;
    let mut fetch = async |offset: u64, length: u64| -> Vec<u8> {
        f.bodies(alice, mailbox_id, vec![uid_range(1, 1)], offset, length).await.concat_data()
    };
    assert_eq!(fetch(0, 0).await, big, "the whole body comes back in chunks");
    assert_eq!(fetch(0, header_end as u64).await, big[..header_end].to_vec());
    assert_eq!(fetch(100, 10).await, big[100..110].to_vec());
    assert_eq!(fetch(big.len() as u64 - 5, 100).await, big[big.len() - 5..].to_vec(), "a range past the end is cut");
    assert!(fetch(big.len() as u64 + 10, 0).await.is_empty());

    // Several messages in one call: consecutive chunks per message, the first with its length.
    let small = message("small", 100);
    f.deliver("q-small", "alice@example.org", &small).await.unwrap();
    let chunks = f.bodies(alice, mailbox_id, vec![uid_range(1, 0)], 0, 0).await;
    let first_of = |uid: u32| chunks.iter().position(|c| c.uid == uid).unwrap();
    assert!(chunks.windows(2).all(|w| w[0].uid <= w[1].uid), "messages come one after the other in UID order");
    assert_eq!(chunks[first_of(1)].length, big.len() as u64);
    assert_eq!(chunks[first_of(2)].length, small.len() as u64);
    // Each message's first chunk carries its metadata, read with the body; no other chunk does.
    for uid in [1, 2] {
        let meta = chunks[first_of(uid)].meta.clone().expect("metadata with the first chunk");
        assert_eq!((meta.uid, meta.size), (uid, if uid == 1 { big.len() } else { small.len() } as u64));
        assert!(meta.modseq > 0 && meta.internal_date > 0 && meta.header_size > 0, "{meta:?}");
    }
    assert_eq!(chunks.iter().filter(|c| c.meta.is_some()).count(), 2, "one metadata per message");
    let second: Vec<u8> = chunks.iter().filter(|c| c.uid == 2).flat_map(|c| c.data.clone()).collect();
    assert_eq!(second, small);
    let past_end = f.bodies(alice, mailbox_id, vec![uid_range(2, 2)], 10_000, 0).await;
    assert_eq!(
        past_end.iter().map(|c| (c.uid, c.data.len(), c.length)).collect::<Vec<_>>(),
        [(2, 0, 0)],
        "an empty range still names its message"
    );
    assert_eq!(past_end[0].meta.as_ref().map(|m| (m.uid, m.size)), Some((2, small.len() as u64)));

    // Many messages, read a batch at a time: each whole, in order, once; or only their headers.
    let mut sent = vec![big.clone(), small.clone()];
    for i in 0..70 {
        let body = message(&format!("many {i}"), 200 + i);
        f.deliver(&format!("q-many-{i}"), "alice@example.org", &body).await.unwrap();
        sent.push(body);
    }
    let whole = |chunks: &[BodyChunk]| -> Vec<Vec<u8>> {
        let mut bodies: Vec<Vec<u8>> = Vec::new();
        for chunk in chunks {
            if chunk.length > 0 || chunk.data.is_empty() {
                bodies.push(Vec::new());
            }
            bodies.last_mut().unwrap().extend_from_slice(&chunk.data);
        }
        bodies
    };
    let all = f.bodies(alice, mailbox_id, vec![uid_range(1, 0)], 0, 0).await;
    assert_eq!(whole(&all), sent);
    let request = FetchBodyRequest {
        account_id: alice,
        mailbox_id,
        uids: vec![uid_range(2, 0)],
        headers_only: true,
        ..Default::default()
    };
    let headers: Vec<BodyChunk> =
        f.mailstore.fetch_body(request).await.unwrap().into_inner().map(|c| c.unwrap()).collect().await;
    let expected: Vec<Vec<u8>> = sent[1..]
        .iter()
        .map(|body| body[..body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4].to_vec())
        .collect();
    assert_eq!(whole(&headers), expected, "each message's header block, blank line included");
    // One message (read without looking up its size first): whole, its header, a range.
    for (headers_only, offset, length, want) in
        [(false, 0, 0, sent[1].clone()), (true, 0, 0, expected[0].clone()), (false, 3, 5, sent[1][3..8].to_vec())]
    {
        let request = FetchBodyRequest {
            account_id: alice,
            mailbox_id,
            uids: vec![uid_range(2, 2)],
            headers_only,
            offset,
            length,
        };
        let one: Vec<BodyChunk> =
            f.mailstore.fetch_body(request).await.unwrap().into_inner().map(|c| c.unwrap()).collect().await;
        assert_eq!(whole(&one), [want], "message 2, headers only {headers_only}, from {offset} for {length}");
    }
}

async fn every_change_publishes_a_mailbox_event(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    let mut events = f.bus.subscribe(&format!("events.{alice}.*")).await.unwrap();
    let mut next = async || -> MailboxEvent {
        let event = tokio::time::timeout(std::time::Duration::from_secs(5), events.next())
            .await
            .expect("event in time")
            .expect("stream open");
        MailboxEvent::decode(event.payload).expect("event decodes")
    };
    let delivered = f.deliver("q-1", "alice@example.org", &message("e", 100)).await.unwrap();
    let added = next().await;
    assert_eq!(
        (added.account_id, added.mailbox_id, added.uidvalidity),
        (alice, delivered.mailbox_id, delivered.uidvalidity)
    );
    assert!(matches!(added.change, Some(Change::Added(ref a)) if a.uids == vec![1] && a.uidnext == 2));

    f.mailstore
        .store_flags(StoreFlagsRequest {
            account_id: alice,
            mailbox_id: delivered.mailbox_id,
            uids: vec![uid_range(1, 0)],
            operation: Operation::Add as i32,
            flags: flags(SystemFlag::Deleted as u32, &["$x"]),
            unchanged_since: 0,
        })
        .await
        .unwrap();
    let flagged = next().await;
    match flagged.change {
        Some(Change::Flags(ref changed)) => {
            assert_eq!(
                (changed.uids.clone(), changed.system_flags.clone(), changed.keywords.clone()),
                (vec![1], vec![SystemFlag::Deleted as u32], vec!["$x".to_string()])
            );
            assert_eq!(changed.modseqs, vec![flagged.highest_modseq]);
        }
        other => panic!("expected a flags event, got {other:?}"),
    }
    f.mailstore
        .expunge(ExpungeRequest { account_id: alice, mailbox_id: delivered.mailbox_id, uids: vec![] })
        .await
        .unwrap();
    assert!(matches!(next().await.change, Some(Change::Expunged(ref e)) if e.uids == vec![1]));
    f.mailstore
        .create_mailbox(CreateMailboxRequest { account_id: alice, name: "New".into(), special_use: String::new() })
        .await
        .unwrap();
    assert!(matches!(next().await.change, Some(Change::Created(ref c)) if c.name == "New"));
    f.mailstore
        .rename_mailbox(RenameMailboxRequest { account_id: alice, from: "New".into(), to: "Newer".into() })
        .await
        .unwrap();
    assert!(matches!(next().await.change, Some(Change::Renamed(ref r)) if r.from == "New" && r.to == "Newer"));
    f.mailstore.delete_mailbox(DeleteMailboxRequest { account_id: alice, name: "Newer".into() }).await.unwrap();
    assert!(matches!(next().await.change, Some(Change::Deleted(ref d)) if d.name == "Newer"));
}

async fn deleting_an_account_suspends_by_default_and_purges_on_request(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    f.deliver("q-1", "alice@example.org", &message("keep me", 100)).await.unwrap();
    let kept = f
        .admin
        .delete_account(DeleteAccountRequest { address: "alice@example.org".into(), purge: false })
        .await
        .unwrap()
        .into_inner();
    assert!(!kept.purged);
    let account =
        f.admin.get_account(GetAccountRequest { address: "alice@example.org".into() }).await.unwrap().into_inner();
    assert!(account.suspended);
    assert_eq!(f.select(alice, "INBOX").await.uids, vec![1], "mail is kept");

    f.admin.delete_account(DeleteAccountRequest { address: "alice@example.org".into(), purge: true }).await.unwrap();
    let gone = f.admin.get_account(GetAccountRequest { address: "alice@example.org".into() }).await;
    assert_eq!(gone.unwrap_err().code(), Code::NotFound);
    let missing =
        f.admin.delete_account(DeleteAccountRequest { address: "alice@example.org".into(), purge: false }).await;
    assert_eq!(missing.unwrap_err().code(), Code::NotFound);
    let quota = f
        .admin
        .set_quota(SetQuotaRequest { address: "ghost@example.org".into(), quota_storage: 1, quota_messages: 1 })
        .await;
    assert_eq!(quota.unwrap_err().code(), Code::NotFound);
}

async fn renames_match_names_exactly_and_refuse_clashes(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    for name in ["Work/a", "work/b", "A/x", "B/x"] {
        f.mailstore
            .create_mailbox(CreateMailboxRequest { account_id: alice, name: name.into(), special_use: String::new() })
            .await
            .unwrap();
    }
    let names = async |f: &mut Fixture| -> Vec<String> {
        let listed = f.mailstore.list_mailboxes(ListMailboxesRequest { account_id: alice }).await.unwrap();
        listed.into_inner().mailboxes.into_iter().map(|m| m.name).collect()
    };
    f.mailstore
        .rename_mailbox(RenameMailboxRequest { account_id: alice, from: "Work".into(), to: "Done".into() })
        .await
        .unwrap();
    let after = names(&mut f).await;
    assert!(
        after.contains(&"Done/a".to_string()) && after.contains(&"work/b".to_string()),
        "only Work's children move: {after:?}"
    );

    // B's child outlived B: renaming A to B would put A/x onto B/x.
    f.mailstore.delete_mailbox(DeleteMailboxRequest { account_id: alice, name: "B".into() }).await.unwrap();
    let before = names(&mut f).await;
    let clash =
        f.mailstore.rename_mailbox(RenameMailboxRequest { account_id: alice, from: "A".into(), to: "B".into() }).await;
    assert_eq!(clash.unwrap_err().code(), Code::AlreadyExists);
    assert_eq!(names(&mut f).await, before, "a refused rename changes nothing");

    // Renaming INBOX moves its mail: a session on INBOX sees it expunged.
    let delivered = f.deliver("q-1", "alice@example.org", &message("moving", 100)).await.unwrap();
    let mut events = f.bus.subscribe(&format!("events.{alice}.{}", delivered.mailbox_id)).await.unwrap();
    f.mailstore
        .rename_mailbox(RenameMailboxRequest { account_id: alice, from: "INBOX".into(), to: "Old".into() })
        .await
        .unwrap();
    let event = tokio::time::timeout(std::time::Duration::from_secs(5), events.next()).await.unwrap().unwrap();
    let event = MailboxEvent::decode(event.payload).unwrap();
    assert!(matches!(event.change, Some(Change::Expunged(ref e)) if e.uids == vec![delivered.uid]), "{event:?}");
    assert!(f.select(alice, "INBOX").await.uids.is_empty());
    assert_eq!(f.select(alice, "Old").await.uids.len(), 1);
}

/// Checks that the counters ListMailboxes reports for each mailbox of `account_id` are what
/// its messages add up to.
async fn assert_counters_match(f: &mut Fixture, account_id: i64, step: &str) {
    let listed = f.mailstore.list_mailboxes(ListMailboxesRequest { account_id }).await.unwrap().into_inner().mailboxes;
    for info in listed {
        let selected = f.select(account_id, &info.name).await;
        let meta = f
            .mailstore
            .fetch_messages(FetchMessagesRequest {
                account_id,
                mailbox_id: info.id,
                uids: vec![uid_range(1, 0)],
                changed_since: 0,
            })
            .await
            .unwrap()
            .into_inner()
            .messages;
        let unseen = selected.flags.iter().filter(|f| *f & SystemFlag::Seen as u32 == 0).count() as u32;
        let deleted = selected.flags.iter().filter(|f| *f & SystemFlag::Deleted as u32 != 0).count() as u32;
        let size: u64 = meta.iter().map(|m| m.size).sum();
        assert_eq!(
            (info.messages, info.unseen, info.deleted, info.size),
            (selected.uids.len() as u32, unseen, deleted, size),
            "{step}: counters of {} (messages, unseen, deleted, size)",
            info.name
        );
    }
}

async fn mailbox_counters_follow_every_change(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    for i in 0..4 {
        f.deliver(&format!("q-{i}"), "alice@example.org", &message(&format!("m{i}"), 200 + i * 50)).await.unwrap();
    }
    // A subaddress is resolved by the general path, which writes with statements of its own.
    f.deliver("q-sub", "alice+lists@example.org", &message("sub", 180)).await.unwrap();
    assert_counters_match(&mut f, alice, "after delivery").await;
    let inbox = f.select(alice, "INBOX").await.mailbox.unwrap().id;
    let store = |uids: Vec<UidRange>, operation: Operation, system: u32| StoreFlagsRequest {
        account_id: alice,
        mailbox_id: inbox,
        uids,
        operation: operation as i32,
        flags: flags(system, &["$Label"]),
        unchanged_since: 0,
    };
    let seen = SystemFlag::Seen as u32;
    let deleted = SystemFlag::Deleted as u32;
    f.mailstore.store_flags(store(vec![uid_range(1, 2)], Operation::Add, seen)).await.unwrap();
    f.mailstore.store_flags(store(vec![uid_range(2, 3)], Operation::Add, deleted)).await.unwrap();
    f.mailstore.store_flags(store(vec![uid_range(1, 1)], Operation::Remove, seen)).await.unwrap();
    f.mailstore.store_flags(store(vec![uid_range(4, 4)], Operation::Replace, seen | deleted)).await.unwrap();
    assert_counters_match(&mut f, alice, "after STORE").await;

    f.mailstore
        .create_mailbox(CreateMailboxRequest { account_id: alice, name: "Keep".into(), special_use: String::new() })
        .await
        .unwrap();
    f.copy(alice, inbox, vec![uid_range(1, 2)], "Keep", false).await.unwrap();
    f.copy(alice, inbox, vec![uid_range(3, 3)], "Keep", true).await.unwrap();
    assert_counters_match(&mut f, alice, "after COPY and MOVE").await;
    let body = message("appended", 321);
    let header = AppendHeader {
        account_id: alice,
        mailbox: "Keep".into(),
        flags: flags(seen | deleted, &[]),
        internal_date: 0,
        size: body.len() as u64,
    };
    let appended = [
        AppendChunk { part: Some(append_chunk::Part::Header(header)) },
        AppendChunk { part: Some(append_chunk::Part::Data(body)) },
    ];
    f.mailstore.append(futures::stream::iter(appended)).await.unwrap();
    assert_counters_match(&mut f, alice, "after APPEND").await;

    f.mailstore.expunge(ExpungeRequest { account_id: alice, mailbox_id: inbox, uids: vec![] }).await.unwrap();
    let nothing = f.mailstore.expunge(ExpungeRequest { account_id: alice, mailbox_id: inbox, uids: vec![] }).await;
    assert!(nothing.unwrap().into_inner().expunged.is_empty(), "nothing left to expunge");
    assert_counters_match(&mut f, alice, "after EXPUNGE").await;
    f.mailstore.delete_mailbox(DeleteMailboxRequest { account_id: alice, name: "Keep".into() }).await.unwrap();
    assert_counters_match(&mut f, alice, "after DELETE").await;
}

/// The account alice@example.org with `count` messages delivered to its INBOX: its id and the
/// INBOX's.
async fn alice_with_messages(f: &mut Fixture, count: usize) -> (i64, i64) {
    let alice = f.account("alice@example.org", 0, 0).await;
    for i in 0..count {
        f.deliver(&format!("q-{i}"), "alice@example.org", &message(&format!("m{i}"), 300)).await.unwrap();
    }
    (alice, f.select(alice, "INBOX").await.mailbox.unwrap().id)
}

/// What IMAP clients sharing a mailbox do at once — STORE, STORE \Deleted then EXPUNGE, APPEND —
/// on one account: every call succeeds (no deadlock between their locks) and the counters add up.
async fn writers_racing_on_one_mailbox_never_deadlock(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let (alice, inbox) = alice_with_messages(&mut f, 40).await;
    let writers = (0..8u32).map(|writer| {
        let mut client = f.mailstore.clone();
        tokio::spawn(async move {
            for round in 0..6u32 {
                let uid = 1 + (writer * 7 + round * 3) % 40;
                let store = |system: u32| StoreFlagsRequest {
                    account_id: alice,
                    mailbox_id: inbox,
                    uids: vec![uid_range(uid, uid + 4)],
                    operation: Operation::Add as i32,
                    flags: flags(system, &[]),
                    unchanged_since: 0,
                };
                client.store_flags(store(SystemFlag::Flagged as u32)).await.map_err(|e| format!("STORE: {e}"))?;
                client.store_flags(store(SystemFlag::Deleted as u32)).await.map_err(|e| format!("STORE: {e}"))?;
                client
                    .expunge(ExpungeRequest { account_id: alice, mailbox_id: inbox, uids: vec![] })
                    .await
                    .map_err(|e| format!("EXPUNGE: {e}"))?;
                let body = message(&format!("w{writer} r{round}"), 300);
                let header = AppendHeader {
                    account_id: alice,
                    mailbox: "INBOX".into(),
                    flags: None,
                    internal_date: 0,
                    size: body.len() as u64,
                };
                let chunks = [
                    AppendChunk { part: Some(append_chunk::Part::Header(header)) },
                    AppendChunk { part: Some(append_chunk::Part::Data(body)) },
                ];
                client.append(futures::stream::iter(chunks)).await.map_err(|e| format!("APPEND: {e}"))?;
            }
            Ok::<(), String>(())
        })
    });
    for result in futures::future::join_all(writers).await {
        result.expect("task").expect("every call succeeds");
    }
    assert_counters_match(&mut f, alice, "after the race").await;
}

/// Sessions changing flags of the same messages at once: every change takes effect (none is
/// lost to another's write of the flags it read), HIGHESTMODSEQ is the last change's, and
/// undeleting races expunging without a message lost or counted twice.
async fn racing_flag_changes_to_the_same_messages_all_take_effect(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let (alice, inbox) = alice_with_messages(&mut f, 30).await;
    let system = [SystemFlag::Seen, SystemFlag::Flagged, SystemFlag::Answered, SystemFlag::Draft];
    let writers = (0..8usize).map(|writer| {
        let mut client = f.mailstore.clone();
        let flag = system[writer % system.len()] as u32;
        tokio::spawn(async move {
            // Overlapping ranges that together cover every message, so each message is changed
            // by every writer, often at the same moment.
            for round in 0..3u32 {
                let first = 1 + (writer as u32 * 3 + round * 11) % 30;
                for uids in [uid_range(first, 30), uid_range(1, first)] {
                    let request = StoreFlagsRequest {
                        account_id: alice,
                        mailbox_id: inbox,
                        uids: vec![uids],
                        operation: Operation::Add as i32,
                        flags: flags(flag, &[&format!("$w{writer}")]),
                        unchanged_since: 0,
                    };
                    client.store_flags(request).await.map_err(|e| format!("STORE: {e}"))?;
                }
            }
            Ok::<(), String>(())
        })
    });
    for result in futures::future::join_all(writers).await {
        result.expect("task").expect("every STORE succeeds");
    }
    let snapshot = f.select(alice, "INBOX").await;
    let all_system = system.iter().fold(0, |all, flag| all | *flag as u32);
    let messages = f.messages(alice, inbox).await;
    assert_eq!(messages.len(), 30);
    for meta in &messages {
        let flags = meta.flags.clone().unwrap();
        assert_eq!(flags.system, all_system, "message {}: a system flag was lost", meta.uid);
        let keywords: BTreeSet<String> = flags.keywords.into_iter().collect();
        let expected: BTreeSet<String> = (0..8).map(|w| format!("$w{w}")).collect();
        assert_eq!(keywords, expected, "message {}: a keyword was lost", meta.uid);
    }
    assert_eq!(
        snapshot.mailbox.unwrap().highest_modseq,
        messages.iter().map(|m| m.modseq).max().unwrap(),
        "HIGHESTMODSEQ is the last change's"
    );

    // Half the sessions flag messages \Deleted and expunge, the other half take the flag off
    // again: whatever the order, a message is either gone (and no longer counted) or still
    // there, and usage matches what is left.
    let racers = (0..6u32).map(|racer| {
        let mut client = f.mailstore.clone();
        tokio::spawn(async move {
            for round in 0..4u32 {
                let first = 1 + (racer * 5 + round * 7) % 30;
                let operation = if racer % 2 == 0 { Operation::Add } else { Operation::Remove };
                let request = StoreFlagsRequest {
                    account_id: alice,
                    mailbox_id: inbox,
                    uids: vec![uid_range(first, (first + 6).min(30))],
                    operation: operation as i32,
                    flags: flags(SystemFlag::Deleted as u32, &[]),
                    unchanged_since: 0,
                };
                client.store_flags(request).await.map_err(|e| format!("STORE: {e}"))?;
                let expunge = ExpungeRequest { account_id: alice, mailbox_id: inbox, uids: vec![] };
                client.expunge(expunge).await.map_err(|e| format!("EXPUNGE: {e}"))?;
            }
            Ok::<(), String>(())
        })
    });
    for result in futures::future::join_all(racers).await {
        result.expect("task").expect("every call succeeds");
    }
    assert_counters_match(&mut f, alice, "after undeleting raced expunging").await;
    let left = f.messages(alice, inbox).await;
    let usage = f.mailstore.get_quota(GetQuotaRequest { account_id: alice }).await.unwrap().into_inner();
    assert_eq!(
        (usage.messages_used, usage.storage_used),
        (left.len() as u64, left.iter().map(|m| m.size).sum::<u64>()),
        "the account's usage is what is left"
    );
}

/// SELECT of a snapshot the caller holds: unchanged while nothing changed, then only what
/// changed since; another mailbox's snapshot gets the whole mailbox.
async fn a_known_snapshot_is_reported_unchanged_until_the_mailbox_changes(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    f.deliver("q-1", "alice@example.org", &message("one", 200)).await.unwrap();
    let select = |known: &SelectMailboxResponse| {
        let mailbox = known.mailbox.clone().unwrap();
        SelectMailboxRequest {
            account_id: alice,
            name: "INBOX".into(),
            known_mailbox_id: mailbox.id,
            known_modseq: mailbox.highest_modseq,
            with_sizes: false,
        }
    };
    let full = f.select(alice, "INBOX").await;
    let same = f.mailstore.select_mailbox(select(&full)).await.unwrap().into_inner();
    assert!(same.unchanged && same.uids.is_empty(), "only the mailbox comes back: {same:?}");
    assert_eq!(same.mailbox.as_ref().map(|m| m.messages), Some(1), "with its counters");

    let inbox = full.mailbox.as_ref().unwrap().id;
    let mut known = full;
    for what in ["a delivery", "a flag", "an expunge"] {
        match what {
            "a delivery" => drop(f.deliver("q-2", "alice@example.org", &message("two", 200)).await.unwrap()),
            "a flag" => {
                let request = add_deleted(alice, inbox, vec![uid_range(1, 1)]);
                f.mailstore.store_flags(request).await.unwrap();
            }
            _ => {
                let request = ExpungeRequest { account_id: alice, mailbox_id: inbox, uids: vec![] };
                f.mailstore.expunge(request).await.unwrap();
            }
        }
        let reply = f.mailstore.select_mailbox(select(&known)).await.unwrap().into_inner();
        assert!(!reply.unchanged && reply.delta, "after {what}, what changed since: {reply:?}");
        let (changed, expunged) = match what {
            "a delivery" => (vec![2], vec![]),
            "a flag" => (vec![1], vec![]),
            _ => (vec![], vec![1]),
        };
        assert_eq!((reply.uids.clone(), reply.expunged.clone()), (changed, expunged), "after {what}");
        if what == "a flag" {
            assert_eq!(reply.flags, [SystemFlag::Deleted as u32]);
        }
        known = reply;
    }
    // Changed in another order than their UIDs: the delta still comes in UID order.
    f.deliver("q-3", "alice@example.org", &message("three", 200)).await.unwrap();
    f.deliver("q-4", "alice@example.org", &message("four", 200)).await.unwrap();
    let seen = StoreFlagsRequest {
        account_id: alice,
        mailbox_id: inbox,
        uids: vec![uid_range(2, 2)],
        operation: Operation::Add as i32,
        flags: flags(SystemFlag::Seen as u32, &[]),
        unchanged_since: 0,
    };
    f.mailstore.store_flags(seen).await.unwrap();
    let reply = f.mailstore.select_mailbox(select(&known)).await.unwrap().into_inner();
    assert!(reply.delta, "{reply:?}");
    assert_eq!(reply.uids, [2, 3, 4]);
    assert!(reply.modseqs[0] > reply.modseqs[2], "UID 2 changed last: {reply:?}");
    let current = f.select(alice, "INBOX").await;
    assert_eq!(current.uids, [2, 3, 4]);
    let mut other = select(&known);
    other.known_mailbox_id += 1000;
    assert!(!f.mailstore.select_mailbox(other).await.unwrap().into_inner().unchanged, "another mailbox's snapshot");
}

/// QRESYNC's VANISHED (EARLIER): the UIDs expunged after a MODSEQ the client saw, within the
/// UIDs it names, whatever happened since; only for the account's own mailboxes.
async fn expunged_uids_are_told_since_any_modseq(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let (alice, inbox) = alice_with_messages(&mut f, 6).await;
    let at_start = f.select(alice, "INBOX").await.mailbox.unwrap().highest_modseq;
    let expunged_since = async |f: &mut Fixture, modseq: u64, uids: Vec<UidRange>| {
        let request = ExpungedSinceRequest { account_id: alice, mailbox_id: inbox, modseq, uids };
        f.mailstore.expunged_since(request).await.map(|answer| answer.into_inner().uids)
    };
    let expunge = async |f: &mut Fixture, uids: Vec<UidRange>| {
        let deleted = flags(SystemFlag::Deleted as u32, &[]);
        let store = StoreFlagsRequest {
            account_id: alice,
            mailbox_id: inbox,
            uids: uids.clone(),
            operation: Operation::Add as i32,
            flags: deleted,
            unchanged_since: 0,
        };
        f.mailstore.store_flags(store).await.unwrap();
        f.mailstore.expunge(ExpungeRequest { account_id: alice, mailbox_id: inbox, uids }).await.unwrap();
    };
    assert_eq!(expunged_since(&mut f, at_start, vec![]).await.unwrap(), Vec::<u32>::new(), "nothing yet");
    expunge(&mut f, vec![uid_range(2, 2), uid_range(4, 4)]).await;
    let between = f.select(alice, "INBOX").await.mailbox.unwrap().highest_modseq;
    expunge(&mut f, vec![uid_range(6, 6)]).await;

    assert_eq!(expunged_since(&mut f, at_start, vec![]).await.unwrap(), [2, 4, 6]);
    assert_eq!(expunged_since(&mut f, between, vec![]).await.unwrap(), [6], "only after the MODSEQ");
    assert_eq!(expunged_since(&mut f, 0, vec![uid_range(3, 5)]).await.unwrap(), [4], "only the UIDs asked");
    let latest = f.select(alice, "INBOX").await.mailbox.unwrap().highest_modseq;
    assert_eq!(expunged_since(&mut f, latest, vec![]).await.unwrap(), Vec::<u32>::new());

    let bob = f.account("bob@example.org", 0, 0).await;
    let foreign = ExpungedSinceRequest { account_id: bob, mailbox_id: inbox, modseq: 0, uids: vec![] };
    let refused = f.mailstore.expunged_since(foreign).await.unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "another account's mailbox: {refused:?}");
    let bad = ExpungedSinceRequest { account_id: alice, mailbox_id: inbox, modseq: 0, uids: vec![uid_range(0, 3)] };
    assert_eq!(f.mailstore.expunged_since(bad).await.unwrap_err().code(), Code::InvalidArgument, "UID 0");
}

/// POP3's UPDATE state removes the messages its client marked, in one call: those listed go
/// whether or not they carry \Deleted, nothing else does (not even a \Deleted message outside
/// the list), and an IMAP client sees them expunged as usual.
async fn pop3_removal_takes_the_listed_messages_whatever_their_flags(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let (alice, inbox) = alice_with_messages(&mut f, 6).await;
    let flagged_elsewhere = add_deleted(alice, inbox, vec![uid_range(5, 5)]);
    f.mailstore.store_flags(flagged_elsewhere).await.unwrap();
    let at_start = f.select(alice, "INBOX").await.mailbox.unwrap().highest_modseq;
    let mut events = f.bus.subscribe(&format!("events.{alice}.*")).await.unwrap();
    let remove = async |f: &mut Fixture, account_id: i64, uids: Vec<UidRange>| {
        let request = RemoveMessagesRequest { account_id, mailbox_id: inbox, uids };
        f.mailstore.remove_messages(request).await.map(|answer| answer.into_inner())
    };

    let removed = remove(&mut f, alice, vec![uid_range(2, 3), uid_range(6, 6)]).await.unwrap();
    assert_eq!(removed.expunged, [2, 3, 6]);
    let after = f.select(alice, "INBOX").await;
    assert_eq!(after.uids, [1, 4, 5], "the \\Deleted message not listed stays");
    assert_eq!(removed.highest_modseq, after.mailbox.unwrap().highest_modseq);
    assert_eq!(f.quota(alice).await.messages_used, 3);
    let event = tokio::time::timeout(std::time::Duration::from_secs(5), events.next()).await.unwrap().unwrap();
    let event = MailboxEvent::decode(event.payload).unwrap();
    assert!(matches!(event.change, Some(Change::Expunged(ref e)) if e.uids == [2, 3, 6]), "{event:?}");
    let since = ExpungedSinceRequest { account_id: alice, mailbox_id: inbox, modseq: at_start, uids: vec![] };
    assert_eq!(f.mailstore.expunged_since(since).await.unwrap().into_inner().uids, [2, 3, 6], "for QRESYNC");

    assert!(remove(&mut f, alice, vec![]).await.unwrap().expunged.is_empty(), "no list, no removal");
    assert!(remove(&mut f, alice, vec![uid_range(2, 3)]).await.unwrap().expunged.is_empty(), "already gone");
    let bob = f.account("bob@example.org", 0, 0).await;
    let foreign = remove(&mut f, bob, vec![uid_range(1, 0)]).await;
    assert_eq!(foreign.unwrap_err().code(), Code::NotFound, "another account's mailbox");
    let bad = remove(&mut f, alice, vec![uid_range(0, 1)]).await;
    assert_eq!(bad.unwrap_err().code(), Code::InvalidArgument, "UID 0");
    assert_eq!(f.select(alice, "INBOX").await.uids, [1, 4, 5], "none of that changed anything");
}

/// POP3 numbers its maildrop from one SELECT with sizes: each message's size, as FetchMessages
/// reports it, in UID order beside the UIDs; always a whole snapshot, even for a caller that
/// holds a current one; and no sizes for IMAP, which does not ask.
async fn a_snapshot_with_sizes_gives_every_message_its_size(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    for (i, length) in [700, 120, 4_000, 300].into_iter().enumerate() {
        f.deliver(&format!("q-{i}"), "alice@example.org", &message(&format!("m{i}"), length)).await.unwrap();
    }
    let plain = f.select(alice, "INBOX").await;
    assert!(plain.sizes.is_empty(), "IMAP's SELECT carries no sizes");
    let mailbox = plain.mailbox.clone().unwrap();
    let mut expected: Vec<(u32, u64)> =
        f.messages(alice, mailbox.id).await.iter().map(|meta| (meta.uid, meta.size)).collect();
    expected.sort();
    assert_eq!(expected.iter().map(|(_, size)| *size).collect::<BTreeSet<_>>().len(), 4, "four sizes");

    let with_sizes = SelectMailboxRequest {
        account_id: alice,
        name: "INBOX".into(),
        known_mailbox_id: mailbox.id,
        known_modseq: mailbox.highest_modseq,
        with_sizes: true,
    };
    let sized = f.mailstore.select_mailbox(with_sizes).await.unwrap().into_inner();
    assert!(!sized.unchanged && !sized.delta, "a whole snapshot, not {sized:?}");
    let listed: Vec<(u32, u64)> = sized.uids.iter().copied().zip(sized.sizes.iter().copied()).collect();
    assert_eq!((listed, sized.uids.len()), (expected, sized.sizes.len()));
    assert_eq!((sized.flags, sized.modseqs), (plain.flags, plain.modseqs), "the rest as without sizes");
    assert_eq!(sized.mailbox.unwrap().size, mailbox.size);
}
