//! PostgreSQL forms of the hottest calls, each one statement on the typed pool.
//!
//! - [`DELIVER`] — the common delivery (an existing address or alias, a mailbox that exists,
//!   room in the quota, a new idempotency key) in one data-modifying statement. Anything else
//!   changes nothing and is left to the general transaction in `messages.rs`, which tells why.
//! - [`APPEND`] — IMAP APPEND the same way: one statement when the mailbox exists and the
//!   message fits, the general transaction otherwise.
//! - [`write_one`], [`write_all`] — run those for one write, or for a group of writes into one
//!   mailbox in one transaction (see `group.rs`).
//! - [`store_flags`] — STORE's write, after a read without locks, in one statement.
//! - [`expunge`] — EXPUNGE in one statement; [`collect_blobs`] — bodies no message refers to
//!   any more, collected in one statement.
//! - [`select`] — the SELECT snapshot as one row of arrays.
//!
//! The general code in `messages.rs` and `mailboxes.rs` stays the reference: the mailstore
//! test suite runs against both databases, so these forms must answer exactly what it answers.

use kubemail_proto::mailstore::SelectMailboxResponse;
use sqlx::Row;
use sqlx::postgres::{PgArguments, PgDatabaseError, PgPool, PgRow, Postgres};
use sqlx::query::Query;

use super::mailboxes::Snapshot;
use super::messages::{Append, Delivery};
use super::{LockedMailbox, mailbox_not_named, to_i64};
use crate::{Error, Result};

/// PostgreSQL's `unique_violation` and `not_null_violation` SQLSTATEs.
const UNIQUE_VIOLATION: &str = "23505";
const NOT_NULL_VIOLATION: &str = "23502";

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
    INSERT INTO blobs (hash, data) SELECT $5, $6 FROM mailbox
    ON CONFLICT (hash) DO UPDATE SET hash = excluded.hash
    RETURNING hash
),
message AS (
    INSERT INTO messages (mailbox_id, uid, account_id, modseq, flags, keywords, internal_date, size, header_size, blob_hash)
    SELECT mailbox.id, mailbox.uid_next - 1, mailbox.account_id, mailbox.highest_modseq, 0, '', $7, $4, $8, blob.hash
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

/// IMAP APPEND of the common case, as [`DELIVER`] without the recipient lookup and the delivery
/// record: `usage` counts the message (locking the account row first, like every writer), then
/// `mailbox` takes the UID and MODSEQ, `blob` and `message` store it and `counted` adds it to the
/// mailbox's counters. Should the mailbox have gone between the snapshot and its lock, `message`
/// inserts NULLs and its NOT NULL constraints abort the statement after `usage` counted it, as
/// `record` does in [`DELIVER`].
const APPEND: &str = "\
WITH usage AS (
    UPDATE accounts SET used_storage = used_storage + $3, used_messages = used_messages + 1
    WHERE id = $1 AND suspended = 0
      AND (quota_storage = 0 OR used_storage + $3 <= quota_storage)
      AND (quota_messages = 0 OR used_messages + 1 <= quota_messages)
      AND EXISTS (SELECT 1 FROM mailboxes WHERE account_id = $1 AND name = $2)
    RETURNING id
),
mailbox AS (
    UPDATE mailboxes SET uid_next = uid_next + 1, highest_modseq = highest_modseq + 1
    WHERE account_id = (SELECT id FROM usage) AND name = $2 AND uid_next + 1 < 4294967295
    RETURNING id, account_id, name, uidvalidity, uid_next, highest_modseq
),
blob AS (
    INSERT INTO blobs (hash, data) SELECT $4, $5 FROM mailbox
    ON CONFLICT (hash) DO UPDATE SET hash = excluded.hash
    RETURNING hash
),
message AS (
    INSERT INTO messages (mailbox_id, uid, account_id, modseq, flags, keywords, internal_date, size, header_size, blob_hash)
    SELECT mailbox.id, mailbox.uid_next - 1, usage.id, mailbox.highest_modseq, $6, $7, $8, $3, $9, blob.hash
    FROM usage LEFT JOIN mailbox ON true LEFT JOIN blob ON true
    RETURNING uid
),
counted AS (
    UPDATE mailbox_counters c
    SET messages = c.messages + 1, unseen = c.unseen + CASE WHEN ($6 & 1) = 0 THEN 1 ELSE 0 END,
        deleted = c.deleted + CASE WHEN ($6 & 8) <> 0 THEN 1 ELSE 0 END, size = c.size + $3
    FROM mailbox, message WHERE c.mailbox_id = mailbox.id
)
SELECT mailbox.id, mailbox.account_id, mailbox.name, mailbox.uidvalidity, mailbox.uid_next, mailbox.highest_modseq
FROM mailbox, message";

/// The [`APPEND`] statement for `append`.
pub(super) fn append_query(append: &Append) -> Result<Query<'_, Postgres, PgArguments>> {
    let Append { account_id, mailbox, message, new } = append;
    Ok(sqlx::query(APPEND)
        .bind(account_id)
        .bind(mailbox)
        .bind(to_i64(message.size(), "size")?)
        .bind(message.hash())
        .bind(message.body())
        .bind(i64::from(new.system_flags))
        .bind(&new.keywords)
        .bind(new.internal_date)
        .bind(to_i64(message.header_size(), "header size")?))
}

/// One write's common-case statement ([`DELIVER`], [`APPEND`]) on its own; the mailbox after
/// it and the message's UID, or `None` when nothing was written and the general path must
/// decide.
pub(super) async fn write_one(
    pool: &PgPool,
    statement: Query<'_, Postgres, PgArguments>,
) -> Result<Option<(LockedMailbox, u32)>> {
    match statement.fetch_optional(pool).await {
        Ok(row) => row.as_ref().map(written).transpose(),
        Err(error) if left_to_general_path(&error) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// The common-case statements of a group of writes in one transaction, so one commit for all:
/// for each the mailbox after it and the message's UID, or `None` when nothing was written for
/// it and the general path must decide. A statement that fails rolls the whole group back: the
/// caller then writes each on its own.
pub(super) async fn write_all<'q>(
    pool: &PgPool,
    statements: Vec<Result<Query<'q, Postgres, PgArguments>>>,
) -> Result<Vec<Option<(LockedMailbox, u32)>>> {
    let mut tx = pool.begin().await?;
    let mut results = Vec::with_capacity(statements.len());
    for statement in statements {
        let row = statement?.fetch_optional(&mut *tx).await?;
        results.push(row.as_ref().map(written).transpose()?);
    }
    tx.commit().await?;
    Ok(results)
}

/// The [`DELIVER`] statement for `delivery`.
pub(super) fn deliver_query(delivery: &Delivery, now: i64) -> Result<Query<'_, Postgres, PgArguments>> {
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
        .bind(now))
}

/// Whether `error` is one of the concurrent changes [`DELIVER`] and [`APPEND`] stop at without
/// writing.
fn left_to_general_path(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(error) = error else { return false };
    matches!(
        error.try_downcast_ref::<PgDatabaseError>().map(PgDatabaseError::code),
        Some(UNIQUE_VIOLATION | NOT_NULL_VIOLATION)
    )
}

/// The mailbox and UID a [`DELIVER`] row reports.
fn written(row: &PgRow) -> Result<(LockedMailbox, u32)> {
    let folder = mailbox_row(row)?;
    let uid = folder.uid_next - 1;
    Ok((folder, uid))
}

/// The mailbox columns a writing statement returns.
fn mailbox_row(row: &PgRow) -> Result<LockedMailbox> {
    Ok(LockedMailbox {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        name: row.try_get("name")?,
        uidvalidity: u32_column(row, "uidvalidity")?,
        uid_next: u32_column(row, "uid_next")?,
        highest_modseq: u64_column(row, "highest_modseq")?,
    })
}

/// STORE's write when the new flags were worked out from a read without locks: one statement
/// that takes the mailbox's next MODSEQ (locking its row, as every writer does first) and
/// changes each message only if its MODSEQ is still the one read, so a concurrent change is
/// never overwritten. It reports the mailbox after the change and the UIDs it changed; the
/// caller does the rest again under locks. The mailbox row is locked for this one statement,
/// not for the round trips of a transaction. Should every message have changed in between, the
/// MODSEQ is taken all the same: HIGHESTMODSEQ rises with nothing behind it, and a client that
/// resynchronises finds nothing new.
const STORE_FLAGS: &str = "\
WITH mailbox AS (
    UPDATE mailboxes SET highest_modseq = highest_modseq + 1
    WHERE id = $1 AND account_id = $2
    RETURNING id, account_id, name, uidvalidity, uid_next, highest_modseq
),
changed AS (
    UPDATE messages m SET flags = c.flags, keywords = c.keywords, modseq = mailbox.highest_modseq
    FROM mailbox, unnest($3::text::bigint[], $4::text::bigint[], $5::text::bigint[], $6::text::text[])
        AS c (uid, modseq, flags, keywords)
    WHERE m.mailbox_id = mailbox.id AND m.uid = c.uid AND m.modseq = c.modseq
    RETURNING m.uid
)
SELECT mailbox.id, mailbox.account_id, mailbox.name, mailbox.uidvalidity, mailbox.uid_next, mailbox.highest_modseq,
       coalesce((SELECT array_agg(uid ORDER BY uid) FROM changed), '{}') AS uids
FROM mailbox";

/// One message's new flags for [`store_flags`]: its UID, the MODSEQ it was read with, and the
/// system flags and keywords (as stored) to write.
pub(super) struct FlagWrite<'a> {
    pub uid: u32,
    pub read_modseq: u64,
    pub system: u32,
    pub keywords: &'a str,
}

/// Runs [`STORE_FLAGS`]: the mailbox after it and the UIDs changed, ascending; `None` when the
/// mailbox is gone (or not the account's).
pub(super) async fn store_flags(
    pool: &PgPool,
    account_id: i64,
    mailbox_id: i64,
    writes: &[FlagWrite<'_>],
) -> Result<Option<(LockedMailbox, Vec<u32>)>> {
    let read_modseqs = writes.iter().map(|w| to_i64(w.read_modseq, "MODSEQ").map(|m| m.to_string()));
    let row = sqlx::query(STORE_FLAGS)
        .bind(mailbox_id)
        .bind(account_id)
        .bind(array_literal(writes.iter().map(|w| w.uid.to_string())))
        .bind(array_literal(read_modseqs.collect::<Result<Vec<_>>>()?))
        .bind(array_literal(writes.iter().map(|w| w.system.to_string())))
        .bind(array_literal(writes.iter().map(|w| w.keywords.to_string())))
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let uids: Vec<i64> = row.try_get("uids")?;
    let uids = uids.into_iter().map(|uid| to_u32("uid", uid)).collect::<Result<_>>()?;
    Ok(Some((mailbox_row(&row)?, uids)))
}

/// EXPUNGE of messages found \Deleted by a read without locks, in one statement:
///
/// 1. `account` — locks the account row first, in the same order as every other writer;
/// 2. `mailbox` — takes the mailbox's next MODSEQ, locking its row;
/// 3. `doomed` — deletes those of the messages that are still \Deleted (the flag is checked
///    again on the row as it is now, so a message undeleted meanwhile stays), or all of them
///    unless `$4` (POP3's removal of the messages its client marked);
/// 4. `recorded` — remembers each expunged UID with the MODSEQ (for CONDSTORE and QRESYNC);
/// 5. `usage` — takes their octets and count off the account.
///
/// It reports the mailbox after the change and each removed message's UID and body hash, in
/// UID order (one row with NULLs when none was left to remove: the MODSEQ was taken all the
/// same, as in [`STORE_FLAGS`]); no row when the mailbox is gone or not the account's.
const EXPUNGE: &str = "\
WITH account AS (
    SELECT id FROM accounts WHERE id = $2 FOR UPDATE
),
mailbox AS (
    UPDATE mailboxes SET highest_modseq = highest_modseq + 1
    WHERE id = $1 AND account_id = (SELECT id FROM account)
    RETURNING id, account_id, name, uidvalidity, uid_next, highest_modseq
),
doomed AS (
    DELETE FROM messages m USING mailbox
    WHERE m.mailbox_id = mailbox.id AND m.uid = ANY($3::text::bigint[]) AND ((m.flags & 8) <> 0 OR NOT $4)
    RETURNING m.uid, m.size, m.blob_hash
),
recorded AS (
    INSERT INTO expunged (mailbox_id, uid, modseq)
    SELECT mailbox.id, doomed.uid, mailbox.highest_modseq FROM mailbox, doomed
    ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = excluded.modseq
),
usage AS (
    UPDATE accounts
    SET used_storage = used_storage - (SELECT coalesce(sum(size), 0) FROM doomed),
        used_messages = used_messages - (SELECT count(*) FROM doomed)
    WHERE id = (SELECT id FROM account)
)
SELECT mailbox.id, mailbox.account_id, mailbox.name, mailbox.uidvalidity, mailbox.uid_next, mailbox.highest_modseq,
       doomed.uid, doomed.blob_hash
FROM mailbox LEFT JOIN doomed ON true
ORDER BY doomed.uid";

/// Runs [`EXPUNGE`] for `uids`, those flagged \Deleted only if `flagged_only`: the mailbox
/// after it, the UIDs removed (ascending) and the hashes of their bodies (sorted, once each);
/// `None` when the mailbox is gone.
pub(super) async fn expunge(
    pool: &PgPool,
    account_id: i64,
    mailbox_id: i64,
    uids: &[u32],
    flagged_only: bool,
) -> Result<Option<(LockedMailbox, Vec<u32>, Vec<String>)>> {
    let rows = sqlx::query(EXPUNGE)
        .bind(mailbox_id)
        .bind(account_id)
        .bind(array_literal(uids.iter().map(u32::to_string)))
        .bind(flagged_only)
        .fetch_all(pool)
        .await?;
    let Some(first) = rows.first() else { return Ok(None) };
    let folder = mailbox_row(first)?;
    let (mut removed, mut hashes) = (Vec::with_capacity(rows.len()), Vec::with_capacity(rows.len()));
    for row in &rows {
        if let Some(uid) = row.try_get::<Option<i64>, _>("uid")? {
            removed.push(to_u32("uid", uid)?);
            hashes.push(row.try_get::<String, _>("blob_hash")?);
        }
    }
    hashes.sort();
    hashes.dedup();
    Ok(Some((folder, removed, hashes)))
}

/// Deletes the bodies of `hashes` that no message refers to any more, in one statement.
pub(super) async fn collect_blobs(pool: &PgPool, hashes: &[String]) -> Result<()> {
    sqlx::query(
        "DELETE FROM blobs WHERE hash = ANY($1::text::text[]) \
         AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob_hash = blobs.hash)",
    )
    .bind(array_literal(hashes.iter().cloned()))
    .execute(pool)
    .await?;
    Ok(())
}

/// The mailbox row and, aggregated over its messages, what SELECT needs: the messages packed
/// into one `bytea` of fixed-size `$record`s (big-endian, as `int8send`/`int4send` write them),
/// so 10,000 messages decode in one pass without per-value work; keywords, which few messages
/// have, as arrays.
///
/// The rows come in the order the scan finds them (nearly UID order, as UIDs are handed out in
/// the order rows are written): [`Snapshot`] puts them in UID order on the mailstore, which
/// scales out, rather than in the database, which does not. Sorting 10,000 rows in PostgreSQL
/// took a third of this statement's time.
macro_rules! select_packed {
    ($record:literal) => {
        concat!(
            "SELECT b.id, b.name, b.uidvalidity, b.uid_next, b.highest_modseq, b.special_use, b.subscribed,
       m.messages, m.size, m.keyword_uids, m.keywords
FROM mailboxes b
CROSS JOIN LATERAL (
    SELECT coalesce(string_agg(",
            $record,
            ", ''), '') AS messages,
           coalesce(sum(size), 0)::bigint AS size,
           coalesce(array_agg(uid) FILTER (WHERE keywords <> ''), '{}') AS keyword_uids,
           coalesce(array_agg(keywords) FILTER (WHERE keywords <> ''), '{}') AS keywords
    FROM messages WHERE mailbox_id = b.id
) m
WHERE b.account_id = $1 AND b.name = $2"
        )
    };
}

/// IMAP's snapshot: UID (int8), flags (int4) and MODSEQ (int8) of each message.
const SELECT: &str = select_packed!("int8send(uid) || int4send(flags::int4) || int8send(modseq)");
/// POP3's: the size (int8) after those. Its own statement: a size chosen by a parameter would
/// cost IMAP's SELECT a test per message (10–15 % of the statement at 10,000 messages).
const SELECT_WITH_SIZES: &str =
    select_packed!("int8send(uid) || int4send(flags::int4) || int8send(modseq) || int8send(size)");

/// Octets per message in the packed column of [`SELECT`], and what [`SELECT_WITH_SIZES`] adds.
const PACKED_MESSAGE: usize = 20;
const PACKED_SIZE: usize = 8;

/// The SELECT snapshot of the mailbox `name` (validated) of `account_id`, from one statement
/// (so one consistent snapshot without an explicit transaction); each message's size too with
/// `with_sizes`.
pub(super) async fn select(
    pool: &PgPool,
    account_id: i64,
    name: &str,
    with_sizes: bool,
) -> Result<SelectMailboxResponse> {
    let row = sqlx::query(if with_sizes { SELECT_WITH_SIZES } else { SELECT })
        .bind(account_id)
        .bind(name)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| mailbox_not_named(name))?;
    let mailbox = kubemail_proto::mailstore::MailboxInfo {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        uidvalidity: u32_column(&row, "uidvalidity")?,
        uidnext: u32_column(&row, "uid_next")?,
        highest_modseq: u64_column(&row, "highest_modseq")?,
        special_use: row.try_get("special_use")?,
        subscribed: row.try_get::<i64, _>("subscribed")? != 0,
        ..Default::default()
    };
    let packed: Vec<u8> = row.try_get("messages")?;
    let keyword_uids: Vec<i64> = row.try_get("keyword_uids")?;
    let keywords: Vec<String> = row.try_get("keywords")?;
    let record = PACKED_MESSAGE + if with_sizes { PACKED_SIZE } else { 0 };
    if !packed.len().is_multiple_of(record) || keywords.len() != keyword_uids.len() {
        return Err(Error::Internal("malformed SELECT snapshot from the database".into()));
    }
    let mut snapshot = Snapshot::new(mailbox, packed.len() / record, with_sizes);
    for record in packed.chunks_exact(record) {
        let (uid, rest) = record.split_at(8);
        let (flags, rest) = rest.split_at(4);
        let (modseq, size) = rest.split_at(8);
        let uid = i64::from_be_bytes(uid.try_into().expect("8 octets"));
        let flags = i32::from_be_bytes(flags.try_into().expect("4 octets"));
        let modseq = i64::from_be_bytes(modseq.try_into().expect("8 octets"));
        let size = if with_sizes { i64::from_be_bytes(size.try_into().expect("8 octets")) } else { 0 };
        snapshot.push(
            to_u32("uid", uid)?,
            to_u32("flags", flags.into())?,
            to_u64("modseq", modseq)?,
            to_u64("size", size)?,
        );
    }
    for (uid, keywords) in keyword_uids.into_iter().zip(keywords) {
        snapshot.push_keywords(to_u32("uid", uid)?, keywords);
    }
    Ok(snapshot.finish(to_u64("size", row.try_get("size")?)?))
}

/// A PostgreSQL array literal of `items` (`{"a","b"}`), every element quoted so that spaces,
/// commas and braces stay inside it.
pub(super) fn array_literal(items: impl IntoIterator<Item = String>) -> String {
    let mut literal = String::from("{");
    for (n, item) in items.into_iter().enumerate() {
        if n > 0 {
            literal.push(',');
        }
        literal.push('"');
        for c in item.chars() {
            if matches!(c, '"' | '\\') {
                literal.push('\\');
            }
            literal.push(c);
        }
        literal.push('"');
    }
    literal.push('}');
    literal
}

fn u32_column(row: &PgRow, column: &str) -> Result<u32> {
    to_u32(column, row.try_get(column)?)
}

fn u64_column(row: &PgRow, column: &str) -> Result<u64> {
    to_u64(column, row.try_get(column)?)
}

fn to_u32(what: &str, value: i64) -> Result<u32> {
    u32::try_from(value).map_err(|_| out_of_range(what, value))
}

fn to_u64(what: &str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| out_of_range(what, value))
}

fn out_of_range(what: &str, value: i64) -> Error {
    Error::Internal(format!("{what} {value} out of range"))
}
