//! Black-box: the standalone `mailstore` binary in its production shape — PostgreSQL for state,
//! NATS for events — started as a process, probed over HTTP and used over gRPC.

mod common;

use kubemail_testkit::free_loopback_address;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kubemail_proto::Message as _;
use kubemail_proto::admin::admin_client::AdminClient;
use kubemail_proto::admin::{UpsertAccountRequest, UpsertDomainRequest};
use kubemail_proto::events::MailboxEvent;
use kubemail_proto::mailstore::mail_store_client::MailStoreClient;
use kubemail_runtime::EventBus;
use kubemail_runtime::nats::NatsEventBus;

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn http_status(address: &str, path: &str) -> Option<u16> {
    common::http_get(address, path).await?.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailstore_serves_postgres_and_publishes_events_on_nats() {
    let database = kubemail_testkit::postgres_database().await;
    let nats = kubemail_testkit::nats_url();
    let (grpc, admin_grpc, http) = (free_loopback_address(), free_loopback_address(), free_loopback_address());
    let _service = Service(
        Command::new(env!("CARGO_BIN_EXE_mailstore"))
            .args(["--database-url", &database, "--nats-url", &nats, "--http-listen", &http])
            .args(["--grpc-listen", &grpc, "--admin-grpc-listen", &admin_grpc])
            .stdout(Stdio::null())
            .spawn()
            .expect("mailstore starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_status(&http, "/readyz").await != Some(200) {
        assert!(Instant::now() < deadline, "mailstore not ready after 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(http_status(&http, "/healthz").await, Some(200));

    let mut admin = AdminClient::connect(format!("http://{admin_grpc}")).await.unwrap();
    let mut mailstore = MailStoreClient::connect(format!("http://{grpc}")).await.unwrap();
    admin.upsert_domain(UpsertDomainRequest { name: "example.org".into(), ..Default::default() }).await.unwrap();
    let alice = admin
        .upsert_account(UpsertAccountRequest {
            address: "alice@example.org".into(),
            password: "secret".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id;

    // Another process (an IMAP frontend) listening on NATS sees the delivery.
    let bus = NatsEventBus::connect(&nats, &Default::default()).await.unwrap();
    let mut events = bus.subscribe(&format!("events.{alice}.>")).await.unwrap();
    let delivered =
        common::deliver(&mut mailstore, "q-1", "alice@example.org", &common::message("hi", 200)).await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(5), events.next()).await.expect("event in time").unwrap();
    assert_eq!(event.subject, format!("events.{alice}.{}", delivered.mailbox_id));
    let event = MailboxEvent::decode(event.payload).unwrap();
    assert_eq!(
        (event.account_id, event.mailbox_id, event.uidvalidity),
        (alice, delivered.mailbox_id, delivered.uidvalidity)
    );

    let metrics = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(&http).await.unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).await.unwrap();
        text
    };
    assert!(
        metrics.contains(
            "kubemail_grpc_server_requests_total{method=\"kubemail.mailstore.v1.MailStore/Deliver\",code=\"OK\"} 1"
        ),
        "per-method request counts are exported:\n{metrics}"
    );
}
