//! The build stage: pure functions from a custom resource (and what it refers to) to the
//! Kubernetes objects it should become. Nothing here talks to the API server.
//!
//! - [`cluster`] — a MailCluster's Deployments, Services, autoscaler, disruption budgets and
//!   settings.
//! - [`domain`] — a MailDomain's certificate, DKIM key Secret and DNS records.
//! - [`identity`] — a MailCluster's CA and the identity Secret of each component.
//! - [`network`] — a MailCluster's NetworkPolicies.

pub mod cluster;
pub mod domain;
pub mod identity;
pub mod network;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;

use cluster::Component;

/// The field manager of every server-side apply, and the `managed-by` label.
pub const MANAGER: &str = "kubemail-operator";

/// The recommended labels (`app.kubernetes.io/…`) of the objects of the MailCluster named
/// `cluster`; with a component, those of that component's.
pub fn labels(cluster: &str, component: Option<Component>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "kubemail".to_string()),
        ("app.kubernetes.io/instance".to_string(), cluster.to_string()),
        ("app.kubernetes.io/managed-by".to_string(), MANAGER.to_string()),
    ]);
    if let Some(component) = component {
        labels.insert("app.kubernetes.io/component".to_string(), component.name().to_string());
    }
    labels
}

/// Metadata of an object `owner` controls: same namespace, and an owner reference so it goes
/// when the owner goes and its changes wake the owner's reconciler.
pub fn owned_meta<K: Resource<DynamicType = ()>>(
    owner: &K,
    name: String,
    labels: BTreeMap<String, String>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: owner.meta().namespace.clone(),
        labels: Some(labels),
        owner_references: owner.controller_owner_ref(&()).map(|reference| vec![reference]),
        ..Default::default()
    }
}
