//! Black-box: `kubemail dev`'s SMTP listeners with real clients — swaks (STARTTLS + AUTH on
//! submission, implicit TLS on submissions, pipelining on MX), Python's smtplib and Postfix's
//! smtp-source — and where their mail ends up: in the mailboxes, read through the mailstore
//! API, and at a remote MTA on loopback (`--mx-override`) for a remote recipient; nothing is
//! left in the dev queue after a clean stop.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{Dev, ok, python, swaks, text};
use kubemail_proto::Message as _;
use kubemail_proto::queue::Envelope;
use kubemail_runtime::local::{LocalConfig, LocalTransport};
use kubemail_runtime::{Queue, Spool};
use kubemail_testkit::mta::{Mta, Options};

/// The queue id from swaks' transcript of a `250 2.0.0 OK: queued as <id>`.
fn queued_id(output: &Output) -> String {
    let transcript = text(&output.stdout);
    assert!(output.status.success(), "swaks failed:\n{transcript}{}", text(&output.stderr));
    let line = transcript.lines().find(|l| l.contains("queued as")).unwrap_or_else(|| panic!("{transcript}"));
    line.rsplit(' ').next().unwrap().to_string()
}

/// Every envelope in a stopped dev instance's queue, with its spooled body.
fn queued(data_dir: &std::path::Path) -> Vec<(Envelope, String)> {
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let transport = LocalTransport::open(&LocalConfig::new(data_dir.join("queue.db"))).await.unwrap();
        let mut queued = Vec::new();
        loop {
            let leases = transport.queue.pull(500, Duration::from_millis(100)).await.unwrap();
            if leases.is_empty() {
                return queued;
            }
            for lease in leases {
                let envelope = Envelope::decode(lease.payload.clone()).unwrap();
                let key = if envelope.spool_key.is_empty() { &envelope.id } else { &envelope.spool_key };
                let body = transport.spool.get(key).await.unwrap().expect("the body is spooled");
                queued.push((envelope, text(&body)));
            }
        }
    })
}

#[test]
fn smtp_source_sends_a_thousand_messages_over_ten_sessions_and_none_is_lost() {
    let data = tempfile::tempdir().unwrap();
    // smtp-source opens a connection per message: 1,000 in seconds from one address, far over
    // the default rate limit for a single client.
    let dev = Dev::start_with(data.path(), &["--connection-rate-per-ip", "0"]);
    ok(dev.admin(&["domain", "add", "example.org"], None));
    ok(dev.admin(&["mailbox", "add", "bob@example.org", "--password-stdin"], Some("hunter2\n")));
    let smtp_source =
        if std::path::Path::new("/usr/sbin/smtp-source").exists() { "/usr/sbin/smtp-source" } else { "smtp-source" };
    let output = Command::new(smtp_source)
        .args(["-s", "10", "-m", "1000", "-l", "4096", "-f", "sender@remote.test", "-t", "bob@example.org"])
        .arg(&dev.smtp)
        .stdin(Stdio::null())
        .output()
        .expect("smtp-source runs");
    assert!(output.status.success(), "smtp-source: {}{}", text(&output.stdout), text(&output.stderr));
    let delivered = dev.wait_for_inbox("bob@example.org", "hunter2", 1000);
    assert_eq!(delivered.len(), 1000, "every message delivered once");
    assert!(delivered.iter().all(|message| message.starts_with("Received: from ")));
    assert!(dev.terminate());
    assert_eq!(queued(data.path()).len(), 0, "nothing left in the queue");
}

#[test]
fn real_clients_submit_and_deliver_over_every_listener() {
    let data = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let remote = runtime.block_on(Mta::start(Options::default()));
    let dev = Dev::start_with(data.path(), &["--mx-override", &format!("remote.test={}", remote.address)]);
    ok(dev.admin(&["domain", "add", "example.org"], None));
    ok(dev.admin(&["mailbox", "add", "alice@example.org", "--password-stdin"], Some("s3cret\n")));
    ok(dev.admin(&["mailbox", "add", "bob@example.org", "--password-stdin"], Some("hunter2\n")));

    // MX: anyone may send to a local mailbox, with pipelining.
    queued_id(&swaks(
        &dev.smtp,
        &["--pipeline", "--from", "someone@remote.test", "--to", "bob@example.org", "--header", "Subject: mx"],
    ));
    // MX refuses relaying, and submission refuses mail without TLS and AUTH.
    let relay = swaks(&dev.smtp, &["--from", "someone@remote.test", "--to", "victim@remote.test"]);
    assert!(!relay.status.success());
    assert!(text(&relay.stdout).contains("554 5.7.1"), "{}", text(&relay.stdout));
    let anonymous = swaks(&dev.submission, &["--from", "alice@example.org", "--to", "friend@remote.test"]);
    assert!(text(&anonymous.stdout).contains("530 5.7.0"), "{}", text(&anonymous.stdout));

    // Submission: STARTTLS, then AUTH PLAIN; the message may go out to a remote address.
    let submitted = queued_id(&swaks(
        &dev.submission,
        &[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice@example.org",
            "--auth-password",
            "s3cret",
            "--from",
            "alice@example.org",
            "--to",
            "friend@remote.test,bob@example.org",
            "--header",
            "Subject: submission",
        ],
    ));
    // Submissions: implicit TLS (RFC 8314), AUTH LOGIN.
    queued_id(&swaks(
        &dev.submissions,
        &[
            "--tls-on-connect",
            "--auth",
            "LOGIN",
            "--auth-user",
            "bob@example.org",
            "--auth-password",
            "hunter2",
            "--from",
            "bob@example.org",
            "--to",
            "alice@example.org",
            "--header",
            "Subject: submissions",
        ],
    ));
    // A wrong password is refused with 535 5.7.8.
    let wrong = swaks(
        &dev.submissions,
        &[
            "--tls-on-connect",
            "--auth",
            "PLAIN",
            "--auth-user",
            "bob@example.org",
            "--auth-password",
            "nope",
            "--from",
            "bob@example.org",
            "--to",
            "alice@example.org",
            "--quit-after",
            "AUTH",
        ],
    );
    assert!(text(&wrong.stdout).contains("535 5.7.8"), "{}", text(&wrong.stdout));

    // Python's smtplib over STARTTLS, as an application would send.
    let script = r#"
host, port = address(sys.argv[1])
with smtplib.SMTP(host, port, timeout=20) as smtp:
    smtp.starttls(context=context)
    smtp.login("alice@example.org", "s3cret")
    refused = smtp.sendmail("alice@example.org", ["bob@example.org"],
        "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: smtplib\r\n\r\nHi Bob\r\n")
    assert not refused, refused
    code, _ = smtp.noop()
    print(code)
"#;
    assert_eq!(python(script, &[&dev.submission]), ["250"]);

    // Everything acknowledged is delivered to the local mailboxes.
    let bobs = dev.wait_for_inbox("bob@example.org", "hunter2", 3);
    let alices = dev.wait_for_inbox("alice@example.org", "s3cret", 1);
    assert_eq!((bobs.len(), alices.len()), (3, 1), "mx, submission and smtplib to bob; submissions to alice");
    let find = |messages: &[String], subject: &str| {
        messages
            .iter()
            .find(|m| m.contains(&format!("Subject: {subject}")))
            .cloned()
            .unwrap_or_else(|| panic!("{subject}"))
    };
    let submission = find(&bobs, "submission");
    assert!(submission.starts_with("Received: from client.test"), "{submission}");
    assert!(submission.contains("with ESMTPSA"), "{submission}");
    assert!(find(&bobs, "mx").contains("with ESMTP id"));
    assert!(find(&bobs, "smtplib").contains("Hi Bob"));
    assert!(find(&alices, "submissions").contains("with ESMTPSA"));
    // The remote recipient's copy went to its MTA, from alice.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while remote.received().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = remote.received();
    assert_eq!(sent.len(), 1, "one message for the remote recipient");
    assert_eq!(
        (sent[0].mail_from.as_str(), sent[0].recipients.as_slice()),
        ("alice@example.org", &["friend@remote.test".to_string()][..])
    );
    assert!(text(&sent[0].data).contains("Subject: submission"));
    assert!(
        text(&sent[0].data).contains(&format!("with ESMTPSA id {submitted}")),
        "the message submitted as {submitted}"
    );

    assert!(dev.terminate(), "kubemail dev exits 0 on SIGTERM");
    assert_eq!(queued(data.path()).len(), 0, "nothing left in the queue");
}
