//! The recipient cache against a real mailstore: how stale an answer may be, and which answers
//! are never reused.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Mailstore;
use kubemail_proto::admin::UpsertAccountRequest;
use kubemail_runtime::local::{LocalConfig, LocalTransport};
use kubemail_smtp_ingress::directory::{Directory, Resolution};

const TTL: Duration = Duration::from_millis(400);

async fn mailstore(dir: &std::path::Path) -> Mailstore {
    let transport = LocalTransport::open(&LocalConfig::new(dir.join("queue.db"))).await.expect("local transport");
    Mailstore::start(dir, Arc::new(transport.events.clone())).await
}

#[tokio::test]
async fn a_new_mailbox_is_found_once_the_remembered_answer_expires() {
    let dir = tempfile::tempdir().unwrap();
    let mut mailstore = mailstore(dir.path()).await;
    let directory = Directory::new(kubemail_smtp_ingress::mailstore_client(mailstore.channel.clone()), TTL);

    assert_eq!(directory.resolve("dave@example.org", 0).await.unwrap(), Resolution::Unknown);
    mailstore
        .admin
        .upsert_account(UpsertAccountRequest {
            address: "dave@example.org".into(),
            password: "pw".into(),
            ..Default::default()
        })
        .await
        .expect("account");
    assert_eq!(
        directory.resolve("Dave@Example.org", 0).await.unwrap(),
        Resolution::Unknown,
        "the answer is reused, whatever the case of the address"
    );
    tokio::time::sleep(TTL + Duration::from_millis(100)).await;
    assert_eq!(directory.resolve("dave@example.org", 0).await.unwrap(), Resolution::Local, "not after the TTL");
}

#[tokio::test]
async fn room_for_a_small_message_says_nothing_about_a_large_one() {
    let dir = tempfile::tempdir().unwrap();
    let mailstore = mailstore(dir.path()).await;
    let directory = Directory::new(kubemail_smtp_ingress::mailstore_client(mailstore.channel.clone()), TTL);

    // bob's quota is 2,000 octets.
    assert_eq!(directory.resolve("bob@example.org", 1_000).await.unwrap(), Resolution::Local);
    assert_eq!(directory.resolve("bob@example.org", 500).await.unwrap(), Resolution::Local);
    assert_eq!(directory.resolve("bob@example.org", 5_000).await.unwrap(), Resolution::NeverFits);
    assert_eq!(directory.resolve("carol@example.org", 0).await.unwrap(), Resolution::Disabled);
    assert_eq!(directory.resolve("someone@elsewhere.example", 0).await.unwrap(), Resolution::NotLocal);
}

#[tokio::test]
async fn a_full_mailbox_is_asked_about_every_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut mailstore = mailstore(dir.path()).await;
    let directory = Directory::new(kubemail_smtp_ingress::mailstore_client(mailstore.channel.clone()), TTL);

    // bob's quota is 2,000 octets; 1,500 of them used leave no room for 1,000 more.
    mailstore.deliver("bob@example.org", &common::message_of(1_500)).await;
    assert_eq!(directory.resolve("bob@example.org", 1_000).await.unwrap(), Resolution::Full);
    let raised =
        UpsertAccountRequest { address: "bob@example.org".into(), quota_storage: Some(10_000), ..Default::default() };
    mailstore.admin.upsert_account(raised).await.expect("raise the quota");
    assert_eq!(directory.resolve("bob@example.org", 1_000).await.unwrap(), Resolution::Local, "room at once");
}
