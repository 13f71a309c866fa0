//! What holds across every operation: one account never reaches another's mail, bad input changes
//! nothing, every change is announced, writers racing on one mailbox never deadlock, connections
//! the database dropped are replaced, a body goes with the last message that has it, EXPUNGE
//! finds the \Deleted messages through their index. Every test but the last three (PostgreSQL's)
//! runs against PostgreSQL and SQLite, through the real gRPC server, with real clients.

mod common;

use common::{
    Backend, Fixture, TEST_MAX_MESSAGE, add_deleted, alice_with_messages, assert_counters_match, flags, message,
    uid_range,
};
use futures::StreamExt;
use kubemail_proto::Message as _;
use kubemail_proto::admin::*;
use kubemail_proto::events::{MailboxEvent, mailbox_event::Change};
use kubemail_proto::mailstore::store_flags_request::Operation;
use kubemail_proto::mailstore::*;
use kubemail_runtime::EventBus;
use sqlx::Connection as _;
use tonic::Code;

on_both_backends!(
    one_account_can_never_reach_another_accounts_mail,
    bad_input_is_refused_and_leaves_nothing_behind,
    every_change_publishes_a_mailbox_event,
    writers_racing_on_one_mailbox_never_deadlock
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

/// A body is stored once for every message that has it, kept while one does, and deleted soon
/// after the last of them is expunged (on PostgreSQL the deletion waits a moment for those of
/// other EXPUNGEs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_goes_with_the_last_message_that_has_it() {
    let mut f = Fixture::start(Backend::Postgres).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    let shared = message("sent twice", 400);
    f.deliver("q-1", "alice@example.org", &shared).await.unwrap();
    f.deliver("q-2", "alice@example.org", &shared).await.unwrap();
    f.deliver("q-3", "alice@example.org", &message("once", 400)).await.unwrap();
    let inbox = f.select(alice, "INBOX").await.mailbox.unwrap().id;
    let mut db = sqlx::PgConnection::connect(f.database_url.as_deref().expect("PostgreSQL")).await.unwrap();
    let mut bodies =
        async || -> i64 { sqlx::query_scalar("SELECT count(*) FROM blobs").fetch_one(&mut db).await.unwrap() };
    assert_eq!(bodies().await, 2, "the body delivered twice is stored once");

    let expunge = async |f: &mut Fixture, uid: u32| {
        f.mailstore.store_flags(add_deleted(alice, inbox, vec![uid_range(uid, uid)])).await.unwrap();
        let request = ExpungeRequest { account_id: alice, mailbox_id: inbox, uids: vec![uid_range(uid, uid)] };
        assert_eq!(f.mailstore.expunge(request).await.unwrap().into_inner().expunged, [uid]);
    };
    expunge(&mut f, 1).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(bodies().await, 2, "kept while the second message has it");
    let read: Vec<u8> =
        f.bodies(alice, inbox, vec![uid_range(2, 2)], 0, 0).await.into_iter().flat_map(|c| c.data).collect();
    assert_eq!(read, shared, "and the second message reads it");

    expunge(&mut f, 2).await;
    let mut left = bodies().await;
    for _ in 0..50 {
        if left == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        left = bodies().await;
    }
    assert_eq!(left, 1, "gone within five seconds of the last message's EXPUNGE; the other body stays");
}

/// EXPUNGE's search for the \Deleted messages of a mailbox of 10,000, 10 of them \Deleted, keeps
/// using the \Deleted index after PostgreSQL has analyzed the table, in the generic plan a
/// prepared statement settles on (migration 0011's statistics); without them it read all 10,000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expunge_finds_deleted_messages_through_their_index() {
    let mut f = Fixture::start(Backend::Postgres).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    let inbox = f.select(alice, "INBOX").await.mailbox.unwrap().id;
    let mut db = sqlx::PgConnection::connect(f.database_url.as_deref().expect("PostgreSQL")).await.unwrap();
    for statement in [
        "INSERT INTO blobs (hash, data) VALUES ('00aa', '\\x00')".to_string(),
        format!(
            "INSERT INTO messages (mailbox_id, uid, account_id, modseq, flags, internal_date, size, header_size, \
             blob_hash) SELECT {inbox}, uid, {alice}, uid, CASE WHEN uid % 1000 = 0 THEN 8 ELSE uid % 8 END, 0, 1, 1, \
             '00aa' FROM generate_series(1, 10000) uid"
        ),
        "ANALYZE messages".to_string(),
        "SET plan_cache_mode = force_generic_plan".to_string(),
        // The search as the mailstore sends it (store/messages/expunge.rs, `doomed_uids`).
        "PREPARE doomed (bigint, bigint, bigint) AS SELECT uid FROM messages WHERE mailbox_id = $1 \
         AND (flags & 8) <> 0 AND uid BETWEEN $2 AND $3 ORDER BY uid"
            .to_string(),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut db).await.unwrap();
    }
    let plan: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "EXPLAIN (ANALYZE, COSTS off, TIMING off, SUMMARY off) EXECUTE doomed({inbox}, 1, 4294967295)"
    )))
    .fetch_all(&mut db)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("using messages_deleted") && plan.contains("rows=10 "), "{plan}");
}

/// Drops the answer of a call whose failure is what a test checks.
fn discard<T>(result: Result<T, tonic::Status>) -> Result<(), tonic::Status> {
    result.map(|_| ())
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
            with_cached: false,
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
            with_cached: false,
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
            with_cached: false,
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
            held: Vec::new(),
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
            held: Vec::new(),
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
            held: Vec::new(),
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
            held: Vec::new(),
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
            held: Vec::new(),
        })
        .await;
    expect(discard(bad_op), Code::InvalidArgument, "unknown operation");
    let unknown_mailbox = f
        .mailstore
        .fetch_messages(FetchMessagesRequest {
            account_id: alice,
            mailbox_id: 987_654,
            uids: vec![],
            changed_since: 0,
            with_cached: false,
        })
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
            with_cached: false,
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
    // The new message's flags and MODSEQ come with it: sessions need not read them back.
    let Some(Change::Added(ref new)) = added.change else { unreachable!() };
    assert_eq!((new.system_flags.clone(), new.keywords.clone()), (vec![0], vec![String::new()]));
    assert_eq!(new.modseqs, vec![added.highest_modseq]);

    f.mailstore
        .store_flags(StoreFlagsRequest {
            account_id: alice,
            mailbox_id: delivered.mailbox_id,
            uids: vec![uid_range(1, 0)],
            operation: Operation::Add as i32,
            flags: flags(SystemFlag::Deleted as u32, &["$x"]),
            unchanged_since: 0,
            held: Vec::new(),
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
                    held: Vec::new(),
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
