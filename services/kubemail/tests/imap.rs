//! Black-box: `kubemail dev`'s IMAP listeners with real clients — Python's imaplib (STARTTLS,
//! implicit TLS, passwords refused before TLS, plain-text login from loopback only when the
//! dev flag allows it; SORT and THREAD through its own methods; COMPRESS=DEFLATE through a
//! DEFLATE layer of zlib under it; the newer extensions — MULTIAPPEND, CATENATE, ESORT with
//! PARTIAL, WITHIN, SEARCHRES, CONTEXT=SEARCH, PREVIEW, SAVEDATE, OBJECTID, METADATA, NOTIFY —
//! through its raw commands), mbsync syncing both ways, curl's IMAP URLs, and neomutt keeping
//! its header cache across sessions by UIDVALIDITY and CONDSTORE.

mod common;

use common::{Dev, Mbsync, curl_mail, ok, python, swaks, text};

/// Runs `script` with the IMAP and IMAPS addresses as arguments; returns its output lines.
fn imaplib(dev: &Dev, script: &str) -> Vec<String> {
    let prelude = r#"
imap_host, imap_port = sys.argv[1].rsplit(":", 1)
imaps_host, imaps_port = sys.argv[2].rsplit(":", 1)
"#;
    python(&format!("{prelude}{script}"), &[&dev.imap, &dev.imaps])
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

    // Each command is counted by its answer, and timed.
    let metrics = ok(common::curl(&format!("http://{}/metrics", dev.http)));
    let count = |labels: &str| {
        let line = format!("kubemail_imap_commands_total{{{labels}}} ");
        metrics.lines().find_map(|l| l.strip_prefix(line.as_str())).map(|n| n.trim().to_string())
    };
    assert_eq!(count("command=\"LOGIN\",status=\"OK\"").as_deref(), Some("2"), "{metrics}");
    assert_eq!(count("command=\"LOGIN\",status=\"NO\"").as_deref(), Some("2"), "plain and wrong: {metrics}");
    assert_eq!(count("command=\"STARTTLS\",status=\"OK\"").as_deref(), Some("1"), "{metrics}");
    assert!(metrics.contains("kubemail_imap_command_duration_seconds_count{command=\"LOGIN\"} 4"), "{metrics}");

    // Open connections are a gauge (what the autoscaler reads): the sessions above have ended,
    // one still waiting at the greeting is counted.
    let mut waiting = std::net::TcpStream::connect(&dev.imap).unwrap();
    let mut greeting = [0u8; 4];
    std::io::Read::read_exact(&mut waiting, &mut greeting).unwrap();
    let open = |listener: &str| format!("kubemail_imap_connections_open{{listener=\"{listener}\"}} ");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let metrics = loop {
        let metrics = ok(common::curl(&format!("http://{}/metrics", dev.http)));
        let value = |listener: &str| {
            metrics.lines().find_map(|l| l.strip_prefix(open(listener).as_str())).map(|n| n.trim().to_string())
        };
        if value("imap").as_deref() == Some("1") && value("imaps").as_deref() == Some("0") {
            break metrics;
        }
        assert!(std::time::Instant::now() < deadline, "open connections not 1 and 0: {metrics}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(metrics.contains("# TYPE kubemail_imap_connections_open gauge"), "{metrics}");
    drop(waiting);
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

#[test]
fn imaplib_sorts_and_threads_on_the_server() {
    let data = tempfile::tempdir().unwrap();
    let dev = Dev::start(data.path());
    with_alice(&dev);
    let lines = imaplib(
        &dev,
        r#"
m = imaplib.IMAP4_SSL(imaps_host, int(imaps_port), ssl_context=context)
m.login("alice@example.org", "s3cret")
after_login = m.capability()[1][0].decode().split()
print("advertised:", " ".join(c for c in after_login if c.startswith(("SORT", "THREAD"))))
messages = [
    ("Subject: Plans\r\nFrom: Zed <zed@example.org>\r\nMessage-ID: <p@x>\r\nDate: Tue, 03 Mar 2026 10:00:00 +0000", "a" * 50),
    ("Subject: Re: Plans\r\nFrom: amy@example.org\r\nMessage-ID: <r@x>\r\nIn-Reply-To: <p@x>\r\nDate: Wed, 04 Mar 2026 10:00:00 +0000", "b"),
    ("Subject: Lunch\r\nFrom: Bob <bob@example.org>\r\nMessage-ID: <l@x>\r\nDate: Mon, 02 Mar 2026 10:00:00 +0000", "c" * 5),
]
for header, body in messages:
    m.append("INBOX", None, None, f"{header}\r\n\r\n{body}\r\n".encode())
m.select("INBOX")
print("by date:", m.sort("(DATE)", "UTF-8", "ALL")[1][0].decode())
print("by sender:", m.sort("(REVERSE FROM)", "UTF-8", "ALL")[1][0].decode())
print("by display name:", m.sort("(DISPLAYFROM)", "UTF-8", "ALL")[1][0].decode())
print("by size, unanswered:", m.uid("SORT", "(SIZE)", "UTF-8", "UNANSWERED")[1][0].decode())
print("threads:", m.thread("REFERENCES", "UTF-8", "ALL")[1][0].decode())
print("by subject:", m.thread("ORDEREDSUBJECT", "UTF-8", "ALL")[1][0].decode())
m.logout()
"#,
    );
    assert_eq!(
        lines,
        [
            "advertised: SORT SORT=DISPLAY THREAD=ORDEREDSUBJECT THREAD=REFERENCES THREAD=REFS",
            "by date: 3 1 2",
            "by sender: 1 3 2",
            "by display name: 2 3 1",
            "by size, unanswered: 3 2 1",
            "threads: (3)(1 2)",
            "by subject: (3)(1 2)",
        ]
    );
}

#[test]
fn imaplib_with_a_deflate_layer_reads_compressed_responses() {
    let data = tempfile::tempdir().unwrap();
    let dev = Dev::start(data.path());
    with_alice(&dev);
    let lines = imaplib(
        &dev,
        r#"
import zlib
imaplib.Commands["COMPRESS"] = ("AUTH", "SELECTED")

class Deflating(imaplib.IMAP4_SSL):
    """imaplib with COMPRESS=DEFLATE (RFC 4978): raw DEFLATE both ways once the server said OK."""
    deflate = None
    wire = inflated = 0

    def compress(self):
        typ, data = self._simple_command("COMPRESS", "DEFLATE")
        self.deflate, self.inflate, self.plain = zlib.compressobj(wbits=-15), zlib.decompressobj(wbits=-15), b""
        return typ

    def send(self, data):
        if self.deflate:
            data = self.deflate.compress(data) + self.deflate.flush(zlib.Z_SYNC_FLUSH)
        super().send(data)

    def fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise imaplib.IMAP4.abort("connection closed")
        self.wire += len(chunk)
        plain = self.inflate.decompress(chunk)
        self.inflated += len(plain)
        self.plain += plain

    def read(self, size):
        if not self.deflate:
            return super().read(size)
        while len(self.plain) < size:
            self.fill()
        out, self.plain = self.plain[:size], self.plain[size:]
        return out

    def readline(self):
        if not self.deflate:
            return super().readline()
        while b"\n" not in self.plain:
            self.fill()
        end = self.plain.index(b"\n") + 1
        out, self.plain = self.plain[:end], self.plain[end:]
        return out

m = Deflating(imaps_host, int(imaps_port), ssl_context=context)
m.login("alice@example.org", "s3cret")
print("advertised:", "COMPRESS=DEFLATE" in m.capability()[1][0].decode().split())
for n in range(50):
    header = f"From: Sender {n} <s{n}@example.org>\r\nTo: alice@example.org\r\nSubject: Report number {n}\r\n"
    m.append("INBOX", None, None, f"{header}\r\nBody {n}\r\n".encode())
print("compress:", m.compress())
print("select:", m.select("INBOX")[1][0].decode())
m.wire = m.inflated = 0
typ, data = m.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
subjects = [part[1].decode().strip() for part in data if isinstance(part, tuple)]
print("fetched:", typ, len(subjects), subjects[-1])
print("smaller on the wire:", m.wire * 3 < m.inflated)
print("again:", m._simple_command("COMPRESS", "DEFLATE")[0])
print("logout:", m.logout()[0])
"#,
    );
    assert_eq!(
        lines,
        [
            "advertised: True",
            "compress: OK",
            "select: 50",
            "fetched: OK 50 Subject: Report number 49",
            "smaller on the wire: True",
            "again: NO",
            "logout: BYE",
        ]
    );
}

#[test]
fn mbsync_syncs_both_ways_and_a_second_run_changes_nothing() {
    let data = tempfile::tempdir().unwrap();
    let dev = Dev::start_with(data.path(), &["--imap-allow-plaintext-login"]);
    with_alice(&dev);
    for subject in ["one", "two"] {
        let sent = swaks(&dev.smtp, &["--to", "alice@example.org", "--header", &format!("Subject: {subject}")]);
        assert!(sent.status.success(), "{}", text(&sent.stdout));
    }
    dev.wait_for_inbox("alice@example.org", "s3cret", 2);
    let mbsync = Mbsync::new(&dev.imap, "alice@example.org", "s3cret", None);
    mbsync.sync();
    assert_eq!(mbsync.files().len(), 2, "both messages came down");
    mbsync.write("1795712300.1_1.local", "From: alice@example.org\r\nSubject: written locally\r\n\r\nUp it goes.\r\n");
    mbsync.sync();
    let inbox_on_server = dev.inbox("alice@example.org", "s3cret");
    assert_eq!(inbox_on_server.len(), 3, "the local message went up");
    assert!(inbox_on_server[2].contains("Subject: written locally"));

    let before = mbsync.files();
    mbsync.sync();
    assert_eq!(mbsync.files(), before, "a second run changes nothing here");
    assert_eq!(dev.inbox("alice@example.org", "s3cret"), inbox_on_server, "nor there");
}

#[test]
fn curl_lists_mailboxes_and_reads_a_message_by_uid() {
    let data = tempfile::tempdir().unwrap();
    let dev = Dev::start(data.path());
    with_alice(&dev);
    let sent = swaks(&dev.smtp, &["--to", "alice@example.org", "--header", "Subject: for curl"]);
    assert!(sent.status.success(), "{}", text(&sent.stdout));
    dev.wait_for_inbox("alice@example.org", "s3cret", 1);
    let curl = |url: &str| curl_mail(url, "alice@example.org:s3cret");
    let listed = curl(&format!("imaps://{}/", dev.imaps));
    assert!(listed.contains("* LIST (\\HasNoChildren) \"/\" \"INBOX\""), "{listed}");
    assert!(listed.contains("\\Sent"), "{listed}");
    let message = curl(&format!("imap://{}/INBOX;UID=1", dev.imap));
    assert!(message.contains("Subject: for curl"), "{message}");
}

/// neomutt with a header cache (which it keys on UIDVALIDITY and, with CONDSTORE and QRESYNC,
/// keeps current by HIGHESTMODSEQ): the first session reads every header, the second reads
/// none, and after changes made by another client the third hears of the flag change and the
/// expunge with one UID FETCH CHANGEDSINCE and reads headers only for what it did not have.
#[test]
fn neomutt_keeps_its_header_cache_across_sessions() {
    let data = tempfile::tempdir().unwrap();
    let dev = Dev::start_with(data.path(), &["--imap-allow-plaintext-login"]);
    with_alice(&dev);
    let home = tempfile::tempdir().unwrap();
    let lines = python(
        r#"
import glob, os, pty, re, select, sys, time
host, port = address(sys.argv[1])
home = sys.argv[2]
m = imaplib.IMAP4(host, port)
m.login("alice@example.org", "s3cret")
for i in range(1, 21):
    m.append("INBOX", None, None, f"From: bob@example.org\r\nSubject: message {i}\r\nMessage-ID: <m{i}@example.org>\r\n\r\nBody {i}\r\n".encode())
m.logout()
with open(f"{home}/rc", "w") as rc:
    rc.write(f"""set folder = "imap://alice%40example.org@{host}:{port}/"
set spoolfile = "+INBOX"
set imap_pass = "s3cret"
set ssl_starttls = no
set ssl_force_tls = no
set timeout = 1
set header_cache = "{home}/hcache"
set imap_condstore = yes
set imap_qresync = yes
set mail_check = 0
push "<exit>"
""")

def neomutt(run):
    """One neomutt session that opens the INBOX and quits; the IMAP commands it sent and the
    responses it read, from its debug log."""
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "xterm"
        os.execvp("neomutt", ["neomutt", "-n", "-F", f"{home}/rc", "-d", "5", "-l", f"{home}/log{run}-"])
    deadline = time.time() + 60
    while time.time() < deadline:
        if select.select([fd], [], [], 0.2)[0]:
            try:
                if not os.read(fd, 65536):
                    break
            except OSError:
                break
        if os.waitpid(pid, os.WNOHANG)[0]:
            break
    else:
        os.kill(pid, 9)
        raise SystemExit(f"neomutt run {run} did not finish")
    log = open(glob.glob(f"{home}/log{run}-*")[0], errors="replace").read()
    sent = re.findall(r"\d> (a\d+ .*)", log)
    read = re.findall(r"\d< (.*)", log)
    headers = [line for line in read if re.match(r"\* \d+ FETCH \(UID \d+ .*BODY\[HEADER\.FIELDS", line)]
    return sent, read, headers

sent, read, headers = neomutt(1)
print("first: headers read", len(headers))
sent, read, headers = neomutt(2)
print("second: fetches", sum(" FETCH " in line for line in sent), "headers read", len(headers))

m = imaplib.IMAP4(host, port)
m.login("alice@example.org", "s3cret")
m.select("INBOX")
m.uid("STORE", "5", "+FLAGS", "(\\Flagged)")
m.uid("STORE", "6", "+FLAGS", "(\\Deleted)")
m.expunge()
m.append("INBOX", None, None, b"From: carol@example.org\r\nSubject: new one\r\nMessage-ID: <n@example.org>\r\n\r\nHi\r\n")
m.logout()

sent, read, headers = neomutt(3)
print("third: changedsince", any("(CHANGEDSINCE " in line for line in sent))
print("third: vanished", [line for line in read if line.startswith("* VANISHED")])
print("third: flagged", any(re.match(r"\* 5 FETCH \(UID 5 FLAGS \(\\Flagged\) MODSEQ", line) for line in read))
print("third: new message read", any("UID 21 " in line for line in headers), "headers read at most 2:", len(headers) <= 2)
"#,
        &[&dev.imap, home.path().to_str().unwrap()],
    );
    assert_eq!(
        lines,
        [
            "first: headers read 20",
            "second: fetches 0 headers read 0",
            "third: changedsince True",
            "third: vanished ['* VANISHED (EARLIER) 6']",
            "third: flagged True",
            "third: new message read True headers read at most 2: True",
        ]
    );
}

/// The extensions imaplib has no methods for, through `imaplib`'s own connection and its raw
/// command path, over a real socket.
#[test]
fn imaplib_uses_the_newer_extensions() {
    let data = tempfile::tempdir().unwrap();
    let dev = Dev::start(data.path());
    with_alice(&dev);
    let lines = imaplib(
        &dev,
        r#"
import re
m = imaplib.IMAP4_SSL(imaps_host, int(imaps_port), ssl_context=context)
m.login("alice@example.org", "s3cret")
def raw(command):
    """Sends `command` as it is (its literals with LITERAL+) and returns the untagged lines."""
    tag = m._new_tag().decode()
    m.send(f"{tag} {command}\r\n".encode())
    lines = []
    while True:
        line = m._get_line().decode()
        if line.startswith(tag + " "):
            assert " OK " in line, line
            return lines
        lines.append(line)
def untagged(lines):
    """`lines` with the search's tag, which imaplib makes up, left out."""
    return [re.sub(r'\(TAG "[^"]*"\)', "(TAG)", line) for line in lines]
def literal(text):
    return f"{{{len(text.encode())}+}}\r\n{text}"
one = "From: bob@example.org\r\nSubject: b plan\r\n\r\nFirst words here.\r\n"
two = "From: amy@example.org\r\nSubject: a plan\r\n\r\nSecond.\r\n"
print("multiappend:", raw(f"APPEND INBOX {literal(one)} (\\Flagged) {literal(two)}") == [])
m.select("INBOX")
print("esort:", untagged(raw("SORT RETURN (MIN MAX PARTIAL 1:1) (SUBJECT) UTF-8 ALL")))
print("within:", raw("SEARCH YOUNGER 3600"))
raw("SEARCH RETURN (SAVE) FLAGGED")
print("searchres:", raw("FETCH $ (UID)"))
print("preview:", raw("FETCH 1 (PREVIEW)"))
print("objectid:", all("EMAILID (M" in line and "SAVEDATE \"" in line for line in raw("FETCH 1:2 (EMAILID SAVEDATE)")))
print("catenate:", raw(f"APPEND Drafts CATENATE (URL \"/INBOX/;UID=2/;SECTION=HEADER\" TEXT {literal('Edited.')})") == [])
raw("SETMETADATA INBOX (/private/comment \"mine\")")
print("metadata:", raw("GETMETADATA INBOX /private/comment"))
print("update:", untagged(raw("UID SEARCH RETURN (UPDATE COUNT) UNSEEN")))
m.logout()
"#,
    );
    assert_eq!(
        lines,
        [
            "multiappend: True",
            "esort: ['* ESEARCH (TAG) MIN 2 MAX 1 PARTIAL (1:1 2)']",
            "within: ['* SEARCH 1 2']",
            "searchres: ['* 2 FETCH (UID 2)']",
            "preview: ['* 1 FETCH (PREVIEW \"First words here.\")']",
            "objectid: True",
            "catenate: True",
            "metadata: ['* METADATA \"INBOX\" (/private/comment \"mine\")']",
            "update: ['* ESEARCH (TAG) UID COUNT 2']",
        ]
    );
}
