//! A real mailstore for tests: SQLite in a directory, served over gRPC on a loopback port, with
//! a domain and accounts to deliver to; and a reader of what ended up in a mailbox.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use kubemail_proto::admin::admin_client::AdminClient;
use kubemail_proto::admin::{AddAliasRequest, UpsertAccountRequest, UpsertDomainRequest};
use kubemail_proto::mailstore::deliver_chunk::Part;
use kubemail_proto::mailstore::mail_store_client::MailStoreClient;
use kubemail_proto::mailstore::{
    AuthenticateRequest, DeliverChunk, DeliverHeader, FetchBodyRequest, SelectMailboxRequest,
};
use kubemail_runtime::EventBus;
use kubemail_runtime::shutdown::Shutdown;
use tokio::net::TcpListener;
use tonic::transport::Channel;

/// The password of every account [`Mailstore::start`] makes.
pub const PASSWORD: &str = "secret";

/// A mailstore served until dropped.
pub struct Mailstore {
    /// The MailStore API.
    pub address: SocketAddr,
    /// The Admin API.
    pub admin_address: SocketAddr,
    pub channel: Channel,
    pub admin: AdminClient<Channel>,
    stop: Shutdown,
}

impl Drop for Mailstore {
    fn drop(&mut self) {
        self.stop.trigger();
    }
}

impl Mailstore {
    /// On SQLite in `dir`, serving [`Mailstore::start_on`]'s accounts.
    pub async fn start(dir: &Path, events: Arc<dyn EventBus>) -> Mailstore {
        let db = kubemail_mailstore::Db::open_sqlite(&dir.join("mailstore.db"), 4).await.expect("mailstore db");
        Mailstore::start_on(db, events).await
    }

    /// On `db`, serving the domain example.org: alice (alias al@example.org), bob with a quota
    /// of 2,000 octets, and carol, suspended; every password is [`PASSWORD`]. Also example.com,
    /// with no accounts and alice as its catch-all.
    pub async fn start_on(db: kubemail_mailstore::Db, events: Arc<dyn EventBus>) -> Mailstore {
        let store = kubemail_mailstore::store(db, events, kubemail_mailstore::Limits::default());
        let listeners = kubemail_mailstore::GrpcListeners {
            mailstore: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
            admin: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        };
        let address = listeners.mailstore.local_addr().expect("address");
        let admin_address = listeners.admin.local_addr().expect("address");
        let stop = Shutdown::new();
        tokio::spawn(kubemail_mailstore::serve(
            store,
            listeners,
            kubemail_mailstore::GrpcOptions::without_identity(),
            stop.clone(),
        ));
        let connect = |address: SocketAddr| async move {
            Channel::from_shared(format!("http://{address}")).expect("uri").connect().await.expect("gRPC connects")
        };
        let channel = connect(address).await;
        let mut admin = AdminClient::new(connect(admin_address).await);
        admin
            .upsert_domain(UpsertDomainRequest { name: "example.org".into(), ..Default::default() })
            .await
            .expect("domain");
        for (address, quota_storage, suspended) in
            [("alice@example.org", 0, false), ("bob@example.org", 2000, false), ("carol@example.org", 0, true)]
        {
            admin
                .upsert_account(UpsertAccountRequest {
                    address: address.into(),
                    password: PASSWORD.into(),
                    quota_storage: Some(quota_storage),
                    quota_messages: None,
                    suspended: Some(suspended),
                })
                .await
                .expect("account");
        }
        admin
            .add_alias(AddAliasRequest { address: "al@example.org".into(), target: "alice@example.org".into() })
            .await
            .expect("alias");
        let catch_all = UpsertDomainRequest {
            name: "example.com".into(),
            catch_all: "alice@example.org".into(),
            ..Default::default()
        };
        admin.upsert_domain(catch_all).await.expect("catch-all domain");
        Mailstore { address, admin_address, channel, admin, stop }
    }

    /// Stops serving: calls made from now on fail as if the mailstore were down.
    pub fn stop(&self) {
        self.stop.trigger();
    }

    /// Stores `body` in `recipient`'s INBOX, as the delivery queue would.
    pub async fn deliver(&self, recipient: &str, body: &[u8]) {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let header = DeliverHeader {
            queue_message_id: format!("test-{}", NEXT.fetch_add(1, Ordering::Relaxed)),
            recipient: recipient.into(),
            ..Default::default()
        };
        let chunks = [Part::Header(header), Part::Data(body.to_vec())].map(|part| DeliverChunk { part: Some(part) });
        MailStoreClient::new(self.channel.clone()).deliver(futures::stream::iter(chunks)).await.expect("deliver");
    }

    /// The messages in `address`'s INBOX, in UID order (the account's password is [`PASSWORD`]).
    pub async fn inbox(&self, address: &str) -> Vec<Vec<u8>> {
        inbox(&self.channel, address, PASSWORD).await
    }
}

/// The messages in the INBOX of `address` on the mailstore behind `channel`, in UID order.
pub async fn inbox(channel: &Channel, address: &str, password: &str) -> Vec<Vec<u8>> {
    let mut client = MailStoreClient::new(channel.clone());
    let request = AuthenticateRequest { username: address.into(), password: password.into() };
    let account_id = client.authenticate(request).await.expect("authenticate").into_inner().account_id;
    let selected = client
        .select_mailbox(SelectMailboxRequest { account_id, name: "INBOX".into(), ..Default::default() })
        .await
        .expect("select INBOX")
        .into_inner();
    let mailbox_id = selected.mailbox.expect("mailbox info").id;
    if selected.uids.is_empty() {
        return Vec::new();
    }
    let request = FetchBodyRequest { account_id, mailbox_id, ..Default::default() };
    let mut chunks = client.fetch_body(request).await.expect("fetch bodies").into_inner();
    let mut messages: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.expect("body chunk");
        messages.entry(chunk.uid).or_default().extend_from_slice(&chunk.data);
    }
    messages.into_values().collect()
}
