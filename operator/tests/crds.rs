//! The CRDs on a real API server: the committed ones are what the code generates; the server
//! takes them without a warning; every example in README.md and `charts/kubemail/examples/`
//! is accepted; every CEL rule and pattern refuses what it should with its message (a rule or
//! pattern without a case here fails the test); immutable fields cannot change; and what the
//! schema refuses, `kubectl apply` says.

mod common;

use std::collections::BTreeSet;

use common::cluster::{self, TestNamespace, kubectl, kubectl_with_input, printed};
use serde_json::Value;

#[test]
fn committed_crds_and_cluster_role_match_the_code() {
    for (file, generated) in kubemail_operator::generated::files().unwrap() {
        let committed = std::fs::read_to_string(cluster::repository().join(&file)).unwrap_or_default();
        assert!(
            committed == generated,
            "{file} differs from what the code generates; run `cargo run -p kubemail-operator --bin crdgen`"
        );
    }
}

#[tokio::test]
async fn the_api_server_takes_the_crds_without_a_warning() {
    let crds = cluster::repository().join("crds");
    let output =
        kubectl(&["apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", crds.to_str().unwrap()]);
    assert!(output.status.success(), "{}", printed(&output));
    let warnings = String::from_utf8_lossy(&output.stderr);
    assert!(!warnings.contains("Warning"), "the API server warns about the CRDs: {warnings}");

    let client = cluster::client().await;
    cluster::install_crds(&client).await;
    // The short names and the `mail` category work as the README says.
    let resources = cluster::succeeded("kubectl api-resources", kubectl(&["api-resources", "--api-group=kubemail.io"]));
    for (name, short) in [("mailboxes", "mbx"), ("mailclusters", ""), ("maildomains", "")] {
        let line = resources.lines().find(|line| line.starts_with(name)).unwrap_or_else(|| panic!("{resources}"));
        assert!(line.contains(short), "{line}");
    }
    let namespace = TestNamespace::create(&client, "category").await;
    cluster::succeeded("kubectl get mail", kubectl(&["get", "mail", "-n", &namespace.name]));
}

/// The YAML blocks of `markdown` that hold a kubemail resource.
fn markdown_examples(markdown: &str) -> Vec<String> {
    markdown
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split_once("```").map(|(yaml, _)| yaml.to_string()))
        .filter(|yaml| yaml.contains("apiVersion: kubemail.io/"))
        .collect()
}

/// The documents of the YAML manifests under `dir` (not Helm values: those have no kind).
fn manifest_examples(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let text = std::fs::read_to_string(&path).unwrap();
        for document in text.split("\n---") {
            if document.contains("\nkind: ") || document.starts_with("kind: ") || document.contains("apiVersion:") {
                found.push((path.display().to_string(), document.to_string()));
            }
        }
    }
    found
}

/// `document` with its namespace set to `namespace`.
fn in_namespace(document: &str, namespace: &str) -> String {
    let mut value: serde_yaml::Value = serde_yaml::from_str(document).unwrap();
    value["metadata"]["namespace"] = serde_yaml::Value::String(namespace.to_string());
    serde_yaml::to_string(&value).unwrap()
}

/// `kubectl apply --dry-run=server` of `document` into `namespace`: the kind, or what the API
/// server (or kubectl's strict field validation) said.
fn dry_run(document: &str, namespace: &str) -> Result<String, String> {
    let output = kubectl_with_input(&["apply", "--dry-run=server", "-f", "-"], &in_namespace(document, namespace));
    if output.status.success() {
        let value: serde_yaml::Value = serde_yaml::from_str(document).unwrap();
        Ok(value["kind"].as_str().unwrap_or_default().to_string())
    } else {
        Err(printed(&output))
    }
}

#[tokio::test]
async fn every_example_is_accepted() {
    let client = cluster::client().await;
    cluster::install_crds(&client).await;
    let namespace = TestNamespace::create(&client, "examples").await;

    let readme = std::fs::read_to_string(cluster::repository().join("README.md")).unwrap();
    let mut kinds: Vec<String> = markdown_examples(&readme)
        .iter()
        .map(|yaml| dry_run(yaml, &namespace.name).unwrap_or_else(|error| panic!("README.md: {error}\n{yaml}")))
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["MailCluster", "MailDomain", "Mailbox"], "one example of each in the README");

    let mut kinds: Vec<String> = manifest_examples(&cluster::chart().join("examples"))
        .iter()
        .filter(|(_, yaml)| yaml.contains("kind:"))
        .map(|(file, yaml)| dry_run(yaml, &namespace.name).unwrap_or_else(|error| panic!("{file}: {error}\n{yaml}")))
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["MailDomain", "Mailbox", "Secret"], "the chart's examples/mail.yaml");
}

const MAILBOX: &str = "
apiVersion: kubemail.io/v1alpha1
kind: Mailbox
metadata: {name: alice}
spec:
  address: alice@example.com
  passwordSecretRef: {name: alice-password, key: password}
  quota: {storage: 5Gi, messages: 100000}
  aliases: [al@example.com]
";

const DOMAIN: &str = "
apiVersion: kubemail.io/v1alpha1
kind: MailDomain
metadata: {name: example-com}
spec:
  clusterRef: {name: mail}
  domain: example.com
  dkim: {selector: kubemail}
  defaultQuota: {storage: 1Gi}
";

const CLUSTER: &str = "
apiVersion: kubemail.io/v1alpha1
kind: MailCluster
metadata: {name: mail}
spec:
  hostname: mail.example.com
  database: {uriSecretRef: {name: mail-db-app, key: uri}}
  nats: {url: 'nats://nats.nats.svc:4222'}
  limits: {maxMessageSize: 50Mi}
  deliveryQueue:
    routes: [{domain: partner.example, host: 'mx.partner.internal:25'}]
  imapFrontend:
    autoscaling: {minReplicas: 2, maxReplicas: 10, targetCPUUtilization: 70}
  networkPolicy: {mailClients: [203.0.113.0/24]}
";

/// A rule or pattern of a CRD: the kind, the field's path and what constrains it.
type Constraint = (String, String, String);

/// Every CEL rule and pattern in the CRDs the code generates.
fn constraints() -> BTreeSet<Constraint> {
    fn walk(kind: &str, node: &Value, path: &str, found: &mut BTreeSet<Constraint>) {
        if let Some(pattern) = node["pattern"].as_str() {
            found.insert((kind.into(), path.into(), pattern.into()));
        }
        for rule in node["x-kubernetes-validations"].as_array().into_iter().flatten() {
            found.insert((kind.into(), path.into(), rule["rule"].as_str().unwrap().into()));
        }
        for (name, property) in node["properties"].as_object().into_iter().flatten() {
            walk(kind, property, &format!("{path}.{name}"), found);
        }
        walk_if(kind, &node["items"], &format!("{path}[]"), found);
        walk_if(kind, &node["additionalProperties"], &format!("{path}{{}}"), found);
    }
    fn walk_if(kind: &str, node: &Value, path: &str, found: &mut BTreeSet<Constraint>) {
        if node.is_object() {
            walk(kind, node, path, found);
        }
    }
    let mut found = BTreeSet::new();
    for crd in kubemail_operator::crd::all() {
        let crd = serde_json::to_value(&crd).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        walk(crd["spec"]["names"]["kind"].as_str().unwrap(), schema, "", &mut found);
    }
    found
}

/// An object made invalid: a valid one with the value at `pointer` set to `value`.
struct Case {
    valid: &'static str,
    pointer: &'static str,
    value: Value,
    /// What the API server's refusal says.
    message: &'static str,
    /// The path of the field whose rule or pattern refuses it, and a part of that rule or
    /// pattern.
    field: &'static str,
    constraint: &'static str,
}

fn cases() -> Vec<Case> {
    use serde_json::json;
    let case =
        |valid, pointer, value, message, field, constraint| Case { valid, pointer, value, message, field, constraint };
    vec![
        case(MAILBOX, "/spec/address", json!("not an address"), "should match", ".spec.address", "^[A-Za-z0-9"),
        case(MAILBOX, "/spec/aliases", json!(["al at example.com"]), "should match", ".spec.aliases[]", "^[A-Za-z0-9"),
        case(
            MAILBOX,
            "/spec/aliases",
            json!(["al@example.org"]),
            "aliases must be addresses of the mailbox's own domain",
            ".spec",
            "self.aliases.all",
        ),
        case(
            MAILBOX,
            "/spec/quota/storage",
            json!("0"),
            "must be a positive number of bytes",
            ".spec.quota.storage",
            "isQuantity",
        ),
        case(
            MAILBOX,
            "/spec/quota/storage",
            json!("-1Gi"),
            "must be a positive number of bytes",
            ".spec.quota.storage",
            "isQuantity",
        ),
        case(
            MAILBOX,
            "/spec/quota/storage",
            json!("0.5"),
            "must be a positive number of bytes",
            ".spec.quota.storage",
            "isQuantity",
        ),
        case(
            MAILBOX,
            "/spec/quota/storage",
            json!("five"),
            "must be a positive number of bytes",
            ".spec.quota.storage",
            "isQuantity",
        ),
        case(
            MAILBOX,
            "/spec/quota/storage",
            json!(0),
            "must be a positive number of bytes",
            ".spec.quota.storage",
            "isQuantity",
        ),
        case(DOMAIN, "/spec/domain", json!("Example.COM"), "should match", ".spec.domain", "^([a-z0-9]"),
        case(DOMAIN, "/spec/dkim/selector", json!("Key_1"), "should match", ".spec.dkim.selector", "^[a-z0-9]"),
        case(
            DOMAIN,
            "/spec/defaultQuota/storage",
            json!("0Gi"),
            "must be a positive number of bytes",
            ".spec.defaultQuota.storage",
            "isQuantity",
        ),
        case(CLUSTER, "/spec/hostname", json!("Mail..example.com"), "should match", ".spec.hostname", "^[a-z0-9]"),
        case(
            CLUSTER,
            "/spec/deliveryQueue/routes/0/domain",
            json!("Partner.Example"),
            "should match",
            ".spec.deliveryQueue.routes[].domain",
            "^([a-z0-9]",
        ),
        case(
            CLUSTER,
            "/spec/deliveryQueue/routes/0/host",
            json!("mx.partner.internal"),
            "should match",
            ".spec.deliveryQueue.routes[].host",
            "^([A-Za-z0-9.-]+",
        ),
        case(
            CLUSTER,
            "/spec/networkPolicy/mailClients/0",
            json!("everyone"),
            "should match",
            ".spec.networkPolicy.mailClients[]",
            "^[0-9a-fA-F:.]+/",
        ),
        case(
            CLUSTER,
            "/spec/limits/maxMessageSize",
            json!("0"),
            "must be a positive number of bytes",
            ".spec.limits.maxMessageSize",
            "isQuantity",
        ),
        case(
            CLUSTER,
            "/spec/imapFrontend/autoscaling/maxReplicas",
            json!(1),
            "minReplicas must not exceed maxReplicas",
            ".spec.imapFrontend.autoscaling",
            "self.minReplicas <= self.maxReplicas",
        ),
        case(
            CLUSTER,
            "/spec/imapFrontend/autoscaling",
            json!({"minReplicas": 2, "maxReplicas": 4}),
            "name a target",
            ".spec.imapFrontend.autoscaling",
            "has(self.targetCPUUtilization)",
        ),
    ]
}

/// The rules checked on updates only: each field's immutability, with the change refused.
const IMMUTABLE: &[(&str, &str, &str, &str)] = &[
    ("Mailbox", ".spec.address", "alice@example.com", "alicia@example.com"),
    ("MailDomain", ".spec.domain", "domain: example.com", "domain: example.org"),
    ("MailCluster", ".spec.serviceIdentity.issuer", "{issuer: Operator}", "{issuer: CertManager}"),
];

#[tokio::test]
async fn every_rule_and_pattern_refuses_what_it_should() {
    let client = cluster::client().await;
    cluster::install_crds(&client).await;
    let namespace = TestNamespace::create(&client, "rules").await;

    let mut covered = BTreeSet::new();
    for case in cases() {
        let mut object: Value = serde_yaml::from_str(case.valid).unwrap();
        dry_run(&serde_yaml::to_string(&object).unwrap(), &namespace.name).expect("the valid object is accepted");
        *object.pointer_mut(case.pointer).unwrap_or_else(|| panic!("{} in {}", case.pointer, case.valid)) =
            case.value.clone();
        let kind = object["kind"].as_str().unwrap().to_string();
        let refusal = dry_run(&serde_yaml::to_string(&object).unwrap(), &namespace.name)
            .expect_err(&format!("{kind} with {} = {} was accepted", case.pointer, case.value));
        assert!(refusal.contains(case.message), "{kind} with {} = {}: {refusal}", case.pointer, case.value);
        let constraint = constraints()
            .into_iter()
            .find(|(k, field, text)| *k == kind && field == case.field && text.contains(case.constraint))
            .unwrap_or_else(|| panic!("no constraint of {kind} {} like {}", case.field, case.constraint));
        covered.insert(constraint);
    }
    for (kind, field, _, _) in IMMUTABLE {
        let rule = constraints().into_iter().find(|(k, f, text)| k == kind && f == field && text == "self == oldSelf");
        covered.insert(rule.unwrap_or_else(|| panic!("{kind} {field} is not immutable")));
    }
    let uncovered: Vec<_> = constraints().difference(&covered).cloned().collect();
    assert!(uncovered.is_empty(), "rules and patterns no case here shows refusing: {uncovered:#?}");
}

#[tokio::test]
async fn immutable_fields_cannot_change() {
    let client = cluster::client().await;
    cluster::install_crds(&client).await;
    let namespace = TestNamespace::create(&client, "immutable").await;
    for (kind, field, from, to) in IMMUTABLE {
        let cluster = format!("{CLUSTER}  serviceIdentity: {{issuer: Operator}}\n");
        let valid = match *kind {
            "Mailbox" => MAILBOX,
            "MailDomain" => DOMAIN,
            _ => &cluster,
        };
        let apply = |yaml: &str| kubectl_with_input(&["apply", "-f", "-"], &in_namespace(yaml, &namespace.name));
        cluster::succeeded(&format!("creating the {kind}"), apply(valid));
        let changed = apply(&valid.replace(from, to));
        assert!(!changed.status.success(), "{kind}'s {field} changed");
        let name = field.trim_start_matches(".spec.");
        assert!(printed(&changed).contains(&format!("{name} is immutable")), "{}", printed(&changed));
        // Anything else may change.
        let other = match *kind {
            "Mailbox" => valid.replace("storage: 5Gi", "storage: 6Gi"),
            "MailDomain" => valid.replace("1Gi", "2Gi"),
            _ => valid.replace("maxMessageSize: 50Mi", "maxMessageSize: 60Mi"),
        };
        cluster::succeeded(&format!("changing another field of the {kind}"), apply(&other));
    }
}

#[tokio::test]
async fn what_the_schema_refuses_kubectl_says() {
    let client = cluster::client().await;
    cluster::install_crds(&client).await;
    let namespace = TestNamespace::create(&client, "schema").await;
    for (bad, expected) in [
        (format!("{MAILBOX}  colour: blue\n"), "unknown field \"spec.colour\""),
        (format!("{MAILBOX}  deletionPolicy: Keep\n"), "Unsupported value: \"Keep\""),
        (format!("{MAILBOX}  suspended: maybe\n"), "spec.suspended"),
        (
            MAILBOX.replace("  passwordSecretRef: {name: alice-password, key: password}\n", ""),
            "spec.passwordSecretRef: Required value",
        ),
    ] {
        let error = dry_run(&bad, &namespace.name).expect_err(&bad);
        assert!(error.contains(expected), "{expected}: {error}");
    }
}
