//! [`LocalQueue`]: envelopes as rows of `queue_messages`.
//!
//! A row is visible when `visible_at` has passed. Pulling claims visible rows in one statement:
//! it moves `visible_at` to the end of the lease, counts the attempt and sets a fresh random
//! `lease_token`. Retry and extend only touch the row while the token still matches, so a worker
//! whose lease ran out cannot reschedule the next holder's delivery. Ack removes the row even
//! then, as JetStream does: the late worker did finish the work. A worker that dies needs no
//! cleanup: its rows become visible again when the lease ends.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{Row, SqlitePool};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{millis, unix_millis};
use crate::queue::LeaseHandle;
use crate::{DeadLetter, Error, Headers, Lease, Published, Queue, QueueMessage, Result, contract};

/// The queue in the shared SQLite file. Clones share the pool and the wake-ups, as replicas of
/// delivery-queue inside one `kubemail dev` process do.
#[derive(Clone)]
pub struct LocalQueue {
    shared: Arc<Shared>,
}

struct Shared {
    pool: SqlitePool,
    lease_millis: i64,
    dedupe_window_millis: i64,
    /// Wakes waiting pullers when a message is published or released for retry; lease
    /// expiries and retry delays are covered by each puller's timer.
    changed: Notify,
}

impl LocalQueue {
    pub(super) fn new(pool: SqlitePool, lease: Duration, dedupe_window: Duration) -> Self {
        LocalQueue {
            shared: Arc::new(Shared {
                pool,
                lease_millis: millis(lease),
                dedupe_window_millis: millis(dedupe_window),
                changed: Notify::new(),
            }),
        }
    }

    /// Leases up to `max` visible messages, oldest first.
    async fn claim(&self, max: usize) -> Result<Vec<Lease>> {
        let now = unix_millis();
        let rows = sqlx::query(
            "UPDATE queue_messages
             SET attempts = attempts + 1,
                 visible_at = ?1,
                 lease_token = lower(hex(randomblob(16)))
             WHERE seq IN (SELECT seq FROM queue_messages WHERE visible_at <= ?2
                           ORDER BY visible_at, seq LIMIT ?3)
             RETURNING seq, id, payload, headers, attempts, lease_token",
        )
        .bind(now.saturating_add(self.shared.lease_millis))
        .bind(now)
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&self.shared.pool)
        .await?;

        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let seq: i64 = row.try_get("seq")?;
            let id: String = row.try_get("id")?;
            let headers = decode_headers(&id, &row.try_get::<String, _>("headers")?)?;
            let attempts: i64 = row.try_get("attempts")?;
            let payload: Vec<u8> = row.try_get("payload")?;
            let token: String = row.try_get("lease_token")?;
            let handle = LocalLease { shared: self.shared.clone(), seq, id: id.clone(), token };
            let attempt = u32::try_from(attempts).unwrap_or(u32::MAX);
            claimed.push((seq, Lease::new(id, payload.into(), headers, attempt, Box::new(handle))));
        }
        // RETURNING gives no order guarantee.
        claimed.sort_by_key(|(seq, _)| *seq);
        Ok(claimed.into_iter().map(|(_, lease)| lease).collect())
    }

    /// How long until the next message becomes visible (a retry comes due or a lease ends).
    async fn until_next_visible(&self) -> Result<Option<Duration>> {
        let next: Option<i64> =
            sqlx::query_scalar("SELECT MIN(visible_at) FROM queue_messages").fetch_one(&self.shared.pool).await?;
        let millis_left = |at: i64| u64::try_from(at.saturating_sub(unix_millis())).unwrap_or(0);
        Ok(next.map(|at| Duration::from_millis(millis_left(at))))
    }
}

#[async_trait]
impl Queue for LocalQueue {
    async fn publish(&self, message: QueueMessage) -> Result<Published> {
        contract::check_message_id(&message.id)?;
        let headers = encode_headers(&message.headers)?;
        let now = unix_millis();

        let mut transaction = self.shared.pool.begin().await?;
        sqlx::query("DELETE FROM queue_published_ids WHERE published_at <= ?")
            .bind(now.saturating_sub(self.shared.dedupe_window_millis))
            .execute(&mut *transaction)
            .await?;
        let first_in_window = sqlx::query(
            "INSERT INTO queue_published_ids (id, published_at) VALUES (?, ?)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&message.id)
        .bind(now)
        .execute(&mut *transaction)
        .await?
        .rows_affected()
            == 1;
        // Also a duplicate: the same id still queued from before the window (long retries).
        let queued = if first_in_window {
            sqlx::query(
                "INSERT INTO queue_messages (id, payload, headers, visible_at) VALUES (?, ?, ?, ?)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&message.id)
            .bind(message.payload.as_ref())
            .bind(&headers)
            .bind(now)
            .execute(&mut *transaction)
            .await?
            .rows_affected()
                == 1
        } else {
            false
        };
        transaction.commit().await?;

        if queued {
            self.shared.changed.notify_waiters();
        }
        Ok(Published { duplicate: !queued })
    }

    async fn pull(&self, max: usize, wait: Duration) -> Result<Vec<Lease>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let now = Instant::now();
        // A wait too long to represent is a wait for ever; a year is the same in practice.
        let deadline = now.checked_add(wait).unwrap_or_else(|| now + Duration::from_secs(365 * 86_400));
        loop {
            // Registered before looking, so a publish between the claim and the sleep still
            // wakes us.
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();

            let claimed = self.claim(max).await?;
            let now = Instant::now();
            if !claimed.is_empty() || now >= deadline {
                return Ok(claimed);
            }
            let wake_at = match self.until_next_visible().await? {
                Some(delay) => deadline.min(now + delay),
                None => deadline,
            };
            tokio::select! {
                () = &mut changed => {}
                () = tokio::time::sleep_until(wake_at) => {}
            }
        }
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>> {
        let rows = sqlx::query("SELECT id, payload, headers, reason FROM queue_dead_letters ORDER BY seq LIMIT ?")
            .bind(i64::try_from(max).unwrap_or(i64::MAX))
            .fetch_all(&self.shared.pool)
            .await?;
        rows.into_iter()
            .map(|row| {
                let id: String = row.try_get("id")?;
                let headers = decode_headers(&id, &row.try_get::<String, _>("headers")?)?;
                let payload: Vec<u8> = row.try_get("payload")?;
                let message = QueueMessage { id, payload: payload.into(), headers };
                Ok(DeadLetter { message, reason: row.try_get("reason")? })
            })
            .collect()
    }
}

fn encode_headers(headers: &Headers) -> Result<String> {
    let headers: BTreeMap<&str, &str> = contract::carried_headers(headers)?.into_iter().collect();
    serde_json::to_string(&headers).map_err(|e| Error::invalid("headers", format!("cannot encode: {e}")))
}

fn decode_headers(id: &str, json: &str) -> Result<Headers> {
    serde_json::from_str(json).map_err(|e| Error::Corrupt { what: "queued headers", detail: format!("{id}: {e}") })
}

/// One claimed row and the token set when it was claimed.
struct LocalLease {
    shared: Arc<Shared>,
    seq: i64,
    id: String,
    token: String,
}

impl LocalLease {
    /// Sets `visible_at` and fails when the row no longer carries our token: the lease expired
    /// and the message was delivered again (or acked) since. `sql` binds the new `visible_at`,
    /// then the row's seq and our token.
    async fn reschedule_while_held(&self, sql: &'static str, visible_at: i64) -> Result<()> {
        let updated = sqlx::query(sql)
            .bind(visible_at)
            .bind(self.seq)
            .bind(&self.token)
            .execute(&self.shared.pool)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(lease_lost(&self.id));
        }
        Ok(())
    }
}

#[async_trait]
impl LeaseHandle for LocalLease {
    async fn ack(&self) -> Result<()> {
        // Already gone is fine: another holder acked it after our lease ran out.
        sqlx::query("DELETE FROM queue_messages WHERE seq = ?").bind(self.seq).execute(&self.shared.pool).await?;
        Ok(())
    }

    async fn retry_after(&self, delay: Duration) -> Result<()> {
        let due = unix_millis().saturating_add(millis(delay));
        self.reschedule_while_held(
            "UPDATE queue_messages SET visible_at = ?, lease_token = NULL
             WHERE seq = ? AND lease_token = ?",
            due,
        )
        .await?;
        // Waiting pullers re-arm their timers for the new due time.
        self.shared.changed.notify_waiters();
        Ok(())
    }

    async fn extend(&self) -> Result<()> {
        let lease_end = unix_millis().saturating_add(self.shared.lease_millis);
        self.reschedule_while_held(
            "UPDATE queue_messages SET visible_at = ? WHERE seq = ? AND lease_token = ?",
            lease_end,
        )
        .await
    }

    async fn dead_letter(&self, letter: DeadLetter) -> Result<()> {
        let headers = encode_headers(&letter.message.headers)?;
        let mut transaction = self.shared.pool.begin().await?;
        // A second holder moving the same message aside keeps the first record.
        sqlx::query(
            "INSERT INTO queue_dead_letters (id, payload, headers, reason, moved_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&letter.message.id)
        .bind(letter.message.payload.as_ref())
        .bind(&headers)
        .bind(&letter.reason)
        .bind(unix_millis())
        .execute(&mut *transaction)
        .await?;
        sqlx::query("DELETE FROM queue_messages WHERE seq = ?").bind(self.seq).execute(&mut *transaction).await?;
        transaction.commit().await?;
        Ok(())
    }
}

fn lease_lost(id: &str) -> Error {
    Error::unavailable("queue lease", format!("{id}: the lease expired and the message was delivered again or acked"))
}
