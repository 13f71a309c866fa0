//! `kubemail dev`: the platform in one process, for a laptop. The mailstore runs on SQLite in
//! the data directory; the queue, spool and event bus are the local implementations on a
//! second SQLite file; smtp-ingress hands mail to them, delivery-queue takes it from there, and
//! imap-frontend serves the mailboxes.
//! The services use the same code paths as in production.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use kubemail_delivery_queue::Connections;
use kubemail_imap_frontend::snapshots::{self, SnapshotCache};
use kubemail_mailstore::{Db, GrpcListeners, GrpcOptions, Limits};
use kubemail_runtime::admin_http::{self, Readiness};
use kubemail_runtime::limits::{AuthFailures, ConnectionTracker};
use kubemail_runtime::listener;
use kubemail_runtime::local::{LocalConfig, LocalTransport};
use kubemail_runtime::login_cache::LoginCache;
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::tls;
use kubemail_runtime::{EventBus, telemetry};
use kubemail_smtp_ingress::directory::Directory;
use kubemail_smtp_ingress::handoff::Handoff;
use kubemail_smtp_ingress::server::{Admission, Listeners};
use kubemail_smtp_ingress::session::Services;
use tokio::net::TcpListener;
use tonic::transport::Endpoint;

use crate::cli::DevArgs;

/// How long deliveries are remembered for idempotent redelivery: longer than the queue keeps
/// retrying a message.
const DELIVERY_RECORD_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// SQLite connections for mailstore reads; writes always use one connection.
const MAILSTORE_READERS: u32 = 4;

/// Room above the SMTP size limit for the headers added on the way (Received and the like), so
/// every message SMTP accepts also fits the mailstore.
const HEADER_HEADROOM: u64 = 64 * 1024;

/// How often certificate files are checked for changes.
const TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(30);

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
    let smtp_ready = readiness.component("smtp-ingress");
    let delivery_ready = readiness.component("delivery-queue");
    let imap_ready = readiness.component("imap-frontend");
    let data_dir = &args.data_dir;
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating the data directory {}", data_dir.display()))?;

    let grpc = GrpcListeners {
        mailstore: bind(args.grpc_listen, "--grpc-listen").await?,
        admin: bind(args.admin_grpc_listen, "--admin-grpc-listen").await?,
    };
    let http = bind(args.http_listen, "--http-listen").await?;
    let smtp = Listeners::bind(args.smtp_listen, args.submission_listen, Some(args.submissions_listen)).await?;
    let imap = kubemail_imap_frontend::server::Listeners {
        imap: listener::bind(args.imap_listen, "--imap-listen").await.map_err(anyhow::Error::msg)?,
        imaps: Some(listener::bind(args.imaps_listen, "--imaps-listen").await.map_err(anyhow::Error::msg)?),
        pop3: Some(listener::bind(args.pop3_listen, "--pop3-listen").await.map_err(anyhow::Error::msg)?),
        pop3s: Some(listener::bind(args.pop3s_listen, "--pop3s-listen").await.map_err(anyhow::Error::msg)?),
    };
    let http_server = tokio::spawn(admin_http::serve(http, readiness.clone(), shutdown.wait()));

    let queue_config = LocalConfig::new(data_dir.join("queue.db"));
    let transport = LocalTransport::open(&queue_config).await.context("opening the local queue and spool")?;
    let db = open_mailstore(data_dir).await?;
    let events: Arc<dyn EventBus> = Arc::new(transport.events.clone());
    let max_stored = args.limits.max_message_size + HEADER_HEADROOM;
    let store = kubemail_mailstore::store(db, events.clone(), Limits { max_message_size: max_stored });
    tokio::spawn(kubemail_mailstore::maintain(store.clone(), DELIVERY_RECORD_RETENTION, shutdown.wait()));
    let grpc_address = grpc.mailstore.local_addr().context("the gRPC listener's address")?;
    // One process on a laptop: its parts call each other over loopback without identities.
    let mailstore_server =
        tokio::spawn(kubemail_mailstore::serve(store, grpc, GrpcOptions::without_identity(), shutdown.clone()));
    mailstore_ready.set_ready(true);

    let tls_dir = match &args.tls_dir {
        Some(dir) => dir.clone(),
        None => self_signed_dir(data_dir, &args.hostname)?,
    };
    let tls_acceptor = tls::ServerTls::from_dir(&tls_dir, TLS_RELOAD_INTERVAL, &shutdown)?;
    let channel =
        Endpoint::from_shared(format!("http://{grpc_address}")).context("the mailstore address")?.connect_lazy();
    // One count of failed logins per client address for SMTP AUTH and IMAP alike.
    let auth_failures = AuthFailures::new();
    let services = Arc::new(Services {
        mailstore: kubemail_smtp_ingress::mailstore_client(channel.clone()),
        // One process on a laptop: a lookup is cheap and a new mailbox should work at once.
        directory: Directory::new(kubemail_smtp_ingress::mailstore_client(channel.clone()), Duration::ZERO),
        handoff: Handoff::new(
            Arc::new(transport.spool.clone()),
            Arc::new(transport.queue.clone()),
            args.limits.handoff_timeout,
        ),
        tls: Some(tls_acceptor.clone()),
        settings: args.limits.settings(&args.hostname),
        auth_failures: auth_failures.clone(),
        // The laptop platform checks no DNS: mail to it comes from its developer.
        verifier: None,
        shutdown: shutdown.clone(),
    });
    let admission = Arc::new(Admission::new(ConnectionTracker::new(args.limits.connections()), Vec::new()));
    let smtp_server = tokio::spawn(kubemail_smtp_ingress::server::serve(smtp, services, admission));
    smtp_ready.set_ready(true);

    let imap_settings = args.imap.settings(
        &args.hostname,
        args.limits.max_message_size,
        args.limits.max_auth_failures,
        args.limits.max_errors,
    );
    let imap_services = Arc::new(kubemail_imap_frontend::session::Services {
        mailstore: kubemail_imap_frontend::mailstore_client(channel.clone()),
        logins: LoginCache::start(args.imap.login_cache_ttl, events.clone(), shutdown.clone()),
        auth_failures: auth_failures.clone(),
        snapshots: SnapshotCache::new(args.imap.select_cache_messages, snapshots::MIN_MESSAGES),
        events: events.clone(),
        tls: Some(tls_acceptor),
        settings: imap_settings,
        shutdown: shutdown.clone(),
    });
    let imap_admission = Arc::new(Admission::new(ConnectionTracker::new(args.limits.connections()), Vec::new()));
    let imap_server = tokio::spawn(kubemail_imap_frontend::server::serve(imap, imap_services, imap_admission));
    imap_ready.set_ready(true);

    let connections = Connections {
        queue: Arc::new(transport.queue.clone()),
        spool: Arc::new(transport.spool.clone()),
        mailstore: kubemail_delivery_queue::mailstore_client(channel),
        outbound: Some(Arc::new(kubemail_delivery_queue::outbound(&args.delivery, &args.hostname)?)),
    };
    let worker = kubemail_delivery_queue::worker(connections, &args.delivery, &args.hostname, queue_config.lease);
    let delivery = tokio::spawn(Arc::new(worker).run(shutdown.clone()));
    delivery_ready.set_ready(true);
    tracing::info!(
        grpc = %args.grpc_listen,
        admin_grpc = %args.admin_grpc_listen,
        http = %args.http_listen,
        smtp = %args.smtp_listen,
        submission = %args.submission_listen,
        submissions = %args.submissions_listen,
        imap = %args.imap_listen,
        imaps = %args.imaps_listen,
        pop3 = %args.pop3_listen,
        pop3s = %args.pop3s_listen,
        data_dir = %data_dir.display(),
        "kubemail dev is ready"
    );
    smtp_server.await.context("smtp-ingress task")?;
    imap_server.await.context("imap-frontend task")?;
    delivery.await.context("delivery-queue task")?;
    mailstore_server.await.context("mailstore task")?.context("mailstore gRPC server")?;
    http_server.await.context("admin HTTP task")?.context("admin HTTP server")?;
    Ok(())
}

/// `<data-dir>/tls`, with a self-signed certificate for `hostname` made on first use.
fn self_signed_dir(data_dir: &Path, hostname: &str) -> Result<PathBuf> {
    let dir = data_dir.join("tls");
    if !dir.join(hostname).join(tls::CERTIFICATE_FILE).exists() {
        let pair = tls::self_signed(&[hostname.to_string()]).context("making a self-signed certificate")?;
        tls::write_pair(&dir, hostname, &pair)
            .with_context(|| format!("writing the self-signed certificate into {}", dir.display()))?;
        tracing::info!(dir = %dir.display(), hostname, "made a self-signed certificate");
    }
    Ok(dir)
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
