//! kubemail smtp-ingress: the ESMTP server for MX (25), submission (587) and submissions (465).
//! It accepts mail only after the body is in the spool and the envelope in the queue.
//!
//! - [`config`] — the service's flags.
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
pub mod session;
pub mod verify;

use std::sync::Arc;

use kubemail_runtime::admin_http::{AdminEndpoint, Readiness};
use kubemail_runtime::identity::Role;
use kubemail_runtime::nats::{NatsConfig, NatsTransport};
use kubemail_runtime::shutdown::Shutdown;

use handoff::Handoff;
use kubemail_runtime::limits::{AuthFailures, ConnectionTracker};
use kubemail_runtime::tls;
use server::Listeners;
use session::Services;

pub use kubemail_runtime::propagation::{MailstoreClient, mailstore_client};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The service could not start: a port is taken, NATS or the certificates are unusable.
    #[error("{0}")]
    Startup(String),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Runs the service until `shutdown`: the SMTP listeners, the mailstore client, the NATS spool
/// and queue, and the admin HTTP endpoint (ready once NATS is connected and the listeners are
/// bound).
pub async fn run(config: config::Config, shutdown: Shutdown) -> Result<(), Error> {
    let readiness = Readiness::new();
    let ready = readiness.component("smtp-ingress");
    let endpoint =
        AdminEndpoint::start(config.http_listen, readiness, shutdown.wait()).await.map_err(Error::Startup)?;
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
    let channel =
        config.identity.mailstore_channel(Role::SmtpIngress, &config.mailstore, &shutdown).map_err(Error::Startup)?;
    let handoff = if config.discard_accepted_mail {
        tracing::warn!("--discard-accepted-mail: every accepted message is thrown away");
        Handoff::discarding()
    } else {
        let transport = NatsTransport::connect(&NatsConfig {
            url: config.nats.url.clone(),
            access: config.nats.access(Role::SmtpIngress).map_err(|e| Error::Startup(e.to_string()))?,
            replicas: config.nats_replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| Error::Startup(format!("NATS at {}: {e}", config.nats.url)))?;
        Handoff::new(Arc::new(transport.spool), Arc::new(transport.queue), config.limits.handoff_timeout)
    };
    let verifier = config
        .verify_inbound
        .then(|| verify::Verifier::system(&config.hostname, config.enforce_dmarc_reject))
        .transpose()
        .map_err(|e| Error::Startup(format!("DNS resolver for --verify-inbound: {e}")))?;
    let services = Arc::new(Services {
        mailstore: mailstore_client(channel.clone()),
        directory: directory::Directory::new(mailstore_client(channel), config.recipient_cache_ttl),
        handoff,
        tls,
        settings: config.limits.settings(&config.hostname),
        auth_failures: AuthFailures::new(),
        verifier,
        shutdown: shutdown.clone(),
    });
    let admission = Arc::new(server::Admission::new(
        ConnectionTracker::new(config.limits.connections()),
        config.proxy_trusted_cidrs.clone(),
    ));
    ready.set_ready(true);
    tracing::info!(smtp = %config.smtp_listen, submission = %config.submission_listen, "smtp-ingress is ready");
    server::serve(listeners, services, admission).await;
    endpoint.finish().await.map_err(Error::Startup)
}
