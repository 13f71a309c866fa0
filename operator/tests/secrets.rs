//! The operator and the cluster's other Secrets: it watches Secrets only to notice a changed
//! password, keeps of each only its name and version, and so does not grow with Secrets that
//! are none of its business — here 500 of 1 MB each, with a large annotation as `kubectl
//! apply` leaves.

mod common;

use std::collections::BTreeMap;

use common::platform::{ALICE, Platform, secret, yaml};
use futures::StreamExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kubemail_operator::crd::Mailbox;

const UNRELATED: usize = 500;
const DATA: usize = 1024 * 1024;
/// Annotations of one object may total 256 KiB.
const ANNOTATION: usize = 200 * 1024;
/// How much the operator may grow meanwhile: far less than one of the Secrets.
const ALLOWED_GROWTH: u64 = 32 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread")]
async fn unrelated_secrets_do_not_grow_the_operators_memory() {
    let platform = Platform::start("secrets", &[]).await;
    platform.apply(&yaml::<Mailbox>(ALICE)).await;
    platform.wait_for_mailbox("alice", "True", "AccountReady").await;
    let before = platform.operator.resident_memory().expect("the operator runs");

    let secrets = platform.api::<Secret>();
    let created = futures::stream::iter(0..UNRELATED)
        .map(|n| {
            let secrets = secrets.clone();
            async move {
                let unrelated = Secret {
                    metadata: kube::api::ObjectMeta {
                        name: Some(format!("unrelated-{n}")),
                        annotations: Some(BTreeMap::from([("example.com/notes".to_string(), "n".repeat(ANNOTATION))])),
                        ..Default::default()
                    },
                    data: Some(BTreeMap::from([("blob".to_string(), ByteString(vec![n as u8; DATA]))])),
                    ..Default::default()
                };
                secrets.create(&PostParams::default(), &unrelated).await.map(|_| ())
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    assert!(created.iter().all(Result::is_ok), "{:?}", created.iter().find(|r| r.is_err()));

    // A password Secret created after them: once the operator has acted on it, its watch has
    // delivered every Secret before it.
    platform.apply(&secret("alice-password", "password", "second password")).await;
    common::cluster::eventually("alice's new password is in use", common::platform::PROMPTLY, || async {
        platform.logs_in("alice@op.test", "second password").await
    })
    .await;
    let after = platform.operator.resident_memory().expect("the operator still runs");
    let grown = after.saturating_sub(before);
    assert!(
        grown < ALLOWED_GROWTH,
        "the operator grew by {} MiB for {UNRELATED} unrelated Secrets of {} MiB (from {} MiB)",
        grown / (1024 * 1024),
        DATA / (1024 * 1024),
        before / (1024 * 1024)
    );
}
