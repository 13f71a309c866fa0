//! The three controllers, each a reconcile function run by kube's `Controller` with the
//! watches that wake it. Each reconcile calls four functions in order, `validate`, `build`,
//! `apply` and `report_status` (a MailDomain's or Mailbox's only while it is not being deleted).
//!
//! - [`cluster`] — MailClusters; woken by their children (their identity Secrets among them)
//!   and by MailDomains naming them.
//! - [`domain`] — MailDomains; woken by their Secrets and Certificates and by their cluster.
//! - [`mailbox`] — Mailboxes; woken by their password Secrets and by their domain.
//! - [`identity`] — the service identities, the first thing the MailCluster's apply stage
//!   applies.

pub mod cluster;
pub mod domain;
pub mod identity;
pub mod mailbox;

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::DynamicObject;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{self, Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef, Store, reflector};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Resource, ResourceExt};
use kubemail_runtime::shutdown::Shutdown;

use crate::build::MANAGER;
use crate::build::domain::certificate_resource;
use crate::cache::Caches;
use crate::context::{Context, Settings};
use crate::crd::{MailCluster, MailDomain, Mailbox};
use crate::{Error, Result};

/// The finalizer that holds a MailDomain or Mailbox until the mailstore has been told of its
/// deletion.
pub const FINALIZER: &str = "kubemail.io/mailstore";

/// Only the objects the operator made: its children are not every Deployment in the cluster.
fn owned() -> watcher::Config {
    watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}"))
}

/// Runs the controllers of every namespace (`namespaces` empty) or of each of `namespaces`
/// until `shutdown` completes. A watch covers one namespace or all of them, and an operator
/// with Roles in a few namespaces may not watch all: it runs a set of controllers per
/// namespace, each with its own watches and caches.
pub async fn run_in(settings: Settings, namespaces: Vec<String>, shutdown: Shutdown) {
    if namespaces.is_empty() {
        return run(settings, shutdown).await;
    }
    let runs = namespaces
        .into_iter()
        .map(|namespace| run(Settings { watch_namespace: Some(namespace), ..settings.clone() }, shutdown.clone()));
    futures::future::join_all(runs).await;
}

/// Runs the three controllers of `settings.watch_namespace` (or every namespace) until
/// `shutdown` completes.
pub async fn run(settings: Settings, shutdown: Shutdown) {
    let client = settings.client.clone();
    let cert_manager = client.list_api_group_resources("cert-manager.io/v1").await.is_ok();
    if !cert_manager {
        tracing::info!("cert-manager is not installed: MailDomains with an issuerRef will say so");
    }

    // The caches the reconcilers read are filled by the very watches that wake them, so a
    // reconcile never reads a cache older than the change that woke it.
    let every = watcher::Config::default;
    let (clusters_cache, clusters_writer) = reflector::store();
    let clusters_changed = reflector(clusters_writer, watcher(settings.watched::<MailCluster>(), every()))
        .touched_objects()
        .default_backoff();
    let (domains_cache, domains_writer) = reflector::store();
    let domains_changed = reflector(domains_writer, watcher(settings.watched::<MailDomain>(), every()))
        .touched_objects()
        .default_backoff();
    // Metadata only, and of it only names and versions: the operator never holds the data of
    // Secrets it does not read, so its memory does not grow with the cluster's Secrets.
    let (secrets_cache, secrets_writer) = reflector::store();
    let secrets_watch = watcher(settings.watched::<PartialObjectMeta<Secret>>(), every()).modify(name_and_version);
    let secrets_changed = reflector(secrets_writer, secrets_watch).touched_objects().default_backoff();
    let ctx = Arc::new(Context::new(
        &settings,
        Caches { clusters: clusters_cache, domains: domains_cache, secrets: secrets_cache },
    ));

    let clusters = Controller::new(settings.watched::<MailCluster>(), every())
        .owns(settings.watched::<Deployment>(), owned())
        .owns(settings.watched::<Service>(), owned())
        .owns(settings.watched::<ConfigMap>(), owned())
        .owns(settings.watched::<PodDisruptionBudget>(), owned())
        .owns(settings.watched::<HorizontalPodAutoscaler>(), owned())
        .owns(settings.watched::<NetworkPolicy>(), owned())
        // Its CA and identity Secrets: one lost or replaced is issued again at once.
        .owns(settings.watched::<Secret>(), owned())
        .watches(settings.watched::<MailDomain>(), every(), |domain| {
            Some(ObjectRef::new(&domain.spec.cluster_ref.name).within(&domain.namespace()?))
        })
        .graceful_shutdown_on(shutdown.wait())
        .run(|object, ctx| observed("MailCluster", object, ctx, cluster::reconcile), error_policy, ctx.clone())
        .for_each(|_| async {});

    let domain_controller =
        Controller::new(settings.watched::<MailDomain>(), every()).owns(settings.watched::<Secret>(), owned());
    let domain_controller = if cert_manager {
        let resource = certificate_resource();
        let certificates = match &settings.watch_namespace {
            Some(namespace) => Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &resource),
            None => Api::<DynamicObject>::all_with(client.clone(), &resource),
        };
        domain_controller.owns_with(certificates, resource, owned())
    } else {
        domain_controller
    };
    let domains_store = domain_controller.store();
    let domains = domain_controller
        .watches_stream(clusters_changed, move |cluster| {
            related(&domains_store, &cluster, |domain| domain.spec.cluster_ref.name == cluster.name_any())
        })
        .graceful_shutdown_on(shutdown.wait())
        .run(|object, ctx| observed("MailDomain", object, ctx, domain::reconcile), error_policy, ctx.clone())
        .for_each(|_| async {});

    let mailbox_controller = Controller::new(settings.watched::<Mailbox>(), every());
    let by_secret = mailbox_controller.store();
    let by_domain = mailbox_controller.store();
    let mailboxes = mailbox_controller
        .watches_stream(secrets_changed, move |secret| {
            related(&by_secret, &secret, |mailbox| mailbox.spec.password_secret_ref.name == secret.name_any())
        })
        .watches_stream(domains_changed, move |domain| {
            related(&by_domain, &domain, |mailbox| mailbox::domain_of(&mailbox.spec.address) == domain.spec.domain)
        })
        .graceful_shutdown_on(shutdown.wait())
        .run(|object, ctx| observed("Mailbox", object, ctx, mailbox::reconcile), error_policy, ctx)
        .for_each(|_| async {});

    tokio::join!(clusters, domains, mailboxes);
}

/// What the Secret cache keeps of a Secret: its name and `resourceVersion`. Labels, annotations
/// and managed fields can be large (`kubectl apply` copies a whole Secret, data and all, into
/// an annotation), and nothing reads them here.
fn name_and_version(secret: &mut PartialObjectMeta<Secret>) {
    let metadata = &mut secret.metadata;
    metadata.annotations = None;
    metadata.labels = None;
    metadata.managed_fields = None;
    metadata.owner_references = None;
    metadata.finalizers = None;
}

/// The objects in `store` of `changed`'s namespace that `refers` says refer to it: what a change
/// to it must wake.
fn related<K, C>(store: &Store<K>, changed: &C, refers: impl Fn(&K) -> bool) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
    C: ResourceExt,
{
    let namespace = changed.namespace();
    store
        .state()
        .into_iter()
        .filter(|object| object.namespace() == namespace && refers(object))
        .map(|object| ObjectRef::from_obj(&*object))
        .collect()
}

/// Runs `apply` for an object that is not being deleted and `cleanup` for one that is, holding
/// it with [`FINALIZER`] until `cleanup` succeeds: for resources whose deletion must
/// reach the mailstore. Both are given the object, its namespace and the context.
async fn with_finalizer<K>(
    object: Arc<K>,
    ctx: &Context,
    apply: impl AsyncFnOnce(&K, &str, &Context) -> Result<Action>,
    cleanup: impl AsyncFnOnce(&K, &str, &Context) -> Result<Action>,
) -> Result<Action>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let namespace = object.namespace().ok_or_else(|| Error::Invalid(format!("a {} is namespaced", K::kind(&()))))?;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&api, FINALIZER, object, |event| async move {
        match event {
            Finalizer::Apply(object) => apply(&object, &namespace, ctx).await,
            Finalizer::Cleanup(object) => cleanup(&object, &namespace, ctx).await,
        }
    })
    .await
    .map_err(|error| match error {
        finalizer::Error::ApplyFailed(error) | finalizer::Error::CleanupFailed(error) => error,
        other => Error::Invalid(other.to_string()),
    })
}

/// Whether the MailCluster `cluster` of `namespace` is gone or going, and with it the mailstore
/// a deleted MailDomain or Mailbox would be removed from. Its finalizer is then released
/// although the mailstore cannot be told: nothing can serve the account any more, and waiting
/// would hold the namespace's deletion (or `helm uninstall`) for ever.
async fn mailstore_gone(ctx: &Context, namespace: &str, cluster: &str) -> bool {
    ctx.caches.cluster(namespace, cluster).await.is_none_or(|cluster| cluster.meta().deletion_timestamp.is_some())
}

/// `reconcile` of `object`, counted and timed in `kubemail_operator_reconciles_total{kind,
/// result}` and `kubemail_operator_reconcile_duration_seconds{kind}`.
async fn observed<K, F>(
    kind: &'static str,
    object: Arc<K>,
    ctx: Arc<Context>,
    reconcile: impl FnOnce(Arc<K>, Arc<Context>) -> F,
) -> Result<Action>
where
    K: Resource<DynamicType = ()>,
    F: Future<Output = Result<Action>>,
{
    let key = ObjectRef::from_obj(&*object).to_string();
    let started = Instant::now();
    let result = reconcile(object, ctx.clone()).await;
    metrics::histogram!("kubemail_operator_reconcile_duration_seconds", "kind" => kind)
        .record(started.elapsed().as_secs_f64());
    let outcome = if result.is_ok() { "success" } else { "error" };
    metrics::counter!("kubemail_operator_reconciles_total", "kind" => kind, "result" => outcome).increment(1);
    if result.is_ok() {
        ctx.succeeded(&key);
    }
    result
}

/// A failed reconcile is tried again later, sooner for the first failures.
fn error_policy<K: Resource<DynamicType = ()>>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action {
    let key = ObjectRef::from_obj(&*object).to_string();
    tracing::warn!(object = %key, %error, "reconcile failed; will retry");
    ctx.retry_after_failure(key)
}
