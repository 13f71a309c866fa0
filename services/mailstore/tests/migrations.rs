//! Upgrades keep what users had: a database made by the earlier migrations, holding data, is
//! opened by this mailstore, which migrates it the rest of the way: subscriptions move to their
//! own table, old messages have no save date, and get their cached FETCH items the first time
//! they are asked for, \Recent marks move to their own table. On PostgreSQL and SQLite.

mod common;

use std::path::Path;

use kubemail_mailstore::db::Db;
use kubemail_mailstore::store::BodySlice;
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor, Row};

on_both_backends!(
    subscriptions_survive_the_move_out_of_the_mailboxes_table,
    messages_stored_before_save_dates_have_none,
    messages_stored_before_cached_items_get_them_when_fetched,
    recent_marks_move_out_of_the_mailboxes_table
);

/// Applies the migrations numbered up to `last` of `backend` to `url`, the way a mailstore of
/// that release did.
async fn migrate_up_to(backend: common::Backend, url: &str, last: i64) -> AnyPool {
    let all = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(match backend {
        common::Backend::Postgres => "postgres",
        common::Backend::Sqlite => "sqlite",
    });
    let earlier = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&all).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let version: i64 = name.split('_').next().unwrap().parse().unwrap();
        if version <= last {
            std::fs::copy(&path, earlier.path().join(&name)).unwrap();
        }
    }
    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(url).await.unwrap();
    Migrator::new(earlier.path()).await.unwrap().run(&pool).await.unwrap();
    pool
}

/// A database of `backend` for a test: PostgreSQL's from the test kit, SQLite's in `dir`.
async fn database_url(backend: common::Backend, dir: &Path) -> String {
    match backend {
        common::Backend::Postgres => kubemail_testkit::postgres_database().await,
        common::Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.join("mailstore.db").display()),
    }
}

fn store(db: Db) -> kubemail_mailstore::Store {
    kubemail_mailstore::store(
        db,
        std::sync::Arc::new(kubemail_runtime::local::LocalEventBus::new(16)),
        kubemail_mailstore::Limits { max_message_size: common::TEST_MAX_MESSAGE },
    )
}

async fn subscriptions_survive_the_move_out_of_the_mailboxes_table(backend: common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(backend, dir.path()).await;
    let pool = migrate_up_to(backend, &url, 3).await;
    for statement in [
        "INSERT INTO domains (id, name) VALUES (1, 'example.org')",
        "INSERT INTO accounts (id, domain_id, address, password_hash) VALUES (1, 1, 'alice@example.org', 'x')",
        "INSERT INTO mailboxes (account_id, name, uidvalidity, subscribed) VALUES (1, 'INBOX', 1, 1)",
        "INSERT INTO mailboxes (account_id, name, uidvalidity, subscribed) VALUES (1, 'Read', 2, 1)",
        "INSERT INTO mailboxes (account_id, name, uidvalidity, subscribed) VALUES (1, 'Hidden', 3, 0)",
    ] {
        pool.execute(statement).await.unwrap_or_else(|error| panic!("{statement}: {error}"));
    }
    pool.close().await;

    let db = Db::connect(&url, 4).await.expect("the mailstore opens and migrates the old database");
    let store = store(db);
    let (mailboxes, without_mailbox) = store.list_mailboxes(1).await.unwrap();
    let subscribed: Vec<(&str, bool)> = mailboxes.iter().map(|m| (m.name.as_str(), m.subscribed)).collect();
    assert_eq!(subscribed, [("Hidden", false), ("INBOX", true), ("Read", true)]);
    assert!(without_mailbox.is_empty());
}

/// A message stored before migration 0006 has no save date (SAVEDATE NIL, RFC 8514) and its
/// EMAILID comes from its content hash, as for any other message.
async fn messages_stored_before_save_dates_have_none(backend: common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(backend, dir.path()).await;
    let pool = migrate_up_to(backend, &url, 5).await;
    let blob = match backend {
        common::Backend::Postgres => {
            "INSERT INTO blobs (hash, data) VALUES ('0123456789abcdef0123456789abcdef', '\\x6869'::bytea)"
        }
        common::Backend::Sqlite => {
            "INSERT INTO blobs (hash, data) VALUES ('0123456789abcdef0123456789abcdef', X'6869')"
        }
    };
    for statement in [
        "INSERT INTO domains (id, name) VALUES (1, 'example.org')",
        "INSERT INTO accounts (id, domain_id, address, password_hash) VALUES (1, 1, 'alice@example.org', 'x')",
        "INSERT INTO mailboxes (id, account_id, name, uidvalidity, uid_next, highest_modseq) VALUES (1, 1, 'INBOX', 1, 2, 1)",
        blob,
        "INSERT INTO messages (mailbox_id, uid, account_id, modseq, internal_date, size, header_size, blob_hash) \
         VALUES (1, 1, 1, 1, 1700000000, 2, 0, '0123456789abcdef0123456789abcdef')",
    ] {
        pool.execute(statement).await.unwrap_or_else(|error| panic!("{statement}: {error}"));
    }
    pool.close().await;

    let store = store(Db::connect(&url, 4).await.expect("the mailstore opens and migrates the old database"));
    let messages = store.fetch_messages(1, 1, &[], 0, false).await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].save_date, 0, "no save date is made up for an old message");
    assert_eq!(messages[0].email_id, "M0123456789abcdef01234567");
}

/// A message stored before migration 0008 has no cached items and no header kept apart: a
/// FETCH that asks for them gets them derived from its body, the same as a new message's, and
/// they are kept, so the body is parsed once.
async fn messages_stored_before_cached_items_get_them_when_fetched(backend: common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(backend, dir.path()).await;
    let pool = migrate_up_to(backend, &url, 7).await;
    let body = b"From: Old <old@example.org>\r\nSubject: from before\r\n\r\nKept for years.\r\n".to_vec();
    for statement in [
        "INSERT INTO domains (id, name) VALUES (1, 'example.org')",
        "INSERT INTO accounts (id, domain_id, address, password_hash) VALUES (1, 1, 'alice@example.org', 'x')",
        "INSERT INTO mailboxes (id, account_id, name, uidvalidity, uid_next, highest_modseq) VALUES (1, 1, 'INBOX', 1, 2, 1)",
    ] {
        pool.execute(statement).await.unwrap_or_else(|error| panic!("{statement}: {error}"));
    }
    let header_size = body.windows(4).position(|octets| octets == b"\r\n\r\n").unwrap() + 4;
    sqlx::query("INSERT INTO blobs (hash, data) VALUES ('00aa', $1)").bind(body.clone()).execute(&pool).await.unwrap();
    sqlx::query(
        "INSERT INTO messages (mailbox_id, uid, account_id, modseq, internal_date, size, header_size, blob_hash) \
         VALUES (1, 1, 1, 1, 1700000000, $1, $2, '00aa')",
    )
    .bind(body.len() as i64)
    .bind(header_size as i64)
    .execute(&pool)
    .await
    .unwrap();

    let db = Db::connect(&url, 4).await.expect("the mailstore opens and migrates the old database");
    let store = store(db);
    let header_only = BodySlice { headers_only: true, ..BodySlice::default() };
    let headers = store.fetch_bodies(1, 1, &[1], header_only).await.unwrap();
    assert_eq!(headers[0].1.as_ref(), &body[..header_size], "the header block, cut from the body");

    let messages = store.fetch_messages(1, 1, &[], 0, true).await.unwrap();
    let cached = messages[0].cached.clone().expect("cached items, derived from the old body");
    assert_eq!(cached, kubemail_message::cached::derive(&body));
    assert!(cached.envelope.contains("\"from before\""), "{}", cached.envelope);
    assert_eq!(cached.preview.as_deref(), Some("Kept for years."));

    let pool = AnyPool::connect(&url).await.unwrap();
    let kept = sqlx::query("SELECT header, cached FROM blobs WHERE hash = '00aa'").fetch_one(&pool).await.unwrap();
    assert_eq!(kept.try_get::<Vec<u8>, _>("header").unwrap(), &body[..header_size], "the header is kept apart now");
    assert!(!kept.try_get::<Vec<u8>, _>("cached").unwrap().is_empty(), "the items are kept");
    let with_bodies = BodySlice { with_cached: true, ..BodySlice::default() };
    let bodies = store.fetch_bodies(1, 1, &[1], with_bodies).await.unwrap();
    assert_eq!(bodies[0].0.cached.as_ref(), Some(&cached), "read back as derived");
    assert_eq!(bodies[0].1.as_ref(), body.as_slice());
}

/// The \Recent marks move from the mailbox rows to their own table (migration 0010): what
/// sessions took stays taken, and a claim goes on from there; a mailbox made afterwards has a
/// mark of its own.
async fn recent_marks_move_out_of_the_mailboxes_table(backend: common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = database_url(backend, dir.path()).await;
    let pool = migrate_up_to(backend, &url, 9).await;
    for statement in [
        "INSERT INTO domains (id, name) VALUES (1, 'example.org')",
        "INSERT INTO accounts (id, domain_id, address, password_hash) VALUES (1, 1, 'alice@example.org', 'x')",
        // The first mailbox: id 1 on both databases, from their own sequence.
        "INSERT INTO mailboxes (account_id, name, uidvalidity, uid_next, highest_modseq, recent_uid) \
         VALUES (1, 'INBOX', 1, 9, 1, 5)",
    ] {
        pool.execute(statement).await.unwrap_or_else(|error| panic!("{statement}: {error}"));
    }
    pool.close().await;

    let store = store(Db::connect(&url, 4).await.expect("the mailstore opens and migrates the old database"));
    let (mailboxes, _) = store.list_mailboxes(1).await.unwrap();
    assert_eq!(mailboxes[0].recent_uid, 5, "what sessions took stays taken");
    assert_eq!(store.claim_recent(1, 1, 7).await.unwrap(), (6, 7), "the next claim takes what came after");
    assert_eq!(store.claim_recent(1, 1, 7).await.unwrap(), (8, 7), "and no other takes it again");
    let created = store.create_mailbox(1, "Archive", "").await.unwrap();
    assert_eq!(store.claim_recent(1, created.id, 3).await.unwrap(), (1, 0), "a new mailbox has nothing to take");
}
