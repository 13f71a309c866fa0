//! `mailstore-bench`: load generator for a running mailstore, over its public gRPC API only.
//!
//! - [`deliver`] — Deliver throughput: C workers, each on its own gRPC channel like separate
//!   delivery-queue replicas, store N messages round-robin over A accounts.
//! - [`select`] — SelectMailbox latency on a 10,000-message INBOX (every UID and its flags: what
//!   IMAP SELECT + `FETCH 1:* (UID FLAGS)` needs).
//! - [`setup`] — connections, and the domain and accounts created through the Admin API.
//! - [`message`] — realistic RFC 5322 messages of a requested size.
//! - [`stats`] — percentiles and medians.
//!
//! Every result is one JSON line on standard output; progress goes to standard error. Loops are
//! bounded by the message and iteration counts given on the command line.

mod deliver;
mod message;
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
}

/// Where the mailstore is and which domain the benchmark accounts live in.
#[derive(Debug, Args)]
struct Target {
    /// The mailstore's gRPC address (MailStore and Admin services).
    #[arg(long, default_value = "http://127.0.0.1:7070")]
    mailstore: String,
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
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mailstore-bench: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
