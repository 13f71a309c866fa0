//! The custom resources (group `kubemail.io`, version `v1alpha1`) and what they share.

// kube-derive repeats `type_ = …` once per printer column, which clippy takes for a duplicate.
#![allow(clippy::duplicated_attributes)]

pub mod cluster;
pub mod common;
pub mod domain;
pub mod mailbox;

pub use cluster::{MailCluster, MailClusterSpec, MailClusterStatus};
pub use domain::{MailDomain, MailDomainSpec, MailDomainStatus};
pub use mailbox::{Mailbox, MailboxSpec, MailboxStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD the operator serves, in the order `crdgen` writes them.
pub fn all() -> Vec<CustomResourceDefinition> {
    [MailCluster::crd(), MailDomain::crd(), Mailbox::crd()].into_iter().map(with_kubernetes_formats).collect()
}

/// `crd` with the integer formats schemars writes for unsigned Rust types (`uint32`, `uint64`)
/// as the API server knows them: it warns about every format it does not recognise at each
/// install. The `minimum: 0` beside them keeps the values unsigned.
fn with_kubernetes_formats(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn rewrite(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(format)) = map.get_mut("format") {
                    match format.as_str() {
                        "uint8" | "uint16" => *format = "int32".to_string(),
                        "uint32" | "uint64" => *format = "int64".to_string(),
                        _ => {}
                    }
                }
                map.values_mut().for_each(rewrite);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(rewrite),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(&crd).expect("a CRD serialises");
    rewrite(&mut value);
    serde_json::from_value(value).expect("a CRD with rewritten formats deserialises")
}
