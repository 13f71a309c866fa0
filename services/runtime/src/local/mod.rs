//! The transports of `kubemail dev`: one process, durable in one SQLite file.
//!
//! - [`LocalConfig`] — the SQLite file, lease and deduplication window, event buffer size.
//! - [`LocalTransport`] — opens the file once and builds all three implementations on it.
//! - [`LocalSpool`] (`spool.rs`) — bodies in a table.
//! - [`LocalQueue`] (`queue.rs`) — envelopes in a table; a lease is a time until which a row is
//!   invisible, plus a token only its holder knows.
//! - [`LocalEventBus`] (`events.rs`) — in-process fan-out with NATS wildcard matching.
//!
//! The queue's waiting pullers are woken in process, so one file serves one process: a second
//! process on the same file would be correct but would only notice new messages when its
//! timers fire.

mod events;
mod queue;
mod spool;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::pools::checked_when_idle;
use crate::{Error, Result, contract};

pub use events::LocalEventBus;
pub use queue::LocalQueue;
pub use spool::LocalSpool;

/// Tables of the spool and the queue; created when missing, so opening is idempotent.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS spool_bodies (
    key  TEXT PRIMARY KEY,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS queue_messages (
    -- Publish order; AUTOINCREMENT never reuses a number, so a late ack cannot hit a newer
    -- message published under the same id.
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    payload     BLOB NOT NULL,
    headers     TEXT NOT NULL,         -- JSON object of name to value
    attempts    INTEGER NOT NULL DEFAULT 0,
    visible_at  INTEGER NOT NULL,      -- Unix ms: publish time, retry time or lease end
    lease_token TEXT                   -- set while leased; only the holder knows it
);
CREATE INDEX IF NOT EXISTS queue_messages_visible ON queue_messages (visible_at, seq);
-- Ids published within the deduplication window, kept after their message is acked so that
-- a publisher retrying after a lost acknowledgement does not queue the mail twice.
CREATE TABLE IF NOT EXISTS queue_published_ids (
    id           TEXT PRIMARY KEY,
    published_at INTEGER NOT NULL      -- Unix ms
);
CREATE INDEX IF NOT EXISTS queue_published_ids_age ON queue_published_ids (published_at);
-- Messages moved aside: kept until an operator removes them.
CREATE TABLE IF NOT EXISTS queue_dead_letters (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    id       TEXT NOT NULL UNIQUE,
    payload  BLOB NOT NULL,
    headers  TEXT NOT NULL,
    reason   TEXT NOT NULL,
    moved_at INTEGER NOT NULL          -- Unix ms
);
";

/// Where `kubemail dev` keeps its transport state, and the queue's timings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalConfig {
    /// SQLite file, created when missing.
    pub path: PathBuf,
    /// How long a pulled message stays leased without `extend`.
    pub lease: Duration,
    /// How long a published id is remembered for idempotent publishing.
    pub dedupe_window: Duration,
    /// Events buffered per subscriber; a subscriber further behind loses the newest ones.
    pub event_buffer: usize,
}

impl LocalConfig {
    /// Defaults for everything but the file.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        LocalConfig {
            path: path.into(),
            lease: contract::DEFAULT_LEASE,
            dedupe_window: contract::MIN_DEDUPE_WINDOW,
            event_buffer: 1024,
        }
    }

    fn validate(&self) -> Result<()> {
        contract::check_queue_settings(self.lease, self.dedupe_window)?;
        if self.event_buffer == 0 {
            return Err(Error::Config("the event buffer must hold at least one event".into()));
        }
        Ok(())
    }
}

/// The three local implementations, sharing one SQLite file.
#[derive(Clone)]
pub struct LocalTransport {
    pub spool: LocalSpool,
    pub queue: LocalQueue,
    pub events: LocalEventBus,
}

impl LocalTransport {
    /// Opens (or creates) the SQLite file and its tables.
    pub async fn open(config: &LocalConfig) -> Result<Self> {
        config.validate()?;
        let options = SqliteConnectOptions::new()
            .filename(&config.path)
            .create_if_missing(true)
            // WAL lets pullers read while a publisher writes.
            .journal_mode(SqliteJournalMode::Wal)
            // FULL syncs the WAL on every commit: NORMAL could lose the last commits on power
            // loss, i.e. mail after SMTP already said 250. Dev volumes make the cost invisible.
            .synchronous(SqliteSynchronous::Full)
            // Writers queue behind each other; a claim or publish takes milliseconds.
            .busy_timeout(Duration::from_secs(10));
        let pool = checked_when_idle(SqlitePoolOptions::new())
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| Error::unavailable("sqlite", format!("{}: {e}", config.path.display())))?;
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        Ok(LocalTransport {
            spool: LocalSpool::new(pool.clone()),
            queue: LocalQueue::new(pool, config.lease, config.dedupe_window),
            events: LocalEventBus::new(config.event_buffer),
        })
    }
}

/// Wall-clock Unix time in milliseconds: leases and retry times outlive the process, so they
/// cannot use a monotonic clock.
fn unix_millis() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    millis(since_epoch)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{Queue, QueueMessage, Spool};

    #[tokio::test]
    async fn spool_and_queue_survive_a_process_restart() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = LocalConfig { lease: Duration::from_secs(1), ..LocalConfig::new(dir.path().join("db")) };
        let before = LocalTransport::open(&config).await.expect("open");
        before.spool.put("m-1", Bytes::from_static(b"body")).await.expect("put");
        let message = QueueMessage {
            id: "m-1".into(),
            payload: Bytes::from_static(b"envelope"),
            headers: [("traceparent".to_string(), "00-ab-cd-01".to_string())].into(),
        };
        before.queue.publish(message.clone()).await.expect("publish");
        let leased = before.queue.pull(1, Duration::ZERO).await.expect("pull");
        assert_eq!(leased.len(), 1);
        // The process dies with the message leased.
        drop(leased);
        drop(before);

        let after = LocalTransport::open(&config).await.expect("reopen");
        assert_eq!(after.spool.get("m-1").await.expect("get"), Some(Bytes::from_static(b"body")));
        let again = after.queue.publish(message.clone()).await.expect("publish again");
        assert!(again.duplicate, "published ids survive the restart");
        let mut redelivered = after.queue.pull(1, Duration::from_secs(10)).await.expect("pull");
        let lease = redelivered.pop().expect("the leased message comes back after its lease");
        assert_eq!((lease.id.as_str(), lease.attempt), ("m-1", 2));
        assert_eq!((&lease.payload, &lease.headers), (&message.payload, &message.headers));
    }

    #[tokio::test]
    async fn invalid_settings_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let base = LocalConfig::new(dir.path().join("db"));
        for config in [
            LocalConfig { lease: Duration::ZERO, ..base.clone() },
            LocalConfig { dedupe_window: Duration::from_secs(10), ..base.clone() },
            LocalConfig { event_buffer: 0, ..base.clone() },
        ] {
            let opened = LocalTransport::open(&config).await;
            assert!(matches!(opened, Err(Error::Config(_))), "{config:?}");
        }
    }
}
