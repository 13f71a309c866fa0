//! SELECT snapshots: the messages of a mailbox as SELECT saw them ([`Snapshot`]), and those of
//! large mailboxes kept between sessions ([`SnapshotCache`]): a client that selects a mailbox
//! nothing changed in since it was last read here (a phone reconnecting, a sync tool polling)
//! gets it without the mailstore reading every message again.
//!
//! A kept snapshot is never served stale: SELECT names it to the mailstore (mailbox id and
//! HIGHESTMODSEQ, which every change raises), which answers that it is current, or with what
//! changed since ([`apply_delta`]) when that is little, or with the whole mailbox. Memory is
//! bounded by the number of messages kept over all snapshots.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kubemail_proto::mailstore::{MailboxInfo, SelectMailboxResponse};

/// Mailboxes smaller than this are read whole each time: cheap, and not worth the memory.
pub const MIN_MESSAGES: usize = 1000;

/// The messages of a mailbox in UID order, with their flags and MODSEQs. Keyword lists are
/// interned: a mailbox has few distinct ones however many messages carry them, so a snapshot
/// of 10,000 messages is a few flat vectors, cheap to keep, to copy into a session and to drop.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub mailbox: MailboxInfo,
    pub uids: Vec<u32>,
    pub flags: Vec<u32>,
    pub modseqs: Vec<u64>,
    /// Per message, its keyword list in `keywords`.
    pub keyword_ids: Vec<u32>,
    pub keywords: KeywordLists,
}

impl Snapshot {
    /// The snapshot a whole (not delta) SELECT answer describes.
    pub fn from_answer(answer: SelectMailboxResponse) -> Snapshot {
        let mut keywords = KeywordLists::default();
        let mut keyword_ids = vec![KeywordLists::NONE; answer.uids.len()];
        for (uid, list) in answer.keyword_uids.iter().zip(&answer.keywords) {
            if let Ok(index) = answer.uids.binary_search(uid) {
                keyword_ids[index] = keywords.intern(list);
            }
        }
        Snapshot {
            mailbox: answer.mailbox.unwrap_or_default(),
            uids: answer.uids,
            flags: answer.flags,
            modseqs: answer.modseqs,
            keyword_ids,
            keywords,
        }
    }

    /// Every keyword some message has, once each (IMAP keywords are case-insensitive), in the
    /// order of the first message that has it.
    pub fn mailbox_keywords(&self) -> Vec<&str> {
        let mut seen = vec![false; self.keywords.len()];
        let mut found: Vec<&str> = Vec::new();
        for &id in &self.keyword_ids {
            if std::mem::replace(&mut seen[id as usize], true) {
                continue;
            }
            for keyword in self.keywords.get(id).split_whitespace() {
                if !found.iter().any(|known| known.eq_ignore_ascii_case(keyword)) {
                    found.push(keyword);
                }
            }
        }
        found
    }
}

/// The distinct keyword lists (space-separated) of a mailbox's messages, each with a number;
/// [`KeywordLists::NONE`] is the empty list.
#[derive(Clone, Debug)]
pub struct KeywordLists {
    lists: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, u32>,
}

impl Default for KeywordLists {
    fn default() -> Self {
        let none: Arc<str> = Arc::from("");
        KeywordLists { lists: vec![none.clone()], ids: HashMap::from([(none, KeywordLists::NONE)]) }
    }
}

impl KeywordLists {
    /// The number of the empty list.
    pub const NONE: u32 = 0;

    /// The number of `list`, given one if it is new.
    pub fn intern(&mut self, list: &str) -> u32 {
        if let Some(id) = self.ids.get(list) {
            return *id;
        }
        let id = self.lists.len() as u32;
        let list: Arc<str> = Arc::from(list);
        self.lists.push(list.clone());
        self.ids.insert(list, id);
        id
    }

    /// The list numbered `id`.
    pub fn get(&self, id: u32) -> &str {
        self.lists.get(id as usize).map_or("", |list| list)
    }

    fn len(&self) -> usize {
        self.lists.len()
    }
}

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
    by_mailbox: HashMap<(i64, String), Arc<Snapshot>>,
    messages: usize,
}

impl SnapshotCache {
    /// A cache of up to `capacity` messages, of snapshots of at least `min_messages` each
    /// (normally [`MIN_MESSAGES`]).
    pub fn new(capacity: usize, min_messages: usize) -> SnapshotCache {
        SnapshotCache { capacity, min_messages, kept: Mutex::new(Kept::default()) }
    }

    /// The kept snapshot of the mailbox `name` of `account_id`, to be checked with the mailstore.
    pub fn get(&self, account_id: i64, name: &str) -> Option<Arc<Snapshot>> {
        let kept = self.kept.lock().expect("snapshot cache lock");
        kept.by_mailbox.get(&(account_id, name.to_string())).cloned()
    }

    /// Keeps `snapshot` of the mailbox `name` (if it is large enough to be worth it), in place
    /// of the one kept before; older ones make room when the capacity is reached.
    pub fn put(&self, account_id: i64, name: &str, snapshot: &Arc<Snapshot>) {
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
        kept.by_mailbox.insert((account_id, name.to_string()), snapshot.clone());
    }
}

/// The snapshot `kept` brought up to date with `delta` (a SELECT answer with `delta` set):
/// expunged messages gone, changed ones replaced, new ones added, all in UID order. Keyword
/// lists no message has any more are dropped.
pub fn apply_delta(kept: &Snapshot, delta: SelectMailboxResponse) -> Snapshot {
    let expunged = |uid: u32| delta.expunged.binary_search(&uid).is_ok();
    let delta_keywords: HashMap<u32, &str> =
        delta.keyword_uids.iter().copied().zip(delta.keywords.iter().map(String::as_str)).collect();
    let count = kept.uids.len() + delta.uids.len();
    let mut current = Snapshot {
        mailbox: delta.mailbox.clone().unwrap_or_default(),
        uids: Vec::with_capacity(count),
        flags: Vec::with_capacity(count),
        modseqs: Vec::with_capacity(count),
        keyword_ids: Vec::with_capacity(count),
        keywords: KeywordLists::default(),
    };
    // Kept list numbers as numbered in `current`, on first use.
    let mut renumbered: Vec<Option<u32>> = vec![None; kept.keywords.len()];
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
        if expunged(uid) {
            continue;
        }
        let keyword_id = if take_new {
            current.keywords.intern(delta_keywords.get(&uid).copied().unwrap_or(""))
        } else {
            let kept_id = kept.keyword_ids[old - 1];
            *renumbered[kept_id as usize].get_or_insert_with(|| current.keywords.intern(kept.keywords.get(kept_id)))
        };
        current.uids.push(uid);
        current.flags.push(flags);
        current.modseqs.push(modseq);
        current.keyword_ids.push(keyword_id);
    }
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(messages: u32) -> Arc<Snapshot> {
        Arc::new(Snapshot { uids: (1..=messages).collect(), ..Default::default() })
    }

    #[test]
    fn a_delta_removes_replaces_and_adds_messages() {
        let kept = Snapshot::from_answer(SelectMailboxResponse {
            uids: vec![1, 2, 3, 5],
            flags: vec![0, 1, 0, 8],
            modseqs: vec![10, 11, 12, 13],
            keyword_uids: vec![2, 5],
            keywords: vec!["$Work".into(), "$Old".into()],
            ..Default::default()
        });
        assert_eq!(kept.mailbox_keywords(), ["$Work", "$Old"]);
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
        let keywords: Vec<&str> = current.keyword_ids.iter().map(|id| current.keywords.get(*id)).collect();
        assert_eq!(keywords, ["", "$Work", "$Todo", ""]);
        assert_eq!(current.mailbox_keywords(), ["$Work", "$Todo"], "keywords of expunged messages are gone");
        assert_eq!(current.keywords.len(), 3, "lists no message has are dropped");
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
