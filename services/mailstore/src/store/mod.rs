//! The mail state operations, independent of gRPC: each public method is one transaction.
//!
//! - [`directory`] — domains, accounts, aliases; recipient resolution and authentication.
//! - [`mailboxes`] — folders: list, create, delete, rename, subscribe, select.
//! - [`messages`] — one module per operation on messages: deliver, append, read (fetch, search,
//!   quota), flags, expunge, copy/move; and the group commit of deliveries and APPENDs.
//! - [`blobs`] — message bodies, stored once per content: collected after removals, swept hourly.
//! - [`metadata`] — METADATA entries of mailboxes and of the account's server view.
//! - [`postgres`] — what the PostgreSQL forms of the hottest calls share.
//!
//! This file holds what they all build on: the [`Store`], locked mailbox rows, UIDs and MODSEQs,
//! quota usage. No module uses one above it: `postgres` builds on this file alone, `blobs` on
//! `postgres`, `directory` on `blobs`, `messages` on those, `mailboxes` on `messages` (renaming
//! INBOX moves its messages).

mod blobs;
mod directory;
mod mailboxes;
mod messages;
mod metadata;
mod postgres;

pub use directory::{AccountUpdate, Resolution};
pub use messages::{BodySlice, IncomingMessage, NewMessage};

use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::db::{Db, locking};
use crate::events::{MailboxState, Publisher};
use crate::{Error, Result};
use messages::append::Append;
use messages::deliver::Delivery;
use messages::group::Groups;

/// Limits applied to everything stored.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest message body accepted by Deliver and Append, in octets.
    pub max_message_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_message_size: 64 * 1024 * 1024 }
    }
}

/// The mailstore: a database plus the event publisher.
#[derive(Clone)]
pub struct Store {
    db: Db,
    events: Publisher,
    limits: Limits,
    /// Deliveries and APPENDs waiting for a mailbox's next group commit (PostgreSQL).
    deliveries: Groups<Delivery>,
    appends: Groups<Append>,
    /// Bodies waiting for the next collection (PostgreSQL).
    uncollected: blobs::Uncollected,
}

impl Store {
    pub fn new(db: Db, events: Publisher, limits: Limits) -> Self {
        let (deliveries, appends, uncollected) = Default::default();
        Store { db, events, limits, deliveries, appends, uncollected }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

/// The current time in Unix seconds.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// Reads an integer column that holds an unsigned 32-bit IMAP value (UID, UIDVALIDITY).
pub(crate) fn get_u32(row: &AnyRow, column: &str) -> Result<u32> {
    let value: i64 = row.try_get(column)?;
    u32::try_from(value).map_err(|_| Error::Internal(format!("{column} {value} out of range")))
}

/// Reads a non-negative integer column (sizes, counters, MODSEQ).
pub(crate) fn get_u64(row: &AnyRow, column: &str) -> Result<u64> {
    let value: i64 = row.try_get(column)?;
    u64::try_from(value).map_err(|_| Error::Internal(format!("{column} {value} is negative")))
}

/// Reads a 0/1 integer column as a boolean (both databases store booleans as integers).
pub(crate) fn get_bool(row: &AnyRow, column: &str) -> Result<bool> {
    Ok(row.try_get::<i64, _>(column)? != 0)
}

/// Converts a client-supplied unsigned value for storage in a BIGINT column.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::invalid(format!("{what} {value} is too large")))
}

/// A mailbox row locked for a change, with what events need.
#[derive(Clone, Debug)]
pub(crate) struct LockedMailbox {
    pub id: i64,
    pub account_id: i64,
    pub name: String,
    pub uidvalidity: u32,
    pub uid_next: u32,
    pub highest_modseq: u64,
}

impl LockedMailbox {
    fn from_row(row: &AnyRow) -> Result<Self> {
        Ok(LockedMailbox {
            id: row.try_get("id")?,
            account_id: row.try_get("account_id")?,
            name: row.try_get("name")?,
            uidvalidity: get_u32(row, "uidvalidity")?,
            uid_next: get_u32(row, "uid_next")?,
            highest_modseq: get_u64(row, "highest_modseq")?,
        })
    }

    pub fn state(&self) -> MailboxState {
        MailboxState {
            account_id: self.account_id,
            mailbox_id: self.id,
            uidvalidity: self.uidvalidity,
            highest_modseq: self.highest_modseq,
        }
    }
}

impl Store {
    /// Locks the mailbox `mailbox_id` of `account_id`. Another account's mailbox is answered
    /// as NOT_FOUND, exactly like a missing one (tenant isolation).
    pub(crate) async fn lock_mailbox_by_id(
        &self,
        tx: &mut Transaction<'static, Any>,
        account_id: i64,
        mailbox_id: i64,
    ) -> Result<LockedMailbox> {
        let sql = locking!(
            self.db,
            "SELECT id, account_id, name, uidvalidity, uid_next, highest_modseq \
             FROM mailboxes WHERE id = $1 AND account_id = $2"
        );
        let row = sqlx::query(sql).bind(mailbox_id).bind(account_id).fetch_optional(&mut **tx).await?;
        found_mailbox(row, || mailbox_not_found(mailbox_id))
    }

    /// Locks the mailbox named `name` (already validated) of `account_id`.
    pub(crate) async fn lock_mailbox_by_name(
        &self,
        tx: &mut Transaction<'static, Any>,
        account_id: i64,
        name: &str,
    ) -> Result<LockedMailbox> {
        let sql = locking!(
            self.db,
            "SELECT id, account_id, name, uidvalidity, uid_next, highest_modseq \
             FROM mailboxes WHERE account_id = $1 AND name = $2"
        );
        let row = sqlx::query(sql).bind(account_id).bind(name).fetch_optional(&mut **tx).await?;
        found_mailbox(row, || mailbox_not_named(name))
    }

    /// Takes `count` UIDs and one new MODSEQ from the mailbox `name` of `account_id`, locking
    /// it until commit; returns the mailbox after the change and the first UID. One statement,
    /// because it sits on the delivery path. UIDs are never handed out twice: UIDNEXT only grows
    /// (RFC 9051 §2.3.1.1).
    pub(crate) async fn allocate_uids_by_name(
        &self,
        tx: &mut Transaction<'static, Any>,
        account_id: i64,
        name: &str,
        count: u32,
    ) -> Result<(LockedMailbox, u32)> {
        let row = sqlx::query(
            "UPDATE mailboxes SET uid_next = uid_next + $1, highest_modseq = highest_modseq + 1 \
             WHERE account_id = $2 AND name = $3 \
             RETURNING id, account_id, name, uidvalidity, uid_next, highest_modseq",
        )
        .bind(i64::from(count))
        .bind(account_id)
        .bind(name)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| mailbox_not_named(name))?;
        allocated(&row, count)
    }

    /// [`Store::allocate_uids_by_name`] for a mailbox already locked by this transaction.
    pub(crate) async fn allocate_uids(
        &self,
        tx: &mut Transaction<'static, Any>,
        mailbox: &mut LockedMailbox,
        count: u32,
    ) -> Result<u32> {
        let row = sqlx::query(
            "UPDATE mailboxes SET uid_next = uid_next + $1, highest_modseq = highest_modseq + 1 WHERE id = $2 \
             RETURNING id, account_id, name, uidvalidity, uid_next, highest_modseq",
        )
        .bind(i64::from(count))
        .bind(mailbox.id)
        .fetch_one(&mut **tx)
        .await?;
        let (updated, first) = allocated(&row, count)?;
        *mailbox = updated;
        Ok(first)
    }

    /// Raises a locked mailbox's HIGHESTMODSEQ by one and returns the new value.
    pub(crate) async fn bump_modseq(
        &self,
        tx: &mut Transaction<'static, Any>,
        mailbox: &mut LockedMailbox,
    ) -> Result<u64> {
        let modseq = mailbox.highest_modseq + 1;
        sqlx::query("UPDATE mailboxes SET highest_modseq = $1 WHERE id = $2")
            .bind(to_i64(modseq, "MODSEQ")?)
            .bind(mailbox.id)
            .execute(&mut **tx)
            .await?;
        mailbox.highest_modseq = modseq;
        Ok(modseq)
    }

    /// A new UIDVALIDITY for a mailbox of a locked account: the current time in seconds, or one
    /// more than the last one handed out, whichever is larger, so a mailbox deleted and
    /// recreated within a second still gets a new value (RFC 9051 §2.3.1.1).
    pub(crate) async fn next_uidvalidity(&self, tx: &mut Transaction<'static, Any>, account_id: i64) -> Result<u32> {
        let last: i64 = sqlx::query_scalar("SELECT last_uidvalidity FROM accounts WHERE id = $1")
            .bind(account_id)
            .fetch_one(&mut **tx)
            .await?;
        let next = now().max(last + 1);
        let uidvalidity = u32::try_from(next).map_err(|_| Error::Internal("UIDVALIDITY overflow".into()))?;
        sqlx::query("UPDATE accounts SET last_uidvalidity = $1 WHERE id = $2")
            .bind(next)
            .bind(account_id)
            .execute(&mut **tx)
            .await?;
        Ok(uidvalidity)
    }

    /// Creates a mailbox row inside a transaction that holds the account lock.
    pub(crate) async fn insert_mailbox(
        &self,
        tx: &mut Transaction<'static, Any>,
        account_id: i64,
        name: &str,
        special_use: &str,
    ) -> Result<LockedMailbox> {
        let uidvalidity = self.next_uidvalidity(tx, account_id).await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO mailboxes (account_id, name, uidvalidity, special_use) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(account_id)
        .bind(name)
        .bind(i64::from(uidvalidity))
        .bind(special_use)
        .fetch_one(&mut **tx)
        .await?;
        sqlx::query("INSERT INTO recent_marks (mailbox_id) VALUES ($1)").bind(id).execute(&mut **tx).await?;
        Ok(LockedMailbox { id, account_id, name: name.to_string(), uidvalidity, uid_next: 1, highest_modseq: 1 })
    }

    /// Locks an account row so quota checks and usage updates of concurrent transactions on
    /// the same account happen one after the other.
    pub(crate) async fn lock_account(
        &self,
        tx: &mut Transaction<'static, Any>,
        account_id: i64,
    ) -> Result<AccountUsage> {
        let sql = locking!(
            self.db,
            "SELECT suspended, quota_storage, quota_messages, used_storage, used_messages \
             FROM accounts WHERE id = $1"
        );
        let row = sqlx::query(sql)
            .bind(account_id)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| Error::not_found(format!("no account with id {account_id}")))?;
        Ok(AccountUsage {
            suspended: get_bool(&row, "suspended")?,
            quota_storage: get_u64(&row, "quota_storage")?,
            quota_messages: get_u64(&row, "quota_messages")?,
            used_storage: get_u64(&row, "used_storage")?,
            used_messages: get_u64(&row, "used_messages")?,
        })
    }

    /// Counts `messages` more messages of `storage` octets against the account, if they fit its
    /// quota and it is not suspended, and locks the account row until commit. One conditional
    /// statement on the delivery path; the reason for a refusal is looked up only then.
    pub(crate) async fn reserve_usage(
        &self,
        tx: &mut Transaction<'static, Any>,
        account_id: i64,
        storage: u64,
        messages: u64,
    ) -> Result<()> {
        let (storage, messages) = (to_i64(storage, "size")?, to_i64(messages, "message count")?);
        let reserved = sqlx::query(
            "UPDATE accounts SET used_storage = used_storage + $1, used_messages = used_messages + $2 \
             WHERE id = $3 AND suspended = 0 \
             AND (quota_storage = 0 OR used_storage + $1 <= quota_storage) \
             AND (quota_messages = 0 OR used_messages + $2 <= quota_messages)",
        )
        .bind(storage)
        .bind(messages)
        .bind(account_id)
        .execute(&mut **tx)
        .await?;
        if reserved.rows_affected() == 1 {
            return Ok(());
        }
        let usage = self.lock_account(tx, account_id).await?;
        if usage.suspended {
            return Err(Error::FailedPrecondition(format!("account {account_id} is suspended")));
        }
        usage.check_fits(storage as u64, messages as u64)?;
        // The usage changed between the two statements (an expunge, a quota raise).
        Err(Error::Conflict(format!("usage of account {account_id} changed concurrently; retry")))
    }

    /// Adds (or with negative values removes) usage of a locked account.
    pub(crate) async fn add_usage(
        &self,
        tx: &mut Transaction<'static, Any>,
        account_id: i64,
        storage: i64,
        messages: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE accounts SET used_storage = used_storage + $1, used_messages = used_messages + $2 \
             WHERE id = $3",
        )
        .bind(storage)
        .bind(messages)
        .bind(account_id)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}

/// A mailbox row, or the `missing` error.
fn found_mailbox(row: Option<AnyRow>, missing: impl FnOnce() -> Error) -> Result<LockedMailbox> {
    row.as_ref().map(LockedMailbox::from_row).transpose()?.ok_or_else(missing)
}

/// The answer for a mailbox id that is missing or another account's: the same, so one account
/// learns nothing of another's mailboxes.
pub(super) fn mailbox_not_found(mailbox_id: i64) -> Error {
    Error::not_found(format!("no mailbox with id {mailbox_id}"))
}

/// The answer for a mailbox name the account has no mailbox by.
pub(super) fn mailbox_not_named(name: &str) -> Error {
    Error::not_found(format!("no mailbox named {name:?}"))
}

/// The mailbox row returned by a UID allocation and the first UID it handed out.
fn allocated(row: &AnyRow, count: u32) -> Result<(LockedMailbox, u32)> {
    let uid_next: i64 = row.try_get("uid_next")?;
    let mailbox = LockedMailbox {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        name: row.try_get("name")?,
        uidvalidity: get_u32(row, "uidvalidity")?,
        // UIDs are 32-bit (RFC 9051 §2.3.1.1); the transaction is rolled back when they run out.
        uid_next: u32::try_from(uid_next)
            .ok()
            .filter(|next| *next < u32::MAX)
            .ok_or_else(|| Error::FailedPrecondition("the mailbox ran out of UIDs".into()))?,
        highest_modseq: get_u64(row, "highest_modseq")?,
    };
    let first = mailbox.uid_next - count;
    Ok((mailbox, first))
}

/// An account's quota and usage, read under the account lock.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AccountUsage {
    pub suspended: bool,
    pub quota_storage: u64,
    pub quota_messages: u64,
    pub used_storage: u64,
    pub used_messages: u64,
}

impl AccountUsage {
    /// Whether `messages` more messages of `storage` octets in all fit (0 limits = unlimited).
    pub fn check_fits(&self, storage: u64, messages: u64) -> Result<()> {
        if self.quota_storage > 0 && self.used_storage + storage > self.quota_storage {
            return Err(Error::QuotaExceeded(format!(
                "storage quota exceeded: {} of {} octets used, {storage} more needed",
                self.used_storage, self.quota_storage
            )));
        }
        if self.quota_messages > 0 && self.used_messages + messages > self.quota_messages {
            return Err(Error::QuotaExceeded(format!(
                "message quota exceeded: {} of {} messages stored",
                self.used_messages, self.quota_messages
            )));
        }
        Ok(())
    }
}
