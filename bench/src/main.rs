//! `mailstore-bench`: load generator for a running mailstore, over its public gRPC API only, and
//! for the delivery queue on NATS.
//!
//! - [`deliver`] — Deliver throughput: C workers, each on its own gRPC channel like separate
//!   delivery-queue replicas, store N messages round-robin over A accounts.
//! - [`queue`] — envelopes and bodies queued on NATS as smtp-ingress queues them, and the wait
//!   until delivery workers drained them.
//! - [`mailbox`] — wait until a mailbox holds N messages, and empty it (pipeline benchmark hooks).
//! - [`select`] — SelectMailbox latency on a 10,000-message INBOX (every UID and its flags: what
//!   IMAP SELECT + `FETCH 1:* (UID FLAGS)` needs).
//! - [`setup`] — connections, and the domain and accounts created through the Admin API.
//! - [`message`] — realistic RFC 5322 messages of a requested size.
//! - [`stats`] — percentiles and medians.
//!
//! Every result is one JSON line on standard output; progress goes to standard error. Loops are
//! bounded by the message and iteration counts given on the command line.

mod deliver;
mod mailbox;
mod message;
mod queue;
mod select;
mod setup;
mod stats;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "mailstore-bench", about = "Load benchmarks against a running kubemail mailstore")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Deliver throughput and latency: one JSON line per run, then a summary line with medians.
    Deliver(deliver::DeliverArgs),
    /// SelectMailbox latency on one account's INBOX, filled first to --messages messages.
    Select(select::SelectArgs),
    /// Queues envelopes and bodies on NATS for local recipients.
    QueueLoad(queue::LoadArgs),
    /// Waits until the queue and the spool on NATS are empty; prints the delivery rate.
    QueueDrain(queue::DrainArgs),
    /// Waits until an INBOX holds --count messages.
    WaitCount(mailbox::MailboxArgs),
    /// Removes every message from an INBOX.
    Clear(mailbox::MailboxArgs),
}

/// Where the mailstore is and which domain the benchmark accounts live in.
#[derive(Debug, Args)]
struct Target {
    /// The mailstore's MailStore API.
    #[arg(long, default_value = "http://127.0.0.1:7070")]
    mailstore: String,
    /// The mailstore's Admin API, where the benchmark makes its accounts.
    #[arg(long, default_value = "http://127.0.0.1:7071")]
    admin: String,
    /// Domain created for the benchmark accounts.
    #[arg(long, default_value = "bench.test")]
    domain: String,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Deliver(args) => deliver::run(args).await,
        Command::Select(args) => select::run(args).await,
        Command::QueueLoad(args) => queue::load(args).await,
        Command::QueueDrain(args) => queue::drain(args).await,
        Command::WaitCount(args) => mailbox::wait_count(args).await,
        Command::Clear(args) => mailbox::clear(args).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mailstore-bench: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
