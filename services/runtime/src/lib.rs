//! Plumbing shared by every kubemail service.
//!
//! - [`error`] — the crate's error type.
//! - [`clock`] — Unix seconds and RFC 5322 dates.
//! - [`config`] — parsing helpers for flags and environment variables (sizes, durations).
//! - [`deployment`] — the deployment contract: the environment variables, mount paths and
//!   file names the operator writes and the services read.
//! - [`service`] — what the mail services share in starting: their common flags (name,
//!   health endpoint, mailstore, NATS, identity) and the startup error.
//! - [`telemetry`] — `tracing` setup (text or JSON logs), OpenTelemetry export over OTLP when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//! - [`propagation`] — W3C trace context in and out of gRPC metadata and NATS / queue headers.
//! - [`admin_http`] — the admin HTTP endpoint: `/healthz`, `/readyz`, `/metrics`; the
//!   `Readiness` registry and the Prometheus metrics recorder.
//! - [`grpc_metrics`] — request counts and durations of gRPC servers, as a tower layer.
//! - [`identity`] — service identity between kubemail's parts: mutual TLS for gRPC, one
//!   certificate per role from the deployment's CA, renewed without a restart.
//! - [`shutdown`] — a future that completes on SIGTERM or SIGINT, and the `Shutdown` handle that
//!   fans one shutdown out to many tasks.
//! - [`spool`], [`queue`], [`events`] — the `Spool`, `Queue` and `EventBus` traits that carry
//!   mail between services.
//! - [`nats`] — their NATS JetStream implementations (production).
//! - [`tls`], [`proxy`], [`limits`] — what the mail listeners (SMTP, IMAP) share: certificates
//!   per domain chosen by SNI and reloaded on change; the PROXY protocol from trusted load
//!   balancers; connections per client address, at once and per minute. `tls::Connection` is
//!   a session's stream, plain or TLS, with the STARTTLS upgrade.
//! - [`line_io`] — a text protocol's connection read in bounded lines with deadlines, replies
//!   written when the client waits, and the STARTTLS upgrade (SMTP, POP3).
//! - [`listener`] — accept loops for those listeners: PROXY header, limits, implicit TLS, one
//!   task per session, and waiting for the sessions at shutdown.
//! - [`login_cache`] — successful logins remembered briefly under an HMAC of the credentials,
//!   forgotten when the mailstore says the account changed.
//! - [`local`] — their SQLite + in-process implementations (`kubemail dev`).
//! - [`pools`] — database connection pools checked only when they have been idle.
//! - `contract` (private) — what both implementations accept and promise alike: subject, header
//!   and id rules, NATS wildcard matching, default lease and deduplication window.

pub mod admin_http;
pub mod clock;
pub mod config;
mod contract;
pub mod deployment;
pub mod error;
pub mod events;
pub mod grpc_metrics;
pub mod identity;
pub mod limits;
pub mod line_io;
pub mod listener;
pub mod local;
pub mod login_cache;
pub mod nats;
pub mod pools;
pub mod propagation;
pub mod proxy;
pub mod queue;
pub mod service;
pub mod shutdown;
pub mod spool;
pub mod telemetry;
pub mod tls;

pub use error::{Error, Result};
pub use events::{Event, EventBus, EventStream};
pub use queue::{DeadLetter, Lease, Published, Queue, QueueMessage};
pub use spool::Spool;

/// Headers that travel with queue messages and events (trace context among them).
pub type Headers = std::collections::BTreeMap<String, String>;
