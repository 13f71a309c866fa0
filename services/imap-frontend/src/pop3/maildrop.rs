//! The maildrop of a POP3 session: the INBOX as it was at login, numbered 1..n for the whole
//! session whatever happens to the mailbox meanwhile (RFC 1939 §5: message numbers never change
//! within a session), the messages marked deleted, and the UPDATE state that removes them.
//!
//! UIDL is `<UIDVALIDITY>.<UID>`: IMAP never reuses a UID within one UIDVALIDITY, so the value
//! names one message for good, across sessions and frontends.
//!
//! A message retrieved in full (RETR, not TOP) and kept is marked `\Seen` at QUIT too, so an
//! IMAP client on the same account shows it read; like deletions, a session that does not end
//! with QUIT changes nothing.
//!
//! Clients retrieve one message after another, so RETR reads ahead: the messages after the one
//! asked for come in the same mailstore call, up to [`READ_AHEAD_MESSAGES`] and
//! [`READ_AHEAD_OCTETS`], and wait in the session for their RETR. One call per message would
//! spend more on the round trip than on the message.

use std::collections::HashMap;

use futures::StreamExt;
use kubemail_proto::mailstore::store_flags_request::Operation;
use kubemail_proto::mailstore::{
    FetchBodyRequest, Flags, RemoveMessagesRequest, SelectMailboxRequest, StoreFlagsRequest, SystemFlag, UidRange,
};
use tonic::Status;

use crate::MailstoreClient;
use crate::credentials::Account;

/// Messages one RETR fetches at most, itself included.
pub const READ_AHEAD_MESSAGES: usize = 32;
/// Octets of messages fetched ahead that a session holds at most; the message asked for is
/// fetched whatever its size.
pub const READ_AHEAD_OCTETS: u64 = 2 << 20;

/// One message as the session numbers it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub uid: u32,
    /// Octets as stored, which is what RETR sends before byte-stuffing.
    pub size: u64,
    pub deleted: bool,
    /// `\Seen` already, or retrieved in this session.
    pub seen: bool,
    /// Retrieved in this session while not yet `\Seen`: to be marked at QUIT.
    pub newly_seen: bool,
}

/// See the module documentation.
pub struct Maildrop {
    account_id: i64,
    mailbox_id: i64,
    uidvalidity: u32,
    entries: Vec<Entry>,
    /// Bodies fetched ahead of their RETR, by UID.
    ahead: HashMap<u32, Vec<u8>>,
}

/// Why a message number names no message.
#[derive(Debug, PartialEq, Eq)]
pub enum NoMessage {
    /// Outside 1..n.
    NoSuchMessage,
    AlreadyDeleted,
}

impl Maildrop {
    /// The INBOX of `account` as it is now.
    pub async fn open(mailstore: &MailstoreClient, account: &Account) -> Result<Maildrop, Status> {
        let mut mailstore = mailstore.clone();
        let request = SelectMailboxRequest {
            account_id: account.id,
            name: "INBOX".into(),
            with_sizes: true,
            ..Default::default()
        };
        let selected = mailstore.select_mailbox(request).await?.into_inner();
        let mailbox = selected.mailbox.ok_or_else(|| Status::internal("the INBOX came without its details"))?;
        if selected.sizes.len() != selected.uids.len() || selected.flags.len() != selected.uids.len() {
            return Err(Status::internal("the INBOX snapshot came without a size or flags for every message"));
        }
        let entries = (selected.uids.iter().zip(&selected.flags).zip(&selected.sizes))
            .map(|((&uid, &flags), &size)| {
                let seen = flags & SystemFlag::Seen as u32 != 0;
                Entry { uid, size, deleted: false, seen, newly_seen: false }
            })
            .collect();
        Ok(Maildrop {
            account_id: account.id,
            mailbox_id: mailbox.id,
            uidvalidity: mailbox.uidvalidity,
            entries,
            ahead: HashMap::new(),
        })
    }

    /// Messages not marked deleted, and their octets (STAT).
    pub fn stat(&self) -> (usize, u64) {
        self.live().fold((0, 0), |(count, octets), (_, entry)| (count + 1, octets + entry.size))
    }

    /// The messages not marked deleted, with their numbers.
    pub fn live(&self) -> impl Iterator<Item = (usize, &Entry)> {
        self.entries.iter().enumerate().map(|(index, entry)| (index + 1, entry)).filter(|(_, entry)| !entry.deleted)
    }

    /// The message numbered `number`, unless it is marked deleted.
    pub fn get(&self, number: usize) -> Result<&Entry, NoMessage> {
        match number.checked_sub(1).and_then(|index| self.entries.get(index)) {
            None => Err(NoMessage::NoSuchMessage),
            Some(entry) if entry.deleted => Err(NoMessage::AlreadyDeleted),
            Some(entry) => Ok(entry),
        }
    }

    /// UIDL's unique id of a message.
    pub fn unique_id(&self, entry: &Entry) -> String {
        format!("{}.{}", self.uidvalidity, entry.uid)
    }

    pub fn delete(&mut self, number: usize) -> Result<(), NoMessage> {
        self.get(number)?;
        let entry = &mut self.entries[number - 1];
        entry.deleted = true;
        self.ahead.remove(&entry.uid);
        Ok(())
    }

    /// Notes that message `number` was retrieved in full, for [`Maildrop::update`].
    pub fn retrieved(&mut self, number: usize) {
        if let Some(entry) = number.checked_sub(1).and_then(|index| self.entries.get_mut(index)) {
            entry.newly_seen |= !entry.seen;
            entry.seen = true;
        }
    }

    /// Unmarks every message (RSET).
    pub fn undelete_all(&mut self) {
        self.entries.iter_mut().for_each(|entry| entry.deleted = false);
    }

    /// The octets of message `number` for RETR (reading ahead) or TOP (only it, and what was
    /// read ahead stays); `None` when it is no longer in the mailbox (expunged by another
    /// session since login).
    pub async fn body(
        &mut self,
        mailstore: &MailstoreClient,
        number: usize,
        read_ahead: bool,
    ) -> Result<Option<Vec<u8>>, Status> {
        let Some(uid) = number.checked_sub(1).and_then(|index| self.entries.get(index)).map(|entry| entry.uid) else {
            return Ok(None);
        };
        if let Some(body) = if read_ahead { self.ahead.remove(&uid) } else { self.ahead.get(&uid).cloned() } {
            return Ok(Some(body));
        }
        let mut uids = vec![uid];
        if read_ahead {
            // The messages after this one, until the count or the octets would run over.
            let mut octets = 0;
            let following = self.entries[number..].iter().filter(|entry| !entry.deleted);
            for entry in following.take(READ_AHEAD_MESSAGES - 1) {
                octets += entry.size;
                if octets > READ_AHEAD_OCTETS {
                    break;
                }
                uids.push(entry.uid);
            }
            // What an earlier RETR read ahead and was never asked for is not kept as well.
            self.ahead.clear();
        }
        let mut bodies = self.fetch(mailstore, &uids).await?;
        let body = bodies.remove(&uid);
        if read_ahead {
            self.ahead = bodies;
        }
        Ok(body)
    }

    /// The bodies of `uids` (ascending, as the session numbers them) that are still in the
    /// mailbox.
    async fn fetch(&self, mailstore: &MailstoreClient, uids: &[u32]) -> Result<HashMap<u32, Vec<u8>>, Status> {
        let request = FetchBodyRequest {
            account_id: self.account_id,
            mailbox_id: self.mailbox_id,
            uids: uid_ranges(uids),
            ..Default::default()
        };
        let mut chunks = mailstore.clone().fetch_body(request).await?.into_inner();
        let mut bodies: HashMap<u32, Vec<u8>> = HashMap::with_capacity(uids.len());
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            if uids.contains(&chunk.uid) {
                let body = bodies.entry(chunk.uid).or_insert_with(|| Vec::with_capacity(chunk.length as usize));
                body.extend_from_slice(&chunk.data);
            }
        }
        Ok(bodies)
    }

    /// The UPDATE state (RFC 1939 §6): removes the messages marked deleted, and only those,
    /// whatever else carries `\Deleted` in the mailbox, then marks the messages retrieved and
    /// kept `\Seen`. Returns how many are left. Only the deletions can fail it: `\Seen` is a
    /// courtesy to IMAP clients that POP3 does not promise, so failing to set it is logged.
    pub async fn update(&self, mailstore: &MailstoreClient) -> Result<usize, Status> {
        let uids = |keep: fn(&Entry) -> bool| -> Vec<UidRange> {
            uid_ranges(&self.entries.iter().filter(|e| keep(e)).map(|e| e.uid).collect::<Vec<_>>())
        };
        let deleted = uids(|entry| entry.deleted);
        if !deleted.is_empty() {
            let request =
                RemoveMessagesRequest { account_id: self.account_id, mailbox_id: self.mailbox_id, uids: deleted };
            mailstore.clone().remove_messages(request).await?;
        }
        let read = uids(|entry| entry.newly_seen && !entry.deleted);
        if !read.is_empty()
            && let Err(status) = self.add_flag(mailstore, read, SystemFlag::Seen).await
        {
            tracing::warn!(%status, "messages retrieved over POP3 not marked \\Seen");
        }
        Ok(self.stat().0)
    }

    async fn add_flag(&self, mailstore: &MailstoreClient, uids: Vec<UidRange>, flag: SystemFlag) -> Result<(), Status> {
        let request = StoreFlagsRequest {
            account_id: self.account_id,
            mailbox_id: self.mailbox_id,
            uids,
            operation: Operation::Add as i32,
            flags: Some(Flags { system: flag as u32, keywords: Vec::new() }),
            unchanged_since: 0,
            held: Vec::new(),
        };
        mailstore.clone().store_flags(request).await.map(drop)
    }
}

/// `uids` (ascending) as ranges, consecutive UIDs in one.
fn uid_ranges(uids: &[u32]) -> Vec<UidRange> {
    let mut ranges: Vec<UidRange> = Vec::new();
    for &uid in uids {
        match ranges.last_mut() {
            Some(range) if range.last.checked_add(1) == Some(uid) => range.last = uid,
            _ => ranges.push(UidRange { first: uid, last: uid }),
        }
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_uids_share_a_range() {
        let ranges: Vec<(u32, u32)> =
            uid_ranges(&[1, 2, 3, 5, 7, 8, u32::MAX]).iter().map(|range| (range.first, range.last)).collect();
        assert_eq!(ranges, [(1, 3), (5, 5), (7, 8), (u32::MAX, u32::MAX)]);
        assert!(uid_ranges(&[]).is_empty());
    }
}
