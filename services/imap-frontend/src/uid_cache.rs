//! What the frontend keeps of messages between commands and sessions, by mailbox, UIDVALIDITY
//! and UID ([`UidCache`]): only what never changes once a message is stored, so nothing kept is
//! ever stale, and a recreated mailbox (a new UIDVALIDITY) is another mailbox. It holds as many
//! entries as its capacity, over all mailboxes; the mailboxes read longest ago make room.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct UidCache<T> {
    /// Entries kept at most, over all mailboxes; 0 keeps none.
    capacity: usize,
    kept: Mutex<Kept<T>>,
}

/// The entries of one mailbox by UID, with when they were last read.
type MailboxEntries<T> = (u64, HashMap<u32, Arc<T>>);

struct Kept<T> {
    /// By mailbox id and UIDVALIDITY.
    by_mailbox: HashMap<(i64, u32), MailboxEntries<T>>,
    entries: usize,
    /// Counts reads, to find the mailbox read longest ago.
    clock: u64,
}

impl<T> UidCache<T> {
    pub fn new(capacity: usize) -> UidCache<T> {
        UidCache { capacity, kept: Mutex::new(Kept { by_mailbox: HashMap::new(), entries: 0, clock: 0 }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept<T>> {
        // Every change is one call that cannot panic half-way: a poisoned lock holds a whole map.
        self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The kept entries of `uids` in the mailbox, by UID; those not kept are left out.
    pub fn get(&self, mailbox_id: i64, uidvalidity: u32, uids: &[u32]) -> HashMap<u32, Arc<T>> {
        let mut kept = self.lock();
        kept.clock += 1;
        let now = kept.clock;
        let Some((read, entries)) = kept.by_mailbox.get_mut(&(mailbox_id, uidvalidity)) else {
            return HashMap::new();
        };
        *read = now;
        uids.iter().filter_map(|uid| Some((*uid, entries.get(uid)?.clone()))).collect()
    }

    /// Keeps `entries` of the mailbox; the mailboxes read longest ago make room.
    pub fn put(&self, mailbox_id: i64, uidvalidity: u32, entries: &[(u32, Arc<T>)]) {
        if entries.is_empty() || entries.len() > self.capacity {
            return;
        }
        let mut kept = self.lock();
        let key = (mailbox_id, uidvalidity);
        while kept.entries + entries.len() > self.capacity {
            let oldest = kept.by_mailbox.iter().filter(|(other, _)| **other != key).min_by_key(|(_, (read, _))| *read);
            let Some(oldest) = oldest.map(|(other, _)| *other) else { break };
            if let Some((_, gone)) = kept.by_mailbox.remove(&oldest) {
                kept.entries -= gone.len();
            }
        }
        kept.clock += 1;
        let now = kept.clock;
        let (read, mailbox) = kept.by_mailbox.entry(key).or_insert_with(|| (0, HashMap::new()));
        *read = now;
        let before = mailbox.len();
        for (uid, entry) in entries {
            mailbox.insert(*uid, entry.clone());
        }
        let added = mailbox.len() - before;
        kept.entries += added;
        if kept.entries > self.capacity {
            // One mailbox outgrew the room on its own: start it again.
            if let Some((_, gone)) = kept.by_mailbox.remove(&key) {
                kept.entries -= gone.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_makes_room_by_dropping_the_mailbox_read_longest_ago() {
        let cache = UidCache::new(3);
        let entry = Arc::new("kept");
        cache.put(1, 1, &[(1, entry.clone()), (2, entry.clone())]);
        cache.put(2, 1, &[(1, entry.clone())]);
        assert_eq!(cache.get(1, 1, &[1, 2]).len(), 2);
        cache.put(3, 1, &[(1, entry.clone())]);
        assert!(cache.get(2, 1, &[1]).is_empty(), "mailbox 2 was read longest ago");
        assert_eq!(cache.get(1, 1, &[1, 2]).len(), 2);
        assert!(cache.get(1, 2, &[1]).is_empty(), "another UIDVALIDITY is another mailbox");
    }
}
