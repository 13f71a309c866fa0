//! Group commit for writes into one mailbox: deliveries and IMAP APPENDs.
//!
//! Writes into one mailbox serialise on its row lock, and each must wait for the one ahead to
//! commit (an fsync) before it can take the next UID: one mailbox takes one commit per message
//! however many callers write at once. Here the writes that arrive for a mailbox while one is
//! being written queue up, and the queue goes to the database next as one transaction: one
//! commit for all of them. A write with nothing ahead of it is written at once, so an
//! uncontended mailbox waits for nothing.
//!
//! Each group is drained by a task of its own rather than by the caller that opened it: a
//! caller that goes away (a cancelled RPC) must not strand the writes queued behind it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::Store;
use crate::{Error, Result};

/// Most writes in one transaction; the rest wait for the next one.
const MAX_GROUP_MESSAGES: usize = 64;
/// Most body octets written in one transaction (a group always takes at least one write).
const MAX_GROUP_OCTETS: u64 = 16 * 1024 * 1024;

/// A write that can share a transaction with others of its kind into the same mailbox.
pub(super) trait GroupedWrite: Send + Sized + 'static {
    /// The mailbox the write goes to, as its callers name it.
    type Key: Clone + Eq + Hash + Send + 'static;
    type Answer: Send + 'static;

    fn key(&self) -> Self::Key;
    /// The size of the message it stores.
    fn octets(&self) -> u64;
    /// Writes `group` (all under one key) and answers each, in order.
    fn write_all(store: &Store, group: Vec<Self>) -> impl Future<Output = Vec<Result<Self::Answer>>> + Send;
}

type Waiting<W> = Vec<(W, oneshot::Sender<Result<<W as GroupedWrite>::Answer>>)>;

/// The groups being drained, each with the writes waiting for its next transaction.
pub(super) struct Groups<W: GroupedWrite> {
    waiting: Arc<Mutex<HashMap<W::Key, Waiting<W>>>>,
}

impl<W: GroupedWrite> Default for Groups<W> {
    fn default() -> Self {
        Groups { waiting: Arc::default() }
    }
}

impl<W: GroupedWrite> Clone for Groups<W> {
    fn clone(&self) -> Self {
        Groups { waiting: self.waiting.clone() }
    }
}

impl<W: GroupedWrite> Groups<W> {
    fn lock(&self) -> MutexGuard<'_, HashMap<W::Key, Waiting<W>>> {
        // A panic elsewhere cannot leave the map half-changed: every change is one call.
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Up to a group's worth of the writes waiting under `key`, oldest first; none (and the
    /// group closed) when nothing waits.
    fn next_group(&self, key: &W::Key) -> Waiting<W> {
        let mut waiting = self.lock();
        let Some(queue) = waiting.get_mut(key) else { return Vec::new() };
        let mut octets = 0;
        let take = queue
            .iter()
            .take(MAX_GROUP_MESSAGES)
            .take_while(|(write, _)| {
                octets += write.octets();
                octets <= MAX_GROUP_OCTETS
            })
            .count()
            .max(1);
        let group: Waiting<W> = queue.drain(..take.min(queue.len())).collect();
        if group.is_empty() {
            waiting.remove(key);
        }
        group
    }
}

/// The drain task's hold on its group. Should the task end before the group is empty (a
/// panic, a runtime shutting down), dropping it closes the group: the writes still queued are
/// answered with an error (their reply senders dropped) instead of waiting forever, and the
/// next write opens a new group.
struct OpenGroup<W: GroupedWrite> {
    groups: Groups<W>,
    key: W::Key,
    /// Set once `next_group` found the queue empty and closed the group itself; a new group
    /// under the same key may be open by then and is not ours to close.
    closed: bool,
}

impl<W: GroupedWrite> OpenGroup<W> {
    async fn drain(mut self, store: Store) {
        loop {
            let next = self.groups.next_group(&self.key);
            if next.is_empty() {
                self.closed = true;
                return;
            }
            let (writes, replies): (Vec<W>, Vec<_>) = next.into_iter().unzip();
            for (reply, result) in replies.into_iter().zip(W::write_all(&store, writes).await) {
                // The caller may have gone; the write stands either way.
                let _ = reply.send(result);
            }
        }
    }
}

impl<W: GroupedWrite> Drop for OpenGroup<W> {
    fn drop(&mut self) {
        if !self.closed {
            self.groups.lock().remove(&self.key);
        }
    }
}

impl Store {
    /// Queues `write` behind the writes into the same mailbox being written, opening the group
    /// if there are none, and waits for its result.
    pub(super) async fn write_grouped<W: GroupedWrite>(&self, groups: &Groups<W>, write: W) -> Result<W::Answer> {
        let key = write.key();
        let (reply, answer) = oneshot::channel();
        let open = {
            let mut waiting = groups.lock();
            let queue = waiting.entry(key.clone());
            let open = matches!(queue, std::collections::hash_map::Entry::Vacant(_));
            queue.or_default().push((write, reply));
            open
        };
        if open {
            let group = OpenGroup { groups: groups.clone(), key, closed: false };
            tokio::spawn(group.drain(self.clone()));
        }
        answer.await.map_err(|_| Error::Internal("the write was abandoned by a failed group commit".into()))?
    }
}
