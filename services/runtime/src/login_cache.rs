//! Logins remembered for a short time, so a client that connects again and again (a phone
//! polling, a sync tool) does not cost an argon2id verification at the mailstore each time.
//!
//! - An entry is keyed by HMAC-SHA256(user, password) under a key made at startup and kept
//!   only in memory: the cache never holds a password, and its keys mean nothing outside this
//!   process.
//! - Only successful logins are remembered, each for `ttl`.
//! - The mailstore publishes `AccountChanged` when a password or a suspension changes or an
//!   account is deleted; every entry of that account is dropped at once. The cache answers only
//!   while it is subscribed to those events: before the subscription is up, and while it is
//!   being renewed, every login goes to the mailstore.
//! - A verification that was under way when its account changed is not remembered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kubemail_proto::Message;
use kubemail_proto::events::{ACCOUNT_CHANGES, AccountChanged};
use ring::hmac;

use crate::EventBus;
use crate::shutdown::Shutdown;

/// Entries kept at most; beyond it, expired ones are swept and new ones wait for room.
const MAX_ENTRIES: usize = 100_000;
/// Wait before subscribing again after the event stream ended or could not be opened.
const RESUBSCRIBE_DELAY: Duration = Duration::from_secs(1);

/// Who a remembered login is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Login {
    pub account_id: i64,
    pub address: String,
}

/// A verification about to be made, to be remembered if it succeeds ([`LoginCache::remember`]).
pub struct Pending {
    key: hmac::Tag,
    generation: u64,
}

struct Entry {
    login: Login,
    expires: Instant,
}

/// See the module documentation.
pub struct LoginCache {
    key: hmac::Key,
    ttl: Duration,
    entries: Mutex<HashMap<Vec<u8>, Entry>>,
    /// Subscribed to account changes: only then may an entry be trusted.
    live: AtomicBool,
    /// Counts account changes and lost subscriptions, so a verification that spans one is
    /// not remembered.
    generation: AtomicU64,
}

impl LoginCache {
    /// A cache whose entries last `ttl` (zero: nothing is remembered). It answers once
    /// [`LoginCache::follow_account_changes`] runs.
    pub fn new(ttl: Duration) -> Arc<LoginCache> {
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
            .expect("the system random number generator works");
        Arc::new(LoginCache {
            key,
            ttl,
            entries: Mutex::new(HashMap::new()),
            live: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        })
    }

    /// The remembered login for these credentials; otherwise what to hand to
    /// [`LoginCache::remember`] after verifying them.
    pub fn lookup(&self, user: &str, password: &str) -> Result<Login, Pending> {
        let pending = Pending { key: self.tag(user, password), generation: self.generation.load(Ordering::SeqCst) };
        if self.ttl.is_zero() || !self.live.load(Ordering::SeqCst) {
            return Err(pending);
        }
        let entries = self.entries.lock().expect("login cache lock");
        match entries.get(pending.key.as_ref()) {
            Some(entry) if entry.expires > Instant::now() => Ok(entry.login.clone()),
            _ => Err(pending),
        }
    }

    /// A cache following the account changes on `bus` (in a task of its own) until `shutdown`.
    pub fn start(ttl: Duration, bus: Arc<dyn EventBus>, shutdown: Shutdown) -> Arc<LoginCache> {
        let cache = LoginCache::new(ttl);
        if !ttl.is_zero() {
            tokio::spawn(cache.clone().follow_account_changes(bus, shutdown));
        }
        cache
    }

    /// Remembers a successful verification, unless an account changed since it began.
    pub fn remember(&self, pending: Pending, login: Login) {
        if self.ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("login cache lock");
        // Checked under the lock that `forget` takes too: a change is either seen here or
        // removes the entry after it is written.
        if !self.live.load(Ordering::SeqCst) || self.generation.load(Ordering::SeqCst) != pending.generation {
            return;
        }
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, entry| entry.expires > now);
            if entries.len() >= MAX_ENTRIES {
                return;
            }
        }
        entries.insert(pending.key.as_ref().to_vec(), Entry { login, expires: now + self.ttl });
    }

    /// Drops every login of `account_id`.
    pub fn forget(&self, account_id: i64) {
        let mut entries = self.entries.lock().expect("login cache lock");
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.retain(|_, entry| entry.login.account_id != account_id);
    }

    /// Whether the cache answers: it is subscribed to account changes.
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::SeqCst)
    }

    /// Drops everything and stops answering until [`LoginCache::set_live`].
    fn suspend(&self) {
        let mut entries = self.entries.lock().expect("login cache lock");
        self.live.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }

    fn set_live(&self) {
        let _entries = self.entries.lock().expect("login cache lock");
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.live.store(true, Ordering::SeqCst);
    }

    /// Keeps the cache subscribed to account changes on `bus` until `shutdown`; the cache
    /// answers only while this runs and is subscribed.
    pub async fn follow_account_changes(self: Arc<Self>, bus: Arc<dyn EventBus>, shutdown: Shutdown) {
        loop {
            match bus.subscribe(ACCOUNT_CHANGES).await {
                Ok(mut events) => {
                    self.set_live();
                    loop {
                        tokio::select! {
                            event = events.next() => match event {
                                Some(event) => match AccountChanged::decode(event.payload) {
                                    Ok(changed) => self.forget(changed.account_id),
                                    // Whatever it was, some account may have changed.
                                    Err(_) => self.suspend_briefly(),
                                },
                                None => break,
                            },
                            () = shutdown.wait() => return,
                        }
                    }
                    tracing::warn!("account change events ended; remembered logins are dropped");
                }
                Err(error) => tracing::warn!(%error, "cannot subscribe to account changes; logins are not remembered"),
            }
            self.suspend();
            tokio::select! {
                () = tokio::time::sleep(RESUBSCRIBE_DELAY) => {}
                () = shutdown.wait() => return,
            }
        }
    }

    /// An unreadable account event: forget everything, keep answering.
    fn suspend_briefly(&self) {
        self.suspend();
        self.set_live();
    }

    fn tag(&self, user: &str, password: &str) -> hmac::Tag {
        let mut context = hmac::Context::with_key(&self.key);
        // The user's length first, so ("ab", "c") and ("a", "bc") differ.
        context.update(&(user.len() as u64).to_be_bytes());
        context.update(user.as_bytes());
        context.update(password.as_bytes());
        context.sign()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Login {
        Login { account_id: 7, address: "alice@example.org".into() }
    }

    fn live(ttl: Duration) -> Arc<LoginCache> {
        let cache = LoginCache::new(ttl);
        cache.set_live();
        cache
    }

    #[test]
    fn a_verified_login_is_remembered_for_its_credentials_only() {
        let cache = live(Duration::from_secs(60));
        let pending = cache.lookup("alice@example.org", "secret").unwrap_err();
        cache.remember(pending, alice());
        assert_eq!(cache.lookup("alice@example.org", "secret").ok(), Some(alice()));
        assert!(cache.lookup("alice@example.org", "Secret").is_err(), "another password");
        assert!(cache.lookup("alice@example.orgs", "ecret").is_err(), "the same octets split differently");
        let stored = cache.entries.lock().unwrap();
        assert!(stored.keys().all(|key| !key.windows(6).any(|window| window == b"secret")), "no password in the cache");
    }

    #[test]
    fn an_account_change_forgets_its_logins_and_one_under_way() {
        let cache = live(Duration::from_secs(60));
        let pending = cache.lookup("alice@example.org", "old").unwrap_err();
        cache.remember(pending, alice());
        let bob = Login { account_id: 8, address: "bob@example.org".into() };
        cache.remember(cache.lookup("bob@example.org", "pw").unwrap_err(), bob.clone());

        let under_way = cache.lookup("alice@example.org", "other").unwrap_err();
        cache.forget(7);
        assert!(cache.lookup("alice@example.org", "old").is_err());
        assert_eq!(cache.lookup("bob@example.org", "pw").ok(), Some(bob), "other accounts stay");
        cache.remember(under_way, alice());
        assert!(cache.lookup("alice@example.org", "other").is_err(), "verified before the change, not remembered");
    }

    #[test]
    fn nothing_is_answered_before_the_subscription_or_after_the_ttl() {
        let cache = LoginCache::new(Duration::from_secs(60));
        cache.remember(cache.lookup("alice@example.org", "secret").unwrap_err(), alice());
        cache.set_live();
        assert!(cache.lookup("alice@example.org", "secret").is_err(), "not remembered while not subscribed");

        let cache = live(Duration::from_millis(20));
        cache.remember(cache.lookup("alice@example.org", "secret").unwrap_err(), alice());
        assert!(cache.lookup("alice@example.org", "secret").is_ok());
        std::thread::sleep(Duration::from_millis(30));
        assert!(cache.lookup("alice@example.org", "secret").is_err(), "expired");

        let off = live(Duration::ZERO);
        off.remember(off.lookup("alice@example.org", "secret").unwrap_err(), alice());
        assert!(off.lookup("alice@example.org", "secret").is_err(), "a zero TTL remembers nothing");
    }
}
