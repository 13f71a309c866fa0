//! IMAP APPEND: folders changing under APPENDs, a burst within the quota (group commit);
//! MULTIAPPEND storing all its messages or none, and refusing a stream that mixes mailboxes. Every test
//! runs against PostgreSQL and SQLite, through the real gRPC server, with real clients.

mod common;

use common::{Backend, Fixture, append_to, churn_folder, message};
use kubemail_proto::mailstore::*;
use sqlx::Connection as _;
use tonic::Code;

on_both_backends!(
    a_burst_of_appends_into_one_mailbox_is_stored_once_each_within_the_quota,
    appends_racing_folder_changes_keep_usage_exact,
    multiappend_stores_all_or_nothing
);

/// The chunks of a MULTIAPPEND of `bodies` into `mailbox`.
fn multi_append_chunks(account_id: i64, mailboxes: &[&str], bodies: &[Vec<u8>]) -> Vec<AppendChunk> {
    let mut chunks = Vec::new();
    for (body, mailbox) in bodies.iter().zip(mailboxes.iter().cycle()) {
        let header =
            AppendHeader { account_id, mailbox: mailbox.to_string(), size: body.len() as u64, ..Default::default() };
        chunks.push(AppendChunk { part: Some(append_chunk::Part::Header(header)) });
        chunks.push(AppendChunk { part: Some(append_chunk::Part::Data(body.clone())) });
    }
    chunks
}

/// MULTIAPPEND (RFC 3502): consecutive UIDs for all the messages, announced together; over
/// the quota together, nothing is stored even though each message alone would fit; messages
/// for two mailboxes in one stream are refused.
async fn multiappend_stores_all_or_nothing(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 4).await;
    let bodies: Vec<Vec<u8>> = (0..3).map(|i| message(&format!("multi-{i}"), 300)).collect();
    let stored =
        f.mailstore.multi_append(tokio_stream::iter(multi_append_chunks(alice, &["INBOX"], &bodies))).await.unwrap();
    assert_eq!(stored.into_inner().uids, [1, 2, 3]);
    let over = f.mailstore.multi_append(tokio_stream::iter(multi_append_chunks(alice, &["INBOX"], &bodies[..2]))).await;
    assert_eq!(over.unwrap_err().code(), Code::ResourceExhausted, "2 more messages do not fit a quota of 4");
    let mixed = f
        .mailstore
        .multi_append(tokio_stream::iter(multi_append_chunks(alice, &["INBOX", "Sent"], &bodies[..1])))
        .await;
    assert!(mixed.is_ok(), "one message names one mailbox");
    let mixed = f
        .mailstore
        .multi_append(tokio_stream::iter(multi_append_chunks(alice, &["INBOX", "Sent"], &bodies[..2])))
        .await;
    assert_eq!(mixed.unwrap_err().code(), Code::InvalidArgument);
    let inbox = f.select(alice, "INBOX").await;
    assert_eq!(inbox.uids, [1, 2, 3, 4], "the refused MULTIAPPENDs stored nothing");
    assert_eq!(f.quota(alice).await.messages_used, 4);
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
