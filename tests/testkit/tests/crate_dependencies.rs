//! Which crate may depend on which (docs/architecture.md): the services share code only
//! through `kubemail-runtime`, `kubemail-proto` and `kubemail-message`, never through each
//! other's crates, and the operator knows the services only by the deployment contract in
//! the runtime. A dependency across those lines makes a service's internals part of another's
//! build and interface.
//! Dev-dependencies are allowed: black-box tests may run one service against another.

use std::collections::BTreeMap;
use std::process::Command;

/// The crates that may be built into a service or the operator, and what each may use.
const ALLOWED: &[(&str, &[&str])] = &[
    ("kubemail-proto", &[]),
    ("kubemail-runtime", &["kubemail-proto"]),
    ("kubemail-message", &["kubemail-proto"]),
    ("kubemail-mailstore", &["kubemail-proto", "kubemail-runtime", "kubemail-message"]),
    ("kubemail-smtp-ingress", &["kubemail-proto", "kubemail-runtime"]),
    ("kubemail-delivery-queue", &["kubemail-proto", "kubemail-runtime"]),
    ("kubemail-imap-frontend", &["kubemail-proto", "kubemail-runtime", "kubemail-message"]),
    ("kubemail-operator", &["kubemail-proto", "kubemail-runtime"]),
];

/// The crates that put the services together and so may use them all: the all-in-one binary,
/// the test support, the fuzzers and the benchmarks.
const ASSEMBLERS: &[&str] = &["kubemail", "kubemail-testkit", "kubemail-fuzz", "kubemail-bench"];

#[test]
fn services_and_the_operator_depend_on_no_other_service() {
    let workspace = workspace_dependencies();
    let mut unknown: Vec<&String> =
        workspace.keys().filter(|name| !ASSEMBLERS.contains(&name.as_str()) && allowed(name).is_none()).collect();
    unknown.sort();
    assert!(unknown.is_empty(), "crates this test does not know (add them to ALLOWED or ASSEMBLERS): {unknown:?}");
    let mut crossings = Vec::new();
    for (name, allowed) in ALLOWED {
        let Some(dependencies) = workspace.get(*name) else {
            panic!("{name} is not in the workspace any more; update ALLOWED");
        };
        for dependency in dependencies {
            if !allowed.contains(&dependency.as_str()) {
                crossings.push(format!("{name} depends on {dependency}"));
            }
        }
    }
    assert!(crossings.is_empty(), "dependencies across the crate boundaries: {crossings:#?}");
}

fn allowed(name: &str) -> Option<&'static [&'static str]> {
    ALLOWED.iter().find(|(crate_name, _)| *crate_name == name).map(|(_, allowed)| *allowed)
}

/// Each workspace crate and the workspace crates it depends on for its build (normal and
/// build dependencies; dev-dependencies left out).
fn workspace_dependencies() -> BTreeMap<String, Vec<String>> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(root)
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("cargo metadata's JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let members: Vec<&str> = packages.iter().filter_map(|p| p["name"].as_str()).collect();
    packages
        .iter()
        .map(|package| {
            let dependencies = package["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .filter(|d| d["kind"].as_str() != Some("dev"))
                .filter_map(|d| d["name"].as_str())
                .filter(|name| members.contains(name))
                .map(String::from)
                .collect();
            (package["name"].as_str().expect("a name").to_string(), dependencies)
        })
        .collect()
}
