//! Mailboxes (folders): list, create, delete, rename, subscribe, and the SELECT snapshot (on
//! PostgreSQL one statement).

use kubemail_proto::events::mailbox_event::Change;
use kubemail_proto::events::{MailboxCreated, MailboxDeleted, MailboxRenamed, SubscriptionChanged};
use kubemail_proto::mailstore::{MailboxInfo, SelectMailboxResponse, SystemFlag, UidRange};
use sqlx::any::AnyRow;
use sqlx::postgres::PgPool;
use sqlx::{Any, Row, Transaction};

use super::postgres::{to_u32, to_u64, u32_column, u64_column};
use super::{LockedMailbox, Store, get_bool, get_u32, get_u64, mailbox_not_named};
use crate::events::MailboxState;
use crate::validate::{self, INBOX, SEPARATOR};
use crate::{Error, Result};

/// The columns of a mailbox `b`, with its \Recent mark (migration 0010) and whether its name is
/// subscribed (0 or 1; migration 0004).
macro_rules! mailbox_columns {
    () => {
        "b.id, b.name, b.uidvalidity, b.uid_next, b.highest_modseq, b.special_use, \
         (SELECT r.recent_uid FROM recent_marks r WHERE r.mailbox_id = b.id) AS recent_uid, \
         CAST(CASE WHEN EXISTS (SELECT 1 FROM subscriptions s WHERE s.account_id = b.account_id AND s.name = b.name) \
         THEN 1 ELSE 0 END AS BIGINT) AS subscribed"
    };
}

/// Mailbox columns with the counters STATUS and LIST-STATUS need, kept by triggers in
/// `mailbox_counters` (migration 0002), and the messages no session has taken as \Recent yet
/// (few: those that arrived since the mailbox was last selected).
const MAILBOX_WITH_COUNTERS: &str = concat!(
    "SELECT ",
    mailbox_columns!(),
    ", c.messages, c.unseen, c.deleted, c.size, \
     (SELECT COUNT(*) FROM messages m WHERE m.mailbox_id = b.id AND m.uid > r.recent_uid) AS recent \
     FROM mailboxes b JOIN mailbox_counters c ON c.mailbox_id = b.id JOIN recent_marks r ON r.mailbox_id = b.id"
);

impl Store {
    /// Every mailbox of the account, by name, with counters; and the subscribed names no
    /// mailbox has.
    pub async fn list_mailboxes(&self, account_id: i64) -> Result<(Vec<MailboxInfo>, Vec<String>)> {
        let sql = format!("{MAILBOX_WITH_COUNTERS} WHERE b.account_id = $1");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account_id).fetch_all(self.db.reader()).await?;
        if rows.is_empty() {
            // Every account has an INBOX: no rows means no such account.
            return Err(Error::not_found(format!("no account with id {account_id}")));
        }
        let mut mailboxes: Vec<MailboxInfo> =
            rows.iter().map(|row| mailbox_from_row(row, true)).collect::<Result<_>>()?;
        // Byte order, the same on both databases whatever their collation.
        mailboxes.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        let mut unmatched: Vec<String> = sqlx::query_scalar(
            "SELECT s.name FROM subscriptions s WHERE s.account_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM mailboxes b WHERE b.account_id = s.account_id AND b.name = s.name)",
        )
        .bind(account_id)
        .fetch_all(self.db.reader())
        .await?;
        unmatched.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        Ok((mailboxes, unmatched))
    }

    async fn mailbox_info<'e, E>(&self, executor: E, account_id: i64, mailbox_id: i64) -> Result<MailboxInfo>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        let sql = format!("{MAILBOX_WITH_COUNTERS} WHERE b.account_id = $1 AND b.id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .bind(mailbox_id)
            .fetch_optional(executor)
            .await?
            .ok_or_else(|| Error::not_found(format!("no mailbox with id {mailbox_id}")))?;
        mailbox_from_row(&row, true)
    }

    /// Creates a mailbox and any missing parents (RFC 3501 §6.3.3).
    pub async fn create_mailbox(&self, account_id: i64, name: &str, special_use: &str) -> Result<MailboxInfo> {
        let name = validate::mailbox_name(name)?;
        let special_use = validate::special_use(special_use)?;
        let mut tx = self.db.write().await?;
        self.lock_account(&mut tx, account_id).await?;
        if self.mailbox_id(&mut tx, account_id, &name).await?.is_some() {
            return Err(Error::AlreadyExists(format!("mailbox {name:?} already exists")));
        }
        let mut created = self.create_parents(&mut tx, account_id, &name).await?;
        let mailbox = self.insert_mailbox(&mut tx, account_id, &name, &special_use).await?;
        created.push(mailbox.clone());
        tx.commit().await?;
        for mailbox in &created {
            self.events.publish(mailbox.state(), Change::Created(MailboxCreated { name: mailbox.name.clone() })).await;
        }
        self.mailbox_info(self.db.reader(), account_id, mailbox.id).await
    }

    /// Creates the missing ancestors of `name` (`a` and `a/b` for `a/b/c`).
    async fn create_parents(
        &self,
        tx: &mut Transaction<'static, Any>,
        account_id: i64,
        name: &str,
    ) -> Result<Vec<LockedMailbox>> {
        let mut created = Vec::new();
        for (index, _) in name.match_indices(SEPARATOR) {
            let parent = &name[..index];
            if self.mailbox_id(tx, account_id, parent).await?.is_none() {
                created.push(self.insert_mailbox(tx, account_id, parent, "").await?);
            }
        }
        Ok(created)
    }

    async fn mailbox_id(&self, tx: &mut Transaction<'static, Any>, account_id: i64, name: &str) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar("SELECT id FROM mailboxes WHERE account_id = $1 AND name = $2")
            .bind(account_id)
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?)
    }

    /// Deletes a mailbox and its messages. Children stay (they keep their own messages).
    pub async fn delete_mailbox(&self, account_id: i64, name: &str) -> Result<()> {
        let name = validate::mailbox_name(name)?;
        if name == INBOX {
            return Err(Error::FailedPrecondition("INBOX cannot be deleted".into()));
        }
        let mut tx = self.db.write().await?;
        self.lock_account(&mut tx, account_id).await?;
        let mailbox = self.lock_mailbox_by_name(&mut tx, account_id, &name).await?;
        let rows = sqlx::query("DELETE FROM messages WHERE mailbox_id = $1 RETURNING size, blob_hash")
            .bind(mailbox.id)
            .fetch_all(&mut *tx)
            .await?;
        let storage: i64 = rows.iter().map(|r| r.try_get::<i64, _>("size")).sum::<Result<i64, _>>()?;
        let mut hashes: Vec<String> = rows.iter().map(|r| r.try_get("blob_hash")).collect::<Result<_, _>>()?;
        hashes.sort();
        hashes.dedup();
        self.add_usage(&mut tx, account_id, -storage, -(rows.len() as i64)).await?;
        sqlx::query("DELETE FROM mailboxes WHERE id = $1").bind(mailbox.id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM metadata WHERE mailbox_id = $1").bind(mailbox.id).execute(&mut *tx).await?;
        tx.commit().await?;
        self.collect_blobs(&hashes).await;
        self.events.publish(mailbox.state(), Change::Deleted(MailboxDeleted { name })).await;
        Ok(())
    }

    /// Renames a mailbox with its children. Renaming INBOX moves its messages into a new
    /// mailbox and leaves INBOX empty (RFC 3501 §6.3.5).
    pub async fn rename_mailbox(&self, account_id: i64, from: &str, to: &str) -> Result<MailboxInfo> {
        let (from, to) = (validate::mailbox_name(from)?, validate::mailbox_name(to)?);
        if to == INBOX || to.starts_with(&format!("{from}{SEPARATOR}")) {
            return Err(Error::invalid(format!("cannot rename {from:?} to {to:?}")));
        }
        if from == INBOX {
            return self.rename_inbox(account_id, &to).await;
        }
        let mut tx = self.db.write().await?;
        self.lock_account(&mut tx, account_id).await?;
        let source = self.lock_mailbox_by_name(&mut tx, account_id, &from).await?;
        // The children, by exact prefix: LIKE would ignore case on SQLite.
        let prefix = format!("{from}{SEPARATOR}");
        let children = sqlx::query(
            "SELECT id, name FROM mailboxes WHERE account_id = $1 AND substr(name, 1, CAST($2 AS INTEGER)) = $3",
        )
        .bind(account_id)
        .bind(prefix.chars().count() as i64)
        .bind(&prefix)
        .fetch_all(&mut *tx)
        .await?;
        let mut renames = vec![(source.id, from.clone(), to.clone())];
        for child in &children {
            let name: String = child.try_get("name")?;
            let new_name = format!("{to}{}", &name[from.len()..]);
            renames.push((child.try_get("id")?, name, new_name));
        }
        for (_, _, new_name) in &renames {
            if self.mailbox_id(&mut tx, account_id, new_name).await?.is_some() {
                return Err(Error::AlreadyExists(format!("mailbox {new_name:?} already exists")));
            }
        }
        let created = self.create_parents(&mut tx, account_id, &to).await?;
        for (id, old_name, new_name) in &renames {
            sqlx::query("UPDATE mailboxes SET name = $1 WHERE id = $2")
                .bind(new_name)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            // A subscribed mailbox stays subscribed under its new name.
            if unsubscribe(&mut tx, account_id, old_name).await? {
                subscribe(&mut tx, account_id, new_name).await?;
            }
        }
        tx.commit().await?;
        for mailbox in &created {
            self.events.publish(mailbox.state(), Change::Created(MailboxCreated { name: mailbox.name.clone() })).await;
        }
        for (id, old_name, new_name) in renames {
            let state = MailboxState { mailbox_id: id, ..source.state() };
            self.events.publish(state, Change::Renamed(MailboxRenamed { from: old_name, to: new_name })).await;
        }
        self.mailbox_info(self.db.reader(), account_id, source.id).await
    }

    /// RENAME INBOX: a new mailbox `to` receives every INBOX message (a move, so sessions on
    /// INBOX see them expunged); INBOX itself stays, empty.
    async fn rename_inbox(&self, account_id: i64, to: &str) -> Result<MailboxInfo> {
        let target = self.create_mailbox(account_id, to, "").await?;
        let inbox = self.select_mailbox(account_id, INBOX, None, false).await?;
        let inbox_id = inbox.mailbox.map(|m| m.id).unwrap_or_default();
        if !inbox.uids.is_empty() {
            self.copy_messages(account_id, inbox_id, &[UidRange { first: 1, last: 0 }], to, true).await?;
        }
        self.mailbox_info(self.db.reader(), account_id, target.id).await
    }

    /// Takes the messages of the mailbox up to UID `up_to` as \Recent for the session asking
    /// (RFC 3501 §2.3.2): the UIDs no session took before, as an inclusive range, empty (first
    /// above last) when another session was first. Whoever asks first gets each message, on
    /// any frontend: the mark is locked while it moves.
    pub async fn claim_recent(&self, account_id: i64, mailbox_id: i64, up_to: u32) -> Result<(u32, u32)> {
        if let Some(pool) = self.db.postgres() {
            return postgres_claim_recent(pool, account_id, mailbox_id, up_to).await;
        }
        // SQLite: its one writer connection keeps the mark as read until this commits.
        let mut tx = self.db.write().await?;
        let row = sqlx::query(
            "SELECT r.recent_uid, b.uid_next FROM recent_marks r JOIN mailboxes b ON b.id = r.mailbox_id \
             WHERE r.mailbox_id = $1 AND b.account_id = $2",
        )
        .bind(mailbox_id)
        .bind(account_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| Error::not_found(format!("no mailbox with id {mailbox_id}")))?;
        let (taken, uid_next) = (get_u32(&row, "recent_uid")?, get_u32(&row, "uid_next")?);
        // No further than the messages stored so far.
        let up_to = up_to.min(uid_next.saturating_sub(1));
        if up_to <= taken {
            return Ok((taken + 1, taken));
        }
        sqlx::query("UPDATE recent_marks SET recent_uid = $1 WHERE mailbox_id = $2")
            .bind(i64::from(up_to))
            .bind(mailbox_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((taken + 1, up_to))
    }

    /// Subscribes or unsubscribes a name, whether a mailbox has it or not (RFC 9051 §6.3.7).
    pub async fn set_subscribed(&self, account_id: i64, name: &str, subscribed: bool) -> Result<()> {
        let name = validate::mailbox_name(name)?;
        let mut tx = self.db.write().await?;
        self.lock_account(&mut tx, account_id).await?;
        if subscribed {
            subscribe(&mut tx, account_id, &name).await?;
        } else {
            unsubscribe(&mut tx, account_id, &name).await?;
        }
        tx.commit().await?;
        let state = MailboxState { account_id, mailbox_id: 0, uidvalidity: 0, highest_modseq: 0 };
        self.events.publish(state, Change::Subscription(SubscriptionChanged { name, subscribed })).await;
        Ok(())
    }

    /// The SELECT snapshot: counters, and UID, flags and MODSEQ (and with `with_sizes` the
    /// size) of every message, all from one consistent read. With `known` (mailbox id,
    /// HIGHESTMODSEQ) of a snapshot the caller holds and still current, only the mailbox,
    /// marked `unchanged`, unless sizes are asked for.
    pub async fn select_mailbox(
        &self,
        account_id: i64,
        name: &str,
        known: Option<(i64, u64)>,
        with_sizes: bool,
    ) -> Result<SelectMailboxResponse> {
        let name = validate::mailbox_name(name)?;
        if !with_sizes
            && let Some((known_id, known_modseq)) = known
            && let Some(answer) = self.select_since(account_id, &name, known_id, known_modseq).await?
        {
            return Ok(answer);
        }
        if let Some(pool) = self.db.postgres() {
            return postgres_select(pool, account_id, &name, with_sizes).await;
        }
        let mut tx = self.db.snapshot().await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            mailbox_columns!(),
            " FROM mailboxes b WHERE b.account_id = $1 AND b.name = $2"
        ))
        .bind(account_id)
        .bind(&name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| mailbox_not_named(&name))?;
        let mailbox = mailbox_from_row(&row, false)?;
        // One pass over the messages gives both the snapshot and the counters.
        let rows =
            sqlx::query("SELECT uid, flags, modseq, keywords, size FROM messages WHERE mailbox_id = $1 ORDER BY uid")
                .bind(mailbox.id)
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        let mut snapshot = Snapshot::new(mailbox, rows.len(), with_sizes);
        let mut size = 0;
        for row in &rows {
            let uid = get_u32(row, "uid")?;
            let message_size = get_u64(row, "size")?;
            snapshot.push(uid, get_u32(row, "flags")?, get_u64(row, "modseq")?, message_size);
            size += message_size;
            let keywords: String = row.try_get("keywords")?;
            if !keywords.is_empty() {
                snapshot.push_keywords(uid, keywords);
            }
        }
        Ok(snapshot.finish(size))
    }
}

impl Store {
    /// SELECT of a mailbox the caller holds the snapshot `known_modseq` of: `unchanged`, or
    /// the changes since as a `delta` when they are few; `None` when the whole snapshot must be
    /// read (another mailbox by now, or too much changed).
    async fn select_since(
        &self,
        account_id: i64,
        name: &str,
        known_id: i64,
        known_modseq: u64,
    ) -> Result<Option<SelectMailboxResponse>> {
        let sql = format!("{MAILBOX_WITH_COUNTERS} WHERE b.account_id = $1 AND b.name = $2");
        // The mailbox row alone first, one statement: usually nothing changed, and that needs
        // no transaction.
        let row = sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
            .bind(account_id)
            .bind(name)
            .fetch_optional(self.db.reader())
            .await?;
        let mailbox = mailbox_from_row(&row.ok_or_else(|| mailbox_not_named(name))?, true)?;
        if mailbox.id != known_id || mailbox.highest_modseq < known_modseq {
            return Ok(None);
        }
        if mailbox.highest_modseq == known_modseq {
            return Ok(Some(SelectMailboxResponse { mailbox: Some(mailbox), unchanged: true, ..Default::default() }));
        }
        // Changed: the row again with the changes, all from one snapshot.
        let mut tx = self.db.snapshot().await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account_id).bind(name).fetch_optional(&mut *tx).await?;
        let mailbox = mailbox_from_row(&row.ok_or_else(|| mailbox_not_named(name))?, true)?;
        if mailbox.id != known_id {
            return Ok(None);
        }
        // Beyond a quarter of the mailbox, reading it whole is as cheap.
        let most = i64::from(mailbox.messages / 4).max(DELTA_MIN_ROWS);
        let since = i64::try_from(known_modseq).unwrap_or(i64::MAX);
        // Both reads are ordered by MODSEQ, the order of their (mailbox_id, modseq) indexes, and
        // put in UID order here. Ordered by UID, or not at all, PostgreSQL's generic plan for
        // the prepared statement (used once it has run a few times) reads the whole mailbox and
        // filters by MODSEQ: milliseconds instead of microseconds for a mailbox of 10,000.
        let changed = sqlx::query(
            "SELECT uid, flags, modseq, keywords FROM messages WHERE mailbox_id = $1 AND modseq > $2 \
             ORDER BY modseq LIMIT $3",
        )
        .bind(mailbox.id)
        .bind(since)
        .bind(most + 1)
        .fetch_all(&mut *tx)
        .await?;
        let expunged: Vec<i64> = sqlx::query_scalar(
            "SELECT uid FROM expunged WHERE mailbox_id = $1 AND modseq > $2 ORDER BY modseq LIMIT $3",
        )
        .bind(mailbox.id)
        .bind(since)
        .bind(most + 1)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        if changed.len() as i64 > most || expunged.len() as i64 > most {
            return Ok(None);
        }
        let mut changed = changed
            .iter()
            .map(|row| {
                let keywords: String = row.try_get("keywords")?;
                Ok((get_u32(row, "uid")?, get_u32(row, "flags")?, get_u64(row, "modseq")?, keywords))
            })
            .collect::<Result<Vec<_>>>()?;
        changed.sort_unstable_by_key(|&(uid, ..)| uid);
        let mut answer = SelectMailboxResponse { mailbox: Some(mailbox), delta: true, ..Default::default() };
        for (uid, flags, modseq, keywords) in changed {
            answer.uids.push(uid);
            answer.flags.push(flags);
            answer.modseqs.push(modseq);
            if !keywords.is_empty() {
                answer.keyword_uids.push(uid);
                answer.keywords.push(keywords);
            }
        }
        answer.expunged = expunged.into_iter().map(|uid| uid as u32).collect();
        answer.expunged.sort_unstable();
        Ok(Some(answer))
    }
}

/// A delta SELECT may always carry this many rows, however small the mailbox.
const DELTA_MIN_ROWS: i64 = 256;

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
            "SELECT ",
            mailbox_columns!(),
            ",
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
async fn postgres_select(
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
    let mailbox = MailboxInfo {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        uidvalidity: u32_column(&row, "uidvalidity")?,
        uidnext: u32_column(&row, "uid_next")?,
        highest_modseq: u64_column(&row, "highest_modseq")?,
        special_use: row.try_get("special_use")?,
        subscribed: row.try_get::<i64, _>("subscribed")? != 0,
        recent_uid: u32_column(&row, "recent_uid")?,
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

/// A SELECT snapshot being put together from the messages of one mailbox, in UID order.
struct Snapshot {
    mailbox: MailboxInfo,
    /// (UID, flags, MODSEQ, size) of each message; the size is 0 unless `with_sizes`.
    messages: Vec<(u32, u32, u64, u64)>,
    /// (UID, keywords) of each message that has keywords.
    keywords: Vec<(u32, String)>,
    /// Whether the response lists each message's size.
    with_sizes: bool,
}

impl Snapshot {
    pub fn new(mailbox: MailboxInfo, messages: usize, with_sizes: bool) -> Self {
        Snapshot { mailbox, messages: Vec::with_capacity(messages), keywords: Vec::new(), with_sizes }
    }

    pub fn push(&mut self, uid: u32, flags: u32, modseq: u64, size: u64) {
        self.messages.push((uid, flags, modseq, size));
    }

    /// The keywords (space-separated, non-empty) of the message `uid`.
    pub fn push_keywords(&mut self, uid: u32, keywords: String) {
        self.keywords.push((uid, keywords));
    }

    /// The response, with the mailbox's counters; `size` is the sum of the message sizes.
    pub fn finish(mut self, size: u64) -> SelectMailboxResponse {
        // The contract promises ascending UIDs; PostgreSQL's snapshot arrives in scan order
        // (see `postgres_select`). UIDs are unique, so an unstable sort gives the one right order.
        if !self.messages.is_sorted_by_key(|(uid, ..)| *uid) {
            self.messages.sort_unstable_by_key(|(uid, ..)| *uid);
        }
        if !self.keywords.is_sorted_by_key(|(uid, _)| *uid) {
            self.keywords.sort_unstable_by_key(|(uid, _)| *uid);
        }
        let count = self.messages.len();
        let mut response = SelectMailboxResponse {
            uids: Vec::with_capacity(count),
            flags: Vec::with_capacity(count),
            modseqs: Vec::with_capacity(count),
            sizes: Vec::with_capacity(if self.with_sizes { count } else { 0 }),
            ..Default::default()
        };
        for (uid, flags, modseq, size) in self.messages {
            response.uids.push(uid);
            response.flags.push(flags);
            response.modseqs.push(modseq);
            if self.with_sizes {
                response.sizes.push(size);
            }
            self.mailbox.unseen += u32::from(flags & SystemFlag::Seen as u32 == 0);
            self.mailbox.deleted += u32::from(flags & SystemFlag::Deleted as u32 != 0);
        }
        for (uid, keywords) in self.keywords {
            for keyword in keywords.split_whitespace() {
                if !response.mailbox_keywords.iter().any(|k| k.eq_ignore_ascii_case(keyword)) {
                    response.mailbox_keywords.push(keyword.to_string());
                }
            }
            response.keyword_uids.push(uid);
            response.keywords.push(keywords);
        }
        self.mailbox.messages = u32::try_from(count).unwrap_or(u32::MAX);
        self.mailbox.size = size;
        response.mailbox = Some(self.mailbox);
        response
    }
}

/// Subscribes `name` (again, if it already is) inside a write transaction.
pub(crate) async fn subscribe(tx: &mut Transaction<'static, Any>, account_id: i64, name: &str) -> Result<()> {
    sqlx::query("INSERT INTO subscriptions (account_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(account_id)
        .bind(name)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Unsubscribes `name` inside a write transaction; whether it was subscribed.
async fn unsubscribe(tx: &mut Transaction<'static, Any>, account_id: i64, name: &str) -> Result<bool> {
    let removed = sqlx::query("DELETE FROM subscriptions WHERE account_id = $1 AND name = $2")
        .bind(account_id)
        .bind(name)
        .execute(&mut **tx)
        .await?;
    Ok(removed.rows_affected() > 0)
}

/// A mailbox row; the counters come from the counter columns of [`MAILBOX_WITH_COUNTERS`]
/// with `with_counters`, and start at zero otherwise.
fn mailbox_from_row(row: &AnyRow, with_counters: bool) -> Result<MailboxInfo> {
    let count = |column: &str| get_u64(row, column).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let mut mailbox = MailboxInfo {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        uidvalidity: get_u32(row, "uidvalidity")?,
        uidnext: get_u32(row, "uid_next")?,
        highest_modseq: get_u64(row, "highest_modseq")?,
        special_use: row.try_get("special_use")?,
        subscribed: get_bool(row, "subscribed")?,
        recent_uid: get_u32(row, "recent_uid")?,
        ..Default::default()
    };
    if with_counters {
        mailbox.messages = count("messages")?;
        mailbox.unseen = count("unseen")?;
        mailbox.deleted = count("deleted")?;
        mailbox.size = get_u64(row, "size")?;
        mailbox.recent = count("recent")?;
    }
    Ok(mailbox)
}

/// ClaimRecent on PostgreSQL: the mark moves in one statement, which locks the mark alone (not
/// the mailbox row its writers hold to their commit) and commits without waiting for the disk
/// (`set_config(…, true)` lasts to the end of the statement's own transaction, past its commit).
/// A crash that loses the last moves of the mark only makes those messages recent once more,
/// which is not worth an fsync on every command after new mail.
const CLAIM_RECENT: &str = "\
WITH relaxed AS (SELECT set_config('synchronous_commit', 'off', true)),
mark AS (
    SELECT r.recent_uid, LEAST($3, b.uid_next - 1) AS wanted
    FROM recent_marks r JOIN mailboxes b ON b.id = r.mailbox_id
    WHERE r.mailbox_id = $1 AND b.account_id = $2 FOR UPDATE OF r
),
moved AS (
    UPDATE recent_marks SET recent_uid = mark.wanted FROM mark
    WHERE mailbox_id = $1 AND mark.wanted > mark.recent_uid
    RETURNING recent_marks.recent_uid
)
SELECT mark.recent_uid AS taken, COALESCE((SELECT recent_uid FROM moved), mark.recent_uid) AS claimed
FROM mark, relaxed";

/// Runs [`CLAIM_RECENT`]: the UIDs taken, as [`Store::claim_recent`] answers.
async fn postgres_claim_recent(pool: &PgPool, account_id: i64, mailbox_id: i64, up_to: u32) -> Result<(u32, u32)> {
    let row = sqlx::query(CLAIM_RECENT)
        .bind(mailbox_id)
        .bind(account_id)
        .bind(i64::from(up_to))
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| Error::not_found(format!("no mailbox with id {mailbox_id}")))?;
    Ok((u32_column(&row, "taken")? + 1, u32_column(&row, "claimed")?))
}
