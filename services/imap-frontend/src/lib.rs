//! kubemail imap-frontend: a stateless IMAP4rev2 server (ports 143 and 993) over the mailstore.
//! Any replica serves any client: a session keeps only its connection's state, and mailbox
//! changes from anywhere reach it as events.
//!
//! - [`session`] — one IMAP connection: the state machine, one file per command family.
//! - [`capability`] — what is advertised before and after login.
//! - [`response`] — status responses and IMAP strings.

pub mod capability;
pub mod response;
pub mod session;

use kubemail_proto::mailstore::mail_store_client::MailStoreClient;
use kubemail_runtime::propagation::{self, TracedChannel};
use tonic::transport::Channel;

/// The mailstore client, passing the trace context on with every call.
pub type MailstoreClient = MailStoreClient<TracedChannel>;

/// A mailstore client on `channel`.
pub fn mailstore_client(channel: Channel) -> MailstoreClient {
    MailStoreClient::new(propagation::traced(channel))
}
