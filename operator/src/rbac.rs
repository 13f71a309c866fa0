//! The permissions the operator needs, and no more: what it does in every namespace it serves
//! ([`cluster_rules`], a ClusterRole) and in its own namespace only ([`namespace_rules`], a
//! Role: the leader Lease). The chart's RBAC is generated from these (`crdgen` writes them),
//! and tests check every API call the operator makes against them.

use k8s_openapi::api::rbac::v1::PolicyRule;

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

/// A rule: API group, resources, verbs.
type Rule = (&'static str, &'static [&'static str], &'static [&'static str]);

/// What the operator does in every namespace.
const CLUSTER_RULES: &[Rule] = &[
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
];

/// What the operator does in its own namespace: leader election.
const NAMESPACE_RULES: &[Rule] = &[("coordination.k8s.io", &["leases"], &["get", "create", "patch"])];

pub fn cluster_rules() -> Vec<PolicyRule> {
    policy_rules(CLUSTER_RULES)
}

pub fn namespace_rules() -> Vec<PolicyRule> {
    policy_rules(NAMESPACE_RULES)
}

fn policy_rules(rules: &[Rule]) -> Vec<PolicyRule> {
    rules
        .iter()
        .map(|(group, resources, verbs)| PolicyRule {
            api_groups: Some(vec![group.to_string()]),
            resources: Some(resources.iter().map(|r| r.to_string()).collect()),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        })
        .collect()
}

/// Whether the cluster-wide rules (or, with `own_namespace`, the namespace's too) allow `verb`
/// on `resource` (`mailboxes/status` for a subresource) of `group` (`""`: the core group).
pub fn allows(group: &str, resource: &str, verb: &str, own_namespace: bool) -> bool {
    let rules = CLUSTER_RULES.iter().chain(NAMESPACE_RULES.iter().filter(|_| own_namespace));
    rules.into_iter().any(|(g, resources, verbs)| *g == group && resources.contains(&resource) && verbs.contains(&verb))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_watched_can_be_listed_and_watched() {
        for (group, resource) in WATCHED {
            assert!(
                allows(group, resource, "list", false) && allows(group, resource, "watch", false),
                "{group}/{resource}"
            );
        }
    }
}
