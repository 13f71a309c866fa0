//! `kubemail dev`: the platform in one process, for a laptop. The mailstore runs on SQLite in
//! the data directory; the queue, spool and event bus are the local implementations on a
//! second SQLite file; smtp-ingress hands mail to them, delivery-queue takes it from there, and
//! imap-frontend serves the mailboxes.
//! The services use the same code paths as in production.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use kubemail_delivery_queue::DeliveryQueue;
use kubemail_imap_frontend::ImapFrontend;
use kubemail_mailstore::{Db, GrpcListeners, GrpcOptions, Limits};
use kubemail_runtime::admin_http::{self, Readiness};
use kubemail_runtime::limits::AuthFailures;
use kubemail_runtime::listener;
use kubemail_runtime::local::{LocalConfig, LocalTransport};
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::telemetry;
use kubemail_runtime::tls::{self, ServerTls};
use kubemail_smtp_ingress::SmtpIngress;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

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
    let data_dir = &args.data_dir;
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let listeners = DevListeners::bind(&args).await?;
    let readiness = Readiness::new();
    let ready = ["mailstore", "smtp-ingress", "imap-frontend", "delivery-queue"].map(|c| readiness.component(c));
    let http = tokio::spawn(admin_http::serve(listeners.http, readiness.clone(), shutdown.wait()));
    let local_config = LocalConfig::new(data_dir.join("queue.db"));
    let local = LocalTransport::open(&local_config).await.context("opening the local queue and spool")?;
    let (mailstore, channel) = start_mailstore(&args, listeners.grpc, &local, &shutdown).await?;
    let tls_dir = match &args.tls_dir {
        Some(dir) => dir.clone(),
        None => self_signed_dir(data_dir, &args.hostname)?,
    };
    let shared = Shared {
        tls: tls::ServerTls::from_dir(&tls_dir, TLS_RELOAD_INTERVAL, &shutdown)?,
        auth_failures: AuthFailures::new(),
        local,
        mailstore: channel,
        shutdown: shutdown.clone(),
    };
    let smtp = tokio::spawn(smtp_ingress(&args, &shared).serve(listeners.smtp));
    let imap = tokio::spawn(imap_frontend(&args, &shared).serve(listeners.imap));
    let delivery = tokio::spawn(delivery_queue(&args, &shared, local_config.lease)?.serve(shutdown.clone()));
    ready.iter().for_each(|component| component.set_ready(true));
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
    smtp.await.context("smtp-ingress task")?;
    imap.await.context("imap-frontend task")?;
    delivery.await.context("delivery-queue task")?;
    mailstore.await.context("mailstore task")?.context("mailstore gRPC server")?;
    http.await.context("admin HTTP task")?.context("admin HTTP server")?;
    Ok(())
}

/// Every socket `kubemail dev` serves, bound before anything is served.
struct DevListeners {
    grpc: GrpcListeners,
    http: TcpListener,
    smtp: kubemail_smtp_ingress::server::Listeners,
    imap: kubemail_imap_frontend::server::Listeners,
}

impl DevListeners {
    async fn bind(args: &DevArgs) -> Result<DevListeners> {
        let bind = |address, flag| async move { listener::bind(address, flag).await.map_err(anyhow::Error::msg) };
        Ok(DevListeners {
            grpc: GrpcListeners {
                mailstore: bind(args.grpc_listen, "--grpc-listen").await?,
                admin: bind(args.admin_grpc_listen, "--admin-grpc-listen").await?,
            },
            http: bind(args.http_listen, "--http-listen").await?,
            smtp: kubemail_smtp_ingress::server::Listeners::bind(
                args.smtp_listen,
                args.submission_listen,
                Some(args.submissions_listen),
            )
            .await?,
            imap: kubemail_imap_frontend::server::Listeners {
                imap: bind(args.imap_listen, "--imap-listen").await?,
                imaps: Some(bind(args.imaps_listen, "--imaps-listen").await?),
                pop3: Some(bind(args.pop3_listen, "--pop3-listen").await?),
                pop3s: Some(bind(args.pop3s_listen, "--pop3s-listen").await?),
            },
        })
    }
}

/// The mailstore on SQLite in the data directory, served on `grpc`, with its housekeeping;
/// returns its task and a channel to it.
async fn start_mailstore(
    args: &DevArgs,
    grpc: GrpcListeners,
    local: &LocalTransport,
    shutdown: &Shutdown,
) -> Result<(JoinHandle<kubemail_mailstore::Result<()>>, Channel)> {
    let db = open_mailstore(&args.data_dir).await?;
    let max_stored = args.limits.max_message_size + HEADER_HEADROOM;
    let store = kubemail_mailstore::store(db, Arc::new(local.events.clone()), Limits { max_message_size: max_stored });
    tokio::spawn(kubemail_mailstore::maintain(store.clone(), DELIVERY_RECORD_RETENTION, shutdown.wait()));
    let address = grpc.mailstore.local_addr().context("the gRPC listener's address")?;
    // One process on a laptop: its parts call each other over loopback without identities.
    let served = kubemail_mailstore::serve(store, grpc, GrpcOptions::without_identity(), shutdown.clone());
    let channel = Endpoint::from_shared(format!("http://{address}")).context("the mailstore address")?.connect_lazy();
    Ok((tokio::spawn(served), channel))
}

/// What the services share in one process.
struct Shared {
    /// The spool, the queue and the event bus, on SQLite and within the process.
    local: LocalTransport,
    mailstore: Channel,
    /// The certificates SMTP and IMAP present.
    tls: ServerTls,
    /// One count of failed logins per client address for SMTP AUTH and IMAP alike.
    auth_failures: Arc<AuthFailures>,
    shutdown: Shutdown,
}

/// smtp-ingress on the local spool and queue. On a laptop recipient lookups are cheap and a
/// new mailbox should work at once, so nothing is cached; no DNS is checked, as mail to it
/// comes from its developer.
fn smtp_ingress(args: &DevArgs, shared: &Shared) -> SmtpIngress {
    let session = args.limits.settings(&args.hostname);
    let settings = kubemail_smtp_ingress::ServiceSettings {
        tls: Some(shared.tls.clone()),
        connections: args.limits.connections(),
        auth_failures: shared.auth_failures.clone(),
        ..kubemail_smtp_ingress::ServiceSettings::new(session, args.limits.handoff_timeout)
    };
    let transports = kubemail_smtp_ingress::Transports {
        handoff: Some((Arc::new(shared.local.spool.clone()), Arc::new(shared.local.queue.clone()))),
        mailstore: shared.mailstore.clone(),
    };
    SmtpIngress::new(settings, transports, shared.shutdown.clone())
}

/// imap-frontend on the local event bus.
fn imap_frontend(args: &DevArgs, shared: &Shared) -> ImapFrontend {
    let limits = &args.limits;
    let session =
        args.imap.settings(&args.hostname, limits.max_message_size, limits.max_auth_failures, limits.max_errors);
    let settings = kubemail_imap_frontend::ServiceSettings {
        tls: Some(shared.tls.clone()),
        connections: limits.connections(),
        auth_failures: shared.auth_failures.clone(),
        body_cache_octets: args.imap.body_cache_size,
        ..kubemail_imap_frontend::ServiceSettings::new(
            session,
            args.imap.login_cache_ttl,
            args.imap.select_cache_messages,
        )
    };
    let transports = kubemail_imap_frontend::Transports {
        events: Arc::new(shared.local.events.clone()),
        mailstore: shared.mailstore.clone(),
    };
    ImapFrontend::new(settings, transports, shared.shutdown.clone())
}

/// delivery-queue on the local queue (whose leases last `lease`) and spool, sending remote
/// mail out over SMTP.
fn delivery_queue(args: &DevArgs, shared: &Shared, lease: Duration) -> Result<DeliveryQueue> {
    let transports = kubemail_delivery_queue::Transports {
        queue: Arc::new(shared.local.queue.clone()),
        spool: Arc::new(shared.local.spool.clone()),
        mailstore: shared.mailstore.clone(),
        outbound: Some(Arc::new(kubemail_delivery_queue::outbound(&args.delivery, &args.hostname)?)),
    };
    let settings = kubemail_delivery_queue::ServiceSettings {
        delivery: args.delivery.clone(),
        hostname: args.hostname.clone(),
        lease,
    };
    Ok(DeliveryQueue::new(settings, transports))
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
