//! Upgrades keep what users had: a database made by the earlier migrations, holding data, is
//! opened by this mailstore, which migrates it the rest of the way. On PostgreSQL and SQLite.

mod common;

use std::path::Path;

use kubemail_mailstore::db::Db;
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

on_both_backends!(subscriptions_survive_the_move_out_of_the_mailboxes_table);

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

async fn subscriptions_survive_the_move_out_of_the_mailboxes_table(backend: common::Backend) {
    let dir = tempfile::tempdir().unwrap();
    let url = match backend {
        common::Backend::Postgres => kubemail_testkit::postgres_database().await,
        common::Backend::Sqlite => format!("sqlite://{}?mode=rwc", dir.path().join("mailstore.db").display()),
    };
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
    let store = kubemail_mailstore::store(
        db,
        std::sync::Arc::new(kubemail_runtime::local::LocalEventBus::new(16)),
        kubemail_mailstore::Limits { max_message_size: common::TEST_MAX_MESSAGE },
    );
    let (mailboxes, without_mailbox) = store.list_mailboxes(1).await.unwrap();
    let subscribed: Vec<(&str, bool)> = mailboxes.iter().map(|m| (m.name.as_str(), m.subscribed)).collect();
    assert_eq!(subscribed, [("Hidden", false), ("INBOX", true), ("Read", true)]);
    assert!(without_mailbox.is_empty());
}
