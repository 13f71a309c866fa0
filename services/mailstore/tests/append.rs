//! IMAP APPEND: folders changing under APPENDs, a burst within the quota (group commit). Every test
//! runs against PostgreSQL and SQLite, through the real gRPC server, with real clients.

mod common;

use common::{Backend, Fixture, append_to, churn_folder, message};
use kubemail_proto::mailstore::*;
use sqlx::Connection as _;
use tonic::Code;

on_both_backends!(
    a_burst_of_appends_into_one_mailbox_is_stored_once_each_within_the_quota,
    appends_racing_folder_changes_keep_usage_exact
);

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
