//! Service identities renewed under load, across processes: the mailstore and an IMAP frontend
//! each read their identity from a directory laid out as a mounted Secret, and the files are
//! replaced while a user's IMAP session keeps working.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Grpc, admin, curl, free_loopback_address as loopback, ok};
use kubemail_runtime::identity::{CertificateAuthority, Role};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long the first identities live: once they have expired, a connection can only be made
/// with a renewed certificate, at either end.
const FIRST_LIFE: Duration = Duration::from_secs(20);

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(name: &str, args: &[&str], log: &Path) -> Process {
    let log = std::fs::File::create(log).unwrap();
    let child = Command::new(common::distributed::binary(name))
        .args(args)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
    Process(child)
}

fn wait_ready(http: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !curl(&format!("http://{http}/readyz")).status.success() {
        let logged = std::fs::read_to_string(log).unwrap_or_default();
        assert!(Instant::now() < deadline, "not ready after 60 s:\n{logged}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One IMAP session, read line by line.
struct Imap {
    reader: BufReader<TcpStream>,
    next_tag: u32,
}

impl Imap {
    async fn connect(address: &str) -> Imap {
        let stream = TcpStream::connect(address).await.expect("the frontend accepts");
        let mut imap = Imap { reader: BufReader::new(stream), next_tag: 0 };
        assert!(imap.line().await.starts_with("* OK"), "greeting");
        imap
    }

    async fn line(&mut self) -> String {
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(30), self.reader.read_line(&mut line)).await;
        assert!(matches!(read, Ok(Ok(n)) if n > 0), "the IMAP session ended: {read:?}");
        line
    }

    /// Sends `command` (with `literal` after the server's go-ahead) and returns the tagged
    /// reply's line, with the untagged ones before it.
    async fn command(&mut self, command: &str, literal: Option<&[u8]>) -> (String, Vec<String>) {
        self.next_tag += 1;
        let tag = format!("a{}", self.next_tag);
        self.reader.get_mut().write_all(format!("{tag} {command}\r\n").as_bytes()).await.unwrap();
        if let Some(literal) = literal {
            let go_ahead = self.line().await;
            assert!(go_ahead.starts_with('+'), "{command}: {go_ahead}");
            self.reader.get_mut().write_all(literal).await.unwrap();
            self.reader.get_mut().write_all(b"\r\n").await.unwrap();
        }
        let mut untagged = Vec::new();
        loop {
            let line = self.line().await;
            if let Some(reply) = line.strip_prefix(&format!("{tag} ")) {
                return (reply.trim_end().to_string(), untagged);
            }
            untagged.push(line);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_identities_are_taken_into_use_under_an_open_imap_session() {
    let work = tempfile::tempdir().unwrap();
    let authority = CertificateAuthority::generate("test cluster").unwrap();
    let identity_dir = |role: Role| work.path().join(role.name());
    let issued_at = Instant::now();
    for role in [Role::Mailstore, Role::ImapFrontend, Role::Admin] {
        authority.issue(role, FIRST_LIFE).unwrap().write(&identity_dir(role)).unwrap();
    }
    let nats = kubemail_testkit::nats_url();
    let database = format!("sqlite://{}?mode=rwc", work.path().join("mail.db").display());
    let (grpc, admin_grpc, mailstore_http) = (loopback(), loopback(), loopback());
    let mailstore_dir = identity_dir(Role::Mailstore).display().to_string();
    let mailstore_log = work.path().join("mailstore.log");
    let _mailstore = spawn(
        "mailstore",
        &[
            "--database-url",
            &database,
            "--nats-url",
            &nats,
            "--http-listen",
            &mailstore_http,
            "--grpc-listen",
            &grpc,
            "--admin-grpc-listen",
            &admin_grpc,
            "--service-tls-dir",
            &mailstore_dir,
            "--service-identity-check-interval",
            "1s",
            // Connections are renewed often, so each end must present its renewed certificate.
            "--grpc-max-connection-age",
            "2s",
        ],
        &mailstore_log,
    );
    wait_ready(&mailstore_http, &mailstore_log);
    let (imap, frontend_http) = (loopback(), loopback());
    let frontend_dir = identity_dir(Role::ImapFrontend).display().to_string();
    let frontend_log = work.path().join("imap-frontend.log");
    let mailstore_url = format!("http://{grpc}");
    let _frontend = spawn(
        "imap-frontend",
        &[
            "--imap-listen",
            &imap,
            "--http-listen",
            &frontend_http,
            "--nats-url",
            &nats,
            "--mailstore",
            &mailstore_url,
            "--imap-allow-plaintext-login",
            "--service-tls-dir",
            &frontend_dir,
            "--service-identity-check-interval",
            "1s",
        ],
        &frontend_log,
    );
    wait_ready(&frontend_http, &frontend_log);

    let platform = Grpc { mailstore: mailstore_url, admin: format!("http://{admin_grpc}"), service_ca: None };
    let as_admin = |args: &[&str], stdin: Option<&str>| {
        let admin_dir = identity_dir(Role::Admin).display().to_string();
        admin(&platform, &[&["--service-tls-dir", &admin_dir][..], args].concat(), stdin)
    };
    ok(as_admin(&["domain", "add", "example.org"], None));
    ok(as_admin(&["mailbox", "add", "alice@example.org", "--password-stdin"], Some("secret\n")));

    let mut session = Imap::connect(&imap).await;
    assert!(session.command("LOGIN alice@example.org secret", None).await.0.starts_with("OK"));
    assert!(session.command("SELECT INBOX", None).await.0.starts_with("OK"));

    // The user works on while the identities are renewed, and past the end of the first ones.
    let mut appended = 0;
    let mut renewed = false;
    while issued_at.elapsed() < FIRST_LIFE + Duration::from_secs(10) {
        if !renewed && issued_at.elapsed() > Duration::from_secs(5) {
            for role in [Role::Mailstore, Role::ImapFrontend] {
                authority.issue(role, Duration::from_secs(3600)).unwrap().write(&identity_dir(role)).unwrap();
            }
            renewed = true;
        }
        let message = format!("Subject: note {appended}\r\n\r\nwritten during the renewal\r\n");
        let command = format!("APPEND INBOX {{{}}}", message.len());
        let (reply, _) = session.command(&command, Some(message.as_bytes())).await;
        assert!(reply.starts_with("OK"), "APPEND {appended} at {:?}: {reply}", issued_at.elapsed());
        appended += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (reply, untagged) = session.command("STATUS INBOX (MESSAGES)", None).await;
    assert!(reply.starts_with("OK"), "{reply}");
    let status = untagged.iter().find(|line| line.starts_with("* STATUS")).expect("a STATUS reply");
    assert!(
        status.contains(&format!("(MESSAGES {appended})")),
        "every message written during the renewal is there: {status}"
    );

    // No connection was ever refused: the frontend presented its renewed certificate once the
    // first had expired, and accepted the mailstore's renewed one.
    let metrics = common::text(&curl(&format!("http://{mailstore_http}/metrics")).stdout);
    assert!(!metrics.contains("kubemail_grpc_connections_refused_total"), "{metrics}");
    let logged = std::fs::read_to_string(&mailstore_log).unwrap();
    assert!(logged.contains("service identity renewed"), "{logged}");
    assert!(std::fs::read_to_string(&frontend_log).unwrap().contains("service identity renewed"));
}
