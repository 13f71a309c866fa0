//! \Recent (RFC 3501 §2.3.2): a message is recent in the first session that selects its
//! mailbox read-write, and in no other; EXAMINE and STATUS see it recent without taking it;
//! SEARCH RECENT, NEW and OLD follow; a message arriving during a session is recent in the
//! session that takes it first, also in IDLE; IMAP4rev2 sessions never see \Recent nor take it.

mod common;

use common::Fixture;

const MESSAGE: &[u8] = b"From: bob@example.org\r\nSubject: hello\r\n\r\nHi.\r\n";

/// Waits until `client` has been told of `count` messages; returns what it was told.
async fn told_exists<S>(client: &mut common::Client<S>, count: usize) -> Vec<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut told = Vec::new();
    for _ in 0..100 {
        told.extend(client.command("n NOOP").await.expect_ok());
        if told.contains(&format!("* {count} EXISTS")) {
            return told;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("never told of {count} messages: {told:?}");
}

#[tokio::test]
async fn the_first_read_write_session_takes_the_new_messages() {
    let f = Fixture::start().await;
    f.mailstore.deliver("alice@example.org", MESSAGE).await;
    f.mailstore.deliver("alice@example.org", MESSAGE).await;
    let mut looker = f.logged_in("alice@example.org").await;
    assert_eq!(looker.command("s STATUS INBOX (RECENT)").await.expect_ok(), ["* STATUS \"INBOX\" (RECENT 2)"]);
    let examined = looker.command("e EXAMINE INBOX").await.expect_ok();
    assert!(examined.contains(&"* 2 RECENT".to_string()), "EXAMINE sees them recent: {examined:?}");

    let mut first = f.logged_in("alice@example.org").await;
    let selected = first.command("s SELECT INBOX").await.expect_ok();
    assert!(selected.contains(&"* 2 RECENT".to_string()), "{selected:?}");
    let flags = first.command("f FETCH 1:* (FLAGS)").await.expect_ok();
    assert_eq!(flags, ["* 1 FETCH (FLAGS (\\Recent))", "* 2 FETCH (FLAGS (\\Recent))"]);
    first.command("t STORE 1 +FLAGS (\\Seen)").await.expect_ok();
    assert_eq!(first.command("a SEARCH RECENT").await.expect_ok(), ["* SEARCH 1 2"]);
    assert_eq!(first.command("b SEARCH NEW").await.expect_ok(), ["* SEARCH 2"]);
    assert_eq!(first.command("c SEARCH OLD").await.expect_ok(), ["* SEARCH"]);

    let mut second = f.logged_in("alice@example.org").await;
    let selected = second.command("s SELECT INBOX").await.expect_ok();
    assert!(selected.contains(&"* 0 RECENT".to_string()), "taken by the first session: {selected:?}");
    let flags = second.command("f FETCH 1:* (FLAGS)").await.expect_ok();
    assert_eq!(flags, ["* 1 FETCH (FLAGS (\\Seen))", "* 2 FETCH (FLAGS ())"]);
    assert_eq!(second.command("a SEARCH OLD").await.expect_ok(), ["* SEARCH 1 2"]);
    let status = looker.command("s STATUS INBOX (RECENT)").await.expect_ok();
    assert!(status.contains(&"* STATUS \"INBOX\" (RECENT 0)".to_string()), "{status:?}");

    // A message that arrives now is recent in the session that takes it first.
    f.mailstore.deliver("alice@example.org", MESSAGE).await;
    told_exists(&mut first, 3).await;
    let fetched = first.command("f FETCH 3 (FLAGS)").await.expect_ok();
    assert_eq!(fetched, ["* 3 RECENT", "* 3 FETCH (FLAGS (\\Recent))"]);
    told_exists(&mut second, 3).await;
    assert_eq!(second.command("f FETCH 3 (FLAGS)").await.expect_ok(), ["* 3 FETCH (FLAGS ())"]);
    // EXAMINE takes nothing: to that session every message no session had taken when it
    // looked is recent, and so is what arrived since.
    told_exists(&mut looker, 3).await;
    let examined = looker.command("f FETCH 1:* (FLAGS)").await.expect_ok();
    assert_eq!(
        examined,
        ["* 1 FETCH (FLAGS (\\Seen \\Recent))", "* 2 FETCH (FLAGS (\\Recent))", "* 3 FETCH (FLAGS (\\Recent))"]
    );
}

#[tokio::test]
async fn a_message_arriving_during_idle_is_taken_and_counted() {
    let f = Fixture::start().await;
    let mut client = f.logged_in("alice@example.org").await;
    let selected = client.command("s SELECT INBOX").await.expect_ok();
    assert!(selected.contains(&"* 0 RECENT".to_string()), "{selected:?}");
    client.send(b"i IDLE\r\n").await;
    assert_eq!(client.line().await.as_deref(), Some("+ idling"));
    f.mailstore.deliver("alice@example.org", MESSAGE).await;
    assert_eq!(client.line().await.as_deref(), Some("* 1 EXISTS"));
    assert_eq!(client.line().await.as_deref(), Some("* 1 RECENT"));
    client.send(b"DONE\r\n").await;
    client.responses("i").await.expect_ok();
    assert_eq!(client.command("f FETCH 1 (FLAGS)").await.expect_ok(), ["* 1 FETCH (FLAGS (\\Recent))"]);
}

#[tokio::test]
async fn imap4rev2_sessions_neither_see_nor_take_recent() {
    let f = Fixture::start().await;
    f.mailstore.deliver("alice@example.org", MESSAGE).await;
    let mut rev2 = f.logged_in("alice@example.org").await;
    rev2.command("e ENABLE IMAP4rev2").await.expect_ok();
    let selected = rev2.command("s SELECT INBOX").await.expect_ok();
    assert!(!selected.iter().any(|line| line.contains("RECENT")), "{selected:?}");
    assert_eq!(rev2.command("f FETCH 1 (FLAGS)").await.expect_ok(), ["* 1 FETCH (FLAGS ())"]);

    let mut rev1 = f.logged_in("alice@example.org").await;
    let selected = rev1.command("s SELECT INBOX").await.expect_ok();
    assert!(selected.contains(&"* 1 RECENT".to_string()), "still there to take: {selected:?}");
}
