//! The cluster with a node that `scripts/test` starts beside the control plane of the other
//! tests (`scripts/cluster up --node`, kubemail's image loaded), and kubemail on it as
//! `scripts/cluster demo` installs it: what a platform team gets from the README.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::cluster::{printed, repository, run, succeeded};

/// The running cluster with a node.
pub struct NodeCluster {
    pub dir: PathBuf,
}

/// What `scripts/cluster demo` prints when kubemail is ready: where its Services' NodePorts
/// are, its domain, and the password of alice and bob.
#[derive(Debug, Clone)]
pub struct Demo {
    pub smtp: String,
    pub submission: String,
    pub imap: String,
    pub domain: String,
    pub password: String,
    /// From starting the demo (image import, NATS, database, both helm releases) to its line.
    pub took: Duration,
}

impl NodeCluster {
    pub fn from_env() -> NodeCluster {
        let dir = std::env::var("KUBEMAIL_TEST_NODE_CLUSTER_DIR").unwrap_or_else(|_| {
            panic!("KUBEMAIL_TEST_NODE_CLUSTER_DIR is not set: run the tests through scripts/test, which starts a cluster with a node")
        });
        NodeCluster { dir: PathBuf::from(dir) }
    }

    /// `kubectl` as the cluster's administrator, expecting success; its standard output.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let kubeconfig = self.dir.join("admin.kubeconfig");
        let with_kubeconfig = [&["--kubeconfig", kubeconfig.to_str().unwrap()], args].concat();
        succeeded(&format!("kubectl {}", args.join(" ")), run("KUBEMAIL_TEST_KUBECTL", &with_kubeconfig))
    }

    /// `scripts/cluster demo` on this cluster; panics with its output if it fails.
    pub fn demo(&self) -> Demo {
        let started = Instant::now();
        let output = Command::new(repository().join("scripts/cluster"))
            .arg("demo")
            .env("KUBEMAIL_CLUSTER_DIR", &self.dir)
            .stdin(Stdio::null())
            .output()
            .expect("scripts/cluster runs");
        assert!(output.status.success(), "scripts/cluster demo failed: {}", printed(&output));
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().last().unwrap_or_default();
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("scripts/cluster demo printed no {name}= in its last line: {line:?}"))
                .to_string()
        };
        Demo {
            smtp: field("smtp"),
            submission: field("submission"),
            imap: field("imap"),
            domain: field("domain"),
            password: field("password"),
            took: started.elapsed(),
        }
    }

    /// The ClusterIP address and port of `service`'s port `port` in `namespace`.
    pub fn cluster_ip(&self, namespace: &str, service: &str, port: &str) -> String {
        let ip = self.kubectl_ok(&["-n", namespace, "get", "service", service, "-o", "jsonpath={.spec.clusterIP}"]);
        let number = self.kubectl_ok(&[
            "-n",
            namespace,
            "get",
            "service",
            service,
            "-o",
            &format!("jsonpath={{.spec.ports[?(@.name==\"{port}\")].port}}"),
        ]);
        format!("{ip}:{number}")
    }
}

/// swaks sending one message; its output.
pub fn swaks(server: &str, args: &[&str]) -> Output {
    Command::new("swaks")
        .args(["--server", server, "--helo", "client.test", "--timeout", "30"])
        .args(args)
        // swaks asks for anything missing on its terminal; a test has none to offer.
        .stdin(Stdio::null())
        .output()
        .expect("swaks runs")
}

/// `scripts/lib/imap-subjects.py` against `server` over STARTTLS (the cluster's certificate is
/// self-signed): the Subject of every message in `user`'s INBOX, or what the client printed
/// when it failed.
pub fn imap_subjects(server: &str, user: &str, password: &str) -> Result<Vec<String>, String> {
    let output = Command::new("python3")
        .arg(repository().join("scripts/lib/imap-subjects.py"))
        .args([server, user, password])
        .output()
        .expect("python3 runs");
    if !output.status.success() {
        return Err(format!("IMAP at {server} as {user}: {}", printed(&output)));
    }
    Ok(String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect())
}

/// What the Dockerfile's final stage says of the image: its user, command and exposed ports,
/// and the binaries its build stage copies into `binary_dir`.
pub struct DockerfileImage {
    pub user: String,
    pub cmd: Vec<String>,
    pub exposed_ports: Vec<String>,
    pub binaries: Vec<String>,
    pub binary_dir: String,
}

impl DockerfileImage {
    pub fn parse(dockerfile: &str) -> DockerfileImage {
        let final_stage = dockerfile.rsplit_once("\nFROM ").expect("a final stage").1;
        let instruction = |name: &str| {
            final_stage
                .lines()
                .find_map(|line| line.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("the final stage has {name}"))
                .trim()
                .to_string()
        };
        let cmd: Vec<String> = serde_json::from_str(&instruction("CMD")).expect("CMD in exec form");
        let mut exposed_ports: Vec<String> =
            instruction("EXPOSE").split_whitespace().map(|port| format!("{port}/tcp")).collect();
        exposed_ports.sort();
        // `COPY --from=build /out/ /usr/local/bin/`
        let binary_dir = instruction("COPY").rsplit(' ').next().unwrap().trim_start_matches('/').to_string();
        // `for binary in operator mailstore …; do`
        let binaries = dockerfile
            .split("for binary in ")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .expect("the build stage's list of binaries")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        DockerfileImage { user: instruction("USER"), cmd, exposed_ports, binaries, binary_dir }
    }
}

/// An image tarball (`crane`'s, as `ctr images import` takes it): its config and the paths of
/// the files in its layers (relative, directories ending in `/`).
pub struct ImageFile {
    pub config: serde_json::Value,
    pub files: Vec<String>,
    path: PathBuf,
    layers: Vec<String>,
}

impl ImageFile {
    pub fn open(path: &std::path::Path) -> ImageFile {
        let member = |name: &str| -> Vec<u8> {
            let output = Command::new("tar").arg("-xOf").arg(path).arg(name).output().expect("tar runs");
            assert!(output.status.success(), "{name} in {}: {}", path.display(), printed(&output));
            output.stdout
        };
        let manifest: serde_json::Value = serde_json::from_slice(&member("manifest.json")).expect("manifest.json");
        let config: serde_json::Value =
            serde_json::from_slice(&member(manifest[0]["Config"].as_str().unwrap())).expect("the image's config");
        let layers: Vec<String> =
            manifest[0]["Layers"].as_array().unwrap().iter().map(|layer| layer.as_str().unwrap().to_string()).collect();
        let mut files = Vec::new();
        for layer in &layers {
            let output = Command::new("sh")
                .arg("-c")
                .arg("tar -xOf \"$0\" \"$1\" | tar -tz")
                .arg(path)
                .arg(layer)
                .output()
                .expect("tar runs");
            assert!(output.status.success(), "layer {layer}: {}", printed(&output));
            files.extend(
                String::from_utf8_lossy(&output.stdout).lines().map(|file| file.trim_start_matches("./").to_string()),
            );
        }
        ImageFile { config: config["config"].clone(), files, path: path.to_path_buf(), layers }
    }

    /// The contents of `file` in the image's layers (the last layer holding it wins).
    pub fn read(&self, file: &str) -> String {
        let mut contents = None;
        for layer in &self.layers {
            let output = Command::new("sh")
                .arg("-c")
                .arg("tar -xOf \"$0\" \"$1\" | tar -xzO \"./$2\"")
                .arg(&self.path)
                .arg(layer)
                .arg(file)
                .output()
                .expect("tar runs");
            if output.status.success() {
                contents = Some(String::from_utf8_lossy(&output.stdout).into_owned());
            }
        }
        contents.unwrap_or_else(|| panic!("{file} is in no layer"))
    }
}
