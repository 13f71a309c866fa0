//! The platform as production runs it, on loopback: each service its own process (the
//! binaries next to `kubemail`), the mailstore on PostgreSQL, NATS with JetStream, and two
//! smtp-ingress and two imap-frontend processes. Security is on: gRPC between the services is
//! mutual TLS with identities from one service CA, and NATS is secured as the chart's example
//! says (a user per component, limited to its subjects, over TLS).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{Grpc, KUBEMAIL, curl, free_loopback_address as loopback, text};

/// A service binary built beside `kubemail` (`cargo test --workspace` builds every package's).
pub fn binary(name: &str) -> PathBuf {
    let path = Path::new(KUBEMAIL).with_file_name(name);
    assert!(path.exists(), "{} is missing: build every binary first (cargo build --bins)", path.display());
    path
}

/// A running service process, and how to start it again.
struct Service {
    name: String,
    args: Vec<String>,
    log: PathBuf,
    process: Child,
}

/// One SMTP ingress's listeners.
pub struct Smtp {
    pub mx: String,
    pub submission: String,
    pub submissions: String,
}

/// One IMAP frontend's listeners.
pub struct Imap {
    pub imap: String,
    pub imaps: String,
    /// POP3 with STLS.
    pub pop3: String,
}

pub struct Distributed {
    /// The mailstore's gRPC APIs, which require identities from the platform's service CA.
    pub grpc: Grpc,
    pub smtp: [Smtp; 2],
    pub imap: [Imap; 2],
    /// The certificate the listeners present.
    pub certificate: PathBuf,
    services: Vec<Service>,
    env: Vec<(String, String)>,
    work: tempfile::TempDir,
    nats: kubemail_testkit::NatsServer,
}

impl Distributed {
    /// Starts everything and waits until every service is ready; `delivery` are extra flags
    /// of the delivery queue (`--mx-override`, `--dkim-dir`).
    pub fn start(delivery: &[&str]) -> Distributed {
        Distributed::start_with_env(delivery, &[])
    }

    /// [`Distributed::start`] with `env` set for every service. The services share a service
    /// CA (`--service-ca-dir`), so every gRPC call between them is mutual TLS and authorized.
    pub fn start_with_env(delivery: &[&str], env: &[(&str, &str)]) -> Distributed {
        let work = tempfile::tempdir().unwrap();
        let nats = kubemail_testkit::NatsServer::start_secured();
        let database = tokio::runtime::Runtime::new().unwrap().block_on(kubemail_testkit::postgres_database());
        let tls = work.path().join("tls");
        let pair = kubemail_runtime::tls::self_signed(&["localhost".to_string()]).unwrap();
        kubemail_runtime::tls::write_pair(&tls, "localhost", &pair).unwrap();
        let (grpc, admin_grpc) = (loopback(), loopback());
        let service_ca = work.path().join("service-ca");
        let env = env.iter().map(|(name, value)| (name.to_string(), value.to_string()));
        let mut platform = Distributed {
            grpc: Grpc {
                mailstore: format!("http://{grpc}"),
                admin: format!("http://{admin_grpc}"),
                service_ca: Some(service_ca.clone()),
            },
            smtp: [0, 1].map(|_| Smtp { mx: loopback(), submission: loopback(), submissions: loopback() }),
            imap: [0, 1].map(|_| Imap { imap: loopback(), imaps: loopback(), pop3: loopback() }),
            certificate: tls.join("localhost/tls.crt"),
            services: Vec::new(),
            env: env.chain([("KUBEMAIL_SERVICE_CA_DIR".to_string(), service_ca.display().to_string())]).collect(),
            work,
            nats,
        };
        let nats = kubemail_testkit::nats::USERS.map(|role| (role, platform.nats.flags(role)));
        let common = |http: &str, role: &str| {
            let (_, nats) = nats.iter().find(|(user, _)| *user == role).expect("a NATS user per service");
            [&["--http-listen".to_string(), http.to_string()][..], nats].concat()
        };
        let mailstore = ["--database-url", &database, "--grpc-listen", &grpc, "--admin-grpc-listen", &admin_grpc]
            .map(str::to_string);
        let args = [&mailstore[..], &common(&loopback(), "mailstore")].concat();
        platform.spawn("mailstore", &args);
        let tls_dir = tls.to_str().unwrap().to_string();
        let with_mailstore =
            ["--mailstore", &platform.grpc.mailstore, "--hostname", "localhost", "--tls-dir", &tls_dir]
                .map(str::to_string);
        for i in 0..2 {
            let smtp = &platform.smtp[i];
            let listeners = [
                "--smtp-listen",
                &smtp.mx,
                "--submission-listen",
                &smtp.submission,
                "--submissions-listen",
                &smtp.submissions,
            ]
            .map(str::to_string);
            // Checking SPF, DKIM and DMARC asks the system's DNS, which a test machine may not
            // reach: each lookup would wait out its timeout. The checks have tests of their own.
            let no_dns = ["--verify-inbound".to_string(), "false".to_string()];
            let args =
                [&listeners[..], &with_mailstore[..], &no_dns[..], &common(&loopback(), "smtp-ingress")].concat();
            platform.spawn("smtp-ingress", &args);
            let imap = &platform.imap[i];
            let listeners = ["--imap-listen", &imap.imap, "--imaps-listen", &imap.imaps, "--pop3-listen", &imap.pop3]
                .map(str::to_string);
            let args = [&listeners[..], &with_mailstore[..], &common(&loopback(), "imap-frontend")].concat();
            platform.spawn("imap-frontend", &args);
        }
        let queue = ["--mailstore", &platform.grpc.mailstore, "--hostname", "localhost"].map(str::to_string);
        let extra: Vec<String> = delivery.iter().map(|s| s.to_string()).collect();
        let args = [&queue[..], &extra, &common(&loopback(), "delivery-queue")].concat();
        platform.spawn("delivery-queue", &args);
        platform
    }

    /// Starts `name` with `args`, its output in a log file, and waits for its `/readyz`.
    fn spawn(&mut self, name: &str, args: &[String]) {
        let log = self.work.path().join(format!("{name}-{}.log", self.services.len()));
        let process = self.run(name, args, &log);
        self.services.push(Service { name: name.to_string(), args: args.to_vec(), log, process });
        self.wait_ready(self.services.len() - 1);
    }

    fn run(&self, name: &str, args: &[String], log: &Path) -> Child {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        Command::new(binary(name))
            .args(args)
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"))
    }

    fn wait_ready(&mut self, index: usize) {
        let service = &mut self.services[index];
        let http = service.args.iter().position(|a| a == "--http-listen").map(|i| service.args[i + 1].clone()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !curl(&format!("http://{http}/readyz")).status.success() {
            let logged = || std::fs::read_to_string(&service.log).unwrap_or_default();
            // One that exits (a port taken meanwhile, a bad flag) says why at once.
            if let Ok(Some(status)) = service.process.try_wait() {
                panic!("{} exited ({status}) before it was ready:\n{}", service.name, logged());
            }
            assert!(Instant::now() < deadline, "{} not ready after 60 s:\n{}", service.name, logged());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The services by name and index, in start order: `mailstore`, then `smtp-ingress` and
    /// `imap-frontend` twice each, then `delivery-queue`.
    pub fn services(&self) -> Vec<String> {
        self.services.iter().map(|service| service.name.clone()).collect()
    }

    /// SIGKILL, as when a pod is lost: nothing is flushed, nothing said goodbye.
    pub fn kill(&mut self, index: usize) {
        let process = &mut self.services[index].process;
        let _ = process.kill();
        let _ = process.wait();
    }

    /// Starts a killed service again with the same flags, without waiting for it.
    pub fn restart(&mut self, index: usize) {
        let service = &self.services[index];
        let process = self.run(&service.name, &service.args, &service.log);
        self.services[index].process = process;
    }

    /// Waits until every service answers `/readyz`.
    pub fn wait_all_ready(&mut self) {
        for index in 0..self.services.len() {
            self.wait_ready(index);
        }
    }

    pub fn admin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        super::admin(&self.grpc, args, stdin)
    }

    /// The NATS server, to kill and restart.
    pub fn nats(&mut self) -> &mut kubemail_testkit::NatsServer {
        &mut self.nats
    }

    /// Every service's log, for a failing test to show.
    pub fn logs(&self) -> String {
        let mut logs = String::new();
        for entry in std::fs::read_dir(self.work.path()).unwrap().flatten() {
            if entry.path().extension().is_some_and(|e| e == "log") {
                logs += &format!("== {}\n{}", entry.path().display(), text(&std::fs::read(entry.path()).unwrap()));
            }
        }
        logs
    }
}

impl Drop for Distributed {
    fn drop(&mut self) {
        for service in &mut self.services {
            let _ = service.process.kill();
            let _ = service.process.wait();
        }
    }
}
