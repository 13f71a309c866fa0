//! Where a component's service identity comes from: the flags every service, the operator and
//! `kubemail admin` share.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tonic::transport::Channel;

use super::{CertificateAuthority, IdentityError, Role, ServiceIdentity};
use crate::config::parse_duration;
use crate::deployment::env;
use crate::shutdown::Shutdown;

/// How long an identity issued from `--service-ca-dir` is valid; it is renewed after two thirds.
pub const LOCAL_IDENTITY_VALIDITY: Duration = Duration::from_secs(24 * 3600);

#[derive(Clone, Debug, clap::Args)]
pub struct IdentityFlags {
    /// This component's identity for gRPC between kubemail's services: a directory with
    /// tls.crt, tls.key and ca.crt (a mounted Secret), re-read when they change. Without this
    /// or --service-ca-dir, gRPC is plain text and the mailstore serves whoever reaches it.
    #[arg(long, env = env::SERVICE_TLS_DIR)]
    pub service_tls_dir: Option<PathBuf>,
    /// For services run separately on one machine: a directory holding a CA that all of them
    /// share (the first to start makes it); each issues itself its identity from it.
    #[arg(long, env = "KUBEMAIL_SERVICE_CA_DIR", conflicts_with = "service_tls_dir")]
    pub service_ca_dir: Option<PathBuf>,
    /// How often the identity is checked for renewal.
    #[arg(long, env = "KUBEMAIL_SERVICE_IDENTITY_CHECK_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub service_identity_check_interval: Duration,
}

impl IdentityFlags {
    /// The identity of `role` the flags name, renewed until `shutdown`; `None` when they name
    /// none.
    pub fn load(&self, role: Role, shutdown: &Shutdown) -> Result<Option<Arc<ServiceIdentity>>, IdentityError> {
        let identity = match (&self.service_tls_dir, &self.service_ca_dir) {
            (Some(dir), _) => ServiceIdentity::from_dir(role, dir)?,
            (None, Some(dir)) => ServiceIdentity::from_authority(
                role,
                CertificateAuthority::open_or_create(dir)?,
                LOCAL_IDENTITY_VALIDITY,
            )?,
            (None, None) => {
                tracing::warn!(
                    %role,
                    "no service identity (--service-tls-dir or --service-ca-dir): gRPC between services is plain text"
                );
                return Ok(None);
            }
        };
        tokio::spawn(identity.clone().watch(self.service_identity_check_interval, shutdown.wait()));
        Ok(Some(identity))
    }

    /// A channel to the mailstore at `url` (its `--mailstore` flag), as `role`.
    pub fn mailstore_channel(&self, role: Role, url: &str, shutdown: &Shutdown) -> Result<Channel, String> {
        let identity = self.load(role, shutdown).map_err(|e| format!("service identity: {e}"))?;
        super::channel(url, identity.as_ref(), Role::Mailstore).map_err(|e| format!("--mailstore {url}: {e}"))
    }
}
