//! The dialing side: tonic channels whose connections are mutual TLS with the component's
//! current identity. Each new connection takes the identity in use at that moment, so a renewed
//! certificate is presented from the next connection on.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint, Uri};

use super::{IdentityError, Role, ServiceIdentity};

/// A channel to `url` (`http://host:port`), connecting when first used. With an identity, each
/// connection is mutual TLS and the server must hold `server`'s identity, whatever address the
/// URL names (a Service, a pod, a loopback port). Without one it is plain HTTP/2, as in
/// `kubemail dev`.
pub fn channel(url: &str, identity: Option<&Arc<ServiceIdentity>>, server: Role) -> Result<Channel, IdentityError> {
    channel_to(endpoint(url, identity)?, identity, server)
}

/// [`channel`] to an endpoint made by [`endpoint`] and given further settings (a call timeout).
pub fn channel_to(
    endpoint: Endpoint,
    identity: Option<&Arc<ServiceIdentity>>,
    server: Role,
) -> Result<Channel, IdentityError> {
    Ok(match identity {
        Some(identity) => endpoint.connect_with_connector_lazy(MutualTls::new(identity, server)?),
        None => endpoint.connect_lazy(),
    })
}

/// Like [`channel`], but connected before it is returned: for a command line that should say
/// at once that a server cannot be reached.
pub async fn connect(
    url: &str,
    identity: Option<&Arc<ServiceIdentity>>,
    server: Role,
) -> Result<Channel, IdentityError> {
    let endpoint = endpoint(url, identity)?;
    let connected = match identity {
        Some(identity) => endpoint.connect_with_connector(MutualTls::new(identity, server)?).await,
        None => endpoint.connect().await,
    };
    connected.map_err(|e| {
        IdentityError::Unreachable(format!(
            "{url}: {}",
            std::error::Error::source(&e).map_or(e.to_string(), |s| s.to_string())
        ))
    })
}

/// The endpoint of `url`, checked against whether there is an identity to speak TLS with.
pub fn endpoint(url: &str, identity: Option<&Arc<ServiceIdentity>>) -> Result<Endpoint, IdentityError> {
    if identity.is_none() && url.starts_with("https:") {
        return Err(IdentityError::Invalid(format!(
            "{url}: TLS to the mailstore needs a service identity (--service-tls-dir or --service-ca-dir)"
        )));
    }
    let endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| IdentityError::Invalid(format!("{url:?} is not a gRPC address: {e}")))?;
    Ok(endpoint.tcp_nodelay(true).connect_timeout(CONNECT_TIMEOUT))
}

/// How long opening a connection may take; a mailstore that does not answer by then counts as
/// down, and the call fails UNAVAILABLE instead of waiting on the kernel's SYN retries.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Connects over TCP, then TLS with the identity of the moment.
#[derive(Clone)]
struct MutualTls {
    identity: Arc<ServiceIdentity>,
    server: ServerName<'static>,
}

impl MutualTls {
    fn new(identity: &Arc<ServiceIdentity>, server: Role) -> Result<MutualTls, IdentityError> {
        let server = ServerName::try_from(server.dns_name()).map_err(|e| IdentityError::Invalid(e.to_string()))?;
        Ok(MutualTls { identity: identity.clone(), server })
    }
}

type Connecting = Pin<Box<dyn Future<Output = std::io::Result<TokioIo<TlsStream<TcpStream>>>> + Send>>;

impl tower::Service<Uri> for MutualTls {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Connecting {
        let connector = TlsConnector::from(self.identity.client_config());
        let server = self.server.clone();
        Box::pin(async move {
            let host = uri.host().ok_or_else(|| std::io::Error::other(format!("{uri}: no host")))?;
            // `[::1]` in a URL is `::1` to the resolver.
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = uri.port_u16().unwrap_or(443);
            let stream = TcpStream::connect((host, port)).await?;
            stream.set_nodelay(true)?;
            Ok(TokioIo::new(connector.connect(server, stream).await?))
        })
    }
}
