//! The identities stage of the MailCluster reconcile: the cluster's CA, kept in a Secret and
//! made once, and each component's identity Secret, issued when missing, when signed by another
//! CA, or when a third of its life is left. It runs before the Deployments are applied, so no
//! pod waits long for the identity it mounts.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Resource, ResourceExt};
use kubemail_runtime::identity::CertificateAuthority;

use crate::apply::apply;
use crate::build::cluster::names;
use crate::build::identity::{
    ROLES, VALIDITY, build_ca_secret, build_identity_secret, ca_of, renew_after, renewal_due,
};
use crate::context::Context;
use crate::crd::MailCluster;
use crate::{Error, Result};

/// Makes sure every identity of `cluster` is in place and current; returns when the first of
/// them is to be issued again.
pub async fn ensure(cluster: &MailCluster, secrets: &Api<Secret>, ctx: &Context) -> Result<Timestamp> {
    let name = cluster.name_any();
    let ca_secret = names::service_ca(&name);
    let authority = match secrets.get_opt(&ca_secret).await?.as_ref().and_then(ca_of) {
        Some(authority) => authority,
        None => {
            let namespace = cluster.namespace().unwrap_or_default();
            let authority = CertificateAuthority::generate(&format!("kubemail {namespace}/{name} service CA"))
                .map_err(|e| Error::Key(e.to_string()))?;
            apply(secrets, &build_ca_secret(cluster, &authority)).await?;
            let message = format!("made the CA of the cluster's service identities in Secret {ca_secret}");
            ctx.event(&cluster.object_ref(&()), false, "ServiceCACreated", message, "CreateKey").await;
            authority
        }
    };
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
