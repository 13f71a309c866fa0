//! Accepting mail connections, the same for SMTP and IMAP: the PROXY header from trusted load
//! balancers, the per-address limits, the implicit-TLS handshake (ports 465 and 993), then one
//! session task per connection. On shutdown the listeners stop accepting and the sessions get
//! a grace period to end (each protocol says goodbye its own way).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::limits::{ConnectionTracker, Refusal};
use crate::proxy::{self, Cidr};
use crate::shutdown::Shutdown;
use crate::tls::{Connection, ServerTls};

/// How long a trusted proxy may take to send its PROXY header.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the TLS handshake of an implicit-TLS connection may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Who may connect, and where a client's address comes from.
#[derive(Debug)]
pub struct Admission {
    pub tracker: Arc<ConnectionTracker>,
    /// Peers (load balancers) whose PROXY header names the real client; every policy, limit
    /// and log then uses that address.
    pub trusted_proxies: Vec<Cidr>,
    /// How long a client may take over its whole TLS handshake on an implicit-TLS port: one
    /// that connects and then sends nothing, or drips its hello, holds the connection no longer.
    pub handshake_timeout: Duration,
}

impl Admission {
    pub fn new(tracker: Arc<ConnectionTracker>, trusted_proxies: Vec<Cidr>) -> Admission {
        Admission { tracker, trusted_proxies, handshake_timeout: HANDSHAKE_TIMEOUT }
    }
}

/// Binds `address`, naming `flag` in the error so a taken port is easy to place.
pub async fn bind(address: SocketAddr, flag: &str) -> Result<TcpListener, String> {
    TcpListener::bind(address).await.map_err(|e| format!("cannot listen on {address} ({flag}): {e}"))
}

/// The sessions started by accept loops, to wait for at shutdown.
struct Sessions {
    open: SessionCount,
    ended: mpsc::Receiver<()>,
}

/// Given to accept loops: each session task holds a clone; when all are gone (and the
/// [`Sessions`] has dropped its own), every session has ended.
#[derive(Clone)]
struct SessionCount(#[expect(dead_code, reason = "held for its drop, which tells a session ended")] mpsc::Sender<()>);

impl Default for Sessions {
    fn default() -> Self {
        let (open, ended) = mpsc::channel(1);
        Sessions { open: SessionCount(open), ended }
    }
}

impl Sessions {
    fn count(&self) -> SessionCount {
        self.open.clone()
    }

    /// Waits until every session has ended, or `grace` has passed (then they are left to be
    /// dropped with the runtime). Call once the accept loops have returned.
    async fn wait(self, grace: Duration) {
        let Sessions { open, mut ended } = self;
        drop(open);
        if tokio::time::timeout(grace, ended.recv()).await.is_err() {
            tracing::warn!("sessions still open after the shutdown grace period; closing them");
        }
    }
}

/// What a listener serves.
pub struct Service<F> {
    /// The protocol and the listener, in metric names and labels:
    /// `kubemail_<protocol>_connections_total{listener}`, `…_connections_refused_total` and
    /// `…_connections_open` (what an autoscaler on connections reads).
    pub protocol: &'static str,
    pub listener: &'static str,
    /// Completes the TLS handshake before the session starts (ports 465 and 993); without a
    /// certificate yet, the connection is closed.
    pub implicit_tls: Option<ServerTls>,
    /// What a client over the limits is told before the connection closes.
    pub refusal: fn(Refusal) -> &'static [u8],
    /// Runs one session on an admitted connection, with the client's real address.
    pub serve: F,
}

/// Serves every listener until `shutdown`, then waits up to `grace` for the sessions to end.
pub async fn serve<F, S>(
    listeners: Vec<(TcpListener, Service<F>)>,
    admission: Arc<Admission>,
    shutdown: Shutdown,
    grace: Duration,
) where
    F: Fn(Connection<TcpStream>, IpAddr) -> S + Send + Sync + 'static,
    S: Future<Output = ()> + Send + 'static,
{
    let sessions = Sessions::default();
    let accept_loops: Vec<_> = listeners
        .into_iter()
        .map(|(socket, service)| {
            tokio::spawn(accept(socket, service, admission.clone(), sessions.count(), shutdown.clone()))
        })
        .collect();
    for accept_loop in accept_loops {
        let _ = accept_loop.await;
    }
    sessions.wait(grace).await;
}

/// Accepts connections on `listener` until `shutdown`, each served by `service` in a task of
/// its own that `sessions` counts.
async fn accept<F, S>(
    listener: TcpListener,
    service: Service<F>,
    admission: Arc<Admission>,
    sessions: SessionCount,
    shutdown: Shutdown,
) where
    F: Fn(Connection<TcpStream>, IpAddr) -> S + Send + Sync + 'static,
    S: Future<Output = ()> + Send + 'static,
{
    let service = Arc::new(service);
    let stopped = shutdown.wait();
    tokio::pin!(stopped);
    while let Some((stream, peer)) = accept_until(&listener, stopped.as_mut()).await {
        let (service, admission, session) = (service.clone(), admission.clone(), sessions.clone());
        tokio::spawn(async move {
            let _session = session;
            connection(stream, peer, &service, &admission).await;
        });
    }
}

/// The next connection of `listener`, with TCP_NODELAY set, or `None` once `stop` completes. A
/// failed accept (out of file descriptors, most likely) is logged and tried again after a pause
/// instead of spinning.
pub async fn accept_until(
    listener: &TcpListener,
    mut stop: std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        tokio::select! {
            () = stop.as_mut() => return None,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Without it, Nagle's algorithm and delayed ACKs hold back the last segment
                    // of a multi-segment reply by up to 40 ms.
                    let _ = stream.set_nodelay(true);
                    return Some((stream, peer));
                }
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn connection<F, S>(mut stream: TcpStream, peer: SocketAddr, service: &Service<F>, admission: &Admission)
where
    F: Fn(Connection<TcpStream>, IpAddr) -> S,
    S: Future<Output = ()>,
{
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
    let _permit = match admission.tracker.admit(client_ip) {
        Ok(permit) => permit,
        Err(refusal) => {
            let name = format!("kubemail_{}_connections_refused_total", service.protocol);
            metrics::counter!(name, "listener" => service.listener).increment(1);
            // On an implicit-TLS port the refusal goes over TLS too: a client reads whatever
            // comes before the handshake as a protocol error, not as "try again later".
            if let Some(mut connection) = secure(stream, service, admission, client_ip).await {
                let _ = connection.write_all((service.refusal)(refusal)).await;
                let _ = connection.shutdown().await;
            }
            return;
        }
    };
    let name = format!("kubemail_{}_connections_total", service.protocol);
    metrics::counter!(name, "listener" => service.listener).increment(1);
    let _open = OpenConnection::count(service.protocol, service.listener);
    if let Some(connection) = secure(stream, service, admission, client_ip).await {
        (service.serve)(connection, client_ip).await;
    }
}

/// The connection as the session sees it: on an implicit-TLS port, after the handshake;
/// `None` when there is no certificate yet or the handshake fails or takes too long.
async fn secure<F>(
    stream: TcpStream,
    service: &Service<F>,
    admission: &Admission,
    client_ip: IpAddr,
) -> Option<Connection<TcpStream>> {
    match service.implicit_tls.as_ref().map(ServerTls::acceptor) {
        Some(None) => {
            tracing::debug!(client = %client_ip, "implicit-TLS connection closed: no certificate yet");
            None
        }
        Some(Some(acceptor)) => {
            match tokio::time::timeout(admission.handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => Some(Connection::Tls(Box::new(tls))),
                Ok(Err(error)) => {
                    tracing::debug!(client = %client_ip, %error, "TLS handshake failed");
                    None
                }
                Err(_) => None,
            }
        }
        None => Some(Connection::Plain(stream)),
    }
}

/// Counts a connection in `kubemail_<protocol>_connections_open{listener}` while it lives.
struct OpenConnection(metrics::Gauge);

impl OpenConnection {
    fn count(protocol: &str, listener: &'static str) -> OpenConnection {
        let gauge = metrics::gauge!(format!("kubemail_{protocol}_connections_open"), "listener" => listener);
        gauge.increment(1.0);
        OpenConnection(gauge)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
