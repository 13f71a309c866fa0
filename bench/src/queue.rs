//! The delivery benchmark's load: envelopes and bodies queued on NATS as smtp-ingress queues
//! them, and the wait until delivery workers have drained them.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Args;
use futures::StreamExt as _;
use kubemail_proto::Message as _;
use kubemail_proto::queue::{Envelope, Recipient};
use kubemail_runtime::nats::{NatsConfig, NatsTransport};
use kubemail_runtime::{Headers, Queue, QueueMessage, Spool};

use crate::Target;
use crate::message::MessageFactory;
use crate::setup;

/// How many publishes are in flight at once while loading.
const LOAD_CONCURRENCY: usize = 64;

#[derive(Debug, Args)]
pub struct LoadArgs {
    #[command(flatten)]
    target: Target,
    /// The NATS server the services use.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// Body size in octets.
    #[arg(long, default_value_t = 4096)]
    size: usize,
    /// Recipients `{prefix}1@{domain}` … `{prefix}{accounts}@{domain}`, round-robin.
    #[arg(long, default_value_t = 50)]
    accounts: usize,
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// Distinguishes the queue ids of one run from another's.
    #[arg(long)]
    run: String,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Messages expected to be delivered (for the rate).
    #[arg(long)]
    messages: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    #[arg(long, default_value = "")]
    label: String,
}

/// Queues `messages` envelopes with their bodies; prints one JSON line.
pub async fn load(args: LoadArgs) -> Result<()> {
    let admin = setup::connect(&args.target.admin).await?;
    let accounts = setup::accounts(admin, &args.target.domain, &args.prefix, args.accounts.max(1)).await?;
    let transport = connect(&args.nats_url).await?;
    let factory = MessageFactory::new(args.size);
    let started = Instant::now();
    let publishes = (0..args.messages).map(|n| {
        let transport = transport.clone();
        let recipient = accounts[n % accounts.len()].address.clone();
        let id = format!("bench-{}-{n:06}", args.run);
        let body = factory.message(&args.run, n, &recipient);
        let size = body.len();
        async move {
            transport.spool.put(&id, Bytes::from(body)).await.context("spool put")?;
            let envelope = Envelope {
                id: id.clone(),
                mail_from: "loadgen@example.org".into(),
                recipients: vec![Recipient { address: recipient, local: true, ..Default::default() }],
                size: size as u64,
                received_at: kubemail_runtime::clock::unix_now(),
                ..Default::default()
            };
            let message = QueueMessage { id, payload: envelope.encode_to_vec().into(), headers: Headers::new() };
            transport.queue.publish(message).await.context("queue publish")?;
            anyhow::Ok(())
        }
    });
    let mut stream = futures::stream::iter(publishes).buffer_unordered(LOAD_CONCURRENCY);
    while let Some(result) = stream.next().await {
        result?;
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("queued {} messages of {} octets in {seconds:.2} s", args.messages, args.size);
    println!(
        "{}",
        serde_json::json!({"mode": "queue-load", "messages": args.messages, "size": args.size, "seconds": seconds})
    );
    Ok(())
}

/// Waits until the queue and the spool are empty; prints one JSON line with the rate since
/// this command started.
pub async fn drain(args: DrainArgs) -> Result<()> {
    let transport = connect(&args.nats_url).await?;
    let jetstream = async_nats::jetstream::new(transport.client.clone());
    let config = NatsConfig::default();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout);
    loop {
        let queued = jetstream.get_stream(&config.stream).await?.info().await?.state.messages;
        let spooled = jetstream.get_stream(&config.spool_stream).await?.info().await?.state.messages;
        if queued == 0 && spooled == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{queued} envelopes and {spooled} bodies still queued after {} s", args.timeout);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let rate = args.messages as f64 / seconds;
    eprintln!("[{}] {} messages delivered in {seconds:.2} s = {rate:.0}/s", args.label, args.messages);
    println!(
        "{}",
        serde_json::json!({"mode": "queue-drain", "label": args.label, "messages": args.messages,
                           "seconds": seconds, "msgs_per_s": rate})
    );
    Ok(())
}

async fn connect(url: &str) -> Result<NatsTransport> {
    NatsTransport::connect(&NatsConfig { url: url.to_string(), ..Default::default() })
        .await
        .with_context(|| format!("NATS at {url}"))
}
