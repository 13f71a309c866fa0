//! The reconcilers against a mocked Kubernetes API server and a real mailstore on PostgreSQL:
//! create, update, Secret rotation, deletion under each policy, the mailstore down, specs that
//! cannot be carried out.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{FakeApi, path, path_of, reconcile};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::controller::Action;
use kubemail_operator::context::Context;
use kubemail_operator::controller::{cluster, domain, mailbox};
use kubemail_operator::crd::{MailCluster, MailDomain, Mailbox};
use kubemail_proto::admin::admin_client::AdminClient;
use kubemail_proto::admin::{GetAccountRequest, ListAliasesRequest, ListDomainsRequest};
use kubemail_proto::mailstore::AuthenticateRequest;
use kubemail_proto::mailstore::mail_store_client::MailStoreClient;
use kubemail_testkit::mailstore::Mailstore;
use serde_json::json;
use tonic::transport::Channel;

const CLUSTER: &str = "
apiVersion: kubemail.io/v1alpha1
kind: MailCluster
metadata: {name: mail, namespace: mx}
spec:
  hostname: mx.op.test
  database: {uriSecretRef: {name: mail-db-app, key: uri}}
  nats: {url: 'nats://nats:4222'}
";

const DOMAIN: &str = "
apiVersion: kubemail.io/v1alpha1
kind: MailDomain
metadata: {name: op-test, namespace: mx}
spec:
  clusterRef: {name: mail}
  domain: op.test
  defaultQuota: {storage: 1Gi, messages: 1000}
  catchAll: postmaster
  dkim: {algorithm: Ed25519}
";

const ALICE: &str = "
apiVersion: kubemail.io/v1alpha1
kind: Mailbox
metadata: {name: alice, namespace: mx}
spec:
  address: alice@op.test
  passwordSecretRef: {name: alice-password, key: password}
  quota: {storage: 10Mi}
  aliases: [al@op.test]
";

fn secret(name: &str, key: &str, value: &str) -> Secret {
    Secret {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some("mx".into()), ..Default::default() },
        data: Some(BTreeMap::from([(key.to_string(), ByteString(value.as_bytes().to_vec()))])),
        ..Default::default()
    }
}

fn yaml<K: serde::de::DeserializeOwned>(text: &str) -> K {
    serde_yaml::from_str(text).unwrap()
}

struct World {
    fake: FakeApi,
    ctx: Arc<Context>,
    mailstore: Mailstore,
}

/// Every call a scenario made is one the operator's ClusterRole allows.
impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        for (group, resource, verb) in self.fake.permissions() {
            assert!(
                kubemail_operator::rbac::allows(&group, &resource, &verb, false),
                "the ClusterRole does not allow {verb} on {group}/{resource}"
            );
        }
    }
}

impl World {
    /// A fake API server holding the cluster, the domain and alice's password, and an empty
    /// mailstore (but for the test fixture's own domains) on PostgreSQL.
    async fn new() -> World {
        let db = kubemail_mailstore::Db::connect(&kubemail_testkit::postgres_database().await, 4).await.unwrap();
        let mailstore = Mailstore::start_on(db, Arc::new(kubemail_runtime::local::LocalEventBus::new(64))).await;
        let (client, fake) = FakeApi::start();
        let ctx = FakeApi::context(client, &format!("http://{}", mailstore.address));
        fake.put(&yaml::<MailCluster>(CLUSTER));
        fake.put(&secret("mail-db-app", "uri", "postgres://mail"));
        fake.put(&yaml::<MailDomain>(DOMAIN));
        fake.put(&secret("alice-password", "password", "first password"));
        World { fake, ctx, mailstore }
    }

    fn admin(&self) -> AdminClient<Channel> {
        self.mailstore.admin.clone()
    }

    async fn logs_in(&self, address: &str, password: &str) -> bool {
        let request = AuthenticateRequest { username: address.into(), password: password.into() };
        MailStoreClient::new(self.mailstore.channel.clone()).authenticate(request).await.is_ok()
    }

    async fn reconcile_domain(&self) -> Action {
        reconcile(&self.fake, &domain_path(), &self.ctx, domain::reconcile).await.unwrap()
    }

    async fn reconcile_alice(&self) -> Result<Action, kubemail_operator::Error> {
        reconcile(&self.fake, &alice_path(), &self.ctx, mailbox::reconcile).await
    }

    fn alice(&self) -> Mailbox {
        self.fake.get(&alice_path()).expect("alice's Mailbox")
    }
}

fn domain_path() -> String {
    path(&yaml::<MailDomain>(DOMAIN))
}

fn alice_path() -> String {
    path(&yaml::<Mailbox>(ALICE))
}

fn condition<'a>(
    conditions: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> (&'a str, &'a str) {
    let condition =
        conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("no {type_}: {conditions:?}"));
    (condition.status.as_str(), condition.reason.as_str())
}

#[tokio::test]
async fn a_domain_is_registered_with_its_dkim_key_certificate_and_dns_records() {
    let world = World::new().await;
    world.reconcile_domain().await;

    let domains = world.admin().list_domains(ListDomainsRequest {}).await.unwrap().into_inner().domains;
    let registered = domains.iter().find(|d| d.name == "op.test").expect("op.test registered in the mailstore");
    assert_eq!(registered.default_quota_storage, 1 << 30);
    assert_eq!(registered.default_quota_messages, 1000);
    assert_eq!(registered.catch_all, "postmaster@op.test");

    let domain: MailDomain = world.fake.get(&domain_path()).unwrap();
    assert!(
        domain.metadata.finalizers.as_ref().unwrap().contains(&kubemail_operator::controller::FINALIZER.to_string())
    );
    let status = domain.status.clone().unwrap();
    assert_eq!(condition(&status.conditions, "Ready"), ("True", "Ready"));
    assert_eq!(condition(&status.conditions, "CertificateReady"), ("True", "SelfSigned"));
    assert_eq!(condition(&status.conditions, "Registered").0, "True");
    assert_eq!(status.observed_generation, Some(1));

    // The DKIM record published is the key in the Secret the delivery queue mounts.
    let dkim: Secret = world.fake.get(&path_of("v1", "Secret", "mx", "op-test-dkim")).expect("DKIM Secret");
    let pem = String::from_utf8(dkim.data.as_ref().unwrap()["dkim.key"].0.clone()).unwrap();
    let value = kubemail_operator::keys::DkimKey { pem: pem.clone() }.dns_value().unwrap();
    let record = status.dns_records.iter().find(|r| r.name == "kubemail._domainkey.op.test").unwrap();
    assert_eq!(record.value, value);
    assert!(value.starts_with("v=DKIM1; k=ed25519; "), "{value}");
    let mx = status.dns_records.iter().find(|r| r.type_ == "MX").unwrap();
    assert_eq!((mx.name.as_str(), mx.value.as_str()), ("op.test", "10 mx.op.test."));
    let tls: Secret = world.fake.get(&path_of("v1", "Secret", "mx", "op-test-tls")).expect("TLS Secret");
    assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));

    // Reconciling again keeps the key and the certificate: nothing is made twice.
    world.reconcile_domain().await;
    let again: Secret = world.fake.get(&path_of("v1", "Secret", "mx", "op-test-dkim")).unwrap();
    assert_eq!(String::from_utf8(again.data.unwrap()["dkim.key"].0.clone()).unwrap(), pem);
    let tls_again: Secret = world.fake.get(&path_of("v1", "Secret", "mx", "op-test-tls")).unwrap();
    assert_eq!(tls_again.data, tls.data);
    assert_eq!(
        world.fake.events().iter().filter(|e| e.starts_with("DkimKeyCreated")).count(),
        1,
        "{:?}",
        world.fake.events()
    );
}

#[tokio::test]
async fn an_issuer_is_asked_through_cert_manager() {
    let world = World::new().await;
    let with_issuer = DOMAIN
        .replace("  dkim: {algorithm: Ed25519}\n", "  tls: {issuerRef: {name: letsencrypt, kind: ClusterIssuer}}\n");
    world.fake.put(&yaml::<MailDomain>(&with_issuer));

    // Without cert-manager the condition says so.
    world.reconcile_domain().await;
    let status = world.fake.get::<MailDomain>(&domain_path()).unwrap().status.unwrap();
    assert_eq!(condition(&status.conditions, "CertificateReady"), ("False", "CertManagerNotInstalled"));
    assert_eq!(condition(&status.conditions, "Ready"), ("False", "CertManagerNotInstalled"));

    *world.fake.cert_manager.lock().unwrap() = true;
    world.reconcile_domain().await;
    let certificate_path = path_of("cert-manager.io/v1", "Certificate", "mx", "op-test");
    let certificate = world.fake.value(&certificate_path).expect("a Certificate");
    assert_eq!(certificate["spec"]["issuerRef"]["kind"], "ClusterIssuer");
    assert_eq!(certificate["spec"]["secretName"], "op-test-tls");
    let status = world.fake.get::<MailDomain>(&domain_path()).unwrap().status.unwrap();
    assert_eq!(condition(&status.conditions, "CertificateReady"), ("False", "Requested"));

    world.fake.set_status(&certificate_path, json!({"conditions": [{"type": "Ready", "status": "True"}]}));
    world.reconcile_domain().await;
    let status = world.fake.get::<MailDomain>(&domain_path()).unwrap().status.unwrap();
    assert_eq!(condition(&status.conditions, "CertificateReady"), ("True", "Issued"));
    assert_eq!(condition(&status.conditions, "Ready").0, "True");

    // Without the issuer again, cert-manager stops managing the Secret and the operator signs.
    world.fake.put(&yaml::<MailDomain>(DOMAIN));
    world.reconcile_domain().await;
    assert!(world.fake.value(&certificate_path).is_none());
    let status = world.fake.get::<MailDomain>(&domain_path()).unwrap().status.unwrap();
    assert_eq!(condition(&status.conditions, "CertificateReady"), ("True", "SelfSigned"));
    assert!(world.fake.value(&path_of("v1", "Secret", "mx", "op-test-tls")).is_some());
}

#[tokio::test]
async fn a_mailbox_becomes_an_account_whose_usage_and_quota_round_trip() {
    let world = World::new().await;
    world.reconcile_domain().await;
    world.fake.put(&yaml::<Mailbox>(ALICE));
    world.reconcile_alice().await.unwrap();

    assert!(world.logs_in("alice@op.test", "first password").await);
    let mut admin = world.admin();
    let account = admin.get_account(GetAccountRequest { address: "alice@op.test".into() }).await.unwrap().into_inner();
    assert_eq!((account.quota_storage, account.quota_messages), (10 << 20, 1000), "own storage, the domain's messages");
    let aliases = admin.list_aliases(ListAliasesRequest { domain: "op.test".into() }).await.unwrap().into_inner();
    assert_eq!(
        aliases.aliases.iter().map(|a| (a.address.as_str(), a.target.as_str())).collect::<Vec<_>>(),
        [("al@op.test", "alice@op.test")]
    );

    // Mail delivered shows up as usage in the status at the next reconcile.
    let message = b"From: someone@example.net\r\nSubject: hi\r\n\r\nhello\r\n";
    world.mailstore.deliver("alice@op.test", message).await;
    world.mailstore.deliver("al@op.test", message).await;
    let action = world.reconcile_alice().await.unwrap();
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(300)), "usage is refreshed every few minutes");
    let status = world.alice().status.unwrap();
    assert_eq!(condition(&status.conditions, "Ready"), ("True", "AccountReady"));
    let usage = status.usage.unwrap();
    assert_eq!(usage.messages, Some(2));
    assert_eq!(usage.storage_bytes, Some(2 * message.len() as u64));
    let quota = status.quota.unwrap();
    assert_eq!(
        (quota.storage.as_deref(), quota.storage_bytes, quota.messages),
        (Some("10Mi"), Some(10 << 20), Some(1000))
    );
}

#[tokio::test]
async fn an_update_changes_the_quota_suspension_and_aliases() {
    let world = World::new().await;
    world.reconcile_domain().await;
    world.fake.put(&yaml::<Mailbox>(ALICE));
    world.reconcile_alice().await.unwrap();

    let updated = ALICE
        .replace("quota: {storage: 10Mi}", "quota: {storage: 20Mi, messages: 50}")
        .replace("[al@op.test]", "[alice.l@op.test]");
    world.fake.put(&yaml::<Mailbox>(&format!("{updated}  suspended: true\n")));
    world.reconcile_alice().await.unwrap();
    let mut admin = world.admin();
    let account = admin.get_account(GetAccountRequest { address: "alice@op.test".into() }).await.unwrap().into_inner();
    assert_eq!((account.quota_storage, account.quota_messages, account.suspended), (20 << 20, 50, true));
    let aliases =
        admin.list_aliases(ListAliasesRequest { domain: "op.test".into() }).await.unwrap().into_inner().aliases;
    assert_eq!(aliases.iter().map(|a| a.address.as_str()).collect::<Vec<_>>(), ["alice.l@op.test"]);
    let status = world.alice().status.unwrap();
    assert_eq!(condition(&status.conditions, "Ready"), ("True", "Suspended"));
    assert_eq!(status.observed_generation, Some(2));
}

#[tokio::test]
async fn a_rotated_password_secret_is_set_again() {
    let world = World::new().await;
    world.reconcile_domain().await;
    world.fake.put(&yaml::<Mailbox>(ALICE));
    world.reconcile_alice().await.unwrap();
    assert!(world.logs_in("alice@op.test", "first password").await);

    world.fake.put(&secret("alice-password", "password", "second password\n"));
    world.reconcile_alice().await.unwrap();
    assert!(world.logs_in("alice@op.test", "second password").await, "the trailing newline is not part of it");
    assert!(!world.logs_in("alice@op.test", "first password").await);
    let version = world.alice().status.unwrap().password_secret_version;
    let secret: Secret = world.fake.get(&path_of("v1", "Secret", "mx", "alice-password")).unwrap();
    assert_eq!(version, secret.metadata.resource_version);
}

#[tokio::test]
async fn deleting_a_retained_mailbox_suspends_the_account_and_keeps_its_mail() {
    let world = World::new().await;
    world.reconcile_domain().await;
    world.fake.put(&yaml::<Mailbox>(ALICE));
    world.reconcile_alice().await.unwrap();
    world.mailstore.deliver("alice@op.test", b"Subject: keep me\r\n\r\nbody\r\n").await;

    world.fake.delete(&alice_path());
    world.reconcile_alice().await.unwrap();
    assert!(world.fake.value(&alice_path()).is_none(), "the finalizer is released and the Mailbox goes");
    let account =
        world.admin().get_account(GetAccountRequest { address: "alice@op.test".into() }).await.unwrap().into_inner();
    assert!(account.suspended);
    assert_eq!(account.used_messages, 1, "its mail is kept");
    assert!(!world.logs_in("alice@op.test", "first password").await);
    assert!(world.fake.events().iter().any(|e| e.starts_with("AccountRetained")), "{:?}", world.fake.events());

    // The domain cannot leave the mailstore while the account is in it; its resource can.
    world.fake.delete(&domain_path());
    world.reconcile_domain().await;
    assert!(world.fake.value(&domain_path()).is_none());
    let domains = world.admin().list_domains(ListDomainsRequest {}).await.unwrap().into_inner().domains;
    assert!(domains.iter().any(|d| d.name == "op.test"), "op.test stays while it holds an account");
    assert!(world.fake.events().iter().any(|e| e.starts_with("DomainRetained")), "{:?}", world.fake.events());
}

#[tokio::test]
async fn deleting_a_mailbox_with_the_delete_policy_removes_the_account_then_the_domain() {
    let world = World::new().await;
    world.reconcile_domain().await;
    world.fake.put(&yaml::<Mailbox>(&format!("{ALICE}  deletionPolicy: Delete\n")));
    world.reconcile_alice().await.unwrap();
    world.mailstore.deliver("alice@op.test", b"Subject: bye\r\n\r\nbody\r\n").await;

    world.fake.delete(&alice_path());
    world.reconcile_alice().await.unwrap();
    assert!(world.fake.value(&alice_path()).is_none());
    let gone = world.admin().get_account(GetAccountRequest { address: "alice@op.test".into() }).await.unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);

    world.fake.delete(&domain_path());
    world.reconcile_domain().await;
    let domains = world.admin().list_domains(ListDomainsRequest {}).await.unwrap().into_inner().domains;
    assert!(!domains.iter().any(|d| d.name == "op.test"), "an empty domain leaves the mailstore with its resource");
}

#[tokio::test]
async fn with_the_mailstore_down_conditions_say_so_and_nothing_is_deleted() {
    let world = World::new().await;
    world.reconcile_domain().await;
    world.fake.put(&yaml::<Mailbox>(ALICE));
    world.reconcile_alice().await.unwrap();
    world.mailstore.stop();

    let action = world.reconcile_alice().await.unwrap();
    assert_eq!(action, Action::requeue(std::time::Duration::from_secs(30)));
    let status = world.alice().status.unwrap();
    assert_eq!(condition(&status.conditions, "Ready"), ("False", "MailstoreUnavailable"));
    assert_eq!(status.usage.unwrap().messages, Some(0), "the last usage known is kept");

    world.reconcile_domain().await;
    let domain = world.fake.get::<MailDomain>(&domain_path()).unwrap().status.unwrap();
    assert_eq!(condition(&domain.conditions, "Registered"), ("False", "MailstoreUnavailable"));

    // Deleting while the mailstore cannot be told fails the reconcile (retried later) and
    // keeps the finalizer: the account is not left active behind a deleted resource.
    world.fake.delete(&alice_path());
    assert!(world.reconcile_alice().await.is_err());
    assert!(world.fake.value(&alice_path()).is_some());
    assert!(!world.fake.requests().iter().any(|r| r.starts_with("DELETE")), "{:?}", world.fake.requests());
}

#[tokio::test]
async fn what_cannot_be_done_is_a_condition_that_waits_for_a_change() {
    let world = World::new().await;
    world.reconcile_domain().await;

    // A domain no MailDomain serves.
    world.fake.put(&yaml::<Mailbox>(
        &ALICE.replace("alice@op.test", "alice@elsewhere.test").replace("al@op.test", "al@elsewhere.test"),
    ));
    assert_eq!(world.reconcile_alice().await.unwrap(), Action::await_change());
    assert_eq!(condition(&world.alice().status.unwrap().conditions, "Ready"), ("False", "DomainNotFound"));

    // A password Secret that does not exist.
    world.fake.put(&yaml::<Mailbox>(&ALICE.replace("alice-password", "missing")));
    assert_eq!(world.reconcile_alice().await.unwrap(), Action::await_change());
    assert_eq!(condition(&world.alice().status.unwrap().conditions, "Ready"), ("False", "PasswordSecretNotFound"));

    // An alias the mailstore refuses (another account's address).
    world.fake.put(&secret("bob-password", "password", "bob's"));
    world.fake.put(&yaml::<Mailbox>(
        &ALICE
            .replace("name: alice,", "name: bob,")
            .replace("alice@op.test", "bob@op.test")
            .replace("alice-password", "bob-password")
            .replace("[al@op.test]", "[]"),
    ));
    reconcile(&world.fake, &path_of("kubemail.io/v1alpha1", "Mailbox", "mx", "bob"), &world.ctx, mailbox::reconcile)
        .await
        .unwrap();
    world.fake.put(&yaml::<Mailbox>(&ALICE.replace("[al@op.test]", "[bob@op.test]")));
    assert_eq!(world.reconcile_alice().await.unwrap(), Action::await_change());
    let status = world.alice().status.unwrap();
    assert_eq!(condition(&status.conditions, "Ready"), ("False", "MailstoreRefused"));
    assert!(world.fake.events().iter().any(|e| e.starts_with("MailstoreRefused")), "{:?}", world.fake.events());

    // A domain whose cluster does not exist.
    world.fake.put(&yaml::<MailDomain>(&DOMAIN.replace("clusterRef: {name: mail}", "clusterRef: {name: nowhere}")));
    assert_eq!(world.reconcile_domain().await, Action::await_change());
    let status = world.fake.get::<MailDomain>(&domain_path()).unwrap().status.unwrap();
    assert_eq!(condition(&status.conditions, "Ready"), ("False", "ClusterNotFound"));
}

#[tokio::test]
async fn a_cluster_becomes_its_workloads_and_reports_their_readiness() {
    let world = World::new().await;
    let cluster_path = path(&yaml::<MailCluster>(CLUSTER));
    reconcile(&world.fake, &cluster_path, &world.ctx, cluster::reconcile).await.unwrap();
    let deployments = world.fake.paths("/apis/apps/v1/namespaces/mx/deployments/");
    assert_eq!(deployments.len(), 4, "{deployments:?}");
    assert_eq!(world.fake.paths("/api/v1/namespaces/mx/services/").len(), 4);
    assert_eq!(world.fake.paths("/apis/policy/v1/namespaces/mx/poddisruptionbudgets/").len(), 4);
    assert!(world.fake.value(&path_of("v1", "ConfigMap", "mx", "mail-config")).is_some());
    let status = world.fake.get::<MailCluster>(&cluster_path).unwrap().status.unwrap();
    assert_eq!(condition(&status.conditions, "Ready"), ("False", "ComponentsNotReady"));
    assert_eq!(status.components.imap_frontend.summary, "0/2");

    // The domains naming the cluster are mounted into its pods.
    let imap_path = path_of("apps/v1", "Deployment", "mx", "mail-imap-frontend");
    let imap: Deployment = world.fake.get(&imap_path).unwrap();
    let volumes = imap.spec.unwrap().template.spec.unwrap().volumes.unwrap();
    let sources = volumes[0].projected.as_ref().unwrap().sources.as_ref().unwrap();
    assert_eq!(sources[0].secret.as_ref().unwrap().name, "op-test-tls");

    // Ready once every Deployment is.
    for deployment in &deployments {
        world.fake.set_status(deployment, json!({"readyReplicas": 2, "replicas": 2}));
    }
    reconcile(&world.fake, &cluster_path, &world.ctx, cluster::reconcile).await.unwrap();
    let status = world.fake.get::<MailCluster>(&cluster_path).unwrap().status.unwrap();
    assert_eq!(condition(&status.conditions, "Ready"), ("True", "AllComponentsReady"));
    assert_eq!(condition(&status.conditions, "Degraded").0, "False");
    assert_eq!(status.components.smtp_ingress.summary, "2/2");

    // Autoscaling on: an HPA and no replica count in what is applied; off again: the HPA goes.
    let autoscaled = format!(
        "{CLUSTER}  imapFrontend:\n    autoscaling: {{minReplicas: 2, maxReplicas: 6, targetCPUUtilization: 60}}\n"
    );
    world.fake.put(&yaml::<MailCluster>(&autoscaled));
    reconcile(&world.fake, &cluster_path, &world.ctx, cluster::reconcile).await.unwrap();
    let hpa_path = path_of("autoscaling/v2", "HorizontalPodAutoscaler", "mx", "mail-imap-frontend");
    assert_eq!(world.fake.value(&hpa_path).unwrap()["spec"]["maxReplicas"], 6);
    let applied = world.fake.last_applied(&imap_path).unwrap();
    assert!(applied["spec"].get("replicas").is_none(), "the autoscaler owns the count: {}", applied["spec"]);
    let smtp = world.fake.last_applied(&path_of("apps/v1", "Deployment", "mx", "mail-smtp-ingress")).unwrap();
    assert_eq!(smtp["spec"]["replicas"], 2);
    world.fake.put(&yaml::<MailCluster>(CLUSTER));
    reconcile(&world.fake, &cluster_path, &world.ctx, cluster::reconcile).await.unwrap();
    assert!(world.fake.value(&hpa_path).is_none());

    // A missing database Secret is named.
    world.fake.delete(&path_of("v1", "Secret", "mx", "mail-db-app"));
    reconcile(&world.fake, &cluster_path, &world.ctx, cluster::reconcile).await.unwrap();
    let status = world.fake.get::<MailCluster>(&cluster_path).unwrap().status.unwrap();
    assert_eq!(condition(&status.conditions, "Degraded"), ("True", "DatabaseSecretNotFound"));
    assert!(world.fake.events().iter().any(|e| e.starts_with("DatabaseSecretNotFound")), "{:?}", world.fake.events());
}

/// The whole life of a platform: every rule of the ClusterRole is needed by some call (or by a
/// watch, or by leader election), and every call is allowed.
#[tokio::test]
async fn the_cluster_role_is_what_the_reconcilers_use() {
    let world = World::new().await;
    let cluster_path = path(&yaml::<MailCluster>(CLUSTER));
    let autoscaled = format!(
        "{CLUSTER}  imapFrontend:\n    autoscaling: {{minReplicas: 2, maxReplicas: 6, targetCPUUtilization: 60}}\n"
    );
    world.fake.put(&yaml::<MailCluster>(&autoscaled));
    reconcile(&world.fake, &cluster_path, &world.ctx, cluster::reconcile).await.unwrap();
    world.fake.put(&yaml::<MailCluster>(CLUSTER));
    reconcile(&world.fake, &cluster_path, &world.ctx, cluster::reconcile).await.unwrap();
    *world.fake.cert_manager.lock().unwrap() = true;
    let with_issuer = DOMAIN.replace("  dkim: {algorithm: Ed25519}\n", "  tls: {issuerRef: {name: letsencrypt}}\n");
    world.fake.put(&yaml::<MailDomain>(&with_issuer));
    world.reconcile_domain().await;
    world.fake.put(&yaml::<MailDomain>(DOMAIN));
    world.reconcile_domain().await;
    world.fake.put(&yaml::<Mailbox>(ALICE));
    world.reconcile_alice().await.unwrap();
    world.reconcile_alice().await.unwrap();
    world.fake.delete(&alice_path());
    world.reconcile_alice().await.unwrap();

    let used = world.fake.permissions();
    let watched = |group: &str, resource: &str| kubemail_operator::rbac::WATCHED.contains(&(group, resource));
    for rule in kubemail_operator::rbac::cluster_rules() {
        let group = &rule.api_groups.as_ref().unwrap()[0];
        for resource in rule.resources.as_ref().unwrap() {
            for verb in &rule.verbs {
                let needed = used.contains(&(group.clone(), resource.clone(), verb.clone()))
                    || (verb == "list" || verb == "watch") && watched(group, resource);
                assert!(needed, "the ClusterRole grants {verb} on {group}/{resource}, which nothing uses");
            }
        }
    }
}

/// Polls `check` until it holds, for up to 20 seconds.
async fn eventually<F: Future<Output = bool>>(what: &str, check: impl Fn() -> F) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !check().await {
        assert!(std::time::Instant::now() < deadline, "not within 20 s: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The controllers themselves, watching the mocked API server: resources come to life and
/// every watch follows the changes that concern it.
#[tokio::test(flavor = "multi_thread")]
async fn the_controllers_follow_the_resources_and_what_they_refer_to() {
    let world = World::new().await;
    let shutdown = kubemail_runtime::shutdown::Shutdown::new();
    let running = tokio::spawn(kubemail_operator::controller::run(world.ctx.clone(), shutdown.clone()));
    world.fake.put(&yaml::<Mailbox>(ALICE));

    // The mailbox needs its domain registered first; the domain's change wakes it again.
    eventually("alice can log in", || world.logs_in("alice@op.test", "first password")).await;
    let cluster_path = path(&yaml::<MailCluster>(CLUSTER));
    eventually("the cluster's Deployments exist", || async {
        world.fake.paths("/apis/apps/v1/namespaces/mx/deployments/").len() == 4
    })
    .await;

    // A rotated password Secret wakes the Mailbox.
    world.fake.put(&secret("alice-password", "password", "rotated password"));
    eventually("the rotated password works", || world.logs_in("alice@op.test", "rotated password")).await;

    // A changed domain wakes its Mailboxes: alice names no message quota of her own.
    world.fake.put(&yaml::<MailDomain>(&DOMAIN.replace("messages: 1000", "messages: 2000")));
    eventually("alice's message quota follows the domain's default", || async {
        let request = GetAccountRequest { address: "alice@op.test".into() };
        world.admin().get_account(request).await.is_ok_and(|account| account.into_inner().quota_messages == 2000)
    })
    .await;

    // A new domain of the cluster wakes the cluster: its certificate is mounted into the pods.
    world.fake.put(&yaml::<MailDomain>(
        &DOMAIN.replace("name: op-test", "name: second-test").replace("domain: op.test", "domain: second.test"),
    ));
    let imap_path = path_of("apps/v1", "Deployment", "mx", "mail-imap-frontend");
    eventually("the second domain's certificate is mounted", || async {
        let imap: Deployment = world.fake.get(&imap_path).unwrap();
        let volumes = imap.spec.unwrap().template.spec.unwrap().volumes.unwrap();
        let sources = volumes[0].projected.clone().unwrap().sources.unwrap();
        sources.iter().any(|source| source.secret.as_ref().is_some_and(|s| s.name == "second-test-tls"))
    })
    .await;

    // The Deployments' own changes wake the cluster.
    for deployment in world.fake.paths("/apis/apps/v1/namespaces/mx/deployments/") {
        world.fake.set_status(&deployment, json!({"readyReplicas": 2, "replicas": 2}));
    }
    eventually("the cluster is Ready", || async {
        let cluster: MailCluster = world.fake.get(&cluster_path).unwrap();
        cluster.status.is_some_and(|status| status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    })
    .await;

    // Deleting the Mailbox suspends the account and lets the resource go.
    world.fake.delete(&alice_path());
    eventually("alice's Mailbox is gone and her account suspended", || async {
        let request = GetAccountRequest { address: "alice@op.test".into() };
        world.fake.value(&alice_path()).is_none()
            && world.admin().get_account(request).await.is_ok_and(|account| account.into_inner().suspended)
    })
    .await;

    shutdown.trigger();
    tokio::time::timeout(std::time::Duration::from_secs(10), running).await.expect("the controllers stop").unwrap();
}
