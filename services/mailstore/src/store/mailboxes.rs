//! Mailboxes (folders): list, create, delete, rename, subscribe, and the SELECT snapshot.

use kubemail_proto::events::mailbox_event::Change;
use kubemail_proto::events::{MailboxCreated, MailboxDeleted, MailboxRenamed};
use kubemail_proto::mailstore::{MailboxInfo, SelectMailboxResponse};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{LockedMailbox, Store, get_bool, get_u32, get_u64};
use crate::validate::{self, INBOX, SEPARATOR};
use crate::{Error, Result};

/// Mailbox columns with the counters STATUS and LIST-STATUS need, aggregated over messages.
const MAILBOX_WITH_COUNTERS: &str = "SELECT b.id, b.name, b.uidvalidity, b.uid_next, b.highest_modseq, b.special_use, b.subscribed, \
     COUNT(m.uid) AS messages, \
     CAST(COALESCE(SUM(CASE WHEN (m.flags & 1) = 0 THEN 1 ELSE 0 END), 0) AS BIGINT) AS unseen, \
     CAST(COALESCE(SUM(CASE WHEN (m.flags & 8) <> 0 THEN 1 ELSE 0 END), 0) AS BIGINT) AS deleted, \
     CAST(COALESCE(SUM(m.size), 0) AS BIGINT) AS size \
     FROM mailboxes b LEFT JOIN messages m ON m.mailbox_id = b.id";

impl Store {
    /// Every mailbox of the account, by name, with counters.
    pub async fn list_mailboxes(&self, account_id: i64) -> Result<Vec<MailboxInfo>> {
        let sql = format!("{MAILBOX_WITH_COUNTERS} WHERE b.account_id = $1 GROUP BY b.id ORDER BY b.name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account_id).fetch_all(self.db.reader()).await?;
        rows.iter().map(mailbox_from_row).collect()
    }

    async fn mailbox_info<'e, E>(&self, executor: E, account_id: i64, mailbox_id: i64) -> Result<MailboxInfo>
    where
        E: sqlx::Executor<'e, Database = Any>,
    {
        let sql = format!("{MAILBOX_WITH_COUNTERS} WHERE b.account_id = $1 AND b.id = $2 GROUP BY b.id");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account_id)
            .bind(mailbox_id)
            .fetch_optional(executor)
            .await?
            .ok_or_else(|| Error::not_found(format!("no mailbox with id {mailbox_id}")))?;
        mailbox_from_row(&row)
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
        let mut tx = self.db.write().await?;
        self.lock_account(&mut tx, account_id).await?;
        let source = self.lock_mailbox_by_name(&mut tx, account_id, &from).await?;
        if self.mailbox_id(&mut tx, account_id, &to).await?.is_some() {
            return Err(Error::AlreadyExists(format!("mailbox {to:?} already exists")));
        }
        let mut created = self.create_parents(&mut tx, account_id, &to).await?;
        let renamed_id = if from == INBOX {
            let mut target = self.insert_mailbox(&mut tx, account_id, &to, "").await?;
            let uids: Vec<i64> = sqlx::query_scalar("SELECT uid FROM messages WHERE mailbox_id = $1 ORDER BY uid")
                .bind(source.id)
                .fetch_all(&mut *tx)
                .await?;
            if !uids.is_empty() {
                let count = u32::try_from(uids.len()).map_err(|_| Error::invalid("too many messages"))?;
                let first = self.allocate_uids(&mut tx, &mut target, count).await?;
                // Moving rows keeps their bodies and usage; only mailbox, UID and MODSEQ change.
                for (offset, uid) in uids.iter().enumerate() {
                    sqlx::query(
                        "UPDATE messages SET mailbox_id = $1, uid = $2, modseq = $3 WHERE mailbox_id = $4 AND uid = $5",
                    )
                    .bind(target.id)
                    .bind(i64::from(first) + offset as i64)
                    .bind(target.highest_modseq as i64)
                    .bind(source.id)
                    .bind(uid)
                    .execute(&mut *tx)
                    .await?;
                }
                let mut inbox = source.clone();
                self.bump_modseq(&mut tx, &mut inbox).await?;
            }
            created.push(target.clone());
            target.id
        } else {
            let children =
                sqlx::query("SELECT id, name FROM mailboxes WHERE account_id = $1 AND name LIKE $2 ESCAPE '\\'")
                    .bind(account_id)
                    .bind(format!("{}{SEPARATOR}%", escape_like(&from)))
                    .fetch_all(&mut *tx)
                    .await?;
            sqlx::query("UPDATE mailboxes SET name = $1 WHERE id = $2")
                .bind(&to)
                .bind(source.id)
                .execute(&mut *tx)
                .await?;
            for child in children {
                let child_name: String = child.try_get("name")?;
                let new_name = format!("{to}{}", &child_name[from.len()..]);
                sqlx::query("UPDATE mailboxes SET name = $1 WHERE id = $2")
                    .bind(new_name)
                    .bind(child.try_get::<i64, _>("id")?)
                    .execute(&mut *tx)
                    .await?;
            }
            source.id
        };
        tx.commit().await?;
        for mailbox in &created {
            self.events.publish(mailbox.state(), Change::Created(MailboxCreated { name: mailbox.name.clone() })).await;
        }
        self.events.publish(source.state(), Change::Renamed(MailboxRenamed { from, to })).await;
        self.mailbox_info(self.db.reader(), account_id, renamed_id).await
    }

    pub async fn set_subscribed(&self, account_id: i64, name: &str, subscribed: bool) -> Result<()> {
        let name = validate::mailbox_name(name)?;
        let updated = sqlx::query("UPDATE mailboxes SET subscribed = $1 WHERE account_id = $2 AND name = $3")
            .bind(i64::from(subscribed))
            .bind(account_id)
            .bind(&name)
            .execute(self.db.writer())
            .await?;
        if updated.rows_affected() == 0 {
            return Err(Error::not_found(format!("no mailbox named {name:?}")));
        }
        Ok(())
    }

    /// The SELECT snapshot: counters, and UID, flags and MODSEQ of every message, all from
    /// one consistent read.
    pub async fn select_mailbox(&self, account_id: i64, name: &str) -> Result<SelectMailboxResponse> {
        let name = validate::mailbox_name(name)?;
        let mut tx = self.db.snapshot().await?;
        let id: i64 = sqlx::query_scalar("SELECT id FROM mailboxes WHERE account_id = $1 AND name = $2")
            .bind(account_id)
            .bind(&name)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::not_found(format!("no mailbox named {name:?}")))?;
        let mailbox = self.mailbox_info(&mut *tx, account_id, id).await?;
        let rows = sqlx::query("SELECT uid, flags, modseq, keywords FROM messages WHERE mailbox_id = $1 ORDER BY uid")
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        let mut snapshot = SelectMailboxResponse {
            mailbox: Some(mailbox),
            uids: Vec::with_capacity(rows.len()),
            flags: Vec::with_capacity(rows.len()),
            modseqs: Vec::with_capacity(rows.len()),
            ..Default::default()
        };
        for row in &rows {
            let uid = get_u32(row, "uid")?;
            snapshot.uids.push(uid);
            snapshot.flags.push(get_u32(row, "flags")?);
            snapshot.modseqs.push(get_u64(row, "modseq")?);
            let keywords: String = row.try_get("keywords")?;
            if !keywords.is_empty() {
                for keyword in keywords.split_whitespace() {
                    if !snapshot.mailbox_keywords.iter().any(|k| k.eq_ignore_ascii_case(keyword)) {
                        snapshot.mailbox_keywords.push(keyword.to_string());
                    }
                }
                snapshot.keyword_uids.push(uid);
                snapshot.keywords.push(keywords);
            }
        }
        Ok(snapshot)
    }
}

/// Escapes LIKE wildcards so a mailbox name matches only itself.
fn escape_like(name: &str) -> String {
    name.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

fn mailbox_from_row(row: &AnyRow) -> Result<MailboxInfo> {
    let count = |column: &str| get_u64(row, column).map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    Ok(MailboxInfo {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        uidvalidity: get_u32(row, "uidvalidity")?,
        uidnext: get_u32(row, "uid_next")?,
        highest_modseq: get_u64(row, "highest_modseq")?,
        special_use: row.try_get("special_use")?,
        subscribed: get_bool(row, "subscribed")?,
        messages: count("messages")?,
        unseen: count("unseen")?,
        deleted: count("deleted")?,
        size: get_u64(row, "size")?,
    })
}
