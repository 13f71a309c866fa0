//! What the reconcilers read without asking the API server: the MailClusters and MailDomains
//! the controllers watch anyway, and the metadata (never the data) of Secrets, whose
//! `resourceVersion` tells a Mailbox whether its password changed. With them, a reconcile of
//! an object whose world did not change makes no API request at all.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};

use crate::controller::mailbox::domain_of;
use crate::crd::{MailCluster, MailDomain};

#[derive(Clone)]
pub struct Caches {
    pub clusters: Store<MailCluster>,
    pub domains: Store<MailDomain>,
    pub secrets: Store<PartialObjectMeta<Secret>>,
}

impl Caches {
    /// The MailCluster `name` of `namespace`, once the cache holds what the API server held.
    pub async fn cluster(&self, namespace: &str, name: &str) -> Option<Arc<MailCluster>> {
        ready(&self.clusters).await;
        self.clusters.get(&ObjectRef::new(name).within(namespace))
    }

    /// The MailDomains of `namespace`.
    pub async fn domains_in(&self, namespace: &str) -> Vec<Arc<MailDomain>> {
        ready(&self.domains).await;
        self.domains.state().into_iter().filter(|domain| domain.namespace().as_deref() == Some(namespace)).collect()
    }

    /// The MailDomain of `namespace` serving the domain of `address`.
    pub async fn domain_of_address(&self, namespace: &str, address: &str) -> Option<Arc<MailDomain>> {
        self.domains_in(namespace).await.into_iter().find(|domain| domain.spec.domain == domain_of(address))
    }

    /// The `resourceVersion` of the Secret `name` of `namespace`; `None` if there is none.
    pub async fn secret_version(&self, namespace: &str, name: &str) -> Option<String> {
        ready(&self.secrets).await;
        self.secrets.get(&ObjectRef::new(name).within(namespace)).and_then(|secret| secret.resource_version())
    }
}

/// Waits for `store`'s first complete list. Its writer lives as long as the controllers, which
/// are what run the reconciles asking, so an error (the writer gone) means they are stopping
/// and an empty answer does no harm.
async fn ready<K: kube::Resource + Clone>(store: &Store<K>)
where
    K::DynamicType: std::hash::Hash + Eq + Clone,
{
    let _ = store.wait_until_ready().await;
}
