//! The user story, end to end with real clients, in `kubemail dev` and in the distributed mode
//! (each service its own process, two SMTP ingresses and two IMAP frontends): mail from
//! outside reaches alice over the MX port; she reads it over IMAP with STARTTLS and replies
//! through submission to bob and to someone outside; bob's IDLE session, on another frontend
//! where there is one, hears it arrive, and hears it go when his old phone takes it over POP3
//! from the other frontend; the outside MTA receives it DKIM-signed; mbsync takes
//! her mailbox to a Maildir and back; and once her mailbox is full, the next message is
//! refused over SMTP and over IMAP.

mod common;

use std::path::Path;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use common::distributed::Distributed;
use common::{Dev, Grpc, Mbsync, admin, inbox, ok, python, python_in_background, swaks, text, wait_for_inbox};
use kubemail_testkit::dkim::{self, DkimResult};
use kubemail_testkit::mta::{Mta, Options};

/// Bob on implicit TLS: selects his INBOX, says `idling` once IDLE is accepted, then prints
/// the EXISTS and EXPUNGE responses it hears until the first EXPUNGE.
const IDLE: &str = r#"
host, port = address(sys.argv[1])
m = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=60)
m.login(sys.argv[2], sys.argv[3])
m.select("INBOX")
tag = m._new_tag().decode()
m.send(f"{tag} IDLE\r\n".encode())
if m.readline().startswith(b"+"):
    print("idling")
while True:
    line = m.readline().decode().strip()
    if line.endswith(("EXISTS", "EXPUNGE")):
        print(line, flush=True)
    if line.endswith("EXPUNGE"):
        break
m.send(b"DONE\r\n")
while not m.readline().startswith(tag.encode()):
    pass
m.logout()
"#;

/// Alice over STARTTLS: reads her message, then replies through submission (STARTTLS + AUTH)
/// to bob and to the sender outside.
const READ_AND_REPLY: &str = r#"
host, port = address(sys.argv[1])
m = imaplib.IMAP4(host, port, timeout=30)
m.starttls(ssl_context=context)
m.login("alice@example.org", "alice's password")
typ, count = m.select("INBOX")
print("messages:", count[0].decode())
typ, data = m.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT MESSAGE-ID)] BODY.PEEK[TEXT])")
headers, body = data[0][1].decode(), data[1][1].decode()
subject = [l for l in headers.splitlines() if l.lower().startswith("subject:")][0]
message_id = [l.split(":", 1)[1].strip() for l in headers.splitlines() if l.lower().startswith("message-id:")][0]
print(subject)
print("body:", body.strip())
m.logout()

reply = EmailMessage()
reply["From"] = "alice@example.org"
reply["To"] = "bob@example.org, friend@example.net"
reply["Subject"] = "Re: Lunch?"
reply["In-Reply-To"] = message_id
reply.set_content("Noon works. Bob joins us.")
host, port = address(sys.argv[2])
with smtplib.SMTP(host, port, timeout=30) as smtp:
    smtp.starttls(context=context)
    smtp.login("alice@example.org", "alice's password")
    print("refused:", smtp.send_message(reply))
"#;

/// Bob's phone, which speaks only POP3: STLS, takes his one message and deletes it.
const POP3_PHONE: &str = r#"
import poplib
host, port = address(sys.argv[1])
p = poplib.POP3(host, port, timeout=30)
p.stls(context=context)
p.user("bob@example.org")
p.pass_("bob's password")
print("messages:", p.stat()[0])
lines = [line.decode() for line in p.retr(1)[1]]
print([line for line in lines if line.startswith("Subject:")][0])
p.dele(1)
print("quit:", p.quit().decode())
"#;

/// With alice's mailbox full: a message for her over SMTP (smtplib announces its SIZE), and an
/// APPEND of her own over IMAP.
const OVER_QUOTA: &str = r#"
host, port = address(sys.argv[1])
with smtplib.SMTP(host, port, timeout=30) as smtp:
    try:
        smtp.sendmail("friend@example.net", ["alice@example.org"], "Subject: one more\r\n\r\nHello again.\r\n")
        print("smtp: accepted")
    except smtplib.SMTPRecipientsRefused as refused:
        code, text = refused.recipients["alice@example.org"]
        print("smtp:", code, text.decode())
host, port = address(sys.argv[2])
m = imaplib.IMAP4(host, port, timeout=30)
m.starttls(ssl_context=context)
m.login("alice@example.org", "alice's password")
typ, data = m.append("INBOX", None, None, b"Subject: a draft\r\n\r\nToo much.\r\n")
print("imap:", typ, data[0].decode())
m.logout()
"#;

fn next_line(lines: &Receiver<String>, within: Duration) -> String {
    lines.recv_timeout(within).expect("the client printed nothing in time")
}

/// Where the story happens: the addresses its people use.
struct Scene<'a> {
    /// The mailstore, for `kubemail admin` and for reading mailboxes.
    grpc: &'a Grpc,
    /// Where mail from outside arrives.
    mx: &'a str,
    /// Where alice sends her reply.
    submission: &'a str,
    /// Where alice reads and syncs (STARTTLS), and the certificate it presents.
    imap: &'a str,
    certificate: &'a Path,
    /// Where bob waits in IDLE (implicit TLS).
    bobs_imaps: &'a str,
    /// Where bob's phone takes his mail over POP3 (STLS).
    bobs_pop3: &'a str,
    /// Where more mail for alice is tried once her mailbox is full.
    later_mx: &'a str,
    later_imap: &'a str,
}

/// The outside world: an MTA for example.net and the DKIM key example.org signs with.
struct Outside {
    runtime: tokio::runtime::Runtime,
    mta: Mta,
    keys: tempfile::TempDir,
    record: String,
}

impl Outside {
    fn new() -> Outside {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let mta = runtime.block_on(Mta::start(Options::default()));
        let keys = tempfile::tempdir().unwrap();
        let record = dkim::rsa_key(keys.path(), "example.org", "story");
        Outside { runtime, mta, keys, record }
    }

    /// The delivery queue's flags that reach it.
    fn flags(&self) -> [String; 4] {
        [
            "--mx-override".into(),
            format!("example.net={}", self.mta.address),
            "--dkim-dir".into(),
            self.keys.path().to_str().unwrap().into(),
        ]
    }
}

fn story(scene: &Scene, outside: &Outside) {
    ok(admin(scene.grpc, &["domain", "add", "example.org"], None));
    ok(admin(scene.grpc, &["mailbox", "add", "alice@example.org", "--password-stdin"], Some("alice's password\n")));
    ok(admin(scene.grpc, &["mailbox", "add", "bob@example.org", "--password-stdin"], Some("bob's password\n")));

    // From outside, over the MX port.
    let sent = swaks(
        scene.mx,
        &[
            "--from",
            "friend@example.net",
            "--to",
            "alice@example.org",
            "--header",
            "Subject: Lunch?",
            "--body",
            "Free at noon?",
        ],
    );
    assert!(text(&sent.stdout).contains("250 2.0.0"), "{}", text(&sent.stdout));
    assert_eq!(wait_for_inbox(scene.grpc, "alice@example.org", "alice's password", 1).len(), 1);

    // Bob waits in IDLE.
    let (mut bob, bob_says) = python_in_background(IDLE, &[scene.bobs_imaps, "bob@example.org", "bob's password"]);
    assert_eq!(next_line(&bob_says, Duration::from_secs(30)), "idling");

    // Alice reads it and replies.
    let alice = python(READ_AND_REPLY, &[scene.imap, scene.submission]);
    assert_eq!(alice, ["messages: 1", "Subject: Lunch?", "body: Free at noon?", "refused: {}"]);

    // Bob hears the reply arrive.
    assert_eq!(next_line(&bob_says, Duration::from_secs(30)), "* 1 EXISTS");
    let bobs = inbox(scene.grpc, "bob@example.org", "bob's password");
    assert!(bobs[0].contains("Subject: Re: Lunch?") && bobs[0].contains("Noon works."), "{}", bobs[0]);

    // His phone takes it over POP3, and his IMAP session hears it go.
    let phone = python(POP3_PHONE, &[scene.bobs_pop3]);
    assert_eq!(phone, ["messages: 1", "Subject: Re: Lunch?", "quit: +OK localhost signing off (0 messages left)"]);
    assert_eq!(next_line(&bob_says, Duration::from_secs(30)), "* 1 EXPUNGE");
    assert!(bob.wait().unwrap().success(), "bob's session ended cleanly");
    assert!(inbox(scene.grpc, "bob@example.org", "bob's password").is_empty());

    // The outside MTA gets it, signed for example.org.
    let deadline = Instant::now() + Duration::from_secs(30);
    while outside.mta.received().is_empty() {
        assert!(Instant::now() < deadline, "nothing reached the outside MTA");
        std::thread::sleep(Duration::from_millis(100));
    }
    let received = outside.mta.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].mail_from, "alice@example.org");
    assert_eq!(received[0].recipients, ["friend@example.net"]);
    let signed =
        outside.runtime.block_on(dkim::verify(&received[0].data, "story._domainkey.example.org.", &outside.record));
    assert_eq!(signed, DkimResult::Pass, "{}", text(&received[0].data));

    // Her mailbox to a Maildir and back, over STARTTLS; a second run changes nothing.
    let mbsync = Mbsync::new(scene.imap, "alice@example.org", "alice's password", Some(scene.certificate));
    mbsync.sync();
    assert_eq!(mbsync.files().len(), 1);
    mbsync.write("1795712300.1_1.local", "From: alice@example.org\r\nSubject: notes\r\n\r\nBring the map.\r\n");
    mbsync.sync();
    let on_server = inbox(scene.grpc, "alice@example.org", "alice's password");
    assert_eq!(on_server.len(), 2, "the local message went up");
    let files = mbsync.files();
    mbsync.sync();
    assert_eq!(mbsync.files(), files);
    assert_eq!(inbox(scene.grpc, "alice@example.org", "alice's password"), on_server);

    // A full mailbox refuses more: a temporary 452 over SMTP, OVERQUOTA over IMAP.
    ok(admin(scene.grpc, &["mailbox", "quota", "alice@example.org", "--storage", "0", "--messages", "2"], None));
    let refused = python(OVER_QUOTA, &[scene.later_mx, scene.later_imap]);
    assert!(refused[0].starts_with("smtp: 452 4.2.2"), "{refused:?}");
    assert!(refused[1].starts_with("imap: NO [OVERQUOTA]"), "{refused:?}");
    assert_eq!(inbox(scene.grpc, "alice@example.org", "alice's password").len(), 2, "nothing more was stored");
}

#[test]
fn the_story_in_kubemail_dev() {
    let outside = Outside::new();
    let data = tempfile::tempdir().unwrap();
    let flags = outside.flags();
    let dev = Dev::start_with(data.path(), &flags.iter().map(String::as_str).collect::<Vec<_>>());
    let certificate = data.path().join("tls/localhost/tls.crt");
    let scene = Scene {
        grpc: &dev.grpc,
        mx: &dev.smtp,
        submission: &dev.submission,
        imap: &dev.imap,
        certificate: &certificate,
        bobs_imaps: &dev.imaps,
        bobs_pop3: &dev.pop3,
        later_mx: &dev.smtp,
        later_imap: &dev.imap,
    };
    story(&scene, &outside);
    assert!(dev.terminate(), "a clean stop");
}

#[test]
fn the_story_across_separate_services() {
    let outside = Outside::new();
    let flags = outside.flags();
    let platform = Distributed::start(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    // Each step on the other replica from the step before.
    let scene = Scene {
        grpc: &platform.grpc,
        mx: &platform.smtp[0].mx,
        submission: &platform.smtp[1].submission,
        imap: &platform.imap[0].imap,
        certificate: &platform.certificate,
        bobs_imaps: &platform.imap[1].imaps,
        bobs_pop3: &platform.imap[0].pop3,
        later_mx: &platform.smtp[1].mx,
        later_imap: &platform.imap[1].imap,
    };
    let story = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| story(&scene, &outside)));
    if let Err(failure) = story {
        eprintln!("{}", platform.logs());
        std::panic::resume_unwind(failure);
    }
}
