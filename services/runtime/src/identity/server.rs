//! The accepting side of mutual TLS for a tonic server: each connection's handshake runs in a
//! task of its own, so a slow or silent client holds up no other; a connection reaches tonic
//! only once its client has proven a role, which tonic then hands to each request as a
//! [`Caller`].

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use super::{Role, ServiceIdentity};

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections handshaken but not yet taken by the server.
const READY_CONNECTIONS: usize = 64;

/// The proven caller of a connection, in the extensions of each of its requests.
#[derive(Clone, Debug)]
pub struct Caller {
    pub role: Role,
    pub address: SocketAddr,
}

/// A connection whose client proved its role.
pub struct AuthenticatedStream {
    stream: TlsStream<TcpStream>,
    caller: Caller,
}

impl Connected for AuthenticatedStream {
    type ConnectInfo = Caller;

    fn connect_info(&self) -> Caller {
        self.caller.clone()
    }
}

/// The connections of `listener` whose clients hold an identity from `identity`'s CA, for
/// `tonic::transport::Server::serve_with_incoming_shutdown`. Accepting stops when the server
/// drops the stream. A refused connection is logged and counted in
/// `kubemail_grpc_connections_refused_total{reason}`.
pub fn incoming(
    listener: TcpListener,
    identity: Arc<ServiceIdentity>,
) -> impl Stream<Item = Result<AuthenticatedStream, std::io::Error>> {
    let (ready, connections) = mpsc::channel(READY_CONNECTIONS);
    tokio::spawn(accept(listener, identity, ready));
    ReceiverStream::new(connections).map(Ok)
}

async fn accept(listener: TcpListener, identity: Arc<ServiceIdentity>, ready: mpsc::Sender<AuthenticatedStream>) {
    let server_gone = ready.closed();
    tokio::pin!(server_gone);
    while let Some((stream, address)) = crate::listener::accept_until(&listener, server_gone.as_mut()).await {
        let acceptor = TlsAcceptor::from(identity.server_config());
        let ready = ready.clone();
        tokio::spawn(async move {
            match handshake(acceptor, stream, address).await {
                Ok(connection) => {
                    let _ = ready.send(connection).await;
                }
                Err(refusal) => {
                    metrics::counter!("kubemail_grpc_connections_refused_total", "reason" => refusal.reason)
                        .increment(1);
                    tracing::warn!(%address, reason = refusal.reason, detail = %refusal.detail, "gRPC connection refused");
                }
            }
        });
    }
}

struct Refusal {
    /// A metric label: `timeout`, `handshake` (no certificate, another CA, not TLS) or `no_role`.
    reason: &'static str,
    detail: String,
}

async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    address: SocketAddr,
) -> Result<AuthenticatedStream, Refusal> {
    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Err(_) => {
            return Err(Refusal { reason: "timeout", detail: format!("no handshake within {HANDSHAKE_TIMEOUT:?}") });
        }
        Ok(Err(error)) => return Err(Refusal { reason: "handshake", detail: error.to_string() }),
        Ok(Ok(stream)) => stream,
    };
    let role = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| super::role_of_certificate(leaf));
    match role {
        Some(role) => Ok(AuthenticatedStream { stream, caller: Caller { role, address } }),
        None => Err(Refusal { reason: "no_role", detail: "the client's certificate names no kubemail role".into() }),
    }
}

impl AsyncRead for AuthenticatedStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for AuthenticatedStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
