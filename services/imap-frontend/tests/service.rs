//! Two `imap-frontend` processes on different ports over one mailstore on PostgreSQL, with the
//! mailbox events on NATS: a session IDLEing on one hears, promptly, what Python's imaplib does
//! through the other (APPEND, STORE); SIGTERM says `* BYE` to every session. A client that
//! resynchronises with QRESYNC, as Thunderbird does, after changes made through the other
//! frontend ends with the view a full resync gives. A NOTIFY session on one hears of a mailbox
//! created and a message stored through the other. Sessions on both, changing one mailbox at
//! random, each answer FETCH FLAGS from the state they hold as the mailstore has it.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Client, HOSTNAME, PASSWORD};
use kubemail_proto::mailstore::mail_store_client::MailStoreClient;
use kubemail_proto::mailstore::{AuthenticateRequest, FetchMessagesRequest, SelectMailboxRequest, SystemFlag};
use kubemail_runtime::nats::{NatsConfig, NatsTransport};
use kubemail_runtime::tls::{self, PemPair};
use kubemail_testkit::mailstore::Mailstore;
use kubemail_testkit::{NatsServer, free_loopback_address};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

const IMAP_FRONTEND: &str = env!("CARGO_BIN_EXE_imap-frontend");

/// One `imap-frontend` process; killed when dropped.
struct Frontend {
    process: Child,
    imaps: String,
}

impl Frontend {
    fn start(mailstore: &Mailstore, nats_url: &str, tls_dir: &std::path::Path) -> Frontend {
        let imaps = free_loopback_address();
        let process = Command::new(IMAP_FRONTEND)
            .args([
                "--imap-listen",
                &free_loopback_address(),
                "--imaps-listen",
                &imaps,
                "--http-listen",
                &free_loopback_address(),
            ])
            .args(["--hostname", HOSTNAME, "--mailstore", &format!("http://{}", mailstore.address)])
            .args(["--nats-url", nats_url])
            .arg("--tls-dir")
            .arg(tls_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("imap-frontend starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&imaps).is_err() {
            assert!(Instant::now() < deadline, "imap-frontend does not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Frontend { process, imaps }
    }

    /// SIGTERM, then whether it exited cleanly in time.
    fn terminate(&mut self) -> bool {
        Command::new("kill").args(["-TERM", &self.process.id().to_string()]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.process.try_wait().unwrap() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Frontend {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// A scripted client on a frontend's IMAPS port, logged in as alice with INBOX selected.
async fn alice_on(frontend: &Frontend, certificate: &PemPair) -> Client<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(&frontend.imaps).await.unwrap();
    let name = ServerName::try_from(HOSTNAME.to_string()).unwrap();
    let connector = kubemail_testkit::tls::connector_trusting(&certificate.certificate);
    let tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let mut client = Client::new(tls);
    assert!(client.line().await.unwrap().starts_with("* OK [CAPABILITY"));
    client.command(&format!("l LOGIN alice@example.org {PASSWORD}")).await.expect_ok();
    client.command("s SELECT INBOX").await.expect_ok();
    client
}

/// Two frontends over one mailstore and NATS, with their certificate.
struct Cluster {
    _nats: NatsServer,
    _mailstore: Mailstore,
    _tls_dir: tempfile::TempDir,
    certificate: PemPair,
    a: Frontend,
    b: Frontend,
}

async fn two_frontends() -> Cluster {
    let nats = NatsServer::start();
    let transport = NatsTransport::connect(&NatsConfig { url: nats.url(), ..Default::default() }).await.unwrap();
    let db = kubemail_mailstore::Db::connect(&kubemail_testkit::postgres_database().await, 8).await.unwrap();
    let mailstore = Mailstore::start_on(db, Arc::new(transport.events.clone())).await;
    let tls_dir = tempfile::tempdir().unwrap();
    let certificate = tls::self_signed(&[HOSTNAME.to_string()]).unwrap();
    tls::write_pair(tls_dir.path(), HOSTNAME, &certificate).unwrap();
    let a = Frontend::start(&mailstore, &nats.url(), tls_dir.path());
    let b = Frontend::start(&mailstore, &nats.url(), tls_dir.path());
    Cluster { _nats: nats, _mailstore: mailstore, _tls_dir: tls_dir, certificate, a, b }
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_on_one_frontend_hears_what_another_frontend_does() {
    let Cluster { certificate, mut a, b, _nats, _mailstore, _tls_dir } = two_frontends().await;
    let mut watcher = alice_on(&a, &certificate).await;
    watcher.send(b"i IDLE\r\n").await;
    assert_eq!(watcher.line().await.unwrap(), "+ idling");

    let script = r#"
import imaplib, ssl, sys
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
host, port = sys.argv[1].rsplit(":", 1)
m = imaplib.IMAP4_SSL(host, int(port), ssl_context=context)
m.login("alice@example.org", sys.argv[2])
typ, data = m.append("INBOX", None, None, b"From: b@example.org\r\nSubject: via B\r\n\r\nHi.\r\n")
print(typ, data[0].decode())
m.select("INBOX")
print("recent", m.response("RECENT")[1][-1].decode())
print(m.store("1", "+FLAGS", "(\\Flagged)")[0])
m.logout()
"#;
    let started = Instant::now();
    let imaplib = tokio::task::spawn_blocking({
        let address = b.imaps.clone();
        move || Command::new("python3").args(["-c", script, &address, PASSWORD]).output().expect("python3 runs")
    });
    assert_eq!(watcher.line().await.unwrap(), "* 1 EXISTS", "the APPEND on the other frontend");
    // \Recent goes to exactly one session: this one (IDLE takes it at once) or the one that
    // selected through the other frontend, whichever asked the mailstore first.
    let mut line = watcher.line().await.unwrap();
    let taken_here = line == "* 1 RECENT";
    if taken_here {
        line = watcher.line().await.unwrap();
    }
    let flagged = if taken_here { "* 1 FETCH (FLAGS (\\Flagged \\Recent))" } else { "* 1 FETCH (FLAGS (\\Flagged))" };
    assert_eq!(line, flagged, "the STORE there");
    let output = imaplib.await.unwrap();
    assert!(output.status.success(), "imaplib: {}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.starts_with("OK [APPENDUID ") && printed.ends_with("OK\n"), "{printed}");
    let taken_there = printed.contains("recent 1\n");
    assert!(taken_here != taken_there, "recent in exactly one session: here {taken_here}, there: {printed}");
    assert!(started.elapsed() < Duration::from_secs(10), "promptly");
    watcher.send(b"DONE\r\n").await;
    watcher.responses("i").await.expect_ok();

    // SIGTERM: every session hears BYE; the client reconnects elsewhere.
    let mut waiting = alice_on(&a, &certificate).await;
    assert!(a.terminate(), "imap-frontend stops cleanly");
    assert_eq!(watcher.rest_until_closed().await, ["* BYE Server shutting down, please reconnect"]);
    assert_eq!(waiting.rest_until_closed().await, ["* BYE Server shutting down, please reconnect"]);
    drop(b);
}

/// Runs the Python `script` with the two frontends' IMAPS addresses and the password as
/// arguments; its output lines.
fn python(script: &str, cluster: &Cluster) -> Vec<String> {
    let prelude = r#"
import imaplib, re, ssl, sys
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
def connect(address):
    host, port = address.rsplit(":", 1)
    m = imaplib.IMAP4_SSL(host, int(port), ssl_context=context)
    m.login("alice@example.org", sys.argv[3])
    return m
"#;
    let output = Command::new("python3")
        .args(["-c", &format!("{prelude}{script}"), &cluster.a.imaps, &cluster.b.imaps, PASSWORD])
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "python: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_qresync_reconnect_after_changes_elsewhere_ends_with_the_full_view() {
    let cluster = two_frontends().await;
    let lines = python(
        r#"
def flags_of(fetched):
    """{uid: sorted flags} from FETCH responses of UID and FLAGS."""
    view = {}
    for item in fetched:
        text = item.decode() if isinstance(item, bytes) else item[0].decode()
        uid = re.search(r"UID (\d+)", text)
        flags = re.search(r"FLAGS \(([^)]*)\)", text)
        if uid and flags:
            # \Recent belongs to a session, not to the message: caches leave it out.
            view[int(uid.group(1))] = sorted(flag for flag in flags.group(1).split() if flag != "\\Recent")
    return view

# Online on frontend A: a cache of the INBOX, and where it stands.
first = connect(sys.argv[1])
for n in range(1, 6):
    first.append("INBOX", None, None, f"From: bob@example.org\r\nSubject: message {n}\r\n\r\nBody {n}.\r\n".encode())
first.enable("QRESYNC")
typ, data = first.select("INBOX")
validity = int(first.response("UIDVALIDITY")[1][-1])
modseq = int(first.response("HIGHESTMODSEQ")[1][-1])
cache = flags_of(first.uid("FETCH", "1:*", "(FLAGS)")[1])
first.logout()
print("cached", sorted(cache))

# Offline: another client changes the mailbox through frontend B.
other = connect(sys.argv[2])
other.select("INBOX")
other.uid("STORE", "2", "+FLAGS", "(\\Seen $Work)")
other.uid("STORE", "4", "+FLAGS", "(\\Deleted)")
other.expunge()
other.append("INBOX", r"(\Flagged)", None, b"From: carol@example.org\r\nSubject: new\r\n\r\nNew.\r\n")
other.logout()

# Back on frontend A: one SELECT tells what changed.
again = connect(sys.argv[1])
again.enable("QRESYNC")
known = ",".join(str(uid) for uid in sorted(cache))
typ, _ = again._simple_command("SELECT", f"INBOX (QRESYNC ({validity} {modseq} {known}))")
print("select", typ)
again.state = "SELECTED"  # imaplib's select() cannot send the QRESYNC parameter
vanished = again.untagged_responses.pop("VANISHED", [])
changed = flags_of(again.untagged_responses.pop("FETCH", []))
for item in vanished:
    text = item.decode()
    assert text.startswith("(EARLIER) "), text
    for part in text.split(" ", 1)[1].split(","):
        first_uid, _, last_uid = part.partition(":")
        for uid in range(int(first_uid), int(last_uid or first_uid) + 1):
            cache.pop(uid, None)
print("vanished", " ".join(item.decode() for item in vanished))
print("changed", sorted(changed))
cache.update(changed)

# The check: a full resync gives the same view.
full = flags_of(again.uid("FETCH", "1:*", "(FLAGS)")[1])
print("same view", cache == full, sorted(full))
again.logout()
"#,
        &cluster,
    );
    assert_eq!(
        lines,
        [
            "cached [1, 2, 3, 4, 5]",
            "select OK",
            "vanished (EARLIER) 4",
            "changed [2, 6]",
            "same view True [1, 2, 3, 5, 6]",
        ]
    );
}

/// NOTIFY across frontends (RFC 5465): a session on one frontend, waiting for nothing but its
/// notifications, hears of a mailbox created and a message appended through the other.
#[tokio::test]
async fn notify_on_one_frontend_hears_what_another_frontend_does() {
    let Cluster { certificate, a, b, _nats, _mailstore, _tls_dir } = two_frontends().await;
    let mut watcher = alice_on(&a, &certificate).await;
    watcher.command("n NOTIFY SET (personal (MessageNew MessageExpunge MailboxName))").await.expect_ok();
    let mut other = alice_on(&b, &certificate).await;
    other.command("c CREATE Receipts").await.expect_ok();
    assert_eq!(watcher.line().await.unwrap(), "* LIST (\\HasNoChildren) \"/\" \"Receipts\"");
    let message = "From: shop@example.net\r\nSubject: your order\r\n\r\nThanks.\r\n";
    other.command(&format!("a APPEND Receipts {{{}+}}\r\n{message}", message.len())).await.expect_ok();
    let status = watcher.line().await.unwrap();
    assert!(status.starts_with("* STATUS \"Receipts\" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY "), "{status}");
}

/// Sessions on two frontends change flags of the same messages at the same moment, each
/// working from the flags it holds, which the other's change has not reached yet: neither
/// change is lost, and both sessions come to show what the mailstore has.
#[tokio::test(flavor = "multi_thread")]
async fn flag_changes_made_at_once_on_two_frontends_both_take_effect() {
    let Cluster { certificate, a, b, _nats, _mailstore: mailstore, _tls_dir } = two_frontends().await;
    for number in 0..6 {
        let body = format!("From: bob@example.org\r\nSubject: race {number}\r\n\r\nHello.\r\n");
        mailstore.deliver("alice@example.org", body.as_bytes()).await;
    }
    let mut sessions = [alice_on(&a, &certificate).await, alice_on(&b, &certificate).await];
    let flags = ["\\Seen", "\\Flagged", "\\Answered", "$Work", "$Later", "Junk"];
    let mut expected: Vec<String> = Vec::new();
    for (sign, pair) in [("+", 0), ("+", 1), ("+", 2), ("-", 0), ("-", 2), ("-", 1)] {
        let (x, y) = (flags[2 * pair], flags[2 * pair + 1]);
        let [first, second] = &mut sessions;
        let (to_first, to_second) =
            (format!("s STORE 1:6 {sign}FLAGS.SILENT ({x})"), format!("s STORE 2:5 {sign}FLAGS ({y})"));
        let (one, two) = tokio::join!(first.command(&to_first), second.command(&to_second));
        one.expect_ok();
        two.expect_ok();
        match sign {
            "+" => expected.extend([x.to_string(), y.to_string()]),
            _ => expected.retain(|flag| flag != x && flag != y),
        }
        let truth = mailstore_view(&mailstore).await;
        for (uid, shown) in &truth {
            // The second session's flags (odd places of `flags`) only ever went on UIDs 2 to 5.
            let second_only = |flag: &String| flags.iter().skip(1).step_by(2).any(|odd| odd == flag);
            let mut wanted: Vec<String> =
                expected.iter().filter(|flag| (2..=5).contains(uid) || !second_only(flag)).cloned().collect();
            wanted.sort();
            assert_eq!(*shown, wanted, "{sign}{x} and {sign}{y}: the flags of UID {uid}");
        }
        for (index, session) in sessions.iter_mut().enumerate() {
            let mut held = View::new();
            // The other session's change reaches this one as an event: a bounded wait for it.
            for _ in 0..50 {
                held = session_view(&session.command("f FETCH 1:* (UID FLAGS)").await.expect_ok());
                if held == truth {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(held, truth, "{sign}{x} and {sign}{y}: the session on frontend {index}");
        }
    }
}

/// A small deterministic generator: the test repeats the same steps on every run.
struct Steps(u64);

impl Steps {
    fn below(&mut self, bound: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % bound as u64) as usize
    }
}

/// Each message of a view as (UID, its flags sorted), \Recent left out: it differs by session.
type View = Vec<(u32, Vec<String>)>;

/// The INBOX of alice as the mailstore has it.
async fn mailstore_view(mailstore: &Mailstore) -> View {
    let mut client = MailStoreClient::connect(format!("http://{}", mailstore.address)).await.unwrap();
    let request = AuthenticateRequest { username: "alice@example.org".into(), password: PASSWORD.into() };
    let account_id = client.authenticate(request).await.unwrap().into_inner().account_id;
    let request = SelectMailboxRequest { account_id, name: "INBOX".into(), ..Default::default() };
    let mailbox_id = client.select_mailbox(request).await.unwrap().into_inner().mailbox.unwrap().id;
    let request = FetchMessagesRequest { account_id, mailbox_id, ..Default::default() };
    let names = [
        (SystemFlag::Seen, "\\Seen"),
        (SystemFlag::Answered, "\\Answered"),
        (SystemFlag::Flagged, "\\Flagged"),
        (SystemFlag::Deleted, "\\Deleted"),
        (SystemFlag::Draft, "\\Draft"),
    ];
    let messages = client.fetch_messages(request).await.unwrap().into_inner().messages;
    messages
        .into_iter()
        .map(|meta| {
            let flags = meta.flags.unwrap_or_default();
            let mut shown: Vec<String> = names
                .iter()
                .filter(|(bit, _)| flags.system & *bit as u32 != 0)
                .map(|(_, name)| name.to_string())
                .chain(flags.keywords)
                .collect();
            shown.sort();
            (meta.uid, shown)
        })
        .collect()
}

/// The view a session answers `FETCH 1:* (UID FLAGS …)` with, from the state it holds.
fn session_view(lines: &[String]) -> View {
    lines
        .iter()
        .filter_map(|line| {
            let uid = line.split("(UID ").nth(1)?.split(' ').next()?.parse().ok()?;
            let flags = line.split("FLAGS (").nth(1)?.split(')').next()?;
            let mut shown: Vec<String> =
                flags.split_whitespace().filter(|flag| *flag != "\\Recent").map(str::to_string).collect();
            shown.sort();
            Some((uid, shown))
        })
        .collect()
}

/// Sessions on both frontends change one mailbox at random (STORE of flags and keywords,
/// APPEND, \Deleted and EXPUNGE); after each step each session, told of the other's changes
/// by the mailbox events, answers FETCH FLAGS from the state it holds exactly as the mailstore
/// has the mailbox, and HIGHESTMODSEQ never goes back.
#[tokio::test(flavor = "multi_thread")]
async fn sessions_on_two_frontends_hold_what_the_mailstore_has() {
    const STEPS: usize = 60;
    let Cluster { certificate, a, b, _nats, _mailstore: mailstore, _tls_dir } = two_frontends().await;
    let mailstore = &mailstore;
    for number in 0..12 {
        let body = format!("From: bob@example.org\r\nSubject: seed {number}\r\n\r\nHello.\r\n");
        mailstore.deliver("alice@example.org", body.as_bytes()).await;
    }
    let mut sessions = [alice_on(&a, &certificate).await, alice_on(&b, &certificate).await];
    for session in &mut sessions {
        session.command("e ENABLE CONDSTORE").await.expect_ok();
    }
    let flags = ["\\Seen", "\\Flagged", "\\Answered", "\\Draft", "$Work", "$Later", "Junk"];
    let mut steps = Steps(0x5eed_2026);
    let mut highest = 0u64;
    for step in 0..STEPS {
        let actor = steps.below(2);
        let session = &mut sessions[actor];
        let exists = mailstore_view(mailstore).await.len();
        match steps.below(4) {
            0 | 1 if exists > 0 => {
                let first = 1 + steps.below(exists);
                let last = first + steps.below(exists - first + 1);
                let operation = ["+FLAGS.SILENT", "-FLAGS.SILENT", "FLAGS.SILENT", "+FLAGS"][steps.below(4)];
                let chosen = flags[steps.below(flags.len())].to_string() + " " + flags[steps.below(flags.len())];
                session.command(&format!("s STORE {first}:{last} {operation} ({chosen})")).await.expect_ok();
            }
            2 if exists > 3 => {
                let doomed = 1 + steps.below(exists);
                session.command(&format!("d STORE {doomed} +FLAGS.SILENT (\\Deleted)")).await.expect_ok();
                session.command("x EXPUNGE").await.expect_ok();
            }
            _ => {
                let body = format!("From: carol@example.org\r\nSubject: step {step}\r\n\r\nHi.\r\n");
                session.command(&format!("a APPEND INBOX (\\Seen) {{{}+}}\r\n{body}", body.len())).await.expect_ok();
            }
        }
        let truth = mailstore_view(mailstore).await;
        for (index, session) in sessions.iter_mut().enumerate() {
            let mut held = View::new();
            // The other session's changes reach this one as events: a bounded wait for them.
            for _ in 0..50 {
                session.command("n NOOP").await.expect_ok();
                // Flags alone come from the snapshot; with what never changes of a message, also
                // from what the frontend holds of it.
                let items = if step % 2 == 0 { "(UID FLAGS)" } else { "(UID FLAGS RFC822.SIZE ENVELOPE)" };
                held = session_view(&session.command(&format!("f FETCH 1:* {items}")).await.expect_ok());
                if held == truth {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert_eq!(held, truth, "step {step}: the session on frontend {index} holds what the mailstore has");
        }
        let status = sessions[actor].command("t STATUS INBOX (HIGHESTMODSEQ)").await.expect_ok();
        let modseq: u64 = status[0].split("HIGHESTMODSEQ ").nth(1).unwrap().trim_end_matches(')').parse().unwrap();
        assert!(modseq >= highest, "step {step}: HIGHESTMODSEQ went from {highest} back to {modseq}");
        highest = modseq;
    }
}
