//! COPY and MOVE, with the EXPUNGE after them: usage, quota and shared bodies stay right. Every
//! test runs against PostgreSQL and SQLite, through the real gRPC server, with real clients.

mod common;

use common::{Backend, ConcatData, Fixture, add_deleted, message, uid_range};
use futures::StreamExt;
use kubemail_proto::admin::SetQuotaRequest;
use kubemail_proto::mailstore::*;
use tonic::Code;

on_both_backends!(copy_move_expunge_keep_usage_and_bodies_right);

async fn copy_move_expunge_keep_usage_and_bodies_right(backend: Backend) {
    let mut f = Fixture::start(backend).await;
    let alice = f.account("alice@example.org", 0, 0).await;
    let body = message("copied", 300);
    let size = body.len() as u64;
    for i in 0..3 {
        f.deliver(&format!("q-{i}"), "alice@example.org", &body).await.unwrap();
    }
    let inbox = f.select(alice, "INBOX").await.mailbox.unwrap().id;
    f.mailstore
        .create_mailbox(CreateMailboxRequest { account_id: alice, name: "Keep".into(), special_use: String::new() })
        .await
        .unwrap();

    let copied = f.copy(alice, inbox, vec![uid_range(1, 2)], "Keep", false).await.unwrap();
    assert_eq!((copied.source_uids, copied.destination_uids), (vec![1, 2], vec![1, 2]));
    assert_eq!(copied.destination_uidvalidity, f.select(alice, "Keep").await.mailbox.unwrap().uidvalidity);
    let quota = f.quota(alice).await;
    assert_eq!((quota.messages_used, quota.storage_used), (5, 5 * size), "copies count against the quota");

    let moved = f.copy(alice, inbox, vec![uid_range(3, 3)], "Keep", true).await.unwrap();
    assert_eq!(moved.destination_uids, vec![3]);
    assert_eq!(f.select(alice, "INBOX").await.uids, vec![1, 2]);
    assert_eq!(f.select(alice, "Keep").await.uids, vec![1, 2, 3]);
    let quota = f.quota(alice).await;
    assert_eq!(quota.messages_used, 5, "a move does not change usage");

    // Copy refused by quota leaves everything as it was.
    f.admin
        .set_quota(SetQuotaRequest { address: "alice@example.org".into(), quota_storage: 0, quota_messages: 6 })
        .await
        .unwrap();
    let refused = f.copy(alice, inbox, vec![uid_range(1, 2)], "Keep", false).await;
    assert_eq!(refused.unwrap_err().code(), Code::ResourceExhausted);
    assert_eq!(f.select(alice, "Keep").await.uids, vec![1, 2, 3]);

    // Expunge only removes \Deleted messages, within the given UIDs.
    let keep = f.select(alice, "Keep").await.mailbox.unwrap().id;
    f.mailstore.store_flags(add_deleted(alice, keep, vec![uid_range(1, 0)])).await.unwrap();
    let partial = f
        .mailstore
        .expunge(ExpungeRequest { account_id: alice, mailbox_id: keep, uids: vec![uid_range(2, 2)] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(partial.expunged, vec![2]);
    let rest = f
        .mailstore
        .expunge(ExpungeRequest { account_id: alice, mailbox_id: keep, uids: vec![] })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.expunged, vec![1, 3]);
    let quota = f.quota(alice).await;
    assert_eq!((quota.messages_used, quota.storage_used), (2, 2 * size));

    // The two INBOX messages share one stored body with the expunged ones: it must survive.
    let text = f
        .mailstore
        .fetch_body(FetchBodyRequest {
            account_id: alice,
            mailbox_id: inbox,
            uids: vec![uid_range(1, 1)],
            offset: 0,
            length: 0,
            headers_only: false,
            with_cached: false,
        })
        .await
        .unwrap()
        .into_inner();
    let chunks: Vec<BodyChunk> = text.map(|c| c.unwrap()).collect().await;
    assert_eq!(chunks.concat_data(), body);
}
