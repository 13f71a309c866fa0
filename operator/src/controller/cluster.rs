//! The MailCluster reconciler, in four stages:
//!
//! - validate: its database Secret exists and has its key;
//! - build: `build_cluster`, with the domains that name it;
//! - apply: the service identities first ([`super::identity`]), then what was built;
//! - status: ready replicas per component, and the conditions.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};

use crate::apply::{self, delete_if_present, hand_replicas_over};
use crate::build::cluster::{ClusterObjects, Component, DomainMount, build_cluster, names};
use crate::build::domain::{certificate_secret_name, dkim_secret_name};
use crate::build::network::policy_names;
use crate::context::Context;
use crate::crd::cluster::{ComponentStatus, ComponentStatuses, MailClusterStatus};
use crate::crd::common::condition::{DEGRADED, PROGRESSING, READY};
use crate::crd::{MailCluster, MailDomain};
use crate::status::{self, Found};
use crate::{Error, Result};

/// How often a cluster is looked at with nothing changing: its Deployments' changes wake it
/// anyway, this only catches what no watch saw.
const RESYNC: Duration = Duration::from_secs(600);
/// The soonest a cluster is looked at again on a timer (an identity due now is issued by this
/// reconcile already).
const MIN_REQUEUE: Duration = Duration::from_secs(1);

pub async fn reconcile(cluster: Arc<MailCluster>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = cluster.namespace().ok_or_else(|| Error::Invalid("a MailCluster is namespaced".into()))?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let database = validate(&cluster, &secrets).await?;
    let objects = build(&cluster, &namespace, &ctx).await?;
    let applied = apply(&cluster, &namespace, &ctx, &secrets, &objects).await?;
    report_status(&cluster, &namespace, &ctx, database, applied).await
}

/// The Degraded condition the database Secret makes: it is what a missing piece most often
/// is. A missing one does not stop the reconcile, it is reported.
async fn validate(cluster: &MailCluster, secrets: &Api<Secret>) -> Result<Found> {
    let uri = &cluster.spec.database.uri_secret_ref;
    Ok(match secrets.get_opt(&uri.name).await? {
        Some(secret) if secret.data.as_ref().is_some_and(|data| data.contains_key(&uri.key)) => {
            Found::no(DEGRADED, "AsExpected", "")
        }
        Some(_) => {
            Found::yes(DEGRADED, "DatabaseSecretIncomplete", format!("Secret {} has no key {}", uri.name, uri.key))
        }
        None => Found::yes(DEGRADED, "DatabaseSecretNotFound", format!("Secret {} does not exist", uri.name)),
    })
}

/// The objects of `cluster`, whose pods mount the domains that name it.
async fn build(cluster: &MailCluster, namespace: &str, ctx: &Context) -> Result<ClusterObjects> {
    let name = cluster.name_any();
    let domains: Api<MailDomain> = Api::namespaced(ctx.client.clone(), namespace);
    let mounts: Vec<DomainMount> = domains
        .list(&ListParams::default())
        .await?
        .into_iter()
        .filter(|domain| domain.spec.cluster_ref.name == name)
        .map(|domain| DomainMount {
            certificate_secret: certificate_secret_name(&domain),
            dkim_secret: dkim_secret_name(&domain),
            domain: domain.spec.domain,
        })
        .collect();
    Ok(build_cluster(cluster, &mounts, &ctx.default_tag))
}

/// What the apply stage leaves for the status.
struct Applied {
    /// The Deployments as the API server holds them, with their replicas.
    deployments: Vec<Deployment>,
    /// When the identities are to be looked at again, or, as a Degraded condition, why they
    /// cannot be issued.
    identities: std::result::Result<Timestamp, Found>,
}

/// Applies the service identities, then `objects`; deletes the network policies and the
/// autoscaler the spec turned off.
async fn apply(
    cluster: &MailCluster,
    namespace: &str,
    ctx: &Context,
    secrets: &Api<Secret>,
    objects: &ClusterObjects,
) -> Result<Applied> {
    // Identities before the pods that mount them, so no pod waits long for its own.
    let identities = super::identity::ensure(cluster, secrets, ctx).await?;
    let client = &ctx.client;
    let name = cluster.name_any();
    apply::apply(&Api::<ConfigMap>::namespaced(client.clone(), namespace), &objects.config).await?;
    let deployment_api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let mut deployments = Vec::new();
    for deployment in &objects.deployments {
        if let Some(autoscaler) = &objects.autoscaler
            && deployment.spec.as_ref().is_some_and(|spec| spec.replicas.is_none())
        {
            let initial = autoscaler.spec.as_ref().and_then(|spec| spec.min_replicas).unwrap_or(1);
            hand_replicas_over(&deployment_api, deployment, initial).await?;
        }
        deployments.push(apply::apply(&deployment_api, deployment).await?);
    }
    let service_api: Api<Service> = Api::namespaced(client.clone(), namespace);
    for service in &objects.services {
        apply::apply(&service_api, service).await?;
    }
    let budget_api: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), namespace);
    for budget in &objects.disruption_budgets {
        apply::apply(&budget_api, budget).await?;
    }
    let policy_api: Api<NetworkPolicy> = Api::namespaced(client.clone(), namespace);
    for policy in &objects.network_policies {
        apply::apply(&policy_api, policy).await?;
    }
    if objects.network_policies.is_empty() {
        for policy in policy_names(&name) {
            delete_if_present(&policy_api, &policy).await?;
        }
    }
    let autoscaler_api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), namespace);
    match &objects.autoscaler {
        Some(autoscaler) => {
            apply::apply(&autoscaler_api, autoscaler).await?;
        }
        None => delete_if_present(&autoscaler_api, &names::deployment(&name, Component::ImapFrontend)).await?,
    }
    Ok(Applied { deployments, identities })
}

/// Writes the components' replicas and the conditions, with an Event for each Ready change and
/// each new Degraded; returns when to look at the cluster again.
async fn report_status(
    cluster: &MailCluster,
    namespace: &str,
    ctx: &Context,
    database: Found,
    applied: Applied,
) -> Result<Action> {
    // A missing database says more than identities that cannot be issued: it is reported first.
    let (first_renewal, degraded) = match applied.identities {
        Ok(first_renewal) => (first_renewal, database),
        Err(identities) if !database.status => (soon(), identities),
        Err(_) => (soon(), database),
    };
    let components = component_statuses(&cluster.name_any(), &applied.deployments);
    let all = [&components.smtp_ingress, &components.delivery_queue, &components.mailstore, &components.imap_frontend];
    let ready = all.iter().all(|c| c.replicas > 0 && c.ready_replicas >= c.replicas);
    let waiting: Vec<String> = Component::ALL
        .iter()
        .zip(all)
        .filter(|(_, c)| c.ready_replicas < c.replicas || c.replicas == 0)
        .map(|(component, c)| format!("{} {}", component.name(), c.summary))
        .collect();
    let found = [
        if ready {
            Found::yes(READY, "AllComponentsReady", "every component has its replicas ready")
        } else if degraded.status {
            Found::no(READY, degraded.reason, degraded.message.clone())
        } else {
            Found::no(READY, "ComponentsNotReady", format!("waiting for {}", waiting.join(", ")))
        },
        if ready {
            Found::no(PROGRESSING, "AsExpected", "")
        } else {
            Found::yes(PROGRESSING, "ComponentsStarting", format!("waiting for {}", waiting.join(", ")))
        },
        degraded,
    ];
    let previous = cluster.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let conditions = status::conditions(&previous, &found, cluster.meta().generation, Timestamp::now());
    for changed in status::changed(&previous, &conditions) {
        if changed.type_ == READY || (changed.type_ == DEGRADED && changed.status == "True") {
            let warning = changed.status == "True" && changed.type_ == DEGRADED
                || changed.type_ == READY && changed.status == "False";
            ctx.event(&cluster.object_ref(&()), warning, &changed.reason, changed.message.clone(), "Reconcile").await;
        }
    }
    let status = MailClusterStatus { observed_generation: cluster.meta().generation, conditions, components };
    // Back when an identity is to be renewed, if that comes before the resync.
    let until_renewal = first_renewal.duration_since(Timestamp::now()).unsigned_abs();
    let next = Action::requeue(RESYNC.min(until_renewal).max(MIN_REQUEUE));
    // A reconcile that finds nothing changed writes nothing.
    if cluster.status.as_ref() == Some(&status) {
        return Ok(next);
    }
    status::patch(&Api::<MailCluster>::namespaced(ctx.client.clone(), namespace), cluster, status).await?;
    Ok(next)
}

/// When to look again at identities that could not be issued: not at once (nothing changes
/// that fast), not at the resync (cert-manager installed meanwhile should be used soon).
fn soon() -> Timestamp {
    Timestamp::now().checked_add(k8s_openapi::jiff::SignedDuration::from_secs(60)).unwrap_or_else(|_| Timestamp::now())
}

/// Each component's wanted and ready replicas, from its Deployment as the API server holds it.
fn component_statuses(cluster: &str, deployments: &[Deployment]) -> ComponentStatuses {
    let of = |component: Component| {
        let name = names::deployment(cluster, component);
        let deployment = deployments.iter().find(|d| d.metadata.name.as_deref() == Some(&name));
        let replicas = deployment.and_then(|d| d.spec.as_ref()).and_then(|s| s.replicas).unwrap_or(0);
        let ready_replicas = deployment.and_then(|d| d.status.as_ref()).and_then(|s| s.ready_replicas).unwrap_or(0);
        ComponentStatus { replicas, ready_replicas, summary: format!("{ready_replicas}/{replicas}") }
    };
    ComponentStatuses {
        smtp_ingress: of(Component::SmtpIngress),
        delivery_queue: of(Component::DeliveryQueue),
        mailstore: of(Component::Mailstore),
        imap_frontend: of(Component::ImapFrontend),
    }
}
