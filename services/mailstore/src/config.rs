//! The mailstore service's configuration: every flag, its environment variable and default.

use std::net::SocketAddr;

use std::time::Duration;

use kubemail_runtime::config::{parse_byte_size, parse_duration};

/// Flags of the standalone `mailstore` binary.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "mailstore", version, about = "kubemail mailstore: all mail state, served over gRPC")]
pub struct Config {
    /// PostgreSQL (`postgres://user:pass@host/db`) or SQLite (`sqlite:///path/mail.db?mode=rwc`).
    #[arg(long, env = "KUBEMAIL_DATABASE_URL")]
    pub database_url: String,
    /// Database connections in all. On PostgreSQL half of them serve Deliver and SelectMailbox,
    /// the other half every other call.
    #[arg(long, env = "KUBEMAIL_DATABASE_MAX_CONNECTIONS", default_value_t = 32)]
    pub database_max_connections: u32,
    /// NATS server for mailbox change events.
    #[arg(long, env = "KUBEMAIL_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// MailStore and Admin gRPC API.
    #[arg(long, env = "KUBEMAIL_GRPC_LISTEN", default_value = "0.0.0.0:7070")]
    pub grpc_listen: SocketAddr,
    /// Health (/healthz, /readyz) and Prometheus metrics (/metrics) over HTTP.
    #[arg(long, env = "KUBEMAIL_HTTP_LISTEN", default_value = "0.0.0.0:9090")]
    pub http_listen: SocketAddr,
    /// Largest message accepted by Deliver and Append, e.g. 50MiB.
    #[arg(long, env = "KUBEMAIL_MAX_MESSAGE_SIZE", default_value = "64MiB", value_parser = parse_byte_size)]
    pub max_message_size: u64,
    /// How long a delivery is remembered to make redelivery idempotent; must exceed the
    /// delivery queue's maximum message age (5 days by default).
    #[arg(long, env = "KUBEMAIL_DELIVERY_RECORD_RETENTION", default_value = "7d", value_parser = parse_duration)]
    pub delivery_record_retention: Duration,
}
