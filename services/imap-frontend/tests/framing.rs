//! How commands are read: pipelining, synchronizing and non-synchronizing literals, and input
//! that is malformed, too long or too big. Every case gets its answer and the session (or, where
//! it cannot go on safely, the connection) ends cleanly.

mod common;

use std::time::Duration;

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
