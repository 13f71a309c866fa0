//! The mailstore's Admin API, reached at the mailstore Service of the MailCluster a domain
//! belongs to (or, for tests and out-of-cluster runs, at one fixed address).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubemail_proto::admin::admin_client::AdminClient;
use tonic::transport::{Channel, Endpoint};

use crate::build::cluster::names;
use crate::{Error, Result};

/// How long one Admin call may take before the reconcile treats the mailstore as unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Admin API clients, one channel per mailstore, made on first use.
#[derive(Clone, Default)]
pub struct Mailstores {
    /// Every cluster's mailstore at this address instead of its Service.
    fixed: Option<String>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl Mailstores {
    /// Each MailCluster's mailstore at its Service, or all at `fixed`.
    pub fn new(fixed: Option<String>) -> Mailstores {
        Mailstores { fixed, channels: Arc::default() }
    }

    /// The Admin API address of the mailstore of the MailCluster `cluster` in `namespace`.
    pub fn url(&self, cluster: &str, namespace: &str) -> String {
        self.fixed.clone().unwrap_or_else(|| names::admin_url(cluster, namespace))
    }

    /// A client of the mailstore at `url`. It connects on its first call, so a mailstore that
    /// is down shows up as an UNAVAILABLE answer there.
    pub fn client(&self, url: &str) -> Result<AdminClient<Channel>> {
        let mut channels = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let channel = match channels.get(url) {
            Some(channel) => channel.clone(),
            None => {
                let endpoint = Endpoint::from_shared(url.to_string())
                    .map_err(|error| Error::MailstoreUnreachable { url: url.to_string(), message: error.to_string() })?
                    .connect_timeout(CONNECT_TIMEOUT)
                    .timeout(CALL_TIMEOUT);
                let channel = endpoint.connect_lazy();
                channels.insert(url.to_string(), channel.clone());
                channel
            }
        };
        Ok(AdminClient::new(channel))
    }
}

/// Whether `status` says the mailstore could not be reached or could not answer now, as
/// opposed to refusing the request: the reconcile then waits and retries.
pub fn unavailable(status: &tonic::Status) -> bool {
    matches!(status.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled)
}
