//! The files generated from the code and committed: the CRDs in `crds/` and the operator's
//! ClusterRole in `operator/rbac/`. `crdgen` writes them; a test fails when they drift.

use crate::crd;

/// Each file's path from the repository root and its text.
pub fn files() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    let mut files: Vec<(String, String)> = crd::all()
        .into_iter()
        .map(|crd| {
            let name = crd.metadata.name.clone().unwrap_or_default();
            Ok((format!("crds/{name}.yaml"), serde_yaml::to_string(&crd)?))
        })
        .collect::<Result<_, serde_yaml::Error>>()?;
    files.push(("operator/rbac/clusterrole.yaml".to_string(), serde_yaml::to_string(&crate::rbac::cluster_role())?));
    Ok(files)
}
