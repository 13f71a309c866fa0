//! Message bodies, stored once per content under their SHA-256: those no message refers to any
//! more are collected after the commit that removed their messages, and swept hourly. On
//! PostgreSQL the collection waits [`COLLECT_DELAY`] for the bodies of other removals, so one
//! statement deletes those of many EXPUNGEs instead of one statement (planned anew each time,
//! for its array of hashes) after each.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgPool;

use super::Store;
use super::postgres::array_literal;
use crate::Result;

/// How long bodies to collect on PostgreSQL wait for those of other removals.
const COLLECT_DELAY: Duration = Duration::from_millis(250);

/// The hashes of bodies waiting for the next collection on PostgreSQL; the first to arrive
/// schedules it.
#[derive(Clone, Default)]
pub(crate) struct Uncollected(Arc<Mutex<Vec<String>>>);

impl Uncollected {
    /// Adds `hashes`; whether they are the first since the last collection.
    fn add(&self, hashes: &[String]) -> bool {
        let mut waiting = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let first = waiting.is_empty();
        waiting.extend_from_slice(hashes);
        first
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

impl Store {
    /// Deletes the bodies among `hashes` that no message refers to any more: on PostgreSQL with
    /// those of other removals after [`COLLECT_DELAY`], in one statement; on SQLite at once, in
    /// one transaction. Runs after the commit that removed the messages and only logs failures:
    /// a body left behind (a failure, or a mailstore stopped before the collection) wastes space
    /// until the hourly sweep, a body deleted too early would lose mail — the foreign key from
    /// messages to blobs makes that impossible, failing the collection instead.
    pub(crate) async fn collect_blobs(&self, hashes: &[String]) {
        if hashes.is_empty() {
            return;
        }
        if let Some(pool) = self.db.postgres() {
            if self.uncollected.add(hashes) {
                let (pool, uncollected) = (pool.clone(), self.uncollected.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(COLLECT_DELAY).await;
                    let hashes = uncollected.take();
                    if let Err(error) = postgres_collect_blobs(&pool, &hashes).await {
                        tracing::warn!(%error, bodies = hashes.len(), "message bodies not collected; the sweep will");
                    }
                });
            }
            return;
        }
        let result: Result<()> = async {
            let mut tx = self.db.write().await?;
            for hash in hashes {
                sqlx::query(
                    "DELETE FROM blobs WHERE hash = $1 \
                     AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob_hash = blobs.hash)",
                )
                .bind(hash)
                .execute(&mut *tx)
                .await?;
            }
            Ok(tx.commit().await?)
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, bodies = hashes.len(), "message bodies not collected; the sweep will");
        }
    }

    /// Deletes every body no message refers to (left behind by a crash or a failed
    /// collection). Returns how many went.
    pub async fn sweep_blobs(&self) -> Result<u64> {
        let swept =
            sqlx::query("DELETE FROM blobs WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob_hash = blobs.hash)")
                .execute(self.db.writer())
                .await?;
        Ok(swept.rows_affected())
    }
}

/// Deletes the bodies of `hashes` that no message refers to any more, in one statement that
/// commits without waiting for the disk (`set_config(…, true)` lasts past the statement's own
/// commit): a crash that loses the deletion leaves bodies the sweep collects, which is not
/// worth an fsync on every EXPUNGE.
async fn postgres_collect_blobs(pool: &PgPool, hashes: &[String]) -> Result<()> {
    sqlx::query(
        "WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)) \
         DELETE FROM blobs WHERE hash = ANY($1::text::text[]) AND EXISTS (SELECT FROM relaxed) \
         AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob_hash = blobs.hash)",
    )
    .bind(array_literal(hashes.iter().cloned()))
    .execute(pool)
    .await?;
    Ok(())
}
