//! Loopback ports for servers a test starts in another process, which must be told their
//! port before they bind it.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The lowest port handed out, and how many above it: below Linux's ephemeral range (32768 and
/// up), because a port the kernel hands out for `bind(0)` may be taken by any outgoing
/// connection before the server that was to listen on it starts.
const FIRST: u16 = 20_000;
const SPAN: u64 = 12_768;

/// A port free on 127.0.0.1 now and never handed out before in this process. Tests run in
/// parallel threads: two of them checking the same port before either server binds it would
/// both be told it is free, and one server would fail to start.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // Test binaries run one after another and may reuse each other's ports; the seed keeps
    // two processes started in the same instant apart.
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos() as u64
        ^ u64::from(std::process::id()) << 20;
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    loop {
        // A spread of the seed and a counter over the range (SplitMix64's mixer).
        let mut x = seed.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let port = FIRST + ((x ^ (x >> 31)) % SPAN) as u16;
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
}

/// [`free_port`] as `127.0.0.1:PORT`, the form the services' `--…-listen` flags take.
pub fn free_loopback_address() -> String {
    format!("127.0.0.1:{}", free_port())
}
