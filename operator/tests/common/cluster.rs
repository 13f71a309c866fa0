//! The real Kubernetes control plane `scripts/test` starts (`scripts/cluster`: etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler on 127.0.0.1), and what the tests do
//! with it: a namespace of their own, the CRDs, the chart installed with helm, the operator run
//! as a process that impersonates the chart's ServiceAccount, and the API server's record of
//! what that ServiceAccount did (its audit log).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::Value;
use tokio::sync::OnceCell;

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test, which starts a Kubernetes control plane")
    })
}

/// The directory of the running cluster: its kubeconfigs, certificates and logs.
pub fn cluster_dir() -> PathBuf {
    PathBuf::from(required_env("KUBEMAIL_TEST_CLUSTER_DIR"))
}

/// The repository's root.
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The chart.
pub fn chart() -> PathBuf {
    repository().join("charts/kubemail")
}

/// A client of the API server as its administrator (`KUBECONFIG`).
pub async fn client() -> Client {
    Client::try_default().await.expect("a client of the test cluster (KUBECONFIG)")
}

/// Runs `tool` (the environment variable naming its binary) with `args`; its output.
pub fn run(tool: &str, args: &[impl AsRef<std::ffi::OsStr>]) -> Output {
    let binary = required_env(tool);
    Command::new(&binary).args(args).output().unwrap_or_else(|error| panic!("cannot run {binary}: {error}"))
}

/// `kubectl` as the administrator.
pub fn kubectl(args: &[&str]) -> Output {
    run("KUBEMAIL_TEST_KUBECTL", args)
}

/// `kubectl` as the administrator, with `input` on its standard input (`-f -`).
pub fn kubectl_with_input(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let binary = required_env("KUBEMAIL_TEST_KUBECTL");
    let mut child = Command::new(&binary)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot run {binary}: {error}"));
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// `helm` as the administrator.
pub fn helm(args: &[&str]) -> Output {
    run("KUBEMAIL_TEST_HELM", args)
}

/// What a command printed, for a failed assertion's message.
pub fn printed(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Runs `output`'s command expecting success; its standard output.
pub fn succeeded(what: &str, output: Output) -> String {
    assert!(output.status.success(), "{what} failed: {}", printed(&output));
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// A namespace of one test's own, deleted (without waiting) when dropped.
pub struct TestNamespace {
    pub name: String,
}

impl TestNamespace {
    /// `<prefix>-<process>-<n>`: unique within the run, a valid namespace name.
    pub async fn create(client: &Client, prefix: &str) -> TestNamespace {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!("{prefix}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let namespace: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|error| panic!("cannot create namespace {name}: {error}"));
        TestNamespace { name }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", "namespace", &self.name, "--wait=false", "--ignore-not-found"]);
    }
}

/// Installs (server-side apply, field manager `kubemail-tests`) the CRDs the code generates and
/// waits until the API server serves them; once per test process.
pub async fn install_crds(client: &Client) {
    static INSTALLED: OnceCell<()> = OnceCell::const_new();
    INSTALLED
        .get_or_init(|| async {
            let crds: Vec<CustomResourceDefinition> = kubemail_operator::crd::all();
            apply_crds(client, &crds).await;
        })
        .await;
}

/// Applies `crds` and waits until each is Established.
pub async fn apply_crds(client: &Client, crds: &[CustomResourceDefinition]) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap();
        api.patch(&name, &PatchParams::apply("kubemail-tests").force(), &Patch::Apply(crd))
            .await
            .unwrap_or_else(|error| panic!("the API server refused CRD {name}: {error}"));
    }
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap();
        eventually(&format!("CRD {name} is Established"), Duration::from_secs(30), || async {
            api.get(&name).await.is_ok_and(|crd| {
                crd.status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            })
        })
        .await;
    }
}

/// The CRDs in the YAML files of `dir` (another project's, such as cert-manager's).
pub fn crds_in(dir: &Path, files: &[&str]) -> Vec<CustomResourceDefinition> {
    files
        .iter()
        .map(|file| {
            let text =
                std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()));
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
        })
        .collect()
}

/// Polls `check` every 100 ms until it holds; fails the test after `within`.
pub async fn eventually<F: Future<Output = bool>>(what: &str, within: Duration, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A release of the chart, installed with `helm install`.
pub struct Release {
    pub name: String,
    pub namespace: String,
}

impl Release {
    /// `helm install NAME charts/kubemail -n NAMESPACE` with `values` (helm's own arguments).
    pub fn install(name: &str, namespace: &str, values: &[&str]) -> Release {
        let chart = chart();
        let mut args = vec!["install", name, chart.to_str().unwrap(), "--namespace", namespace];
        args.extend_from_slice(values);
        succeeded(&format!("helm install {name}"), helm(&args));
        Release { name: name.to_string(), namespace: namespace.to_string() }
    }

    /// The operator's ServiceAccount (`<release>-kubemail-operator`).
    pub fn service_account(&self) -> String {
        if self.name.contains("kubemail") {
            format!("{}-operator", self.name)
        } else {
            format!("{}-kubemail-operator", self.name)
        }
    }

    pub fn upgrade(&self, values: &[&str]) {
        let chart = chart();
        let mut args = vec!["upgrade", &self.name, chart.to_str().unwrap(), "--namespace", &self.namespace];
        args.extend_from_slice(values);
        succeeded(&format!("helm upgrade {}", self.name), helm(&args));
    }

    pub fn uninstall(&self) {
        succeeded(
            &format!("helm uninstall {}", self.name),
            helm(&["uninstall", &self.name, "--namespace", &self.namespace]),
        );
    }
}

/// The user name of a ServiceAccount, as RBAC and the audit log know it.
pub fn service_account_user(namespace: &str, service_account: &str) -> String {
    format!("system:serviceaccount:{namespace}:{service_account}")
}

/// A kubeconfig (written into `dir`) that acts as `user` by impersonation: the harness's
/// impersonating client certificate, with RBAC deciding what `user` may do.
pub fn impersonating_kubeconfig(dir: &Path, user: &str) -> PathBuf {
    let source = cluster_dir().join("impersonator.kubeconfig");
    let mut config: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&source).unwrap()).unwrap();
    config["users"][0]["user"]["as"] = serde_yaml::Value::String(user.to_string());
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}

/// The operator binary, run as a process against the test cluster as a ServiceAccount.
pub struct Operator {
    child: Option<Child>,
    /// Its `/healthz`, `/readyz` and `/metrics`.
    pub http: std::net::SocketAddr,
    dir: tempfile::TempDir,
}

impl Operator {
    /// The operator of `namespace` (its resources only, its Lease there), acting as
    /// `service_account` of `namespace`, reaching the mailstore at `mailstore`, with `extra`
    /// flags.
    pub fn start(namespace: &str, service_account: &str, mailstore: &str, extra: &[&str]) -> Operator {
        Operator::start_watching(namespace, service_account, namespace, mailstore, extra)
    }

    /// An operator installed in `namespace` (its ServiceAccount and Lease there) reconciling
    /// the resources of `watched`.
    pub fn start_watching(
        namespace: &str,
        service_account: &str,
        watched: &str,
        mailstore: &str,
        extra: &[&str],
    ) -> Operator {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = impersonating_kubeconfig(dir.path(), &service_account_user(namespace, service_account));
        let http: std::net::SocketAddr = kubemail_testkit::free_loopback_address().parse().unwrap();
        let log = std::fs::File::create(dir.path().join("operator.log")).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_operator"));
        // A test killed before it drops its operator (Ctrl-C) takes the operator with it: an
        // orphan would retry against a control plane that is gone, for ever.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info,kubemail_operator=debug")
            .args(["--http-listen", &http.to_string(), "--watch-namespaces", watched, "--mailstore", mailstore])
            .args(["--lease-namespace", namespace])
            .args(extra)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("the operator starts");
        Operator { child: Some(child), http, dir }
    }

    /// Its resident memory in bytes (`VmRSS`), while it runs.
    pub fn resident_memory(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib * 1024)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("operator.log")).unwrap_or_default()
    }

    /// SIGTERM, as Kubernetes stops a pod, and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("the operator did not stop within 15 s of SIGTERM:\n{}", self.log());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// SIGKILL, as when its node is lost.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The sum of `kubemail_operator_reconciles_total` over every kind and result.
    pub fn reconciles(&self) -> u64 {
        let Some(metrics) = http_get(self.http, "/metrics") else { return 0 };
        metrics
            .lines()
            .filter(|line| line.starts_with("kubemail_operator_reconciles_total"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- the operator's log ends:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
        }
    }
}

/// The body of `GET path` from an HTTP server on `address`; `None` if it does not answer.
fn http_get(address: std::net::SocketAddr, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

/// One request in the API server's audit log.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Request {
    pub verb: String,
    /// `""` for the core group.
    pub group: String,
    /// With its subresource: `mailboxes/status`.
    pub resource: String,
    pub namespace: String,
    pub code: u16,
}

/// Every request `user` made through the impersonating client, from the API server's audit
/// log (which keeps those only).
pub fn requests_of(user: &str) -> Vec<Request> {
    let log = std::fs::read_to_string(cluster_dir().join("logs/audit.log")).unwrap_or_default();
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|event| event["impersonatedUser"]["username"] == user)
        .filter(|event| event["objectRef"].is_object())
        .map(|event| {
            let object = &event["objectRef"];
            let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
            let mut resource = text(&object["resource"]);
            if let Some(subresource) = object["subresource"].as_str() {
                resource = format!("{resource}/{subresource}");
            }
            Request {
                verb: text(&event["verb"]),
                group: text(&object["apiGroup"]),
                resource,
                namespace: text(&object["namespace"]),
                code: event["responseStatus"]["code"].as_u64().unwrap_or(0) as u16,
            }
        })
        .collect()
}
