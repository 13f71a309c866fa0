//! Reading messages: metadata with the cached FETCH items (FETCH), sizes and bodies (FetchBody),
//! SEARCH over metadata, and the account's quota. The cached items of a body stored before they
//! were kept are derived when first asked for, and kept.

use std::collections::HashMap;

use bytes::Bytes;
use kubemail_proto::mailstore::{CachedItems, Flags, MessageMeta, Quota, SearchRequest, SearchResponse, UidRange};
use prost::Message as _;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::uids::UidSet;
use super::{INSERT_BATCH, IncomingMessage, cached_from_row, meta_from_row};
use crate::store::postgres::array_literal;
use crate::store::{Store, get_u32, get_u64};
use crate::validate;
use crate::{Error, Result};

/// FetchBody's statement, each message's metadata, cached items and body, up to its condition
/// on the UIDs (from `$4`). With `$3` only the header block is read: the one kept apart, or for
/// a body stored before it was (migration 0008) that prefix of the body.
const FETCH_BODIES: &str = "\
SELECT m.uid, m.modseq, m.flags, m.keywords, m.internal_date, m.size, m.header_size, m.blob_hash, m.saved_at, b.cached,
       CASE WHEN $3 THEN coalesce(b.header, substr(b.data, 1, CAST(m.header_size AS INTEGER))) ELSE b.data END AS data
FROM messages m JOIN blobs b ON b.hash = m.blob_hash
WHERE m.mailbox_id = $1 AND m.account_id = $2 AND";

impl Store {
    /// Metadata of the messages of `mailbox_id` within `ranges` (all when empty) whose MODSEQ
    /// is above `changed_since`, `with_cached` items.
    pub async fn fetch_messages(
        &self,
        account_id: i64,
        mailbox_id: i64,
        ranges: &[UidRange],
        changed_since: u64,
        with_cached: bool,
    ) -> Result<Vec<MessageMeta>> {
        let ranges = UidSet::new(ranges)?;
        let (_, rows) = self.mailbox_rows_reading(account_id, mailbox_id, &ranges, with_cached).await?;
        let mut messages = Vec::with_capacity(rows.len());
        let mut uncached = Vec::new();
        for row in &rows {
            let mut meta = meta_from_row(row)?;
            if meta.modseq <= changed_since {
                continue;
            }
            if with_cached {
                take_cached(row, &mut meta, messages.len(), &mut uncached)?;
            }
            messages.push(meta);
        }
        self.fill_cached(uncached, |index, cached| messages[index].cached = Some(cached)).await?;
        Ok(messages)
    }

    /// The cached items of the messages whose rows had none, given as (index, body hash),
    /// derived from their bodies now, each handed to `set` with its index.
    async fn fill_cached(&self, uncached: Vec<(usize, String)>, mut set: impl FnMut(usize, CachedItems)) -> Result<()> {
        if uncached.is_empty() {
            return Ok(());
        }
        let derived = self.derive_cached(uncached.iter().map(|(_, hash)| hash.clone()).collect()).await?;
        for (index, hash) in uncached {
            if let Some(cached) = derived.get(&hash) {
                set(index, cached.clone());
            }
        }
        Ok(())
    }

    /// The cached items of the bodies `hashes`, derived from each body and kept with it: for
    /// bodies stored before the mailstore derived them as it stored them (migration 0008), or
    /// whose kept items could not be read. A body gone meanwhile is left out.
    async fn derive_cached(&self, mut hashes: Vec<String>) -> Result<HashMap<String, CachedItems>> {
        hashes.sort_unstable();
        hashes.dedup();
        let mut derived = HashMap::with_capacity(hashes.len());
        for hash in hashes {
            let body: Option<Vec<u8>> = sqlx::query_scalar("SELECT data FROM blobs WHERE hash = $1")
                .bind(&hash)
                .fetch_optional(self.db.reader())
                .await?;
            let Some(body) = body else { continue };
            // Parsing a large body is long work for an async worker.
            let message = tokio::task::spawn_blocking(move || IncomingMessage::new(Bytes::from(body), u64::MAX))
                .await
                .map_err(|error| Error::Internal(format!("deriving a message's cached items: {error}")))??;
            sqlx::query("UPDATE blobs SET header = $2, cached = $3 WHERE hash = $1")
                .bind(&hash)
                .bind(message.header())
                .bind(message.cached())
                .execute(self.db.writer())
                .await?;
            let cached = CachedItems::decode(message.cached())
                .map_err(|error| Error::Internal(format!("cached items just derived: {error}")))?;
            derived.insert(hash, cached);
        }
        Ok(derived)
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
        let mut uncached = Vec::new();
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
                .bind(array_literal(batch.iter().map(u32::to_string)))
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
                let mut meta = meta_from_row(&row)?;
                if slice.with_cached {
                    take_cached(&row, &mut meta, bodies.len(), &mut uncached)?;
                }
                let header_size = usize::try_from(meta.header_size).unwrap_or(usize::MAX);
                bodies.push((meta, slice.cut(Bytes::from(data), header_size)));
            }
        }
        self.fill_cached(uncached, |index, cached| bodies[index].0.cached = Some(cached)).await?;
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
}

/// Sets the cached items `row` read on `meta`, the message at `index` of its answer; one that
/// has none joins `uncached` with its body's hash, to be derived ([`Store::fill_cached`]).
fn take_cached(row: &AnyRow, meta: &mut MessageMeta, index: usize, uncached: &mut Vec<(usize, String)>) -> Result<()> {
    meta.cached = cached_from_row(row)?;
    if meta.cached.is_none() {
        uncached.push((index, row.try_get("blob_hash")?));
    }
    Ok(())
}

/// Which octets of each message a FetchBody wants.
#[derive(Clone, Copy, Debug, Default)]
pub struct BodySlice {
    /// Only the header block (ENVELOPE, header fields), not the body after it.
    pub headers_only: bool,
    /// Each message's cached items with its metadata.
    pub with_cached: bool,
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
