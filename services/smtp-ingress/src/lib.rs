//! kubemail smtp-ingress: the ESMTP server for MX (25), submission (587) and submissions (465).
//! It accepts mail only after the body is in the spool and the envelope in the queue.
//!
//! - [`config`] — the service's flags.
//! - [`service`] — the service assembled from its settings and transports, and served.
//! - [`server`] — listeners, implicit TLS, per-address limits, graceful shutdown.
//! - [`session`] — one SMTP connection: the state machine, one file per verb family.
//! - [`reply`] — replies with enhanced status codes.
//! - [`address`] — checks on envelope addresses.
//! - [`directory`] — recipient lookups through the mailstore, cached for a few seconds.
//! - [`handoff`] — spool and queue: the durable hand-off behind every `250`.
//! - [`received`] — the Received trace header and RFC 5322 dates.
//! - [`verify`] — SPF, DKIM and DMARC of inbound mail, the Authentication-Results header.

pub mod address;
pub mod config;
pub mod directory;
pub mod handoff;
pub mod received;
pub mod reply;
pub mod server;
pub mod service;
pub mod session;
pub mod verify;

use std::sync::Arc;

use kubemail_runtime::admin_http::AdminEndpoint;
use kubemail_runtime::identity::Role;
use kubemail_runtime::nats::{NatsConfig, NatsTransport};
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::tls;

use server::Listeners;
pub use service::{ServiceSettings, SmtpIngress, Transports};

pub use kubemail_runtime::propagation::{MailstoreClient, mailstore_client};

pub use kubemail_runtime::service::StartupError as Error;

/// Runs the service until `shutdown`: the SMTP listeners, the mailstore client, the NATS spool
/// and queue, and the admin HTTP endpoint (ready once NATS is connected and the listeners are
/// bound).
pub async fn run(config: config::Config, shutdown: Shutdown) -> Result<(), Error> {
    let (endpoint, ready) = AdminEndpoint::start("smtp-ingress", config.service.http_listen, shutdown.wait())
        .await
        .map_err(Error::Startup)?;
    let tls = match &config.tls_dir {
        Some(dir) => Some(tls::ServerTls::from_dir(dir, config.tls_reload_interval, &shutdown)?),
        None => {
            tracing::warn!("no --tls-dir: STARTTLS is not offered and port 465 is not served");
            None
        }
    };
    let listeners = Listeners::bind(
        config.smtp_listen,
        config.submission_listen,
        tls.is_some().then_some(config.submissions_listen),
    )
    .await?;
    let mailstore = config.service.mailstore_channel(Role::SmtpIngress, &shutdown).map_err(Error::Startup)?;
    let handoff = if config.discard_accepted_mail {
        tracing::warn!("--discard-accepted-mail: every accepted message is thrown away");
        None
    } else {
        let nats = &config.service.nats;
        let transport = NatsTransport::connect(&NatsConfig {
            url: nats.url.clone(),
            access: config.service.nats_access(Role::SmtpIngress).map_err(Error::Startup)?,
            replicas: config.nats_replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| Error::Startup(format!("NATS at {}: {e}", nats.url)))?;
        Some((Arc::new(transport.spool) as _, Arc::new(transport.queue) as _))
    };
    let verifier = config
        .verify_inbound
        .then(|| verify::Verifier::system(&config.service.hostname, config.enforce_dmarc_reject))
        .transpose()
        .map_err(|e| Error::Startup(format!("DNS resolver for --verify-inbound: {e}")))?;
    let settings = ServiceSettings {
        tls,
        recipient_cache_ttl: config.recipient_cache_ttl,
        verifier,
        connections: config.limits.connections(),
        proxy_trusted_cidrs: config.proxy_trusted_cidrs.clone(),
        ..ServiceSettings::new(config.limits.settings(&config.service.hostname), config.limits.handoff_timeout)
    };
    let service = SmtpIngress::new(settings, Transports { handoff, mailstore }, shutdown);
    ready.set_ready(true);
    tracing::info!(smtp = %config.smtp_listen, submission = %config.submission_listen, "smtp-ingress is ready");
    service.serve(listeners).await;
    endpoint.finish().await.map_err(Error::Startup)
}
