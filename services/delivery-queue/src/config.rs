//! The delivery-queue service's configuration: every flag, its environment variable and default.

use std::path::PathBuf;
use std::time::Duration;

use kubemail_runtime::deployment::env;
use kubemail_runtime::service::ServiceFlags;

use kubemail_runtime::config::parse_duration;

use crate::outbound::route::{Override, Target};
use crate::schedule::RetrySchedule;

/// Flags of the standalone `delivery-queue` binary.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "delivery-queue",
    version,
    about = "kubemail delivery-queue: local delivery, outbound SMTP, retries and bounces"
)]
pub struct Config {
    /// Name, health endpoint, mailstore, NATS (the spool and the queue) and service identity.
    #[command(flatten)]
    pub service: ServiceFlags,
    /// Copies JetStream keeps of the queue and the spool: 3 on a cluster of three NATS servers
    /// survives losing one; 1 for a single server, whose JetStream must then write every
    /// message to disk before acknowledging it (`sync_interval: always`).
    #[arg(long, env = env::NATS_REPLICAS, default_value_t = 1)]
    pub nats_replicas: usize,
    /// How long a pulled envelope stays leased to this replica without being extended; a
    /// replica that dies loses its envelopes to the others after this long.
    #[arg(long, env = "KUBEMAIL_QUEUE_LEASE", default_value = "60s", value_parser = parse_duration)]
    pub lease: Duration,
    #[command(flatten)]
    pub delivery: DeliveryFlags,
}

/// What delivery does, shared by the service and `kubemail dev`.
#[derive(Clone, Debug, clap::Args)]
pub struct DeliveryFlags {
    /// Envelopes delivered at once by this replica.
    #[arg(long, env = "KUBEMAIL_DELIVERY_CONCURRENCY", default_value_t = 32)]
    pub concurrency: usize,
    /// Gaps between delivery attempts after a temporary failure, counted from acceptance; the
    /// last one repeats.
    #[arg(long, env = "KUBEMAIL_RETRY_SCHEDULE", default_value = "1m,5m,15m,1h,4h", value_delimiter = ',', value_parser = parse_duration)]
    pub retry_schedule: Vec<Duration>,
    /// Age after which a message that still could not be delivered is returned to its sender.
    #[arg(long, env = "KUBEMAIL_MAX_AGE", default_value = "5d", value_parser = parse_duration)]
    pub max_age: Duration,
    /// Age after which the sender of a message still being retried is told so, once (a
    /// `delayed` delivery status notification, for recipients that asked with NOTIFY=DELAY);
    /// 0 never tells.
    #[arg(long, env = "KUBEMAIL_DELAY_WARNING", default_value = "4h", value_parser = parse_duration)]
    pub delay_warning: Duration,
    /// Send mail for DOMAIN to HOST:PORT instead of its MX hosts (repeatable; for tests and
    /// private networks). Goes before --relay-host.
    #[arg(long = "mx-override", env = env::MX_OVERRIDES, value_name = "DOMAIN=HOST:PORT", value_delimiter = ',')]
    pub mx_overrides: Vec<Override>,
    /// Send all remote mail through this smart host (HOST:PORT; port 465 is TLS from the
    /// start, any other needs STARTTLS), with a verified certificate.
    #[arg(long, env = "KUBEMAIL_RELAY_HOST", value_name = "HOST:PORT")]
    pub relay_host: Option<Target>,
    /// User name for AUTH at the relay host.
    #[arg(long, env = "KUBEMAIL_RELAY_USERNAME", requires = "relay_host")]
    pub relay_username: Option<String>,
    /// File holding the password for AUTH at the relay host (a mounted Secret).
    #[arg(long, env = "KUBEMAIL_RELAY_PASSWORD_FILE", requires = "relay_username")]
    pub relay_password_file: Option<PathBuf>,
    /// CA certificates (PEM) trusted for the relay host besides the public roots.
    #[arg(long, env = "KUBEMAIL_RELAY_CA_FILE", requires = "relay_host")]
    pub relay_ca_file: Option<PathBuf>,
    /// DKIM keys: one subdirectory per sending domain holding `dkim.key` (PEM) and `selector`.
    #[arg(long, env = env::DKIM_DIR)]
    pub dkim_dir: Option<PathBuf>,
}

impl DeliveryFlags {
    pub fn schedule(&self) -> RetrySchedule {
        RetrySchedule { steps: self.retry_schedule.clone(), max_age: self.max_age }
    }
}
