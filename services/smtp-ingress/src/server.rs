//! The listeners: accept connections, apply the per-address limits, complete the implicit TLS
//! handshake on port 465, and run one session task per connection. On shutdown the listeners
//! stop accepting and the sessions finish their transactions (see `session`), within a grace
//! period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::reply::Reply;
use crate::session::io::Connection;
use crate::session::{self, Listener, Services};
use kubemail_runtime::limits::{ConnectionTracker, Refusal};
use kubemail_runtime::proxy::{self, Cidr};

/// How long a trusted proxy may take to send its PROXY header.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the TLS handshake of an implicit-TLS connection may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
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
        let bind = async |address: SocketAddr, flag: &str| {
            TcpListener::bind(address)
                .await
                .map_err(|e| crate::Error::Startup(format!("cannot listen on {address} ({flag}): {e}")))
        };
        Ok(Listeners {
            smtp: bind(smtp, "--smtp-listen").await?,
            submission: bind(submission, "--submission-listen").await?,
            submissions: match submissions {
                Some(address) => Some(bind(address, "--submissions-listen").await?),
                None => None,
            },
        })
    }
}

/// Who may connect, and where a client's address comes from.
#[derive(Debug)]
pub struct Admission {
    pub tracker: Arc<ConnectionTracker>,
    /// Peers (load balancers) whose PROXY header names the real client; every policy, limit
    /// and log then uses that address.
    pub trusted_proxies: Vec<Cidr>,
}

/// Serves every listener until `services.shutdown`, then waits for the sessions to end.
pub async fn serve(listeners: Listeners, services: Arc<Services>, admission: Arc<Admission>) {
    // Each session task holds a sender; when all are gone, every session has ended.
    let (sessions, mut ended) = mpsc::channel::<()>(1);
    let mut accept_loops = vec![
        tokio::spawn(accept(listeners.smtp, Listener::Mx, services.clone(), admission.clone(), sessions.clone())),
        tokio::spawn(accept(
            listeners.submission,
            Listener::Submission,
            services.clone(),
            admission.clone(),
            sessions.clone(),
        )),
    ];
    if let Some(listener) = listeners.submissions {
        accept_loops.push(tokio::spawn(accept(
            listener,
            Listener::Submissions,
            services.clone(),
            admission,
            sessions.clone(),
        )));
    }
    drop(sessions);
    for accept_loop in accept_loops {
        let _ = accept_loop.await;
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, ended.recv()).await.is_err() {
        tracing::warn!("sessions still open after the shutdown grace period; closing them");
    }
}

async fn accept(
    listener: TcpListener,
    kind: Listener,
    services: Arc<Services>,
    admission: Arc<Admission>,
    sessions: mpsc::Sender<()>,
) {
    let shutdown = services.shutdown.wait();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let services = services.clone();
        let admission = admission.clone();
        let session = sessions.clone();
        tokio::spawn(async move {
            let _session = session;
            connection(stream, peer, kind, services, admission).await;
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    kind: Listener,
    services: Arc<Services>,
    admission: Arc<Admission>,
) {
    let mut client_ip = peer.ip();
    if admission.trusted_proxies.iter().any(|network| network.contains(peer.ip())) {
        match tokio::time::timeout(PROXY_HEADER_TIMEOUT, proxy::read_header(&mut stream)).await {
            Ok(Ok(Some(client))) => client_ip = client.ip(),
            Ok(Ok(None)) => {}
            Ok(Err(error)) => {
                tracing::warn!(proxy = %peer, %error, "connection from a trusted proxy dropped");
                return;
            }
            Err(_) => return,
        }
    }
    let listener_name = kind.name();
    let _permit = match admission.tracker.admit(client_ip) {
        Ok(permit) => permit,
        Err(refusal) => {
            metrics::counter!("kubemail_smtp_connections_refused_total", "listener" => listener_name).increment(1);
            let text = match refusal {
                Refusal::TooManyOpen => "Too many connections from your address, try again later",
                Refusal::TooFrequent => "Connecting too often, try again later",
            };
            let mut reply = Vec::new();
            Reply::new(421, "4.7.0", text).write_to(&mut reply);
            let _ = stream.write_all(&reply).await;
            return;
        }
    };
    metrics::counter!("kubemail_smtp_connections_total", "listener" => listener_name).increment(1);
    let connection = if kind == Listener::Submissions {
        let Some(acceptor) = services.tls.clone() else { return };
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => Connection::Tls(Box::new(tls)),
            Ok(Err(error)) => {
                tracing::debug!(client = %client_ip, %error, "TLS handshake failed");
                return;
            }
            Err(_) => return,
        }
    } else {
        Connection::Plain(stream)
    };
    session::serve(connection, client_ip, kind, services).await;
}
