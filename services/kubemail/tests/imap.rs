//! Black-box: `kubemail dev`'s IMAP listeners with Python's imaplib — STARTTLS on the IMAP
//! port, implicit TLS on the IMAPS port, passwords refused before TLS, and plain-text login
//! from loopback only when the dev flag allows it.

mod common;

use std::process::Command;

use common::{Dev, ok, text};

/// Runs `script` with the IMAP and IMAPS addresses as arguments; returns its output lines.
fn imaplib(dev: &Dev, script: &str) -> Vec<String> {
    let prelude = r#"
import imaplib, ssl, sys
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE  # kubemail dev's self-signed certificate
imap_host, imap_port = sys.argv[1].rsplit(":", 1)
imaps_host, imaps_port = sys.argv[2].rsplit(":", 1)
"#;
    let output = Command::new("python3")
        .args(["-c", &format!("{prelude}{script}"), &dev.imap, &dev.imaps])
        .output()
        .expect("python3 runs");
    assert!(output.status.success(), "imaplib: {}{}", text(&output.stdout), text(&output.stderr));
    text(&output.stdout).lines().map(str::to_string).collect()
}

fn with_alice(dev: &Dev) {
    ok(dev.admin(&["domain", "add", "example.org"], None));
    ok(dev.admin(&["mailbox", "add", "alice@example.org", "--password-stdin"], Some("s3cret\n")));
}

#[test]
fn imaplib_logs_in_over_starttls_and_implicit_tls() {
    let data = tempfile::tempdir().unwrap();
    let dev = Dev::start(data.path());
    with_alice(&dev);
    let script = r#"
m = imaplib.IMAP4(imap_host, int(imap_port))
print("before TLS:", " ".join(m.capabilities))
try:
    m.login("alice@example.org", "s3cret")
    print("plain login: accepted")
except imaplib.IMAP4.error as error:
    print("plain login:", error)
m.starttls(ssl_context=context)
typ, _ = m.login("alice@example.org", "s3cret")
print("starttls login:", typ)
print("after login:", " ".join(m.capabilities))
print("logout:", m.logout()[0])

m = imaplib.IMAP4_SSL(imaps_host, int(imaps_port), ssl_context=context)
try:
    m.login("alice@example.org", "wrong")
except imaplib.IMAP4.error as error:
    print("wrong password:", error)
print("imaps login:", m.login("alice@example.org", "s3cret")[0])
m.logout()
"#;
    let lines = imaplib(&dev, script);
    let line = |prefix: &str| {
        lines.iter().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix} missing: {lines:#?}")).clone()
    };
    let before = line("before TLS:");
    assert!(before.contains("STARTTLS") && before.contains("LOGINDISABLED"), "{before}");
    assert!(line("plain login:").contains("PRIVACYREQUIRED"), "{lines:#?}");
    assert_eq!(line("starttls login:"), "starttls login: OK");
    assert!(line("after login:").contains("IMAP4REV2"), "{lines:#?}");
    assert_eq!(line("logout:"), "logout: BYE");
    assert!(line("wrong password:").contains("AUTHENTICATIONFAILED"), "{lines:#?}");
    assert_eq!(line("imaps login:"), "imaps login: OK");
    assert!(dev.terminate(), "clean stop with IMAP sessions gone");
}

#[test]
fn the_dev_flag_lets_loopback_clients_log_in_without_tls() {
    let data = tempfile::tempdir().unwrap();
    let dev = Dev::start_with(data.path(), &["--imap-allow-plaintext-login"]);
    with_alice(&dev);
    let lines = imaplib(
        &dev,
        r#"
m = imaplib.IMAP4(imap_host, int(imap_port))
print(m.login("alice@example.org", "s3cret")[0])
m.logout()
"#,
    );
    assert_eq!(lines, ["OK"]);
}
