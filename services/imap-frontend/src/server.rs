//! The IMAP listeners: 143 (STARTTLS) and, with TLS, 993 (implicit TLS); and when asked for,
//! POP3 on 110 (STLS) and 995 (implicit TLS). All run on the shared accept loop (PROXY header,
//! per-address limits, the implicit-TLS handshake), one session task per connection. On
//! shutdown every session says goodbye and closes (see `imap` and `pop3`): clients
//! reconnect, to another replica behind the load balancer.

use std::sync::Arc;
use std::time::Duration;

use kubemail_runtime::limits::Refusal;
pub use kubemail_runtime::listener::Admission;
use kubemail_runtime::listener::{self, Service};
use tokio::net::TcpListener;

use crate::imap;
use crate::pop3;
use crate::services::Services;

/// How long sessions may take to close after shutdown began: one command in progress.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The bound sockets.
pub struct Listeners {
    pub imap: TcpListener,
    /// Only served when TLS is configured.
    pub imaps: Option<TcpListener>,
    /// POP3 with STLS, when asked for.
    pub pop3: Option<TcpListener>,
    /// POP3 over implicit TLS, when asked for and TLS is configured.
    pub pop3s: Option<TcpListener>,
}

/// Serves the listeners until `services.shutdown`, then waits for the sessions to end.
pub async fn serve(listeners: Listeners, services: Arc<Services>, admission: Arc<Admission>) {
    let implicit_tls = || services.tls.clone();
    let mut imap = vec![(listeners.imap, "imap", None)];
    imap.extend(listeners.imaps.map(|socket| (socket, "imaps", implicit_tls())));
    let imap = imap
        .into_iter()
        .map(|(socket, name, implicit_tls)| {
            let for_sessions = services.clone();
            let service = Service {
                protocol: "imap",
                listener: name,
                implicit_tls,
                refusal,
                serve: move |connection, client_ip| imap::serve(connection, client_ip, for_sessions.clone()),
            };
            (socket, service)
        })
        .collect();
    let pop3 = [(listeners.pop3, "pop3", None), (listeners.pop3s, "pop3s", implicit_tls())]
        .into_iter()
        .filter_map(|(socket, name, implicit_tls)| {
            let for_sessions = services.clone();
            let service = Service {
                protocol: "pop3",
                listener: name,
                implicit_tls,
                refusal: pop3_refusal,
                serve: move |connection, client_ip| pop3::serve(connection, client_ip, for_sessions.clone()),
            };
            Some((socket?, service))
        })
        .collect();
    let shutdown = services.shutdown.clone();
    tokio::join!(
        listener::serve(imap, admission.clone(), shutdown.clone(), SHUTDOWN_GRACE),
        listener::serve(pop3, admission, shutdown, SHUTDOWN_GRACE),
    );
}

/// The answer before closing a connection over the per-address limits.
fn refusal(refusal: Refusal) -> &'static [u8] {
    match refusal {
        Refusal::TooManyOpen => b"* BYE [UNAVAILABLE] Too many connections from your address, try again later\r\n",
        Refusal::TooFrequent => b"* BYE [UNAVAILABLE] Connecting too often, try again later\r\n",
    }
}

/// The same for POP3 (RFC 2449 §8.1 SYS/TEMP: a transient problem).
fn pop3_refusal(refusal: Refusal) -> &'static [u8] {
    match refusal {
        Refusal::TooManyOpen => b"-ERR [SYS/TEMP] Too many connections from your address, try again later\r\n",
        Refusal::TooFrequent => b"-ERR [SYS/TEMP] Connecting too often, try again later\r\n",
    }
}
