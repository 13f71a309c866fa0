//! STORE and EXPUNGE with their UID forms: flags added, removed and replaced, reported or
//! silent; \Deleted messages removed with the sequence numbers renumbered as RFC 9051 says;
//! nothing changes in a read-only selection.

mod common;

use common::Fixture;

const MESSAGE: &[u8] = b"From: bob@example.org\r\nSubject: hi\r\n\r\nHello.\r\n";

async fn with_messages(count: usize) -> Fixture {
    let f = Fixture::start().await;
    for _ in 0..count {
        f.mailstore.deliver("alice@example.org", MESSAGE).await;
    }
    f
}

#[tokio::test]
async fn flags_are_added_removed_and_replaced() {
    let f = with_messages(3).await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("s SELECT INBOX").await.expect_ok();
    let added = client.command("a STORE 1 +FLAGS (\\Flagged $Important)").await.expect_ok();
    // The keyword is new to the mailbox: FLAGS and PERMANENTFLAGS name it first.
    assert_eq!(
        added,
        [
            "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important)",
            "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important \\*)] Flags that stay",
            "* 1 FETCH (FLAGS (\\Flagged \\Recent $Important))"
        ]
    );
    let silent = client.command("b STORE 1:2 +FLAGS.SILENT (\\Seen)").await.expect_ok();
    assert!(silent.is_empty(), "{silent:?}");
    let removed = client.command("c STORE 1 -FLAGS (\\Flagged)").await.expect_ok();
    assert_eq!(removed, ["* 1 FETCH (FLAGS (\\Seen \\Recent $Important))"]);
    let replaced = client.command("d STORE 3 FLAGS (\\Draft)").await.expect_ok();
    assert_eq!(replaced, ["* 3 FETCH (FLAGS (\\Draft \\Recent))"]);
    let by_uid = client.command("e UID STORE 3 +FLAGS (\\Answered)").await.expect_ok();
    assert_eq!(by_uid, ["* 3 FETCH (UID 3 FLAGS (\\Answered \\Draft \\Recent))"]);
    // Unchanged messages of the set are reported too.
    let again = client.command("f STORE 1:2 +FLAGS (\\Seen)").await.expect_ok();
    assert_eq!(again, ["* 1 FETCH (FLAGS (\\Seen \\Recent $Important))", "* 2 FETCH (FLAGS (\\Seen \\Recent))"]);
    let read_back = client.command("g FETCH 1:3 FLAGS").await.expect_ok();
    assert_eq!(
        read_back,
        [
            "* 1 FETCH (FLAGS (\\Seen \\Recent $Important))",
            "* 2 FETCH (FLAGS (\\Seen \\Recent))",
            "* 3 FETCH (FLAGS (\\Answered \\Draft \\Recent))"
        ]
    );
    for line in ["h STORE 1 +FLAGS (\\Recent)", "h STORE 1 +FLAGS (\\Unheard)", "h STORE 9 +FLAGS (\\Seen)"] {
        let refused = client.command(line).await;
        assert!(refused.status().starts_with("BAD"), "{line}: {refused:?}");
    }
}

#[tokio::test]
async fn expunge_removes_deleted_messages_and_renumbers() {
    let f = with_messages(5).await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("s SELECT INBOX").await.expect_ok();
    client.command("a STORE 1,3 +FLAGS.SILENT (\\Deleted)").await.expect_ok();
    let expunged = client.command("b EXPUNGE").await.expect_ok();
    assert_eq!(expunged, ["* 1 EXPUNGE", "* 2 EXPUNGE"], "message 3 is number 2 once 1 is gone");
    let left = client.command("c FETCH 1:* UID").await.expect_ok();
    assert_eq!(left, ["* 1 FETCH (UID 2)", "* 2 FETCH (UID 4)", "* 3 FETCH (UID 5)"]);

    // UID EXPUNGE removes only the \Deleted messages it names.
    client.command("d STORE 1:3 +FLAGS.SILENT (\\Deleted)").await.expect_ok();
    let expunged = client.command("e UID EXPUNGE 4").await.expect_ok();
    assert_eq!(expunged, ["* 2 EXPUNGE"]);
    let left = client.command("f UID FETCH 1:* FLAGS").await.expect_ok();
    assert_eq!(left, ["* 1 FETCH (UID 2 FLAGS (\\Deleted \\Recent))", "* 2 FETCH (UID 5 FLAGS (\\Deleted \\Recent))"]);
    let status = client.command("g STATUS INBOX (MESSAGES)").await.expect_ok();
    assert_eq!(status, ["* STATUS \"INBOX\" (MESSAGES 2)"]);
}

#[tokio::test]
async fn a_read_only_selection_changes_nothing() {
    let f = with_messages(1).await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("e EXAMINE INBOX").await.expect_ok();
    for line in ["a STORE 1 +FLAGS (\\Deleted)", "b EXPUNGE", "c UID EXPUNGE 1"] {
        let refused = client.command(line).await;
        assert!(refused.status().starts_with("NO [READ-ONLY]"), "{line}: {refused:?}");
    }
    let flags = client.command("d FETCH 1 FLAGS").await.expect_ok();
    assert_eq!(flags, ["* 1 FETCH (FLAGS (\\Recent))"]);
}
