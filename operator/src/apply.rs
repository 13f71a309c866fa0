//! The apply stage: server-side apply with one field manager, so the operator owns exactly the
//! fields it sets and anyone else's (an autoscaler's replicas, an admission webhook's
//! defaults) are left alone.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Resource};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::build::MANAGER;
use crate::{Error, Result};

/// Applies `object` and returns it as the API server now holds it (status included).
pub async fn apply<K>(api: &Api<K>, object: &K) -> Result<K>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let name = object.meta().name.as_deref().ok_or_else(|| Error::Invalid("an object to apply has no name".into()))?;
    Ok(api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(object)).await?)
}

/// The field manager that holds a Deployment's replica count while an autoscaler owns it.
pub const REPLICAS_HANDOVER: &str = "kubemail-operator-replicas-handover";

/// Readies `deployment`, about to be applied without `spec.replicas` because an autoscaler owns
/// the count: server-side apply removes a field its last manager gives up, which would reset
/// the count to 1 under running pods. So the count the operator set is first handed to a
/// manager of its own ([`REPLICAS_HANDOVER`]), which never applies again: the autoscaler's
/// changes take the field from it. A Deployment that does not exist yet is created with
/// `initial` replicas.
pub async fn hand_replicas_over(api: &Api<Deployment>, deployment: &Deployment, initial: i32) -> Result<()> {
    let name = deployment.metadata.name.as_deref().ok_or_else(|| Error::Invalid("a Deployment has no name".into()))?;
    let replicas = match api.get_opt(name).await? {
        None => {
            let mut counted = deployment.clone();
            if let Some(spec) = counted.spec.as_mut() {
                spec.replicas = Some(initial);
            }
            apply(api, &counted).await?;
            initial
        }
        Some(live) if owns_replicas(&live) => live.spec.and_then(|spec| spec.replicas).unwrap_or(initial),
        // Already handed over, or the autoscaler's.
        Some(_) => return Ok(()),
    };
    let count = serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas},
    });
    api.patch(name, &PatchParams::apply(REPLICAS_HANDOVER).force(), &Patch::Apply(&count)).await?;
    Ok(())
}

/// Whether the operator's applies own `spec.replicas` of `deployment`.
fn owns_replicas(deployment: &Deployment) -> bool {
    deployment.metadata.managed_fields.iter().flatten().any(|entry| {
        entry.manager.as_deref() == Some(MANAGER)
            && entry.operation.as_deref() == Some("Apply")
            && entry.fields_v1.as_ref().is_some_and(|fields| fields.0["f:spec"]["f:replicas"].is_object())
    })
}

/// Deletes `name` if it exists.
pub async fn delete_if_present<K>(api: &Api<K>, name: &str) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(response)) if response.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// Whether `error` is the API server saying the object (or its kind) does not exist.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(response) if response.code == 404)
}
