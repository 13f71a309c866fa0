//! Where a service's NATS is and how it gets in: the flags every service that uses NATS shares.

use std::path::PathBuf;

use super::NatsAccess;
use super::access::NatsCredentials;
use crate::Result;
use crate::deployment::env;

#[derive(Clone, Debug, clap::Args)]
pub struct NatsFlags {
    /// The NATS server (JetStream enabled); `tls://` or a --nats-ca-file makes the connection
    /// TLS.
    #[arg(long = "nats-url", env = env::NATS_URL, default_value = "nats://127.0.0.1:4222")]
    pub url: String,
    /// This component's NATS user: a directory with the files `username` and `password` (a
    /// mounted `kubernetes.io/basic-auth` Secret). Without it, the server must let anyone in.
    #[arg(long = "nats-credentials-dir", env = env::NATS_CREDENTIALS_DIR)]
    pub credentials_dir: Option<PathBuf>,
    /// The CA (PEM) that signed the NATS server's certificate: the connection must then be TLS
    /// to a server this CA vouches for.
    #[arg(long = "nats-ca-file", env = env::NATS_CA_FILE)]
    pub ca_file: Option<PathBuf>,
}

impl NatsFlags {
    /// How the component named `name` (its role) connects; the credentials are read now, so a
    /// missing file stops the start with a message saying which.
    pub fn access(&self, name: impl std::fmt::Display) -> Result<NatsAccess> {
        let name = name.to_string();
        let credentials = self.credentials_dir.as_deref().map(NatsCredentials::from_dir).transpose()?;
        if credentials.is_none() {
            tracing::warn!(component = %name, "no --nats-credentials-dir: connecting to NATS without a user");
        }
        Ok(NatsAccess { name: Some(name), credentials, ca_file: self.ca_file.clone() })
    }
}
