//! [`NatsAccess`]: how a component proves who it is to the NATS server and checks the server's
//! certificate. Each component has a user of its own whose permissions name the subjects it
//! uses (`charts/kubemail/examples/nats-values.yaml`); anything else it tries is refused by the
//! server, which says so asynchronously: the refusal is logged and counted here.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::unavailable;
use crate::deployment::file;
use crate::{Error, Result};

/// How long the first connection may take before the service reports NATS unavailable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A component's way into NATS. The default has no credentials and no TLS: a server open to
/// whoever reaches it, as on a laptop.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatsAccess {
    /// The connection's name in the server's monitoring (`connz`) and logs.
    pub name: Option<String>,
    pub credentials: Option<NatsCredentials>,
    /// The CA that signed the server's certificate; with it the connection must be TLS.
    pub ca_file: Option<PathBuf>,
}

/// A NATS user and its password.
#[derive(Clone, PartialEq, Eq)]
pub struct NatsCredentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for NatsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsCredentials").field("username", &self.username).finish_non_exhaustive()
    }
}

impl NatsCredentials {
    /// Reads `username` and `password` from `dir`: a mounted `kubernetes.io/basic-auth` Secret.
    /// A trailing newline (as `echo` writes) is not part of either.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let read = |key: &str| {
            let path = dir.join(key);
            let value = std::fs::read_to_string(&path)
                .map_err(|e| Error::Config(format!("NATS credentials: cannot read {}: {e}", path.display())))?;
            let value = value.trim_end_matches(['\r', '\n']).to_string();
            if value.is_empty() {
                return Err(Error::Config(format!("NATS credentials: {} is empty", path.display())));
            }
            Ok(value)
        };
        Ok(NatsCredentials { username: read(file::NATS_USERNAME)?, password: read(file::NATS_PASSWORD)? })
    }
}

impl NatsAccess {
    /// Connects to `url`. A server that refuses the credentials, or whose certificate the CA
    /// did not sign, fails the connection at once rather than being retried.
    pub async fn connect(&self, url: &str) -> Result<async_nats::Client> {
        let mut options = async_nats::ConnectOptions::new()
            .connection_timeout(CONNECT_TIMEOUT)
            .event_callback(|event| async move { report(event) });
        if let Some(name) = &self.name {
            options = options.name(name);
        }
        if let Some(credentials) = &self.credentials {
            options = options.user_and_password(credentials.username.clone(), credentials.password.clone());
        }
        if let Some(ca_file) = &self.ca_file {
            if !ca_file.is_file() {
                return Err(Error::Config(format!("NATS CA file {} does not exist", ca_file.display())));
            }
            options = options.add_root_certificates(ca_file.clone()).require_tls(true);
        }
        options.connect(url).await.map_err(unavailable)
    }
}

/// What the server says asynchronously: a refused publish or subscription (a permissions
/// violation) reaches the client only this way, as does a server's word that it dropped
/// messages to a slow subscriber.
fn report(event: async_nats::Event) {
    match event {
        async_nats::Event::ServerError(error) => {
            let kind = match &error {
                async_nats::ServerError::AuthorizationViolation => "authorization",
                async_nats::ServerError::SlowConsumer(_) => "slow_consumer",
                async_nats::ServerError::Other(text) if text.to_ascii_lowercase().contains("permissions violation") => {
                    "permissions"
                }
                async_nats::ServerError::Other(_) => "other",
            };
            metrics::counter!("kubemail_nats_server_errors_total", "kind" => kind).increment(1);
            tracing::error!(%error, "the NATS server reported an error");
        }
        async_nats::Event::Disconnected => tracing::warn!("disconnected from NATS; reconnecting"),
        async_nats::Event::Connected => tracing::info!("connected to NATS"),
        other => tracing::debug!(event = %other, "NATS"),
    }
}
