//! A platform as a user sets one up, on the test cluster: the chart installed in a namespace of
//! the test's own, a MailCluster, a MailDomain and a Mailbox with their Secrets, a real
//! mailstore on PostgreSQL, and the operator running as the chart's ServiceAccount.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client, Resource};
use kubemail_operator::crd::{MailCluster, MailDomain, Mailbox};
use kubemail_proto::admin::GetAccountRequest;
use kubemail_proto::admin::admin_client::AdminClient;
use kubemail_proto::mailstore::AuthenticateRequest;
use kubemail_proto::mailstore::mail_store_client::MailStoreClient;
use kubemail_testkit::mailstore::Mailstore;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::Channel;

use super::cluster::{self, Operator, Release, TestNamespace, eventually};

pub const CLUSTER: &str = "
apiVersion: kubemail.io/v1alpha1
kind: MailCluster
metadata: {name: mail}
spec:
  hostname: mx.op.test
  database: {uriSecretRef: {name: mail-db-app, key: uri}}
  nats: {url: 'nats://nats:4222'}
";

pub const DOMAIN: &str = "
apiVersion: kubemail.io/v1alpha1
kind: MailDomain
metadata: {name: op-test}
spec:
  clusterRef: {name: mail}
  domain: op.test
  defaultQuota: {storage: 1Gi, messages: 1000}
  catchAll: postmaster
  dkim: {algorithm: Ed25519}
";

pub const ALICE: &str = "
apiVersion: kubemail.io/v1alpha1
kind: Mailbox
metadata: {name: alice}
spec:
  address: alice@op.test
  passwordSecretRef: {name: alice-password, key: password}
  quota: {storage: 10Mi}
  aliases: [al@op.test]
";

/// How long the operator may take to act on a change.
pub const PROMPTLY: Duration = Duration::from_secs(30);

pub fn yaml<K: DeserializeOwned>(text: &str) -> K {
    serde_yaml::from_str(text).unwrap_or_else(|error| panic!("{error}: {text}"))
}

pub fn secret(name: &str, key: &str, value: &str) -> Secret {
    yaml(&format!("apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\nstringData: {{{key}: {value:?}}}\n"))
}

/// Server-side apply of `object` into `namespace`, as a user's `kubectl apply --server-side`
/// does.
pub async fn apply_in<K>(client: &Client, namespace: &str, object: &K)
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap();
    Api::<K>::namespaced(client.clone(), namespace)
        .patch(&name, &PatchParams::apply("kubectl").force(), &Patch::Apply(object))
        .await
        .unwrap_or_else(|error| panic!("apply {} {name} in {namespace}: {error}", K::kind(&())));
}

/// The status and reason of the condition `type_`; panics if there is none.
pub fn condition<'a>(conditions: &'a [Condition], type_: &str) -> (&'a str, &'a str) {
    let condition =
        conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("no {type_}: {conditions:?}"));
    (condition.status.as_str(), condition.reason.as_str())
}

/// Whether `conditions` hold `type_` with `status` and `reason`.
pub fn has_condition(conditions: &[Condition], type_: &str, status: &str, reason: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.status == status && c.reason == reason)
}

pub struct Platform {
    pub client: Client,
    pub mailstore: Mailstore,
    pub release: Release,
    pub operator: Operator,
    // Dropped last: the namespace goes when the test is done.
    pub namespace: TestNamespace,
}

impl Platform {
    /// The chart (its operator's RBAC; no operator pod), the cluster, the domain and alice's
    /// password in a new namespace, an empty mailstore on PostgreSQL, and the operator with
    /// `flags` acting as the chart's ServiceAccount.
    pub async fn start(prefix: &str, flags: &[&str]) -> Platform {
        let client = cluster::client().await;
        cluster::install_crds(&client).await;
        let namespace = TestNamespace::create(&client, prefix).await;
        let release = Release::install(&namespace.name, &namespace.name, &["--set", "operator.replicas=0"]);
        let db = kubemail_mailstore::Db::connect(&kubemail_testkit::postgres_database().await, 4).await.unwrap();
        let mailstore = Mailstore::start_on(db, Arc::new(kubemail_runtime::local::LocalEventBus::new(64))).await;
        let operator = Operator::start(
            &namespace.name,
            &release.service_account(),
            &format!("http://{}", mailstore.admin_address),
            flags,
        );
        let platform = Platform { client, mailstore, release, operator, namespace };
        platform.apply(&yaml::<MailCluster>(CLUSTER)).await;
        platform.apply(&secret("mail-db-app", "uri", "postgres://mail")).await;
        platform.apply(&yaml::<MailDomain>(DOMAIN)).await;
        platform.apply(&secret("alice-password", "password", "first password")).await;
        platform
    }

    pub fn namespace(&self) -> &str {
        &self.namespace.name
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), self.namespace())
    }

    /// Server-side apply of `object` into the namespace, as a user's `kubectl apply
    /// --server-side` does.
    pub async fn apply<K>(&self, object: &K)
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Serialize
            + DeserializeOwned
            + Clone
            + std::fmt::Debug,
    {
        apply_in(&self.client, self.namespace(), object).await
    }

    /// Deletes `name` (its finalizers may hold it).
    pub async fn delete<K>(&self, name: &str)
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + DeserializeOwned + Clone + std::fmt::Debug,
    {
        self.api::<K>().delete(name, &DeleteParams::default()).await.unwrap();
    }

    pub async fn get<K>(&self, name: &str) -> Option<K>
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + DeserializeOwned + Clone + std::fmt::Debug,
    {
        self.api::<K>().get_opt(name).await.unwrap()
    }

    pub async fn alice(&self) -> Option<Mailbox> {
        self.get::<Mailbox>("alice").await
    }

    pub async fn domain(&self) -> Option<MailDomain> {
        self.get::<MailDomain>("op-test").await
    }

    /// Waits until `name`'s Ready condition has `reason` (and the status that goes with it), in
    /// a status written for its current spec.
    pub async fn wait_for_mailbox(&self, name: &str, status: &str, reason: &str) -> Mailbox {
        eventually(&format!("Mailbox {name} is Ready={status} ({reason})"), PROMPTLY, || async {
            self.get::<Mailbox>(name).await.is_some_and(|mailbox| {
                let generation = mailbox.metadata.generation;
                mailbox.status.is_some_and(|s| {
                    s.observed_generation == generation && has_condition(&s.conditions, "Ready", status, reason)
                })
            })
        })
        .await;
        self.get::<Mailbox>(name).await.unwrap()
    }

    /// Waits until the domain's condition `type_` has `status` and `reason`, in a status
    /// written for its current spec.
    pub async fn wait_for_domain(&self, type_: &str, status: &str, reason: &str) -> MailDomain {
        eventually(&format!("MailDomain op-test is {type_}={status} ({reason})"), PROMPTLY, || async {
            self.domain().await.is_some_and(|domain| {
                let generation = domain.metadata.generation;
                domain.status.is_some_and(|s| {
                    s.observed_generation == generation && has_condition(&s.conditions, type_, status, reason)
                })
            })
        })
        .await;
        self.domain().await.unwrap()
    }

    pub fn admin(&self) -> AdminClient<Channel> {
        self.mailstore.admin.clone()
    }

    pub async fn logs_in(&self, address: &str, password: &str) -> bool {
        let request = AuthenticateRequest { username: address.into(), password: password.into() };
        MailStoreClient::new(self.mailstore.channel.clone()).authenticate(request).await.is_ok()
    }

    pub async fn account(&self, address: &str) -> Option<kubemail_proto::admin::Account> {
        let request = GetAccountRequest { address: address.into() };
        self.admin().get_account(request).await.ok().map(|account| account.into_inner())
    }

    /// The reasons of the Events recorded on `name` in the namespace, oldest first.
    pub async fn events_of(&self, name: &str) -> Vec<String> {
        let events: Api<k8s_openapi::api::events::v1::Event> = self.api();
        let mut events: Vec<_> = events
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|event| event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .collect();
        events.sort_by_key(|event| event.metadata.creation_timestamp.clone().map(|t| t.0));
        events.into_iter().filter_map(|event| event.reason).collect()
    }
}
