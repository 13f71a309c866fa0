//! NetworkPolicies on a real API server: a MailCluster gets the policies of its designed flows,
//! which the API server takes as valid; narrowing the mail clients narrows them; turning them
//! off removes them; a mail client that is not a CIDR is refused by the CRD.

mod common;

use common::cluster::eventually;
use common::platform::{CLUSTER, PROMPTLY, Platform, yaml};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{ListParams, Patch, PatchParams};
use kubemail_operator::crd::MailCluster;

/// The cluster's NetworkPolicies by name, as the API server holds them.
async fn policies(platform: &Platform) -> Vec<NetworkPolicy> {
    let selector = ListParams::default().labels("app.kubernetes.io/instance=mail");
    platform.api::<NetworkPolicy>().list(&selector).await.unwrap().items
}

fn named<'a>(policies: &'a [NetworkPolicy], name: &str) -> Option<&'a NetworkPolicy> {
    policies.iter().find(|policy| policy.metadata.name.as_deref() == Some(name))
}

/// The CIDRs the SMTP policy lets in.
fn smtp_clients(policies: &[NetworkPolicy]) -> Vec<String> {
    let Some(policy) = named(policies, "mail-smtp-ingress") else { return Vec::new() };
    let rules = policy.spec.as_ref().and_then(|spec| spec.ingress.clone()).unwrap_or_default();
    rules
        .iter()
        .flat_map(|rule| rule.from.iter().flatten())
        .filter_map(|peer| Some(peer.ip_block.as_ref()?.cidr.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cluster_gets_the_policies_of_its_flows_and_loses_them_when_they_are_turned_off() {
    let platform = Platform::start("network", &[]).await;
    platform.apply(&yaml::<MailCluster>(CLUSTER)).await;
    eventually("five NetworkPolicies", PROMPTLY, || async { policies(&platform).await.len() == 5 }).await;
    let all = policies(&platform).await;
    let deny_all = named(&all, "mail-deny-all").expect("a policy that denies by default");
    let spec = deny_all.spec.as_ref().unwrap();
    assert_eq!(spec.policy_types.as_deref(), Some(&["Ingress".to_string()][..]));
    assert!(spec.ingress.as_ref().is_none_or(Vec::is_empty), "it lets nothing in");
    assert_eq!(deny_all.metadata.owner_references.as_ref().unwrap()[0].kind, "MailCluster");
    assert_eq!(smtp_clients(&all), ["0.0.0.0/0", "::/0"], "mail from anywhere by default");
    let mailstore = named(&all, "mail-mailstore").unwrap().spec.clone().unwrap().ingress.unwrap();
    let ports: Vec<String> = mailstore
        .iter()
        .flat_map(|rule| rule.ports.iter().flatten())
        .map(|port| format!("{:?}", port.port.as_ref().unwrap()))
        .collect();
    assert_eq!(ports, [r#"String("grpc")"#, r#"String("admin-grpc")"#], "the API, and the Admin API apart");

    let narrowed = format!("{CLUSTER}  networkPolicy: {{mailClients: ['198.51.100.0/24']}}\n");
    platform.apply(&yaml::<MailCluster>(&narrowed)).await;
    eventually("the SMTP policy lets in only the named clients", PROMPTLY, || async {
        smtp_clients(&policies(&platform).await) == ["198.51.100.0/24"]
    })
    .await;

    let refused = platform
        .api::<MailCluster>()
        .patch(
            "mail",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"networkPolicy": {"mailClients": ["everyone"]}}})),
        )
        .await
        .expect_err("a mail client must be a CIDR");
    assert!(refused.to_string().contains("mailClients"), "{refused}");

    let off = format!("{CLUSTER}  networkPolicy: {{enabled: false}}\n");
    platform.apply(&yaml::<MailCluster>(&off)).await;
    eventually("no NetworkPolicies", PROMPTLY, || async { policies(&platform).await.is_empty() }).await;
}
