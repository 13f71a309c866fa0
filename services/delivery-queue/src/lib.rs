//! kubemail delivery-queue: takes envelopes off the queue and delivers them — local recipients
//! into the mailstore, remote ones over SMTP — retrying temporary failures on a schedule and
//! reporting final failures to the sender (RFC 3464). Any number of replicas share the queue.
//!
//! - [`config`] — the service's flags.
//! - [`worker`] — pull, deliver, settle: ack, retry, continue, dead-letter.
//! - [`local`] — local recipients through the mailstore's `Deliver`.
//! - [`outbound`] — remote recipients: MX routing or a relay host, DKIM, the SMTP client.
//! - [`schedule`] — when to try again, and when to give up.
//! - [`outcome`] — what became of one recipient.
//! - [`report`] — queueing delivery reports to the sender.
//! - [`dsn`] — the report message itself.

pub mod config;
pub mod dsn;
pub mod local;
pub mod outbound;
pub mod outcome;
pub mod report;
pub mod schedule;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use kubemail_runtime::admin_http::{AdminEndpoint, Readiness};
use kubemail_runtime::identity::Role;
use kubemail_runtime::nats::{NatsConfig, NatsTransport};
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::{Queue, Spool};

use config::DeliveryFlags;
use kubemail_runtime::propagation::MailstoreClient;
use outbound::client::{Credentials, Security};
use outbound::dkim::Keys;
use outbound::route::Router;
use outbound::{Outbound, Relay, SmtpOutbound};
use report::Reporter;
use worker::Worker;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The service could not start: a port is taken, NATS or the mailstore address is unusable.
    #[error("{0}")]
    Startup(String),
}

pub use kubemail_runtime::propagation::mailstore_client;

/// Outbound SMTP as `flags` configure it, saying EHLO as `hostname`.
pub fn outbound(flags: &DeliveryFlags, hostname: &str) -> Result<SmtpOutbound, Error> {
    let resolver = hickory_resolver::TokioResolver::builder_tokio()
        .and_then(|builder| builder.build())
        .map_err(|e| Error::Startup(format!("DNS resolver from the system configuration: {e}")))?;
    let router = Router::new(resolver, &flags.mx_overrides);
    let relay = match &flags.relay_host {
        None => None,
        Some(target) => {
            let config = outbound::tls::verified(flags.relay_ca_file.as_deref())
                .map_err(|e| Error::Startup(format!("--relay-ca-file: {e}")))?;
            let credentials = match (&flags.relay_username, &flags.relay_password_file) {
                (Some(username), Some(path)) => {
                    let password = std::fs::read_to_string(path)
                        .map_err(|e| Error::Startup(format!("--relay-password-file {}: {e}", path.display())))?;
                    Some(Credentials { username: username.clone(), password: password.trim_end().to_string() })
                }
                (Some(_), None) => return Err(Error::Startup("--relay-username needs --relay-password-file".into())),
                _ => None,
            };
            let security = Security::Required { config, implicit: target.port == 465 };
            Some(Relay { target: target.clone(), credentials, security })
        }
    };
    let keys = flags.dkim_dir.as_ref().map(Keys::new);
    Ok(SmtpOutbound::new(router, relay, keys, hostname.to_string()))
}

/// The transports and services a worker uses.
pub struct Connections {
    pub queue: Arc<dyn Queue>,
    pub spool: Arc<dyn Spool>,
    pub mailstore: MailstoreClient,
    /// Remote recipients; `None` when this deployment sends no mail out.
    pub outbound: Option<Arc<dyn Outbound>>,
}

/// A worker on `connections` for the host `hostname`; `lease` is the queue's, extended every
/// third of it.
pub fn worker(connections: Connections, flags: &DeliveryFlags, hostname: &str, lease: Duration) -> Worker {
    let Connections { queue, spool, mailstore, outbound } = connections;
    let reporter = Reporter {
        mailstore: mailstore.clone(),
        spool: spool.clone(),
        queue: queue.clone(),
        hostname: hostname.into(),
    };
    Worker {
        queue,
        spool,
        mailstore,
        outbound,
        reporter,
        schedule: flags.schedule(),
        delay_warning: flags.delay_warning,
        concurrency: flags.concurrency,
        lease_renewal: lease / 3,
    }
}

/// Runs the service until `shutdown`: the worker on the NATS queue and spool, and the admin
/// HTTP endpoint (ready once NATS is connected).
pub async fn run(config: config::Config, shutdown: Shutdown) -> Result<(), Error> {
    let readiness = Readiness::new();
    let ready = readiness.component("delivery-queue");
    let endpoint =
        AdminEndpoint::start(config.http_listen, readiness, shutdown.wait()).await.map_err(Error::Startup)?;
    let channel =
        config.identity.mailstore_channel(Role::DeliveryQueue, &config.mailstore, &shutdown).map_err(Error::Startup)?;
    let nats = NatsConfig {
        url: config.nats.url.clone(),
        access: config.nats.access(Role::DeliveryQueue).map_err(|e| Error::Startup(e.to_string()))?,
        lease: config.lease,
        replicas: config.nats_replicas,
        ..Default::default()
    };
    let transport =
        NatsTransport::connect(&nats).await.map_err(|e| Error::Startup(format!("NATS at {}: {e}", config.nats.url)))?;
    let connections = Connections {
        queue: Arc::new(transport.queue),
        spool: Arc::new(transport.spool),
        mailstore: mailstore_client(channel),
        outbound: Some(Arc::new(outbound(&config.delivery, &config.hostname)?)),
    };
    let worker = worker(connections, &config.delivery, &config.hostname, config.lease);
    ready.set_ready(true);
    tracing::info!(nats = %config.nats.url, mailstore = %config.mailstore, "delivery-queue is ready");
    Arc::new(worker).run(shutdown).await;
    endpoint.finish().await.map_err(Error::Startup)
}
