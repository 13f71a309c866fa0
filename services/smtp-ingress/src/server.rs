//! The SMTP listeners: MX, submission and (with TLS) submissions on the shared accept loop
//! (PROXY header, per-address limits, the implicit-TLS handshake on port 465), one session task
//! per connection. On shutdown the listeners stop accepting and the sessions finish their
//! transactions (see `session`), within a grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kubemail_runtime::limits::Refusal;
pub use kubemail_runtime::listener::Admission;
use kubemail_runtime::listener::{self, Service};
use tokio::net::TcpListener;

use crate::session::{self, Listener, Services};

/// How long sessions may take to finish after shutdown began; a client mid-DATA gets that long
/// to complete its message.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// The bound sockets, one per kind of listener served.
pub struct Listeners {
    pub smtp: TcpListener,
    pub submission: TcpListener,
    /// Only served when TLS is configured.
    pub submissions: Option<TcpListener>,
}

impl Listeners {
    /// Binds every address, naming the flag in the error so a taken port is easy to place.
    pub async fn bind(
        smtp: SocketAddr,
        submission: SocketAddr,
        submissions: Option<SocketAddr>,
    ) -> Result<Listeners, crate::Error> {
        Ok(Listeners {
            smtp: listener::bind(smtp, "--smtp-listen").await.map_err(crate::Error::Startup)?,
            submission: listener::bind(submission, "--submission-listen").await.map_err(crate::Error::Startup)?,
            submissions: match submissions {
                Some(address) => {
                    Some(listener::bind(address, "--submissions-listen").await.map_err(crate::Error::Startup)?)
                }
                None => None,
            },
        })
    }
}

/// Serves every listener until `services.shutdown`, then waits for the sessions to end.
pub async fn serve(listeners: Listeners, services: Arc<Services>, admission: Arc<Admission>) {
    let mut served = vec![(listeners.smtp, Listener::Mx), (listeners.submission, Listener::Submission)];
    served.extend(listeners.submissions.map(|socket| (socket, Listener::Submissions)));
    let served = served
        .into_iter()
        .map(|(socket, kind)| {
            let for_sessions = services.clone();
            let service = Service {
                protocol: "smtp",
                listener: kind.name(),
                implicit_tls: if kind == Listener::Submissions { services.tls.clone() } else { None },
                refusal,
                serve: move |connection, client_ip| session::serve(connection, client_ip, kind, for_sessions.clone()),
            };
            (socket, service)
        })
        .collect();
    listener::serve(served, admission, services.shutdown.clone(), SHUTDOWN_GRACE).await;
}

/// The reply before closing a connection over the per-address limits.
fn refusal(refusal: Refusal) -> &'static [u8] {
    match refusal {
        Refusal::TooManyOpen => b"421 4.7.0 Too many connections from your address, try again later\r\n",
        Refusal::TooFrequent => b"421 4.7.0 Connecting too often, try again later\r\n",
    }
}
