//! STORE: the flags and keywords of messages changed, with CONDSTORE's UNCHANGEDSINCE.
//!
//! On PostgreSQL the change is worked out from the flags the session holds (or, when it holds
//! none, from flags read without locks), then written by one statement, [`STORE_FLAGS`], that
//! skips every message changed since; SQLite, and the messages that statement skipped, take the
//! path that locks the mailbox throughout.

use kubemail_proto::events::FlagsChanged;
use kubemail_proto::events::mailbox_event::Change;
use kubemail_proto::mailstore::{
    Flags, HeldFlags, MessageMeta, StoreFlagsRequest, StoreFlagsResponse, store_flags_request::Operation,
};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{Any, Row, Transaction};

use super::uids::UidSet;
use super::{keyword_list, meta_from_row, split_keywords};
use crate::store::postgres::{mailbox_row, to_u32};
use crate::store::{LockedMailbox, Store, mailbox_not_found, to_i64};
use crate::validate;
use crate::{Error, Result};

impl Store {
    /// Changes flags of the messages the request names. With `unchanged_since` (CONDSTORE),
    /// messages changed after it are left alone and reported in `modified`.
    pub async fn store_flags(&self, request: &StoreFlagsRequest) -> Result<StoreFlagsResponse> {
        let ranges = UidSet::required(&request.uids)?;
        let operation = Operation::try_from(request.operation)
            .map_err(|_| Error::invalid(format!("unknown flag operation {}", request.operation)))?;
        if operation == Operation::Unspecified {
            return Err(Error::invalid("flag operation must be REPLACE, ADD or REMOVE"));
        }
        let no_flags = Flags::default();
        let flags = request.flags.as_ref().unwrap_or(&no_flags);
        let system = validate::system_flags(flags.system)?;
        let keywords: Vec<&str> = flags.keywords.iter().map(|k| validate::keyword(k)).collect::<Result<_>>()?;
        let change = FlagChange { operation, system, keywords, unchanged_since: request.unchanged_since };
        let (account_id, mailbox_id) = (request.account_id, request.mailbox_id);
        let held = held_messages(&request.held, &ranges)?;
        let Some(pool) = self.db.postgres() else {
            // SQLite has one writer, and the lock costs no round trip: held flags save nothing.
            return self.store_flags_locked(account_id, mailbox_id, &ranges, &change).await;
        };
        if held.is_empty() {
            let (highest_modseq, rows) = self.mailbox_rows(account_id, mailbox_id, &ranges).await?;
            let found = rows.iter().map(Found::read).collect::<Result<_>>()?;
            return self.store_flags_unlocked(pool, account_id, mailbox_id, found, Some(highest_modseq), &change).await;
        }
        self.store_flags_unlocked(pool, account_id, mailbox_id, held, None, &change).await
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
        let found = rows.iter().map(Found::read).collect::<Result<_>>()?;
        let Applied { mut changes, modified, unchanged } = change.apply(found)?;
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

    /// STORE on PostgreSQL with no lock held across round trips: the change is worked out from
    /// `found` (flags read without locks, the mailbox then at `read_modseq`; or, with
    /// `read_modseq` `None`, flags the session holds), then written by one statement that skips
    /// every message changed since ([`postgres_store_flags`]). Those few are done again by the
    /// locked path; flag operations give the same result applied twice.
    async fn store_flags_unlocked(
        &self,
        pool: &sqlx::PgPool,
        account_id: i64,
        mailbox_id: i64,
        found: Vec<Found>,
        read_modseq: Option<u64>,
        change: &FlagChange<'_>,
    ) -> Result<StoreFlagsResponse> {
        let Applied { changes, mut modified, mut unchanged } = change.apply(found)?;
        // Held flags may be behind: those that look as asked already are checked as well.
        let checked: &[MessageMeta] = if read_modseq.is_some() { &[] } else { &unchanged };
        let written = match (read_modseq, changes.is_empty()) {
            (Some(highest_modseq), true) => {
                return Ok(StoreFlagsResponse { updated: Vec::new(), modified, highest_modseq, unchanged });
            }
            (None, true) => check_held(pool, account_id, mailbox_id, checked).await?,
            (_, false) => postgres_store_flags(pool, account_id, mailbox_id, &changes, checked).await?,
        };
        let Written { folder, highest_modseq, uids: written, stale } = written;
        let (mut done, missed): (Vec<_>, Vec<_>) =
            changes.into_iter().partition(|changed| written.binary_search(&changed.meta.uid).is_ok());
        if let Some(folder) = &folder {
            for changed in &mut done {
                changed.meta.modseq = folder.highest_modseq;
            }
            self.announce_flags(folder, &done).await;
        }
        unchanged.retain(|meta| stale.binary_search(&meta.uid).is_err());
        let mut updated: Vec<MessageMeta> = done.into_iter().map(|changed| changed.meta).collect();
        let mut missed: Vec<u32> = missed.iter().map(|changed| changed.meta.uid).chain(stale).collect();
        if missed.is_empty() {
            let highest_modseq = highest_modseq.or(read_modseq).unwrap_or_default();
            return Ok(StoreFlagsResponse { updated, modified, highest_modseq, unchanged });
        }
        missed.sort_unstable();
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
            // mailbox's counters; the mailbox stays locked until the last one is done. The
            // messages travel as JSON text, as for the unlocked write.
            sqlx::query(WRITE_FLAGS)
                .bind(mailbox_id)
                .bind(to_i64(modseq, "MODSEQ")?)
                .bind(found_json(changes, &[])?)
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
    /// Its system flags as found, so the write can count what changed in the mailbox's counters.
    old_system: u32,
    /// Its keywords as found, as stored.
    old_keywords: String,
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
    /// What this change does to the messages `found`: those it changes, each with its new
    /// flags (its MODSEQ still the one found) and its keywords as they will be stored; the UIDs
    /// left alone because they changed after UNCHANGEDSINCE; and those already as asked.
    fn apply(&self, found: Vec<Found>) -> Result<Applied> {
        let mut applied = Applied { changes: Vec::new(), modified: Vec::new(), unchanged: Vec::new() };
        for Found { mut meta, keywords: old_keywords } in found {
            if self.unchanged_since > 0 && meta.modseq > self.unchanged_since {
                applied.modified.push(meta.uid);
                continue;
            }
            let old_system = meta.flags.as_ref().map_or(0, |flags| flags.system);
            let (new_system, new_keywords) =
                apply_flags(self.operation, old_system, &old_keywords, self.system, &self.keywords)?;
            if new_system != old_system || new_keywords != old_keywords {
                meta.flags = Some(Flags { system: new_system, keywords: split_keywords(&new_keywords) });
                applied.changes.push(Changed { meta, keywords: new_keywords, old_system, old_keywords });
            } else {
                applied.unchanged.push(meta);
            }
        }
        Ok(applied)
    }
}

/// A message's flags before a STORE, with the MODSEQ they are as of: read, or held by the
/// session that asks.
struct Found {
    meta: MessageMeta,
    /// Its keywords as stored.
    keywords: String,
}

impl Found {
    fn read(row: &AnyRow) -> Result<Found> {
        Ok(Found { meta: meta_from_row(row)?, keywords: row.try_get("keywords")? })
    }

    /// A message as `held` says; its keywords as they would be stored, so that they compare
    /// equal to the stored ones when the session holds what is stored.
    fn held(held: &HeldFlags) -> Result<Found> {
        let flags = held.flags.clone().unwrap_or_default();
        validate::system_flags(flags.system)?;
        let keywords = keyword_list(flags.keywords.iter().map(String::as_str))?;
        let meta = MessageMeta { uid: held.uid, modseq: held.modseq, flags: Some(flags), ..Default::default() };
        Ok(Found { meta, keywords })
    }
}

/// The messages of `held`, which must name exactly the messages of `ranges`, ascending; none
/// when none are held.
fn held_messages(held: &[HeldFlags], ranges: &UidSet) -> Result<Vec<Found>> {
    if held.is_empty() {
        return Ok(Vec::new());
    }
    let uids: Vec<u32> = held.iter().map(|message| message.uid).collect();
    if !uids.is_sorted_by(|a, b| a < b) || !ranges.is_exactly(&uids) {
        return Err(Error::invalid("held flags must be given for exactly the messages of the UID set, ascending"));
    }
    held.iter().map(Found::held).collect()
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

/// The CTE `found` of STORE's statements on PostgreSQL: the messages of their one JSON
/// parameter `$3` ([`FoundRow`]). From JSON rather than arrays, so that PostgreSQL's estimate of
/// their number does not depend on the values: with arrays, every plan made for the values of
/// one call (as PostgreSQL tries first) counted them exactly, the generic plan could then look
/// dearer than those of small STOREs, and a connection that began with those planned the
/// statement anew at every call (0.5 ms). A macro, so each statement stays one literal.
macro_rules! found_rows {
    () => {
        "found AS MATERIALIZED (
    SELECT * FROM jsonb_to_recordset($3::text::jsonb)
        AS f (uid bigint, modseq bigint, flags bigint, keywords text, old_flags bigint, old_keywords text, change boolean)
)"
    };
}

/// The UIDs, ascending, of the messages of `found` to be checked rather than changed whose
/// MODSEQ is no longer the one found: flags held that looked as asked already but have changed
/// since.
macro_rules! stale_found {
    () => {
        "coalesce((SELECT array_agg(m.uid ORDER BY m.uid) FROM messages m, found f
    WHERE NOT f.change AND m.mailbox_id = $1 AND m.uid = f.uid AND m.modseq <> f.modseq), '{}') AS stale"
    };
}

/// STORE's write when the new flags were worked out without locks: one statement that takes
/// the mailbox's next MODSEQ (locking its row, as every writer does first) and changes each
/// message of `found` to be changed only if its MODSEQ and flags are still the ones found, so a
/// concurrent change is never overwritten, nor one counted from flags a session held wrongly.
/// It reports the mailbox after the change, the UIDs it changed and those of the messages to be
/// checked that changed since ([`stale_found!`]); the caller does those again under locks. The
/// mailbox row is locked for this one statement, not for the round trips of a transaction.
/// Should every message have changed in between, the MODSEQ is taken all the same:
/// HIGHESTMODSEQ rises with nothing behind it, and a client that resynchronises finds nothing
/// new.
///
/// The test of MODSEQ and flags is written as `IS NOT DISTINCT FROM`, which for these columns
/// (none of them NULL) means `=` but is no index condition: with `m.modseq = c.modseq`
/// PostgreSQL could find each message through the MODSEQ index, whose entry for a MODSEQ holds
/// every message one STORE changed, rather than through the key.
const STORE_FLAGS: &str = concat!(
    "WITH ",
    found_rows!(),
    ",
mailbox AS (
    UPDATE mailboxes SET highest_modseq = highest_modseq + 1
    WHERE id = $1 AND account_id = $2
    RETURNING id, account_id, name, uidvalidity, uid_next, highest_modseq
),
changed AS (
    UPDATE messages m SET flags = c.flags, keywords = c.keywords, modseq = mailbox.highest_modseq
    FROM mailbox, found c
    WHERE c.change AND m.mailbox_id = mailbox.id AND m.uid = c.uid
      AND (m.modseq, m.flags, m.keywords) IS NOT DISTINCT FROM (c.modseq, c.old_flags, c.old_keywords)
    RETURNING m.uid, c.flags, c.old_flags
),
",
    count_flag_changes!(),
    "
SELECT mailbox.id, mailbox.account_id, mailbox.name, mailbox.uidvalidity, mailbox.uid_next, mailbox.highest_modseq,
       coalesce((SELECT array_agg(uid ORDER BY uid) FROM changed), '{}') AS uids, ",
    stale_found!(),
    "
FROM mailbox"
);

/// When held flags show nothing to change: the mailbox's HIGHESTMODSEQ (NULL when it is not
/// the account's) and which of the messages of `found` changed since ([`stale_found!`]).
const CHECK_HELD: &str = concat!(
    "WITH ",
    found_rows!(),
    "
SELECT (SELECT highest_modseq FROM mailboxes WHERE id = $1 AND account_id = $2) AS mailbox_modseq, ",
    stale_found!()
);

/// The write of a STORE under the mailbox's lock on PostgreSQL: each message's new flags with
/// the command's MODSEQ (`$2`), counted in the mailbox's counters as [`STORE_FLAGS`] does.
const WRITE_FLAGS: &str = concat!(
    "WITH mailbox AS (SELECT CAST($1 AS BIGINT) AS id),
",
    found_rows!(),
    ",
changed AS (
    UPDATE messages m SET flags = c.flags, keywords = c.keywords, modseq = $2
    FROM found c
    WHERE m.mailbox_id = $1 AND m.uid = c.uid
    RETURNING m.uid, c.flags, c.old_flags
),
",
    count_flag_changes!(),
    "
SELECT count(*) AS changed FROM changed"
);

/// What the unlocked write of a STORE did.
#[derive(Default)]
struct Written {
    /// The mailbox after the write; `None` when nothing was written, or the mailbox is gone (or
    /// not the account's).
    folder: Option<LockedMailbox>,
    /// The mailbox's HIGHESTMODSEQ after the statement, when it found the mailbox.
    highest_modseq: Option<u64>,
    /// The UIDs changed, ascending.
    uids: Vec<u32>,
    /// The UIDs, ascending, of messages found as asked already whose flags changed since.
    stale: Vec<u32>,
}

/// A message of [`found_rows!`]: to be changed (with its flags as found, and new), or only
/// checked to be still at the MODSEQ found.
#[derive(Serialize)]
struct FoundRow<'a> {
    uid: u32,
    modseq: i64,
    flags: u32,
    keywords: &'a str,
    old_flags: u32,
    old_keywords: &'a str,
    change: bool,
}

/// The JSON parameter of [`found_rows!`]: `changes` to write, `checked` to check.
fn found_json(changes: &[Changed], checked: &[MessageMeta]) -> Result<String> {
    let mut rows = Vec::with_capacity(changes.len() + checked.len());
    for changed in changes {
        rows.push(FoundRow {
            uid: changed.meta.uid,
            modseq: to_i64(changed.meta.modseq, "MODSEQ")?,
            flags: changed.system(),
            keywords: &changed.keywords,
            old_flags: changed.old_system,
            old_keywords: &changed.old_keywords,
            change: true,
        });
    }
    for meta in checked {
        let modseq = to_i64(meta.modseq, "MODSEQ")?;
        rows.push(FoundRow {
            uid: meta.uid,
            modseq,
            flags: 0,
            keywords: "",
            old_flags: 0,
            old_keywords: "",
            change: false,
        });
    }
    serde_json::to_string(&rows).map_err(|error| Error::Internal(format!("the flags of a STORE as JSON: {error}")))
}

/// The UIDs of the array column `column` of `row`.
fn uid_array(row: &PgRow, column: &str) -> Result<Vec<u32>> {
    let uids: Vec<i64> = row.try_get(column)?;
    uids.into_iter().map(|uid| to_u32("uid", uid)).collect()
}

/// Runs [`STORE_FLAGS`] for `changes`, each written only if its MODSEQ and flags are still the
/// ones found, and checks that `checked` did not change since.
async fn postgres_store_flags(
    pool: &PgPool,
    account_id: i64,
    mailbox_id: i64,
    changes: &[Changed],
    checked: &[MessageMeta],
) -> Result<Written> {
    let row = sqlx::query(STORE_FLAGS)
        .bind(mailbox_id)
        .bind(account_id)
        .bind(found_json(changes, checked)?)
        .fetch_optional(pool)
        .await?;
    let Some(row) = row else { return Ok(Written::default()) };
    let folder = mailbox_row(&row)?;
    Ok(Written {
        highest_modseq: Some(folder.highest_modseq),
        folder: Some(folder),
        uids: uid_array(&row, "uids")?,
        stale: uid_array(&row, "stale")?,
    })
}

/// Runs [`CHECK_HELD`]: which of `checked` changed since the session saw them.
async fn check_held(pool: &PgPool, account_id: i64, mailbox_id: i64, checked: &[MessageMeta]) -> Result<Written> {
    let found = found_json(&[], checked)?;
    let row = sqlx::query(CHECK_HELD).bind(mailbox_id).bind(account_id).bind(found).fetch_one(pool).await?;
    let highest_modseq: Option<i64> = row.try_get("mailbox_modseq")?;
    let highest_modseq = highest_modseq.ok_or_else(|| mailbox_not_found(mailbox_id))?;
    Ok(Written { highest_modseq: Some(highest_modseq as u64), stale: uid_array(&row, "stale")?, ..Default::default() })
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
