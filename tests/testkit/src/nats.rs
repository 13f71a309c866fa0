//! [`NatsServer`]: a NATS server with JetStream of a test's own, to kill and restart; or, by
//! [`NatsServer::start_secured`], one that lets in only kubemail's components over TLS, each
//! with the user and permissions the chart's example gives it
//! (`charts/kubemail/examples/nats-values.yaml`, read as it is).

use std::path::{Path, PathBuf};

use kubemail_runtime::nats::{NatsAccess, NatsCredentials};

use crate::{NATS_SERVER_ENV, free_port, required_env, unique_name};

/// The users of the chart's example NATS configuration: one per component, named as its role.
pub const USERS: [&str; 4] = ["smtp-ingress", "delivery-queue", "mailstore", "imap-frontend"];

/// A JetStream-enabled NATS server for one test, which may kill it (as a crash would) and start
/// it again on the same port with the same store.
pub struct NatsServer {
    port: u16,
    dir: tempfile::TempDir,
    /// The configuration file of a secured server; `None`: open to anyone, no TLS.
    config: Option<PathBuf>,
    process: Option<std::process::Child>,
}

impl NatsServer {
    pub fn start() -> NatsServer {
        let port = free_port();
        let mut server = NatsServer { port, dir: tempfile::tempdir().expect("temp dir"), config: None, process: None };
        server.restart();
        server
    }

    /// A server with the chart example's users and permissions, each user with a password of
    /// its own ([`credentials_dir`](Self::credentials_dir)), speaking only TLS with a
    /// certificate signed by [`ca_file`](Self::ca_file).
    pub fn start_secured() -> NatsServer {
        let port = free_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let tls = write_tls(dir.path());
        let authorization = authorization_with_passwords(dir.path());
        let config = dir.path().join("nats.conf");
        let text = format!(
            "listen: \"127.0.0.1:{port}\"\njetstream {{ store_dir: {store:?} }}\n\
             tls {{ cert_file: {cert:?}, key_file: {key:?} }}\nauthorization: {authorization}\n",
            store = dir.path().join("store"),
            cert = tls.0,
            key = tls.1,
        );
        std::fs::write(&config, text).expect("write the NATS configuration");
        let mut server = NatsServer { port, dir, config: Some(config), process: None };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The `username` and `password` files of `user` (one of [`USERS`]), as its Secret mounted.
    pub fn credentials_dir(&self, user: &str) -> PathBuf {
        assert!(self.config.is_some(), "only a secured server has users");
        self.dir.path().join("credentials").join(user)
    }

    /// The CA that signed the secured server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// How `user` reaches the secured server.
    pub fn access(&self, user: &str) -> NatsAccess {
        NatsAccess {
            name: Some(user.to_string()),
            credentials: Some(NatsCredentials::from_dir(&self.credentials_dir(user)).expect("credentials")),
            ca_file: Some(self.ca_file()),
        }
    }

    /// The flags that give `user`'s way in to a service (`--nats-url` and the rest).
    pub fn flags(&self, user: &str) -> Vec<String> {
        let mut flags = vec!["--nats-url".to_string(), self.url()];
        if self.config.is_some() {
            flags.extend([
                "--nats-credentials-dir".to_string(),
                self.credentials_dir(user).display().to_string(),
                "--nats-ca-file".to_string(),
                self.ca_file().display().to_string(),
            ]);
        }
        flags
    }

    /// SIGKILL: no clean shutdown, as when the pod is lost. A single server may lose the last
    /// messages it acknowledged (JetStream writes them out on its own schedule); a cluster with
    /// three copies of each does not.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Stops the server as an orderly shutdown does (SIGTERM: JetStream writes out what it
    /// holds), then starts it again.
    pub fn restart_gracefully(&mut self) {
        if let Some(process) = &self.process {
            let _ = std::process::Command::new("kill").args(["-TERM", &process.id().to_string()]).status();
        }
        if let Some(mut process) = self.process.take() {
            let _ = process.wait();
        }
        self.restart();
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn restart(&mut self) {
        self.kill();
        let binary = required_env(NATS_SERVER_ENV);
        let mut command = std::process::Command::new(&binary);
        match &self.config {
            Some(config) => command.arg("-c").arg(config),
            None => command
                .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd"])
                .arg(self.dir.path().join("store")),
        };
        let process = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e}"));
        self.process = Some(process);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nats-server did not start on port {}", self.port);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A CA (`ca.crt`) and the server's certificate for 127.0.0.1 signed by it; the paths of the
/// certificate and its key.
fn write_tls(dir: &Path) -> (PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("server parameters");
    params.subject_alt_names.push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    let certificate = params.signed_by(&key, &issuer).expect("server certificate");
    let (cert_file, key_file) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::write(dir.join("ca.crt"), ca.pem()).expect("write the CA");
    std::fs::write(&cert_file, certificate.pem()).expect("write the certificate");
    std::fs::write(&key_file, key.serialize_pem()).expect("write the key");
    (cert_file, key_file)
}

/// The chart example's `authorization` block as JSON (which NATS' configuration format
/// accepts), each `<< $VARIABLE >>` password replaced by a fresh one, written with its user
/// name into `<dir>/credentials/<user>/`.
fn authorization_with_passwords(dir: &Path) -> String {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../charts/kubemail/examples/nats-values.yaml");
    let text = std::fs::read_to_string(&example).unwrap_or_else(|e| panic!("{}: {e}", example.display()));
    let values: serde_json::Value = serde_yaml::from_str(&text).expect("the example is YAML");
    let mut authorization = values["config"]["merge"]["authorization"].clone();
    let users = authorization["users"].as_array_mut().expect("the example lists users");
    let names: Vec<&str> = users.iter().map(|user| user["user"].as_str().expect("a user name")).collect();
    assert_eq!(names, USERS, "the example has a user per component");
    for user in users.iter_mut() {
        let name = user["user"].as_str().unwrap().to_string();
        let password = unique_name("password");
        user["password"] = serde_json::Value::String(password.clone());
        let credentials = dir.join("credentials").join(&name);
        std::fs::create_dir_all(&credentials).expect("credentials directory");
        std::fs::write(credentials.join("username"), &name).expect("write the user name");
        std::fs::write(credentials.join("password"), format!("{password}\n")).expect("write the password");
    }
    authorization.to_string()
}
