//! Every custom resource shown in the README or shipped as an example in `charts/` is one the
//! API server accepts: it deserialises into the CRD types, passes the CRD's schema, and passes
//! its CEL rules.

mod common;

use common::schema::check_resource as check;

/// The YAML blocks of `markdown` that hold a kubemail resource.
fn examples(markdown: &str) -> Vec<String> {
    markdown
        .split("```yaml\n")
        .skip(1)
        .filter_map(|block| block.split_once("```").map(|(yaml, _)| yaml.to_string()))
        .filter(|yaml| yaml.contains("apiVersion: kubemail.io/"))
        .collect()
}

/// The kubemail resources in the YAML files and Markdown under `dir`, each with its file;
/// Helm templates (not YAML until rendered) are checked after rendering, in `chart.rs`.
fn examples_under(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(examples_under(&path));
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        let name = path.display().to_string();
        match path.extension().and_then(|e| e.to_str()) {
            Some("md") => found.extend(examples(&text).into_iter().map(|yaml| (name.clone(), yaml))),
            Some("yaml" | "yml") if !text.contains("{{") => found.extend(
                text.split("\n---")
                    .filter(|doc| doc.contains("apiVersion: kubemail.io/"))
                    .map(|doc| (name.clone(), doc.to_string())),
            ),
            _ => {}
        }
    }
    found
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
fn the_chart_examples_are_valid_resources() {
    let charts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts");
    let mut kinds: Vec<&str> = examples_under(&charts)
        .iter()
        .map(|(file, yaml)| check(yaml).unwrap_or_else(|error| panic!("{file}: {error}\n{yaml}")))
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["MailDomain", "Mailbox"], "the chart's examples/mail.yaml");
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
