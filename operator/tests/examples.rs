//! Every custom resource shown in the README is one the API server accepts: it deserialises
//! into the CRD types, passes the CRD's schema, and passes its CEL rules.

mod common;

use common::schema::violations;
use kube::CustomResourceExt;
use kubemail_operator::crd::{MailCluster, MailDomain, Mailbox};
use serde_json::Value;

/// The YAML blocks of `markdown` that hold a kubemail resource.
fn examples(markdown: &str) -> Vec<String> {
    markdown
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split_once("```").map(|(yaml, _)| yaml.to_string()))
        .filter(|yaml| yaml.contains("apiVersion: kubemail.io/"))
        .collect()
}

/// The schema first, as the API server checks it; then the types and the CEL rules.
fn check(yaml: &str) -> Result<&'static str, String> {
    let value: Value = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
    let (kind, crd) = match value["kind"].as_str() {
        Some("MailCluster") => ("MailCluster", MailCluster::crd()),
        Some("MailDomain") => ("MailDomain", MailDomain::crd()),
        Some("Mailbox") => ("Mailbox", Mailbox::crd()),
        other => return Err(format!("unknown kind {other:?}")),
    };
    let wrong = violations(&crd, &value);
    if !wrong.is_empty() {
        return Err(wrong.join("; "));
    }
    let typed = |e: serde_json::Error| e.to_string();
    let cel = |e: kube::core::cel::ValidationErrors| e.to_string();
    match kind {
        "MailCluster" => serde_json::from_value::<MailCluster>(value).map_err(typed)?.validate_cel().map_err(cel)?,
        "MailDomain" => serde_json::from_value::<MailDomain>(value).map_err(typed)?.validate_cel().map_err(cel)?,
        _ => serde_json::from_value::<Mailbox>(value).map_err(typed)?.validate_cel().map_err(cel)?,
    }
    Ok(kind)
}

#[test]
fn the_readme_examples_are_valid_resources() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let mut kinds: Vec<&str> =
        examples(&readme).iter().map(|yaml| check(yaml).unwrap_or_else(|error| panic!("{error}\n{yaml}"))).collect();
    kinds.sort();
    assert_eq!(kinds, ["MailCluster", "MailDomain", "Mailbox"], "one example of each in the README");
}

#[test]
fn the_schema_check_refuses_what_the_api_server_would() {
    let good = "apiVersion: kubemail.io/v1alpha1\nkind: Mailbox\nmetadata: {name: a, namespace: m}\nspec:\n  address: a@example.com\n  passwordSecretRef: {name: s, key: password}\n";
    assert_eq!(check(good), Ok("Mailbox"));
    for (bad, expected) in [
        (good.replace("a@example.com", "not an address"), "does not match"),
        (format!("{good}  colour: blue\n"), "spec.colour: unknown field"),
        (format!("{good}  deletionPolicy: Keep\n"), "is not one of"),
        (format!("{good}  suspended: maybe\n"), "must be \"boolean\""),
        (good.replace("  passwordSecretRef: {name: s, key: password}\n", ""), "spec.passwordSecretRef: required"),
    ] {
        let error = check(&bad).unwrap_err();
        assert!(error.contains(expected), "{expected}: {error}");
    }
}
