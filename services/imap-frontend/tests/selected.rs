//! Selecting and leaving a mailbox: SELECT and EXAMINE with what they report, CLOSE (which
//! removes \Deleted messages of a read-write selection), UNSELECT, and commands of the selected
//! state refused while nothing is selected.

mod common;

use common::{Fixture, PASSWORD};
use kubemail_proto::mailstore::mail_store_client::MailStoreClient;
use kubemail_proto::mailstore::store_flags_request::Operation;
use kubemail_proto::mailstore::{
    AuthenticateRequest, Flags, SelectMailboxRequest, StoreFlagsRequest, SystemFlag, UidRange,
};

const MESSAGE: &[u8] = b"From: bob@example.org\r\nSubject: hi\r\n\r\nHello.\r\n";

/// Marks the message `uid` of alice's INBOX \Deleted (and \Seen), through the mailstore API.
async fn mark_deleted(f: &Fixture, uid: u32) {
    let mut client = MailStoreClient::new(f.mailstore.channel.clone());
    let login = AuthenticateRequest { username: "alice@example.org".into(), password: PASSWORD.into() };
    let account_id = client.authenticate(login).await.unwrap().into_inner().account_id;
    let inbox = client
        .select_mailbox(SelectMailboxRequest { account_id, name: "INBOX".into(), ..Default::default() })
        .await
        .unwrap();
    let flags = Flags { system: SystemFlag::Deleted as u32 | SystemFlag::Seen as u32, keywords: Vec::new() };
    let request = StoreFlagsRequest {
        account_id,
        mailbox_id: inbox.into_inner().mailbox.unwrap().id,
        uids: vec![UidRange { first: uid, last: uid }],
        operation: Operation::Add as i32,
        flags: Some(flags),
        unchanged_since: 0,
        held: Vec::new(),
    };
    client.store_flags(request).await.unwrap();
}

async fn messages_in_inbox(
    client: &mut common::Client<impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>,
) -> String {
    let status = client.command("m STATUS INBOX (MESSAGES)").await.expect_ok();
    status[0].clone()
}

#[tokio::test]
async fn select_reports_the_mailbox_and_examine_is_read_only() {
    let f = Fixture::start().await;
    for _ in 0..3 {
        f.mailstore.deliver("alice@example.org", MESSAGE).await;
    }
    mark_deleted(&f, 1).await;
    let mut client = f.logged_in("alice@example.org").await;
    let selected = client.command("s SELECT INBOX").await;
    assert!(selected.tagged.starts_with("s OK [READ-WRITE]"), "{selected:?}");
    let lines = selected.untagged;
    assert_eq!(lines[0], "* 3 EXISTS");
    assert_eq!(lines[1], "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)");
    assert_eq!(lines[2], "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags that stay");
    assert!(lines[3].starts_with("* OK [UIDVALIDITY "), "{lines:?}");
    assert_eq!(lines[4], "* OK [UIDNEXT 4] Predicted next UID");
    assert!(lines.contains(&"* 3 RECENT".to_string()), "the first to select takes them: {lines:?}");
    assert!(lines.contains(&"* OK [UNSEEN 2] First unseen".to_string()), "message 1 was seen: {lines:?}");

    let examined = client.command("e EXAMINE INBOX").await;
    assert!(examined.tagged.starts_with("e OK [READ-ONLY]"), "{examined:?}");
    assert_eq!(examined.untagged[0], "* OK [CLOSED] Previous mailbox closed", "{examined:?}");
    assert!(examined.untagged.contains(&"* OK [PERMANENTFLAGS ()] Flags that stay".to_string()), "{examined:?}");
    // Leaving a read-only selection removes nothing.
    client.command("c CLOSE").await.expect_ok();
    assert_eq!(messages_in_inbox(&mut client).await, "* STATUS \"INBOX\" (MESSAGES 3)");
}

#[tokio::test]
async fn close_removes_deleted_messages_and_unselect_does_not() {
    let f = Fixture::start().await;
    for _ in 0..3 {
        f.mailstore.deliver("alice@example.org", MESSAGE).await;
    }
    mark_deleted(&f, 2).await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("s SELECT INBOX").await.expect_ok();
    client.command("u UNSELECT").await.expect_ok();
    assert_eq!(messages_in_inbox(&mut client).await, "* STATUS \"INBOX\" (MESSAGES 3)");
    client.command("s SELECT INBOX").await.expect_ok();
    let closed = client.command("c CLOSE").await.expect_ok();
    assert!(closed.is_empty(), "no EXPUNGE responses from CLOSE: {closed:?}");
    assert_eq!(messages_in_inbox(&mut client).await, "* STATUS \"INBOX\" (MESSAGES 2)");
    for line in ["c CLOSE", "u UNSELECT", "k CHECK", "f FETCH 1 FLAGS", "x EXPUNGE"] {
        let refused = client.command(line).await;
        assert!(refused.status().starts_with("BAD"), "{line} with nothing selected: {refused:?}");
    }
}

#[tokio::test]
async fn a_failed_select_leaves_nothing_selected() {
    let f = Fixture::start().await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("s SELECT INBOX").await.expect_ok();
    let refused = client.command("s SELECT Missing").await;
    assert_eq!(refused.untagged, ["* OK [CLOSED] Previous mailbox closed"]);
    assert!(refused.status().starts_with("NO [NONEXISTENT]"), "{refused:?}");
    assert!(client.command("k CHECK").await.status().starts_with("BAD"), "nothing selected any more");
}

#[tokio::test]
async fn an_imap4rev2_client_gets_the_rev2_select_responses() {
    let f = Fixture::start().await;
    let mut client = f.logged_in("alice@example.org").await;
    assert_eq!(client.command("e ENABLE IMAP4rev2").await.expect_ok(), ["* ENABLED IMAP4rev2"]);
    let selected = client.command("s SELECT Drafts").await.expect_ok();
    assert!(selected.contains(&"* LIST () \"/\" \"Drafts\"".to_string()), "{selected:?}");
    assert!(!selected.iter().any(|line| line.contains("RECENT") || line.contains("UNSEEN")), "{selected:?}");
}

#[tokio::test]
async fn a_kept_snapshot_is_used_only_while_nothing_changed() {
    let f = Fixture::start().await;
    for _ in 0..3 {
        f.mailstore.deliver("alice@example.org", MESSAGE).await;
    }
    let mut client = f.logged_in("alice@example.org").await;
    let selected = |lines: &[String]| -> Vec<String> {
        lines.iter().filter(|line| line.contains("EXISTS") || line.contains("UIDNEXT")).cloned().collect()
    };
    let first = client.command("a SELECT INBOX").await.expect_ok();
    client.command("a2 STORE 3 +FLAGS.SILENT ($Old)").await.expect_ok();
    let flags = client.command("b FETCH 1:* (UID FLAGS)").await.expect_ok();
    client.command("c UNSELECT").await.expect_ok();
    let again = client.command("d SELECT INBOX").await.expect_ok();
    assert_eq!(selected(&again), selected(&first), "nothing changed: the same mailbox");
    // The same flags, but for \Recent, which the first selection took with it.
    let without_recent: Vec<String> = flags
        .iter()
        .map(|line| line.replace(" \\Recent", "").replace("\\Recent ", "").replace("\\Recent", ""))
        .collect();
    assert_eq!(client.command("e FETCH 1:* (UID FLAGS)").await.expect_ok(), without_recent);
    client.command("f UNSELECT").await.expect_ok();

    // Changes from elsewhere while this client has nothing selected: a delivery, a flag, an
    // expunge. The next SELECT shows all of them, not the snapshot kept before.
    f.mailstore.deliver("alice@example.org", MESSAGE).await;
    mark_deleted(&f, 2).await;
    let mut other = f.logged_in("alice@example.org").await;
    other.command("s SELECT INBOX").await.expect_ok();
    other.command("x EXPUNGE").await.expect_ok();
    other.command("y STORE 1 +FLAGS (\\Flagged $Todo)").await.expect_ok();
    let changed = client.command("g SELECT INBOX").await.expect_ok();
    assert!(changed.contains(&"* 3 EXISTS".to_string()), "{changed:?}");
    assert!(
        changed.contains(&"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Todo $Old)".to_string()),
        "every keyword in use, in the order of the first message with it: {changed:?}"
    );
    assert!(changed.contains(&"* OK [UIDNEXT 5] Predicted next UID".to_string()), "{changed:?}");
    let flags = client.command("h FETCH 1:* (UID FLAGS)").await.expect_ok();
    assert_eq!(
        flags,
        ["* 1 FETCH (UID 1 FLAGS (\\Flagged $Todo))", "* 2 FETCH (UID 3 FLAGS ($Old))", "* 3 FETCH (UID 4 FLAGS ())"]
    );
}
