//! Black-box: the `kubemail` binary as a user runs it. `kubemail dev` in a temp data dir on
//! free ports, driven by `kubemail admin` and `curl`.

mod common;

use std::net::TcpListener;
use std::process::Command;

use common::{Dev, KUBEMAIL, curl, ok, text};
use kubemail_testkit::free_port;

#[test]
fn admin_cli_manages_a_running_dev_platform() {
    let data = tempfile::tempdir().unwrap();
    let dev = Dev::start(data.path());
    assert_eq!(text(&curl(&format!("http://{}/healthz", dev.http)).stdout), "ok");
    let metrics = ok(curl(&format!("http://{}/metrics", dev.http)));
    assert!(metrics.contains("kubemail_build_info"), "metrics are served: {metrics}");

    assert!(ok(dev.admin(&["domain", "add", "Example.org"], None)).contains("example.org"));
    assert!(
        ok(dev.admin(
            &[
                "mailbox",
                "add",
                "alice@example.org",
                "--password-stdin",
                "--quota-storage",
                "1GiB",
                "--quota-messages",
                "500"
            ],
            Some("s3cret\n")
        ))
        .contains("alice@example.org")
    );
    ok(dev.admin(&["mailbox", "add", "bob@example.org", "--password-stdin"], Some("hunter2")));
    ok(dev.admin(&["alias", "add", "postmaster@example.org", "alice@example.org"], None));

    let list = ok(dev.admin(&["mailbox", "list"], None));
    let lines: Vec<&str> = list.lines().collect();
    assert!(lines[0].starts_with("ADDRESS"), "{list}");
    let alice: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(alice[0], "alice@example.org");
    assert!(
        lines[1].contains("1.0 GiB") && lines[1].contains("500") && lines[1].contains("postmaster@example.org"),
        "{list}"
    );
    assert!(lines[2].starts_with("bob@example.org") && lines[2].contains("unlimited"), "{list}");
    assert!(ok(dev.admin(&["domain", "list"], None)).contains("example.org   2"));
    assert!(ok(dev.admin(&["alias", "list"], None)).contains("postmaster@example.org   alice@example.org"));

    ok(dev.admin(&["mailbox", "passwd", "bob@example.org", "--password-stdin"], Some("new-password\n")));
    ok(dev.admin(&["mailbox", "quota", "bob@example.org", "--storage", "10MiB", "--messages", "0"], None));
    assert!(ok(dev.admin(&["mailbox", "list", "--domain", "example.org"], None)).contains("10.0 MiB"));
    assert!(ok(dev.admin(&["mailbox", "remove", "bob@example.org"], None)).contains("suspended"));
    assert!(
        ok(dev.admin(&["mailbox", "list"], None))
            .lines()
            .any(|l| l.starts_with("bob@example.org") && l.contains("suspended"))
    );
    ok(dev.admin(&["alias", "remove", "postmaster@example.org"], None));

    // Server-side refusals: one line, non-zero exit.
    for (args, stdin, expected) in [
        (vec!["mailbox", "add", "carol@unknown.example", "--password-stdin"], Some("pw"), "not served"),
        (vec!["mailbox", "add", "not-an-address", "--password-stdin"], Some("pw"), "has no '@'"),
        (vec!["mailbox", "add", "dave@example.org", "--password-stdin"], Some(""), "no password"),
        (vec!["domain", "remove", "example.org"], None, "still has"),
        (vec!["alias", "remove", "nobody@example.org"], None, "no alias"),
    ] {
        let output = dev.admin(&args, stdin);
        let stderr = text(&output.stderr);
        assert!(!output.status.success(), "{args:?} must fail");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one-line error: {stderr}");
    }

    // Data survives a restart; SIGTERM stops cleanly.
    assert!(dev.terminate(), "kubemail dev exits 0 on SIGTERM");
    let dev = Dev::start(data.path());
    assert!(ok(dev.admin(&["mailbox", "list"], None)).contains("alice@example.org"));
    assert!(dev.terminate());
}

#[test]
fn bad_arguments_get_a_one_line_error_and_a_nonzero_exit() {
    let unreachable = format!("http://127.0.0.1:{}", free_port());
    let output =
        Command::new(KUBEMAIL).args(["admin", "--mailstore", &unreachable, "domain", "list"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = text(&output.stderr);
    assert!(stderr.contains("cannot reach the mailstore"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");

    let output = Command::new(KUBEMAIL)
        .args(["admin", "mailbox", "add", "a@b.org", "--password-stdin", "--quota-storage", "lots"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("--quota-storage"), "{}", text(&output.stderr));
    assert_eq!(text(&output.stderr).trim_end().lines().count(), 1, "{}", text(&output.stderr));

    let output = Command::new(KUBEMAIL).args(["dev", "--grpc-listen", "nowhere"]).output().unwrap();
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("--grpc-listen"));
    for args in [&["admin", "mailbox", "add", "a@b.org"][..], &["admin", "frobnicate"], &["dev", "--no-such-flag"]] {
        let output = Command::new(KUBEMAIL).args(args).output().unwrap();
        let stderr = text(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?} gets a one-line error: {stderr}");
    }

    let help = text(&Command::new(KUBEMAIL).args(["dev", "--help"]).output().unwrap().stdout);
    for flag in [
        "--data-dir",
        "--grpc-listen",
        "--admin-grpc-listen",
        "--http-listen",
        "--smtp-listen",
        "--submission-listen",
        "--submissions-listen",
        "--imap-listen",
        "--imaps-listen",
        "--pop3-listen",
        "--pop3s-listen",
    ] {
        assert!(help.contains(flag), "dev --help documents {flag}");
    }
}

#[test]
fn a_taken_port_fails_the_start_and_names_the_flag() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(KUBEMAIL)
        .args(["dev", "--data-dir"])
        .arg(data.path())
        .args(["--grpc-listen", &format!("127.0.0.1:{port}"), "--http-listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("--grpc-listen"), "{}", text(&output.stderr));
}
