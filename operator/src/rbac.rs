//! The permissions the operator needs, and no more: what it does in every namespace it serves
//! ([`cluster_rules`], a ClusterRole) and in its own namespace only ([`namespace_rules`], a
//! Role: the leader Lease). The chart's RBAC is generated from these (`crdgen` writes them);
//! `tests/rbac.rs` runs the operator as the chart's ServiceAccount and checks, in the API
//! server's audit log, that it was never refused and used every verb granted.

use k8s_openapi::api::rbac::v1::PolicyRule;

/// A rule: API group, resources, verbs.
type Rule = (&'static str, &'static [&'static str], &'static [&'static str]);

/// What the operator does in every namespace.
const CLUSTER_RULES: &[Rule] = &[
    // The custom resources: watched; finalizers added and removed (patch) where the mailstore
    // must be told of a deletion; status written.
    ("kubemail.io", &["mailclusters"], &["list", "watch"]),
    ("kubemail.io", &["maildomains", "mailboxes"], &["list", "watch", "patch"]),
    ("kubemail.io", &["mailclusters/status", "maildomains/status", "mailboxes/status"], &["patch"]),
    // What a MailCluster becomes, applied server-side (an apply that creates needs create); a
    // Deployment is read before an autoscaler takes over its replica count.
    ("apps", &["deployments"], &["get", "list", "watch", "create", "patch"]),
    ("", &["services", "configmaps"], &["list", "watch", "create", "patch"]),
    ("policy", &["poddisruptionbudgets"], &["list", "watch", "create", "patch"]),
    ("autoscaling", &["horizontalpodautoscalers"], &["list", "watch", "create", "patch", "delete"]),
    ("networking.k8s.io", &["networkpolicies"], &["list", "watch", "create", "patch", "delete"]),
    // Secrets: password Secrets read; DKIM, self-signed certificate, CA and identity Secrets
    // written.
    ("", &["secrets"], &["get", "list", "watch", "create", "patch"]),
    ("cert-manager.io", &["certificates"], &["list", "watch", "create", "patch", "delete"]),
    // With cert-manager issuing the service identities: the cluster's Issuers.
    ("cert-manager.io", &["issuers"], &["create", "patch"]),
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
