//! Deletion on a real cluster, with kube-controller-manager's garbage collector and namespace
//! controller: a deleted MailCluster takes its children with it, and a platform whose release
//! is uninstalled and whose namespace is then deleted goes within a minute, with MailDomains
//! and Mailboxes still in it and its mailstore already gone: no finalizer holds it for ever.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{self, Operator, Release, TestNamespace, eventually, kubectl_with_input};
use common::platform::{ALICE, DOMAIN, PROMPTLY, Platform, secret};
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::ListParams;
use kube::{Api, Resource};
use kubemail_operator::crd::{MailCluster, MailDomain, Mailbox};
use kubemail_testkit::mailstore::Mailstore;

/// How many objects of kind `K` the operator made in `namespace`.
async fn children<K>(client: &kube::Client, namespace: &str) -> usize
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let made = ListParams::default().labels("app.kubernetes.io/managed-by=kubemail-operator");
    Api::<K>::namespaced(client.clone(), namespace).list(&made).await.unwrap().items.len()
}

async fn all_children(client: &kube::Client, namespace: &str) -> usize {
    children::<Deployment>(client, namespace).await
        + children::<Service>(client, namespace).await
        + children::<ConfigMap>(client, namespace).await
        + children::<PodDisruptionBudget>(client, namespace).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_mailcluster_takes_its_children_with_it() {
    let platform = Platform::start("collect", &[]).await;
    eventually("the cluster's children exist", PROMPTLY, || async {
        all_children(&platform.client, platform.namespace()).await == 4 + 4 + 1 + 4
    })
    .await;
    platform.delete::<MailCluster>("mail").await;
    eventually("the garbage collector removed them", Duration::from_secs(60), || async {
        all_children(&platform.client, platform.namespace()).await == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn uninstalling_and_deleting_the_namespace_does_not_hang() {
    let client = cluster::client().await;
    cluster::install_crds(&client).await;
    // The operator in a namespace of its own, as the README installs it; the platform in
    // another, from a release of its own.
    let operators = TestNamespace::create(&client, "operators").await;
    let operator_release = Release::install(&operators.name, &operators.name, &["--set", "operator.replicas=0"]);
    let mail = TestNamespace::create(&client, "mail").await;
    let platform_release = Release::install(
        &mail.name,
        &mail.name,
        &["--set", "operator.enabled=false", "--set", "cluster.enabled=true", "--set", "cluster.hostname=mx.op.test"],
    );
    let db = kubemail_mailstore::Db::connect(&kubemail_testkit::postgres_database().await, 4).await.unwrap();
    let mailstore = Mailstore::start_on(db, Arc::new(kubemail_runtime::local::LocalEventBus::new(64))).await;
    let operator = Operator::start_watching(
        &operators.name,
        &operator_release.service_account(),
        &mail.name,
        &format!("http://{}", mailstore.admin_address),
        &[],
    );

    // A domain and a mailbox applied with kubectl, not part of either release.
    for object in [
        serde_yaml::to_string(&secret("mail-db-app", "uri", "postgres://mail")).unwrap(),
        DOMAIN.to_string(),
        serde_yaml::to_string(&secret("alice-password", "password", "pw")).unwrap(),
        ALICE.to_string(),
    ] {
        cluster::succeeded("kubectl apply", kubectl_with_input(&["apply", "-n", &mail.name, "-f", "-"], &object));
    }
    let mailboxes: Api<Mailbox> = Api::namespaced(client.clone(), &mail.name);
    eventually("alice is Ready", PROMPTLY, || async {
        mailboxes
            .get_opt("alice")
            .await
            .unwrap()
            .and_then(|m| m.status)
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
    .await;
    let domains: Api<MailDomain> = Api::namespaced(client.clone(), &mail.name);
    assert!(domains.get("op-test").await.unwrap().metadata.finalizers.is_some_and(|f| !f.is_empty()));

    // The mailstore goes first (its database, say, is deleted with the namespace), then the
    // release, then the namespace.
    mailstore.stop();
    platform_release.uninstall();
    let started = Instant::now();
    cluster::succeeded(
        "kubectl delete namespace",
        cluster::kubectl(&["delete", "namespace", &mail.name, "--wait=false"]),
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    eventually("the namespace is gone", Duration::from_secs(60), || async {
        namespaces.get_opt(&mail.name).await.unwrap().is_none()
    })
    .await;
    eprintln!("the namespace went in {:?}", started.elapsed());
    drop(operator);
}
