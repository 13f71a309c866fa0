//! Black-box: `kubemail dev`'s POP3 listeners with real clients — Python's poplib over STLS and
//! implicit TLS, curl's POP3 URLs, and fetchmail keeping mail on the server and fetching only
//! what is new by UIDL. Mail delivered over SMTP is retrieved over POP3; a POP3 deletion
//! reaches an IMAP session as EXPUNGE, and a dropped connection deletes nothing.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use common::{Dev, curl_mail, ok, python, swaks, text};

fn with_two_messages(dev: &Dev) {
    ok(dev.admin(&["domain", "add", "example.org"], None));
    ok(dev.admin(&["mailbox", "add", "alice@example.org", "--password-stdin"], Some("s3cret\n")));
    for subject in ["one", "two"] {
        let sent = swaks(&dev.smtp, &["--to", "alice@example.org", "--header", &format!("Subject: {subject}")]);
        assert!(sent.status.success(), "{}", text(&sent.stdout));
    }
    dev.wait_for_inbox("alice@example.org", "s3cret", 2);
}

#[test]
fn poplib_reads_and_deletes_and_imap_sees_the_expunge() {
    let data = tempfile::tempdir().unwrap();
    let dev = Dev::start(data.path());
    with_two_messages(&dev);
    let script = r#"
pop3, pop3s, imap = address(sys.argv[1]), address(sys.argv[2]), address(sys.argv[3])
m = imaplib.IMAP4(*imap)
m.starttls(ssl_context=context)
m.login("alice@example.org", "s3cret")
m.select("INBOX")

p = poplib.POP3(*pop3)
try:
    p.user("alice@example.org")
except poplib.error_proto as error:
    print("before TLS:", error.args[0].decode())
p.stls(context=context)
p.user("alice@example.org")
print("pass:", p.pass_("s3cret").decode())
print("stat:", p.stat())
print("list:", [line.decode() for line in p.list()[1]])
uidl = [line.decode() for line in p.uidl()[1]]
print("uidl:", uidl)
print("retr subject:", [line.decode() for line in p.retr(1)[1] if line.startswith(b"Subject:")])
print("top lines:", len(p.top(2, 0)[1]) < len(p.retr(2)[1]))
print("dele:", p.dele(1).decode())
print("quit:", p.quit().decode())
m.noop()
print("imap expunge:", m.response("EXPUNGE"))

# Implicit TLS; a deletion whose connection drops before QUIT deletes nothing.
p = poplib.POP3_SSL(*pop3s, context=context)
p.user("alice@example.org")
p.pass_("s3cret")
print("uidl again:", [line.decode() for line in p.uidl()[1]])
p.dele(1)
p.sock.close()
p = poplib.POP3_SSL(*pop3s, context=context)
p.user("alice@example.org")
p.pass_("s3cret")
print("after drop:", p.stat())
p.quit()
"#;
    let lines = python(&format!("import poplib\n{script}"), &[&dev.pop3, &dev.pop3s, &dev.imap]);
    let line = |prefix: &str| {
        lines.iter().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix} missing: {lines:#?}")).clone()
    };
    assert!(line("before TLS:").starts_with("before TLS: -ERR [AUTH]"), "{lines:#?}");
    assert!(line("pass:").starts_with("pass: +OK 2 messages"), "{lines:#?}");
    assert!(line("stat:").starts_with("stat: (2, "), "{lines:#?}");
    assert_eq!(line("retr subject:"), "retr subject: ['Subject: one']");
    assert_eq!(line("top lines:"), "top lines: True");
    assert_eq!(line("dele:"), "dele: +OK Message 1 deleted");
    assert!(line("quit:").ends_with("(1 message left)"), "{lines:#?}");
    assert_eq!(line("imap expunge:"), "imap expunge: ('EXPUNGE', [b'1'])");
    // The second message keeps its unique id in the next session, now as message 1.
    let uidl = line("uidl:");
    let second_id = uidl.split(", '2 ").nth(1).unwrap().trim_end_matches("']");
    assert_eq!(line("uidl again:"), format!("uidl again: ['1 {second_id}']"));
    assert!(line("after drop:").starts_with("after drop: (1, "), "{lines:#?}");
    assert_eq!(dev.inbox("alice@example.org", "s3cret").len(), 1);
}

#[test]
fn curl_lists_and_retrieves_over_pop3() {
    let data = tempfile::tempdir().unwrap();
    let dev = Dev::start(data.path());
    with_two_messages(&dev);
    let curl = |url: &str| curl_mail(url, "alice@example.org:s3cret");
    let listed = curl(&format!("pop3s://{}/", dev.pop3s));
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(listed.starts_with("1 "), "{listed}");
    let message = curl(&format!("pop3://{}/2", dev.pop3));
    assert!(message.contains("Subject: two"), "{message}");
}

/// fetchmail against `dev` with the settings in `options` (`keep`, or `nokeep flush`): its
/// exit status (0 mail fetched, 1 none new) and the messages delivered into `home`/`mail`.
fn fetchmail(dev: &Dev, data: &Path, home: &Path, options: &str) -> (i32, Vec<String>) {
    let (_, port) = dev.pop3.rsplit_once(':').unwrap();
    let mail = home.join("mail");
    std::fs::create_dir_all(&mail).unwrap();
    let deliver = home.join("deliver.sh");
    std::fs::write(&deliver, format!("#!/bin/sh\ncat > \"$(mktemp {}/msg.XXXXXX)\"\n", mail.display())).unwrap();
    std::fs::set_permissions(&deliver, std::fs::Permissions::from_mode(0o700)).unwrap();
    // STLS required, the certificate checked against the name it was issued for.
    let certificate = data.join("tls/localhost/tls.crt");
    let rc = home.join("fetchmailrc");
    std::fs::write(
        &rc,
        format!(
            "set no bouncemail\npoll localhost via 127.0.0.1 protocol POP3 port {port} timeout 20:\n  \
             user \"alice@example.org\" there with password \"s3cret\"\n  \
             sslproto \"tls1.2+\" sslcertck sslcertfile \"{}\" sslcommonname \"localhost\"\n  \
             {options}\n  mda \"{}\"\n",
            certificate.display(),
            deliver.display()
        ),
    )
    .unwrap();
    // fetchmail keeps its UIDL record and lock in FETCHMAILHOME and wants both private.
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = Command::new("fetchmail")
        .env("FETCHMAILHOME", home)
        .args(["--nosyslog", "-f"])
        .arg(&rc)
        .output()
        .expect("fetchmail runs");
    let status = output.status.code().unwrap_or(-1);
    assert!(status <= 1, "fetchmail failed ({status}): {}{}", text(&output.stdout), text(&output.stderr));
    let mut subjects: Vec<String> = std::fs::read_dir(&mail)
        .unwrap()
        .map(|entry| {
            let message = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            message.lines().find_map(|line| line.strip_prefix("Subject: ")).unwrap_or_default().to_string()
        })
        .collect();
    subjects.sort();
    (status, subjects)
}

#[test]
fn fetchmail_keeps_mail_on_the_server_fetches_only_what_is_new_then_deletes() {
    let data = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let dev = Dev::start(data.path());
    with_two_messages(&dev);
    let send = |subject: &str| {
        let sent = swaks(&dev.smtp, &["--to", "alice@example.org", "--header", &format!("Subject: {subject}")]);
        assert!(sent.status.success(), "{}", text(&sent.stdout));
    };

    assert_eq!(fetchmail(&dev, data.path(), home.path(), "keep"), (0, vec!["one".into(), "two".into()]));
    assert_eq!(fetchmail(&dev, data.path(), home.path(), "keep").0, 1, "nothing new: the UIDLs were remembered");
    send("three");
    dev.wait_for_inbox("alice@example.org", "s3cret", 3);
    let (status, fetched) = fetchmail(&dev, data.path(), home.path(), "keep");
    assert_eq!((status, fetched), (0, vec!["one".into(), "three".into(), "two".into()]), "only the new one again");

    // Without keep, and flushing what was fetched before: the server is emptied.
    send("four");
    dev.wait_for_inbox("alice@example.org", "s3cret", 4);
    let (status, fetched) = fetchmail(&dev, data.path(), home.path(), "nokeep flush");
    assert_eq!((status, fetched.len()), (0, 4), "{fetched:?}");
    assert!(dev.inbox("alice@example.org", "s3cret").is_empty(), "fetched and flushed messages are deleted");
}
