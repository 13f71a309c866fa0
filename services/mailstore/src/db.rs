//! The database behind the mailstore: PostgreSQL in production, SQLite for `kubemail dev`.
//!
//! Both are reached through sqlx's `Any` driver with one set of SQL statements (`$1`
//! placeholders work on both). The few places where the dialects differ ask [`Db::backend`].
//!
//! The two hottest calls, Deliver and SelectMailbox, have a PostgreSQL form of their own on a
//! typed pool ([`Db::postgres`]): one statement each instead of several round trips, and rows
//! decoded without the `Any` driver's per-row conversion.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use kubemail_runtime::pools::checked_when_idle;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{Any, AnyPool, Executor, Transaction};

use crate::Result;

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a call waits for a free connection before it fails as unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Connection pools. PostgreSQL serves reads and writes from one pool and serialises
/// conflicting writers with row locks. SQLite allows one writer at a time, so writes go through
/// a single connection (no SQLITE_BUSY under load) while reads use their own pool (WAL lets
/// them run beside the writer).
#[derive(Clone, Debug)]
pub struct Db {
    backend: Backend,
    reader: AnyPool,
    writer: AnyPool,
    /// On PostgreSQL, the typed pool of the hot paths.
    postgres: Option<PgPool>,
}

impl Db {
    /// Connects to `postgres://…` or `sqlite://…` and brings the schema up to date. On
    /// PostgreSQL the `max_connections` are shared half and half by the typed pool of the hot
    /// paths and the general pool.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db> {
        sqlx::any::install_default_drivers();
        let db = if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let half = max_connections.div_ceil(2).max(1);
            let general = checked_when_idle(AnyPoolOptions::new())
                .max_connections(half)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect(url)
                .await?;
            let hot = checked_when_idle(PgPoolOptions::new())
                .max_connections(half)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect(url)
                .await?;
            Db { backend: Backend::Postgres, reader: general.clone(), writer: general, postgres: Some(hot) }
        } else if url.starts_with("sqlite:") {
            let options = AnyConnectOptions::from_str(url)?;
            let writer = sqlite_pool(1).connect_with(options.clone()).await?;
            let reader = sqlite_pool(max_connections.max(1)).connect_with(options).await?;
            Db { backend: Backend::Sqlite, reader, writer, postgres: None }
        } else {
            return Err(crate::Error::invalid(format!(
                "database URL must start with postgres:// or sqlite:// (got {url:?})"
            )));
        };
        let migrator = match db.backend {
            Backend::Postgres => &POSTGRES_MIGRATIONS,
            Backend::Sqlite => &SQLITE_MIGRATIONS,
        };
        migrator.run(&db.writer).await?;
        Ok(db)
    }

    /// Opens (creating if needed) the SQLite database file at `path`.
    pub async fn open_sqlite(path: &Path, max_connections: u32) -> Result<Db> {
        Db::connect(&format!("sqlite://{}?mode=rwc", path.display()), max_connections).await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The typed PostgreSQL pool, on PostgreSQL.
    pub fn postgres(&self) -> Option<&PgPool> {
        self.postgres.as_ref()
    }

    /// The pool for reads that need no snapshot.
    pub fn reader(&self) -> &AnyPool {
        &self.reader
    }

    /// The pool for single-statement writes (on SQLite, the one writer connection).
    pub fn writer(&self) -> &AnyPool {
        &self.writer
    }

    /// A read-write transaction.
    pub async fn write(&self) -> Result<Transaction<'static, Any>> {
        Ok(self.writer.begin().await?)
    }

    /// A read-only transaction that sees one consistent snapshot across statements (SELECT
    /// must not show a UIDNEXT older than the messages it lists).
    pub async fn snapshot(&self) -> Result<Transaction<'static, Any>> {
        // On PostgreSQL the isolation level comes with BEGIN: one statement, not two.
        Ok(match self.backend {
            Backend::Postgres => self.reader.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY").await?,
            Backend::Sqlite => self.reader.begin().await?,
        })
    }
}

/// `$sql` as a `&'static str`, with `FOR UPDATE` appended on PostgreSQL so the selected rows
/// stay locked until commit. SQLite needs no row locks: its single writer connection already
/// serialises every write transaction.
macro_rules! locking {
    ($db:expr, $sql:literal) => {
        match $db.backend() {
            $crate::db::Backend::Postgres => concat!($sql, " FOR UPDATE"),
            $crate::db::Backend::Sqlite => $sql,
        }
    };
}
pub(crate) use locking;

fn sqlite_pool(max_connections: u32) -> AnyPoolOptions {
    checked_when_idle(AnyPoolOptions::new()).max_connections(max_connections).after_connect(|conn, _| {
        Box::pin(async move {
            // WAL lets readers run beside the writer; synchronous=FULL makes a commit durable
            // before Deliver answers, so acknowledged mail survives a power cut.
            conn.execute(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                 PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
            )
            .await?;
            Ok(())
        })
    })
}
