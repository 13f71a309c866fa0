//! What IMAP and POP3 sessions share: the mailstore, events, TLS, remembered logins, SELECT
//! snapshots, message summaries, the FETCH items held, bodies read lately and the shutdown
//! signal ([`Services`]),
//! and the limits every session keeps ([`Settings`]).

use std::sync::Arc;
use std::time::Duration;

use kubemail_proto::mailstore::MessageMeta;
use kubemail_runtime::EventBus;
use kubemail_runtime::limits::AuthFailures;
use kubemail_runtime::login_cache::LoginCache;
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::tls::ServerTls;
use tokio_rustls::TlsAcceptor;

use crate::MailstoreClient;
use crate::body_cache::BodyCache;
use crate::snapshots::SnapshotCache;
use crate::summary::SummaryCache;
use crate::uid_cache::UidCache;

/// What every session is configured with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// The server's name in the greeting.
    pub hostname: String,
    /// The largest literal accepted, which bounds the largest message APPEND takes.
    pub max_literal: u32,
    /// How long an authenticated client may stay silent (RFC 9051 §5.4: at least 30 minutes).
    pub idle_timeout: Duration,
    /// How often an IDLE session hears `* OK Still here`, so NAT boxes keep the connection.
    pub idle_keepalive: Duration,
    /// How long a client may take to log in, and stay silent before it does.
    pub login_timeout: Duration,
    /// Failed logins after which the connection is closed.
    pub max_auth_failures: u32,
    /// Unreadable commands after which the connection is closed.
    pub max_errors: u32,
    /// Wait before answering a client address's first failed login; each further failure from
    /// it doubles the wait (`AuthFailures`): slows down password guessing.
    pub auth_failure_delay: Duration,
    /// LOGIN and AUTHENTICATE without TLS from loopback clients (`kubemail dev`); other
    /// clients need TLS whatever this says.
    pub allow_plaintext_auth: bool,
    /// The domain added to a login name without one.
    pub default_domain: Option<String>,
    /// How often a long command tells how far it got (INPROGRESS, RFC 9585).
    pub progress_interval: Duration,
}

/// Messages whose unchanging FETCH items the frontend keeps ([`Services::held`]): about 1.5 KB
/// each with their ENVELOPE and BODYSTRUCTURE, so some 75 MB when full.
pub const HELD_MESSAGES: usize = 50_000;

/// What sessions share: the mailstore, TLS, settings, and the shutdown signal.
pub struct Services {
    pub mailstore: MailstoreClient,
    /// Mailbox change events from the mailstore.
    pub events: Arc<dyn EventBus>,
    /// Offered with STARTTLS when set and holding a certificate (port 993 completes its
    /// handshake before the session).
    pub tls: Option<ServerTls>,
    pub settings: Settings,
    /// Logins verified lately.
    pub logins: Arc<LoginCache>,
    /// Failed logins by client address, which set how late the next failure is answered.
    pub auth_failures: Arc<AuthFailures>,
    /// SELECT snapshots of large mailboxes.
    pub snapshots: SnapshotCache,
    /// What SORT and THREAD read of messages' headers.
    pub summaries: SummaryCache,
    /// What FETCH answers of messages that never changes, so a session answers it again
    /// without the mailstore (`imap/fetch.rs`).
    pub held: UidCache<MessageMeta>,
    /// Whole messages read lately, so FETCH cuts the next pieces a client reads from them.
    pub bodies: BodyCache,
    pub shutdown: Shutdown,
}

impl Services {
    /// What STARTTLS and STLS hand the connection to, once there is a certificate.
    pub fn tls_acceptor(&self) -> Option<TlsAcceptor> {
        self.tls.as_ref().and_then(ServerTls::acceptor)
    }
}
