//! The kubemail operator: reconciles `MailCluster`, `MailDomain` and `Mailbox` resources into a
//! running mail platform.
//!
//! - [`run`] — the process: admin endpoint, leader election, controllers while leading.
//! - [`config`] — its flags.
//! - [`controller`] — the three reconcilers and the watches that wake them; each reconcile
//!   runs the stages below in order.
//! - [`build`] — pure functions from a resource to the objects it should become.
//! - [`apply`] — server-side apply of what was built.
//! - [`status`] — conditions and the status patch.
//! - [`context`] — what the reconcilers share: settings, API client, caches, mailstore
//!   clients, events, retries.
//! - [`cache`] — the clusters, domains and Secret versions the reconcilers read without asking
//!   the API server.
//! - [`mailstore`] — the mailstore Admin API clients.
//! - [`crd`] — the custom resource types; `crdgen` writes their CRDs into `crds/`.
//! - [`generated`] — the committed files generated from the code (CRDs, ClusterRole).
//! - [`rbac`] — the permissions the operator needs; `crdgen` writes its ClusterRole.
//! - [`keys`] — DKIM keys and their DNS records; self-signed certificates.
//! - [`error`] — the operator's errors.
//! - [`quantity`] — byte sizes written as Kubernetes quantities.

pub mod apply;
pub mod build;
pub mod cache;
pub mod config;
pub mod context;
pub mod controller;
pub mod crd;
pub mod error;
pub mod generated;
pub mod keys;
pub mod mailstore;
pub mod quantity;
pub mod rbac;
pub mod run;
pub mod status;

pub use error::{Error, Result};
