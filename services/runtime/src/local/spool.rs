//! [`LocalSpool`]: message bodies as rows of `spool_bodies`.

use async_trait::async_trait;
use bytes::Bytes;
use sqlx::SqlitePool;

use crate::{Result, Spool, contract};

/// Bodies in SQLite; `put` returns after the commit is synced to disk.
#[derive(Clone)]
pub struct LocalSpool {
    pool: SqlitePool,
}

impl LocalSpool {
    pub(super) fn new(pool: SqlitePool) -> Self {
        LocalSpool { pool }
    }
}

#[async_trait]
impl Spool for LocalSpool {
    async fn put(&self, key: &str, body: Bytes) -> Result<()> {
        contract::check_spool_key(key)?;
        sqlx::query(
            "INSERT INTO spool_bodies (key, body) VALUES (?, ?)
             ON CONFLICT (key) DO UPDATE SET body = excluded.body",
        )
        .bind(key)
        .bind(body.as_ref())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        contract::check_spool_key(key)?;
        let body: Option<Vec<u8>> = sqlx::query_scalar("SELECT body FROM spool_bodies WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(body.map(Bytes::from))
    }

    async fn delete(&self, key: &str) -> Result<()> {
        contract::check_spool_key(key)?;
        sqlx::query("DELETE FROM spool_bodies WHERE key = ?").bind(key).execute(&self.pool).await?;
        Ok(())
    }
}
