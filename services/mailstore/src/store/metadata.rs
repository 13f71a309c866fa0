//! METADATA (RFC 5464): entries of a mailbox, or of the account's server view (mailbox id 0),
//! read with their descendants to a depth, and set or removed all together within the
//! per-account limit.

use kubemail_proto::events::MetadataChanged;
use kubemail_proto::events::mailbox_event::Change;
use kubemail_proto::mailstore::{
    GetMetadataResponse, METADATA_MAX_ENTRIES, METADATA_MAX_VALUE, MetadataDepth, MetadataEntry,
};
use sqlx::{AnyConnection, Row};

use super::{Store, mailbox_not_named};
use crate::events::MailboxState;
use crate::validate;
use crate::{Error, Result};

impl Store {
    /// The entries named (each, without a value when it has none) and, to `depth`, those below
    /// them, of `mailbox` (empty: the server view).
    pub async fn get_metadata(
        &self,
        account_id: i64,
        mailbox: &str,
        names: &[String],
        depth: MetadataDepth,
    ) -> Result<GetMetadataResponse> {
        // The two roots may be read (with a depth, everything below them), not set.
        let names: Vec<String> = names
            .iter()
            .map(|name| match name.to_ascii_lowercase().as_str() {
                root @ ("/private" | "/shared") => Ok(root.to_string()),
                _ => validate::metadata_entry(name),
            })
            .collect::<Result<_>>()?;
        let mut connection = self.db.reader().acquire().await?;
        let mailbox_id = metadata_owner(&mut connection, account_id, mailbox).await?;
        let rows =
            sqlx::query("SELECT entry, value FROM metadata WHERE account_id = $1 AND mailbox_id = $2 ORDER BY entry")
                .bind(account_id)
                .bind(mailbox_id)
                .fetch_all(&mut *connection)
                .await?;
        let stored: Vec<(String, Vec<u8>)> =
            rows.iter().map(|row| Ok((row.try_get("entry")?, row.try_get("value")?))).collect::<Result<_>>()?;
        let mut entries = Vec::new();
        for name in &names {
            let value = stored.iter().find(|(entry, _)| entry == name).map(|(_, value)| value.clone());
            entries.push(MetadataEntry { name: name.clone(), value });
            let prefix = format!("{name}/");
            let below = stored.iter().filter(|(entry, _)| {
                entry.strip_prefix(&prefix).is_some_and(|rest| match depth {
                    MetadataDepth::Zero => false,
                    MetadataDepth::One => !rest.contains('/'),
                    MetadataDepth::Infinity => true,
                })
            });
            entries
                .extend(below.map(|(entry, value)| MetadataEntry { name: entry.clone(), value: Some(value.clone()) }));
        }
        Ok(GetMetadataResponse { entries })
    }

    /// Sets the entries with a value and removes those without, on `mailbox` (empty: the
    /// server view): all or none.
    pub async fn set_metadata(&self, account_id: i64, mailbox: &str, entries: &[MetadataEntry]) -> Result<()> {
        let mut checked = Vec::with_capacity(entries.len());
        for entry in entries {
            let name = validate::metadata_entry(&entry.name)?;
            if entry.value.as_ref().is_some_and(|value| value.len() > METADATA_MAX_VALUE) {
                return Err(Error::OutOfRange(format!("a METADATA value may have {METADATA_MAX_VALUE} octets")));
            }
            checked.push((name, entry.value.as_deref()));
        }
        let mut tx = self.db.write().await?;
        // Every writer of the account's entries takes its row first, so the count below holds.
        self.lock_account(&mut tx, account_id).await?;
        let mailbox_id = metadata_owner(&mut tx, account_id, mailbox).await?;
        for (name, value) in &checked {
            match value {
                Some(value) => {
                    sqlx::query(
                        "INSERT INTO metadata (account_id, mailbox_id, entry, value) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (account_id, mailbox_id, entry) DO UPDATE SET value = excluded.value",
                    )
                    .bind(account_id)
                    .bind(mailbox_id)
                    .bind(name)
                    .bind(value.to_vec())
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM metadata WHERE account_id = $1 AND mailbox_id = $2 AND entry = $3")
                        .bind(account_id)
                        .bind(mailbox_id)
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM metadata WHERE account_id = $1")
            .bind(account_id)
            .fetch_one(&mut *tx)
            .await?;
        if count as usize > METADATA_MAX_ENTRIES {
            return Err(Error::QuotaExceeded(format!("an account may have {METADATA_MAX_ENTRIES} METADATA entries")));
        }
        tx.commit().await?;
        let state = MailboxState { account_id, mailbox_id, uidvalidity: 0, highest_modseq: 0 };
        let entries = checked.into_iter().map(|(name, _)| name).collect();
        self.events.publish(state, Change::Metadata(MetadataChanged { mailbox: mailbox.to_string(), entries })).await;
        Ok(())
    }
}

/// The mailbox id the entries of `mailbox` are kept under: 0 for the server view (an empty
/// name), else the mailbox's.
async fn metadata_owner(connection: &mut AnyConnection, account_id: i64, mailbox: &str) -> Result<i64> {
    if mailbox.is_empty() {
        return Ok(0);
    }
    let name = validate::mailbox_name(mailbox)?;
    sqlx::query_scalar("SELECT id FROM mailboxes WHERE account_id = $1 AND name = $2")
        .bind(account_id)
        .bind(&name)
        .fetch_optional(connection)
        .await?
        .ok_or_else(|| mailbox_not_named(&name))
}
