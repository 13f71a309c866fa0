//! kubemail delivery-queue: takes envelopes off the queue and delivers them — local recipients
//! into the mailstore, remote ones over SMTP — retrying temporary failures on a schedule and
//! reporting final failures to the sender (RFC 3464). Any number of replicas share the queue.
//!
//! - [`config`] — the service's flags.
//! - [`service`] — the service assembled from its settings and transports, and run.
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
pub mod service;
pub mod worker;

use std::sync::Arc;

use kubemail_runtime::admin_http::AdminEndpoint;
use kubemail_runtime::identity::Role;
use kubemail_runtime::nats::{NatsConfig, NatsTransport};
use kubemail_runtime::shutdown::Shutdown;

use config::DeliveryFlags;
use outbound::client::{Credentials, Security};
use outbound::dkim::Keys;
use outbound::route::Router;
use outbound::{Relay, SmtpOutbound};
pub use service::{DeliveryQueue, ServiceSettings, Transports};

pub use kubemail_runtime::service::StartupError as Error;

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

/// Runs the service until `shutdown`: the worker on the NATS queue and spool, and the admin
/// HTTP endpoint (ready once NATS is connected).
pub async fn run(config: config::Config, shutdown: Shutdown) -> Result<(), Error> {
    let (endpoint, ready) = AdminEndpoint::start("delivery-queue", config.service.http_listen, shutdown.wait())
        .await
        .map_err(Error::Startup)?;
    let mailstore = config.service.mailstore_channel(Role::DeliveryQueue, &shutdown).map_err(Error::Startup)?;
    let nats = NatsConfig {
        url: config.service.nats.url.clone(),
        access: config.service.nats_access(Role::DeliveryQueue).map_err(Error::Startup)?,
        lease: config.lease,
        replicas: config.nats_replicas,
        ..Default::default()
    };
    let transport =
        NatsTransport::connect(&nats).await.map_err(|e| Error::Startup(format!("NATS at {}: {e}", nats.url)))?;
    let transports = Transports {
        queue: Arc::new(transport.queue),
        spool: Arc::new(transport.spool),
        mailstore,
        outbound: Some(Arc::new(outbound(&config.delivery, &config.service.hostname)?)),
    };
    let settings =
        ServiceSettings { delivery: config.delivery, hostname: config.service.hostname.clone(), lease: config.lease };
    ready.set_ready(true);
    tracing::info!(nats = %config.service.nats.url, mailstore = %config.service.mailstore, "delivery-queue is ready");
    DeliveryQueue::new(settings, transports).serve(shutdown).await;
    endpoint.finish().await.map_err(Error::Startup)
}
