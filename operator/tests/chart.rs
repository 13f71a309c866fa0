//! The Helm chart, checked as an install does it: `helm lint --strict` and the rendered
//! manifests sent to the real API server (`kubectl apply --dry-run=server`: its schemas, the
//! CRDs, admission) for several combinations of values; a real `helm install`, `helm upgrade`
//! and `helm uninstall` of the example platform; wrong values refused by `values.schema.json`;
//! and what is rendered tied to what the operator does.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::cluster::{self, Release, TestNamespace, kubectl, printed};
use kube::Api;
use kubemail_operator::build::cluster::{Component, build_cluster, names};
use kubemail_operator::crd::{MailCluster, MailDomain, Mailbox};
use serde_json::Value;

fn tool(variable: &str) -> PathBuf {
    std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{variable} is not set: run the tests through scripts/test, which installs helm"))
}

fn chart() -> PathBuf {
    cluster::chart()
}

/// `helm template` of the chart with `values` (helm's own arguments); the rendered text, or
/// helm's complaint.
fn template(values: &[&str]) -> Result<String, String> {
    template_in("mail", values)
}

/// [`template`] for a release in `namespace`.
fn template_in(namespace: &str, values: &[&str]) -> Result<String, String> {
    let output = Command::new(tool("KUBEMAIL_TEST_HELM"))
        .args(["template", "mail"])
        .arg(chart())
        .args(["--namespace", namespace, "--include-crds"])
        .args(values)
        .current_dir(chart())
        .output()
        .unwrap();
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).to_string())
    }
}

/// The rendered documents, parsed.
fn documents(rendered: &str) -> Vec<Value> {
    rendered
        .split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<Value>(doc).ok())
        .filter(|doc| doc.is_object())
        .collect()
}

fn find<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|doc| doc["kind"] == kind && doc["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

const COMBINATIONS: &[(&str, &[&str])] = &[
    ("the defaults", &[]),
    (
        "a platform with autoscaling",
        &[
            "--set",
            "cluster.enabled=true",
            "--set",
            "imap.autoscaling.enabled=true",
            "--set",
            "imap.autoscaling.targetConnectionsPerPod=5000",
            "--set",
            "imap.pop3.enabled=true",
        ],
    ),
    ("monitoring", &["--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.grafanaDashboard.enabled=true"]),
    (
        "a custom image",
        &[
            "--set",
            "cluster.enabled=true",
            "--set",
            "image.repository=registry.example.com/mail/kubemail",
            "--set",
            "image.tag=1.2.3",
            "--set",
            "image.pullSecrets[0]=regcred",
        ],
    ),
    ("the example platform", &["-f", "examples/platform-values.yaml"]),
];

/// A client, a namespace of the test's own, and the CRDs the chart's resources need: the
/// operator's and the Prometheus Operator's ServiceMonitor (`metrics.serviceMonitor.enabled`).
async fn cluster_for_the_chart(prefix: &str) -> (kube::Client, TestNamespace) {
    let client = cluster::client().await;
    cluster::install_crds(&client).await;
    let dir = PathBuf::from(std::env::var("KUBEMAIL_TEST_PROMETHEUS_OPERATOR_CRDS").unwrap());
    cluster::apply_crds(&client, &cluster::crds_in(&dir, &["monitoring.coreos.com_servicemonitors.yaml"])).await;
    let namespace = TestNamespace::create(&client, prefix).await;
    (client, namespace)
}

#[tokio::test]
async fn every_combination_lints_and_the_api_server_accepts_it() {
    let (_client, namespace) = cluster_for_the_chart("chart").await;
    let dir = tempfile::tempdir().unwrap();
    for (what, values) in COMBINATIONS {
        let lint = Command::new(tool("KUBEMAIL_TEST_HELM"))
            .args(["lint", "--strict"])
            .arg(chart())
            .args(*values)
            .current_dir(chart())
            .output()
            .unwrap();
        assert!(lint.status.success(), "helm lint, {what}: {}", String::from_utf8_lossy(&lint.stdout));

        let rendered =
            template_in(&namespace.name, values).unwrap_or_else(|error| panic!("helm template, {what}: {error}"));
        let file = dir.path().join("rendered.yaml");
        std::fs::write(&file, &rendered).unwrap();
        let file = file.to_str().unwrap();
        let applied = kubectl(&["apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", file]);
        assert!(applied.status.success(), "the API server refuses {what}: {}", printed(&applied));
        let warnings = String::from_utf8_lossy(&applied.stderr);
        assert!(!warnings.contains("Warning"), "the API server warns about {what}: {warnings}");
    }
}

#[tokio::test]
async fn the_example_platform_installs_upgrades_and_uninstalls() {
    let (client, namespace) = cluster_for_the_chart("helm").await;
    // The server says which release it is (a build without the version stamped says
    // v0.0.0-master), so helm's check of the chart's kubeVersion passes.
    let version: Value =
        serde_json::from_str(&cluster::succeeded("kubectl version", kubectl(&["version", "-o", "json"]))).unwrap();
    let server = version["serverVersion"]["gitVersion"].as_str().unwrap();
    assert!(server.starts_with("v1.37."), "{server}");
    let examples = chart().join("examples/platform-values.yaml");
    let release = Release::install(&namespace.name, &namespace.name, &["-f", examples.to_str().unwrap()]);
    let service_account = release.service_account();

    let clusters: Api<MailCluster> = Api::namespaced(client.clone(), &namespace.name);
    let cluster = clusters.get("mail").await.expect("the platform's MailCluster");
    let autoscaling = cluster.spec.imap_frontend.autoscaling.clone().expect("autoscaling from the values");
    assert_eq!(autoscaling.max_replicas, 8);
    let domains: Api<MailDomain> = Api::namespaced(client.clone(), &namespace.name);
    assert_eq!(domains.get("example-com").await.unwrap().spec.domain, "example.com");
    let mailboxes: Api<Mailbox> = Api::namespaced(client.clone(), &namespace.name);
    assert_eq!(mailboxes.get("alice").await.unwrap().spec.address, "alice@example.com");
    let monitor = kubectl(&["get", "servicemonitor", "-n", &namespace.name, "-o", "name"]);
    assert!(printed(&monitor).contains("servicemonitor"), "{}", printed(&monitor));
    let account = kubectl(&["get", "serviceaccount", &service_account, "-n", &namespace.name]);
    assert!(account.status.success(), "{}", printed(&account));

    // The namespace's editors manage its domains and mailboxes, its viewers read them, through
    // the built-in roles the chart's ClusterRoles are aggregated into.
    let ns = namespace.name.as_str();
    for (user, role) in [("mail-editor", "edit"), ("mail-viewer", "view")] {
        let binding = ["create", "rolebinding", user, "--clusterrole", role, "--user", user, "-n", ns];
        cluster::succeeded("kubectl create rolebinding", kubectl(&binding));
    }
    let can = |user: &'static str, verb: &'static str, resource: &'static str| {
        let ns = ns.to_string();
        async move {
            let answer = kubectl(&["auth", "can-i", verb, resource, "-n", &ns, "--as", user]);
            String::from_utf8_lossy(&answer.stdout).trim() == "yes"
        }
    };
    cluster::eventually("the aggregated roles reach edit and view", std::time::Duration::from_secs(30), || async {
        can("mail-editor", "create", "mailboxes.kubemail.io").await
            && can("mail-editor", "delete", "maildomains.kubemail.io").await
            && can("mail-viewer", "list", "mailclusters.kubemail.io").await
    })
    .await;
    assert!(!can("mail-editor", "patch", "mailclusters.kubemail.io").await, "the platform is the operator's to run");
    assert!(can("mail-editor", "get", "mailclusters.kubemail.io").await);
    assert!(!can("mail-viewer", "create", "mailboxes.kubemail.io").await, "viewers only read");
    assert!(!can("mail-viewer", "get", "secrets").await, "and never a password");

    // Changed values reach the resources; a mailbox added to the values is created.
    release.upgrade(&[
        "-f",
        examples.to_str().unwrap(),
        "--set",
        "imap.autoscaling.maxReplicas=12",
        "--set",
        "mailboxes[1].name=bob",
        "--set",
        "mailboxes[1].address=bob@example.com",
        "--set",
        "mailboxes[1].passwordSecret.name=bob-password",
        "--set",
        "mailboxes[1].passwordSecret.key=password",
    ]);
    let cluster = clusters.get("mail").await.unwrap();
    assert_eq!(cluster.spec.imap_frontend.autoscaling.unwrap().max_replicas, 12);
    assert_eq!(mailboxes.get("bob").await.expect("bob from the upgraded values").spec.address, "bob@example.com");

    // Uninstalled, nothing of the release is left but the CRDs (Helm leaves those).
    release.uninstall();
    cluster::eventually("the release's objects are gone", std::time::Duration::from_secs(30), || async {
        clusters.get_opt("mail").await.unwrap().is_none()
            && mailboxes.list(&Default::default()).await.unwrap().items.is_empty()
            && domains.list(&Default::default()).await.unwrap().items.is_empty()
            && !kubectl(&["get", "serviceaccount", &service_account, "-n", &namespace.name]).status.success()
    })
    .await;
    let crds = kubectl(&["get", "crd", "mailboxes.kubemail.io"]);
    assert!(crds.status.success(), "{}", printed(&crds));
}

#[test]
fn wrong_values_are_refused_at_install() {
    for (value, complaint) in [
        ("operator.replicas=two", "/operator/replicas"),
        ("imap.autoscaling.enabled=maybe", "/imap/autoscaling/enabled"),
        ("imap.pop3.enabled=yes", "/imap/pop3/enabled"),
        ("smtp.service.type=Public", "/smtp/service/type"),
        ("cluster.hostname=Not A Host", "/cluster/hostname"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("cluster.serviceIdentity.issuer=Vault", "/cluster/serviceIdentity/issuer"),
        ("colour=blue", "additional properties 'colour' not allowed"),
    ] {
        let error = template(&["--set", value]).expect_err(value);
        assert!(error.contains(complaint), "{value}: {error}");
    }
}

#[test]
fn the_rendered_rbac_is_what_the_operator_needs() {
    let rendered = documents(&template(&[]).unwrap());
    let rules = |kind: &str| find(&rendered, kind, "mail-kubemail-operator")["rules"].clone();
    assert_eq!(rules("ClusterRole"), serde_json::to_value(kubemail_operator::rbac::cluster_rules()).unwrap());
    assert_eq!(rules("Role"), serde_json::to_value(kubemail_operator::rbac::namespace_rules()).unwrap());
    let binding = find(&rendered, "ClusterRoleBinding", "mail-kubemail-operator");
    assert_eq!(binding["subjects"][0]["name"], "mail-kubemail-operator");
    assert_eq!(binding["subjects"][0]["namespace"], "mail");
    // The CRDs installed are the generated ones.
    let crds: Vec<&Value> = rendered.iter().filter(|d| d["kind"] == "CustomResourceDefinition").collect();
    assert_eq!(crds.len(), 3);
}

#[test]
fn watched_namespaces_get_roles_and_no_cluster_role() {
    let rendered = documents(&template(&["--set", "operator.watchNamespaces={team-a,team-b}"]).unwrap());
    let named = |kind: &str| -> Vec<&Value> {
        rendered.iter().filter(|d| d["kind"] == kind && d["metadata"]["name"] == "mail-kubemail-operator").collect()
    };
    assert!(named("ClusterRole").is_empty() && named("ClusterRoleBinding").is_empty(), "no cluster-wide rights");
    let in_namespace = |kind: &str, namespace: &str| -> Value {
        named(kind).into_iter().find(|d| d["metadata"]["namespace"] == namespace).cloned().unwrap_or(Value::Null)
    };
    for namespace in ["team-a", "team-b"] {
        let role = in_namespace("Role", namespace);
        assert_eq!(
            role["rules"],
            serde_json::to_value(kubemail_operator::rbac::cluster_rules()).unwrap(),
            "{namespace}"
        );
        let binding = in_namespace("RoleBinding", namespace);
        assert_eq!(binding["roleRef"]["kind"], "Role");
        assert_eq!(binding["subjects"][0]["name"], "mail-kubemail-operator");
        assert_eq!(binding["subjects"][0]["namespace"], "mail", "the operator's own ServiceAccount");
    }
    // Its Lease stays in its own namespace.
    assert_eq!(
        in_namespace("Role", "mail")["rules"],
        serde_json::to_value(kubemail_operator::rbac::namespace_rules()).unwrap()
    );
    let operator = find(&rendered, "Deployment", "mail-kubemail-operator");
    let env = operator["spec"]["template"]["spec"]["containers"][0]["env"].as_array().unwrap();
    let watched =
        env.iter().find(|e| e["name"] == "KUBEMAIL_OPERATOR_WATCH_NAMESPACES").expect("the namespaces passed");
    assert_eq!(watched["value"], "team-a,team-b");
    let error = template(&["--set", "operator.watchNamespaces={Team A}"]).expect_err("not a namespace name");
    assert!(error.contains("/operator/watchNamespaces/0"), "{error}");
}

#[test]
fn the_operator_runs_locked_down_with_probes() {
    let rendered = documents(&template(&["--set", "operator.replicas=2"]).unwrap());
    let deployment = find(&rendered, "Deployment", "mail-kubemail-operator");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "mail-kubemail-operator");
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let container = &pod["containers"][0];
    assert_eq!(container["command"][0], "operator");
    assert_eq!(container["image"], "ghcr.io/kubemail/kubemail:0.1.0", "the chart's appVersion");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(container["securityContext"]["capabilities"]["drop"][0], "ALL");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(container["resources"]["requests"]["cpu"].is_string());
    // Leader election knows its namespace and its name in the Lease.
    let env = container["env"].as_array().unwrap();
    let from_field =
        |name: &str| env.iter().find(|e| e["name"] == name).unwrap()["valueFrom"]["fieldRef"]["fieldPath"].clone();
    assert_eq!(from_field("KUBEMAIL_OPERATOR_NAMESPACE"), "metadata.namespace");
    assert_eq!(from_field("KUBEMAIL_OPERATOR_IDENTITY"), "metadata.name");
}

#[test]
fn the_values_become_the_platform_the_operator_builds() {
    let rendered = documents(
        &template(&[
            "-f",
            "examples/platform-values.yaml",
            "--set",
            "image.repository=registry.example.com/mail/kubemail",
            "--set",
            "image.tag=1.2.3",
        ])
        .unwrap(),
    );
    let mut cluster: MailCluster = serde_json::from_value(find(&rendered, "MailCluster", "mail").clone()).unwrap();
    cluster.metadata.uid = Some("uid".into());
    let objects = build_cluster(&cluster, &[], "0.1.0");
    let imap = objects
        .deployments
        .iter()
        .find(|d| d.metadata.name.as_deref() == Some(&names::deployment("mail", Component::ImapFrontend)))
        .unwrap();
    assert_eq!(imap.spec.as_ref().unwrap().replicas, None, "the autoscaler owns the frontends' count");
    let autoscaler = objects.autoscaler.expect("imap.autoscaling.enabled makes an autoscaler");
    assert_eq!(autoscaler.spec.as_ref().unwrap().max_replicas, 8);
    let image = imap.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].image.clone();
    assert_eq!(image.as_deref(), Some("registry.example.com/mail/kubemail:1.2.3"));
    let domain = find(&rendered, "MailDomain", "example-com");
    assert_eq!(domain["spec"]["clusterRef"]["name"], "mail");
    assert_eq!(domain["spec"]["tls"]["issuerRef"]["kind"], "ClusterIssuer");
    let mailbox = find(&rendered, "Mailbox", "alice");
    assert_eq!(mailbox["spec"]["deletionPolicy"], "Retain");
    let monitor = find(&rendered, "ServiceMonitor", "mail-kubemail");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");

    // Each component reaches NATS as the user the example NATS values give it a password for.
    let nats: Value =
        serde_yaml::from_str(&std::fs::read_to_string(chart().join("examples/nats-values.yaml")).unwrap())
            .expect("the NATS example is YAML");
    let password_secret = |variable: &str| nats["container"]["env"][variable]["valueFrom"]["secretKeyRef"].clone();
    for (component, variable) in [
        (Component::SmtpIngress, "SMTP_INGRESS_PASSWORD"),
        (Component::DeliveryQueue, "DELIVERY_QUEUE_PASSWORD"),
        (Component::Mailstore, "MAILSTORE_PASSWORD"),
        (Component::ImapFrontend, "IMAP_FRONTEND_PASSWORD"),
    ] {
        let deployment = objects
            .deployments
            .iter()
            .find(|d| d.metadata.name.as_deref() == Some(&names::deployment("mail", component)))
            .unwrap();
        let volumes = deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap().volumes.clone().unwrap();
        let credentials = volumes.iter().find(|v| v.name == "nats-credentials").expect("a NATS user mounted");
        let secret = credentials.secret.as_ref().unwrap().secret_name.clone().unwrap();
        assert_eq!(password_secret(variable)["name"], secret.as_str(), "{}", component.name());
        assert_eq!(password_secret(variable)["key"], "password");
        let users = nats["config"]["merge"]["authorization"]["users"].as_array().unwrap();
        let user = users.iter().find(|user| user["user"] == component.name()).expect("a NATS user per component");
        assert_eq!(user["password"], format!("<< ${variable} >>"));
        assert!(volumes.iter().any(|v| v.name == "nats-ca"), "TLS to NATS with the server's CA");
    }
}

/// The ports of the IMAP Service the operator builds from the chart rendered with `values`.
fn imap_service_ports(values: &[&str]) -> Vec<i32> {
    let rendered = documents(&template(&[&["--set", "cluster.enabled=true"], values].concat()).unwrap());
    let mut cluster: MailCluster = serde_json::from_value(find(&rendered, "MailCluster", "mail").clone()).unwrap();
    cluster.metadata.uid = Some("uid".into());
    let objects = build_cluster(&cluster, &[], "0.1.0");
    let service = objects.services.iter().find(|s| s.metadata.name.as_deref() == Some(&names::imap_service("mail")));
    service.unwrap().spec.as_ref().unwrap().ports.iter().flatten().map(|port| port.port).collect()
}

#[test]
fn pop3_is_opened_by_one_value() {
    assert_eq!(imap_service_ports(&[]), [143, 993], "off by default");
    assert_eq!(imap_service_ports(&["--set", "imap.pop3.enabled=true"]), [143, 993, 110, 995]);
}

#[test]
fn the_dashboard_shows_documented_metrics() {
    let rendered = documents(&template(&["--set", "metrics.grafanaDashboard.enabled=true"]).unwrap());
    let config = find(&rendered, "ConfigMap", "mail-kubemail-dashboard");
    assert_eq!(config["metadata"]["labels"]["grafana_dashboard"], "1");
    let dashboard: Value = serde_json::from_str(config["data"]["kubemail.json"].as_str().unwrap()).unwrap();
    let readme = std::fs::read_to_string(cluster::repository().join("README.md")).unwrap();
    let metric = regex::Regex::new(r"kubemail_[a-z_]+").unwrap();
    let mut shown = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        let expr = panel["targets"][0]["expr"].as_str().unwrap();
        for name in metric.find_iter(expr) {
            assert!(
                readme.contains(&format!("`{}`", name.as_str())),
                "{} is not in the README's metrics table",
                name.as_str()
            );
            shown += 1;
        }
    }
    assert!(shown >= 10, "{shown} metrics shown");
}
