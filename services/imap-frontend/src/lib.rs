//! kubemail imap-frontend: a stateless IMAP4rev2 server (ports 143 and 993), and POP3 (ports 110
//! and 995) when asked for, over the mailstore. Any replica serves any client: a session keeps
//! only its connection's state, and mailbox changes from anywhere reach it as events.
//!
//! - [`config`] — the service's flags.
//! - [`service`] — the service assembled from its settings and transports, and served.
//! - [`server`] — the listeners (143, 993, 110, 995), per-address limits, graceful shutdown.
//! - [`services`] — what IMAP and POP3 sessions share: the mailstore, events, TLS, settings.
//! - [`credentials`] — checking a password, for IMAP and POP3: remembered logins, then the
//!   mailstore; the account a session logs in to.
//! - [`imap`] — one IMAP connection: the state machine, one file per command or command family.
//! - [`pop3`] — one POP3 connection, for devices that speak nothing else.
//! - [`extended_syntax`] — the command syntax imap-codec does not parse (LIST-EXTENDED, SEARCH and
//!   SORT RETURN, MULTIAPPEND, the newer FETCH items and search keys), rewritten for it.
//! - [`capability`] — what IMAP advertises before and after login.
//! - [`casemap`] — the i;unicode-casemap comparator SEARCH and SORT use.
//! - [`mailbox_name`] — mailbox names on the wire: modified UTF-7 or UTF-8.
//! - [`snapshots`] — SELECT snapshots of large mailboxes kept between sessions.
//! - [`summary`] — what SORT and THREAD read of a message, kept between commands.
//! - [`uid_cache`] — what never changes of messages, kept by mailbox and UID between commands.
//! - [`body_cache`] — whole messages read lately, so reading one again in pieces needs no
//!   round trip.
//! - [`threading`] — THREAD's algorithms, ORDEREDSUBJECT and REFERENCES.
//! - [`response`] — IMAP status responses and strings.

pub mod body_cache;
pub mod capability;
pub mod casemap;
pub mod config;
pub mod credentials;
pub mod extended_syntax;
pub mod imap;
pub mod mailbox_name;
pub mod pop3;
pub mod response;
pub mod server;
pub mod service;
pub mod services;
pub mod snapshots;
pub mod summary;
pub mod threading;
pub mod uid_cache;

use std::net::SocketAddr;
use std::sync::Arc;

use kubemail_runtime::admin_http::AdminEndpoint;
use kubemail_runtime::identity::Role;
use kubemail_runtime::listener;
use kubemail_runtime::nats::NatsEventBus;
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::tls;

pub use service::{ImapFrontend, ServiceSettings, Transports};

pub use kubemail_runtime::propagation::{MailstoreClient, mailstore_client};

pub use kubemail_runtime::service::StartupError as Error;

/// Runs the service until `shutdown`: the IMAP listeners, the mailstore client, the NATS event
/// subscriptions and the admin HTTP endpoint (ready once NATS is connected and the listeners
/// are bound).
pub async fn run(config: config::Config, shutdown: Shutdown) -> Result<(), Error> {
    let (endpoint, ready) = AdminEndpoint::start("imap-frontend", config.service.http_listen, shutdown.wait())
        .await
        .map_err(Error::Startup)?;
    let tls = match &config.tls_dir {
        Some(dir) => Some(tls::ServerTls::from_dir(dir, config.tls_reload_interval, &shutdown)?),
        None if config.session.allow_plaintext_login => {
            tracing::warn!(
                "no --tls-dir: STARTTLS is not offered, port 993 is not served, only loopback clients can log in"
            );
            None
        }
        None => {
            tracing::warn!(
                "no --tls-dir: STARTTLS and STLS are not offered, ports 993 and 995 are not served, nobody can log in"
            );
            None
        }
    };
    let bind = |address: Option<SocketAddr>, flag: &'static str| async move {
        match address {
            Some(address) => listener::bind(address, flag).await.map(Some).map_err(Error::Startup),
            None => Ok(None),
        }
    };
    // Implicit-TLS ports are served only with certificates.
    let with_tls = |address: SocketAddr| tls.is_some().then_some(address);
    let listeners = server::Listeners {
        imap: listener::bind(config.imap_listen, "--imap-listen").await.map_err(Error::Startup)?,
        imaps: bind(with_tls(config.imaps_listen), "--imaps-listen").await?,
        pop3: bind(config.pop3_listen, "--pop3-listen").await?,
        pop3s: bind(config.pop3s_listen.and_then(with_tls), "--pop3s-listen").await?,
    };
    let mailstore = config.service.mailstore_channel(Role::ImapFrontend, &shutdown).map_err(Error::Startup)?;
    let nats = &config.service.nats;
    let access = config.service.nats_access(Role::ImapFrontend).map_err(Error::Startup)?;
    let events = NatsEventBus::connect(&nats.url, &access)
        .await
        .map_err(|e| Error::Startup(format!("NATS at {}: {e}", nats.url)))?;
    let session = config.session.settings(
        &config.service.hostname,
        config.max_message_size,
        config.max_auth_failures,
        config.max_errors,
    );
    let settings = ServiceSettings {
        tls,
        connections: config.connections.limits(),
        proxy_trusted_cidrs: config.proxy_trusted_cidrs.clone(),
        body_cache_octets: config.session.body_cache_size,
        ..ServiceSettings::new(session, config.session.login_cache_ttl, config.session.select_cache_messages)
    };
    let service = ImapFrontend::new(settings, Transports { events: Arc::new(events), mailstore }, shutdown);
    ready.set_ready(true);
    tracing::info!(
        imap = %config.imap_listen,
        imaps = %config.imaps_listen,
        pop3 = ?config.pop3_listen,
        pop3s = ?config.pop3s_listen,
        "imap-frontend is ready"
    );
    service.serve(listeners).await;
    endpoint.finish().await.map_err(Error::Startup)
}
