//! The permissions the operator needs, and no more: the ClusterRole the chart installs is
//! generated from [`rules`] (`crdgen` writes it beside the CRDs), and a test checks every API
//! call the reconcilers make against it.

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The ClusterRole's name.
pub const NAME: &str = "kubemail-operator";

/// What the operator watches (list + watch) to be woken, by API group and resource.
pub const WATCHED: &[(&str, &str)] = &[
    ("kubemail.io", "mailclusters"),
    ("kubemail.io", "maildomains"),
    ("kubemail.io", "mailboxes"),
    ("apps", "deployments"),
    ("", "services"),
    ("", "configmaps"),
    ("", "secrets"),
    ("policy", "poddisruptionbudgets"),
    ("autoscaling", "horizontalpodautoscalers"),
    ("cert-manager.io", "certificates"),
];

/// Each rule: API group, resources, verbs.
const RULES: &[(&str, &[&str], &[&str])] = &[
    // The custom resources: read; finalizers added and removed (patch) where the mailstore
    // must be told of a deletion; status written.
    ("kubemail.io", &["mailclusters"], &["get", "list", "watch"]),
    ("kubemail.io", &["maildomains", "mailboxes"], &["list", "watch", "patch"]),
    ("kubemail.io", &["mailclusters/status", "maildomains/status", "mailboxes/status"], &["patch"]),
    // What a MailCluster becomes, applied server-side (an apply that creates needs create).
    ("apps", &["deployments"], &["list", "watch", "create", "patch"]),
    ("", &["services", "configmaps"], &["list", "watch", "create", "patch"]),
    ("policy", &["poddisruptionbudgets"], &["list", "watch", "create", "patch"]),
    ("autoscaling", &["horizontalpodautoscalers"], &["list", "watch", "create", "patch", "delete"]),
    // Secrets: password Secrets read, DKIM and self-signed certificate Secrets written.
    ("", &["secrets"], &["get", "list", "watch", "create", "patch"]),
    ("cert-manager.io", &["certificates"], &["list", "watch", "create", "patch", "delete"]),
    ("events.k8s.io", &["events"], &["create", "patch"]),
    // Leader election.
    ("coordination.k8s.io", &["leases"], &["get", "create", "patch", "update"]),
];

/// The operator's rules.
pub fn rules() -> Vec<PolicyRule> {
    RULES
        .iter()
        .map(|(group, resources, verbs)| PolicyRule {
            api_groups: Some(vec![group.to_string()]),
            resources: Some(resources.iter().map(|r| r.to_string()).collect()),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        })
        .collect()
}

/// Whether [`rules`] allow `verb` on `resource` (`mailboxes/status` for a subresource) of
/// `group` (`""` for the core group).
pub fn allows(group: &str, resource: &str, verb: &str) -> bool {
    RULES.iter().any(|(g, resources, verbs)| *g == group && resources.contains(&resource) && verbs.contains(&verb))
}

pub fn cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(NAME.to_string()),
            labels: Some([("app.kubernetes.io/name".to_string(), "kubemail".to_string())].into()),
            ..Default::default()
        },
        rules: Some(rules()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_watched_can_be_listed_and_watched() {
        for (group, resource) in WATCHED {
            assert!(allows(group, resource, "list") && allows(group, resource, "watch"), "{group}/{resource}");
        }
    }
}
