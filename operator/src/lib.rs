//! The kubemail operator: reconciles `MailCluster`, `MailDomain` and `Mailbox` resources into a
//! running mail platform.
//!
//! - [`crd`] — the custom resource types; `crdgen` writes their CRDs into `crds/`.
//! - [`quantity`] — byte sizes written as Kubernetes quantities.

pub mod crd;
pub mod quantity;
