//! Helpers for the black-box tests of the `kubemail` binary.

#![allow(dead_code)]

pub mod distributed;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kubemail_runtime::identity::{self, CertificateAuthority, Role, ServiceIdentity};
pub use kubemail_testkit::free_loopback_address;

pub const KUBEMAIL: &str = env!("CARGO_BIN_EXE_kubemail");

/// `kubemail dev` in its own data directory, every listener on a free loopback port.
pub struct Dev {
    child: Child,
    /// What the process printed, for a failing start to show.
    log: tempfile::NamedTempFile,
    /// The gRPC APIs, and the other listeners as `host:port`.
    pub grpc: Grpc,
    pub http: String,
    pub smtp: String,
    pub submission: String,
    pub submissions: String,
    pub imap: String,
    pub imaps: String,
    pub pop3: String,
    pub pop3s: String,
}

/// Why a `kubemail dev` did not become ready.
enum NotReady {
    /// It exited at once because one of its ports was taken between choosing and binding it
    /// (by a process outside this test binary); fresh ports will do.
    PortTaken(String),
    Failed(String),
}

impl Dev {
    pub fn start(data_dir: &Path) -> Dev {
        Dev::start_with(data_dir, &[])
    }

    /// Starts with `extra` flags after the listener flags, and waits until it is ready.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Dev {
        let mut attempts = 0;
        loop {
            let mut dev = Dev::spawn(data_dir, extra);
            match dev.wait_ready() {
                Ok(()) => return dev,
                Err(NotReady::PortTaken(log)) if attempts < 3 => {
                    attempts += 1;
                    eprintln!("kubemail dev found a port taken, starting again on others:\n{log}");
                }
                Err(NotReady::PortTaken(log) | NotReady::Failed(log)) => panic!("{log}"),
            }
        }
    }

    fn spawn(data_dir: &Path, extra: &[&str]) -> Dev {
        let port = free_loopback_address;
        let (grpc, admin_grpc, http, smtp, submission, submissions) = (port(), port(), port(), port(), port(), port());
        let (imap, imaps, pop3, pop3s) = (port(), port(), port(), port());
        let mut command = Command::new(KUBEMAIL);
        command.args(["dev", "--data-dir"]).arg(data_dir).args([
            "--grpc-listen",
            &grpc,
            "--admin-grpc-listen",
            &admin_grpc,
            "--http-listen",
            &http,
            "--smtp-listen",
            &smtp,
            "--submission-listen",
            &submission,
            "--submissions-listen",
            &submissions,
            "--imap-listen",
            &imap,
            "--imaps-listen",
            &imaps,
            "--pop3-listen",
            &pop3,
            "--pop3s-listen",
            &pop3s,
        ]);
        command.args(extra);
        let log = tempfile::NamedTempFile::new().expect("a log file");
        let child = command
            .stdout(log.reopen().expect("the log file"))
            .stderr(log.reopen().expect("the log file"))
            .spawn()
            .expect("kubemail dev starts");
        let grpc =
            Grpc { mailstore: format!("http://{grpc}"), admin: format!("http://{admin_grpc}"), service_ca: None };
        Dev { child, log, grpc, http, smtp, submission, submissions, imap, imaps, pop3, pop3s }
    }

    /// Waits (up to a minute) for `/readyz`; a process that exits first says why at once.
    fn wait_ready(&mut self) -> Result<(), NotReady> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if curl(&format!("http://{}/readyz", self.http)).status.success() {
                return Ok(());
            }
            let logged = || std::fs::read_to_string(self.log.path()).unwrap_or_default();
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = logged();
                let message = format!("kubemail dev exited ({status}) before it was ready:\n{log}");
                return Err(if log.contains("Address already in use") {
                    NotReady::PortTaken(message)
                } else {
                    NotReady::Failed(message)
                });
            }
            if Instant::now() > deadline {
                return Err(NotReady::Failed(format!("kubemail dev not ready after 60 s:\n{}", logged())));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn admin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        admin(&self.grpc, args, stdin)
    }

    /// The messages in `address`'s INBOX, read through the mailstore API.
    pub fn inbox(&self, address: &str, password: &str) -> Vec<String> {
        inbox(&self.grpc, address, password)
    }

    /// Waits (up to a minute) until `address`'s INBOX holds `count` messages, and returns them.
    pub fn wait_for_inbox(&self, address: &str, password: &str, count: usize) -> Vec<String> {
        wait_for_inbox(&self.grpc, address, password, count)
    }

    /// Stops with SIGTERM and returns whether the exit was clean.
    pub fn terminate(mut self) -> bool {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a platform's gRPC APIs are, and the CA whose identities its mailstore requires (none
/// for `kubemail dev`).
#[derive(Clone, Debug)]
pub struct Grpc {
    /// The MailStore API (`http://…`).
    pub mailstore: String,
    /// The Admin API.
    pub admin: String,
    pub service_ca: Option<PathBuf>,
}

impl Grpc {
    /// A channel as `role`: to the Admin API for the roles that administer, else to the
    /// MailStore API.
    pub async fn channel(&self, role: Role) -> tonic::transport::Channel {
        let url = if matches!(role, Role::Admin | Role::Operator) { &self.admin } else { &self.mailstore };
        let identity = self.service_ca.as_ref().map(|dir| {
            let authority = CertificateAuthority::open_or_create(dir).expect("the platform's service CA");
            ServiceIdentity::from_authority(role, authority, Duration::from_secs(3600)).expect("an identity")
        });
        identity::connect(url, identity.as_ref(), Role::Mailstore).await.expect("the mailstore answers")
    }
}

/// `kubemail admin` against the platform's Admin API, `stdin` given.
pub fn admin(grpc: &Grpc, args: &[&str], stdin: Option<&str>) -> Output {
    let mut command = Command::new(KUBEMAIL);
    command.args(["admin", "--mailstore", &grpc.admin]);
    if let Some(dir) = &grpc.service_ca {
        command.env("KUBEMAIL_SERVICE_CA_DIR", dir);
    }
    let mut child = command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubemail admin runs");
    child.stdin.take().unwrap().write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// The messages in `address`'s INBOX, read through the MailStore API as the IMAP frontend
/// would.
pub fn inbox(grpc: &Grpc, address: &str, password: &str) -> Vec<String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let channel = grpc.channel(Role::ImapFrontend).await;
        let messages = kubemail_testkit::mailstore::inbox(&channel, address, password).await;
        messages.iter().map(|message| text(message)).collect()
    })
}

/// Waits (up to a minute) until `address`'s INBOX holds `count` messages, and returns them.
pub fn wait_for_inbox(grpc: &Grpc, address: &str, password: &str, count: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let messages = inbox(grpc, address, password);
        if messages.len() >= count || Instant::now() > deadline {
            return messages;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `curl -fsS` (fails on HTTP errors), the way an operator would probe the endpoint.
pub fn curl(url: &str) -> Output {
    Command::new("curl").args(["-fsS", "--max-time", "5", url]).output().expect("curl runs")
}

/// curl on a mail URL (`imap://`, `pop3s://`, …) as `user:password`, with STARTTLS or STLS
/// required on the plain schemes and kubemail dev's self-signed certificate trusted; the output.
pub fn curl_mail(url: &str, user: &str) -> String {
    let output = Command::new("curl")
        .args(["-sS", "--ssl-reqd", "--insecure", "--max-time", "10", "--user", user, url])
        .output()
        .expect("curl runs");
    assert!(output.status.success(), "curl {url}: {}", text(&output.stderr));
    text(&output.stdout)
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn ok(output: Output) -> String {
    assert!(output.status.success(), "command failed: {}", text(&output.stderr));
    text(&output.stdout)
}

/// What every Python client script starts with: its libraries, and a TLS context that accepts
/// `kubemail dev`'s self-signed certificate.
const PYTHON_PRELUDE: &str = r#"
import imaplib, smtplib, ssl, sys
from email.message import EmailMessage
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
def address(arg):
    host, port = arg.rsplit(":", 1)
    return host, int(port)
"#;

/// Runs a Python client `script` with `args` (in `sys.argv[1:]`); returns its output lines.
pub fn python(script: &str, args: &[&str]) -> Vec<String> {
    let output = Command::new("python3")
        .args(["-c", &format!("{PYTHON_PRELUDE}{script}")])
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "python: {}{}", text(&output.stdout), text(&output.stderr));
    text(&output.stdout).lines().map(str::to_string).collect()
}

/// Starts a Python client `script` that keeps running; its output lines arrive on the receiver.
pub fn python_in_background(script: &str, args: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new("python3")
        .args(["-u", "-c", &format!("{PYTHON_PRELUDE}{script}")])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 runs");
    let stdout = child.stdout.take().unwrap();
    let (lines, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)).map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    (child, received)
}

/// swaks against `server`, with what a client on a terminal would be asked for given.
pub fn swaks(server: &str, args: &[&str]) -> Output {
    Command::new("swaks")
        .args(["--server", server, "--helo", "client.test", "--timeout", "20"])
        .args(args)
        // swaks asks for anything missing on its terminal; a test has none to offer.
        .stdin(Stdio::null())
        .output()
        .expect("swaks runs")
}

/// mbsync between one account's INBOX and a local Maildir.
pub struct Mbsync {
    config: std::path::PathBuf,
    /// The local Maildir folder of the INBOX.
    pub inbox: std::path::PathBuf,
    _local: tempfile::TempDir,
}

impl Mbsync {
    /// Over `imap` (`host:port`) as `user`; `tls` names the certificate to trust for STARTTLS,
    /// else the connection is plain text.
    pub fn new(imap: &str, user: &str, password: &str, tls: Option<&Path>) -> Mbsync {
        let local = tempfile::tempdir().unwrap();
        let inbox = local.path().join("INBOX");
        let (host, port) = imap.rsplit_once(':').unwrap();
        let security = match tls {
            Some(certificate) => format!("SSLType STARTTLS\nCertificateFile {}\n", certificate.display()),
            None => "SSLType None\n".to_string(),
        };
        let config = local.path().join("mbsyncrc");
        std::fs::write(
            &config,
            format!(
                "IMAPAccount dev\nHost {host}\nPort {port}\nUser {user}\nPass \"{}\"\n{security}\
                 AuthMechs LOGIN PLAIN\n\nIMAPStore remote\nAccount dev\n\nMaildirStore local\nPath {}/\nInbox {}\n\n\
                 Channel inbox\nFar :remote:INBOX\nNear :local:INBOX\nCreate Both\nExpunge Both\nSyncState *\n",
                password.replace('\\', "\\\\").replace('"', "\\\""),
                local.path().display(),
                inbox.display()
            ),
        )
        .unwrap();
        Mbsync { config, inbox, _local: local }
    }

    pub fn sync(&self) {
        let output = Command::new("mbsync").arg("-c").arg(&self.config).arg("inbox").output().expect("mbsync runs");
        assert!(output.status.success(), "mbsync: {}{}", text(&output.stdout), text(&output.stderr));
    }

    /// The files of the local INBOX (their names carry the flags), sorted.
    pub fn files(&self) -> Vec<String> {
        let mut files: Vec<String> = ["cur", "new"]
            .iter()
            .flat_map(|sub| std::fs::read_dir(self.inbox.join(sub)).into_iter().flatten())
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        files
    }

    /// Writes a message into the local INBOX, for the next sync to take up.
    pub fn write(&self, name: &str, message: &str) {
        std::fs::write(self.inbox.join("new").join(name), message).unwrap();
    }
}
