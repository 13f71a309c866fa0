//! Per-client-IP limits on connections: how many at once and how many new ones per minute
//! (a token bucket). A client over either limit is refused before the greeting (SMTP answers
//! `421 4.7.0`, IMAP `* BYE`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The limits of one service.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Connections open at once from one address (0 = no limit).
    pub per_ip: u32,
    /// New connections per minute from one address (0 = no limit); bursts up to this many.
    pub per_ip_per_minute: u32,
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

#[cfg(test)]
mod tests {
    use super::*;

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
