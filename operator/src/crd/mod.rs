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
    vec![MailCluster::crd(), MailDomain::crd(), Mailbox::crd()]
}
