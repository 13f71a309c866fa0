//! Messages, one module per operation, each with its PostgreSQL form beside its general one.
//!
//! - [`deliver`] — Deliver from the queue, once per (queue message, recipient); delivery records.
//! - [`append`] — IMAP APPEND.
//! - [`group`] — group commit: deliveries and APPENDs into one mailbox that queue up share a
//!   transaction.
//! - [`read`] — metadata (with the cached FETCH items) and body fetches, search, quota.
//! - [`flags`] — STORE, which counts its own changes in the mailbox counters.
//! - [`expunge`] — EXPUNGE, POP3's removal, the UIDs expunged since a MODSEQ.
//! - [`copy`] — COPY and MOVE.
//! - [`uids`] — the UID sets requests name.
//!
//! This file holds what they share: the incoming message with what is derived from it once
//! (hash, header, cached FETCH items), the row it is stored as and the event that announces it,
//! and the reads of message rows. It and `uids` are below every operation, `group` below
//! deliver and append; `copy` uses `expunge` (a move removes its sources as EXPUNGE does), and no
//! other operation uses another.

pub(super) mod append;
mod copy;
pub(super) mod deliver;
mod expunge;
mod flags;
pub(super) mod group;
mod read;
mod uids;

pub use read::BodySlice;

use bytes::Bytes;
use kubemail_message::cached;
use kubemail_proto::events::MessagesAdded;
use kubemail_proto::events::mailbox_event::Change;
use kubemail_proto::mailstore::{CachedItems, Flags, MessageMeta, SystemFlag};
use prost::Message as _;
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{LockedMailbox, Store, get_u32, get_u64, mailbox_not_found, now, to_i64};
use crate::validate;
use crate::{Error, Result};
use uids::UidSet;

/// Rows per multi-row INSERT, well below SQLite's and PostgreSQL's bind-parameter limits.
const INSERT_BATCH: usize = 200;

/// A message body checked against the size limit, with what is derived from it once.
#[derive(Clone, Debug)]
pub struct IncomingMessage {
    body: Bytes,
    hash: String,
    header_size: u64,
    /// The FETCH items kept with the body (kubemail-message's `cached`), encoded.
    cached: Vec<u8>,
}

impl IncomingMessage {
    /// Checks `body` (non-empty, at most `max_size` octets) and derives its content hash, header
    /// length and cached FETCH items.
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
        let cached = cached::derive(&body).encode_to_vec();
        Ok(IncomingMessage { body, hash, header_size, cached })
    }

    pub fn size(&self) -> u64 {
        self.body.len() as u64
    }

    fn body(&self) -> &[u8] {
        &self.body
    }

    /// SHA-256 of the body, hex: the key the body is stored under once.
    fn hash(&self) -> &str {
        &self.hash
    }

    fn header_size(&self) -> u64 {
        self.header_size
    }

    /// The header block, kept apart from the body so header fields are read without it.
    fn header(&self) -> &[u8] {
        &self.body[..usize::try_from(self.header_size).unwrap_or(usize::MAX).min(self.body.len())]
    }

    fn cached(&self) -> &[u8] {
        &self.cached
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

/// A message just stored, as the event that announces it tells it: its flags and MODSEQ go
/// with its UID, so sessions learn them without reading them back.
#[derive(Clone, Debug)]
pub(in crate::store) struct Stored {
    uid: u32,
    system_flags: u32,
    /// As stored: space-separated.
    keywords: String,
    modseq: u64,
}

impl Stored {
    /// A message stored as `uid` of `folder` (the mailbox after its insert, whose MODSEQ it
    /// took) with the flags of `new`.
    fn new(folder: &LockedMailbox, uid: u32, new: &NewMessage) -> Stored {
        Stored { uid, system_flags: new.system_flags, keywords: new.keywords.clone(), modseq: folder.highest_modseq }
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
            "INSERT INTO blobs (hash, data, header, cached) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (hash) DO UPDATE SET hash = excluded.hash",
        )
        .bind(&message.hash)
        .bind(message.body.as_ref())
        .bind(message.header())
        .bind(message.cached())
        .execute(&mut **tx)
        .await?;
        sqlx::query(
            "INSERT INTO messages (mailbox_id, uid, account_id, modseq, flags, keywords, internal_date, size, header_size, blob_hash, saved_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
        .bind(now())
        .execute(&mut **tx)
        .await?;
        count_inserted(tx, folder.id, [(new.system_flags, message.size())]).await?;
        Ok((folder, uid))
    }

    /// Tells sessions about messages just stored in `folder`.
    async fn announce_added(&self, folder: &LockedMailbox, stored: &[Stored]) {
        let change = Change::Added(MessagesAdded {
            uids: stored.iter().map(|message| message.uid).collect(),
            uidnext: folder.uid_next,
            system_flags: stored.iter().map(|message| message.system_flags).collect(),
            keywords: stored.iter().map(|message| message.keywords.clone()).collect(),
            modseqs: stored.iter().map(|message| message.modseq).collect(),
        });
        self.events.publish(folder.state(), change).await;
    }

    /// The highest MODSEQ of the mailbox `mailbox_id` of `account_id` and the metadata rows of
    /// its messages within a UID set, in UID order. One statement, so one consistent view with
    /// no transaction around it (a transaction costs two more round trips to the database);
    /// a second one only when no message is in the span, to tell an empty span from a mailbox
    /// that is missing or another account's.
    async fn mailbox_rows(&self, account_id: i64, mailbox_id: i64, ranges: &UidSet) -> Result<(u64, Vec<AnyRow>)> {
        self.mailbox_rows_reading(account_id, mailbox_id, ranges, false).await
    }

    /// [`Store::mailbox_rows`], each row also with its body's cached items (`cached`) when
    /// `with_cached`.
    async fn mailbox_rows_reading(
        &self,
        account_id: i64,
        mailbox_id: i64,
        ranges: &UidSet,
        with_cached: bool,
    ) -> Result<(u64, Vec<AnyRow>)> {
        let (low, high) = ranges.span();
        // The mailbox's MODSEQ as a sub-select rather than a join keeps the plan one index scan
        // in UID order, cheap to plan at every call.
        let sql = if with_cached { MAILBOX_ROWS_CACHED } else { MAILBOX_ROWS };
        let rows =
            sqlx::query(sql).bind(mailbox_id).bind(account_id).bind(low).bind(high).fetch_all(self.db.reader()).await?;
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
            "SELECT uid, modseq, flags, keywords, internal_date, size, header_size, blob_hash, saved_at FROM messages \
             WHERE mailbox_id = $1 AND uid BETWEEN $2 AND $3 ORDER BY uid",
        )
        .bind(mailbox_id)
        .bind(low)
        .bind(high)
        .fetch_all(&mut **tx)
        .await?;
        ranges.keep(rows)
    }
}

/// [`Store::mailbox_rows`]' statement.
const MAILBOX_ROWS: &str = "\
SELECT (SELECT highest_modseq FROM mailboxes WHERE id = $1 AND account_id = $2) AS mailbox_modseq,
       uid, modseq, flags, keywords, internal_date, size, header_size, blob_hash, saved_at
FROM messages WHERE mailbox_id = $1 AND uid BETWEEN $3 AND $4 ORDER BY uid";

/// [`MAILBOX_ROWS`] with each body's cached items.
const MAILBOX_ROWS_CACHED: &str = "\
SELECT (SELECT highest_modseq FROM mailboxes WHERE id = $1 AND account_id = $2) AS mailbox_modseq,
       m.uid, m.modseq, m.flags, m.keywords, m.internal_date, m.size, m.header_size, m.blob_hash, m.saved_at, b.cached
FROM messages m JOIN blobs b ON b.hash = m.blob_hash
WHERE m.mailbox_id = $1 AND m.uid BETWEEN $3 AND $4 ORDER BY m.uid";

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
        save_date: row.try_get::<Option<i64>, _>("saved_at")?.unwrap_or(0),
        email_id: email_id(&row.try_get::<String, _>("blob_hash")?),
        cached: None,
    })
}

/// The cached FETCH items of a row that read `blobs.cached`; `None` for a body stored before
/// they were kept (migration 0008), or whose items cannot be read: derived again from the body.
fn cached_from_row(row: &AnyRow) -> Result<Option<CachedItems>> {
    let Some(encoded) = row.try_get::<Option<Vec<u8>>, _>("cached")? else { return Ok(None) };
    match CachedItems::decode(encoded.as_slice()) {
        Ok(cached) => Ok(Some(cached)),
        Err(error) => {
            tracing::warn!(%error, "the cached items of a message cannot be read; they are derived again");
            Ok(None)
        }
    }
}

/// The EMAILID of a message (RFC 8474 §5.1): from its content hash, so a message keeps it
/// when copied or moved and the same content has the same one. 96 bits of the SHA-256 are
/// plenty to tell one account's messages apart.
fn email_id(blob_hash: &str) -> String {
    format!("M{}", blob_hash.get(..24).unwrap_or(blob_hash))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_size_finds_the_blank_line() {
        assert_eq!(header_size(b"Subject: x\r\n\r\nbody"), 14);
        assert_eq!(header_size(b"Subject: x\n\nbody"), 12);
        assert_eq!(header_size(b"Subject: x\r\n"), 12);
    }
}
