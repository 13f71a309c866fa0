//! What the mail services (smtp-ingress, delivery-queue, imap-frontend) share in starting:
//! [`ServiceFlags`], the flags for the name each answers to, where its health and metrics are
//! served, how it reaches the mailstore, NATS, and its identity between the services (each
//! service's configuration flattens them in, so a flag means the same everywhere and the
//! operator sets it once for all); and [`StartupError`], why one could not start.

use std::net::SocketAddr;

use tonic::transport::Channel;

use crate::deployment::env;
use crate::identity::{IdentityFlags, Role};
use crate::nats::{NatsAccess, NatsFlags};
use crate::shutdown::Shutdown;
use crate::tls::TlsError;

/// Where `/healthz`, `/readyz` and `/metrics` are served unless told otherwise.
pub const DEFAULT_HTTP_LISTEN: &str = "0.0.0.0:9090";

#[derive(Clone, Debug, clap::Args)]
pub struct ServiceFlags {
    /// This host's name: what SMTP and IMAP greet with, what Received headers and delivery
    /// reports (their Reporting-MTA) name, and what outbound SMTP says in EHLO.
    #[arg(long, env = env::HOSTNAME, default_value = "localhost")]
    pub hostname: String,
    /// Health (/healthz, /readyz) and Prometheus metrics (/metrics) over HTTP.
    #[arg(long, env = env::HTTP_LISTEN, default_value = DEFAULT_HTTP_LISTEN)]
    pub http_listen: SocketAddr,
    /// The mailstore's gRPC address.
    #[arg(long, env = env::MAILSTORE, default_value = "http://127.0.0.1:7070")]
    pub mailstore: String,
    /// The NATS server, and how this service gets in.
    #[command(flatten)]
    pub nats: NatsFlags,
    #[command(flatten)]
    pub identity: IdentityFlags,
}

impl ServiceFlags {
    /// A channel to the mailstore as `role`, with the identity the flags name.
    pub fn mailstore_channel(&self, role: Role, shutdown: &Shutdown) -> Result<Channel, String> {
        self.identity.mailstore_channel(role, &self.mailstore, shutdown)
    }

    /// How `role` connects to NATS; the credentials are read now.
    pub fn nats_access(&self, role: Role) -> Result<NatsAccess, String> {
        self.nats.access(role).map_err(|e| e.to_string())
    }
}

/// Why a mail service could not start: a port is taken, or NATS, the mailstore's address or
/// the certificates are unusable. The message names the flag to look at.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{0}")]
    Startup(String),
    #[error(transparent)]
    Tls(#[from] TlsError),
}
