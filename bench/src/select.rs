//! SelectMailbox latency: one account's INBOX is filled to --messages messages (with Deliver,
//! several clients at once), then one client calls SelectMailbox --iterations times in a row.
//! One call returns every UID with its flags and MODSEQ, i.e. what an IMAP frontend needs for
//! SELECT followed by `FETCH 1:* (UID FLAGS)`; the time is the full call as the client sees it
//! (request, database, encoding, transfer, decoding).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use kubemail_proto::Message;
use kubemail_proto::mailstore::mail_store_client::MailStoreClient;
use kubemail_proto::mailstore::{SelectMailboxRequest, SelectMailboxResponse};
use serde_json::json;
use tonic::transport::Channel;

use crate::Target;
use crate::deliver::{connect_all, deliver_batch, unique_run_id};
use crate::message::MessageFactory;
use crate::setup;
use crate::stats::{Latencies, round3};

/// Untimed calls first, so the measured ones find the rows in PostgreSQL's buffer cache.
const WARMUP_CALLS: usize = 5;

#[derive(Debug, Args)]
pub struct SelectArgs {
    #[command(flatten)]
    target: Target,
    /// Messages the INBOX holds while timing; it is filled up to this count first.
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// Timed SelectMailbox calls.
    #[arg(long, default_value_t = 100)]
    iterations: usize,
    /// Size of the messages delivered by the fill, in octets.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Concurrent Deliver clients for the fill.
    #[arg(long, default_value_t = 8)]
    fill_clients: usize,
}

pub async fn run(args: SelectArgs) -> Result<()> {
    if args.messages == 0 || args.iterations == 0 || args.fill_clients == 0 {
        bail!("--messages, --iterations and --fill-clients must be at least 1");
    }
    let url = &args.target.mailstore;
    let channel = setup::connect(url).await?;
    let account = setup::accounts(setup::connect(&args.target.admin).await?, &args.target.domain, "select", 1)
        .await?
        .pop()
        .context("the benchmark account was not created")?;
    let mut client = setup::mailstore(channel);

    let present = select(&mut client, account.id).await?.uids.len();
    if present > args.messages {
        bail!(
            "{}'s INBOX already holds {present} messages, more than --messages; use a fresh database",
            account.address
        );
    }
    let missing = args.messages - present;
    let fill = if missing > 0 {
        eprintln!("select: filling {}'s INBOX with {missing} messages", account.address);
        let channels = connect_all(url, args.fill_clients).await?;
        let factory = Arc::new(MessageFactory::new(args.size));
        let batch =
            deliver_batch(&channels, std::slice::from_ref(&account.address), &factory, &unique_run_id(), missing)
                .await?;
        Some(batch.elapsed)
    } else {
        None
    };

    for _ in 0..WARMUP_CALLS {
        select(&mut client, account.id).await?;
    }
    let mut samples = Vec::with_capacity(args.iterations);
    let mut response_bytes = 0;
    for _ in 0..args.iterations {
        let started = Instant::now();
        let snapshot = select(&mut client, account.id).await?;
        samples.push(started.elapsed());
        if snapshot.uids.len() != args.messages || snapshot.flags.len() != args.messages {
            bail!(
                "SelectMailbox returned {} UIDs and {} flags, expected {}",
                snapshot.uids.len(),
                snapshot.flags.len(),
                args.messages
            );
        }
        response_bytes = snapshot.encoded_len();
    }
    let latencies = Latencies::new(samples);
    let (p50, p90, p99) = (latencies.percentile(50.0), latencies.percentile(90.0), latencies.percentile(99.0));
    println!(
        "{}",
        json!({
            "bench": "select", "messages": args.messages, "uids": args.messages, "iterations": args.iterations,
            "p50_ms": round3(p50), "p90_ms": round3(p90), "p99_ms": round3(p99),
            "mean_ms": round3(latencies.mean()), "min_ms": round3(latencies.percentile(0.0)),
            "response_bytes": response_bytes,
            "fill_messages": missing, "fill_seconds": fill.map(|d| round3(d.as_secs_f64())),
            "fill_per_s": fill.map(|d| round3(missing as f64 / d.as_secs_f64().max(f64::MIN_POSITIVE))),
        })
    );
    eprintln!(
        "select: {} iterations on {} messages: p50 {p50:.2} ms, p90 {p90:.2} ms, p99 {p99:.2} ms",
        args.iterations, args.messages
    );
    Ok(())
}

async fn select(client: &mut MailStoreClient<Channel>, account_id: i64) -> Result<SelectMailboxResponse> {
    let request = SelectMailboxRequest { account_id, name: "INBOX".to_string(), ..Default::default() };
    let response = client.select_mailbox(request).await.context("SelectMailbox INBOX")?;
    Ok(response.into_inner())
}
