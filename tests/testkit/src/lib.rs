//! Test support for kubemail's test suites.
//!
//! `scripts/test` starts a throwaway PostgreSQL cluster and a NATS server with JetStream and
//! passes their addresses in the environment; this crate hands each test its own database and
//! names, so tests run in parallel without seeing each other.
//!
//! - [`postgres_database`] — a fresh, empty PostgreSQL database for one test.
//! - [`nats_url`] — the NATS server's URL.
//! - [`unique_name`] — a name no other test in this run uses (streams, buckets, subjects).
//! - [`nats`] — a NATS server of a test's own, to kill and restart, or to secure as the chart's
//!   example does.
//! - [`ports`] — loopback ports for servers started in another process.
//! - [`mailstore`] — a mailstore on SQLite with accounts to deliver to, and a mailbox reader.
//! - [`mta`] — a remote MTA on loopback that records what it receives and answers as told.
//! - [`dns`] — a DNS server on loopback answering from the records a test sets.
//! - [`dkim`] — DKIM keys in the delivery queue's layout, and a verifier without DNS.
//! - [`otlp`] — an OTLP trace collector that keeps the spans the services export.
//! - [`tls`] — a TLS client that trusts the certificate a test made.
//! - [`mime_corpus`] — the messages of every MIME structure the tests know.

pub mod dkim;
pub mod dns;
pub mod mailstore;
pub mod mta;
pub mod nats;
pub mod otlp;
pub mod ports;
pub mod tls;

mod corpus;
pub use corpus::mime_corpus;

pub use nats::NatsServer;
pub use ports::{free_loopback_address, free_port};

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;

/// Environment variable with the URL of the throwaway cluster's `postgres` database.
pub const POSTGRES_ENV: &str = "KUBEMAIL_TEST_POSTGRES_URL";
/// Environment variable with the NATS server's URL.
pub const NATS_ENV: &str = "KUBEMAIL_TEST_NATS_URL";
/// Environment variable with the path of the `nats-server` binary.
pub const NATS_SERVER_ENV: &str = "KUBEMAIL_TEST_NATS_SERVER";

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test, which provisions PostgreSQL and NATS")
    })
}

/// The NATS server's URL (JetStream enabled).
pub fn nats_url() -> String {
    required_env(NATS_ENV)
}

/// A name unique within this test run: `prefix` plus process id, time and a counter, using only
/// characters valid in database, stream and bucket names.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{prefix}_{}_{nanos}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Creates an empty database in the throwaway cluster and returns its URL.
pub async fn postgres_database() -> String {
    let admin_url = required_env(POSTGRES_ENV);
    let name = unique_name("kubemail_test");
    let mut admin =
        sqlx::PgConnection::connect(&admin_url).await.unwrap_or_else(|e| panic!("cannot connect to {admin_url}: {e}"));
    // `name` is made by `unique_name` from a fixed prefix, digits and underscores.
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    let (base, _) = admin_url.rsplit_once('/').expect("postgres URL ends in /DATABASE");
    format!("{base}/{name}")
}
