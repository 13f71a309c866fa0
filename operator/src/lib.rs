//! The kubemail operator: reconciles `MailCluster`, `MailDomain` and `Mailbox` resources into a
//! running mail platform.
//!
//! - [`build`] — pure functions from a resource to the objects it should become.
//! - [`crd`] — the custom resource types; `crdgen` writes their CRDs into `crds/`.
//! - [`keys`] — DKIM keys and their DNS records; self-signed certificates.
//! - [`error`] — the operator's errors.
//! - [`quantity`] — byte sizes written as Kubernetes quantities.

pub mod build;
pub mod crd;
pub mod error;
pub mod keys;
pub mod quantity;

pub use error::{Error, Result};
