//! The MailDomain reconciler, in four stages:
//!
//! - validate: its MailCluster exists;
//! - build: the DKIM key Secret, the certificate (cert-manager's or self-signed) and the domain
//!   as the mailstore takes it;
//! - apply: those, and the domain registered in the mailstore;
//! - status: the conditions and the DNS records to publish.
//!
//! Deleting a MailDomain removes it from the mailstore unless accounts are left in it
//! (Mailboxes whose policy retains them): mail is never deleted implicitly.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::DynamicObject;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use kubemail_proto::admin::{DeleteDomainRequest, UpsertDomainRequest};
use kubemail_runtime::deployment::file;

use crate::apply::{self, delete_if_present, is_not_found};
use crate::build::domain::{
    build_certificate, build_dkim_secret, build_dns_records, build_self_signed_secret, certificate_resource,
    certificate_secret_name, dkim_secret_name, tls_names,
};
use crate::context::Context;
use crate::crd::common::condition::READY;
use crate::crd::domain::{DnsRecord, MailDomainStatus, Quota};
use crate::crd::{MailCluster, MailDomain};
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
    super::with_finalizer(domain, &ctx, reconcile_domain, remove_domain).await
}

/// The reconcile of a MailDomain that is not being deleted.
async fn reconcile_domain(domain: &MailDomain, namespace: &str, ctx: &Context) -> Result<Action> {
    let cluster = match validate(domain, namespace, ctx).await {
        Ok(cluster) => cluster,
        Err(not_ready) => {
            write_status(domain, namespace, ctx, &[not_ready], Vec::new(), None).await?;
            return Ok(Action::await_change());
        }
    };
    let desired = build(domain, namespace, ctx).await?;
    let applied = apply(domain, namespace, ctx, &desired).await?;
    report_status(domain, namespace, ctx, &cluster, &desired, applied).await
}

/// The MailCluster that serves the domain, or the Ready condition saying it does not exist.
async fn validate(domain: &MailDomain, namespace: &str, ctx: &Context) -> std::result::Result<Arc<MailCluster>, Found> {
    let name = &domain.spec.cluster_ref.name;
    let missing = || Found::no(READY, "ClusterNotFound", format!("MailCluster {name} does not exist"));
    ctx.caches.cluster(namespace, name).await.ok_or_else(missing)
}

/// What a MailDomain becomes.
struct Desired {
    dkim_secret: Secret,
    /// The DKIM key's TXT record, for the DNS records in the status.
    dkim_value: String,
    tls: Tls,
    /// The domain in the mailstore.
    registration: UpsertDomainRequest,
}

/// Where the domain's certificate comes from.
enum Tls {
    /// cert-manager's Certificate, when the spec names an issuer.
    Issued(DynamicObject),
    /// A self-signed certificate's Secret; `None` when the Secret holds a certificate already.
    SelfSigned(Option<Secret>),
}

/// What the domain becomes. Its two Secrets are read so that a key or a self-signed
/// certificate is made only when the one there will not do.
async fn build(domain: &MailDomain, namespace: &str, ctx: &Context) -> Result<Desired> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let key = dkim_key(domain, &secrets, ctx).await?;
    let tls = match &domain.spec.tls.issuer_ref {
        Some(issuer) => Tls::Issued(build_certificate(domain, issuer)),
        None => {
            let current = secrets.get_opt(&certificate_secret_name(domain)).await?;
            if current.is_none_or(|secret| secret.type_.as_deref() != Some("kubernetes.io/tls")) {
                let pair = self_signed_certificate(&tls_names(&domain.spec.domain))?;
                Tls::SelfSigned(Some(build_self_signed_secret(domain, &pair)))
            } else {
                Tls::SelfSigned(None)
            }
        }
    };
    Ok(Desired {
        dkim_secret: build_dkim_secret(domain, &key.pem),
        dkim_value: key.dns_value()?,
        tls,
        registration: upsert_request(domain),
    })
}

/// The DKIM key: kept once made, made again only if the algorithm asked for changed.
async fn dkim_key(domain: &MailDomain, secrets: &Api<Secret>, ctx: &Context) -> Result<DkimKey> {
    let dkim_name = dkim_secret_name(domain);
    let existing_key = secrets
        .get_opt(&dkim_name)
        .await?
        .and_then(|secret| secret.data?.remove(file::DKIM_KEY))
        .and_then(|pem| String::from_utf8(pem.0).ok())
        .map(|pem| DkimKey { pem });
    Ok(match existing_key {
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
    })
}

/// The CertificateReady and Registered conditions, as applying found them.
struct Applied {
    certificate: Found,
    registered: Found,
}

/// Applies `desired` and registers the domain in the mailstore.
async fn apply(domain: &MailDomain, namespace: &str, ctx: &Context, desired: &Desired) -> Result<Applied> {
    let client = ctx.client.clone();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    apply::apply(&secrets, &desired.dkim_secret).await?;
    let certificates: Api<DynamicObject> = Api::namespaced_with(client, namespace, &certificate_resource());
    let certificate = match &desired.tls {
        Tls::Issued(certificate) => match apply::apply(&certificates, certificate).await {
            Ok(certificate) => certificate_condition(&certificate),
            Err(Error::Kube(error)) if is_not_found(&error) => Found::no(
                CERTIFICATE_READY,
                "CertManagerNotInstalled",
                "spec.tls.issuerRef names an issuer, but cert-manager's Certificate resource does not exist",
            ),
            Err(error) => return Err(error),
        },
        Tls::SelfSigned(secret) => {
            // Switching from an issuer to self-signed: cert-manager must stop writing the Secret.
            // Whether a Certificate was made is asked of the API server, not read off the
            // status: a switch made before the status said `Requested` must remove it too.
            delete_if_present(&certificates, &domain.name_any()).await?;
            if let Some(secret) = secret {
                apply::apply(&secrets, secret).await?;
            }
            let message =
                format!("self-signed certificate in Secret {}; clients will warn", certificate_secret_name(domain));
            Found::yes(CERTIFICATE_READY, "SelfSigned", message)
        }
    };
    let Admin { url, client: mut admin } = ctx.admin(&domain.spec.cluster_ref.name, namespace).await?;
    let registered = match admin.upsert_domain(desired.registration.clone()).await {
        Ok(_) => Found::yes(REGISTERED, "Registered", format!("served by the mailstore at {url}")),
        Err(status) if unavailable(&status) => {
            Found::no(REGISTERED, "MailstoreUnavailable", format!("the mailstore at {url}: {}", status.message()))
        }
        Err(status) => Found::no(REGISTERED, "MailstoreRefused", status.message().to_string()),
    };
    Ok(Applied { certificate, registered })
}

/// Writes the conditions, Ready the first of the others that is not, and the DNS records to
/// publish; returns when to look at the domain again.
async fn report_status(
    domain: &MailDomain,
    namespace: &str,
    ctx: &Context,
    cluster: &MailCluster,
    desired: &Desired,
    applied: Applied,
) -> Result<Action> {
    let Applied { certificate, registered } = applied;
    let dkim_name = dkim_secret_name(domain);
    let dkim =
        Found::yes(DKIM_READY, "KeyInSecret", format!("Secret {dkim_name}, selector {}", domain.spec.dkim.selector));
    let ready = certificate.status && registered.status;
    let not_ready = [&certificate, &dkim, &registered].into_iter().find(|found| !found.status).cloned();
    let found = [
        match not_ready {
            None => Found::yes(READY, "Ready", "the domain receives and sends mail"),
            Some(reason) => Found::no(READY, reason.reason, reason.message),
        },
        certificate,
        dkim,
        registered,
    ];
    let pop3 = cluster.spec.imap_frontend.pop3.enabled;
    let records = build_dns_records(domain, &cluster.spec.hostname, pop3, Some(&desired.dkim_value));
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
    dns_records: Vec<DnsRecord>,
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
