//! SELECT snapshots of large mailboxes, kept between sessions: a client that selects a mailbox
//! nothing changed in since it was last read here (a phone reconnecting, a sync tool polling)
//! gets it without the mailstore reading every message again.
//!
//! A kept snapshot is never served stale: SELECT names it to the mailstore (mailbox id and
//! HIGHESTMODSEQ, which every change raises) and uses it only when the mailstore says it is
//! current. Memory is bounded by the number of messages kept over all snapshots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kubemail_proto::mailstore::SelectMailboxResponse;

/// Mailboxes smaller than this are read whole each time: cheap, and not worth the memory.
pub const MIN_MESSAGES: usize = 1000;

/// See the module documentation.
pub struct SnapshotCache {
    /// Messages kept at most, over all snapshots; 0 keeps none.
    capacity: usize,
    /// Snapshots of fewer messages are not kept.
    min_messages: usize,
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    by_mailbox: HashMap<(i64, String), Arc<SelectMailboxResponse>>,
    messages: usize,
}

impl SnapshotCache {
    /// A cache of up to `capacity` messages, of snapshots of at least `min_messages` each
    /// (normally [`MIN_MESSAGES`]).
    pub fn new(capacity: usize, min_messages: usize) -> SnapshotCache {
        SnapshotCache { capacity, min_messages, kept: Mutex::new(Kept::default()) }
    }

    /// The kept snapshot of the mailbox `name` of `account_id`, to be checked with the mailstore.
    pub fn get(&self, account_id: i64, name: &str) -> Option<Arc<SelectMailboxResponse>> {
        let kept = self.kept.lock().expect("snapshot cache lock");
        kept.by_mailbox.get(&(account_id, name.to_string())).cloned()
    }

    /// Keeps `snapshot` of the mailbox `name` (if it is large enough to be worth it), in place
    /// of the one kept before; older ones make room when the capacity is reached.
    pub fn put(&self, account_id: i64, name: &str, snapshot: &SelectMailboxResponse) {
        let size = snapshot.uids.len();
        let mut kept = self.kept.lock().expect("snapshot cache lock");
        if let Some(old) = kept.by_mailbox.remove(&(account_id, name.to_string())) {
            kept.messages -= old.uids.len();
        }
        if size < self.min_messages || size > self.capacity {
            return;
        }
        while kept.messages + size > self.capacity {
            let Some(key) = kept.by_mailbox.keys().next().cloned() else { break };
            if let Some(old) = kept.by_mailbox.remove(&key) {
                kept.messages -= old.uids.len();
            }
        }
        kept.messages += size;
        kept.by_mailbox.insert((account_id, name.to_string()), Arc::new(snapshot.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(messages: u32) -> SelectMailboxResponse {
        SelectMailboxResponse { uids: (1..=messages).collect(), ..Default::default() }
    }

    #[test]
    fn large_snapshots_are_kept_within_the_capacity() {
        let cache = SnapshotCache::new(3000, MIN_MESSAGES);
        cache.put(1, "INBOX", &snapshot(10));
        assert!(cache.get(1, "INBOX").is_none(), "a small mailbox is read again");
        cache.put(1, "INBOX", &snapshot(2000));
        assert_eq!(cache.get(1, "INBOX").map(|s| s.uids.len()), Some(2000));
        assert!(cache.get(2, "INBOX").is_none() && cache.get(1, "Sent").is_none());

        // A newer snapshot of the same mailbox replaces the old one; another makes room.
        cache.put(1, "INBOX", &snapshot(2500));
        assert_eq!(cache.get(1, "INBOX").map(|s| s.uids.len()), Some(2500));
        cache.put(2, "INBOX", &snapshot(1500));
        assert_eq!(cache.get(2, "INBOX").map(|s| s.uids.len()), Some(1500));
        assert!(cache.get(1, "INBOX").is_none(), "evicted to stay within 3000 messages");
        assert_eq!(cache.kept.lock().unwrap().messages, 1500);

        let off = SnapshotCache::new(0, MIN_MESSAGES);
        off.put(1, "INBOX", &snapshot(2000));
        assert!(off.get(1, "INBOX").is_none());
    }
}
