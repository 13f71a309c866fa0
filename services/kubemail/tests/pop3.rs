//! Black-box: `kubemail dev`'s POP3 listeners with real clients — Python's poplib over STLS and
//! implicit TLS, and curl's POP3 URLs. Mail delivered over SMTP is retrieved over POP3; a POP3
//! deletion reaches an IMAP session as EXPUNGE, and a dropped connection deletes nothing.

mod common;

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
