//! The apply stage: server-side apply with one field manager, so the operator owns exactly the
//! fields it sets and anyone else's (an autoscaler's replicas, an admission webhook's
//! defaults) are left alone.

use std::fmt::Debug;

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
