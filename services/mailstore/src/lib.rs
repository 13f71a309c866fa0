//! kubemail mailstore: all mail state, in PostgreSQL (production) or SQLite (`kubemail dev`),
//! served over gRPC to the other services.
//!
//! - [`config`] — the service's flags.
//! - [`db`] — connection pools, migrations, the few dialect differences.
//! - [`store`] — the operations: directory (domains, accounts, aliases), mailboxes, messages (one
//!   module each for deliver, append, read, flags, expunge, copy/move), message bodies.
//! - [`grpc`] — the `MailStore` and `Admin` gRPC services over the store.
//! - [`events`] — mailbox change events published after each change.
//! - [`validate`] — checks on addresses, names and UID sets before they reach SQL.
//! - [`password`] — argon2id hashing.
//! - [`error`] — the error type and its gRPC status codes.

pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod grpc;
pub mod password;
pub mod store;
pub mod validate;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use kubemail_proto::admin::admin_server::AdminServer;
use kubemail_proto::mailstore::mail_store_server::MailStoreServer;
use kubemail_runtime::EventBus;
use kubemail_runtime::admin_http::AdminEndpoint;
use kubemail_runtime::grpc_metrics::GrpcMetricsLayer;
use kubemail_runtime::identity::{self, Role, ServiceIdentity};
use kubemail_runtime::nats::NatsEventBus;
use kubemail_runtime::propagation;
use kubemail_runtime::shutdown::Shutdown;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;

use grpc::authorization::AuthorizationLayer;

pub use db::Db;
pub use error::{Error, Result};
pub use store::{Limits, Store};

/// Largest gRPC message the services accept: a SELECT snapshot of a very large mailbox is one
/// message (about 15 octets per message), bodies stream in chunks.
pub const MAX_GRPC_MESSAGE: usize = 64 * 1024 * 1024;

/// Builds the store on `db`, publishing events on `bus`.
pub fn store(db: Db, bus: Arc<dyn EventBus>, limits: Limits) -> Store {
    Store::new(db, events::Publisher::new(bus), limits)
}

/// The mailstore's two gRPC ports: the MailStore API for the mail services, and the Admin API
/// on its own, so a network policy can keep everything but the operator away from it.
pub struct GrpcListeners {
    pub mailstore: TcpListener,
    pub admin: TcpListener,
}

/// How the gRPC ports serve their connections.
#[derive(Clone)]
pub struct GrpcOptions {
    /// With an identity, every connection is mutual TLS and each call is authorized by the
    /// caller's role ([`grpc::authorization`]); without one, whoever reaches a port may call
    /// anything, as in `kubemail dev` on loopback.
    pub identity: Option<Arc<ServiceIdentity>>,
    /// How long one connection is served before the client is asked to connect again (its
    /// calls in flight finish first): a renewed certificate is presented, and the clients of
    /// a scaled-out mailstore spread over the new replicas, within this time.
    pub max_connection_age: Duration,
}

impl GrpcOptions {
    /// Plain HTTP/2 for whoever connects: one process, or a test on loopback.
    pub fn without_identity() -> GrpcOptions {
        GrpcOptions { identity: None, max_connection_age: config::DEFAULT_MAX_CONNECTION_AGE }
    }
}

/// Serves the MailStore and Admin gRPC services until `shutdown`; requests in flight are
/// finished first.
pub async fn serve(store: Store, listeners: GrpcListeners, options: GrpcOptions, shutdown: Shutdown) -> Result<()> {
    let mailstore = MailStoreServer::new(grpc::mailstore::MailStoreService::new(store.clone()))
        .max_decoding_message_size(MAX_GRPC_MESSAGE)
        .max_encoding_message_size(MAX_GRPC_MESSAGE);
    let admin = AdminServer::new(grpc::admin::AdminService::new(store));
    let (mailstore, admin) = tokio::join!(
        serve_api(Routes::new(mailstore), listeners.mailstore, options.clone(), shutdown.wait()),
        serve_api(Routes::new(admin), listeners.admin, options, shutdown.wait()),
    );
    mailstore.and(admin)
}

async fn serve_api(
    routes: Routes,
    listener: TcpListener,
    options: GrpcOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let authorization = match options.identity {
        Some(_) => AuthorizationLayer::by_role(),
        None => AuthorizationLayer::anyone_unidentified(),
    };
    let router = tonic::transport::Server::builder()
        .trace_fn(propagation::grpc_server_span)
        .max_connection_age(options.max_connection_age)
        .layer(GrpcMetricsLayer)
        .layer(authorization)
        .add_routes(routes);
    let served = match options.identity {
        Some(identity) => router.serve_with_incoming_shutdown(identity::incoming(listener, identity), shutdown).await,
        // Without TCP_NODELAY, Nagle's algorithm and delayed ACKs hold back the last segment of
        // multi-segment replies (a SELECT snapshot) by up to 40 ms.
        None => {
            router.serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown).await
        }
    };
    served.map_err(|e| Error::Internal(format!("gRPC server: {e}")))
}

/// How often housekeeping runs.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(3600);

/// Housekeeping until `shutdown`, hourly: forgets delivery records older than `retention` and
/// deletes message bodies no message refers to.
pub async fn maintain(store: Store, retention: Duration, shutdown: impl Future<Output = ()>) {
    let mut ticks = tokio::time::interval(MAINTENANCE_INTERVAL);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticks.tick() => {
                let cutoff = store::now() - i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
                match store.prune_delivery_records(cutoff).await {
                    Ok(pruned) => tracing::debug!(pruned, "old delivery records forgotten"),
                    Err(error) => tracing::warn!(%error, "delivery records not pruned"),
                }
                match store.sweep_blobs().await {
                    Ok(swept) => tracing::debug!(swept, "unreferenced message bodies deleted"),
                    Err(error) => tracing::warn!(%error, "message bodies not swept"),
                }
            }
        }
    }
}

/// Runs the mailstore service until `shutdown`: PostgreSQL (or SQLite), events on NATS, gRPC and
/// the admin HTTP endpoint. Ready once the database is migrated and NATS is connected.
pub async fn run(config: config::Config, shutdown: Shutdown) -> Result<()> {
    let listeners = GrpcListeners {
        mailstore: bind(config.grpc_listen, "--grpc-listen").await?,
        admin: bind(config.admin_grpc_listen, "--admin-grpc-listen").await?,
    };
    let identity = config
        .identity
        .load(Role::Mailstore, &shutdown)
        .map_err(|e| Error::Startup(format!("service identity: {e}")))?;
    let (endpoint, ready) =
        AdminEndpoint::start("mailstore", config.http_listen, shutdown.wait()).await.map_err(Error::Startup)?;
    let db = Db::connect(&config.database_url, config.database_max_connections).await?;
    let access = config.nats.access(Role::Mailstore).map_err(|e| Error::Startup(e.to_string()))?;
    let bus = NatsEventBus::connect(&config.nats.url, &access)
        .await
        .map_err(|e| Error::Startup(format!("NATS at {}: {e}", config.nats.url)))?;
    let store = store(db, Arc::new(bus), Limits { max_message_size: config.max_message_size });
    ready.set_ready(true);
    tracing::info!(
        grpc = %config.grpc_listen,
        admin_grpc = %config.admin_grpc_listen,
        http = %config.http_listen,
        mutual_tls = identity.is_some(),
        "mailstore is ready"
    );
    tokio::spawn(maintain(store.clone(), config.delivery_record_retention, shutdown.wait()));
    let options = GrpcOptions { identity, max_connection_age: config.grpc_max_connection_age };
    serve(store, listeners, options, shutdown.clone()).await?;
    endpoint.finish().await.map_err(Error::Startup)
}

async fn bind(address: std::net::SocketAddr, flag: &str) -> Result<TcpListener> {
    TcpListener::bind(address).await.map_err(|e| Error::Startup(format!("cannot listen on {address} ({flag}): {e}")))
}
