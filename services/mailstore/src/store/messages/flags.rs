//! STORE: the flags and keywords of messages changed, with CONDSTORE's UNCHANGEDSINCE.
//!
//! On PostgreSQL the flags are read and worked out without locks, then written by one
//! statement, [`STORE_FLAGS`], that skips every message changed since it was read; SQLite, and
//! the messages that statement skipped, take the path that locks the mailbox throughout.

use kubemail_proto::events::FlagsChanged;
use kubemail_proto::events::mailbox_event::Change;
use kubemail_proto::mailstore::{Flags, MessageMeta, StoreFlagsResponse, UidRange, store_flags_request::Operation};
use sqlx::any::AnyRow;
use sqlx::postgres::PgPool;
use sqlx::{Any, Row, Transaction};

use super::uids::UidSet;
use super::{keyword_list, meta_from_row, split_keywords};
use crate::store::postgres::{array_literal, mailbox_row, to_u32};
use crate::store::{LockedMailbox, Store, get_u32, to_i64};
use crate::validate;
use crate::{Error, Result};

impl Store {
    /// Changes flags of the messages in `ranges`. With `unchanged_since` (CONDSTORE), messages
    /// changed after it are left alone and reported in `modified`.
    pub async fn store_flags(
        &self,
        account_id: i64,
        mailbox_id: i64,
        ranges: &[UidRange],
        operation: Operation,
        flags: &Flags,
        unchanged_since: u64,
    ) -> Result<StoreFlagsResponse> {
        let ranges = UidSet::required(ranges)?;
        let system = validate::system_flags(flags.system)?;
        let keywords: Vec<&str> = flags.keywords.iter().map(|k| validate::keyword(k)).collect::<Result<_>>()?;
        if operation == Operation::Unspecified {
            return Err(Error::invalid("flag operation must be REPLACE, ADD or REMOVE"));
        }
        let change = FlagChange { operation, system, keywords, unchanged_since };
        match self.db.postgres() {
            Some(pool) => self.store_flags_unlocked(pool, account_id, mailbox_id, &ranges, &change).await,
            None => self.store_flags_locked(account_id, mailbox_id, &ranges, &change).await,
        }
    }

    /// STORE under the mailbox's lock for the whole transaction: read, work out, write.
    async fn store_flags_locked(
        &self,
        account_id: i64,
        mailbox_id: i64,
        ranges: &UidSet,
        change: &FlagChange<'_>,
    ) -> Result<StoreFlagsResponse> {
        let mut tx = self.db.write().await?;
        let mut folder = self.lock_mailbox_by_id(&mut tx, account_id, mailbox_id).await?;
        let rows = self.message_rows(&mut tx, mailbox_id, ranges).await?;
        let Applied { mut changes, modified, unchanged } = change.apply(&rows)?;
        if !changes.is_empty() {
            // One MODSEQ for the whole command: every changed message gets a new, higher value.
            let modseq = self.bump_modseq(&mut tx, &mut folder).await?;
            for changed in &mut changes {
                changed.meta.modseq = modseq;
            }
            self.write_flags(&mut tx, mailbox_id, modseq, &changes).await?;
        }
        tx.commit().await?;
        self.announce_flags(&folder, &changes).await;
        let updated = changes.into_iter().map(|changed| changed.meta).collect();
        Ok(StoreFlagsResponse { updated, modified, highest_modseq: folder.highest_modseq, unchanged })
    }

    /// STORE on PostgreSQL with no lock held across round trips: the flags are read and worked
    /// out without locks, then written by one statement that skips every message changed since
    /// it was read ([`postgres_store_flags`]). Those few are done again by the locked path;
    /// flag operations give the same result applied twice.
    async fn store_flags_unlocked(
        &self,
        pool: &sqlx::PgPool,
        account_id: i64,
        mailbox_id: i64,
        ranges: &UidSet,
        change: &FlagChange<'_>,
    ) -> Result<StoreFlagsResponse> {
        let (highest_modseq, rows) = self.mailbox_rows(account_id, mailbox_id, ranges).await?;
        let Applied { changes, mut modified, mut unchanged } = change.apply(&rows)?;
        if changes.is_empty() {
            return Ok(StoreFlagsResponse { updated: Vec::new(), modified, highest_modseq, unchanged });
        }
        let (folder, written) = postgres_store_flags(pool, account_id, mailbox_id, &changes).await?.unzip();
        let written = written.unwrap_or_default();
        let (mut done, missed): (Vec<_>, Vec<_>) =
            changes.into_iter().partition(|changed| written.binary_search(&changed.meta.uid).is_ok());
        if let Some(folder) = &folder {
            for changed in &mut done {
                changed.meta.modseq = folder.highest_modseq;
            }
            self.announce_flags(folder, &done).await;
        }
        let mut updated: Vec<MessageMeta> = done.into_iter().map(|changed| changed.meta).collect();
        if missed.is_empty() {
            let highest_modseq = folder.map_or(highest_modseq, |f| f.highest_modseq);
            return Ok(StoreFlagsResponse { updated, modified, highest_modseq, unchanged });
        }
        let missed: Vec<u32> = missed.iter().map(|changed| changed.meta.uid).collect();
        let again = UidSet::of(&missed);
        let rest = self.store_flags_locked(account_id, mailbox_id, &again, change).await?;
        updated.extend(rest.updated);
        updated.sort_by_key(|meta| meta.uid);
        modified.extend(rest.modified);
        modified.sort_unstable();
        unchanged.extend(rest.unchanged);
        unchanged.sort_by_key(|meta| meta.uid);
        Ok(StoreFlagsResponse { updated, modified, highest_modseq: rest.highest_modseq, unchanged })
    }

    /// Tells sessions about flag changes written to `folder`.
    async fn announce_flags(&self, folder: &LockedMailbox, changes: &[Changed]) {
        if changes.is_empty() {
            return;
        }
        let change = Change::Flags(FlagsChanged {
            uids: changes.iter().map(|changed| changed.meta.uid).collect(),
            system_flags: changes.iter().map(Changed::system).collect(),
            keywords: changes.iter().map(|changed| changed.keywords.clone()).collect(),
            modseqs: changes.iter().map(|changed| changed.meta.modseq).collect(),
        });
        self.events.publish(folder.state(), change).await;
    }

    /// Writes the new flags of `changes` (messages of a locked mailbox) with their new MODSEQ.
    async fn write_flags(
        &self,
        tx: &mut Transaction<'static, Any>,
        mailbox_id: i64,
        modseq: u64,
        changes: &[Changed],
    ) -> Result<()> {
        if self.db.postgres().is_some() {
            // One statement, however many messages, which also counts the change in the
            // mailbox's counters; the mailbox stays locked until the last one is done. The arrays
            // travel as text, which the Any driver can bind.
            sqlx::query(WRITE_FLAGS)
                .bind(mailbox_id)
                .bind(to_i64(modseq, "MODSEQ")?)
                .bind(array_literal(changes.iter().map(|changed| changed.meta.uid.to_string())))
                .bind(array_literal(changes.iter().map(|changed| changed.system().to_string())))
                .bind(array_literal(changes.iter().map(|changed| changed.keywords.clone())))
                .bind(array_literal(changes.iter().map(|changed| changed.old_system.to_string())))
                .execute(&mut **tx)
                .await?;
            return Ok(());
        }
        // SQLite's row trigger counts each change (migration 0002).
        for changed in changes {
            sqlx::query(
                "UPDATE messages SET flags = $1, keywords = $2, modseq = $3 WHERE mailbox_id = $4 AND uid = $5",
            )
            .bind(i64::from(changed.system()))
            .bind(&changed.keywords)
            .bind(to_i64(modseq, "MODSEQ")?)
            .bind(mailbox_id)
            .bind(i64::from(changed.meta.uid))
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }
}

/// A message a STORE changes.
struct Changed {
    /// With its new flags; its MODSEQ the one read until the change is written.
    meta: MessageMeta,
    /// Its new keywords as they will be stored.
    keywords: String,
    /// Its system flags as read, so the write can count what changed in the mailbox's counters.
    old_system: u32,
}

impl Changed {
    /// The new system flags.
    fn system(&self) -> u32 {
        self.meta.flags.as_ref().map_or(0, |flags| flags.system)
    }
}

/// What a STORE's change does to the messages read.
struct Applied {
    changes: Vec<Changed>,
    /// The UIDs left alone because they changed after UNCHANGEDSINCE.
    modified: Vec<u32>,
    /// The messages whose flags were already as asked.
    unchanged: Vec<MessageMeta>,
}

/// One STORE's change, validated.
struct FlagChange<'a> {
    operation: Operation,
    system: u32,
    keywords: Vec<&'a str>,
    /// CONDSTORE's UNCHANGEDSINCE; 0 when not given.
    unchanged_since: u64,
}

impl FlagChange<'_> {
    /// What this change does to the messages of `rows`: those it changes, each with its new
    /// flags (its MODSEQ still the one read) and its keywords as they will be stored; the UIDs
    /// left alone because they changed after UNCHANGEDSINCE; and those already as asked.
    fn apply(&self, rows: &[AnyRow]) -> Result<Applied> {
        let mut applied = Applied { changes: Vec::new(), modified: Vec::new(), unchanged: Vec::new() };
        for row in rows {
            let mut meta = meta_from_row(row)?;
            if self.unchanged_since > 0 && meta.modseq > self.unchanged_since {
                applied.modified.push(meta.uid);
                continue;
            }
            let old_system = get_u32(row, "flags")?;
            let old_keywords: String = row.try_get("keywords")?;
            let (new_system, new_keywords) =
                apply_flags(self.operation, old_system, &old_keywords, self.system, &self.keywords)?;
            if new_system != old_system || new_keywords != old_keywords {
                meta.flags = Some(Flags { system: new_system, keywords: split_keywords(&new_keywords) });
                applied.changes.push(Changed { meta, keywords: new_keywords, old_system });
            } else {
                applied.unchanged.push(meta);
            }
        }
        Ok(applied)
    }
}

/// The flags after applying `operation` with `system` bits and `keywords`.
fn apply_flags(
    operation: Operation,
    old_system: u32,
    old_keywords: &str,
    system: u32,
    keywords: &[&str],
) -> Result<(u32, String)> {
    let old: Vec<&str> = old_keywords.split_whitespace().collect();
    Ok(match operation {
        Operation::Replace => (system, keyword_list(keywords.iter().copied())?),
        Operation::Add => (old_system | system, keyword_list(old.iter().chain(keywords).copied())?),
        Operation::Remove => {
            let kept = old.iter().copied().filter(|k| !keywords.iter().any(|r| r.eq_ignore_ascii_case(k)));
            (old_system & !system, keyword_list(kept)?)
        }
        Operation::Unspecified => (old_system, old_keywords.to_string()),
    })
}

/// The CTE `counted` of the statements that change flags on PostgreSQL: the changes of
/// `changed` (each message's `flags` and `old_flags`) added to the counters of `mailbox`, as
/// inserts count themselves (migration 0009). Nothing is written when no message changed its
/// \Seen or \Deleted. A macro, so each statement stays one literal.
macro_rules! count_flag_changes {
    () => {
        "counted AS (
    UPDATE mailbox_counters SET
        unseen = unseen + (SELECT sum((old_flags & 1) - (flags & 1)) FROM changed),
        deleted = deleted + (SELECT sum(((flags & 8) - (old_flags & 8)) / 8) FROM changed)
    FROM mailbox
    WHERE mailbox_counters.mailbox_id = mailbox.id
      AND EXISTS (SELECT 1 FROM changed WHERE ((old_flags # flags) & 9) <> 0)
)"
    };
}

/// STORE's write when the new flags were worked out from a read without locks: one statement
/// that takes the mailbox's next MODSEQ (locking its row, as every writer does first) and
/// changes each message only if its MODSEQ is still the one read, so a concurrent change is
/// never overwritten. It reports the mailbox after the change and the UIDs it changed; the
/// caller does the rest again under locks. The mailbox row is locked for this one statement,
/// not for the round trips of a transaction. Should every message have changed in between, the
/// MODSEQ is taken all the same: HIGHESTMODSEQ rises with nothing behind it, and a client that
/// resynchronises finds nothing new.
const STORE_FLAGS: &str = concat!(
    "WITH mailbox AS (
    UPDATE mailboxes SET highest_modseq = highest_modseq + 1
    WHERE id = $1 AND account_id = $2
    RETURNING id, account_id, name, uidvalidity, uid_next, highest_modseq
),
changed AS (
    UPDATE messages m SET flags = c.flags, keywords = c.keywords, modseq = mailbox.highest_modseq
    FROM mailbox, unnest($3::text::bigint[], $4::text::bigint[], $5::text::bigint[], $6::text::text[], $7::text::bigint[])
        AS c (uid, modseq, flags, keywords, old_flags)
    WHERE m.mailbox_id = mailbox.id AND m.uid = c.uid AND m.modseq = c.modseq
    RETURNING m.uid, c.flags, c.old_flags
),
",
    count_flag_changes!(),
    "
SELECT mailbox.id, mailbox.account_id, mailbox.name, mailbox.uidvalidity, mailbox.uid_next, mailbox.highest_modseq,
       coalesce((SELECT array_agg(uid ORDER BY uid) FROM changed), '{}') AS uids
FROM mailbox"
);

/// The write of a STORE under the mailbox's lock on PostgreSQL: each message's new flags with
/// the command's MODSEQ (`$2`), counted in the mailbox's counters as [`STORE_FLAGS`] does.
const WRITE_FLAGS: &str = concat!(
    "WITH mailbox AS (SELECT CAST($1 AS BIGINT) AS id),
changed AS (
    UPDATE messages m SET flags = c.flags, keywords = c.keywords, modseq = $2
    FROM unnest($3::text::bigint[], $4::text::bigint[], $5::text::text[], $6::text::bigint[])
        AS c (uid, flags, keywords, old_flags)
    WHERE m.mailbox_id = $1 AND m.uid = c.uid
    RETURNING m.uid, c.flags, c.old_flags
),
",
    count_flag_changes!(),
    "
SELECT count(*) AS changed FROM changed"
);

/// Runs [`STORE_FLAGS`] for `changes`, each written only if its MODSEQ is still the one read:
/// the mailbox after it and the UIDs changed, ascending; `None` when the mailbox is gone (or not
/// the account's).
async fn postgres_store_flags(
    pool: &PgPool,
    account_id: i64,
    mailbox_id: i64,
    changes: &[Changed],
) -> Result<Option<(LockedMailbox, Vec<u32>)>> {
    let read_modseqs = changes.iter().map(|changed| to_i64(changed.meta.modseq, "MODSEQ").map(|m| m.to_string()));
    let row = sqlx::query(STORE_FLAGS)
        .bind(mailbox_id)
        .bind(account_id)
        .bind(array_literal(changes.iter().map(|changed| changed.meta.uid.to_string())))
        .bind(array_literal(read_modseqs.collect::<Result<Vec<_>>>()?))
        .bind(array_literal(changes.iter().map(|changed| changed.system().to_string())))
        .bind(array_literal(changes.iter().map(|changed| changed.keywords.clone())))
        .bind(array_literal(changes.iter().map(|changed| changed.old_system.to_string())))
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let uids: Vec<i64> = row.try_get("uids")?;
    let uids = uids.into_iter().map(|uid| to_u32("uid", uid)).collect::<Result<_>>()?;
    Ok(Some((mailbox_row(&row)?, uids)))
}

#[cfg(test)]
mod tests {
    use kubemail_proto::mailstore::SystemFlag;

    use super::*;

    #[test]
    fn flag_operations() {
        let seen = SystemFlag::Seen as u32;
        let flagged = SystemFlag::Flagged as u32;
        assert_eq!(
            apply_flags(Operation::Add, seen, "$A", flagged, &["$b", "$a"]).unwrap(),
            (seen | flagged, "$A $b".into())
        );
        assert_eq!(
            apply_flags(Operation::Remove, seen | flagged, "$A $b", seen, &["$a"]).unwrap(),
            (flagged, "$b".into())
        );
        assert_eq!(apply_flags(Operation::Replace, seen, "$A", 0, &[]).unwrap(), (0, String::new()));
    }
}
