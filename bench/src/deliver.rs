//! Deliver throughput: C workers, each on its own gRPC connection (like separate delivery-queue
//! replicas), deliver N messages round-robin over A accounts, each message with a unique queue
//! message id so none is deduplicated. Throughput is N / wall time of the run; latency is per
//! Deliver call, from the first chunk sent to the response.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Args;
use kubemail_proto::mailstore::deliver_chunk::Part;
use kubemail_proto::mailstore::{DeliverChunk, DeliverHeader};
use serde_json::json;
use tonic::transport::Channel;

use crate::Target;
use crate::message::MessageFactory;
use crate::setup;
use crate::stats::{Latencies, median, round3};

/// Body chunk size on the wire: the API's limit for one chunk (64 KiB).
const CHUNK_SIZE: usize = 64 * 1024;
/// Untimed deliveries per client before the first run: connections, prepared statements and
/// caches are warm when timing starts.
const WARMUP_PER_CLIENT: usize = 10;

#[derive(Debug, Args)]
pub struct DeliverArgs {
    #[command(flatten)]
    target: Target,
    /// Concurrent clients, each with its own gRPC connection.
    #[arg(long, default_value_t = 1)]
    clients: usize,
    /// Messages delivered per run.
    #[arg(long, default_value_t = 1000)]
    messages: usize,
    /// Message size in octets, header included.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Recipient accounts (`deliver1@DOMAIN` …), used round-robin.
    #[arg(long, default_value_t = 50)]
    accounts: usize,
    /// Timed runs; each delivers --messages new messages.
    #[arg(long, default_value_t = 1)]
    runs: usize,
}

/// What one batch of deliveries took.
pub struct Batch {
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    pub bytes: u64,
}

pub async fn run(args: DeliverArgs) -> Result<()> {
    if args.clients == 0 || args.messages == 0 || args.accounts == 0 || args.runs == 0 {
        bail!("--clients, --messages, --accounts and --runs must be at least 1");
    }
    let url = &args.target.mailstore;
    let admin = setup::connect(&args.target.admin).await?;
    let accounts = setup::accounts(admin, &args.target.domain, "deliver", args.accounts).await?;
    let recipients: Vec<String> = accounts.into_iter().map(|a| a.address).collect();
    let channels = connect_all(url, args.clients).await?;
    let factory = Arc::new(MessageFactory::new(args.size));
    let run_id = unique_run_id();

    deliver_batch(&channels, &recipients, &factory, &format!("{run_id}-warmup"), args.clients * WARMUP_PER_CLIENT)
        .await?;
    let mut rates = Vec::with_capacity(args.runs);
    let (mut p50s, mut p99s) = (Vec::with_capacity(args.runs), Vec::with_capacity(args.runs));
    for run in 1..=args.runs {
        let batch = deliver_batch(&channels, &recipients, &factory, &format!("{run_id}-r{run}"), args.messages).await?;
        let seconds = batch.elapsed.as_secs_f64();
        let rate = args.messages as f64 / seconds;
        let latencies = Latencies::new(batch.latencies);
        let (p50, p99) = (latencies.percentile(50.0), latencies.percentile(99.0));
        println!(
            "{}",
            json!({
                "bench": "deliver", "run": run, "clients": args.clients, "size": args.size,
                "mean_message_bytes": batch.bytes / args.messages as u64, "accounts": args.accounts,
                "messages": args.messages, "seconds": round3(seconds), "deliveries_per_s": round3(rate),
                "p50_ms": round3(p50), "p99_ms": round3(p99), "mean_ms": round3(latencies.mean()),
            })
        );
        eprintln!(
            "deliver run {run}: {} × {} B, {} clients: {rate:.0}/s, p50 {p50:.2} ms, p99 {p99:.2} ms",
            args.messages, args.size, args.clients
        );
        rates.push(rate);
        p50s.push(p50);
        p99s.push(p99);
    }
    println!(
        "{}",
        json!({
            "bench": "deliver-summary", "clients": args.clients, "size": args.size, "accounts": args.accounts,
            "messages": args.messages, "runs": args.runs, "median_deliveries_per_s": round3(median(&rates)),
            "median_p50_ms": round3(median(&p50s)), "median_p99_ms": round3(median(&p99s)),
        })
    );
    Ok(())
}

/// One connection per client.
pub async fn connect_all(url: &str, clients: usize) -> Result<Vec<Channel>> {
    let mut channels = Vec::with_capacity(clients);
    for _ in 0..clients {
        channels.push(setup::connect(url).await?);
    }
    Ok(channels)
}

/// A prefix for queue message ids that no earlier run against the same database used: the
/// mailstore answers a repeated (queue message id, recipient) as a duplicate without storing.
pub fn unique_run_id() -> String {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    format!("bench-{millis}-{}", std::process::id())
}

/// Delivers `count` messages over `channels` (one worker per channel), message `i` to
/// `recipients[i % len]` with queue message id `{tag}-{i}`. Fails on the first refused delivery
/// or on a duplicate, since either means the run did not measure storing new mail.
pub async fn deliver_batch(
    channels: &[Channel],
    recipients: &[String],
    factory: &Arc<MessageFactory>,
    tag: &str,
    count: usize,
) -> Result<Batch> {
    let next = Arc::new(AtomicUsize::new(0));
    let recipients = Arc::new(recipients.to_vec());
    let started = Instant::now();
    let workers: Vec<_> = channels
        .iter()
        .map(|channel| {
            let (channel, next, recipients) = (channel.clone(), next.clone(), recipients.clone());
            let (factory, tag) = (factory.clone(), tag.to_string());
            // Spawned, not joined in place, so workers spread over the runtime's threads.
            tokio::spawn(async move { worker(channel, &factory, &recipients, &tag, &next, count).await })
        })
        .collect();
    let mut batch = Batch { elapsed: Duration::ZERO, latencies: Vec::with_capacity(count), bytes: 0 };
    for joined in futures::future::join_all(workers).await {
        let (latencies, bytes) = joined.context("delivery worker panicked")??;
        batch.latencies.extend(latencies);
        batch.bytes += bytes;
    }
    batch.elapsed = started.elapsed();
    Ok(batch)
}

/// Takes message indexes from `next` until `count` are taken; returns per-call latencies and
/// the octets delivered.
async fn worker(
    channel: Channel,
    factory: &MessageFactory,
    recipients: &[String],
    tag: &str,
    next: &AtomicUsize,
    count: usize,
) -> Result<(Vec<Duration>, u64)> {
    let mut client = setup::mailstore(channel);
    let (mut latencies, mut bytes) = (Vec::new(), 0);
    loop {
        let index = next.fetch_add(1, Ordering::Relaxed);
        if index >= count {
            return Ok((latencies, bytes));
        }
        let recipient = &recipients[index % recipients.len()];
        let message = factory.message(tag, index, recipient);
        bytes += message.len() as u64;
        let header = DeliverHeader {
            queue_message_id: format!("{tag}-{index}"),
            recipient: recipient.clone(),
            mailbox: String::new(),
            internal_date: 0,
            size: message.len() as u64,
        };
        let mut chunks = Vec::with_capacity(2 + message.len() / CHUNK_SIZE);
        chunks.push(DeliverChunk { part: Some(Part::Header(header)) });
        chunks.extend(message.chunks(CHUNK_SIZE).map(|data| DeliverChunk { part: Some(Part::Data(data.to_vec())) }));
        let started = Instant::now();
        let response = client
            .deliver(tokio_stream::iter(chunks))
            .await
            .with_context(|| format!("delivering message {index} to {recipient}"))?
            .into_inner();
        latencies.push(started.elapsed());
        if response.duplicate {
            bail!("message {tag}-{index} to {recipient} was answered as a duplicate; nothing was stored");
        }
    }
}
