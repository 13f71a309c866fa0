//! The namespaced mode: the chart with `operator.watchNamespaces` gives the operator a Role in
//! each listed namespace and no ClusterRole. Acting as that ServiceAccount and watching those
//! namespaces, the operator runs a platform in each of them, never touches another namespace,
//! and none of its requests is forbidden.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::cluster::{self, Operator, Release, TestNamespace, eventually, kubectl, requests_of, service_account_user};
use common::platform::{ALICE, CLUSTER, DOMAIN, PROMPTLY, apply_in, has_condition, secret, yaml};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::Api;
use kubemail_operator::build::cluster::names;
use kubemail_operator::crd::{MailCluster, MailDomain, Mailbox};
use kubemail_proto::admin::GetAccountRequest;
use kubemail_testkit::mailstore::Mailstore;

/// Whether `user` may `verb` `resource` in `namespace` (`None`: in every namespace).
fn can(user: &str, verb: &str, resource: &str, namespace: Option<&str>) -> bool {
    let scope = match namespace {
        Some(namespace) => vec!["-n", namespace],
        None => vec!["--all-namespaces"],
    };
    let answer = kubectl(&[&["auth", "can-i", verb, resource, "--as", user][..], &scope].concat());
    String::from_utf8_lossy(&answer.stdout).trim() == "yes"
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_works_with_roles_in_its_namespaces_only() {
    let client = cluster::client().await;
    cluster::install_crds(&client).await;
    let home = TestNamespace::create(&client, "ns-home").await;
    let teams = [TestNamespace::create(&client, "ns-team").await, TestNamespace::create(&client, "ns-team").await];
    let elsewhere = TestNamespace::create(&client, "ns-other").await;
    let watched = format!("{},{}", teams[0].name, teams[1].name);
    let release = Release::install(
        &home.name,
        &home.name,
        &["--set", "operator.replicas=0", "--set", &format!("operator.watchNamespaces={{{watched}}}")],
    );
    let user = service_account_user(&home.name, &release.service_account());

    // Rights in the listed namespaces, and nowhere else.
    let bindings = Api::<ClusterRoleBinding>::all(client.clone()).list(&Default::default()).await.unwrap();
    let bound = bindings.items.iter().filter(|binding| {
        binding.subjects.iter().flatten().any(|subject| {
            subject.name == release.service_account() && subject.namespace.as_deref() == Some(&home.name)
        })
    });
    assert_eq!(bound.count(), 0, "no ClusterRoleBinding names the operator");
    for team in &teams {
        assert!(can(&user, "create", "deployments", Some(&team.name)), "its Role in {}", team.name);
        assert!(can(&user, "watch", "secrets", Some(&team.name)));
    }
    assert!(!can(&user, "create", "deployments", Some(&elsewhere.name)));
    assert!(!can(&user, "list", "secrets", Some(&elsewhere.name)));
    assert!(!can(&user, "list", "mailboxes.kubemail.io", None), "no list across the cluster");

    let db = kubemail_mailstore::Db::connect(&kubemail_testkit::postgres_database().await, 4).await.unwrap();
    let mailstore = Mailstore::start_on(db, Arc::new(kubemail_runtime::local::LocalEventBus::new(64))).await;
    let _operator = Operator::start_watching(
        &home.name,
        &release.service_account(),
        &watched,
        &format!("http://{}", mailstore.admin_address),
        &[],
    );

    // A platform in each watched namespace, each with its own domain, and one elsewhere.
    let domains = ["op.test", "team.test"];
    for (team, domain) in teams.iter().zip(domains) {
        apply_in(&client, &team.name, &yaml::<MailCluster>(CLUSTER)).await;
        apply_in(&client, &team.name, &secret("mail-db-app", "uri", "postgres://mail")).await;
        apply_in(&client, &team.name, &yaml::<MailDomain>(&DOMAIN.replace("op.test", domain))).await;
        apply_in(&client, &team.name, &secret("alice-password", "password", "a password")).await;
        apply_in(&client, &team.name, &yaml::<Mailbox>(&ALICE.replace("op.test", domain))).await;
    }
    apply_in(&client, &elsewhere.name, &yaml::<MailCluster>(CLUSTER)).await;

    for (team, domain) in teams.iter().zip(domains) {
        let mailboxes: Api<Mailbox> = Api::namespaced(client.clone(), &team.name);
        eventually(&format!("alice@{domain} in {} is Ready", team.name), PROMPTLY * 2, || async {
            mailboxes
                .get_opt("alice")
                .await
                .unwrap()
                .and_then(|mailbox| mailbox.status)
                .is_some_and(|status| has_condition(&status.conditions, "Ready", "True", "AccountReady"))
        })
        .await;
        let request = GetAccountRequest { address: format!("alice@{domain}") };
        let account = mailstore.admin.clone().get_account(request).await.expect("the account is in the mailstore");
        assert_eq!(account.into_inner().address, format!("alice@{domain}"));
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &team.name);
        assert!(secrets.get_opt(&names::service_ca("mail")).await.unwrap().is_some(), "its service CA");
    }

    // The namespace it does not watch: untouched.
    let other: Api<MailCluster> = Api::namespaced(client.clone(), &elsewhere.name);
    assert_eq!(other.get("mail").await.unwrap().status, None, "a MailCluster outside its namespaces has no status");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &elsewhere.name);
    assert!(secrets.get_opt(&names::service_ca("mail")).await.unwrap().is_none());

    let requests = requests_of(&user);
    assert!(!requests.is_empty(), "the audit log has the operator's requests");
    let forbidden: Vec<_> = requests.iter().filter(|request| request.code == 403).collect();
    assert!(forbidden.is_empty(), "forbidden: {forbidden:?}");
    let namespaces: BTreeSet<&str> = requests.iter().map(|request| request.namespace.as_str()).collect();
    let allowed = BTreeSet::from([home.name.as_str(), teams[0].name.as_str(), teams[1].name.as_str()]);
    assert!(namespaces.is_subset(&allowed), "requests outside its namespaces: {namespaces:?}");
}
