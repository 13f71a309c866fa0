//! The mailstore's Admin API, reached at the mailstore Service of the MailCluster a domain
//! belongs to, with the operator's identity for that cluster (the Secret the identities stage
//! keeps); or, for tests and out-of-cluster runs, at one fixed address with the identity of the
//! operator's own flags.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kubemail_proto::admin::admin_client::AdminClient;
use kubemail_runtime::identity::{self, Role, ServiceIdentity};
use tonic::transport::Channel;

use crate::build::cluster::names;
use crate::build::identity::identity_of;
use crate::cache::Caches;
use crate::{Error, Result};

/// How long one Admin call may take before the reconcile treats the mailstore as unavailable.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Every cluster's mailstore at one address.
#[derive(Clone)]
struct Fixed {
    url: String,
    identity: Option<Arc<ServiceIdentity>>,
}

/// Admin API clients, one channel per mailstore, made on first use and again when the
/// operator's identity for it is renewed.
#[derive(Clone, Default)]
pub struct Mailstores {
    fixed: Option<Fixed>,
    channels: Arc<Mutex<Channels>>,
}

/// By URL: the `resourceVersion` of the identity Secret the channel presents, and the channel.
type Channels = HashMap<String, (Option<String>, Channel)>;

/// A client of one mailstore's Admin API, and its address for messages.
pub struct Admin {
    pub url: String,
    pub client: AdminClient<Channel>,
}

impl Mailstores {
    /// Each MailCluster's mailstore at its Service, or all at `fixed` with `identity`.
    pub fn new(fixed: Option<String>, identity: Option<Arc<ServiceIdentity>>) -> Mailstores {
        Mailstores { fixed: fixed.map(|url| Fixed { url, identity }), channels: Arc::default() }
    }

    /// The Admin API address of the mailstore of the MailCluster `cluster` in `namespace`.
    pub fn url(&self, cluster: &str, namespace: &str) -> String {
        self.fixed.as_ref().map_or_else(|| names::admin_url(cluster, namespace), |fixed| fixed.url.clone())
    }

    /// The Admin API of the mailstore of the MailCluster `cluster` in `namespace`. It connects
    /// on its first call, so a mailstore that is down shows up as an UNAVAILABLE answer there.
    pub async fn admin(&self, client: &kube::Client, caches: &Caches, cluster: &str, namespace: &str) -> Result<Admin> {
        let url = self.url(cluster, namespace);
        let version = match &self.fixed {
            Some(_) => None,
            None => caches.secret_version(namespace, &names::identity_secret(cluster, Role::Operator)).await,
        };
        if let Some((made_with, channel)) = self.lock().get(&url)
            && *made_with == version
        {
            return Ok(Admin { client: AdminClient::new(channel.clone()), url });
        }
        let identity = match &self.fixed {
            Some(fixed) => fixed.identity.clone(),
            None => Some(operator_identity(client, cluster, namespace, &url).await?),
        };
        let unreachable = |message: String| Error::MailstoreUnreachable { url: url.clone(), message };
        let endpoint = identity::endpoint(&url, identity.as_ref()).map_err(|e| unreachable(e.to_string()))?;
        let channel = identity::channel_to(endpoint.timeout(CALL_TIMEOUT), identity.as_ref(), Role::Mailstore)
            .map_err(|e| unreachable(e.to_string()))?;
        self.lock().insert(url.clone(), (version, channel.clone()));
        Ok(Admin { client: AdminClient::new(channel), url })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Channels> {
        self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The operator's identity for `cluster`, from the Secret the cluster's reconcile keeps.
async fn operator_identity(
    client: &kube::Client,
    cluster: &str,
    namespace: &str,
    url: &str,
) -> Result<Arc<ServiceIdentity>> {
    let name = names::identity_secret(cluster, Role::Operator);
    let unreachable = |message: String| Error::MailstoreUnreachable { url: url.to_string(), message };
    let secret = Api::<Secret>::namespaced(client.clone(), namespace).get_opt(&name).await?;
    let issued = secret
        .as_ref()
        .and_then(identity_of)
        .ok_or_else(|| unreachable(format!("the operator's identity (Secret {name}) is not there yet")))?;
    ServiceIdentity::from_issued(Role::Operator, &issued).map_err(|e| unreachable(format!("Secret {name}: {e}")))
}

/// Whether `status` says the mailstore could not be reached or could not answer now, as
/// opposed to refusing the request: the reconcile then waits and retries.
pub fn unavailable(status: &tonic::Status) -> bool {
    matches!(status.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled)
}
