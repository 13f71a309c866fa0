//! The MailDomain reconciler: validate (its MailCluster exists) → build and apply (the DKIM key
//! Secret, the certificate) → register the domain in the mailstore → status (conditions and the
//! DNS records to publish). Deleting a MailDomain removes it from the mailstore unless accounts
//! are left in it (Mailboxes whose policy retains them): mail is never deleted implicitly.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::DynamicObject;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use kubemail_delivery_queue::outbound::dkim;
use kubemail_proto::admin::{DeleteDomainRequest, UpsertDomainRequest};

use crate::apply::{apply, delete_if_present, is_not_found};
use crate::build::domain::{
    build_certificate, build_dkim_secret, build_dns_records, build_self_signed_secret, certificate_resource,
    certificate_secret_name, dkim_secret_name, tls_names,
};
use crate::context::Context;
use crate::crd::MailDomain;
use crate::crd::common::condition::READY;
use crate::crd::domain::{MailDomainStatus, Quota};
use crate::keys::{DkimKey, self_signed_certificate};
use crate::mailstore::{Admin, unavailable};
use crate::status::{self, Found};
use crate::{Error, Result};

pub const CERTIFICATE_READY: &str = "CertificateReady";
pub const DKIM_READY: &str = "DkimReady";
pub const REGISTERED: &str = "Registered";

/// How often a ready domain is looked at again (a cert-manager renewal is watched anyway).
const RESYNC: Duration = Duration::from_secs(600);
/// How soon a domain waiting on something outside Kubernetes (the mailstore, cert-manager) is
/// looked at again.
const WAIT: Duration = Duration::from_secs(30);

pub async fn reconcile(domain: Arc<MailDomain>, ctx: Arc<Context>) -> Result<Action> {
    let ctx = &*ctx;
    super::with_finalizer(
        domain,
        ctx,
        |domain, namespace| async move { apply_domain(&domain, &namespace, ctx).await },
        |domain, namespace| async move { remove_domain(&domain, &namespace, ctx).await },
    )
    .await
}

async fn apply_domain(domain: &MailDomain, namespace: &str, ctx: &Context) -> Result<Action> {
    let client = ctx.client.clone();
    // Validate: the cluster that serves the domain.
    let cluster_name = &domain.spec.cluster_ref.name;
    let Some(cluster) = ctx.caches.cluster(namespace, cluster_name).await else {
        let found = [Found::no(READY, "ClusterNotFound", format!("MailCluster {cluster_name} does not exist"))];
        write_status(domain, namespace, ctx, &found, Vec::new(), None).await?;
        return Ok(Action::await_change());
    };

    // The DKIM key: kept once made, made again only if the algorithm asked for changed.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let dkim_name = dkim_secret_name(domain);
    let existing_key = secrets
        .get_opt(&dkim_name)
        .await?
        .and_then(|secret| secret.data?.remove(dkim::KEY_FILE))
        .and_then(|pem| String::from_utf8(pem.0).ok())
        .map(|pem| DkimKey { pem });
    let key = match existing_key {
        Some(key) if key.algorithm().ok() == Some(domain.spec.dkim.algorithm) => key,
        _ => {
            let key = DkimKey::generate(domain.spec.dkim.algorithm)?;
            ctx.event(
                &domain.object_ref(&()),
                false,
                "DkimKeyCreated",
                format!(
                    "made a {:?} DKIM key in Secret {dkim_name}; publish its TXT record",
                    domain.spec.dkim.algorithm
                ),
                "CreateKey",
            )
            .await;
            key
        }
    };
    apply(&secrets, &build_dkim_secret(domain, &key.pem)).await?;
    let dkim_value = key.dns_value()?;
    let dkim_found =
        Found::yes(DKIM_READY, "KeyInSecret", format!("Secret {dkim_name}, selector {}", domain.spec.dkim.selector));

    // The certificate.
    let certificates: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &certificate_resource());
    let certificate_found = match &domain.spec.tls.issuer_ref {
        Some(issuer) => match apply(&certificates, &build_certificate(domain, issuer)).await {
            Ok(certificate) => certificate_condition(&certificate),
            Err(Error::Kube(error)) if is_not_found(&error) => Found::no(
                CERTIFICATE_READY,
                "CertManagerNotInstalled",
                "spec.tls.issuerRef names an issuer, but cert-manager's Certificate resource does not exist",
            ),
            Err(error) => return Err(error),
        },
        None => {
            // Switching from an issuer to self-signed: cert-manager must stop writing the Secret.
            // Whether a Certificate was made is asked of the API server, not read off the
            // status: a switch made before the status said `Requested` must remove it too.
            delete_if_present(&certificates, &domain.name_any()).await?;
            let name = certificate_secret_name(domain);
            let current = secrets.get_opt(&name).await?;
            if current.is_none_or(|secret| secret.type_.as_deref() != Some("kubernetes.io/tls")) {
                let pair = self_signed_certificate(&tls_names(&domain.spec.domain))?;
                apply(&secrets, &build_self_signed_secret(domain, &pair)).await?;
            }
            Found::yes(
                CERTIFICATE_READY,
                "SelfSigned",
                format!("self-signed certificate in Secret {name}; clients will warn"),
            )
        }
    };

    // Register the domain in the mailstore.
    let Admin { url, client: mut admin } = ctx.admin(cluster_name, namespace).await?;
    let registered = match admin.upsert_domain(upsert_request(domain)).await {
        Ok(_) => Found::yes(REGISTERED, "Registered", format!("served by the mailstore at {url}")),
        Err(status) if unavailable(&status) => {
            Found::no(REGISTERED, "MailstoreUnavailable", format!("the mailstore at {url}: {}", status.message()))
        }
        Err(status) => Found::no(REGISTERED, "MailstoreRefused", status.message().to_string()),
    };

    let ready = certificate_found.status && registered.status;
    let not_ready = [&certificate_found, &dkim_found, &registered].into_iter().find(|found| !found.status).cloned();
    let found = [
        match not_ready {
            None => Found::yes(READY, "Ready", "the domain receives and sends mail"),
            Some(reason) => Found::no(READY, reason.reason, reason.message),
        },
        certificate_found,
        dkim_found,
        registered,
    ];
    let pop3 = cluster.spec.imap_frontend.pop3.enabled;
    let records = build_dns_records(domain, &cluster.spec.hostname, pop3, Some(&dkim_value));
    write_status(domain, namespace, ctx, &found, records, Some(dkim_name)).await?;
    Ok(Action::requeue(if ready { RESYNC } else { WAIT }))
}

/// The domain as the mailstore's UpsertDomain wants it.
fn upsert_request(domain: &MailDomain) -> UpsertDomainRequest {
    let (storage, messages) = quota_limits(domain.spec.default_quota.as_ref(), None);
    UpsertDomainRequest {
        name: domain.spec.domain.clone(),
        catch_all: domain
            .spec
            .catch_all
            .as_ref()
            .map(
                |target| if target.contains('@') { target.clone() } else { format!("{target}@{}", domain.spec.domain) },
            )
            .unwrap_or_default(),
        default_quota_storage: storage,
        default_quota_messages: messages,
    }
}

/// The storage and message limits of `own`, each falling back to `default` where `own` names
/// none; 0 for no limit (as the Admin API takes them).
pub fn quota_limits(own: Option<&Quota>, default: Option<&Quota>) -> (u64, u64) {
    let storage = [own, default]
        .into_iter()
        .flatten()
        .find_map(|quota| quota.storage.as_ref().and_then(|size| size.bytes()))
        .unwrap_or(0);
    let messages = [own, default].into_iter().flatten().find_map(|quota| quota.messages).unwrap_or(0);
    (storage, messages)
}

/// The CertificateReady condition from cert-manager's own Ready condition.
fn certificate_condition(certificate: &DynamicObject) -> Found {
    let ready = certificate.data["status"]["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == "Ready"));
    match ready {
        Some(c) if c["status"] == "True" => Found::yes(CERTIFICATE_READY, "Issued", "issued by cert-manager"),
        Some(c) => Found::no(
            CERTIFICATE_READY,
            "NotIssued",
            format!("cert-manager: {}", c["message"].as_str().unwrap_or("not issued yet")),
        ),
        None => Found::no(CERTIFICATE_READY, "Requested", "waiting for cert-manager to issue the certificate"),
    }
}

async fn write_status(
    domain: &MailDomain,
    namespace: &str,
    ctx: &Context,
    found: &[Found],
    dns_records: Vec<crate::crd::domain::DnsRecord>,
    dkim_secret: Option<String>,
) -> Result<()> {
    let previous = domain.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default();
    let conditions = status::conditions(&previous, found, domain.meta().generation, Timestamp::now());
    for changed in status::changed(&previous, &conditions) {
        let warning = changed.status == "False";
        ctx.event(&domain.object_ref(&()), warning, &changed.reason, changed.message.clone(), "Reconcile").await;
    }
    let status = MailDomainStatus {
        observed_generation: domain.meta().generation,
        conditions,
        dns_records,
        certificate_secret: Some(certificate_secret_name(domain)),
        dkim_secret,
    };
    // A reconcile that finds nothing changed writes nothing.
    if domain.status.as_ref() == Some(&status) {
        return Ok(());
    }
    status::patch(&Api::<MailDomain>::namespaced(ctx.client.clone(), namespace), domain, status).await
}

/// Removes the domain from the mailstore. Accounts still in it (retained Mailboxes) keep it
/// there: the finalizer is released and an Event says so. An unreachable mailstore keeps the
/// finalizer until it answers, unless its MailCluster is gone too (see
/// [`super::mailstore_gone`]).
async fn remove_domain(domain: &MailDomain, namespace: &str, ctx: &Context) -> Result<Action> {
    let cluster = &domain.spec.cluster_ref.name;
    let url = ctx.mailstores.url(cluster, namespace);
    let request = DeleteDomainRequest { name: domain.spec.domain.clone(), force: false };
    let deleted = match ctx.admin_for_removal(cluster, namespace).await? {
        Ok(mut admin) => admin.client.delete_domain(request).await,
        Err(down) => Err(down),
    };
    match deleted {
        Ok(_) => {}
        Err(status) if status.code() == tonic::Code::NotFound => {}
        Err(status) if status.code() == tonic::Code::FailedPrecondition => {
            let note = format!("{} stays in the mailstore: {}", domain.spec.domain, status.message());
            ctx.event(&domain.object_ref(&()), true, "DomainRetained", note, "Delete").await;
        }
        Err(status) if unavailable(&status) && super::mailstore_gone(ctx, namespace, cluster).await => {
            let note = format!(
                "MailCluster {cluster} is gone and its mailstore at {url} does not answer: {} is left in its database",
                domain.spec.domain
            );
            ctx.event(&domain.object_ref(&()), true, "MailstoreGone", note, "Delete").await;
        }
        Err(status) => return Err(Error::Mailstore(status)),
    }
    Ok(Action::await_change())
}
