//! kubemail smtp-ingress: the ESMTP server for MX (25), submission (587) and submissions (465).
//! It accepts mail only after the body is in the spool and the envelope in the queue.
//!
//! - [`session`] — one SMTP connection: the state machine, one file per verb family.
//! - [`reply`] — replies with enhanced status codes.
//! - [`address`] — checks on envelope addresses.
//! - [`handoff`] — spool and queue: the durable hand-off behind every `250`.
//! - [`received`] — the Received trace header and RFC 5322 dates.
//! - [`tls`] — TLS server configurations, self-signed certificates.

pub mod address;
pub mod handoff;
pub mod received;
pub mod reply;
pub mod session;
pub mod tls;
