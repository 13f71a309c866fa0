//! The chart's RBAC for real: the operator runs as the chart's ServiceAccount through a whole
//! platform's life, and the API server's audit log shows every request it made. None may be
//! forbidden, and every verb the chart's ClusterRole and Role grant must be one the operator
//! used: the rules are exactly what it needs.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use common::cluster::{self, Request, eventually, requests_of, service_account_user};
use common::platform::{ALICE, CLUSTER, DOMAIN, PROMPTLY, Platform, yaml};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use kube::Api;
use kube::api::DynamicObject;
use kubemail_operator::crd::{MailCluster, MailDomain, Mailbox};

/// cert-manager's CRDs, so that the operator asks for certificates (and watches them) and
/// sets up Issuers.
async fn install_cert_manager_crds(client: &kube::Client) {
    let dir = PathBuf::from(std::env::var("KUBEMAIL_TEST_CERT_MANAGER_CRDS").unwrap());
    let crds = ["cert-manager.io_certificates.yaml", "cert-manager.io_issuers.yaml"];
    cluster::apply_crds(client, &cluster::crds_in(&dir, &crds)).await;
}

/// Each (API group, resource, verb) `rules` grant.
fn granted(rules: &[PolicyRule]) -> BTreeSet<(String, String, String)> {
    let mut granted = BTreeSet::new();
    for rule in rules {
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    granted.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    granted
}

/// Each (API group, resource, verb) `requests` needed: an apply (a patch) that created its
/// object (201) needed `create` too.
fn used(requests: &[Request]) -> BTreeSet<(String, String, String)> {
    let mut used = BTreeSet::new();
    for request in requests {
        used.insert((request.group.clone(), request.resource.clone(), request.verb.clone()));
        if request.verb == "patch" && request.code == 201 {
            used.insert((request.group.clone(), request.resource.clone(), "create".to_string()));
        }
    }
    used
}

#[tokio::test(flavor = "multi_thread")]
async fn the_chart_grants_exactly_what_the_operator_uses() {
    install_cert_manager_crds(&cluster::client().await).await;
    let platform = Platform::start("rbac", &["--usage-refresh", "2s"]).await;

    // Autoscaling on, then off: the HorizontalPodAutoscaler is made, then deleted.
    let autoscaled = format!(
        "{CLUSTER}  imapFrontend:\n    autoscaling: {{minReplicas: 2, maxReplicas: 6, targetCPUUtilization: 60}}\n"
    );
    platform.apply(&yaml::<MailCluster>(&autoscaled)).await;
    eventually("the autoscaler exists", PROMPTLY, || async {
        platform.get::<HorizontalPodAutoscaler>("mail-imap-frontend").await.is_some()
    })
    .await;
    platform.apply(&yaml::<MailCluster>(CLUSTER)).await;
    eventually("the autoscaler is gone", PROMPTLY, || async {
        platform.get::<HorizontalPodAutoscaler>("mail-imap-frontend").await.is_none()
    })
    .await;

    // NetworkPolicies (on by default) turned off: they are deleted.
    eventually("the NetworkPolicies exist", PROMPTLY, || async {
        platform.get::<NetworkPolicy>("mail-deny-all").await.is_some()
    })
    .await;
    platform.apply(&yaml::<MailCluster>(&format!("{CLUSTER}  networkPolicy: {{enabled: false}}\n"))).await;
    eventually("the NetworkPolicies are gone", PROMPTLY, || async {
        platform.get::<NetworkPolicy>("mail-deny-all").await.is_none()
    })
    .await;

    // A second cluster whose identities cert-manager issues: its Issuers are made.
    let with_cert_manager =
        format!("{}  serviceIdentity: {{issuer: CertManager}}\n", CLUSTER.replace("{name: mail}", "{name: cm}"));
    platform.apply(&yaml::<MailCluster>(&with_cert_manager)).await;
    let issuers: Api<DynamicObject> = Api::namespaced_with(
        platform.client.clone(),
        platform.namespace(),
        &kubemail_operator::build::identity::issuer_resource(),
    );
    eventually("the cluster's Issuers", PROMPTLY, || async {
        issuers.get_opt("cm-service-ca").await.unwrap().is_some()
    })
    .await;

    // An issuer, then none: a cert-manager Certificate is made, then deleted.
    let certificates: Api<DynamicObject> = Api::namespaced_with(
        platform.client.clone(),
        platform.namespace(),
        &kubemail_operator::build::domain::certificate_resource(),
    );
    let with_issuer = DOMAIN.replace("  dkim: {algorithm: Ed25519}\n", "  tls: {issuerRef: {name: letsencrypt}}\n");
    platform.apply(&yaml::<MailDomain>(&with_issuer)).await;
    eventually("the Certificate exists", PROMPTLY, || async {
        certificates.get_opt("op-test").await.unwrap().is_some()
    })
    .await;
    platform.apply(&yaml::<MailDomain>(DOMAIN)).await;
    platform.wait_for_domain("CertificateReady", "True", "SelfSigned").await;
    eventually("the Certificate is deleted", PROMPTLY, || async {
        certificates.get_opt("op-test").await.unwrap().is_none()
    })
    .await;

    // A mailbox made, changed, its usage refreshed, and deleted.
    platform.apply(&yaml::<Mailbox>(ALICE)).await;
    platform.wait_for_mailbox("alice", "True", "AccountReady").await;
    platform.mailstore.deliver("alice@op.test", b"Subject: usage\r\n\r\nbody\r\n").await;
    eventually("the usage is refreshed", PROMPTLY, || async {
        platform.alice().await.and_then(|m| m.status?.usage?.messages) == Some(1)
    })
    .await;
    platform.apply(&yaml::<Mailbox>(&format!("{ALICE}  suspended: true\n"))).await;
    platform.wait_for_mailbox("alice", "True", "Suspended").await;
    platform.delete::<Mailbox>("alice").await;
    eventually("the Mailbox is gone", PROMPTLY, || async { platform.alice().await.is_none() }).await;

    let user = service_account_user(platform.namespace(), &platform.release.service_account());
    let requests = requests_of(&user);
    let forbidden: Vec<&Request> = requests.iter().filter(|request| request.code == 403).collect();
    assert!(forbidden.is_empty(), "the API server refused the operator: {forbidden:#?}");
    let used = used(&requests);

    // The rules helm installed, as the API server holds them.
    let name = platform.release.service_account();
    let cluster_role = Api::<ClusterRole>::all(platform.client.clone()).get(&name).await.unwrap();
    let role = platform.api::<Role>().get(&name).await.unwrap();
    let unused: Vec<_> = granted(&cluster_role.rules.unwrap_or_default())
        .union(&granted(&role.rules.unwrap_or_default()))
        .filter(|grant| !used.contains(*grant))
        .cloned()
        .collect();
    assert!(unused.is_empty(), "granted but never used: {unused:#?}\nused: {used:#?}");
}
