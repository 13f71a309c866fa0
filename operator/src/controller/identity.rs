//! The service identities, applied first in the MailCluster reconcile's apply stage: the
//! cluster's CA, kept in a Secret and made once, and each component's identity Secret, issued
//! when missing, when signed by another CA, or when a third of its life is left. It runs before
//! the Deployments are applied, so no pod waits long for the identity it mounts. With
//! `spec.serviceIdentity.issuer: CertManager` it applies the Issuers and Certificates that have
//! cert-manager do the same.
//!
//! It is part of a stage, not a reconcile with stages of its own: what it applies is built by
//! [`crate::build::identity`], and what it finds goes to the MailCluster's status.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::api::DynamicObject;
use kube::{Api, Resource, ResourceExt};
use kubemail_runtime::identity::CertificateAuthority;

use crate::apply::{apply, is_not_found};
use crate::build::cluster::names;
use crate::build::domain::certificate_resource;
use crate::build::identity::{
    ROLES, VALIDITY, build_ca_secret, build_cert_manager_identities, build_identity_secret, ca_of, issuer_resource,
    renew_after, renewal_due,
};
use crate::context::Context;
use crate::crd::MailCluster;
use crate::crd::cluster::IdentityIssuer;
use crate::crd::common::condition::DEGRADED;
use crate::status::Found;
use crate::{Error, Result};

/// Makes sure every identity of `cluster` is in place and current, or asked for; returns when
/// to look at them again, or, as a Degraded condition, why they cannot be issued.
pub async fn ensure(
    cluster: &MailCluster,
    secrets: &Api<Secret>,
    ctx: &Context,
) -> Result<std::result::Result<Timestamp, Found>> {
    match cluster.spec.service_identity.issuer {
        IdentityIssuer::Operator => issue(cluster, secrets, ctx).await.map(Ok),
        IdentityIssuer::CertManager => ask_cert_manager(cluster, ctx).await,
    }
}

/// Applies the Issuers and Certificates that have cert-manager issue and renew the identities.
async fn ask_cert_manager(cluster: &MailCluster, ctx: &Context) -> Result<std::result::Result<Timestamp, Found>> {
    let namespace = cluster.namespace().unwrap_or_default();
    let (issuers, certificates) = build_cert_manager_identities(cluster);
    let issuer_api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), &namespace, &issuer_resource());
    let certificate_api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), &namespace, &certificate_resource());
    let applied = async {
        for issuer in &issuers {
            apply(&issuer_api, issuer).await?;
        }
        for certificate in &certificates {
            apply(&certificate_api, certificate).await?;
        }
        Ok::<_, Error>(())
    };
    match applied.await {
        // cert-manager renews them itself; the operator only looks again at its resync.
        Ok(()) => Ok(Ok(renew_after(Timestamp::now()))),
        Err(Error::Kube(error)) if is_not_found(&error) => Ok(Err(Found::yes(
            DEGRADED,
            "CertManagerNotInstalled",
            "spec.serviceIdentity.issuer is CertManager, but cert-manager's Issuer and Certificate resources are \
             not installed",
        ))),
        Err(error) => Err(error),
    }
}

/// Issues the identities from the CA the operator keeps; returns when the first of them is to
/// be issued again.
async fn issue(cluster: &MailCluster, secrets: &Api<Secret>, ctx: &Context) -> Result<Timestamp> {
    let name = cluster.name_any();
    let authority = service_ca(cluster, secrets, ctx).await?;
    let now = Timestamp::now();
    let mut first_renewal = renew_after(now);
    for role in ROLES {
        let secret_name = names::identity_secret(&name, role);
        let current = secrets.get_opt(&secret_name).await?;
        let due = match renewal_due(current.as_ref(), authority.certificate_pem(), now) {
            Some(due) => due,
            None => {
                let issued = authority.issue(role, VALIDITY).map_err(|e| Error::Key(e.to_string()))?;
                let due = renew_after(now);
                apply(secrets, &build_identity_secret(cluster, role, &issued, due)).await?;
                tracing::info!(cluster = %name, %role, secret = %secret_name, "service identity issued");
                due
            }
        };
        first_renewal = first_renewal.min(due);
    }
    Ok(first_renewal)
}

/// The CA of the cluster's service identities: the one in its Secret, or, the first time, a new
/// one put there.
async fn service_ca(cluster: &MailCluster, secrets: &Api<Secret>, ctx: &Context) -> Result<CertificateAuthority> {
    let name = cluster.name_any();
    let ca_secret = names::service_ca(&name);
    if let Some(authority) = secrets.get_opt(&ca_secret).await?.as_ref().and_then(ca_of) {
        return Ok(authority);
    }
    let namespace = cluster.namespace().unwrap_or_default();
    let authority = CertificateAuthority::generate(&format!("kubemail {namespace}/{name} service CA"))
        .map_err(|e| Error::Key(e.to_string()))?;
    apply(secrets, &build_ca_secret(cluster, &authority)).await?;
    let message = format!("made the CA of the cluster's service identities in Secret {ca_secret}");
    ctx.event(&cluster.object_ref(&()), false, "ServiceCACreated", message, "CreateKey").await;
    Ok(authority)
}
