//! The smtp-ingress service's configuration: every flag, its environment variable and default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kubemail_runtime::deployment::env;
use kubemail_runtime::service::ServiceFlags;

use kubemail_runtime::config::{parse_byte_size, parse_duration};

use crate::session::Settings;
use kubemail_runtime::limits::{ConnectionFlags, ConnectionLimits};
use kubemail_runtime::proxy::Cidr;

/// Flags of the standalone `smtp-ingress` binary.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "smtp-ingress", version, about = "kubemail smtp-ingress: the ESMTP server for MX and submission")]
pub struct Config {
    /// MX: mail for local domains from anyone.
    #[arg(long, env = env::SMTP_LISTEN, default_value = "0.0.0.0:25")]
    pub smtp_listen: SocketAddr,
    /// Submission with STARTTLS and AUTH.
    #[arg(long, env = env::SUBMISSION_LISTEN, default_value = "0.0.0.0:587")]
    pub submission_listen: SocketAddr,
    /// Submission over implicit TLS (needs --tls-dir).
    #[arg(long, env = env::SUBMISSIONS_LISTEN, default_value = "0.0.0.0:465")]
    pub submissions_listen: SocketAddr,
    /// Name, health endpoint, mailstore, NATS (the spool and the queue) and service identity.
    #[command(flatten)]
    pub service: ServiceFlags,
    /// Copies JetStream keeps of the queue and the spool: 3 on a cluster of three NATS servers
    /// survives losing one; 1 for a single server, whose JetStream must then write every
    /// message to disk before acknowledging it (`sync_interval: always`).
    #[arg(long, env = env::NATS_REPLICAS, default_value_t = 1)]
    pub nats_replicas: usize,
    /// Certificates: one subdirectory per domain with tls.crt and tls.key (a mounted TLS
    /// Secret each). Without it, STARTTLS is not offered and port 465 is not served.
    #[arg(long, env = env::TLS_DIR)]
    pub tls_dir: Option<PathBuf>,
    /// How often the certificate files are checked for changes.
    #[arg(long, env = "KUBEMAIL_TLS_RELOAD_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,
    /// Check SPF, DKIM and DMARC of mail from unauthenticated clients and record the results in
    /// an Authentication-Results header (uses the system's DNS resolvers).
    #[arg(long, env = "KUBEMAIL_VERIFY_INBOUND", default_value_t = true, action = clap::ArgAction::Set)]
    pub verify_inbound: bool,
    /// Refuse (550 5.7.1) mail that fails DMARC when the sender's domain publishes p=reject;
    /// otherwise the failure is only recorded.
    #[arg(long, env = "KUBEMAIL_ENFORCE_DMARC_REJECT")]
    pub enforce_dmarc_reject: bool,
    /// Load balancers whose PROXY protocol header (v1 or v2) names the real client, as CIDR
    /// networks, comma-separated (e.g. 10.0.0.0/8). Others cannot send one.
    #[arg(long, env = env::PROXY_TRUSTED_CIDRS, value_delimiter = ',')]
    pub proxy_trusted_cidrs: Vec<Cidr>,
    /// How long the mailstore's answer about a recipient address is reused (0 = ask every
    /// time); a new or removed mailbox takes this long to reach the MX.
    #[arg(long, env = "KUBEMAIL_RECIPIENT_CACHE_TTL", default_value = "5s", value_parser = parse_duration)]
    pub recipient_cache_ttl: Duration,
    /// Benchmarks only: accept every message and throw it away, without NATS, to measure the
    /// SMTP exchange alone. Mail sent to such a server is lost.
    #[arg(long, hide = true)]
    pub discard_accepted_mail: bool,
    #[command(flatten)]
    pub limits: LimitFlags,
}

/// The delay added to the reply to a client address's first failed AUTH, doubled for each
/// further failure: slows password guessing without hurting a user who mistyped.
const AUTH_FAILURE_DELAY: Duration = Duration::from_secs(1);

/// The protocol limits, shared by the service and `kubemail dev`.
#[derive(Clone, Debug, clap::Args)]
pub struct LimitFlags {
    /// Largest message accepted, e.g. 50MiB (advertised as SIZE).
    #[arg(long, env = env::MAX_MESSAGE_SIZE, default_value = "50MiB", value_parser = parse_byte_size)]
    pub max_message_size: u64,
    /// Recipients per message.
    #[arg(long, env = env::MAX_RECIPIENTS, default_value_t = 100)]
    pub max_recipients: usize,
    /// Refused commands after which a session is closed.
    #[arg(long, env = "KUBEMAIL_MAX_ERRORS", default_value_t = 10)]
    pub max_errors: u32,
    /// Failed AUTH attempts after which a session is closed.
    #[arg(long, env = "KUBEMAIL_MAX_AUTH_FAILURES", default_value_t = 3)]
    pub max_auth_failures: u32,
    #[command(flatten)]
    pub connections: ConnectionFlags,
    /// How long a session waits for the next command (RFC 5321 §4.5.3.2.7: at least 5m).
    #[arg(long, env = "KUBEMAIL_SMTP_COMMAND_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub command_timeout: Duration,
    /// How long a session waits for more of a message body.
    #[arg(long, env = "KUBEMAIL_SMTP_DATA_TIMEOUT", default_value = "3m", value_parser = parse_duration)]
    pub data_timeout: Duration,
    /// How long the spool, then the queue, may take to acknowledge a message before the client
    /// is told to try again (451); well inside the 10 minutes a client waits for the reply to
    /// its data (RFC 5321 §4.5.3.2.6).
    #[arg(long, env = "KUBEMAIL_HANDOFF_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub handoff_timeout: Duration,
}

impl LimitFlags {
    /// The session settings these limits make, for a server named `hostname`.
    pub fn settings(&self, hostname: &str) -> Settings {
        Settings {
            hostname: hostname.to_string(),
            max_message_size: self.max_message_size,
            max_recipients: self.max_recipients,
            max_errors: self.max_errors,
            command_timeout: self.command_timeout,
            data_timeout: self.data_timeout,
            max_auth_failures: self.max_auth_failures,
            auth_failure_delay: AUTH_FAILURE_DELAY,
            allow_plaintext_auth: false,
        }
    }

    pub fn connections(&self) -> ConnectionLimits {
        self.connections.limits()
    }
}
