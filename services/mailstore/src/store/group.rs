//! Group commit for deliveries into one mailbox.
//!
//! Deliveries into one mailbox serialise on its row lock, and each must wait for the one ahead
//! to commit (an fsync) before it can take the next UID: one mailbox takes one commit per
//! message however many callers deliver at once. Here the deliveries that arrive for a
//! (recipient, mailbox) while one is being written queue up, and the queue goes to the database
//! next as one transaction: one commit for all of them. A delivery with nothing ahead of it is
//! written at once, so an uncontended mailbox waits for nothing.
//!
//! Each group is drained by a task of its own rather than by the caller that opened it: a
//! caller that goes away (a cancelled RPC) must not strand the deliveries queued behind it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use kubemail_proto::mailstore::DeliverResponse;
use tokio::sync::oneshot;

use super::Store;
use super::messages::Delivery;
use crate::{Error, Result};

/// Most deliveries written in one transaction; the rest wait for the next one.
const MAX_GROUP_MESSAGES: usize = 64;
/// Most body octets written in one transaction (a group always takes at least one delivery).
const MAX_GROUP_OCTETS: u64 = 16 * 1024 * 1024;

/// The recipient (normalised) and the mailbox name (validated) deliveries are grouped by.
type GroupKey = (String, String);
type Waiting = Vec<(Delivery, oneshot::Sender<Result<DeliverResponse>>)>;

/// The groups being drained, each with the deliveries waiting for its next transaction.
#[derive(Clone, Default)]
pub(super) struct DeliveryGroups {
    waiting: Arc<Mutex<HashMap<GroupKey, Waiting>>>,
}

impl DeliveryGroups {
    fn lock(&self) -> MutexGuard<'_, HashMap<GroupKey, Waiting>> {
        // A panic elsewhere cannot leave the map half-changed: every change is one call.
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Up to a group's worth of the deliveries waiting under `key`, oldest first; none (and the
    /// group closed) when nothing waits.
    fn next_group(&self, key: &GroupKey) -> Waiting {
        let mut waiting = self.lock();
        let Some(queue) = waiting.get_mut(key) else { return Vec::new() };
        let mut octets = 0;
        let take = queue
            .iter()
            .take(MAX_GROUP_MESSAGES)
            .take_while(|(delivery, _)| {
                octets += delivery.message.size();
                octets <= MAX_GROUP_OCTETS
            })
            .count()
            .max(1);
        let group: Waiting = queue.drain(..take.min(queue.len())).collect();
        if group.is_empty() {
            waiting.remove(key);
        }
        group
    }
}

/// The drain task's hold on its group. Should the task end before the group is empty (a
/// panic, a runtime shutting down), dropping it closes the group: the deliveries still queued
/// are answered with an error (their reply senders dropped) instead of waiting forever, and the
/// next delivery opens a new group.
struct OpenGroup {
    groups: DeliveryGroups,
    key: GroupKey,
    /// Set once `next_group` found the queue empty and closed the group itself; a new group
    /// under the same key may be open by then and is not ours to close.
    closed: bool,
}

impl OpenGroup {
    async fn drain(mut self, store: Store) {
        loop {
            let next = self.groups.next_group(&self.key);
            if next.is_empty() {
                self.closed = true;
                return;
            }
            store.write_group(next).await;
        }
    }
}

impl Drop for OpenGroup {
    fn drop(&mut self) {
        if !self.closed {
            self.groups.lock().remove(&self.key);
        }
    }
}

impl Store {
    /// Queues `delivery` behind the deliveries into the same mailbox being written, opening
    /// the group if there are none, and waits for its result.
    pub(super) async fn deliver_grouped(&self, delivery: Delivery) -> Result<DeliverResponse> {
        let key = (delivery.recipient.clone(), delivery.mailbox.clone());
        let (reply, answer) = oneshot::channel();
        let open = {
            let mut waiting = self.groups.lock();
            let queue = waiting.entry(key.clone());
            let open = matches!(queue, std::collections::hash_map::Entry::Vacant(_));
            queue.or_default().push((delivery, reply));
            open
        };
        if open {
            let group = OpenGroup { groups: self.groups.clone(), key, closed: false };
            tokio::spawn(group.drain(self.clone()));
        }
        answer.await.map_err(|_| Error::Internal("the delivery was abandoned by a failed group commit".into()))?
    }

    /// Writes `group` and answers each of its deliveries.
    async fn write_group(&self, group: Waiting) {
        let (deliveries, replies): (Vec<Delivery>, Vec<_>) = group.into_iter().unzip();
        for (reply, result) in replies.into_iter().zip(self.deliver_all(deliveries).await) {
            // The caller may have gone; the delivery stands either way.
            let _ = reply.send(result);
        }
    }
}
