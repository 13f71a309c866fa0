//! Messages: delivery and IMAP APPEND, metadata and body fetches, flags, expunge (and POP3's
//! removal), copy and move, search, quota.

use bytes::Bytes;
use kubemail_proto::events::mailbox_event::Change;
use kubemail_proto::events::{FlagsChanged, MessagesAdded, MessagesExpunged};
use kubemail_proto::mailstore::{
    AppendResponse, CopyMessagesResponse, DeliverResponse, ExpungeResponse, Flags, MessageMeta, Quota, SearchRequest,
    SearchResponse, StoreFlagsResponse, SystemFlag, UidRange, store_flags_request::Operation,
};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::Query;
use sqlx::{Any, Row, Transaction};

use super::directory::{Lookup, find_target};
use super::group::GroupedWrite;
use super::postgres;
use super::{LockedMailbox, Store, get_u32, get_u64, mailbox_not_found, now, to_i64};
use crate::validate::{self, INBOX};
use crate::{Error, Result};

/// FetchBody's statement, each message's metadata and body, up to its condition on the UIDs
/// (from `$4`). With `$3` only the header block is read: the database then decompresses and
/// sends that prefix, not the whole body.
const FETCH_BODIES: &str = "\
SELECT m.uid, m.modseq, m.flags, m.keywords, m.internal_date, m.size, m.header_size,
       CASE WHEN $3 THEN substr(b.data, 1, CAST(m.header_size AS INTEGER)) ELSE b.data END AS data
FROM messages m JOIN blobs b ON b.hash = m.blob_hash
WHERE m.mailbox_id = $1 AND m.account_id = $2 AND";

/// Longest queue message id accepted as an idempotency key.
const MAX_QUEUE_ID: usize = 255;
/// Rows per multi-row INSERT, well below SQLite's and PostgreSQL's bind-parameter limits.
const INSERT_BATCH: usize = 200;

/// A message body checked against the size limit, with what is derived from it once.
#[derive(Clone, Debug)]
pub struct IncomingMessage {
    body: Bytes,
    hash: String,
    header_size: u64,
}

impl IncomingMessage {
    /// Checks `body` (non-empty, at most `max_size` octets) and derives its content hash and
    /// header length.
    pub fn new(body: Bytes, max_size: u64) -> Result<Self> {
        if body.is_empty() {
            return Err(Error::invalid("message body is empty"));
        }
        if body.len() as u64 > max_size {
            return Err(Error::invalid(format!(
                "message of {} octets exceeds the limit of {max_size} octets",
                body.len()
            )));
        }
        let hash = hex::encode(Sha256::digest(&body));
        let header_size = header_size(&body);
        Ok(IncomingMessage { body, hash, header_size })
    }

    pub fn size(&self) -> u64 {
        self.body.len() as u64
    }

    pub(super) fn body(&self) -> &[u8] {
        &self.body
    }

    /// SHA-256 of the body, hex: the key the body is stored under once.
    pub(super) fn hash(&self) -> &str {
        &self.hash
    }

    pub(super) fn header_size(&self) -> u64 {
        self.header_size
    }
}

/// Octets of the header block including the empty line that ends it (RFC 5322 §2.1); the whole
/// message when it has no body.
fn header_size(body: &[u8]) -> u64 {
    // One pass to the first line break followed by an empty line, CRLF or bare LF.
    let end = body
        .iter()
        .enumerate()
        .filter(|(_, byte)| **byte == b'\n')
        .find_map(|(i, _)| match body.get(i + 1..) {
            Some([b'\n', ..]) => Some(i + 2),
            Some([b'\r', b'\n', ..]) => Some(i + 3),
            _ => None,
        })
        .unwrap_or(body.len());
    end as u64
}

/// One delivery, checked: a message for one recipient under its idempotency key.
#[derive(Debug)]
pub(super) struct Delivery {
    pub queue_message_id: String,
    /// Normalised, with its domain.
    pub recipient: String,
    pub domain: String,
    /// Validated; INBOX when the caller named none.
    pub mailbox: String,
    /// Unix seconds.
    pub internal_date: i64,
    pub message: IncomingMessage,
}

/// An IMAP APPEND, validated.
pub(super) struct Append {
    pub account_id: i64,
    /// Validated.
    pub mailbox: String,
    pub message: IncomingMessage,
    pub new: NewMessage,
}

impl GroupedWrite for Append {
    type Key = (i64, String);
    type Answer = AppendResponse;

    fn key(&self) -> Self::Key {
        (self.account_id, self.mailbox.clone())
    }

    fn octets(&self) -> u64 {
        self.message.size()
    }

    fn common_case(&self, _now: i64) -> Result<Query<'_, Postgres, PgArguments>> {
        postgres::append_query(self)
    }

    fn answer(folder: &LockedMailbox, uid: u32) -> AppendResponse {
        AppendResponse { mailbox_id: folder.id, uidvalidity: folder.uidvalidity, uid }
    }

    async fn general(&self, store: &Store) -> Result<AppendResponse> {
        store.append_general(self).await
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
        postgres::deliver_query(self, now)
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

/// What a new message row carries besides its body.
#[derive(Clone, Debug, Default)]
pub struct NewMessage {
    pub system_flags: u32,
    pub keywords: String,
    /// Unix seconds; 0 means now.
    pub internal_date: i64,
}

impl Store {
    // ---------- writing messages ----------

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
    pub(super) async fn deliver_general(&self, delivery: &Delivery) -> Result<DeliverResponse> {
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
        self.announce_added(&folder, vec![uid]).await;
        Ok(Delivery::answer(&folder, uid))
    }

    /// Announces committed deliveries, one event per run of messages into the same mailbox.
    pub(super) async fn announce_written(&self, written: impl Iterator<Item = &(LockedMailbox, u32)>) {
        let mut runs: Vec<(&LockedMailbox, Vec<u32>)> = Vec::new();
        for (folder, uid) in written {
            match runs.last_mut() {
                // Later in the group means later in the mailbox: its state is the newer one.
                Some((last, uids)) if last.id == folder.id => {
                    *last = folder;
                    uids.push(*uid);
                }
                _ => runs.push((folder, vec![*uid])),
            }
        }
        for (folder, uids) in runs {
            self.announce_added(folder, uids).await;
        }
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

    /// IMAP APPEND: stores `message` in the mailbox `mailbox` of `account_id`.
    pub async fn append(
        &self,
        account_id: i64,
        mailbox: &str,
        flags: &Flags,
        internal_date: i64,
        message: IncomingMessage,
    ) -> Result<AppendResponse> {
        let append = Append {
            account_id,
            mailbox: validate::mailbox_name(mailbox)?,
            new: NewMessage {
                system_flags: validate::system_flags(flags.system)?,
                keywords: keyword_list(flags.keywords.iter().map(String::as_str))?,
                internal_date: if internal_date > 0 { internal_date } else { now() },
            },
            message,
        };
        self.write_grouped(&self.appends, append).await
    }

    /// Any APPEND, in a transaction of its own that tells why when it cannot store the message
    /// (no such mailbox, over quota).
    pub(super) async fn append_general(&self, append: &Append) -> Result<AppendResponse> {
        let Append { account_id, mailbox, message, new } = append;
        let mut tx = self.db.write().await?;
        self.reserve_usage(&mut tx, *account_id, message.size(), 1).await?;
        let (folder, uid) = self.insert_into(&mut tx, *account_id, mailbox, message, new).await?;
        tx.commit().await?;
        self.announce_added(&folder, vec![uid]).await;
        Ok(Append::answer(&folder, uid))
    }

    /// Inserts one message into the mailbox `name` of an account whose usage already counts
    /// it. Returns the mailbox after the change and the message's UID.
    async fn insert_into(
        &self,
        tx: &mut Transaction<'static, Any>,
        account_id: i64,
        name: &str,
        message: &IncomingMessage,
        new: &NewMessage,
    ) -> Result<(LockedMailbox, u32)> {
        let (folder, uid) = self.allocate_uids_by_name(tx, account_id, name, 1).await?;
        // DO UPDATE locks an existing row, so a concurrent collection waits for this
        // transaction; should it delete the body anyway, the messages → blobs foreign key fails
        // the collection rather than this delivery losing its body.
        sqlx::query(
            "INSERT INTO blobs (hash, data) VALUES ($1, $2) ON CONFLICT (hash) DO UPDATE SET hash = excluded.hash",
        )
        .bind(&message.hash)
        .bind(message.body.as_ref())
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "INSERT INTO messages (mailbox_id, uid, account_id, modseq, flags, keywords, internal_date, size, header_size, blob_hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(folder.id)
        .bind(i64::from(uid))
        .bind(account_id)
        .bind(to_i64(folder.highest_modseq, "MODSEQ")?)
        .bind(i64::from(new.system_flags))
        .bind(&new.keywords)
        .bind(if new.internal_date > 0 { new.internal_date } else { now() })
        .bind(to_i64(message.size(), "size")?)
        .bind(to_i64(message.header_size, "header size")?)
        .bind(&message.hash)
        .execute(&mut **tx)
        .await?;
        count_inserted(tx, folder.id, [(new.system_flags, message.size())]).await?;
        Ok((folder, uid))
    }

    pub(super) async fn announce_added(&self, folder: &LockedMailbox, uids: Vec<u32>) {
        let change = Change::Added(MessagesAdded { uids, uidnext: folder.uid_next });
        self.events.publish(folder.state(), change).await;
    }

    // ---------- reading messages ----------

    /// Metadata of the messages of `mailbox_id` within `ranges` (all when empty) whose MODSEQ
    /// is above `changed_since`.
    pub async fn fetch_messages(
        &self,
        account_id: i64,
        mailbox_id: i64,
        ranges: &[UidRange],
        changed_since: u64,
    ) -> Result<Vec<MessageMeta>> {
        let ranges = UidSet::new(ranges)?;
        let (_, rows) = self.mailbox_rows(account_id, mailbox_id, &ranges).await?;
        rows.iter().map(meta_from_row).filter(|meta| meta.as_ref().map_or(true, |m| m.modseq > changed_since)).collect()
    }

    /// The messages of `ranges` with their sizes, ascending: what a FetchBody streams.
    pub async fn message_sizes(
        &self,
        account_id: i64,
        mailbox_id: i64,
        ranges: &[UidRange],
    ) -> Result<Vec<(u32, u64)>> {
        let ranges = UidSet::new(ranges)?;
        let (_, rows) = self.mailbox_rows(account_id, mailbox_id, &ranges).await?;
        rows.iter().map(|row| Ok((get_u32(row, "uid")?, get_u64(row, "size")?))).collect()
    }

    /// The metadata and bodies of `uids`, cut as `slice` says, in UID order; a message expunged
    /// meanwhile is left out. One query per [`INSERT_BATCH`] messages.
    pub async fn fetch_bodies(
        &self,
        account_id: i64,
        mailbox_id: i64,
        uids: &[u32],
        slice: BodySlice,
    ) -> Result<Vec<(MessageMeta, Bytes)>> {
        let mut bodies = Vec::with_capacity(uids.len());
        for batch in uids.chunks(INSERT_BATCH) {
            let query = if self.db.postgres().is_some() {
                // One statement whatever the batch's length (the UIDs as one array, bound as
                // text), so PostgreSQL prepares and plans it once rather than once per length.
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "{FETCH_BODIES} m.uid = ANY($4::text::bigint[]) ORDER BY m.uid"
                )))
                .bind(mailbox_id)
                .bind(account_id)
                .bind(slice.headers_only)
                .bind(postgres::array_literal(batch.iter().map(u32::to_string)))
            } else {
                let placeholders: Vec<String> = (0..batch.len()).map(|i| format!("${}", i + 4)).collect();
                // Only placeholders are formatted into the statement.
                let sql = format!("{FETCH_BODIES} m.uid IN ({}) ORDER BY m.uid", placeholders.join(", "));
                let mut query =
                    sqlx::query(sqlx::AssertSqlSafe(sql)).bind(mailbox_id).bind(account_id).bind(slice.headers_only);
                for uid in batch {
                    query = query.bind(i64::from(*uid));
                }
                query
            };
            for row in query.fetch_all(self.db.reader()).await? {
                let data: Vec<u8> = row.try_get("data")?;
                let meta = meta_from_row(&row)?;
                let header_size = usize::try_from(meta.header_size).unwrap_or(usize::MAX);
                bodies.push((meta, slice.cut(Bytes::from(data), header_size)));
            }
        }
        Ok(bodies)
    }

    /// Messages matching every criterion of `request` (a metadata search).
    pub async fn search(&self, request: &SearchRequest) -> Result<SearchResponse> {
        let ranges = UidSet::new(&request.uids)?;
        let empty = Flags::default();
        let with = request.with_flags.as_ref().unwrap_or(&empty);
        let without = request.without_flags.as_ref().unwrap_or(&empty);
        let (with_system, without_system) =
            (validate::system_flags(with.system)?, validate::system_flags(without.system)?);
        for keyword in with.keywords.iter().chain(&without.keywords) {
            validate::keyword(keyword)?;
        }
        let (highest_modseq, rows) = self.mailbox_rows(request.account_id, request.mailbox_id, &ranges).await?;
        let mut uids = Vec::new();
        for row in &rows {
            let meta = meta_from_row(row)?;
            let flags = meta.flags.unwrap_or_default();
            let has_keyword = |k: &String| flags.keywords.iter().any(|have| have.eq_ignore_ascii_case(k));
            let matches = flags.system & with_system == with_system
                && flags.system & without_system == 0
                && with.keywords.iter().all(has_keyword)
                && !without.keywords.iter().any(has_keyword)
                && (request.since == 0 || meta.internal_date >= request.since)
                && (request.before == 0 || meta.internal_date < request.before)
                && (request.larger == 0 || meta.size > request.larger)
                && (request.smaller == 0 || meta.size < request.smaller)
                && meta.modseq >= request.modseq_at_least;
            if matches {
                uids.push(meta.uid);
            }
        }
        Ok(SearchResponse { uids, highest_modseq })
    }

    /// The account's quota and usage (RFC 9208 STORAGE and MESSAGE).
    pub async fn quota(&self, account_id: i64) -> Result<Quota> {
        let row = sqlx::query(
            "SELECT quota_storage, quota_messages, used_storage, used_messages FROM accounts WHERE id = $1",
        )
        .bind(account_id)
        .fetch_optional(self.db.reader())
        .await?
        .ok_or_else(|| Error::not_found(format!("no account with id {account_id}")))?;
        Ok(Quota {
            storage_used: get_u64(&row, "used_storage")?,
            storage_limit: get_u64(&row, "quota_storage")?,
            messages_used: get_u64(&row, "used_messages")?,
            messages_limit: get_u64(&row, "quota_messages")?,
        })
    }

    /// The highest MODSEQ of the mailbox `mailbox_id` of `account_id` and the metadata rows of
    /// its messages within a UID set, in UID order. One statement, so one consistent view with
    /// no transaction around it (a transaction costs two more round trips to the database);
    /// a second one only when no message is in the span, to tell an empty span from a mailbox
    /// that is missing or another account's.
    async fn mailbox_rows(&self, account_id: i64, mailbox_id: i64, ranges: &UidSet) -> Result<(u64, Vec<AnyRow>)> {
        let (low, high) = ranges.span();
        // The mailbox's MODSEQ as a sub-select rather than a join keeps the plan one index scan
        // in UID order, cheap to plan at every call.
        let rows = sqlx::query(
            "SELECT (SELECT highest_modseq FROM mailboxes WHERE id = $1 AND account_id = $2) AS mailbox_modseq, \
                    uid, modseq, flags, keywords, internal_date, size, header_size, blob_hash \
             FROM messages WHERE mailbox_id = $1 AND uid BETWEEN $3 AND $4 ORDER BY uid",
        )
        .bind(mailbox_id)
        .bind(account_id)
        .bind(low)
        .bind(high)
        .fetch_all(self.db.reader())
        .await?;
        let Some(first) = rows.first() else {
            return Ok((self.mailbox_modseq(account_id, mailbox_id).await?, rows));
        };
        let highest_modseq: Option<i64> = first.try_get("mailbox_modseq")?;
        let highest_modseq = highest_modseq.ok_or_else(|| mailbox_not_found(mailbox_id))?;
        Ok((highest_modseq as u64, ranges.keep(rows)?))
    }

    /// The highest MODSEQ of the mailbox `mailbox_id` of `account_id`.
    async fn mailbox_modseq(&self, account_id: i64, mailbox_id: i64) -> Result<u64> {
        let highest_modseq: i64 =
            sqlx::query_scalar("SELECT highest_modseq FROM mailboxes WHERE id = $1 AND account_id = $2")
                .bind(mailbox_id)
                .bind(account_id)
                .fetch_optional(self.db.reader())
                .await?
                .ok_or_else(|| mailbox_not_found(mailbox_id))?;
        Ok(highest_modseq as u64)
    }

    /// Metadata rows of one mailbox within a UID set, in UID order. The database narrows to
    /// the set's span; the set itself is applied here, so a client's long list of ranges costs
    /// no bind parameters.
    async fn message_rows(
        &self,
        tx: &mut Transaction<'static, Any>,
        mailbox_id: i64,
        ranges: &UidSet,
    ) -> Result<Vec<AnyRow>> {
        let (low, high) = ranges.span();
        let rows = sqlx::query(
            "SELECT uid, modseq, flags, keywords, internal_date, size, header_size, blob_hash FROM messages \
             WHERE mailbox_id = $1 AND uid BETWEEN $2 AND $3 ORDER BY uid",
        )
        .bind(mailbox_id)
        .bind(low)
        .bind(high)
        .fetch_all(&mut **tx)
        .await?;
        ranges.keep(rows)
    }

    // ---------- changing messages ----------

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
        let (mut changes, modified) = change.apply(&rows)?;
        if !changes.is_empty() {
            // One MODSEQ for the whole command: every changed message gets a new, higher value.
            let modseq = self.bump_modseq(&mut tx, &mut folder).await?;
            for (meta, _) in &mut changes {
                meta.modseq = modseq;
            }
            self.write_flags(&mut tx, mailbox_id, modseq, &changes).await?;
        }
        tx.commit().await?;
        self.announce_flags(&folder, &changes).await;
        let updated = changes.into_iter().map(|(meta, _)| meta).collect();
        Ok(StoreFlagsResponse { updated, modified, highest_modseq: folder.highest_modseq })
    }

    /// STORE on PostgreSQL with no lock held across round trips: the flags are read and worked
    /// out without locks, then written by one statement that skips every message changed since
    /// it was read ([`postgres::store_flags`]). Those few are done again by the locked path;
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
        let (changes, mut modified) = change.apply(&rows)?;
        if changes.is_empty() {
            return Ok(StoreFlagsResponse { updated: Vec::new(), modified, highest_modseq });
        }
        let writes: Vec<postgres::FlagWrite<'_>> = changes
            .iter()
            .map(|(meta, keywords)| postgres::FlagWrite {
                uid: meta.uid,
                read_modseq: meta.modseq,
                system: meta.flags.as_ref().map_or(0, |f| f.system),
                keywords,
            })
            .collect();
        let (folder, written) = postgres::store_flags(pool, account_id, mailbox_id, &writes).await?.unzip();
        let written = written.unwrap_or_default();
        let (mut done, missed): (Vec<_>, Vec<_>) =
            changes.into_iter().partition(|(meta, _)| written.binary_search(&meta.uid).is_ok());
        if let Some(folder) = &folder {
            for (meta, _) in &mut done {
                meta.modseq = folder.highest_modseq;
            }
            self.announce_flags(folder, &done).await;
        }
        let mut updated: Vec<MessageMeta> = done.into_iter().map(|(meta, _)| meta).collect();
        if missed.is_empty() {
            let highest_modseq = folder.map_or(highest_modseq, |f| f.highest_modseq);
            return Ok(StoreFlagsResponse { updated, modified, highest_modseq });
        }
        let missed: Vec<u32> = missed.iter().map(|(meta, _)| meta.uid).collect();
        let again = UidSet::of(&missed);
        let rest = self.store_flags_locked(account_id, mailbox_id, &again, change).await?;
        updated.extend(rest.updated);
        updated.sort_by_key(|meta| meta.uid);
        modified.extend(rest.modified);
        modified.sort_unstable();
        Ok(StoreFlagsResponse { updated, modified, highest_modseq: rest.highest_modseq })
    }

    /// Tells sessions about flag changes written to `folder`.
    async fn announce_flags(&self, folder: &LockedMailbox, changes: &[(MessageMeta, String)]) {
        if changes.is_empty() {
            return;
        }
        let change = Change::Flags(FlagsChanged {
            uids: changes.iter().map(|(m, _)| m.uid).collect(),
            system_flags: changes.iter().map(|(m, _)| m.flags.as_ref().map_or(0, |f| f.system)).collect(),
            keywords: changes.iter().map(|(_, k)| k.clone()).collect(),
            modseqs: changes.iter().map(|(m, _)| m.modseq).collect(),
        });
        self.events.publish(folder.state(), change).await;
    }

    /// Writes the new flags of `changes` (messages of a locked mailbox) with their new MODSEQ.
    async fn write_flags(
        &self,
        tx: &mut Transaction<'static, Any>,
        mailbox_id: i64,
        modseq: u64,
        changes: &[(MessageMeta, String)],
    ) -> Result<()> {
        let system = |meta: &MessageMeta| meta.flags.as_ref().map_or(0, |f| f.system);
        if self.db.postgres().is_some() {
            // One statement, however many messages: each UPDATE statement also runs the
            // counters' trigger once, and the mailbox stays locked until the last one is done.
            // The arrays travel as text, which the Any driver can bind.
            sqlx::query(
                "UPDATE messages m SET flags = c.flags, keywords = c.keywords, modseq = $2 \
                 FROM unnest($3::text::bigint[], $4::text::bigint[], $5::text::text[]) AS c (uid, flags, keywords) \
                 WHERE m.mailbox_id = $1 AND m.uid = c.uid",
            )
            .bind(mailbox_id)
            .bind(to_i64(modseq, "MODSEQ")?)
            .bind(postgres::array_literal(changes.iter().map(|(meta, _)| meta.uid.to_string())))
            .bind(postgres::array_literal(changes.iter().map(|(meta, _)| system(meta).to_string())))
            .bind(postgres::array_literal(changes.iter().map(|(_, keywords)| keywords.clone())))
            .execute(&mut **tx)
            .await?;
            return Ok(());
        }
        for (meta, keywords) in changes {
            sqlx::query(
                "UPDATE messages SET flags = $1, keywords = $2, modseq = $3 WHERE mailbox_id = $4 AND uid = $5",
            )
            .bind(i64::from(system(meta)))
            .bind(keywords)
            .bind(to_i64(modseq, "MODSEQ")?)
            .bind(mailbox_id)
            .bind(i64::from(meta.uid))
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

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
                postgres::expunge(pool, account_id, mailbox_id, &found, doomed == Doomed::FlaggedDeleted).await?
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
    async fn remove_messages(
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

    /// Copies (or moves) messages into the mailbox `destination` of the same account.
    pub async fn copy_messages(
        &self,
        account_id: i64,
        source_mailbox_id: i64,
        ranges: &[UidRange],
        destination: &str,
        move_messages: bool,
    ) -> Result<CopyMessagesResponse> {
        let ranges = UidSet::required(ranges)?;
        let destination = validate::mailbox_name(destination)?;
        let mut tx = self.db.write().await?;
        // The account lock comes first, so two copies in opposite directions cannot deadlock on
        // the mailbox locks.
        self.lock_account(&mut tx, account_id).await?;
        let mut source = self.lock_mailbox_by_id(&mut tx, account_id, source_mailbox_id).await?;
        let mut target = self.lock_mailbox_by_name(&mut tx, account_id, &destination).await?;
        let rows = self.message_rows(&mut tx, source.id, &ranges).await?;
        let messages: Vec<MessageMeta> = rows.iter().map(meta_from_row).collect::<Result<_>>()?;
        if !move_messages {
            let total: u64 = messages.iter().map(|m| m.size).sum();
            self.reserve_usage(&mut tx, account_id, total, messages.len() as u64).await?;
        }
        let count = u32::try_from(messages.len()).map_err(|_| Error::invalid("too many messages"))?;
        let mut destination_uids = Vec::with_capacity(messages.len());
        if count > 0 {
            let first = self.allocate_uids(&mut tx, &mut target, count).await?;
            for (offset, meta) in messages.iter().enumerate() {
                let new_uid = first + offset as u32;
                sqlx::query(
                    "INSERT INTO messages (mailbox_id, uid, account_id, modseq, flags, keywords, internal_date, size, header_size, blob_hash) \
                     SELECT $1, $2, account_id, $3, flags, keywords, internal_date, size, header_size, blob_hash \
                     FROM messages WHERE mailbox_id = $4 AND uid = $5",
                )
                .bind(target.id)
                .bind(i64::from(new_uid))
                .bind(to_i64(target.highest_modseq, "MODSEQ")?)
                .bind(source.id)
                .bind(i64::from(meta.uid))
                .execute(&mut *tx)
                .await?;
                destination_uids.push(new_uid);
            }
            let copied = messages.iter().map(|meta| (meta.flags.as_ref().map_or(0, |flags| flags.system), meta.size));
            count_inserted(&mut tx, target.id, copied).await?;
        }
        let source_uids: Vec<u32> = messages.iter().map(|m| m.uid).collect();
        let (_, hashes) = if move_messages {
            self.remove_messages(&mut tx, &mut source, &source_uids).await?
        } else {
            (0, Vec::new())
        };
        tx.commit().await?;
        self.collect_blobs(&hashes).await;
        if count > 0 {
            self.announce_added(&target, destination_uids.clone()).await;
            if move_messages {
                let change = Change::Expunged(MessagesExpunged { uids: source_uids.clone() });
                self.events.publish(source.state(), change).await;
            }
        }
        Ok(CopyMessagesResponse { destination_uidvalidity: target.uidvalidity, source_uids, destination_uids })
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
                return postgres::collect_blobs(pool, hashes).await;
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

/// A validated UID set.
pub(crate) struct UidSet {
    ranges: Vec<(i64, i64)>,
}

impl UidSet {
    pub fn new(ranges: &[UidRange]) -> Result<Self> {
        if ranges.is_empty() {
            return Ok(UidSet::all());
        }
        Ok(UidSet { ranges: validate::uid_ranges(ranges)? })
    }

    /// A set that must name its messages: for changes, an empty list is more likely a
    /// frontend's empty sequence set than a wish to touch every message.
    pub fn required(ranges: &[UidRange]) -> Result<Self> {
        if ranges.is_empty() {
            return Err(Error::invalid("no UIDs given (send 1:* for every message)"));
        }
        UidSet::new(ranges)
    }

    pub fn all() -> Self {
        UidSet { ranges: vec![(1, i64::from(u32::MAX))] }
    }

    /// The set of exactly `uids`.
    fn of(uids: &[u32]) -> Self {
        let ranges = contiguous_runs(uids).into_iter().map(|(first, last)| (i64::from(first), i64::from(last)));
        UidSet { ranges: ranges.collect() }
    }

    fn span(&self) -> (i64, i64) {
        let low = self.ranges.iter().map(|r| r.0).min().unwrap_or(1);
        let high = self.ranges.iter().map(|r| r.1).max().unwrap_or(0);
        (low, high)
    }

    fn contains(&self, uid: i64) -> bool {
        self.ranges.iter().any(|(first, last)| (*first..=*last).contains(&uid))
    }

    /// The rows (read over the set's span) whose `uid` is in the set.
    fn keep(&self, rows: Vec<AnyRow>) -> Result<Vec<AnyRow>> {
        let mut kept = Vec::with_capacity(rows.len());
        for row in rows {
            if self.contains(row.try_get("uid")?) {
                kept.push(row);
            }
        }
        Ok(kept)
    }
}

/// Sorted UIDs grouped into inclusive runs of consecutive values.
fn contiguous_runs(uids: &[u32]) -> Vec<(u32, u32)> {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for uid in sorted {
        match runs.last_mut() {
            Some(run) if run.1 + 1 == uid => run.1 = uid,
            _ => runs.push((uid, uid)),
        }
    }
    runs
}

/// Adds messages just inserted into `mailbox_id`, given as (system flags, size), to its
/// counters. The statements that insert messages count them (migration 0003); triggers count
/// what is deleted or changed.
async fn count_inserted(
    tx: &mut Transaction<'static, Any>,
    mailbox_id: i64,
    inserted: impl IntoIterator<Item = (u32, u64)>,
) -> Result<()> {
    let (mut messages, mut unseen, mut deleted, mut size) = (0i64, 0i64, 0i64, 0u64);
    for (flags, octets) in inserted {
        messages += 1;
        unseen += i64::from(flags & SystemFlag::Seen as u32 == 0);
        deleted += i64::from(flags & SystemFlag::Deleted as u32 != 0);
        size += octets;
    }
    sqlx::query(
        "UPDATE mailbox_counters SET messages = messages + $2, unseen = unseen + $3, deleted = deleted + $4, \
         size = size + $5 WHERE mailbox_id = $1",
    )
    .bind(mailbox_id)
    .bind(messages)
    .bind(unseen)
    .bind(deleted)
    .bind(to_i64(size, "size")?)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

fn meta_from_row(row: &AnyRow) -> Result<MessageMeta> {
    let keywords: String = row.try_get("keywords")?;
    Ok(MessageMeta {
        uid: get_u32(row, "uid")?,
        modseq: get_u64(row, "modseq")?,
        flags: Some(Flags { system: get_u32(row, "flags")?, keywords: split_keywords(&keywords) }),
        internal_date: row.try_get("internal_date")?,
        size: get_u64(row, "size")?,
        header_size: get_u64(row, "header_size")?,
    })
}

fn split_keywords(stored: &str) -> Vec<String> {
    stored.split_whitespace().map(str::to_string).collect()
}

/// Keywords as stored: validated, without case-insensitive duplicates (IMAP keywords are
/// case-insensitive), space-separated.
fn keyword_list<'a>(keywords: impl IntoIterator<Item = &'a str>) -> Result<String> {
    let mut kept: Vec<&str> = Vec::new();
    for keyword in keywords {
        let keyword = validate::keyword(keyword)?;
        if !kept.iter().any(|k| k.eq_ignore_ascii_case(keyword)) {
            kept.push(keyword);
        }
    }
    Ok(kept.join(" "))
}

/// Messages a STORE changes: each with its new flags, and its keywords as they will be stored.
type Changed = Vec<(MessageMeta, String)>;

/// One STORE's change, validated.
struct FlagChange<'a> {
    operation: Operation,
    system: u32,
    keywords: Vec<&'a str>,
    /// CONDSTORE's UNCHANGEDSINCE; 0 when not given.
    unchanged_since: u64,
}

impl FlagChange<'_> {
    /// The messages of `rows` this change changes, each with its new flags (its MODSEQ still
    /// the one read) and its keywords as they will be stored; and the UIDs left alone because
    /// they changed after UNCHANGEDSINCE.
    fn apply(&self, rows: &[AnyRow]) -> Result<(Changed, Vec<u32>)> {
        let (mut changes, mut modified) = (Vec::new(), Vec::new());
        for row in rows {
            let mut meta = meta_from_row(row)?;
            if self.unchanged_since > 0 && meta.modseq > self.unchanged_since {
                modified.push(meta.uid);
                continue;
            }
            let old_system = get_u32(row, "flags")?;
            let old_keywords: String = row.try_get("keywords")?;
            let (new_system, new_keywords) =
                apply_flags(self.operation, old_system, &old_keywords, self.system, &self.keywords)?;
            if new_system != old_system || new_keywords != old_keywords {
                meta.flags = Some(Flags { system: new_system, keywords: split_keywords(&new_keywords) });
                changes.push((meta, new_keywords));
            }
        }
        Ok((changes, modified))
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

/// Which messages of a UID set a removal takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Doomed {
    /// Those flagged \Deleted (IMAP's EXPUNGE).
    FlaggedDeleted,
    /// All of them (POP3's UPDATE state).
    Listed,
}

/// Which octets of each message a FetchBody wants.
#[derive(Clone, Copy, Debug, Default)]
pub struct BodySlice {
    /// Only the header block (ENVELOPE, header fields), not the body after it.
    pub headers_only: bool,
    pub offset: u64,
    /// 0: to the end.
    pub length: u64,
}

impl BodySlice {
    fn cut(self, data: Bytes, header_size: usize) -> Bytes {
        let data = if self.headers_only { data.slice(..header_size.min(data.len())) } else { data };
        let start = usize::try_from(self.offset).unwrap_or(usize::MAX).min(data.len());
        let end = match self.length {
            0 => data.len(),
            n => start.saturating_add(usize::try_from(n).unwrap_or(usize::MAX)).min(data.len()),
        };
        data.slice(start..end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_size_finds_the_blank_line() {
        assert_eq!(header_size(b"Subject: x\r\n\r\nbody"), 14);
        assert_eq!(header_size(b"Subject: x\n\nbody"), 12);
        assert_eq!(header_size(b"Subject: x\r\n"), 12);
    }

    #[test]
    fn runs_group_consecutive_uids() {
        assert_eq!(contiguous_runs(&[5, 1, 2, 3, 9, 10]), vec![(1, 3), (5, 5), (9, 10)]);
        assert!(contiguous_runs(&[]).is_empty());
    }

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
