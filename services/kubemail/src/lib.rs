//! The all-in-one `kubemail` binary.
//!
//! - [`cli`] — the command line: every flag of `kubemail dev` and `kubemail admin`.
//! - [`dev`] — `kubemail dev`: the services in one process, on SQLite and the local transports.
//! - [`admin`] — `kubemail admin`: domains, mailboxes and aliases through the Admin gRPC API.

pub mod admin;
pub mod cli;
pub mod dev;
