//! A MailCluster's NetworkPolicies: every pod of the platform admits only the flows the design
//! uses. Policies add up: the first denies all ingress to the platform's pods, each other one
//! opens one flow.
//!
//! | to | port | from |
//! |---|---|---|
//! | smtp-ingress | SMTP, submission, submissions | mail clients (`spec.networkPolicy.mailClients`) |
//! | imap-frontend | IMAP, IMAPS (POP3, POP3S) | mail clients |
//! | mailstore | gRPC | this platform's smtp-ingress, delivery-queue and imap-frontend pods |
//! | mailstore | Admin gRPC | the kubemail operator's pods, in any namespace |
//! | every component | metrics | pods of the namespaces `metricsNamespaceLabels` names |
//!
//! Egress is left open: the database, NATS, DNS and the MX hosts of the world are wherever the
//! platform team runs them. NATS, outside the platform's namespace, gets its own policy from
//! its own chart.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

use super::cluster::Component;
use super::{labels, owned_meta};
use crate::crd::MailCluster;

/// Every address, for mail ports open to the world.
const EVERYWHERE: [&str; 2] = ["0.0.0.0/0", "::/0"];

/// What each policy is for: its name after the cluster's.
const DENY_ALL: &str = "deny-all";
const SMTP: &str = "smtp-ingress";
const IMAP: &str = "imap-frontend";
const MAILSTORE: &str = "mailstore";
const METRICS: &str = "metrics";

/// The names of the cluster's NetworkPolicies, whether or not the spec wants them (so turning
/// them off can remove them).
pub fn policy_names(cluster: &str) -> Vec<String> {
    [DENY_ALL, SMTP, IMAP, MAILSTORE, METRICS].iter().map(|what| policy_name(cluster, what)).collect()
}

fn policy_name(cluster: &str, what: &str) -> String {
    format!("{cluster}-{what}")
}

/// The NetworkPolicies of `cluster`; none when its spec turns them off.
pub fn build_network_policies(cluster: &MailCluster) -> Vec<NetworkPolicy> {
    let spec = &cluster.spec.network_policy;
    if !spec.enabled {
        return Vec::new();
    }
    let name = cluster.name_any();
    let policy = |what: &str, component: Option<Component>, ingress: Vec<NetworkPolicyIngressRule>| NetworkPolicy {
        metadata: owned_meta(cluster, policy_name(&name, what), labels(&name, None)),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector { match_labels: Some(labels(&name, component)), ..Default::default() }),
            policy_types: Some(vec!["Ingress".to_string()]),
            ingress: Some(ingress),
            ..Default::default()
        }),
    };
    let mail_clients: Vec<NetworkPolicyPeer> = if spec.mail_clients.is_empty() {
        // Every address outside the cluster, and every pod in it (a webmail, a monitoring probe).
        let mut peers = ip_blocks(EVERYWHERE.iter().map(|cidr| cidr.to_string()));
        peers.push(NetworkPolicyPeer { namespace_selector: Some(LabelSelector::default()), ..Default::default() });
        peers
    } else {
        ip_blocks(spec.mail_clients.iter().cloned())
    };
    let mail_ports = |component: Component| -> Vec<NetworkPolicyPort> {
        component.listeners(cluster).iter().map(|(port_name, _, _)| named_port(port_name)).collect()
    };
    let platform_pods = |components: &[Component]| NetworkPolicyPeer {
        pod_selector: Some(LabelSelector {
            match_labels: Some(labels(&name, None)),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "app.kubernetes.io/component".to_string(),
                operator: "In".to_string(),
                values: Some(components.iter().map(|component| component.name().to_string()).collect()),
            }]),
        }),
        ..Default::default()
    };
    let operator_pods = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector::default()),
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([
                ("app.kubernetes.io/name".to_string(), "kubemail".to_string()),
                ("app.kubernetes.io/component".to_string(), "operator".to_string()),
            ])),
            ..Default::default()
        }),
        ..Default::default()
    };
    let scrapers = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: (!spec.metrics_namespace_labels.is_empty()).then(|| spec.metrics_namespace_labels.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };
    vec![
        policy(DENY_ALL, None, Vec::new()),
        policy(
            SMTP,
            Some(Component::SmtpIngress),
            vec![rule(mail_clients.clone(), mail_ports(Component::SmtpIngress))],
        ),
        policy(IMAP, Some(Component::ImapFrontend), vec![rule(mail_clients, mail_ports(Component::ImapFrontend))]),
        policy(
            MAILSTORE,
            Some(Component::Mailstore),
            vec![
                rule(
                    vec![platform_pods(&[Component::SmtpIngress, Component::DeliveryQueue, Component::ImapFrontend])],
                    vec![named_port("grpc")],
                ),
                rule(vec![operator_pods], vec![named_port("admin-grpc")]),
            ],
        ),
        policy(METRICS, None, vec![rule(vec![scrapers], vec![named_port("http")])]),
    ]
}

fn rule(from: Vec<NetworkPolicyPeer>, ports: Vec<NetworkPolicyPort>) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule { from: Some(from), ports: Some(ports) }
}

fn named_port(name: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::String(name.to_string())),
        protocol: Some("TCP".to_string()),
        ..Default::default()
    }
}

fn ip_blocks(cidrs: impl Iterator<Item = String>) -> Vec<NetworkPolicyPeer> {
    cidrs
        .map(|cidr| NetworkPolicyPeer { ip_block: Some(IPBlock { cidr, except: None }), ..Default::default() })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(extra: &str) -> MailCluster {
        serde_yaml::from_str(&format!(
            "apiVersion: kubemail.io/v1alpha1\nkind: MailCluster\nmetadata: {{name: mail, namespace: mx, uid: u1}}\n\
             spec: {{hostname: mx.example.org, database: {{uriSecretRef: {{name: db, key: uri}}}}, \
             nats: {{url: 'nats://nats:4222'}}{extra}}}"
        ))
        .unwrap()
    }

    fn ingress<'a>(policies: &'a [NetworkPolicy], what: &str) -> &'a [NetworkPolicyIngressRule] {
        let name = format!("mail-{what}");
        let policy = policies.iter().find(|p| p.metadata.name.as_deref() == Some(&name)).unwrap();
        policy.spec.as_ref().unwrap().ingress.as_deref().unwrap()
    }

    fn ports(rule: &NetworkPolicyIngressRule) -> Vec<String> {
        rule.ports
            .iter()
            .flatten()
            .map(|port| match port.port.as_ref().unwrap() {
                IntOrString::String(name) => name.clone(),
                IntOrString::Int(number) => number.to_string(),
            })
            .collect()
    }

    #[test]
    fn only_the_designed_flows_are_let_in() {
        let policies = build_network_policies(&cluster(""));
        assert_eq!(policies.len(), 5);
        assert!(ingress(&policies, "deny-all").is_empty(), "the first policy lets nothing in");
        let deny_all = policies[0].spec.as_ref().unwrap().pod_selector.as_ref().unwrap();
        assert_eq!(deny_all.match_labels.as_ref(), Some(&labels("mail", None)), "it covers every pod of the platform");

        let smtp = ingress(&policies, "smtp-ingress");
        assert_eq!(ports(&smtp[0]), ["smtp", "submission", "submissions"]);
        assert_eq!(ports(&ingress(&policies, "imap-frontend")[0]), ["imap", "imaps"], "no POP3 unless enabled");

        let mailstore = ingress(&policies, "mailstore");
        assert_eq!(ports(&mailstore[0]), ["grpc"]);
        let from = mailstore[0].from.as_ref().unwrap()[0].pod_selector.as_ref().unwrap();
        let components = from.match_expressions.as_ref().unwrap()[0].values.clone().unwrap();
        assert_eq!(components, ["smtp-ingress", "delivery-queue", "imap-frontend"]);
        assert_eq!(from.match_labels.as_ref().unwrap()["app.kubernetes.io/instance"], "mail", "this platform's only");
        assert_eq!(ports(&mailstore[1]), ["admin-grpc"]);
        let operator = mailstore[1].from.as_ref().unwrap()[0].pod_selector.as_ref().unwrap();
        assert_eq!(operator.match_labels.as_ref().unwrap()["app.kubernetes.io/component"], "operator");
        assert_eq!(ports(&ingress(&policies, "metrics")[0]), ["http"]);
    }

    #[test]
    fn mail_clients_and_scrapers_can_be_narrowed_and_the_policies_turned_off() {
        let narrowed = cluster(
            ", imapFrontend: {pop3: {enabled: true}}, networkPolicy: {mailClients: ['203.0.113.0/24'], \
             metricsNamespaceLabels: {kubernetes.io/metadata.name: monitoring}}",
        );
        let policies = build_network_policies(&narrowed);
        let from = ingress(&policies, "smtp-ingress")[0].from.clone().unwrap();
        assert_eq!(from.len(), 1);
        assert_eq!(from[0].ip_block.as_ref().unwrap().cidr, "203.0.113.0/24");
        assert_eq!(ports(&ingress(&policies, "imap-frontend")[0]), ["imap", "imaps", "pop3", "pop3s"]);
        let scrapers = ingress(&policies, "metrics")[0].from.clone().unwrap();
        let namespaces = scrapers[0].namespace_selector.as_ref().unwrap().match_labels.clone().unwrap();
        assert_eq!(namespaces["kubernetes.io/metadata.name"], "monitoring");

        let open = build_network_policies(&cluster(""));
        let everyone = ingress(&open, "smtp-ingress")[0].from.clone().unwrap();
        assert_eq!(everyone.len(), 3, "every IPv4 and IPv6 address and every pod");

        assert!(build_network_policies(&cluster(", networkPolicy: {enabled: false}")).is_empty());
        assert_eq!(policy_names("mail").len(), 5, "the names to remove when turned off");
    }
}
