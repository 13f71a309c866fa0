//! Removing messages: IMAP's EXPUNGE of those flagged \Deleted, POP3's removal of those its
//! client marked, and the UIDs expunged since a MODSEQ (QRESYNC's VANISHED).
//!
//! A removal first looks for its messages without a lock, so the many that find nothing hold up
//! nobody; on PostgreSQL those found are then removed by one statement, [`EXPUNGE`].

use kubemail_proto::events::MessagesExpunged;
use kubemail_proto::events::mailbox_event::Change;
use kubemail_proto::mailstore::{ExpungeResponse, UidRange};
use sqlx::postgres::PgPool;
use sqlx::{Any, Row, Transaction};

use super::INSERT_BATCH;
use super::uids::{UidSet, contiguous_runs};
use crate::Result;
use crate::store::postgres::{array_literal, mailbox_row, to_u32};
use crate::store::{LockedMailbox, Store, get_u32, mailbox_not_found, to_i64};

/// Which messages of a UID set a removal takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Doomed {
    /// Those flagged \Deleted (IMAP's EXPUNGE).
    FlaggedDeleted,
    /// All of them (POP3's UPDATE state).
    Listed,
}

impl Store {
    /// Removes the \Deleted messages of a mailbox (within `ranges` when given): IMAP's EXPUNGE.
    pub async fn expunge(&self, account_id: i64, mailbox_id: i64, ranges: &[UidRange]) -> Result<ExpungeResponse> {
        let ranges = if ranges.is_empty() { UidSet::all() } else { UidSet::new(ranges)? };
        self.remove(account_id, mailbox_id, &ranges, Doomed::FlaggedDeleted).await
    }

    /// Removes the messages within `ranges` whatever their flags: POP3's UPDATE state. No
    /// ranges, no removal.
    pub async fn remove_listed(
        &self,
        account_id: i64,
        mailbox_id: i64,
        ranges: &[UidRange],
    ) -> Result<ExpungeResponse> {
        if ranges.is_empty() {
            let highest_modseq = self.mailbox_modseq(account_id, mailbox_id).await?;
            return Ok(ExpungeResponse { expunged: Vec::new(), highest_modseq });
        }
        self.remove(account_id, mailbox_id, &UidSet::new(ranges)?, Doomed::Listed).await
    }

    async fn remove(
        &self,
        account_id: i64,
        mailbox_id: i64,
        ranges: &UidSet,
        doomed: Doomed,
    ) -> Result<ExpungeResponse> {
        // Most EXPUNGEs (every CLOSE) find nothing to remove: looked for without a lock first,
        // so they cost one indexed read and hold up nobody.
        let found = self.doomed_uids(self.db.reader(), mailbox_id, ranges, doomed).await?;
        if found.is_empty() {
            let highest_modseq = self.mailbox_modseq(account_id, mailbox_id).await?;
            return Ok(ExpungeResponse { expunged: Vec::new(), highest_modseq });
        }
        // On PostgreSQL those found are removed by one statement, which checks their flag again
        // under the locks; the transaction below is for SQLite and for a mailbox gone meanwhile
        // (which it reports).
        if let Some(pool) = self.db.postgres()
            && let Some((folder, removed, hashes)) =
                postgres_expunge(pool, account_id, mailbox_id, &found, doomed == Doomed::FlaggedDeleted).await?
        {
            self.collect_blobs(&hashes).await;
            self.announce_expunged(&folder, &removed).await;
            return Ok(ExpungeResponse { expunged: removed, highest_modseq: folder.highest_modseq });
        }
        let mut tx = self.db.write().await?;
        self.lock_account(&mut tx, account_id).await?;
        let mut folder = self.lock_mailbox_by_id(&mut tx, account_id, mailbox_id).await?;
        let removed = self.doomed_uids(&mut *tx, mailbox_id, ranges, doomed).await?;
        let (storage, hashes) = self.remove_messages(&mut tx, &mut folder, &removed).await?;
        self.add_usage(&mut tx, account_id, -storage, -(removed.len() as i64)).await?;
        tx.commit().await?;
        self.collect_blobs(&hashes).await;
        self.announce_expunged(&folder, &removed).await;
        Ok(ExpungeResponse { expunged: removed, highest_modseq: folder.highest_modseq })
    }

    /// The UIDs expunged from `mailbox_id` after `modseq` within `ranges` (all when empty),
    /// ascending: QRESYNC's VANISHED (EARLIER). Expunged UIDs are kept as long as their
    /// mailbox, so the answer is exact however old `modseq` is.
    pub async fn expunged_since(
        &self,
        account_id: i64,
        mailbox_id: i64,
        modseq: u64,
        ranges: &[UidRange],
    ) -> Result<Vec<u32>> {
        let ranges = UidSet::new(ranges)?;
        let (low, high) = ranges.span();
        // The mailbox row comes first so that a missing (or another account's) mailbox is no
        // row at all, and one without expunges is one row with a NULL UID.
        let rows = sqlx::query(
            "SELECT e.uid FROM mailboxes b \
             LEFT JOIN expunged e ON e.mailbox_id = b.id AND e.modseq > $3 AND e.uid BETWEEN $4 AND $5 \
             WHERE b.id = $1 AND b.account_id = $2 ORDER BY e.uid",
        )
        .bind(mailbox_id)
        .bind(account_id)
        .bind(i64::try_from(modseq).unwrap_or(i64::MAX))
        .bind(low)
        .bind(high)
        .fetch_all(self.db.reader())
        .await?;
        if rows.is_empty() {
            return Err(mailbox_not_found(mailbox_id));
        }
        let mut uids = Vec::new();
        for row in rows {
            let uid: Option<i64> = row.try_get("uid")?;
            if uid.is_some_and(|uid| ranges.contains(uid)) {
                uids.push(get_u32(&row, "uid")?);
            }
        }
        Ok(uids)
    }

    /// Tells sessions about messages expunged from `folder`.
    async fn announce_expunged(&self, folder: &LockedMailbox, uids: &[u32]) {
        if !uids.is_empty() {
            let change = Change::Expunged(MessagesExpunged { uids: uids.to_vec() });
            self.events.publish(folder.state(), change).await;
        }
    }

    /// The UIDs within `ranges` that `doomed` picks, ascending.
    async fn doomed_uids<'e, E>(
        &self,
        executor: E,
        mailbox_id: i64,
        ranges: &UidSet,
        doomed: Doomed,
    ) -> Result<Vec<u32>>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        let (low, high) = ranges.span();
        let query = match doomed {
            // The flag test is written as the partial index `messages_deleted` says it.
            Doomed::FlaggedDeleted => {
                "SELECT uid FROM messages WHERE mailbox_id = $1 AND (flags & 8) <> 0 AND uid BETWEEN $2 AND $3 ORDER BY uid"
            }
            Doomed::Listed => "SELECT uid FROM messages WHERE mailbox_id = $1 AND uid BETWEEN $2 AND $3 ORDER BY uid",
        };
        let uids: Vec<i64> =
            sqlx::query_scalar(query).bind(mailbox_id).bind(low).bind(high).fetch_all(executor).await?;
        Ok(uids.into_iter().filter(|uid| ranges.contains(*uid)).map(|uid| uid as u32).collect())
    }

    /// Deletes `uids` from a locked mailbox and records them as expunged. Returns the octets
    /// they took (the caller decides whether that usage is freed: a move keeps it) and the body
    /// hashes to collect after commit.
    pub(super) async fn remove_messages(
        &self,
        tx: &mut Transaction<'static, Any>,
        folder: &mut LockedMailbox,
        uids: &[u32],
    ) -> Result<(i64, Vec<String>)> {
        if uids.is_empty() {
            return Ok((0, Vec::new()));
        }
        let modseq = self.bump_modseq(tx, folder).await?;
        let (mut storage, mut hashes) = (0i64, Vec::new());
        for run in contiguous_runs(uids) {
            let rows = sqlx::query(
                "DELETE FROM messages WHERE mailbox_id = $1 AND uid BETWEEN $2 AND $3 RETURNING size, blob_hash",
            )
            .bind(folder.id)
            .bind(i64::from(run.0))
            .bind(i64::from(run.1))
            .fetch_all(&mut **tx)
            .await?;
            for row in rows {
                storage += row.try_get::<i64, _>("size")?;
                hashes.push(row.try_get::<String, _>("blob_hash")?);
            }
        }
        for batch in uids.chunks(INSERT_BATCH) {
            let values: Vec<String> = (0..batch.len()).map(|i| format!("($1, ${}, $2)", i + 3)).collect();
            let sql = format!(
                "INSERT INTO expunged (mailbox_id, uid, modseq) VALUES {} \
                 ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = excluded.modseq",
                values.join(", ")
            );
            // Only placeholders are formatted into the statement.
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(folder.id).bind(to_i64(modseq, "MODSEQ")?);
            for uid in batch {
                insert = insert.bind(i64::from(*uid));
            }
            insert.execute(&mut **tx).await?;
        }
        hashes.sort();
        hashes.dedup();
        Ok((storage, hashes))
    }
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
/// same, as in `STORE_FLAGS`); no row when the mailbox is gone or not the account's.
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
async fn postgres_expunge(
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
