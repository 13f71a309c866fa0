//! Leader election on a real API server: of two operator processes one reconciles, and when it
//! stops (SIGTERM, releasing its Lease) or dies (SIGKILL, leaving it to expire) another takes
//! over within the lease time.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{Operator, eventually};
use common::platform::{ALICE, PROMPTLY, Platform, secret, yaml};
use k8s_openapi::api::coordination::v1::Lease;
use kubemail_operator::crd::Mailbox;

/// The operator's lease lasts 15 s (`run::LEASE_DURATION`); a replica that sees it expire takes
/// it at its next try, a few seconds later.
const TAKEOVER: Duration = Duration::from_secs(15 + 5);

async fn holder(platform: &Platform) -> Option<String> {
    platform.get::<Lease>("kubemail-operator").await.and_then(|lease| lease.spec?.holder_identity)
}

/// A Mailbox `name` with its own password Secret.
async fn add_mailbox(platform: &Platform, name: &str) {
    platform.apply(&secret(&format!("{name}-password"), "password", "pw")).await;
    platform
        .apply(&yaml::<Mailbox>(
            &ALICE
                .replace("name: alice}", &format!("name: {name}}}"))
                .replace("alice@op.test", &format!("{name}@op.test"))
                .replace("alice-password", &format!("{name}-password"))
                .replace("[al@op.test]", "[]"),
        ))
        .await;
}

fn start(platform: &Platform, identity: &str) -> Operator {
    let mailstore = format!("http://{}", platform.mailstore.admin_address);
    Operator::start(platform.namespace(), &platform.release.service_account(), &mailstore, &["--identity", identity])
}

#[tokio::test(flavor = "multi_thread")]
async fn of_two_operators_one_reconciles_and_another_takes_over() {
    let mut platform = Platform::start("leader", &["--identity", "first"]).await;
    eventually("the first operator holds the lease", PROMPTLY, || async {
        holder(&platform).await.as_deref() == Some("first")
    })
    .await;
    let mut second = start(&platform, "second");
    add_mailbox(&platform, "ann").await;
    platform.wait_for_mailbox("ann", "True", "AccountReady").await;
    // Longer than the lease lasts: the first renews it, the second only waits.
    tokio::time::sleep(Duration::from_secs(17)).await;
    assert_eq!(holder(&platform).await.as_deref(), Some("first"));
    assert!(platform.operator.reconciles() > 0);
    assert_eq!(second.reconciles(), 0, "the operator without the lease reconciled");

    // Stopped as Kubernetes stops a pod, the first gives the lease up: the second takes it at
    // once and reconciles what changes.
    platform.operator.stop();
    let stopped = Instant::now();
    add_mailbox(&platform, "bob").await;
    platform.wait_for_mailbox("bob", "True", "AccountReady").await;
    assert_eq!(holder(&platform).await.as_deref(), Some("second"));
    assert!(stopped.elapsed() < Duration::from_secs(10), "took {:?}", stopped.elapsed());

    // Killed, the second leaves its lease to expire; a third takes over within the lease time.
    let third = start(&platform, "third");
    tokio::time::sleep(Duration::from_secs(3)).await;
    second.kill();
    let killed = Instant::now();
    add_mailbox(&platform, "cy").await;
    eventually("the third operator reconciles", TAKEOVER, || async {
        platform.get::<Mailbox>("cy").await.and_then(|m| m.status).is_some_and(|s| !s.conditions.is_empty())
    })
    .await;
    assert_eq!(holder(&platform).await.as_deref(), Some("third"));
    assert!(third.reconciles() > 0);
    eprintln!("took over {:?} after the leader was killed", killed.elapsed());
}
