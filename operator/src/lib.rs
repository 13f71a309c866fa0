//! The kubemail operator: reconciles `MailCluster`, `MailDomain` and `Mailbox` resources into a
//! running mail platform.
//!
//! - [`build`] — pure functions from a resource to the objects it should become.
//! - [`crd`] — the custom resource types; `crdgen` writes their CRDs into `crds/`.
//! - [`quantity`] — byte sizes written as Kubernetes quantities.

pub mod build;
pub mod crd;
pub mod quantity;
