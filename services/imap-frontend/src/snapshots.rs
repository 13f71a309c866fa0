//! SELECT snapshots of large mailboxes, kept between sessions: a client that selects a mailbox
//! nothing changed in since it was last read here (a phone reconnecting, a sync tool polling)
//! gets it without the mailstore reading every message again.
//!
//! A kept snapshot is never served stale: SELECT names it to the mailstore (mailbox id and
//! HIGHESTMODSEQ, which every change raises), which answers that it is current, or with what
//! changed since ([`apply_delta`]) when that is little, or with the whole mailbox. Memory is
//! bounded by the number of messages kept over all snapshots.

use std::collections::{BTreeMap, HashMap};
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

/// The snapshot `kept` brought up to date with `delta` (a SELECT answer with `delta` set):
/// expunged messages gone, changed ones replaced, new ones added, all in UID order.
pub fn apply_delta(kept: &SelectMailboxResponse, delta: SelectMailboxResponse) -> SelectMailboxResponse {
    let expunged = |uid: u32| delta.expunged.binary_search(&uid).is_ok();
    let count = kept.uids.len() + delta.uids.len();
    let mut current = SelectMailboxResponse {
        mailbox: delta.mailbox.clone(),
        uids: Vec::with_capacity(count),
        flags: Vec::with_capacity(count),
        modseqs: Vec::with_capacity(count),
        ..Default::default()
    };
    let (mut old, mut new) = (0, 0);
    while old < kept.uids.len() || new < delta.uids.len() {
        let take_new = match (kept.uids.get(old), delta.uids.get(new)) {
            (Some(kept_uid), Some(new_uid)) => new_uid <= kept_uid,
            (None, _) => true,
            (Some(_), None) => false,
        };
        let (uid, flags, modseq) = if take_new {
            if kept.uids.get(old) == delta.uids.get(new) {
                old += 1; // replaced by its new state
            }
            new += 1;
            (delta.uids[new - 1], delta.flags[new - 1], delta.modseqs[new - 1])
        } else {
            old += 1;
            (kept.uids[old - 1], kept.flags[old - 1], kept.modseqs[old - 1])
        };
        if !expunged(uid) {
            current.uids.push(uid);
            current.flags.push(flags);
            current.modseqs.push(modseq);
        }
    }
    let mut keywords: BTreeMap<u32, &str> =
        kept.keyword_uids.iter().copied().zip(kept.keywords.iter().map(String::as_str)).collect();
    for uid in delta.uids.iter().chain(&delta.expunged) {
        keywords.remove(uid);
    }
    for (uid, list) in delta.keyword_uids.iter().zip(&delta.keywords) {
        if !expunged(*uid) {
            keywords.insert(*uid, list);
        }
    }
    for (uid, list) in keywords {
        for keyword in list.split_whitespace() {
            if !current.mailbox_keywords.iter().any(|known| known.eq_ignore_ascii_case(keyword)) {
                current.mailbox_keywords.push(keyword.to_string());
            }
        }
        current.keyword_uids.push(uid);
        current.keywords.push(list.to_string());
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(messages: u32) -> SelectMailboxResponse {
        SelectMailboxResponse { uids: (1..=messages).collect(), ..Default::default() }
    }

    #[test]
    fn a_delta_removes_replaces_and_adds_messages() {
        let kept = SelectMailboxResponse {
            uids: vec![1, 2, 3, 5],
            flags: vec![0, 1, 0, 8],
            modseqs: vec![10, 11, 12, 13],
            keyword_uids: vec![2, 5],
            keywords: vec!["$Work".into(), "$Old".into()],
            ..Default::default()
        };
        let delta = SelectMailboxResponse {
            delta: true,
            uids: vec![3, 6, 7],
            flags: vec![1, 0, 0],
            modseqs: vec![20, 21, 22],
            keyword_uids: vec![3, 7],
            keywords: vec!["$Todo".into(), "$Gone".into()],
            expunged: vec![5, 7],
            ..Default::default()
        };
        let current = apply_delta(&kept, delta);
        assert_eq!(current.uids, [1, 2, 3, 6]);
        assert_eq!(current.flags, [0, 1, 1, 0]);
        assert_eq!(current.modseqs, [10, 11, 20, 21]);
        assert_eq!((current.keyword_uids, current.keywords), (vec![2, 3], vec!["$Work".into(), "$Todo".into()]));
        assert_eq!(current.mailbox_keywords, ["$Work", "$Todo"], "keywords of expunged messages are gone");
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
