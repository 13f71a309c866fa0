//! POP3 sessions driven through in-memory streams against a real mailstore (SQLite over gRPC):
//! TLS before passwords, the transaction commands with byte-stuffing, deletion and `\Seen` only at QUIT,
//! numbering that holds while another session changes the INBOX, and bad input answered with
//! `-ERR` while the session goes on.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::{CLIENT_IP, Client, Fixture, HOSTNAME, PASSWORD};
use kubemail_imap_frontend::pop3;
use kubemail_runtime::tls::Connection;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio_rustls::client::TlsStream;

const FIRST: &str =
    "From: bob@example.org\r\nSubject: first\r\n\r\nHello.\r\n.leading dot\r\n..two dots\r\n.\r\nend\r\n";
const SECOND: &str = "From: carol@example.org\r\nSubject: second\r\n\r\none\r\ntwo\r\nthree\r\n";

/// The fixture's line client, speaking POP3: single- and multi-line responses.
struct Pop3<S>(Client<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> Pop3<S> {
    async fn send(&mut self, data: &[u8]) {
        self.0.send(data).await;
    }

    /// Sends `line` and returns the status line, which must start with `expected` (`+OK` or
    /// `-ERR`).
    async fn command(&mut self, line: &str, expected: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        let status = self.line().await.expect("a response");
        assert!(status.starts_with(expected), "{line:?} got {status:?}, not {expected}");
        status
    }

    /// A multi-line response's lines after its `+OK` line, byte-stuffing undone.
    async fn multiline(&mut self, line: &str) -> Vec<String> {
        self.command(line, "+OK").await;
        let mut lines = Vec::new();
        loop {
            let line = self.line().await.expect("the rest of the response");
            if line == "." {
                return lines;
            }
            lines.push(line.strip_prefix('.').map_or(line.clone(), str::to_string));
        }
    }

    /// The next line without its CRLF, or `None` once the server closed the connection.
    async fn line(&mut self) -> Option<String> {
        self.0.line().await
    }
}

/// A new session from `ip`, read up to and including its greeting.
async fn connect_from(f: &Fixture, ip: IpAddr) -> Pop3<DuplexStream> {
    let (client, server) = tokio::io::duplex(256 * 1024);
    tokio::spawn(pop3::serve(Connection::Plain(server), ip, f.services.clone()));
    let mut client = Pop3(Client::new(client));
    assert_eq!(client.line().await.unwrap(), format!("+OK {HOSTNAME} POP3 server ready"));
    client
}

async fn connect(f: &Fixture) -> Pop3<DuplexStream> {
    connect_from(f, CLIENT_IP.parse().unwrap()).await
}

/// STLS and the handshake.
async fn upgrade(f: &Fixture, mut client: Pop3<DuplexStream>) -> Pop3<TlsStream<DuplexStream>> {
    client.command("STLS", "+OK").await;
    let name = ServerName::try_from(HOSTNAME.to_string()).unwrap();
    let tls = f.tls_connector().connect(name, client.0.into_stream()).await.expect("TLS handshake");
    Pop3(Client::new(tls))
}

/// A session over TLS logged in as alice.
async fn alice(f: &Fixture) -> Pop3<TlsStream<DuplexStream>> {
    let mut client = upgrade(f, connect(f).await).await;
    client.command("USER alice@example.org", "+OK").await;
    client.command(&format!("PASS {PASSWORD}"), "+OK").await;
    client
}

async fn with_two_messages() -> Fixture {
    let f = Fixture::start().await;
    f.mailstore.deliver("alice@example.org", FIRST.as_bytes()).await;
    f.mailstore.deliver("alice@example.org", SECOND.as_bytes()).await;
    f
}

#[tokio::test]
async fn passwords_wait_for_tls_and_capa_says_so() {
    let f = with_two_messages().await;
    let mut client = connect(&f).await;
    let before = client.multiline("CAPA").await;
    assert!(before.contains(&"STLS".to_string()) && !before.iter().any(|c| c == "USER" || c.starts_with("SASL")));
    for (command, state) in [("USER alice@example.org", "-ERR [AUTH]"), ("AUTH PLAIN", "-ERR [AUTH]"), ("STAT", "-ERR")]
    {
        client.command(command, state).await;
    }

    let mut client = upgrade(&f, client).await;
    let after = client.multiline("CAPA").await;
    for capability in ["USER", "SASL PLAIN LOGIN", "TOP", "UIDL", "RESP-CODES", "PIPELINING"] {
        assert!(after.contains(&capability.to_string()), "{capability} missing from {after:?}");
    }
    assert!(!after.contains(&"STLS".to_string()));
    client.command("USER alice@example.org", "+OK").await;
    let stat = FIRST.len() + SECOND.len();
    assert_eq!(client.command(&format!("PASS {PASSWORD}"), "+OK").await, format!("+OK 2 messages ({stat} octets)"));
    client.command("STLS", "-ERR").await;
    assert_eq!(client.command("QUIT", "+OK").await, format!("+OK {HOSTNAME} signing off (2 messages left)"));
    assert!(client.line().await.is_none());

    // The dev flag lets loopback clients log in without TLS, and no one else.
    let settings = common::Settings { allow_plaintext_auth: true, ..common::test_settings() };
    let dev = Fixture::with_settings(settings).await;
    let mut remote = connect(&dev).await;
    remote.command("USER alice@example.org", "-ERR [AUTH]").await;
    let mut local = connect_from(&dev, "127.0.0.1".parse().unwrap()).await;
    local.command("USER alice@example.org", "+OK").await;
    local.command(&format!("PASS {PASSWORD}"), "+OK 0 messages").await;
}

#[tokio::test]
async fn messages_are_listed_retrieved_byte_stuffed_and_cut_by_top() {
    let f = with_two_messages().await;
    let mut client = alice(&f).await;
    assert_eq!(client.command("STAT", "+OK").await, format!("+OK 2 {}", FIRST.len() + SECOND.len()));
    assert_eq!(client.multiline("LIST").await, [format!("1 {}", FIRST.len()), format!("2 {}", SECOND.len())]);
    assert_eq!(client.command("LIST 2", "+OK").await, format!("+OK 2 {}", SECOND.len()));
    let uids = client.multiline("UIDL").await;
    let (first_id, second_id) = (uids[0].split(' ').nth(1).unwrap(), uids[1].split(' ').nth(1).unwrap());
    assert_ne!(first_id, second_id);
    assert!(first_id.split('.').all(|number| number.parse::<u32>().is_ok()), "UIDVALIDITY.UID: {first_id}");

    // The body comes back line for line: dots stuffed on the wire, the lone "." not an end.
    let retrieved = client.multiline("RETR 1").await;
    let expected: Vec<&str> = FIRST.strip_suffix("\r\n").unwrap().split("\r\n").collect();
    assert_eq!(retrieved, expected);
    assert_eq!(client.multiline("TOP 2 1").await, ["From: carol@example.org", "Subject: second", "", "one"]);
    assert_eq!(client.multiline("TOP 2 0").await, ["From: carol@example.org", "Subject: second", ""]);
    client.command("NOOP", "+OK").await;
    client.command("QUIT", "+OK").await;

    // UIDL values hold from one session to the next.
    let mut again = alice(&f).await;
    assert_eq!(again.multiline("UIDL").await, uids);
    // What was retrieved in full shows as read over IMAP; what TOP showed does not.
    assert_eq!(imap_flags(&f).await, ["* 1 FETCH (FLAGS (\\Seen \\Recent))", "* 2 FETCH (FLAGS (\\Recent))"]);
}

/// alice's INBOX flags, as an IMAP session sees them.
async fn imap_flags(f: &Fixture) -> Vec<String> {
    let mut imap = f.logged_in("alice@example.org").await;
    imap.command("s EXAMINE INBOX").await.expect_ok();
    let fetched = imap.command("f FETCH 1:* FLAGS").await.expect_ok();
    fetched.into_iter().filter(|line| line.contains(" FETCH ")).collect()
}

/// Message `i` of [`reading_ahead_keeps_every_message_its_number`]: every fifth one large, so
/// that the read-ahead reaches its octet bound as well as its count.
fn numbered_message(i: usize) -> String {
    let lines = if i.is_multiple_of(5) { 5_000 } else { 3 };
    let body: String = (0..lines).map(|line| format!("message {i} line {line} {}\r\n", "x".repeat(60))).collect();
    format!("Subject: m{i}\r\n\r\n{body}")
}

#[tokio::test]
async fn reading_ahead_keeps_every_message_its_number() {
    const COUNT: usize = 40;
    let f = Fixture::start().await;
    for i in 1..=COUNT {
        f.mailstore.deliver("alice@example.org", numbered_message(i).as_bytes()).await;
    }
    let mut client = alice(&f).await;
    let expected = |i: usize| numbered_message(i).trim_end().split("\r\n").map(str::to_string).collect::<Vec<_>>();
    assert_eq!(client.multiline("RETR 1").await, expected(1));
    client.command("DELE 2", "+OK").await;
    for i in 3..=COUNT {
        assert_eq!(client.multiline(&format!("RETR {i}")).await, expected(i), "message {i}");
    }
    client.command("RETR 2", "-ERR Message 2 already deleted").await;
    // Out of order, and TOP, still see their own message.
    assert_eq!(client.multiline("RETR 7").await, expected(7));
    assert_eq!(client.multiline("TOP 6 1").await, expected(6)[..3]);
    assert_eq!(client.multiline("RETR 6").await, expected(6));
    assert_eq!(client.multiline("RETR 5").await, expected(5));
    client.command("QUIT", "+OK").await;
    assert_eq!(f.mailstore.inbox("alice@example.org").await.len(), COUNT - 1);
}

#[tokio::test]
async fn deletions_happen_at_quit_and_never_when_the_connection_drops() {
    let f = with_two_messages().await;
    let mut client = alice(&f).await;
    client.command("DELE 1", "+OK").await;
    assert_eq!(client.command("DELE 1", "-ERR").await, "-ERR Message 1 already deleted");
    client.command("RETR 1", "-ERR").await;
    assert_eq!(client.command("STAT", "+OK").await, format!("+OK 1 {}", SECOND.len()));
    assert_eq!(client.multiline("LIST").await, [format!("2 {}", SECOND.len())]);
    client.command("RSET", "+OK Maildrop has 2 messages").await;
    client.command("DELE 2", "+OK").await;
    client.multiline("RETR 1").await;
    drop(client);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(f.mailstore.inbox("alice@example.org").await.len(), 2, "a dropped connection deletes nothing");
    assert_eq!(
        imap_flags(&f).await,
        ["* 1 FETCH (FLAGS (\\Recent))", "* 2 FETCH (FLAGS (\\Recent))"],
        "nor marks anything read"
    );

    let mut client = alice(&f).await;
    client.command("DELE 2", "+OK").await;
    assert_eq!(client.command("QUIT", "+OK").await, format!("+OK {HOSTNAME} signing off (1 message left)"));
    assert_eq!(f.mailstore.inbox("alice@example.org").await, [FIRST.as_bytes()]);
}

#[tokio::test]
async fn numbering_holds_while_another_session_changes_the_inbox() {
    let f = with_two_messages().await;
    let mut pop = alice(&f).await;
    let listed = pop.multiline("LIST").await;

    // An IMAP session expunges the first message, and new mail arrives.
    let mut imap = f.logged_in("alice@example.org").await;
    imap.command("s SELECT INBOX").await.expect_ok();
    imap.command("d STORE 1 +FLAGS (\\Deleted)").await.expect_ok();
    imap.command("e EXPUNGE").await.expect_ok();
    f.mailstore.deliver("alice@example.org", b"Subject: third\r\n\r\nnew\r\n").await;

    assert_eq!(pop.multiline("LIST").await, listed, "the session keeps its numbers");
    // Not the client's error: asking again and again does not end the session.
    for _ in 0..=f.services.settings.max_errors {
        assert_eq!(pop.command("RETR 1", "-ERR").await, "-ERR Message 1 was removed by another session");
    }
    assert_eq!(pop.multiline("RETR 2").await.last().unwrap(), "three");
    pop.command("DELE 2", "+OK").await;
    pop.command("QUIT", "+OK").await;
    let left = f.mailstore.inbox("alice@example.org").await;
    assert_eq!(
        left,
        [b"Subject: third\r\n\r\nnew\r\n"],
        "only the message deleted over POP3 went, and the new one stayed"
    );
}

#[tokio::test]
async fn auth_plain_and_login_with_and_without_an_initial_response() {
    let f = with_two_messages().await;
    let token = BASE64.encode(format!("\0alice@example.org\0{PASSWORD}"));
    let mut client = upgrade(&f, connect(&f).await).await;
    client.command(&format!("AUTH PLAIN {token}"), "+OK 2 messages").await;

    let mut client = upgrade(&f, connect(&f).await).await;
    client.command("AUTH PLAIN", "+ ").await;
    client.command("*", "-ERR Authentication cancelled").await;
    client.command("AUTH PLAIN", "+ ").await;
    client.command(&token, "+OK 2 messages").await;

    // LOGIN, as IMAP offers it, with and without the user name up front.
    let (user, password) = (BASE64.encode("alice@example.org"), BASE64.encode(PASSWORD));
    let mut client = upgrade(&f, connect(&f).await).await;
    assert_eq!(client.multiline("AUTH").await, ["PLAIN", "LOGIN"], "a bare AUTH lists the mechanisms");
    assert_eq!(client.command("AUTH LOGIN", "+ ").await, format!("+ {}", BASE64.encode("Username:")));
    assert_eq!(client.command(&user, "+ ").await, format!("+ {}", BASE64.encode("Password:")));
    client.command(&password, "+OK 2 messages").await;
    let mut client = upgrade(&f, connect(&f).await).await;
    client.command(&format!("AUTH LOGIN {user}"), "+ ").await;
    client.command(&BASE64.encode("wrong"), "-ERR [AUTH] Authentication failed").await;

    let mut client = upgrade(&f, connect(&f).await).await;
    client.command("AUTH CRAM-MD5", "-ERR").await;
    client.command("APOP alice 0123456789abcdef0123456789abcdef", "-ERR").await;
    client.command("PASS secret", "-ERR USER first").await;
}

#[tokio::test]
async fn failed_logins_are_refused_and_end_the_connection_after_three() {
    let f = with_two_messages().await;
    let mut client = upgrade(&f, connect(&f).await).await;
    for _ in 0..3 {
        client.command("USER alice@example.org", "+OK").await;
        client.command("PASS guess", "-ERR [AUTH] Authentication failed").await;
    }
    assert_eq!(client.line().await.unwrap(), "-ERR Too many failed logins, closing");
    assert!(client.line().await.is_none());
}

#[tokio::test]
async fn bad_input_gets_err_and_the_session_goes_on() {
    let f = with_two_messages().await;
    let mut client = alice(&f).await;
    assert_eq!(client.command(&format!("NOOP {}", "x".repeat(300)), "-ERR").await, "-ERR Line too long");
    client.command("XYZZY", "-ERR Unknown command").await;
    client.command("USER bob", "-ERR Not allowed in this state").await;
    // Nine refusals in all, one short of the limit.
    for number in ["-1", "0", "3", "99999999999999999999999999", ""] {
        client.command(&format!("RETR {number}"), "-ERR").await;
    }
    client.command("TOP 1", "-ERR").await;
    client.command("STAT", "+OK 2").await;

    // Ten refusals end the session.
    let mut client = alice(&f).await;
    for _ in 0..9 {
        client.command("DELE 7", "-ERR").await;
    }
    client.command("DELE 7", "-ERR").await;
    assert_eq!(client.line().await.unwrap(), "-ERR Too many errors, closing");
    assert!(client.line().await.is_none());
    assert_eq!(f.mailstore.inbox("alice@example.org").await.len(), 2);
}

#[tokio::test]
async fn commands_pipelined_behind_stls_are_dropped() {
    let f = with_two_messages().await;
    let mut client = connect(&f).await;
    client.send(b"STLS\r\nCAPA\r\n").await;
    assert!(client.line().await.unwrap().starts_with("+OK"));
    let name = ServerName::try_from(HOSTNAME.to_string()).unwrap();
    let tls = f.tls_connector().connect(name, client.0.into_stream()).await.expect("TLS handshake");
    let mut client = Pop3(Client::new(tls));
    // The CAPA sent in the clear is never answered: the first answer inside TLS is USER's.
    client.command("USER alice@example.org", "+OK").await;
}
