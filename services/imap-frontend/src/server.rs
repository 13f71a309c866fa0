//! The IMAP listeners: 143 (STARTTLS) and, with TLS, 993 (implicit TLS) on the shared accept
//! loop (PROXY header, per-address limits, the handshake on 993), one session task per
//! connection. On shutdown every session says `* BYE` and closes (see `session`): IMAP clients
//! reconnect, to another replica behind the load balancer.

use std::sync::Arc;
use std::time::Duration;

use kubemail_runtime::limits::Refusal;
pub use kubemail_runtime::listener::Admission;
use kubemail_runtime::listener::{self, Service};
use tokio::net::TcpListener;

use crate::session::{self, Services};

/// How long sessions may take to close after shutdown began: one command in progress.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The bound sockets.
pub struct Listeners {
    pub imap: TcpListener,
    /// Only served when TLS is configured.
    pub imaps: Option<TcpListener>,
}

/// Serves both listeners until `services.shutdown`, then waits for the sessions to end.
pub async fn serve(listeners: Listeners, services: Arc<Services>, admission: Arc<Admission>) {
    let mut served = vec![(listeners.imap, "imap", None)];
    served.extend(listeners.imaps.map(|socket| (socket, "imaps", services.tls.clone())));
    let served = served
        .into_iter()
        .map(|(socket, name, implicit_tls)| {
            let for_sessions = services.clone();
            let service = Service {
                protocol: "imap",
                listener: name,
                implicit_tls,
                refusal,
                serve: move |connection, client_ip| session::serve(connection, client_ip, for_sessions.clone()),
            };
            (socket, service)
        })
        .collect();
    listener::serve(served, admission, services.shutdown.clone(), SHUTDOWN_GRACE).await;
}

/// The answer before closing a connection over the per-address limits.
fn refusal(refusal: Refusal) -> &'static [u8] {
    match refusal {
        Refusal::TooManyOpen => b"* BYE [UNAVAILABLE] Too many connections from your address, try again later\r\n",
        Refusal::TooFrequent => b"* BYE [UNAVAILABLE] Connecting too often, try again later\r\n",
    }
}
