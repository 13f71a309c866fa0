//! `kubemail dev`: the platform in one process, for a laptop. The mailstore runs on SQLite in
//! the data directory; the queue, spool and event bus are the local implementations on a
//! second SQLite file. The services use the same code paths as in production.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use kubemail_mailstore::{Db, Limits};
use kubemail_runtime::admin_http::{self, Readiness};
use kubemail_runtime::local::{LocalConfig, LocalTransport};
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::{EventBus, telemetry};
use std::sync::Arc;
use tokio::net::TcpListener;

use crate::cli::DevArgs;

/// How long deliveries are remembered for idempotent redelivery: longer than the queue keeps
/// retrying a message.
const DELIVERY_RECORD_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// SQLite connections for mailstore reads; writes always use one connection.
const MAILSTORE_READERS: u32 = 4;

/// Runs until SIGTERM or SIGINT.
pub async fn run(args: DevArgs) -> Result<()> {
    let _telemetry = telemetry::init("kubemail")?;
    let shutdown = Shutdown::on_signal()?;
    run_until(args, shutdown).await
}

/// Runs until `shutdown` is triggered; every listener is bound before anything is served, so a
/// taken port fails the start with its flag's name.
pub async fn run_until(args: DevArgs, shutdown: Shutdown) -> Result<()> {
    let readiness = Readiness::new();
    let mailstore_ready = readiness.component("mailstore");
    let data_dir = &args.data_dir;
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating the data directory {}", data_dir.display()))?;

    let grpc = bind(args.grpc_listen, "--grpc-listen").await?;
    let http = bind(args.http_listen, "--http-listen").await?;
    let http_server = tokio::spawn(admin_http::serve(http, readiness.clone(), shutdown.wait()));

    let transport = LocalTransport::open(&LocalConfig::new(data_dir.join("queue.db")))
        .await
        .context("opening the local queue and spool")?;
    let db = open_mailstore(data_dir).await?;
    let events: Arc<dyn EventBus> = Arc::new(transport.events.clone());
    let store = kubemail_mailstore::store(db, events, Limits { max_message_size: args.max_message_size });
    tokio::spawn(kubemail_mailstore::maintain(store.clone(), DELIVERY_RECORD_RETENTION, shutdown.wait()));
    mailstore_ready.set_ready(true);
    tracing::info!(
        grpc = %args.grpc_listen,
        http = %args.http_listen,
        data_dir = %data_dir.display(),
        "kubemail dev is ready"
    );
    kubemail_mailstore::serve(store, grpc, shutdown.wait()).await.context("mailstore gRPC server")?;
    http_server.await.context("admin HTTP task")?.context("admin HTTP server")?;
    Ok(())
}

async fn open_mailstore(data_dir: &Path) -> Result<Db> {
    let path = data_dir.join("mailstore.db");
    Db::open_sqlite(&path, MAILSTORE_READERS)
        .await
        .with_context(|| format!("opening the mailstore database {}", path.display()))
}

async fn bind(address: std::net::SocketAddr, flag: &str) -> Result<TcpListener> {
    TcpListener::bind(address).await.with_context(|| format!("cannot listen on {address} ({flag})"))
}
