//! Message bodies, stored once per content under their SHA-256: those no message refers to any
//! more are collected after the commit that removed their messages, and swept hourly.

use sqlx::postgres::PgPool;

use super::Store;
use super::postgres::array_literal;
use crate::Result;

impl Store {
    /// Deletes the bodies among `hashes` that no message refers to any more, in one
    /// transaction (on PostgreSQL one statement, however many). Runs after the commit that
    /// removed the messages and only logs failures: a body left behind wastes space until the
    /// hourly sweep, a body deleted too early would lose mail — the foreign key from messages to
    /// blobs makes that impossible, failing the collection instead.
    pub(crate) async fn collect_blobs(&self, hashes: &[String]) {
        if hashes.is_empty() {
            return;
        }
        let result: Result<()> = async {
            if let Some(pool) = self.db.postgres() {
                return postgres_collect_blobs(pool, hashes).await;
            }
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
