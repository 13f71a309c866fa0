//! How commands are read: pipelining, synchronizing and non-synchronizing literals, and input
//! that is malformed, too long or too big. Every case gets its answer and the session (or, where
//! it cannot go on safely, the connection) ends cleanly: names that are not UTF-8 and commands
//! in the wrong state included.

mod common;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{Fixture, MAX_LITERAL, test_settings};

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let f = Fixture::start().await;
    let (mut client, _) = f.connect().await;
    client.send(b"a NOOP\r\nb CAPABILITY\r\nc ID NIL\r\nd NOOP\r\n").await;
    for tag in ["a", "b", "c", "d"] {
        client.responses(tag).await.expect_ok();
    }
}

#[tokio::test]
async fn non_synchronizing_literals_need_no_go_ahead() {
    let f = Fixture::start().await;
    let mut client = f.logged_in("alice@example.org").await;
    let done = client.command("a ID (\"name\" {4+}\r\nmutt)").await;
    assert!(!done.untagged.iter().any(|line| line.starts_with('+')), "no continuation request: {done:?}");
    done.expect_ok();
    // Both kinds in one pipelined burst after login.
    client.send(b"b ID ({4+}\r\nname {6}\r\n").await;
    assert_eq!(client.line().await.unwrap(), "+ Ready for literal data");
    client.send(b"client)\r\nc NOOP\r\n").await;
    client.responses("b").await.expect_ok();
    client.responses("c").await.expect_ok();
}

#[tokio::test]
async fn malformed_commands_get_bad_and_the_session_goes_on() {
    let f = Fixture::start().await;
    let (mut client, _) = f.connect().await;
    for (line, tagged) in [
        ("a FROBNICATE", "a BAD"),
        ("b LOGIN", "b BAD"),
        ("c NOOP extra words", "c BAD"),
        ("d SELECT \"unterminated", "d BAD"),
    ] {
        let responses = client.command(line).await;
        assert!(responses.tagged.starts_with(tagged), "{line}: {responses:?}");
    }
    // No readable tag: the answer is untagged.
    client.send(b"\r\n").await;
    assert!(client.line().await.unwrap().starts_with("* BAD"));
    client.send(b"(((\r\n").await;
    assert!(client.line().await.unwrap().starts_with("* BAD"));
    client.command("e NOOP").await.expect_ok();
}

#[tokio::test]
async fn a_client_sending_garbage_is_disconnected() {
    let f = Fixture::start().await;
    let (mut client, _) = f.connect().await;
    for _ in 0..9 {
        client.send(b"garbage\r\n").await;
        assert!(client.line().await.unwrap().starts_with("* BAD"));
    }
    client.send_until_closed(b"garbage\r\n").await;
    let rest = client.rest_until_closed().await;
    assert_eq!(rest.last().map(String::as_str), Some("* BYE Too many invalid commands"), "{rest:?}");
}

#[tokio::test]
async fn a_line_longer_than_any_command_is_refused_in_bounded_memory() {
    let f = Fixture::start().await;
    let (mut client, _) = f.connect().await;
    // Ten times what a session keeps of one message: read and dropped, not stored.
    let long = format!("a ID (\"name\" \"{}\")\r\n", "x".repeat(10 * MAX_LITERAL as usize));
    client.send(long.as_bytes()).await;
    let refused = client.responses("a").await;
    assert!(refused.tagged.starts_with("a BAD Command is too long"), "{refused:?}");
    client.command("b NOOP").await.expect_ok();
}

#[tokio::test]
async fn a_huge_synchronizing_literal_is_refused_before_it_is_sent() {
    let f = Fixture::start().await;
    let (mut client, _) = f.connect().await;
    let refused = client.command("a LOGIN {1000000000}").await;
    assert!(refused.tagged.starts_with("a NO [TOOBIG]"), "{refused:?}");
    assert!(refused.untagged.is_empty(), "no go-ahead: {refused:?}");
    client.command("b NOOP").await.expect_ok();
}

#[tokio::test]
async fn a_huge_non_synchronizing_literal_closes_the_connection() {
    let f = Fixture::start().await;
    let (mut client, _) = f.connect().await;
    client.send_until_closed(b"a LOGIN {1000000000+}\r\nxxxxxxxx").await;
    let rest = client.rest_until_closed().await;
    assert!(rest[0].starts_with("a BAD [TOOBIG]"), "{rest:?}");
    assert!(rest[1].starts_with("* BYE"), "{rest:?}");
}

#[tokio::test]
async fn commands_pipelined_after_starttls_are_dropped() {
    let f = Fixture::start().await;
    let (mut client, _) = f.connect().await;
    // Sent in the clear behind STARTTLS: must not be run as if it came over TLS.
    client.send(b"a STARTTLS\r\nb LOGIN alice@example.org secret\r\n").await;
    client.responses("a").await.expect_ok();
    let mut client = f.upgrade(client).await;
    let listed = client.command("c CAPABILITY").await.expect_ok();
    assert!(listed[0].contains("AUTH=PLAIN"), "not logged in yet: {listed:?}");
    let refused = client.command("d SELECT INBOX").await;
    assert!(refused.tagged.starts_with("d BAD"), "the injected LOGIN did not run: {refused:?}");
}

#[tokio::test]
async fn a_silent_client_is_logged_out_and_shutdown_says_bye() {
    let settings = common::Settings { login_timeout: Duration::from_millis(200), ..test_settings() };
    let f = Fixture::with_settings(settings).await;
    let (mut client, _) = f.connect().await;
    assert_eq!(client.rest_until_closed().await, ["* BYE Autologout: idle for too long"]);

    let f = Fixture::start().await;
    let mut client = f.logged_in("alice@example.org").await;
    f.services.shutdown.trigger();
    assert_eq!(client.rest_until_closed().await, ["* BYE Server shutting down, please reconnect"]);
}

#[tokio::test]
async fn a_slow_drip_client_cannot_stretch_its_login_past_the_login_timeout() {
    let settings = common::Settings { login_timeout: Duration::from_millis(600), ..test_settings() };
    let f = Fixture::with_settings(settings).await;
    let (mut client, _) = f.connect().await;
    client.command("a CAPABILITY").await.expect_ok();
    // One octet every 100 ms for ten seconds: every read is well inside the timeout, the login
    // is not, and the server hangs up long before the client would stop.
    let started = std::time::Instant::now();
    let (mut from_server, mut to_server) = tokio::io::split(client.into_stream());
    let drip = tokio::spawn(async move {
        for _ in 0..100 {
            if to_server.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut said = String::new();
    from_server.read_to_string(&mut said).await.expect("read until closed");
    assert_eq!(said, "* BYE Autologout: idle for too long\r\n");
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());
    drip.abort();
}

#[tokio::test]
async fn names_that_are_not_utf8_are_refused_and_nothing_is_made() {
    let f = Fixture::start().await;
    let mut client = f.logged_in("alice@example.org").await;
    // Raw 8-bit octets are not modified UTF-7, nor UTF-8 once that is enabled; a literal can
    // carry them past imap-codec's string rules.
    for mode in ["modified UTF-7", "UTF-8"] {
        for name in [&b"\xff\xfe"[..], b"caf\xe9", b"ok/\xc3"] {
            let mut command = format!("c CREATE {{{}+}}\r\n", name.len()).into_bytes();
            command.extend_from_slice(name);
            command.extend_from_slice(b"\r\n");
            client.send(&command).await;
            let refused = client.responses("c").await;
            assert!(refused.tagged.starts_with("c BAD"), "{mode} {name:?}: {refused:?}");
        }
        let mut select = b"s SELECT {2+}\r\n\xff\xfe\r\n".to_vec();
        select.extend_from_slice(b"t STATUS {2+}\r\n\xc3\x28 (MESSAGES)\r\n");
        client.send(&select).await;
        assert!(client.responses("s").await.tagged.starts_with("s BAD"));
        assert!(client.responses("t").await.tagged.starts_with("t BAD"));
        client.command("e ENABLE UTF8=ACCEPT").await.expect_ok();
    }
    let listed = client.command("l LIST \"\" *").await.expect_ok();
    assert_eq!(listed.len(), 5, "only the five folders every account has: {listed:?}");
}

#[tokio::test]
async fn commands_in_the_wrong_state_are_refused_and_the_session_goes_on() {
    let f = Fixture::start().await;
    let (mut client, _) = f.connect().await;
    for line in ["a SELECT INBOX", "b APPEND INBOX {1+}\r\nx", "c FETCH 1 FLAGS", "d LOGOUTX", "e IDLE"] {
        let refused = client.command(line).await;
        assert!(refused.tagged.split(' ').nth(1) == Some("BAD"), "before login: {line}: {refused:?}");
    }
    client.command("t STARTTLS").await.expect_ok();
    let mut client = f.upgrade(client).await;
    client.command(&format!("l LOGIN alice@example.org {}", common::PASSWORD)).await.expect_ok();
    for line in [
        "a FETCH 1 FLAGS",
        "b STORE 1 +FLAGS (\\Seen)",
        "c EXPUNGE",
        "d IDLE",
        "e UID SEARCH ALL",
        "f CLOSE",
        "g LOGIN alice@example.org x",
        "h STARTTLS",
    ] {
        let refused = client.command(line).await;
        assert!(refused.tagged.split(' ').nth(1) == Some("BAD"), "not selected: {line}: {refused:?}");
    }
    // DONE outside IDLE is no command at all: no tag to answer with.
    client.send(b"DONE\r\n").await;
    let done = client.line().await.unwrap();
    assert!(done.starts_with("* BAD"), "{done}");
    client.command("z NOOP").await.expect_ok();
}
