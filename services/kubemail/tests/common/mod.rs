//! Helpers for the black-box tests of the `kubemail` binary.

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const KUBEMAIL: &str = env!("CARGO_BIN_EXE_kubemail");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `kubemail dev` in its own data directory, every listener on a free loopback port.
pub struct Dev {
    child: Child,
    /// The gRPC URL (`http://…`), and the other listeners as `host:port`.
    pub grpc: String,
    pub http: String,
    pub smtp: String,
    pub submission: String,
    pub submissions: String,
    pub imap: String,
    pub imaps: String,
}

impl Dev {
    pub fn start(data_dir: &Path) -> Dev {
        Dev::start_with(data_dir, &[])
    }

    /// Starts with `extra` flags after the listener flags.
    pub fn start_with(data_dir: &Path, extra: &[&str]) -> Dev {
        let port = || format!("127.0.0.1:{}", free_port());
        let (grpc, http, smtp, submission, submissions) = (port(), port(), port(), port(), port());
        let (imap, imaps) = (port(), port());
        let mut command = Command::new(KUBEMAIL);
        command.args(["dev", "--data-dir"]).arg(data_dir).args([
            "--grpc-listen",
            &grpc,
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
        ]);
        command.args(extra);
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("kubemail dev starts");
        let dev = Dev { child, grpc: format!("http://{grpc}"), http, smtp, submission, submissions, imap, imaps };
        dev.wait_ready();
        dev
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = curl(&format!("http://{}/readyz", self.http));
            if out.status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "kubemail dev not ready after 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn admin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(KUBEMAIL)
            .args(["admin", "--mailstore", &self.grpc])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubemail admin runs");
        child.stdin.take().unwrap().write_all(stdin.unwrap_or("").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    /// The messages in `address`'s INBOX, read through the mailstore API.
    pub fn inbox(&self, address: &str, password: &str) -> Vec<String> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let channel = tonic::transport::Channel::from_shared(self.grpc.clone()).unwrap().connect().await.unwrap();
            let messages = kubemail_testkit::mailstore::inbox(&channel, address, password).await;
            messages.iter().map(|message| text(message)).collect()
        })
    }

    /// Waits (up to a minute) until `address`'s INBOX holds `count` messages, and returns them.
    pub fn wait_for_inbox(&self, address: &str, password: &str, count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let messages = self.inbox(address, password);
            if messages.len() >= count || Instant::now() > deadline {
                return messages;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
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

/// `curl -fsS` (fails on HTTP errors), the way an operator would probe the endpoint.
pub fn curl(url: &str) -> Output {
    Command::new("curl").args(["-fsS", "--max-time", "5", url]).output().expect("curl runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn ok(output: Output) -> String {
    assert!(output.status.success(), "command failed: {}", text(&output.stderr));
    text(&output.stdout)
}
