//! The service assembled: [`SmtpIngress::new`] builds it from its settings and its transports,
//! [`SmtpIngress::serve`] serves its listeners. Production (`run`), `kubemail dev`, the tests
//! and the fuzzers all build it here, so a new part of the service is added in one place.

use std::sync::Arc;
use std::time::Duration;

use kubemail_runtime::limits::{AuthFailures, ConnectionLimits, ConnectionTracker};
use kubemail_runtime::proxy::Cidr;
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::tls::ServerTls;
use kubemail_runtime::{Queue, Spool};
use tonic::transport::Channel;

use crate::directory::Directory;
use crate::handoff::Handoff;
use crate::mailstore_client;
use crate::server::{self, Admission, Listeners};
use crate::session::{Services, Settings};
use crate::verify::Verifier;

/// What the service decides by configuration rather than by its transports.
pub struct ServiceSettings {
    pub session: Settings,
    /// `None` when no certificate is configured: STARTTLS is not offered and port 465 not served.
    pub tls: Option<ServerTls>,
    /// How long the mailstore's answer about a recipient is reused (zero: ask every time).
    pub recipient_cache_ttl: Duration,
    /// How long the spool, then the queue, may take to acknowledge a message.
    pub handoff_timeout: Duration,
    /// SPF, DKIM and DMARC of mail from unauthenticated clients; `None` skips the checks.
    pub verifier: Option<Verifier>,
    pub connections: ConnectionLimits,
    /// Load balancers allowed to send a PROXY header.
    pub proxy_trusted_cidrs: Vec<Cidr>,
    /// Failed AUTH by client address; `kubemail dev` shares one count with IMAP.
    pub auth_failures: Arc<AuthFailures>,
}

impl ServiceSettings {
    /// `session` with no TLS, no inbound verification, no recipient cache, no PROXY senders and
    /// no connection limits; callers set the rest with `..ServiceSettings::new(…)`.
    pub fn new(session: Settings, handoff_timeout: Duration) -> ServiceSettings {
        ServiceSettings {
            session,
            tls: None,
            recipient_cache_ttl: Duration::ZERO,
            handoff_timeout,
            verifier: None,
            connections: ConnectionLimits::UNLIMITED,
            proxy_trusted_cidrs: Vec::new(),
            auth_failures: AuthFailures::new(),
        }
    }
}

/// Where accepted mail goes and whom the sessions ask.
pub struct Transports {
    /// The spool and the queue accepted mail is handed to; `None` throws it away
    /// (`--discard-accepted-mail`, for benchmarks only).
    pub handoff: Option<(Arc<dyn Spool>, Arc<dyn Queue>)>,
    /// The mailstore: logins, recipients, the addresses a user may send from.
    pub mailstore: Channel,
}

/// smtp-ingress, ready to serve.
pub struct SmtpIngress {
    services: Arc<Services>,
    admission: Arc<Admission>,
}

impl SmtpIngress {
    /// The service on `transports`; its sessions end when `shutdown` is triggered.
    pub fn new(settings: ServiceSettings, transports: Transports, shutdown: Shutdown) -> SmtpIngress {
        let handoff = match transports.handoff {
            Some((spool, queue)) => Handoff::new(spool, queue, settings.handoff_timeout),
            None => Handoff::discarding(),
        };
        let services = Arc::new(Services {
            mailstore: mailstore_client(transports.mailstore.clone()),
            directory: Directory::new(mailstore_client(transports.mailstore), settings.recipient_cache_ttl),
            handoff,
            tls: settings.tls,
            settings: settings.session,
            auth_failures: settings.auth_failures,
            verifier: settings.verifier,
            shutdown,
        });
        let admission =
            Arc::new(Admission::new(ConnectionTracker::new(settings.connections), settings.proxy_trusted_cidrs));
        SmtpIngress { services, admission }
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
