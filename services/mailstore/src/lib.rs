//! kubemail mailstore: all mail state, in PostgreSQL (production) or SQLite (`kubemail dev`),
//! served over gRPC to the other services.
//!
//! - [`db`] — connection pools, migrations, the few dialect differences.
//! - [`store`] — the operations: directory (domains, accounts, aliases), mailboxes, messages.
//! - [`grpc`] — the `MailStore` and `Admin` gRPC services over the store.
//! - [`events`] — mailbox change events published after each change.
//! - [`validate`] — checks on addresses, names and UID sets before they reach SQL.
//! - [`password`] — argon2id hashing.
//! - [`error`] — the error type and its gRPC status codes.

pub mod db;
pub mod error;
pub mod events;
pub mod grpc;
pub mod password;
pub mod store;
pub mod validate;

use std::future::Future;
use std::sync::Arc;

use kubemail_proto::admin::admin_server::AdminServer;
use kubemail_proto::mailstore::mail_store_server::MailStoreServer;
use kubemail_runtime::EventBus;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

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

/// Serves the MailStore and Admin gRPC services on `listener` until `shutdown` completes;
/// requests in flight are finished first.
pub async fn serve(store: Store, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<()> {
    let mailstore = MailStoreServer::new(grpc::mailstore::MailStoreService::new(store.clone()))
        .max_decoding_message_size(MAX_GRPC_MESSAGE)
        .max_encoding_message_size(MAX_GRPC_MESSAGE);
    let admin = AdminServer::new(grpc::admin::AdminService::new(store));
    tonic::transport::Server::builder()
        .add_service(mailstore)
        .add_service(admin)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .map_err(|e| Error::Internal(format!("gRPC server: {e}")))
}
