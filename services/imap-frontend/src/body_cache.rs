//! Whole messages the frontend read lately ([`BodyCache`]), by mailbox, UIDVALIDITY and UID,
//! within a budget of octets. A message's octets never change once it is stored, so a body kept
//! is never stale, and a recreated mailbox (a new UIDVALIDITY) is another mailbox. Clients read
//! a message in pieces (its header, then each part it shows) and open it again; each piece
//! after the first is cut from the body kept here, with no mailstore round trip. The body read
//! longest ago makes room.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

/// A message: mailbox id, UIDVALIDITY, UID.
type Key = (i64, u32, u32);

pub struct BodyCache {
    /// Octets kept at most, over all bodies; 0 keeps none.
    budget: usize,
    kept: Mutex<Kept>,
}

struct Kept {
    /// Each body with when it was last read.
    bodies: HashMap<Key, (u64, Arc<[u8]>)>,
    /// The bodies by when they were last read, oldest first.
    by_age: BTreeMap<u64, Key>,
    octets: usize,
    /// Counts reads and stores, to order the bodies by age.
    clock: u64,
}

impl BodyCache {
    /// A cache of at most `budget` octets. No one body takes more than a sixty-fourth of it, so
    /// one large attachment does not push out everything else.
    pub fn new(budget: usize) -> BodyCache {
        let kept = Kept { bodies: HashMap::new(), by_age: BTreeMap::new(), octets: 0, clock: 0 };
        BodyCache { budget, kept: Mutex::new(kept) }
    }

    fn largest(&self) -> usize {
        self.budget / 64
    }

    fn lock(&self) -> MutexGuard<'_, Kept> {
        // Every change is one call that cannot panic half-way: a poisoned lock holds whole maps.
        self.kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The bodies of `uids` in the mailbox, in their order, when every one is kept; `None`
    /// (and no body counted as read) when any is not.
    pub fn get_all(&self, mailbox_id: i64, uidvalidity: u32, uids: &[u32]) -> Option<Vec<Arc<[u8]>>> {
        if self.budget == 0 {
            return None;
        }
        let mut kept = self.lock();
        let bodies: Vec<Arc<[u8]>> = uids
            .iter()
            .map(|uid| kept.bodies.get(&(mailbox_id, uidvalidity, *uid)).map(|(_, body)| body.clone()))
            .collect::<Option<_>>()?;
        for uid in uids {
            kept.touch((mailbox_id, uidvalidity, *uid));
        }
        Some(bodies)
    }

    /// Keeps the body of `uid` in the mailbox, unless it is larger than one body may be; the
    /// bodies read longest ago make room.
    pub fn put(&self, mailbox_id: i64, uidvalidity: u32, uid: u32, body: &[u8]) {
        if body.len() > self.largest() {
            return;
        }
        let key = (mailbox_id, uidvalidity, uid);
        let mut kept = self.lock();
        if kept.bodies.contains_key(&key) {
            kept.touch(key);
            return;
        }
        while kept.octets + body.len() > self.budget {
            let Some((_, oldest)) = kept.by_age.pop_first() else { break };
            if let Some((_, gone)) = kept.bodies.remove(&oldest) {
                kept.octets -= gone.len();
            }
        }
        kept.clock += 1;
        let now = kept.clock;
        kept.by_age.insert(now, key);
        kept.bodies.insert(key, (now, Arc::from(body)));
        kept.octets += body.len();
    }

    /// Octets kept now.
    pub fn octets(&self) -> usize {
        self.lock().octets
    }
}

impl Kept {
    /// Marks the kept body of `key` as read now.
    fn touch(&mut self, key: Key) {
        self.clock += 1;
        let now = self.clock;
        let Some((read, _)) = self.bodies.get_mut(&key) else { return };
        let before = std::mem::replace(read, now);
        self.by_age.remove(&before);
        self.by_age.insert(now, key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIB: usize = 1024;

    #[test]
    fn a_kept_body_is_given_back_whole_and_only_for_its_mailbox_and_uidvalidity() {
        let cache = BodyCache::new(64 * 64 * KIB);
        cache.put(7, 100, 1, b"first");
        cache.put(7, 100, 2, b"second");
        let bodies = cache.get_all(7, 100, &[2, 1]).expect("both kept");
        assert_eq!(bodies.iter().map(|body| &body[..]).collect::<Vec<_>>(), [&b"second"[..], b"first"]);
        assert!(cache.get_all(7, 101, &[1]).is_none(), "another UIDVALIDITY is another mailbox");
        assert!(cache.get_all(8, 100, &[1]).is_none());
        assert!(cache.get_all(7, 100, &[1, 3]).is_none(), "all or nothing");
    }

    #[test]
    fn the_body_read_longest_ago_makes_room_and_the_budget_holds() {
        // Room for 64 bodies of one KiB (the largest a body may be here).
        let cache = BodyCache::new(64 * KIB);
        let body = vec![b'x'; KIB];
        for uid in 1..=64 {
            cache.put(1, 1, uid, &body);
        }
        assert_eq!(cache.octets(), 64 * KIB);
        // 1 is read again, so 2 is now the one read longest ago.
        assert!(cache.get_all(1, 1, &[1]).is_some());
        cache.put(1, 1, 65, &body);
        assert!(cache.get_all(1, 1, &[2]).is_none(), "the one read longest ago made room");
        assert!(cache.get_all(1, 1, &[1, 3, 65]).is_some());
        cache.put(1, 1, 66, &body);
        assert!(cache.get_all(1, 1, &[4]).is_none());
        assert_eq!(cache.octets(), 64 * KIB);
    }

    #[test]
    fn a_body_too_large_or_a_budget_of_nothing_keeps_nothing() {
        let cache = BodyCache::new(64 * KIB);
        cache.put(1, 1, 1, &vec![b'x'; KIB + 1]);
        assert!(cache.get_all(1, 1, &[1]).is_none());
        assert_eq!(cache.octets(), 0);
        let off = BodyCache::new(0);
        off.put(1, 1, 1, b"");
        assert!(off.get_all(1, 1, &[1]).is_none());
    }
}
