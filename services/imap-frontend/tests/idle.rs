//! Changes made elsewhere reach a session: a delivery, another session's STORE and EXPUNGE, told
//! at once during IDLE and with the next command otherwise — but EXPUNGE never while a FETCH,
//! STORE or SEARCH is answered, and nothing after the BYE of LOGOUT. New messages come with
//! their flags, and a new keyword with FLAGS told again. IDLE keeps NAT boxes awake
//! and ends on DONE or at shutdown.

mod common;

use std::time::Duration;

use common::{Fixture, test_settings};

const MESSAGE: &[u8] = b"From: bob@example.org\r\nSubject: hi\r\n\r\nHello.\r\n";

#[tokio::test]
async fn idle_hears_deliveries_flag_changes_and_expunges_from_elsewhere() {
    let f = Fixture::start().await;
    let mut watcher = f.logged_in("alice@example.org").await;
    watcher.command("s SELECT INBOX").await.expect_ok();
    watcher.send(b"i IDLE\r\n").await;
    assert_eq!(watcher.line().await.unwrap(), "+ idling");

    f.mailstore.deliver("alice@example.org", MESSAGE).await;
    assert_eq!(watcher.line().await.unwrap(), "* 1 EXISTS");
    assert_eq!(watcher.line().await.unwrap(), "* 1 RECENT", "the first session to hear of it takes it");

    let mut other = f.logged_in("alice@example.org").await;
    other.command("s SELECT INBOX").await.expect_ok();
    other.command("a STORE 1 +FLAGS (\\Flagged)").await.expect_ok();
    assert_eq!(watcher.line().await.unwrap(), "* 1 FETCH (FLAGS (\\Flagged \\Recent))");
    other.command("b STORE 1 +FLAGS.SILENT (\\Deleted)").await.expect_ok();
    assert_eq!(watcher.line().await.unwrap(), "* 1 FETCH (FLAGS (\\Flagged \\Deleted \\Recent))");
    other.command("c EXPUNGE").await.expect_ok();
    assert_eq!(watcher.line().await.unwrap(), "* 1 EXPUNGE");

    watcher.send(b"DONE\r\n").await;
    let done = watcher.responses("i").await;
    assert!(done.untagged.is_empty() && done.tagged == "i OK IDLE terminated", "{done:?}");
    let count = watcher.command("n NOOP").await.expect_ok();
    assert!(count.is_empty(), "nothing left to tell: {count:?}");
}

#[tokio::test]
async fn changes_come_with_the_next_command_but_expunge_waits_for_one_that_allows_it() {
    let f = Fixture::start().await;
    for _ in 0..3 {
        f.mailstore.deliver("alice@example.org", MESSAGE).await;
    }
    let mut watcher = f.logged_in("alice@example.org").await;
    watcher.command("s SELECT INBOX").await.expect_ok();
    let mut other = f.logged_in("alice@example.org").await;
    other.command("s SELECT INBOX").await.expect_ok();
    other.command("a STORE 2 +FLAGS.SILENT (\\Deleted)").await.expect_ok();
    other.command("b EXPUNGE").await.expect_ok();
    f.mailstore.deliver("alice@example.org", MESSAGE).await;
    // Give the events a moment to arrive; they are read without waiting.
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A FETCH by sequence number may not renumber the messages under the client: message 2
    // keeps its number, and as its data is gone the FETCH says so, answering the others.
    let fetched = watcher.command("f FETCH 1:3 UID").await;
    assert_eq!(fetched.status(), "OK [EXPUNGEISSUED] FETCH completed; some messages were expunged in the meantime");
    let lines = fetched.untagged;
    assert!(lines.contains(&"* 4 EXISTS".to_string()), "{lines:?}");
    assert!(!lines.iter().any(|line| line.ends_with("EXPUNGE")), "{lines:?}");
    assert!(lines.contains(&"* 3 FETCH (UID 3)".to_string()), "{lines:?}");
    let noop = watcher.command("n NOOP").await.expect_ok();
    assert_eq!(noop, ["* 2 EXPUNGE"]);
    let left = watcher.command("u UID FETCH 1:* UID").await.expect_ok();
    assert_eq!(left, ["* 1 FETCH (UID 1)", "* 2 FETCH (UID 3)", "* 3 FETCH (UID 4)"]);
}

#[tokio::test]
async fn new_messages_are_fetched_and_searched_with_the_flags_they_were_stored_with() {
    let f = Fixture::start().await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("s SELECT INBOX").await.expect_ok();
    // Its own APPEND, with flags.
    client.command("a APPEND INBOX (\\Seen $Work) {8+}\r\nHello.\r\n").await.expect_ok();
    // A COPY from another session, of a message flagged elsewhere.
    let mut other = f.logged_in("alice@example.org").await;
    other.command("c CREATE Archive").await.expect_ok();
    other.command("d APPEND Archive (\\Flagged) {8+}\r\nHello.\r\n").await.expect_ok();
    other.command("e SELECT Archive").await.expect_ok();
    other.command("f COPY 1 INBOX").await.expect_ok();
    // And a delivery, which has none.
    f.mailstore.deliver("alice@example.org", MESSAGE).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let fetched = client.command("g FETCH 1:* (UID FLAGS)").await.expect_ok();
    let flags: Vec<&String> = fetched.iter().filter(|line| line.contains("FETCH")).collect();
    assert_eq!(
        flags,
        [
            "* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent $Work))",
            "* 2 FETCH (UID 2 FLAGS (\\Flagged \\Recent))",
            "* 3 FETCH (UID 3 FLAGS (\\Recent))"
        ],
        "{fetched:?}"
    );
    assert_eq!(client.command("h SEARCH KEYWORD $Work").await.expect_ok(), ["* SEARCH 1"]);
    assert_eq!(client.command("i SEARCH UNSEEN").await.expect_ok(), ["* SEARCH 2 3"]);
    assert_eq!(client.command("j SEARCH FLAGGED").await.expect_ok(), ["* SEARCH 2"]);
}

#[tokio::test]
async fn a_new_keyword_is_told_in_flags_before_a_fetch_names_it() {
    let f = Fixture::start().await;
    f.mailstore.deliver("alice@example.org", MESSAGE).await;
    let mut client = f.logged_in("alice@example.org").await;
    let selected = client.command("s SELECT INBOX").await.expect_ok();
    assert!(selected.contains(&"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)".to_string()), "{selected:?}");
    let flags = "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Brand)";
    let permanent = "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Brand \\*)] Flags that stay";

    // Set elsewhere: FLAGS first, then the FETCH that names it (RFC 9051 §7.3.5).
    let mut other = f.logged_in("alice@example.org").await;
    other.command("s SELECT INBOX").await.expect_ok();
    other.command("a STORE 1 +FLAGS ($Brand)").await.expect_ok();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let told = client.command("n NOOP").await.expect_ok();
    assert_eq!(told, [flags, permanent, "* 1 FETCH (FLAGS (\\Recent $Brand))"]);
    // Told once.
    other.command("b STORE 1 -FLAGS ($Brand)").await.expect_ok();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(client.command("m NOOP").await.expect_ok(), ["* 1 FETCH (FLAGS (\\Recent))"]);

    // Set by the session's own STORE, and arriving with an APPEND.
    let stored = client.command("t STORE 1 +FLAGS ($Todo)").await.expect_ok();
    assert!(stored[0].starts_with("* FLAGS (") && stored[0].ends_with("$Brand $Todo)"), "{stored:?}");
    assert_eq!(stored.last().unwrap(), "* 1 FETCH (FLAGS (\\Recent $Todo))");
    // The new message's flags come with the event that announces it: FLAGS is told as soon as
    // the session hears of the message, before the FETCH.
    let appended = client.command("a APPEND INBOX ($Work) {8+}\r\nHello.\r\n").await.expect_ok();
    let fetched = client.command("f FETCH 2 FLAGS").await.expect_ok();
    let told = appended
        .iter()
        .chain(&fetched)
        .position(|line| line.starts_with("* FLAGS (") && line.ends_with("$Todo $Work)"));
    assert!(told.is_some_and(|at| at < appended.len() + fetched.len() - 1), "{appended:?} {fetched:?}");
    assert_eq!(fetched.last().unwrap(), "* 2 FETCH (FLAGS (\\Recent $Work))");
}

#[tokio::test]
async fn nothing_but_the_tagged_ok_follows_the_bye_of_logout() {
    let f = Fixture::start().await;
    f.mailstore.deliver("alice@example.org", MESSAGE).await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("s SELECT INBOX").await.expect_ok();
    // Changes the session has not told yet when the client leaves.
    f.mailstore.deliver("alice@example.org", MESSAGE).await;
    let mut other = f.logged_in("alice@example.org").await;
    other.command("s SELECT INBOX").await.expect_ok();
    other.command("a STORE 1 +FLAGS (\\Flagged)").await.expect_ok();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let bye = client.command("l LOGOUT").await;
    assert_eq!(bye.untagged, ["* BYE Logging out"], "RFC 9051 §6.1.3: BYE, then the tagged OK");
    assert_eq!(bye.tagged, "l OK LOGOUT completed");
    assert!(client.rest_until_closed().await.is_empty(), "closed after LOGOUT");
}

#[tokio::test]
async fn idle_keeps_nat_boxes_awake_and_ends_at_shutdown() {
    let settings = common::Settings { idle_keepalive: Duration::from_millis(100), ..test_settings() };
    let f = Fixture::with_settings(settings).await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("s SELECT INBOX").await.expect_ok();
    client.send(b"i IDLE\r\n").await;
    assert_eq!(client.line().await.unwrap(), "+ idling");
    assert_eq!(client.line().await.unwrap(), "* OK Still here");
    assert_eq!(client.line().await.unwrap(), "* OK Still here");
    f.services.shutdown.trigger();
    let rest = client.rest_until_closed().await;
    assert_eq!(rest.last().map(String::as_str), Some("* BYE Server shutting down, please reconnect"), "{rest:?}");
}

#[tokio::test]
async fn idle_needs_a_selected_mailbox() {
    let f = Fixture::start().await;
    let mut client = f.logged_in("alice@example.org").await;
    let refused = client.command("i IDLE").await;
    assert!(refused.status().starts_with("BAD"), "{refused:?}");
}
