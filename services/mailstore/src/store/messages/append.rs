//! IMAP APPEND: a message a client stores into one of its mailboxes, with flags and a date;
//! MULTIAPPEND (RFC 3502): several, stored together or not at all.
//!
//! On PostgreSQL the common APPEND (the mailbox exists, the message fits the quota) is one
//! statement, [`APPEND`], written by the group commit; the general transaction takes the rest
//! and tells why it cannot store the message.

use kubemail_proto::mailstore::{AppendResponse, Flags, MultiAppendResponse};
use sqlx::postgres::{PgArguments, Postgres};
use sqlx::query::Query;

use super::group::GroupedWrite;
use super::{IncomingMessage, NewMessage, Stored, keyword_list};
use crate::Result;
use crate::store::{LockedMailbox, Store, now, to_i64};
use crate::validate;

/// An IMAP APPEND, validated.
pub(in crate::store) struct Append {
    account_id: i64,
    /// Validated.
    mailbox: String,
    message: IncomingMessage,
    new: NewMessage,
}

impl Store {
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
            new: NewMessage::appended(flags, internal_date)?,
            message,
        };
        self.write_grouped(&self.appends, append).await
    }

    /// MULTIAPPEND: stores `messages` (flags, INTERNALDATE, body) in the mailbox `mailbox` of
    /// `account_id` in one transaction, so that either all are stored or none is. The quota
    /// counts them together.
    pub async fn append_many(
        &self,
        account_id: i64,
        mailbox: &str,
        messages: Vec<(Flags, i64, IncomingMessage)>,
    ) -> Result<MultiAppendResponse> {
        let mailbox = validate::mailbox_name(mailbox)?;
        let mut checked = Vec::with_capacity(messages.len());
        for (flags, internal_date, message) in messages {
            checked.push((NewMessage::appended(&flags, internal_date)?, message));
        }
        let octets = checked.iter().map(|(_, message)| message.size()).sum();
        let mut tx = self.db.write().await?;
        self.reserve_usage(&mut tx, account_id, octets, checked.len() as u64).await?;
        let mut stored = Vec::with_capacity(checked.len());
        let mut last = None;
        for (new, message) in &checked {
            let (folder, uid) = self.insert_into(&mut tx, account_id, &mailbox, message, new).await?;
            stored.push(Stored::new(&folder, uid, new));
            last = Some(folder);
        }
        tx.commit().await?;
        let folder = last.expect("a MULTIAPPEND has at least one message");
        self.announce_added(&folder, &stored).await;
        let uids = stored.iter().map(|message| message.uid).collect();
        Ok(MultiAppendResponse { mailbox_id: folder.id, uidvalidity: folder.uidvalidity, uids })
    }

    /// Any APPEND, in a transaction of its own that tells why when it cannot store the message
    /// (no such mailbox, over quota).
    async fn append_general(&self, append: &Append) -> Result<AppendResponse> {
        let Append { account_id, mailbox, message, new } = append;
        let mut tx = self.db.write().await?;
        self.reserve_usage(&mut tx, *account_id, message.size(), 1).await?;
        let (folder, uid) = self.insert_into(&mut tx, *account_id, mailbox, message, new).await?;
        tx.commit().await?;
        self.announce_added(&folder, &[Stored::new(&folder, uid, new)]).await;
        Ok(Append::answer(&folder, uid))
    }
}

impl NewMessage {
    /// What an APPENDed message is stored with: its flags checked, and its INTERNALDATE, or now
    /// when the client gave none (0).
    fn appended(flags: &Flags, internal_date: i64) -> Result<NewMessage> {
        Ok(NewMessage {
            system_flags: validate::system_flags(flags.system)?,
            keywords: keyword_list(flags.keywords.iter().map(String::as_str))?,
            internal_date: if internal_date > 0 { internal_date } else { now() },
        })
    }
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

    fn common_case(&self, now: i64) -> Result<Query<'_, Postgres, PgArguments>> {
        append_query(self, now)
    }

    fn stored(&self, folder: &LockedMailbox, uid: u32) -> Stored {
        Stored::new(folder, uid, &self.new)
    }

    fn answer(folder: &LockedMailbox, uid: u32) -> AppendResponse {
        AppendResponse { mailbox_id: folder.id, uidvalidity: folder.uidvalidity, uid }
    }

    async fn general(&self, store: &Store) -> Result<AppendResponse> {
        store.append_general(self).await
    }
}

/// IMAP APPEND of the common case, as `DELIVER` without the recipient lookup and the delivery
/// record: `usage` counts the message (locking the account row first, like every writer), then
/// `mailbox` takes the UID and MODSEQ, `blob` and `message` store it and `counted` adds it to the
/// mailbox's counters. Should the mailbox have gone between the snapshot and its lock, `message`
/// inserts NULLs and its NOT NULL constraints abort the statement after `usage` counted it, as
/// `record` does in `DELIVER`.
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
    INSERT INTO blobs (hash, data, header, cached) SELECT $4, $5, $11, $12 FROM mailbox
    ON CONFLICT (hash) DO UPDATE SET hash = excluded.hash
    RETURNING hash
),
message AS (
    INSERT INTO messages (mailbox_id, uid, account_id, modseq, flags, keywords, internal_date, size, header_size, blob_hash, saved_at)
    SELECT mailbox.id, mailbox.uid_next - 1, usage.id, mailbox.highest_modseq, $6, $7, $8, $3, $9, blob.hash, $10
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
fn append_query(append: &Append, now: i64) -> Result<Query<'_, Postgres, PgArguments>> {
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
        .bind(to_i64(message.header_size(), "header size")?)
        .bind(now)
        .bind(message.header())
        .bind(message.cached()))
}
