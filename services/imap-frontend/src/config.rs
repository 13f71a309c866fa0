//! The imap-frontend service's configuration: every flag, its environment variable and default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kubemail_runtime::deployment::env;
use kubemail_runtime::service::ServiceFlags;

use kubemail_runtime::config::{parse_byte_size, parse_duration};
use kubemail_runtime::limits::ConnectionFlags;
use kubemail_runtime::proxy::Cidr;

use crate::services::Settings;

/// Flags of the standalone `imap-frontend` binary.
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "imap-frontend", version, about = "kubemail imap-frontend: a stateless IMAP4rev2 server")]
pub struct Config {
    /// IMAP with STARTTLS.
    #[arg(long, env = env::IMAP_LISTEN, default_value = "0.0.0.0:143")]
    pub imap_listen: SocketAddr,
    /// IMAP over implicit TLS (needs --tls-dir).
    #[arg(long, env = env::IMAPS_LISTEN, default_value = "0.0.0.0:993")]
    pub imaps_listen: SocketAddr,
    /// POP3 with STLS (port 110); not served unless given.
    #[arg(long, env = env::POP3_LISTEN)]
    pub pop3_listen: Option<SocketAddr>,
    /// POP3 over implicit TLS (port 995; needs --tls-dir); not served unless given.
    #[arg(long, env = env::POP3S_LISTEN)]
    pub pop3s_listen: Option<SocketAddr>,
    /// Name, health endpoint, mailstore, NATS (the mailstore's mailbox change events) and service identity.
    #[command(flatten)]
    pub service: ServiceFlags,
    /// Certificates: one subdirectory per domain with tls.crt and tls.key (a mounted TLS
    /// Secret each). Without it, STARTTLS is not offered, port 993 is not served and nobody can
    /// log in.
    #[arg(long, env = env::TLS_DIR)]
    pub tls_dir: Option<PathBuf>,
    /// How often the certificate files are checked for changes.
    #[arg(long, env = "KUBEMAIL_TLS_RELOAD_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,
    /// Load balancers whose PROXY protocol header (v1 or v2) names the real client, as CIDR
    /// networks, comma-separated (e.g. 10.0.0.0/8). Others cannot send one.
    #[arg(long, env = env::PROXY_TRUSTED_CIDRS, value_delimiter = ',')]
    pub proxy_trusted_cidrs: Vec<Cidr>,
    /// Largest message APPEND accepts, e.g. 50MiB; a larger literal is refused before the
    /// client sends it.
    #[arg(long, env = env::MAX_MESSAGE_SIZE, default_value = "50MiB", value_parser = parse_byte_size)]
    pub max_message_size: u64,
    /// Failed logins after which a session is closed.
    #[arg(long, env = "KUBEMAIL_MAX_AUTH_FAILURES", default_value_t = 3)]
    pub max_auth_failures: u32,
    /// Unreadable commands after which a session is closed.
    #[arg(long, env = "KUBEMAIL_MAX_ERRORS", default_value_t = 10)]
    pub max_errors: u32,
    #[command(flatten)]
    pub connections: ConnectionFlags,
    #[command(flatten)]
    pub session: SessionFlags,
}

/// The delay added to the answer of a client address's first failed login, doubled for each
/// further failure: slows password guessing without hurting a user who mistyped.
const AUTH_FAILURE_DELAY: Duration = Duration::from_secs(1);

/// How often a long command tells its progress: often enough that a client does not think
/// the server hung, rarely enough to cost nothing.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

/// The session flags of the service and `kubemail dev`.
#[derive(Clone, Debug, clap::Args)]
pub struct SessionFlags {
    /// How long a logged-in client may stay silent before it is logged out (RFC 9051 §5.4: at
    /// least 30m).
    #[arg(long = "imap-idle-timeout", env = "KUBEMAIL_IMAP_IDLE_TIMEOUT", default_value = "30m", value_parser = parse_idle_timeout)]
    pub idle_timeout: Duration,
    /// How often a client in IDLE hears `* OK Still here`, so that NAT boxes on mobile
    /// networks keep the connection open.
    #[arg(long = "imap-idle-keepalive", env = "KUBEMAIL_IMAP_IDLE_KEEPALIVE", default_value = "2m", value_parser = parse_duration)]
    pub idle_keepalive: Duration,
    /// How long a client may take to log in, counted from its connection.
    #[arg(long = "imap-login-timeout", env = "KUBEMAIL_IMAP_LOGIN_TIMEOUT", default_value = "1m", value_parser = parse_duration)]
    pub login_timeout: Duration,
    /// Accept passwords without TLS from clients on this machine (loopback addresses only):
    /// for mail clients and load tools set up without TLS on a developer's machine.
    #[arg(long = "imap-allow-plaintext-login", env = "KUBEMAIL_IMAP_ALLOW_PLAINTEXT_LOGIN")]
    pub allow_plaintext_login: bool,
    /// How long a successful login is remembered, so that a client logging in again is not
    /// verified again (0 turns this off). Forgotten at once when the password changes or the
    /// account is suspended.
    #[arg(long = "login-cache-ttl", env = "KUBEMAIL_LOGIN_CACHE_TTL", default_value = "5m", value_parser = parse_duration)]
    pub login_cache_ttl: Duration,
    /// The domain of a login name given without one: `alice` logs in as `alice@<domain>`.
    /// Without it, users log in with their whole address.
    #[arg(long = "login-default-domain", env = "KUBEMAIL_LOGIN_DEFAULT_DOMAIN")]
    pub login_default_domain: Option<String>,
    /// SELECT snapshots of large mailboxes kept between sessions, in messages over all of them
    /// (about 20 octets each; 0 keeps none). A kept one is used only while the mailstore says
    /// nothing changed since.
    #[arg(long = "select-cache-messages", env = "KUBEMAIL_SELECT_CACHE_MESSAGES", default_value_t = 1_000_000)]
    pub select_cache_messages: usize,
    /// Octets of whole messages kept after a FETCH read them (0 keeps none), so the next
    /// pieces a client reads of one (its parts, one after the other) need no mailstore round
    /// trip. No one message takes more than a sixty-fourth of it.
    #[arg(long = "body-cache-size", env = "KUBEMAIL_BODY_CACHE_SIZE", default_value_t = DEFAULT_BODY_CACHE_OCTETS, value_parser = parse_byte_size)]
    pub body_cache_size: u64,
}

/// `--body-cache-size` when not given: 64 MiB.
pub const DEFAULT_BODY_CACHE_OCTETS: u64 = 64 * 1024 * 1024;

impl SessionFlags {
    /// The session settings for a server named `hostname` that takes messages up to
    /// `max_message_size` octets, with the given failure limits.
    pub fn settings(&self, hostname: &str, max_message_size: u64, max_auth_failures: u32, max_errors: u32) -> Settings {
        Settings {
            hostname: hostname.to_string(),
            max_literal: u32::try_from(max_message_size).unwrap_or(u32::MAX),
            idle_timeout: self.idle_timeout,
            idle_keepalive: self.idle_keepalive,
            login_timeout: self.login_timeout,
            max_auth_failures,
            max_errors,
            auth_failure_delay: AUTH_FAILURE_DELAY,
            allow_plaintext_auth: self.allow_plaintext_login,
            default_domain: self.login_default_domain.clone(),
            progress_interval: PROGRESS_INTERVAL,
        }
    }
}

/// The autologout timer may not be shorter than RFC 9051 allows.
fn parse_idle_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_duration(text)?;
    if timeout < Duration::from_secs(30 * 60) {
        return Err("must be at least 30m (RFC 9051 §5.4)".into());
    }
    Ok(timeout)
}
