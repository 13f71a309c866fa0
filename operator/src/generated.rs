//! The files generated from the code and committed: the CRDs, in `crds/` and in the chart's
//! `crds/`, and the operator's RBAC rules the chart's templates include. `crdgen` writes them;
//! a test fails when they drift.

use crate::{crd, rbac};

/// The chart, from the repository root.
pub const CHART: &str = "charts/kubemail";

/// Each file's path from the repository root and its text.
pub fn files() -> Result<Vec<(String, String)>, serde_yaml::Error> {
    let mut files = Vec::new();
    for crd in crd::all() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let yaml = serde_yaml::to_string(&crd)?;
        files.push((format!("{CHART}/crds/{name}.yaml"), yaml.clone()));
        files.push((format!("crds/{name}.yaml"), yaml));
    }
    files.push((format!("{CHART}/files/cluster-rules.yaml"), serde_yaml::to_string(&rbac::cluster_rules())?));
    files.push((format!("{CHART}/files/namespace-rules.yaml"), serde_yaml::to_string(&rbac::namespace_rules())?));
    Ok(files)
}
