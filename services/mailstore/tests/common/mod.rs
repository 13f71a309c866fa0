//! The fixture every mailstore test uses: a real database (a fresh PostgreSQL database from the
//! throwaway cluster, or a SQLite file), the real gRPC server on a loopback port, and clients;
//! and the requests, setups and checks that several test files share.

#![allow(dead_code)]

use std::sync::Arc;

use futures::StreamExt;
use kubemail_mailstore::{Db, Limits};
use kubemail_proto::admin::admin_client::AdminClient;
use kubemail_proto::admin::{UpsertAccountRequest, UpsertDomainRequest};
use kubemail_proto::mailstore::mail_store_client::MailStoreClient;
use kubemail_proto::mailstore::store_flags_request::Operation;
use kubemail_proto::mailstore::{
    AppendChunk, AppendHeader, AppendResponse, BodyChunk, CopyMessagesRequest, CopyMessagesResponse,
    CreateMailboxRequest, DeleteMailboxRequest, DeliverChunk, DeliverHeader, DeliverResponse, FetchBodyRequest,
    FetchMessagesRequest, Flags, GetQuotaRequest, ListMailboxesRequest, MessageMeta, Quota, RenameMailboxRequest,
    SelectMailboxRequest, SelectMailboxResponse, StoreFlagsRequest, SystemFlag, UidRange, append_chunk, deliver_chunk,
};
use kubemail_runtime::EventBus;
use kubemail_runtime::local::LocalEventBus;
use kubemail_runtime::shutdown::Shutdown;
use tokio::net::TcpListener;
use tonic::Code;
use tonic::transport::Channel;

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// Runs each named test function (`async fn name(backend: Backend)`) against both backends.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name(super::common::Backend::Postgres).await }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name(super::common::Backend::Sqlite).await }
            )*
        }
    };
}

/// Largest body the test servers accept, small so the limit is cheap to cross.
pub const TEST_MAX_MESSAGE: u64 = 1024 * 1024;

pub struct Fixture {
    pub mailstore: MailStoreClient<Channel>,
    pub admin: AdminClient<Channel>,
    pub bus: Arc<LocalEventBus>,
    /// The store behind the server, for what has no RPC (housekeeping).
    pub store: kubemail_mailstore::Store,
    /// The PostgreSQL database, for what only the database can tell.
    pub database_url: Option<String>,
    stop: Shutdown,
    _dir: tempfile::TempDir,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.trigger();
    }
}

impl Fixture {
    pub async fn start(backend: Backend) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let database_url = match backend {
            Backend::Postgres => Some(kubemail_testkit::postgres_database().await),
            Backend::Sqlite => None,
        };
        let db = match &database_url {
            Some(url) => Db::connect(url, 8).await,
            None => Db::open_sqlite(&dir.path().join("mailstore.db"), 4).await,
        }
        .expect("database opens and migrates");
        let bus = Arc::new(LocalEventBus::new(1024));
        let store = kubemail_mailstore::store(
            db,
            bus.clone() as Arc<dyn EventBus>,
            Limits { max_message_size: TEST_MAX_MESSAGE },
        );
        let listeners = kubemail_mailstore::GrpcListeners {
            mailstore: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
            admin: TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        };
        let connect = |listener: &TcpListener| {
            let address = listener.local_addr().expect("address");
            Channel::from_shared(format!("http://{address}")).expect("uri").connect_lazy()
        };
        let (channel, admin) = (connect(&listeners.mailstore), connect(&listeners.admin));
        let stop = Shutdown::new();
        tokio::spawn(kubemail_mailstore::serve(
            store.clone(),
            listeners,
            kubemail_mailstore::GrpcOptions::without_identity(),
            stop.clone(),
        ));
        Fixture {
            mailstore: MailStoreClient::new(channel).max_decoding_message_size(kubemail_mailstore::MAX_GRPC_MESSAGE),
            admin: AdminClient::new(admin),
            bus,
            store,
            database_url,
            stop,
            _dir: dir,
        }
    }

    pub async fn domain(&mut self, name: &str) {
        self.admin
            .upsert_domain(UpsertDomainRequest { name: name.into(), ..Default::default() })
            .await
            .expect("domain is created");
    }

    /// Creates `address` (and its domain) with password "secret" and the given quotas; returns
    /// the account id.
    pub async fn account(&mut self, address: &str, quota_storage: u64, quota_messages: u64) -> i64 {
        let domain = address.rsplit_once('@').expect("address has a domain").1.to_string();
        self.domain(&domain).await;
        self.admin
            .upsert_account(UpsertAccountRequest {
                address: address.into(),
                password: "secret".into(),
                quota_storage: Some(quota_storage),
                quota_messages: Some(quota_messages),
                suspended: None,
            })
            .await
            .expect("account is created")
            .into_inner()
            .id
    }

    pub async fn deliver(
        &mut self,
        queue_id: &str,
        recipient: &str,
        body: &[u8],
    ) -> Result<DeliverResponse, tonic::Status> {
        deliver(&mut self.mailstore, queue_id, recipient, body).await
    }

    pub async fn quota(&mut self, account_id: i64) -> Quota {
        self.mailstore.get_quota(GetQuotaRequest { account_id }).await.expect("quota").into_inner()
    }

    /// Copies (or moves) `uids` of `source` into the mailbox `destination`.
    pub async fn copy(
        &mut self,
        account_id: i64,
        source: i64,
        uids: Vec<UidRange>,
        destination: &str,
        move_messages: bool,
    ) -> Result<CopyMessagesResponse, tonic::Status> {
        let request = CopyMessagesRequest {
            account_id,
            source_mailbox_id: source,
            uids,
            destination: destination.into(),
            r#move: move_messages,
        };
        self.mailstore.copy_messages(request).await.map(|r| r.into_inner())
    }

    /// Every chunk FetchBody streams for `uids` of `mailbox_id`, byte range `offset`/`length`.
    pub async fn bodies(
        &mut self,
        account_id: i64,
        mailbox_id: i64,
        uids: Vec<UidRange>,
        offset: u64,
        length: u64,
    ) -> Vec<BodyChunk> {
        let request =
            FetchBodyRequest { account_id, mailbox_id, uids, offset, length, headers_only: false, with_cached: false };
        let stream = self.mailstore.fetch_body(request).await.expect("fetch body").into_inner();
        stream.map(|chunk| chunk.expect("chunk")).collect().await
    }

    /// The metadata of every message of a mailbox, in UID order.
    pub async fn messages(&mut self, account_id: i64, mailbox_id: i64) -> Vec<MessageMeta> {
        let request =
            FetchMessagesRequest { account_id, mailbox_id, uids: vec![], changed_since: 0, with_cached: false };
        let answer = self.mailstore.fetch_messages(request).await;
        answer.unwrap_or_else(|e| panic!("messages of mailbox {mailbox_id}: {e}")).into_inner().messages
    }

    pub async fn select(&mut self, account_id: i64, name: &str) -> SelectMailboxResponse {
        self.mailstore
            .select_mailbox(SelectMailboxRequest { account_id, name: name.into(), ..Default::default() })
            .await
            .unwrap_or_else(|e| panic!("select {name}: {e}"))
            .into_inner()
    }
}

/// Delivers `body` into the INBOX of `recipient`, in 64 KiB chunks after the header.
pub async fn deliver(
    client: &mut MailStoreClient<Channel>,
    queue_id: &str,
    recipient: &str,
    body: &[u8],
) -> Result<DeliverResponse, tonic::Status> {
    deliver_to(client, queue_id, recipient, "", body).await
}

/// Delivers `body` into the folder `mailbox` of `recipient` (INBOX when empty).
pub async fn deliver_to(
    client: &mut MailStoreClient<Channel>,
    queue_id: &str,
    recipient: &str,
    mailbox: &str,
    body: &[u8],
) -> Result<DeliverResponse, tonic::Status> {
    let header = DeliverHeader {
        queue_message_id: queue_id.into(),
        recipient: recipient.into(),
        mailbox: mailbox.into(),
        size: body.len() as u64,
        ..Default::default()
    };
    let mut chunks = vec![DeliverChunk { part: Some(deliver_chunk::Part::Header(header)) }];
    chunks.extend(body.chunks(64 * 1024).map(|c| DeliverChunk { part: Some(deliver_chunk::Part::Data(c.to_vec())) }));
    client.deliver(tokio_stream::iter(chunks)).await.map(|r| r.into_inner())
}

/// IMAP APPEND of `body` into the mailbox `mailbox` of `account_id`, with no flags.
pub async fn append_to(
    client: &mut MailStoreClient<Channel>,
    account_id: i64,
    mailbox: &str,
    body: &[u8],
) -> Result<AppendResponse, tonic::Status> {
    let header = AppendHeader { account_id, mailbox: mailbox.into(), size: body.len() as u64, ..Default::default() };
    let mut chunks = vec![AppendChunk { part: Some(append_chunk::Part::Header(header)) }];
    chunks.extend(body.chunks(64 * 1024).map(|c| AppendChunk { part: Some(append_chunk::Part::Data(c.to_vec())) }));
    client.append(tokio_stream::iter(chunks)).await.map(|r| r.into_inner())
}

/// A small RFC 5322 message whose body is padded to about `size` octets.
pub fn message(subject: &str, size: usize) -> Vec<u8> {
    let mut text =
        format!("From: sender@example.net\r\nTo: someone@example.org\r\nSubject: {subject}\r\n\r\n").into_bytes();
    while text.len() < size {
        text.extend_from_slice(b"All work and no play makes a dull mailbox.\r\n");
    }
    text
}

/// The whole HTTP response to `GET path` from the admin endpoint at `address`, as text.
pub async fn http_get(address: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    Some(response)
}

pub fn uid_range(first: u32, last: u32) -> UidRange {
    UidRange { first, last }
}

/// STORE +FLAGS (\Deleted) on `uids`.
pub fn add_deleted(account_id: i64, mailbox_id: i64, uids: Vec<UidRange>) -> StoreFlagsRequest {
    let deleted = flags(SystemFlag::Deleted as u32, &[]);
    StoreFlagsRequest {
        account_id,
        mailbox_id,
        uids,
        operation: Operation::Add as i32,
        flags: deleted,
        unchanged_since: 0,
        held: Vec::new(),
    }
}

pub fn flags(system: u32, keywords: &[&str]) -> Option<Flags> {
    Some(Flags { system, keywords: keywords.iter().map(|k| k.to_string()).collect() })
}

/// The account alice@example.org with `count` messages delivered to its INBOX: its id and the
/// INBOX's.
pub async fn alice_with_messages(f: &mut Fixture, count: usize) -> (i64, i64) {
    let alice = f.account("alice@example.org", 0, 0).await;
    for i in 0..count {
        f.deliver(&format!("q-{i}"), "alice@example.org", &message(&format!("m{i}"), 300)).await.unwrap();
    }
    (alice, f.select(alice, "INBOX").await.mailbox.unwrap().id)
}

/// Checks that the counters ListMailboxes reports for each mailbox of `account_id` are what
/// its messages add up to.
pub async fn assert_counters_match(f: &mut Fixture, account_id: i64, step: &str) {
    let listed = f.mailstore.list_mailboxes(ListMailboxesRequest { account_id }).await.unwrap().into_inner().mailboxes;
    for info in listed {
        let selected = f.select(account_id, &info.name).await;
        let meta = f
            .mailstore
            .fetch_messages(FetchMessagesRequest {
                account_id,
                mailbox_id: info.id,
                uids: vec![uid_range(1, 0)],
                changed_since: 0,
                with_cached: false,
            })
            .await
            .unwrap()
            .into_inner()
            .messages;
        let unseen = selected.flags.iter().filter(|f| *f & SystemFlag::Seen as u32 == 0).count() as u32;
        let deleted = selected.flags.iter().filter(|f| *f & SystemFlag::Deleted as u32 != 0).count() as u32;
        let size: u64 = meta.iter().map(|m| m.size).sum();
        assert_eq!(
            (info.messages, info.unseen, info.deleted, info.size),
            (selected.uids.len() as u32, unseen, deleted, size),
            "{step}: counters of {} (messages, unseen, deleted, size)",
            info.name
        );
    }
}

/// `rounds` times: deletes "Lists", creates it, renames it to "Old", creates it again and
/// deletes "Old", each change allowed to fail cleanly as it races others.
pub fn churn_folder(
    mut changer: kubemail_proto::mailstore::mail_store_client::MailStoreClient<tonic::transport::Channel>,
    alice: i64,
    rounds: usize,
) -> tokio::task::JoinHandle<()> {
    let create =
        move |name: &str| CreateMailboxRequest { account_id: alice, name: name.into(), special_use: String::new() };
    tokio::spawn(async move {
        for _ in 0..rounds {
            let outcomes = [
                changer
                    .delete_mailbox(DeleteMailboxRequest { account_id: alice, name: "Lists".into() })
                    .await
                    .map(drop),
                changer.create_mailbox(create("Lists")).await.map(drop),
                changer
                    .rename_mailbox(RenameMailboxRequest { account_id: alice, from: "Lists".into(), to: "Old".into() })
                    .await
                    .map(drop),
                changer.create_mailbox(create("Lists")).await.map(drop),
                changer.delete_mailbox(DeleteMailboxRequest { account_id: alice, name: "Old".into() }).await.map(drop),
            ];
            for outcome in outcomes {
                if let Err(status) = outcome {
                    assert!(
                        matches!(status.code(), Code::NotFound | Code::AlreadyExists | Code::Aborted),
                        "a racing folder change fails cleanly: {status}"
                    );
                }
            }
        }
    })
}

pub trait ConcatData {
    fn concat_data(&self) -> Vec<u8>;
}

impl ConcatData for Vec<BodyChunk> {
    fn concat_data(&self) -> Vec<u8> {
        self.iter().flat_map(|c| c.data.clone()).collect()
    }
}
