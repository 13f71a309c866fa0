//! The operator on a real API server, as a process acting as the chart's ServiceAccount, with a
//! real mailstore on PostgreSQL: create, update, Secret rotation, quota and usage, DNS records,
//! deletion under each policy, the mailstore down, specs that cannot be carried out, and the
//! watches that wake each reconciler.

mod common;

use std::time::Duration;

use common::cluster::eventually;
use common::platform::{ALICE, DOMAIN, PROMPTLY, Platform, condition, has_condition, secret, yaml};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::ListParams;
use kubemail_operator::crd::{MailCluster, MailDomain, Mailbox};
use kubemail_proto::admin::{ListAliasesRequest, ListDomainsRequest};

#[tokio::test(flavor = "multi_thread")]
async fn a_domain_is_registered_with_its_dkim_key_certificate_and_dns_records() {
    let platform = Platform::start("domain", &[]).await;
    let domain = platform.wait_for_domain("Ready", "True", "Ready").await;

    let domains = platform.admin().list_domains(ListDomainsRequest {}).await.unwrap().into_inner().domains;
    let registered = domains.iter().find(|d| d.name == "op.test").expect("op.test registered in the mailstore");
    assert_eq!(registered.default_quota_storage, 1 << 30);
    assert_eq!(registered.default_quota_messages, 1000);
    assert_eq!(registered.catch_all, "postmaster@op.test");

    assert!(domain.metadata.finalizers.unwrap().contains(&kubemail_operator::controller::FINALIZER.to_string()));
    let status = domain.status.unwrap();
    assert_eq!(condition(&status.conditions, "CertificateReady"), ("True", "SelfSigned"));
    assert_eq!(condition(&status.conditions, "Registered").0, "True");
    assert_eq!(status.observed_generation, Some(1));

    // The DKIM record published is the key in the Secret the delivery queue mounts.
    let dkim: Secret = platform.get("op-test-dkim").await.expect("DKIM Secret");
    let pem = String::from_utf8(dkim.data.as_ref().unwrap()["dkim.key"].0.clone()).unwrap();
    let value = kubemail_operator::keys::DkimKey { pem: pem.clone() }.dns_value().unwrap();
    let record = status.dns_records.iter().find(|r| r.name == "kubemail._domainkey.op.test").unwrap();
    assert_eq!(record.value, value);
    assert!(value.starts_with("v=DKIM1; k=ed25519; "), "{value}");
    let mx = status.dns_records.iter().find(|r| r.type_ == "MX").unwrap();
    assert_eq!((mx.name.as_str(), mx.value.as_str()), ("op.test", "10 mx.op.test."));
    let tls: Secret = platform.get("op-test-tls").await.expect("TLS Secret");
    assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));
    // Both Secrets belong to the MailDomain: they go when it goes.
    let owner = &dkim.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("MailDomain", "op-test"));

    // Reconciling a changed spec (a new catch-all) keeps the key and the certificate: nothing
    // is made twice.
    platform.apply(&yaml::<MailDomain>(&DOMAIN.replace("catchAll: postmaster", "catchAll: abuse"))).await;
    eventually("the domain is reconciled at generation 2", PROMPTLY, || async {
        platform.domain().await.and_then(|d| d.status?.observed_generation) == Some(2)
    })
    .await;
    let domains = platform.admin().list_domains(ListDomainsRequest {}).await.unwrap().into_inner().domains;
    assert_eq!(domains.iter().find(|d| d.name == "op.test").unwrap().catch_all, "abuse@op.test");
    let again: Secret = platform.get("op-test-dkim").await.unwrap();
    assert_eq!(String::from_utf8(again.data.unwrap()["dkim.key"].0.clone()).unwrap(), pem);
    let tls_again: Secret = platform.get("op-test-tls").await.unwrap();
    assert_eq!(tls_again.data, tls.data);
    let events = platform.events_of("op-test").await;
    assert_eq!(events.iter().filter(|e| *e == "DkimKeyCreated").count(), 1, "{events:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mailbox_becomes_an_account_whose_usage_and_quota_round_trip() {
    let platform = Platform::start("usage", &["--usage-refresh", "1s"]).await;
    platform.apply(&yaml::<Mailbox>(ALICE)).await;
    platform.wait_for_mailbox("alice", "True", "AccountReady").await;

    assert!(platform.logs_in("alice@op.test", "first password").await);
    let account = platform.account("alice@op.test").await.unwrap();
    assert_eq!((account.quota_storage, account.quota_messages), (10 << 20, 1000), "own storage, the domain's messages");
    let aliases = platform.admin().list_aliases(ListAliasesRequest { domain: "op.test".into() }).await.unwrap();
    assert_eq!(
        aliases.into_inner().aliases.iter().map(|a| (a.address.clone(), a.target.clone())).collect::<Vec<_>>(),
        [("al@op.test".to_string(), "alice@op.test".to_string())]
    );

    // Mail delivered shows up as usage in the status at the next refresh.
    let message = b"From: someone@example.net\r\nSubject: hi\r\n\r\nhello\r\n";
    platform.mailstore.deliver("alice@op.test", message).await;
    platform.mailstore.deliver("al@op.test", message).await;
    eventually("alice's usage shows two messages", PROMPTLY, || async {
        platform.alice().await.and_then(|m| m.status?.usage).is_some_and(|usage| usage.messages == Some(2))
    })
    .await;
    let status = platform.alice().await.unwrap().status.unwrap();
    assert_eq!(status.usage.unwrap().storage_bytes, Some(2 * message.len() as u64));
    let quota = status.quota.unwrap();
    assert_eq!(
        (quota.storage.as_deref(), quota.storage_bytes, quota.messages),
        (Some("10Mi"), Some(10 << 20), Some(1000))
    );
    // `kubectl get mailboxes` shows usage against quota.
    let table = common::cluster::succeeded(
        "kubectl get mailboxes",
        common::cluster::kubectl(&["get", "mailboxes", "-n", platform.namespace()]),
    );
    let row = table.lines().find(|line| line.starts_with("alice ")).unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("alice@op.test") && row.contains("10Mi") && row.contains("True"), "{table}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_update_changes_the_quota_suspension_and_aliases() {
    let platform = Platform::start("update", &[]).await;
    platform.apply(&yaml::<Mailbox>(ALICE)).await;
    platform.wait_for_mailbox("alice", "True", "AccountReady").await;

    let updated = ALICE
        .replace("quota: {storage: 10Mi}", "quota: {storage: 20Mi, messages: 50}")
        .replace("[al@op.test]", "[alice.l@op.test]");
    platform.apply(&yaml::<Mailbox>(&format!("{updated}  suspended: true\n"))).await;
    let alice = platform.wait_for_mailbox("alice", "True", "Suspended").await;
    assert_eq!(alice.status.unwrap().observed_generation, Some(2));
    let account = platform.account("alice@op.test").await.unwrap();
    assert_eq!((account.quota_storage, account.quota_messages, account.suspended), (20 << 20, 50, true));
    assert_eq!(account.aliases, ["alice.l@op.test"]);
    assert!(!platform.logs_in("alice@op.test", "first password").await, "a suspended account cannot log in");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_password_secret_is_set_again() {
    let platform = Platform::start("rotate", &[]).await;
    platform.apply(&yaml::<Mailbox>(ALICE)).await;
    platform.wait_for_mailbox("alice", "True", "AccountReady").await;
    assert!(platform.logs_in("alice@op.test", "first password").await);

    // The Secret's change wakes the Mailbox.
    platform.apply(&secret("alice-password", "password", "second password\n")).await;
    eventually("the rotated password works", PROMPTLY, || platform.logs_in("alice@op.test", "second password")).await;
    assert!(!platform.logs_in("alice@op.test", "first password").await);
    let secret: Secret = platform.get("alice-password").await.unwrap();
    eventually("the status names the Secret's version", PROMPTLY, || async {
        platform.alice().await.and_then(|m| m.status?.password_secret_version) == secret.metadata.resource_version
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_retained_mailbox_suspends_the_account_and_keeps_its_mail() {
    let platform = Platform::start("retain", &[]).await;
    platform.apply(&yaml::<Mailbox>(ALICE)).await;
    platform.wait_for_mailbox("alice", "True", "AccountReady").await;
    platform.mailstore.deliver("alice@op.test", b"Subject: keep me\r\n\r\nbody\r\n").await;

    platform.delete::<Mailbox>("alice").await;
    eventually("the finalizer is released and the Mailbox goes", PROMPTLY, || async {
        platform.alice().await.is_none()
    })
    .await;
    let account = platform.account("alice@op.test").await.unwrap();
    assert!(account.suspended);
    assert_eq!(account.used_messages, 1, "its mail is kept");
    assert!(!platform.logs_in("alice@op.test", "first password").await);
    assert!(platform.events_of("alice").await.contains(&"AccountRetained".to_string()));

    // The domain cannot leave the mailstore while the account is in it; its resource can.
    platform.delete::<MailDomain>("op-test").await;
    eventually("the MailDomain goes", PROMPTLY, || async { platform.domain().await.is_none() }).await;
    let domains = platform.admin().list_domains(ListDomainsRequest {}).await.unwrap().into_inner().domains;
    assert!(domains.iter().any(|d| d.name == "op.test"), "op.test stays while it holds an account");
    assert!(platform.events_of("op-test").await.contains(&"DomainRetained".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_mailbox_with_the_delete_policy_removes_the_account_then_the_domain() {
    let platform = Platform::start("purge", &[]).await;
    platform.apply(&yaml::<Mailbox>(&format!("{ALICE}  deletionPolicy: Delete\n"))).await;
    platform.wait_for_mailbox("alice", "True", "AccountReady").await;
    platform.mailstore.deliver("alice@op.test", b"Subject: bye\r\n\r\nbody\r\n").await;

    platform.delete::<Mailbox>("alice").await;
    eventually("the Mailbox goes", PROMPTLY, || async { platform.alice().await.is_none() }).await;
    assert!(platform.account("alice@op.test").await.is_none(), "the account and its mail are gone");

    platform.delete::<MailDomain>("op-test").await;
    eventually("the MailDomain goes", PROMPTLY, || async { platform.domain().await.is_none() }).await;
    let domains = platform.admin().list_domains(ListDomainsRequest {}).await.unwrap().into_inner().domains;
    assert!(!domains.iter().any(|d| d.name == "op.test"), "an empty domain leaves the mailstore with its resource");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_mailstore_down_conditions_say_so_and_nothing_is_deleted() {
    let platform = Platform::start("down", &["--usage-refresh", "1s"]).await;
    platform.apply(&yaml::<Mailbox>(ALICE)).await;
    platform.wait_for_mailbox("alice", "True", "AccountReady").await;
    platform.mailstore.stop();

    let alice = platform.wait_for_mailbox("alice", "False", "MailstoreUnavailable").await;
    assert_eq!(alice.status.unwrap().usage.unwrap().messages, Some(0), "the last usage known is kept");
    // A change to the domain makes the operator register it again, which fails.
    platform.apply(&yaml::<MailDomain>(&DOMAIN.replace("messages: 1000", "messages: 2000"))).await;
    platform.wait_for_domain("Registered", "False", "MailstoreUnavailable").await;

    // Deleting while the mailstore cannot be told keeps the finalizer (the reconcile is retried):
    // the account is not left active behind a deleted resource.
    platform.delete::<Mailbox>("alice").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let alice = platform.alice().await.expect("the finalizer holds the Mailbox");
    assert!(alice.metadata.deletion_timestamp.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn what_cannot_be_done_is_a_condition_that_waits_for_a_change() {
    let platform = Platform::start("refused", &[]).await;

    // A domain no MailDomain serves.
    platform
        .apply(&yaml::<Mailbox>(
            &ALICE
                .replace("name: alice}", "name: stranger}")
                .replace("alice@op.test", "alice@elsewhere.test")
                .replace("al@op.test", "al@elsewhere.test"),
        ))
        .await;
    platform.wait_for_mailbox("stranger", "False", "DomainNotFound").await;

    // A password Secret that does not exist.
    platform.apply(&yaml::<Mailbox>(&ALICE.replace("alice-password", "missing"))).await;
    platform.wait_for_mailbox("alice", "False", "PasswordSecretNotFound").await;
    // Creating it is the change that helps.
    platform.apply(&secret("missing", "password", "found at last")).await;
    platform.wait_for_mailbox("alice", "True", "AccountReady").await;

    // An alias the mailstore refuses (another account's address).
    platform.apply(&secret("bob-password", "password", "bob's")).await;
    platform
        .apply(&yaml::<Mailbox>(
            &ALICE
                .replace("name: alice}", "name: bob}")
                .replace("alice@op.test", "bob@op.test")
                .replace("alice-password", "bob-password")
                .replace("[al@op.test]", "[]"),
        ))
        .await;
    platform.wait_for_mailbox("bob", "True", "AccountReady").await;
    platform.apply(&yaml::<Mailbox>(&ALICE.replace("[al@op.test]", "[bob@op.test]"))).await;
    platform.wait_for_mailbox("alice", "False", "MailstoreRefused").await;
    eventually("an Event says so", PROMPTLY, || async {
        platform.events_of("alice").await.contains(&"MailstoreRefused".to_string())
    })
    .await;

    // A domain whose cluster does not exist.
    platform
        .apply(&yaml::<MailDomain>(&DOMAIN.replace("clusterRef: {name: mail}", "clusterRef: {name: nowhere}")))
        .await;
    platform.wait_for_domain("Ready", "False", "ClusterNotFound").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_becomes_its_workloads_with_its_domains_mounted() {
    let platform = Platform::start("workloads", &[]).await;
    // The operator's children, not the chart's.
    let children = ListParams::default().labels("app.kubernetes.io/managed-by=kubemail-operator");
    eventually("the cluster's children exist", PROMPTLY, || async {
        platform.api::<Deployment>().list(&children).await.unwrap().items.len() == 4
            && platform.api::<PodDisruptionBudget>().list(&children).await.unwrap().items.len() == 4
    })
    .await;
    let services = platform.api::<Service>().list(&children).await.unwrap().items;
    let mut names: Vec<_> = services.iter().filter_map(|s| s.metadata.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["mail-imap", "mail-mailstore", "mail-metrics", "mail-smtp"]);
    assert!(platform.get::<ConfigMap>("mail-config").await.is_some());

    // No node runs the pods (yet): the status says what it waits for.
    eventually("the cluster says its components are starting", PROMPTLY, || async {
        platform.get::<MailCluster>("mail").await.and_then(|c| c.status).is_some_and(|s| {
            has_condition(&s.conditions, "Ready", "False", "ComponentsNotReady")
                && s.components.imap_frontend.summary == "0/2"
        })
    })
    .await;

    // The domains naming the cluster are mounted into its pods; a new one wakes the cluster.
    let mounted = |deployment: Deployment| -> Vec<String> {
        let volumes = deployment.spec.unwrap().template.spec.unwrap().volumes.unwrap();
        let tls = volumes.into_iter().find(|volume| volume.name == "tls").unwrap();
        let sources = tls.projected.unwrap().sources.unwrap();
        sources.into_iter().filter_map(|source| Some(source.secret?.name)).collect()
    };
    eventually("the first domain's certificate is mounted", PROMPTLY, || async {
        mounted(platform.get::<Deployment>("mail-imap-frontend").await.unwrap()).contains(&"op-test-tls".to_string())
    })
    .await;
    platform
        .apply(&yaml::<MailDomain>(
            &DOMAIN.replace("name: op-test", "name: second-test").replace("domain: op.test", "domain: second.test"),
        ))
        .await;
    eventually("the second domain's certificate is mounted", PROMPTLY, || async {
        mounted(platform.get::<Deployment>("mail-imap-frontend").await.unwrap())
            .contains(&"second-test-tls".to_string())
    })
    .await;

    // A missing database Secret is named, and an Event says so.
    platform.delete::<Secret>("mail-db-app").await;
    platform.apply(&yaml::<MailCluster>(&common::platform::CLUSTER.replace("mx.op.test", "mx2.op.test"))).await;
    eventually("the cluster names the missing Secret", PROMPTLY, || async {
        platform
            .get::<MailCluster>("mail")
            .await
            .and_then(|c| c.status)
            .is_some_and(|s| has_condition(&s.conditions, "Degraded", "True", "DatabaseSecretNotFound"))
    })
    .await;
    assert!(platform.events_of("mail").await.contains(&"DatabaseSecretNotFound".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_domain_wakes_its_mailboxes() {
    let platform = Platform::start("wake", &[]).await;
    platform.apply(&yaml::<Mailbox>(ALICE)).await;
    platform.wait_for_mailbox("alice", "True", "AccountReady").await;

    // alice names no message quota of her own: the domain's default is hers.
    platform.apply(&yaml::<MailDomain>(&DOMAIN.replace("messages: 1000", "messages: 2000"))).await;
    eventually("alice's message quota follows the domain's default", PROMPTLY, || async {
        platform.account("alice@op.test").await.is_some_and(|account| account.quota_messages == 2000)
    })
    .await;
    eventually("and her status says so", PROMPTLY, || async {
        platform.alice().await.and_then(|m| m.status?.quota?.messages) == Some(2000)
    })
    .await;
}
