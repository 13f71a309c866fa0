//! Per-client-IP limits:
//! - on connections: how many at once and how many new ones per minute (a token bucket). A
//!   client over either limit is refused before the greeting (SMTP answers `421 4.7.0`, IMAP
//!   `* BYE`).
//! - on failed logins ([`AuthFailures`]), across sessions and listeners: each failure from an
//!   address doubles the wait before its next failure is answered.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The limits of one service.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Connections open at once from one address (0 = no limit).
    pub per_ip: u32,
    /// New connections per minute from one address (0 = no limit); bursts up to this many.
    pub per_ip_per_minute: u32,
}

impl ConnectionLimits {
    /// No limit on either: for sessions driven without a listener, and for tests.
    pub const UNLIMITED: ConnectionLimits = ConnectionLimits { per_ip: 0, per_ip_per_minute: 0 };
}

/// The per-address limits as flags, shared by the mail services and `kubemail dev`.
#[derive(Clone, Debug, clap::Args)]
pub struct ConnectionFlags {
    /// Connections open at once from one client address (0 = no limit).
    #[arg(long, env = "KUBEMAIL_MAX_CONNECTIONS_PER_IP", default_value_t = 20)]
    pub max_connections_per_ip: u32,
    /// New connections per minute from one client address (0 = no limit).
    #[arg(long, env = "KUBEMAIL_CONNECTION_RATE_PER_IP", default_value_t = 120)]
    pub connection_rate_per_ip: u32,
}

impl ConnectionFlags {
    pub fn limits(&self) -> ConnectionLimits {
        ConnectionLimits { per_ip: self.max_connections_per_ip, per_ip_per_minute: self.connection_rate_per_ip }
    }
}

/// Tracks open connections and recent connection rates by client address.
#[derive(Debug)]
pub struct ConnectionTracker {
    limits: ConnectionLimits,
    clients: Mutex<HashMap<IpAddr, Client>>,
}

#[derive(Debug)]
struct Client {
    open: u32,
    /// Connections that may still be opened now; refilled with time.
    tokens: f64,
    refilled: Instant,
}

/// Why a connection was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    TooManyOpen,
    TooFrequent,
}

/// Held by an admitted connection; releases its slot when dropped.
#[derive(Debug)]
pub struct Permit {
    tracker: Arc<ConnectionTracker>,
    ip: IpAddr,
}

impl ConnectionTracker {
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(ConnectionTracker { limits, clients: Mutex::new(HashMap::new()) })
    }

    /// Admits a new connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refusal> {
        let limits = self.limits;
        let mut clients = self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        let client =
            clients.entry(ip).or_insert(Client { open: 0, tokens: f64::from(limits.per_ip_per_minute), refilled: now });
        if limits.per_ip_per_minute > 0 {
            let rate = f64::from(limits.per_ip_per_minute) / 60.0;
            let elapsed = now.duration_since(client.refilled).as_secs_f64();
            client.tokens = (client.tokens + elapsed * rate).min(f64::from(limits.per_ip_per_minute));
            client.refilled = now;
        }
        if limits.per_ip > 0 && client.open >= limits.per_ip {
            return Err(Refusal::TooManyOpen);
        }
        if limits.per_ip_per_minute > 0 {
            if client.tokens < 1.0 {
                return Err(Refusal::TooFrequent);
            }
            client.tokens -= 1.0;
        }
        client.open += 1;
        Ok(Permit { tracker: self.clone(), ip })
    }

    /// Addresses currently tracked (open connections or a partly used rate budget).
    pub fn tracked(&self) -> usize {
        self.clients.lock().map(|clients| clients.len()).unwrap_or_default()
    }

    fn release(&self, ip: IpAddr) {
        let mut clients = self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(client) = clients.get_mut(&ip) {
            client.open = client.open.saturating_sub(1);
        }
        // Forget clients with nothing open and a budget that would be full again by now, so
        // the map does not grow with every address ever seen.
        let full = f64::from(self.limits.per_ip_per_minute);
        let rate = full / 60.0;
        let now = Instant::now();
        clients.retain(|_, client| {
            client.open > 0 || client.tokens + now.duration_since(client.refilled).as_secs_f64() * rate < full
        });
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.tracker.release(self.ip);
    }
}

/// The longest a failed login is answered late.
pub const MAX_AUTH_FAILURE_DELAY: Duration = Duration::from_secs(15);
/// A client address's failed logins are forgotten this long after its last one.
pub const AUTH_FAILURES_FORGOTTEN_AFTER: Duration = Duration::from_secs(60 * 60);
/// Addresses tracked at most; past it, the eighth whose last failures are oldest is forgotten
/// at once, so a flood of new addresses costs one pass over the map per few thousand of them.
const MAX_TRACKED_AUTH_FAILURES: usize = 65_536;

/// Failed logins by client address, shared by every session of a service: the answer to the
/// n-th failure from one address comes `base_delay × 2^(n-1)` late (at most
/// [`MAX_AUTH_FAILURE_DELAY`]), whichever session or listener it arrives on. A guesser cannot
/// start over by reconnecting, and with the per-address connection cap it gets a few guesses a
/// second at best; users behind the same NAT who type their password right are not slowed, as
/// only failures wait. IPv6 clients are counted by /64, the block one subscriber usually holds.
#[derive(Debug)]
pub struct AuthFailures {
    clients: Mutex<HashMap<IpAddr, RecentFailures>>,
}

#[derive(Clone, Copy, Debug)]
struct RecentFailures {
    count: u32,
    last: Instant,
}

impl AuthFailures {
    pub fn new() -> Arc<Self> {
        Arc::new(AuthFailures { clients: Mutex::new(HashMap::new()) })
    }

    /// Records a failed login from `ip` and returns how long to wait before answering it, for a
    /// first failure's `base_delay`.
    pub fn failed(&self, ip: IpAddr, base_delay: Duration) -> Duration {
        self.failed_at(ip, base_delay, Instant::now())
    }

    fn failed_at(&self, ip: IpAddr, base_delay: Duration, now: Instant) -> Duration {
        let key = subscriber(ip);
        let mut clients = self.clients.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !clients.contains_key(&key) && clients.len() >= MAX_TRACKED_AUTH_FAILURES {
            clients.retain(|_, recent| now.duration_since(recent.last) < AUTH_FAILURES_FORGOTTEN_AFTER);
            if clients.len() >= MAX_TRACKED_AUTH_FAILURES {
                let mut lasts: Vec<Instant> = clients.values().map(|recent| recent.last).collect();
                let eighth = lasts.len() / 8;
                let cutoff = *lasts.select_nth_unstable(eighth).1;
                clients.retain(|_, recent| recent.last > cutoff);
            }
        }
        let recent = clients.entry(key).or_insert(RecentFailures { count: 0, last: now });
        if now.duration_since(recent.last) >= AUTH_FAILURES_FORGOTTEN_AFTER {
            recent.count = 0;
        }
        recent.count = recent.count.saturating_add(1);
        recent.last = now;
        // 2^(n-1), without overflowing for a client that has failed very often.
        let factor = 1u32 << (recent.count - 1).min(16);
        base_delay.saturating_mul(factor).min(MAX_AUTH_FAILURE_DELAY)
    }

    /// Addresses with failures remembered.
    pub fn tracked(&self) -> usize {
        self.clients.lock().map(|clients| clients.len()).unwrap_or_default()
    }
}

/// The address failures are counted under: IPv4 as it is, IPv6 by its /64 prefix.
fn subscriber(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_from_an_address_doubles_its_delay_up_to_the_cap() {
        let (failures, base) = (AuthFailures::new(), Duration::from_millis(100));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let delays: Vec<u128> = (0..10).map(|_| failures.failed(ip, base).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 6400, 12800, 15000, 15000]);
        assert_eq!(failures.failed("192.0.2.2".parse().unwrap(), base), base, "others start afresh");
    }

    #[test]
    fn failures_are_forgotten_an_hour_after_the_last_and_ipv6_counts_by_64() {
        let (failures, base) = (AuthFailures::new(), Duration::from_millis(100));
        let start = Instant::now();
        let a: IpAddr = "2001:db8:1:2::a".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::b".parse().unwrap();
        assert_eq!(failures.failed_at(a, base, start), Duration::from_millis(100));
        assert_eq!(failures.failed_at(b, base, start), Duration::from_millis(200), "same /64, same count");
        let other_64: IpAddr = "2001:db8:1:3::a".parse().unwrap();
        assert_eq!(failures.failed_at(other_64, base, start), Duration::from_millis(100));
        let later = start + AUTH_FAILURES_FORGOTTEN_AFTER;
        assert_eq!(failures.failed_at(a, base, later), Duration::from_millis(100), "forgotten after an hour");
    }

    #[test]
    fn the_addresses_remembered_are_bounded_and_the_oldest_go_first() {
        let (failures, base) = (AuthFailures::new(), Duration::from_millis(100));
        let start = Instant::now();
        let at = |n: u32| start + Duration::from_millis(u64::from(n));
        let addresses = MAX_TRACKED_AUTH_FAILURES as u32 + 10;
        for n in 0..addresses {
            failures.failed_at(IpAddr::V4(n.into()), base, at(n));
        }
        let tracked = failures.tracked();
        assert!(tracked <= MAX_TRACKED_AUTH_FAILURES && tracked > MAX_TRACKED_AUTH_FAILURES * 3 / 4, "{tracked}");
        let (first, last) = (IpAddr::V4(0.into()), IpAddr::V4((addresses - 1).into()));
        assert_eq!(failures.failed_at(last, base, at(addresses)), base * 2, "the newest is remembered");
        assert_eq!(failures.failed_at(first, base, at(addresses)), base, "the oldest was forgotten");
    }

    #[test]
    fn open_connections_are_capped_per_address() {
        let tracker = ConnectionTracker::new(ConnectionLimits { per_ip: 2, per_ip_per_minute: 0 });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let first = tracker.admit(ip).unwrap();
        let _second = tracker.admit(ip).unwrap();
        assert_eq!(tracker.admit(ip).unwrap_err(), Refusal::TooManyOpen);
        assert!(tracker.admit("192.0.2.2".parse().unwrap()).is_ok(), "other addresses are not affected");
        drop(first);
        assert!(tracker.admit(ip).is_ok(), "a closed connection frees its slot");
    }

    #[test]
    fn new_connections_are_rate_limited_and_idle_clients_forgotten() {
        let tracker = ConnectionTracker::new(ConnectionLimits { per_ip: 0, per_ip_per_minute: 3 });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            drop(tracker.admit(ip).unwrap());
        }
        assert_eq!(tracker.admit(ip).unwrap_err(), Refusal::TooFrequent);
        let unlimited = ConnectionTracker::new(ConnectionLimits { per_ip: 0, per_ip_per_minute: 0 });
        drop(unlimited.admit(ip).unwrap());
        assert_eq!(unlimited.tracked(), 0);
    }
}
