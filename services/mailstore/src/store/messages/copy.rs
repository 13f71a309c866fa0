//! COPY and MOVE: messages copied into another mailbox of the same account; a move then
//! removes them from their source as EXPUNGE does.

use kubemail_proto::events::MessagesExpunged;
use kubemail_proto::events::mailbox_event::Change;
use kubemail_proto::mailstore::{CopyMessagesResponse, MessageMeta, UidRange};

use super::uids::UidSet;
use super::{Stored, count_inserted, meta_from_row};
use crate::store::{Store, now, to_i64};
use crate::validate;
use crate::{Error, Result};

impl Store {
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
                    "INSERT INTO messages (mailbox_id, uid, account_id, modseq, flags, keywords, internal_date, size, header_size, blob_hash, saved_at) \
                     SELECT $1, $2, account_id, $3, flags, keywords, internal_date, size, header_size, blob_hash, $6 \
                     FROM messages WHERE mailbox_id = $4 AND uid = $5",
                )
                .bind(target.id)
                .bind(i64::from(new_uid))
                .bind(to_i64(target.highest_modseq, "MODSEQ")?)
                .bind(source.id)
                .bind(i64::from(meta.uid))
                .bind(now())
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
            // The copies keep their flags, and took the target's MODSEQ.
            let stored: Vec<Stored> = messages
                .iter()
                .zip(&destination_uids)
                .map(|(meta, uid)| {
                    let flags = meta.flags.clone().unwrap_or_default();
                    let keywords = flags.keywords.join(" ");
                    Stored { uid: *uid, system_flags: flags.system, keywords, modseq: target.highest_modseq }
                })
                .collect();
            self.announce_added(&target, &stored).await;
            if move_messages {
                let change = Change::Expunged(MessagesExpunged { uids: source_uids.clone() });
                self.events.publish(source.state(), change).await;
            }
        }
        Ok(CopyMessagesResponse { destination_uidvalidity: target.uidvalidity, source_uids, destination_uids })
    }
}
