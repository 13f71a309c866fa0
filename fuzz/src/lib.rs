//! Fuzzing harnesses. Each takes arbitrary bytes, runs the real code on them and checks what a
//! client would notice: no panic, no hang, and answers that keep the protocol's framing. The
//! libFuzzer targets in `fuzz_targets/` call them (`cargo fuzz`, README "Fuzzing"), and
//! `tests/replay.rs` runs the seeds and every input a fuzzer ever found through them.
//!
//! - [`smtp`] — an SMTP session (MX or submission) fed the input as its client.
//! - [`imap`] — an IMAP session fed the input as its client, over a mailbox with mail in it.
//! - [`mime`] — ENVELOPE, BODYSTRUCTURE and body sections of the input as a message.
//! - [`wire`] — the framing checks on what the servers send back.
//! - `backend` — the real mailstore and local queue the sessions run against.

mod backend;
pub mod imap;
pub mod mime;
pub mod smtp;
pub mod wire;
