//! The mailstore service's configuration: every flag, its environment variable and default.

use std::net::SocketAddr;
use std::time::Duration;

use kubemail_runtime::config::{parse_byte_size, parse_duration};
use kubemail_runtime::deployment::env;
use kubemail_runtime::identity::IdentityFlags;
use kubemail_runtime::nats::NatsFlags;
use kubemail_runtime::service::DEFAULT_HTTP_LISTEN;

/// The default of `--grpc-max-connection-age`.
pub const DEFAULT_MAX_CONNECTION_AGE: Duration = Duration::from_secs(3600);

/// Flags of the standalone `mailstore` binary.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "mailstore", version, about = "kubemail mailstore: all mail state, served over gRPC")]
pub struct Config {
    /// PostgreSQL (`postgres://user:pass@host/db`) or SQLite (`sqlite:///path/mail.db?mode=rwc`).
    #[arg(long, env = env::DATABASE_URL)]
    pub database_url: String,
    /// Database connections in all. On PostgreSQL half of them serve Deliver and SelectMailbox,
    /// the other half every other call.
    #[arg(long, env = env::DATABASE_MAX_CONNECTIONS, default_value_t = 32)]
    pub database_max_connections: u32,
    /// The NATS server carrying mailbox change events, and how this service gets in.
    #[command(flatten)]
    pub nats: NatsFlags,
    /// The MailStore gRPC API, for smtp-ingress, delivery-queue and imap-frontend.
    #[arg(long, env = env::GRPC_LISTEN, default_value = "0.0.0.0:7070")]
    pub grpc_listen: SocketAddr,
    /// The Admin gRPC API, for the operator and `kubemail admin`.
    #[arg(long, env = env::ADMIN_GRPC_LISTEN, default_value = "0.0.0.0:7071")]
    pub admin_grpc_listen: SocketAddr,
    /// How long a gRPC connection is served before its client is asked to connect again
    /// (presenting its current certificate, and spreading over the mailstore's replicas).
    #[arg(long, env = "KUBEMAIL_GRPC_MAX_CONNECTION_AGE", default_value = "1h", value_parser = parse_duration)]
    pub grpc_max_connection_age: Duration,
    /// Health (/healthz, /readyz) and Prometheus metrics (/metrics) over HTTP.
    #[arg(long, env = env::HTTP_LISTEN, default_value = DEFAULT_HTTP_LISTEN)]
    pub http_listen: SocketAddr,
    /// Largest message accepted by Deliver and Append, e.g. 50MiB.
    #[arg(long, env = env::MAX_MESSAGE_SIZE, default_value = "64MiB", value_parser = parse_byte_size)]
    pub max_message_size: u64,
    /// How long a delivery is remembered to make redelivery idempotent; must exceed the
    /// delivery queue's maximum message age (5 days by default).
    #[arg(long, env = "KUBEMAIL_DELIVERY_RECORD_RETENTION", default_value = "7d", value_parser = parse_duration)]
    pub delivery_record_retention: Duration,
    #[command(flatten)]
    pub identity: IdentityFlags,
}
