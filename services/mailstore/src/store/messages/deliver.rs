//! Deliver: a message from the queue stored for one recipient, once per (queue message,
//! recipient) whatever happens to the account since; and the delivery records that remember it.
//!
//! On PostgreSQL the common delivery (an existing address or alias, a mailbox that exists, room
//! in the quota, a new idempotency key) is one data-modifying statement, [`DELIVER`], written
//! by the group commit. Anything else changes nothing there and is left to the general
//! transaction, which tells why.

use kubemail_proto::mailstore::DeliverResponse;
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::Query;
use sqlx::{Any, Row};

use super::group::GroupedWrite;
use super::{IncomingMessage, NewMessage, Stored};
use crate::store::directory::{Lookup, find_target};
use crate::store::{LockedMailbox, Store, get_u32, now, to_i64};
use crate::validate::{self, INBOX};
use crate::{Error, Result};

/// Longest queue message id accepted as an idempotency key.
const MAX_QUEUE_ID: usize = 255;

/// One delivery, checked: a message for one recipient under its idempotency key.
#[derive(Debug)]
pub(in crate::store) struct Delivery {
    queue_message_id: String,
    /// Normalised, with its domain.
    recipient: String,
    domain: String,
    /// Validated; INBOX when the caller named none.
    mailbox: String,
    /// Unix seconds.
    internal_date: i64,
    message: IncomingMessage,
}

impl Store {
    /// Stores `message` for `recipient` unless this (queue message, recipient) was delivered
    /// before, in which case the first delivery's result comes back with `duplicate` set.
    pub async fn deliver(
        &self,
        queue_message_id: &str,
        recipient: &str,
        mailbox: &str,
        internal_date: i64,
        message: IncomingMessage,
    ) -> Result<DeliverResponse> {
        if queue_message_id.is_empty() || queue_message_id.len() > MAX_QUEUE_ID {
            return Err(Error::invalid(format!("queue message id must have 1 to {MAX_QUEUE_ID} octets")));
        }
        let (recipient, _, domain) = validate::address(recipient)?;
        let delivery = Delivery {
            queue_message_id: queue_message_id.to_string(),
            recipient,
            domain,
            mailbox: if mailbox.is_empty() { INBOX.to_string() } else { validate::mailbox_name(mailbox)? },
            internal_date: if internal_date > 0 { internal_date } else { now() },
            message,
        };
        self.write_grouped(&self.deliveries, delivery).await
    }

    /// Any delivery, in a transaction of its own that tells why when it cannot store the
    /// message.
    async fn deliver_general(&self, delivery: &Delivery) -> Result<DeliverResponse> {
        let Delivery { queue_message_id, recipient, domain, mailbox, internal_date, message } = delivery;
        let mut tx = self.db.write().await?;
        // The idempotency key is claimed before anything else: a pair delivered before is a
        // duplicate whatever happened since (quota filled, account suspended, alias removed),
        // and a concurrent delivery of the same pair waits here for the first to finish.
        let claimed = sqlx::query(
            "INSERT INTO deliveries (queue_message_id, recipient, delivered_at) VALUES ($1, $2, $3) \
             ON CONFLICT (queue_message_id, recipient) DO NOTHING",
        )
        .bind(queue_message_id)
        .bind(recipient)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        if claimed.rows_affected() == 0 {
            return self.previous_delivery(&mut *tx, queue_message_id, recipient).await;
        }
        let target = match find_target(&mut tx, recipient, domain).await? {
            Lookup::Found(target) => target,
            Lookup::Unknown | Lookup::NotLocal => return Err(Error::not_found(format!("no mailbox for {recipient}"))),
        };
        if target.suspended {
            return Err(Error::FailedPrecondition(format!("account {} is suspended", target.address)));
        }
        self.reserve_usage(&mut tx, target.account_id, message.size(), 1).await?;
        let new = NewMessage { internal_date: *internal_date, ..Default::default() };
        // A delivery into a folder that does not exist (any more) lands in INBOX rather than
        // being refused: the mail matters more than the filing.
        let (folder, uid) = match self.insert_into(&mut tx, target.account_id, mailbox, message, &new).await {
            Err(Error::NotFound(_)) if mailbox != INBOX => {
                self.insert_into(&mut tx, target.account_id, INBOX, message, &new).await?
            }
            other => other?,
        };
        sqlx::query(
            "UPDATE deliveries SET account_id = $1, mailbox_id = $2, uidvalidity = $3, uid = $4 \
             WHERE queue_message_id = $5 AND recipient = $6",
        )
        .bind(target.account_id)
        .bind(folder.id)
        .bind(i64::from(folder.uidvalidity))
        .bind(i64::from(uid))
        .bind(queue_message_id)
        .bind(recipient)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.announce_added(&folder, &[Stored::new(&folder, uid, &NewMessage::default())]).await;
        Ok(Delivery::answer(&folder, uid))
    }

    /// The recorded result of a delivery whose key is already claimed.
    async fn previous_delivery<'e, E>(
        &self,
        executor: E,
        queue_message_id: &str,
        recipient: &str,
    ) -> Result<DeliverResponse>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        let row = sqlx::query(
            "SELECT account_id, mailbox_id, uidvalidity, uid FROM deliveries \
             WHERE queue_message_id = $1 AND recipient = $2",
        )
        .bind(queue_message_id)
        .bind(recipient)
        .fetch_one(executor)
        .await?;
        Ok(DeliverResponse {
            account_id: row.try_get("account_id")?,
            mailbox_id: row.try_get("mailbox_id")?,
            uidvalidity: get_u32(&row, "uidvalidity")?,
            uid: get_u32(&row, "uid")?,
            duplicate: true,
        })
    }

    /// Forgets delivery records made before `cutoff` (Unix seconds). A record only needs to
    /// outlive every redelivery of its envelope, i.e. the queue's maximum message age.
    pub async fn prune_delivery_records(&self, cutoff: i64) -> Result<u64> {
        let pruned = sqlx::query("DELETE FROM deliveries WHERE delivered_at < $1")
            .bind(cutoff)
            .execute(self.db.writer())
            .await?;
        Ok(pruned.rows_affected())
    }
}

impl GroupedWrite for Delivery {
    /// The recipient (normalised) and the mailbox name (validated).
    type Key = (String, String);
    type Answer = DeliverResponse;

    fn key(&self) -> Self::Key {
        (self.recipient.clone(), self.mailbox.clone())
    }

    fn octets(&self) -> u64 {
        self.message.size()
    }

    fn common_case(&self, now: i64) -> Result<Query<'_, Postgres, PgArguments>> {
        deliver_query(self, now)
    }

    fn stored(&self, folder: &LockedMailbox, uid: u32) -> Stored {
        // Delivered mail arrives with no flags.
        Stored::new(folder, uid, &NewMessage::default())
    }

    fn answer(folder: &LockedMailbox, uid: u32) -> DeliverResponse {
        DeliverResponse {
            account_id: folder.account_id,
            mailbox_id: folder.id,
            uidvalidity: folder.uidvalidity,
            uid,
            duplicate: false,
        }
    }

    async fn general(&self, store: &Store) -> Result<DeliverResponse> {
        store.deliver_general(self).await
    }
}

/// The whole common delivery in one statement, so one round trip and one implicit transaction:
///
/// 1. `target` — the account of the address or of the alias (subaddresses and catch-all are
///    left to the general path);
/// 2. `usage` — counts the message against the account if it fits the quota, the account is not
///    suspended, the mailbox exists and this (queue message, recipient) was not delivered
///    before; it locks the account row first, in the same order as every other transaction;
/// 3. `mailbox` — takes the UID and the new MODSEQ, locking the mailbox row;
/// 4. `blob`, `message` — the body (once per content) and the message row;
/// 5. `counted` — the mailbox's counters (an unseen message and its size);
/// 6. `record` — the delivery record that makes redelivery idempotent.
///
/// If the mailbox disappeared between the snapshot and its lock (a concurrent DELETE or RENAME)
/// after the usage was counted, `record` inserts a NULL UID and the NOT NULL constraint aborts
/// the whole statement; if a concurrent delivery of the same pair committed first, its record's
/// primary key does. Either way nothing is written and `None` sends the caller down the general
/// path, as it does when the statement matched nothing.
const DELIVER: &str = "\
WITH target AS (
    SELECT id FROM accounts WHERE address = $2
    UNION ALL
    SELECT account_id FROM aliases WHERE address = $2
    LIMIT 1
),
usage AS (
    UPDATE accounts SET used_storage = used_storage + $4, used_messages = used_messages + 1
    WHERE id = (SELECT id FROM target) AND suspended = 0
      AND (quota_storage = 0 OR used_storage + $4 <= quota_storage)
      AND (quota_messages = 0 OR used_messages + 1 <= quota_messages)
      AND EXISTS (SELECT 1 FROM mailboxes WHERE account_id = accounts.id AND name = $3)
      AND NOT EXISTS (SELECT 1 FROM deliveries WHERE queue_message_id = $1 AND recipient = $2)
    RETURNING id
),
mailbox AS (
    UPDATE mailboxes SET uid_next = uid_next + 1, highest_modseq = highest_modseq + 1
    WHERE account_id = (SELECT id FROM usage) AND name = $3 AND uid_next + 1 < 4294967295
    RETURNING id, account_id, name, uidvalidity, uid_next, highest_modseq
),
blob AS (
    INSERT INTO blobs (hash, data, header, cached) SELECT $5, $6, $10, $11 FROM mailbox
    ON CONFLICT (hash) DO UPDATE SET hash = excluded.hash
    RETURNING hash
),
message AS (
    INSERT INTO messages (mailbox_id, uid, account_id, modseq, flags, keywords, internal_date, size, header_size, blob_hash, saved_at)
    SELECT mailbox.id, mailbox.uid_next - 1, mailbox.account_id, mailbox.highest_modseq, 0, '', $7, $4, $8, blob.hash, $9
    FROM mailbox, blob
    RETURNING uid
),
counted AS (
    UPDATE mailbox_counters c SET messages = c.messages + 1, unseen = c.unseen + 1, size = c.size + $4
    FROM mailbox, message WHERE c.mailbox_id = mailbox.id
),
record AS (
    INSERT INTO deliveries (queue_message_id, recipient, account_id, mailbox_id, uidvalidity, uid, delivered_at)
    SELECT $1, $2, usage.id, mailbox.id, mailbox.uidvalidity, message.uid, $9
    FROM usage LEFT JOIN mailbox ON true LEFT JOIN message ON true
    RETURNING uid
)
SELECT mailbox.id, mailbox.account_id, mailbox.name, mailbox.uidvalidity, mailbox.uid_next, mailbox.highest_modseq
FROM mailbox, record";

/// The [`DELIVER`] statement for `delivery`.
fn deliver_query(delivery: &Delivery, now: i64) -> Result<Query<'_, Postgres, PgArguments>> {
    let message = &delivery.message;
    Ok(sqlx::query(DELIVER)
        .bind(&delivery.queue_message_id)
        .bind(&delivery.recipient)
        .bind(&delivery.mailbox)
        .bind(to_i64(message.size(), "size")?)
        .bind(message.hash())
        .bind(message.body())
        .bind(delivery.internal_date)
        .bind(to_i64(message.header_size(), "header size")?)
        .bind(now)
        .bind(message.header())
        .bind(message.cached()))
}
