//! The service assembled: [`ImapFrontend::new`] builds it from its settings and its
//! transports, [`ImapFrontend::serve`] serves its listeners. Production (`run`), `kubemail dev`,
//! the tests and the fuzzers all build it here, so a new part of the service is added in one
//! place.

use std::sync::Arc;
use std::time::Duration;

use kubemail_runtime::EventBus;
use kubemail_runtime::limits::{AuthFailures, ConnectionLimits, ConnectionTracker};
use kubemail_runtime::login_cache::LoginCache;
use kubemail_runtime::proxy::Cidr;
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::tls::ServerTls;
use tonic::transport::Channel;

use crate::body_cache::BodyCache;
use crate::config;
use crate::mailstore_client;
use crate::server::{self, Admission, Listeners};
use crate::services::{self, Services, Settings};
use crate::snapshots::{self, SnapshotCache};
use crate::summary::{self, SummaryCache};
use crate::uid_cache::UidCache;

/// What the service decides by configuration rather than by its transports.
pub struct ServiceSettings {
    pub session: Settings,
    /// `None` when no certificate is configured: STARTTLS is not offered and the implicit-TLS
    /// ports are not served.
    pub tls: Option<ServerTls>,
    /// How long a verified login is remembered.
    pub login_cache_ttl: Duration,
    /// Messages of SELECT snapshots kept between sessions, all mailboxes together.
    pub select_cache_messages: usize,
    /// The smallest mailbox whose snapshot is kept (smaller ones are cheap to read again).
    pub select_cache_min_messages: usize,
    /// Octets of whole messages kept after they were read.
    pub body_cache_octets: u64,
    pub connections: ConnectionLimits,
    /// Load balancers allowed to send a PROXY header.
    pub proxy_trusted_cidrs: Vec<Cidr>,
    /// Failed logins by client address; `kubemail dev` shares one count with SMTP.
    pub auth_failures: Arc<AuthFailures>,
}

impl ServiceSettings {
    /// `session` with no TLS, logins remembered for `login_cache_ttl`, `select_cache_messages`
    /// kept of mailboxes from the usual size up, bodies kept up to the default size, no PROXY
    /// senders and no connection limits; callers set the rest with
    /// `..ServiceSettings::new(…)`.
    pub fn new(session: Settings, login_cache_ttl: Duration, select_cache_messages: usize) -> ServiceSettings {
        ServiceSettings {
            session,
            tls: None,
            login_cache_ttl,
            select_cache_messages,
            select_cache_min_messages: snapshots::MIN_MESSAGES,
            body_cache_octets: config::DEFAULT_BODY_CACHE_OCTETS,
            connections: ConnectionLimits::UNLIMITED,
            proxy_trusted_cidrs: Vec::new(),
            auth_failures: AuthFailures::new(),
        }
    }
}

/// Where mail is read and where its changes are heard.
pub struct Transports {
    /// Mailbox change events, and account changes that make remembered logins stale.
    pub events: Arc<dyn EventBus>,
    /// The mailstore: logins, mailboxes, messages.
    pub mailstore: Channel,
}

/// imap-frontend, ready to serve.
pub struct ImapFrontend {
    services: Arc<Services>,
    admission: Arc<Admission>,
}

impl ImapFrontend {
    /// The service on `transports`; its sessions end when `shutdown` is triggered.
    pub fn new(settings: ServiceSettings, transports: Transports, shutdown: Shutdown) -> ImapFrontend {
        let services = Arc::new(Services {
            mailstore: mailstore_client(transports.mailstore),
            logins: LoginCache::start(settings.login_cache_ttl, transports.events.clone(), shutdown.clone()),
            auth_failures: settings.auth_failures,
            snapshots: SnapshotCache::new(settings.select_cache_messages, settings.select_cache_min_messages),
            summaries: SummaryCache::new(summary::CACHE_MESSAGES),
            held: UidCache::new(services::HELD_MESSAGES),
            bodies: BodyCache::new(usize::try_from(settings.body_cache_octets).unwrap_or(usize::MAX)),
            events: transports.events,
            tls: settings.tls,
            settings: settings.session,
            shutdown,
        });
        let admission =
            Arc::new(Admission::new(ConnectionTracker::new(settings.connections), settings.proxy_trusted_cidrs));
        ImapFrontend { services, admission }
    }

    /// What every session shares, for driving a session without a listener (tests, fuzzing).
    pub fn services(&self) -> Arc<Services> {
        self.services.clone()
    }

    /// Serves `listeners` until the shutdown, then waits for the sessions to end.
    pub async fn serve(self, listeners: Listeners) {
        server::serve(listeners, self.services, self.admission).await;
    }
}
