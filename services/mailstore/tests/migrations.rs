//! Upgrades keep what users had: a database made by the earlier migrations, holding data, is
//! opened by this mailstore, which migrates it the rest of the way: subscriptions move to their
//! own table, old messages have no save date. On PostgreSQL and SQLite.

mod common;

use std::path::Path;

use kubemail_mailstore::db::Db;
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

on_both_backends!(
    subscriptions_survive_the_move_out_of_the_mailboxes_table,
    messages_stored_before_save_dates_have_none
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
    let messages = store.fetch_messages(1, 1, &[], 0).await.unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].save_date, 0, "no save date is made up for an old message");
    assert_eq!(messages[0].email_id, "M0123456789abcdef01234567");
}
