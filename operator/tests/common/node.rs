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

    /// `kubectl` as the cluster's administrator; its output.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        run("KUBEMAIL_TEST_KUBECTL", &self.as_administrator(args))
    }

    /// `kubectl` as the cluster's administrator, expecting success; its standard output.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        succeeded(&format!("kubectl {}", args.join(" ")), self.kubectl(args))
    }

    /// `helm` as the cluster's administrator, expecting success; its standard output.
    pub fn helm_ok(&self, args: &[&str]) -> String {
        succeeded(&format!("helm {}", args.join(" ")), run("KUBEMAIL_TEST_HELM", &self.as_administrator(args)))
    }

    /// `args` behind the administrator's kubeconfig, which kubectl and helm both take.
    fn as_administrator(&self, args: &[&str]) -> Vec<String> {
        let kubeconfig = self.dir.join("admin.kubeconfig").to_str().expect("a UTF-8 path").to_string();
        ["--kubeconfig".to_string(), kubeconfig].into_iter().chain(args.iter().map(|arg| arg.to_string())).collect()
    }

    /// The node's address, on the bridge `scripts/cluster` made: where the API server
    /// listens, and where pods reach a server the test runs on the machine.
    pub fn node_ip(&self) -> std::net::IpAddr {
        let server = std::fs::read_to_string(self.dir.join("server")).expect("the cluster's server file");
        let host = server.trim().trim_start_matches("https://").rsplit_once(':').expect("https://HOST:PORT").0;
        host.parse().unwrap_or_else(|_| panic!("the API server's address {host:?}"))
    }

    /// `127.0.0.1:PORT`: the NodePort of `service`'s port `port` in `namespace`.
    pub fn node_port(&self, namespace: &str, service: &str, port: &str) -> String {
        let jsonpath = format!("jsonpath={{.spec.ports[?(@.name==\"{port}\")].nodePort}}");
        format!("127.0.0.1:{}", self.kubectl_ok(&["-n", namespace, "get", "service", service, "-o", &jsonpath]))
    }

    /// `component`'s pods in `namespace`: name, IP address and restarts, ready ones only.
    pub fn ready_pods(&self, namespace: &str, component: &str) -> Vec<Pod> {
        let listed = self.kubectl_ok(&[
            "-n",
            namespace,
            "get",
            "pods",
            "-l",
            &format!("app.kubernetes.io/component={component}"),
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.podIP} {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].ready} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
        ]);
        listed
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                // Ready, and not terminating.
                (fields.len() == 5 && fields[3] == "true" && fields[4].is_empty()).then(|| Pod {
                    name: fields[0].to_string(),
                    ip: fields[1].to_string(),
                    restarts: fields[2].parse().unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Waits up to `patience` until `kubectl get` with `jsonpath` prints `expected`.
    pub fn wait_for_jsonpath(&self, what: &str, target: &[&str], jsonpath: &str, expected: &str, patience: Duration) {
        let deadline = Instant::now() + patience;
        let jsonpath = format!("jsonpath={jsonpath}");
        loop {
            let args = [&["get"], target, &["-o", &jsonpath]].concat();
            let seen = self.kubectl_ok(&args);
            if seen == expected {
                return;
            }
            assert!(Instant::now() < deadline, "{what}: {expected:?} not seen within {patience:?}; last {seen:?}");
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits up to 5 minutes for Deployment `name` to have rolled out its current template to
    /// every replica, and up to 2 more for its old pods to finish terminating.
    pub fn rolled_out(&self, namespace: &str, name: &str) {
        let deployment = format!("deployment/{name}");
        self.kubectl_ok(&["-n", namespace, "rollout", "status", &deployment, "--timeout", "5m"]);
        let selector = self.kubectl_ok(&[
            "-n",
            namespace,
            "get",
            &deployment,
            "-o",
            "go-template={{range $key, $value := .spec.selector.matchLabels}}{{$key}}={{$value}},{{end}}",
        ]);
        let replicas = self.kubectl_ok(&["-n", namespace, "get", &deployment, "-o", "jsonpath={.spec.replicas}"]);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let pods =
                self.kubectl_ok(&["-n", namespace, "get", "pods", "-l", selector.trim_end_matches(','), "-o", "name"]);
            if pods.lines().count().to_string() == replicas {
                return;
            }
            assert!(Instant::now() < deadline, "{deployment}: pods still terminating after 120 s:\n{pods}");
            std::thread::sleep(Duration::from_millis(500));
        }
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

/// A running pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub name: String,
    pub ip: String,
    pub restarts: u32,
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

/// `scripts/lib/imap-idlers.py`: IMAP clients kept in IDLE on an INBOX, reconnecting when
/// their connection ends, and what each has seen so far. Killed when dropped.
pub struct IdleClients {
    child: std::process::Child,
    events: std::sync::mpsc::Receiver<serde_json::Value>,
    pub clients: Vec<IdleClient>,
}

/// What one IDLE client has seen.
#[derive(Debug, Clone, Default)]
pub struct IdleClient {
    /// Times it entered IDLE: 1 on its first connection, one more for each reconnection.
    pub idles: usize,
    /// Times its connection ended, with `* BYE` or without.
    pub byes: usize,
    pub closes: usize,
    /// The mailbox's size as it last heard it (at SELECT or from `* n EXISTS`).
    pub exists: u64,
    /// Failed reconnections, each tried again.
    pub retries: Vec<String>,
}

impl IdleClients {
    pub fn start(server: &str, user: &str, password: &str, count: usize) -> IdleClients {
        let mut child = Command::new("python3")
            .arg(repository().join("scripts/lib/imap-idlers.py"))
            .args([server, user, password, &count.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let stdout = child.stdout.take().unwrap();
        let (sender, events) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let event = serde_json::from_str(&line).unwrap_or_else(|_| panic!("imap-idlers.py printed {line:?}"));
                if sender.send(event).is_err() {
                    break;
                }
            }
        });
        IdleClients { child, events, clients: vec![IdleClient::default(); count] }
    }

    /// Follows the clients' events until `done` holds for every client; panics with what each
    /// has seen after `patience`.
    pub fn wait_until(&mut self, what: &str, patience: Duration, done: impl Fn(&IdleClient) -> bool) {
        let deadline = Instant::now() + patience;
        while !self.clients.iter().all(&done) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(event) => self.apply(&event),
                Err(_) => panic!("not every IDLE client {what} within {patience:?}: {:#?}", self.clients),
            }
        }
    }

    fn apply(&mut self, event: &serde_json::Value) {
        let client = &mut self.clients[event["client"].as_u64().unwrap() as usize];
        match event["event"].as_str().unwrap() {
            "idle" => {
                client.idles += 1;
                client.exists = event["exists"].as_u64().unwrap();
            }
            "exists" => client.exists = event["exists"].as_u64().unwrap(),
            "bye" => client.byes += 1,
            "closed" => client.closes += 1,
            "retry" => client.retries.push(event["error"].as_str().unwrap_or_default().to_string()),
            other => panic!("imap-idlers.py reported {other:?}"),
        }
    }
}

impl Drop for IdleClients {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `scripts/lib/smtp-stream.py`: a steady stream of numbered messages (`Subject: TAG N`) over
/// SMTP until stopped. Dropped, its standard input closes, which stops it too.
pub struct SmtpStream {
    child: std::process::Child,
}

/// How one message of a stream went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// `250` after DATA.
    Accepted(u64),
    /// An SMTP error reply (its code), or none at all; what the sender saw.
    NotAccepted { n: u64, code: Option<u64>, seen: String },
}

impl SmtpStream {
    pub fn start(server: &str, from: &str, to: &str, tag: &str) -> SmtpStream {
        let child = Command::new("python3")
            .arg(repository().join("scripts/lib/smtp-stream.py"))
            .args([server, from, to, tag])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        SmtpStream { child }
    }

    /// Stops sending (after the messages in flight) and says how every message went.
    pub fn stop(self) -> Vec<Attempt> {
        // Closes its standard input first.
        let output = self.child.wait_with_output().expect("smtp-stream.py ends");
        assert!(output.status.success(), "smtp-stream.py: {}", printed(&output));
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| {
                let attempt: serde_json::Value = serde_json::from_str(line).unwrap();
                let n = attempt["n"].as_u64().unwrap();
                match attempt["result"].as_str().unwrap() {
                    "accepted" => Attempt::Accepted(n),
                    _ => Attempt::NotAccepted { n, code: attempt["code"].as_u64(), seen: attempt.to_string() },
                }
            })
            .collect()
    }
}
