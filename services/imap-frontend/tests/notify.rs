//! NOTIFY (RFC 5465): a session hears what it asked for without sending a command — new and
//! expunged messages and flag changes in the selected mailbox (with the FETCH items asked for),
//! STATUS for other mailboxes, LIST for mailboxes created, renamed or deleted and names
//! subscribed — and the same during IDLE. Unsupported events are refused with BADEVENT, and
//! NOTIFY NONE stops it all.

mod common;

use std::time::Duration;

use common::Fixture;

const MESSAGE: &[u8] = b"From: bob@example.org\r\nSubject: hi\r\n\r\nHello.\r\n";

const EVERYTHING: &str = "n NOTIFY SET (selected (MessageNew (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)]) MessageExpunge FlagChange)) (personal (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange))";

#[tokio::test]
async fn the_selected_mailbox_is_told_without_a_command() {
    let f = Fixture::start().await;
    let mut watcher = f.logged_in("alice@example.org").await;
    let capabilities = watcher.command("c CAPABILITY").await.expect_ok().join(" ");
    assert!(capabilities.contains(" NOTIFY"), "{capabilities}");
    watcher.command("s SELECT INBOX").await.expect_ok();
    watcher.command(EVERYTHING).await.expect_ok();

    f.mailstore.deliver("alice@example.org", MESSAGE).await;
    assert_eq!(watcher.line().await.unwrap(), "* 1 EXISTS");
    assert_eq!(watcher.line().await.unwrap(), "* 1 RECENT");
    assert_eq!(
        watcher.response().await.unwrap(),
        "* 1 FETCH (UID 1 FLAGS (\\Recent) BODY[HEADER.FIELDS (\"SUBJECT\")] {15}\r\nSubject: hi\r\n\r\n)"
    );

    let mut other = f.logged_in("alice@example.org").await;
    other.command("s SELECT INBOX").await.expect_ok();
    other.command("a STORE 1 +FLAGS (\\Flagged)").await.expect_ok();
    assert_eq!(watcher.line().await.unwrap(), "* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))", "with its UID (§5.1)");
    other.command("b STORE 1 +FLAGS.SILENT (\\Deleted)").await.expect_ok();
    watcher.line().await.unwrap();
    other.command("c EXPUNGE").await.expect_ok();
    assert_eq!(watcher.line().await.unwrap(), "* 1 EXPUNGE", "told at once with SELECTED");

    watcher.command("d NOTIFY NONE").await.expect_ok();
    f.mailstore.deliver("alice@example.org", MESSAGE).await;
    let quiet = tokio::time::timeout(Duration::from_millis(300), watcher.line()).await;
    assert!(quiet.is_err(), "nothing after NOTIFY NONE until a command: {quiet:?}");
    let told = watcher.command("e NOOP").await.expect_ok();
    assert!(told.contains(&"* 1 EXISTS".to_string()), "{told:?}");
}

#[tokio::test]
async fn selected_delayed_holds_expunges_for_a_command() {
    let f = Fixture::start().await;
    f.mailstore.deliver("alice@example.org", MESSAGE).await;
    f.mailstore.deliver("alice@example.org", MESSAGE).await;
    let mut watcher = f.logged_in("alice@example.org").await;
    watcher.command("s SELECT INBOX").await.expect_ok();
    watcher.command("n NOTIFY SET (selected-delayed (MessageNew MessageExpunge))").await.expect_ok();
    let mut other = f.logged_in("alice@example.org").await;
    other.command("s SELECT INBOX").await.expect_ok();
    other.command("a STORE 1 +FLAGS.SILENT (\\Deleted)").await.expect_ok();
    // Flag changes are told as they come, asked for or not: a FETCH is welcome at any time.
    assert_eq!(watcher.line().await.unwrap(), "* 1 FETCH (UID 1 FLAGS (\\Deleted \\Recent))");
    other.command("b EXPUNGE").await.expect_ok();
    f.mailstore.deliver("alice@example.org", MESSAGE).await;
    assert_eq!(watcher.line().await.unwrap(), "* 3 EXISTS", "a new message is told at once");
    let held = watcher.command("c NOOP").await.expect_ok();
    assert!(held.contains(&"* 1 EXPUNGE".to_string()), "the expunge waited for a command: {held:?}");
}

#[tokio::test]
async fn other_mailboxes_get_status_and_names_get_list() {
    let f = Fixture::start().await;
    let mut watcher = f.logged_in("alice@example.org").await;
    watcher.command("s SELECT INBOX").await.expect_ok();
    // STATUS first: one line for each watched mailbox but the selected one.
    let set = watcher
        .command("n NOTIFY SET STATUS (selected (MessageNew MessageExpunge)) (subtree Sent (MessageNew MessageExpunge FlagChange)) (personal (MailboxName SubscriptionChange))")
        .await
        .expect_ok();
    let validity = set.iter().find(|line| line.starts_with("* STATUS \"Sent\"")).expect("STATUS of Sent");
    let validity = validity.split("UIDVALIDITY ").nth(1).unwrap().split(' ').next().unwrap().to_string();
    assert!(set.iter().all(|line| line.starts_with("* STATUS \"Sent\"")), "only Sent is watched: {set:?}");

    let mut other = f.logged_in("alice@example.org").await;
    let message = String::from_utf8_lossy(MESSAGE);
    other.command(&format!("a APPEND Sent {{{}+}}\r\n{message}", MESSAGE.len())).await.expect_ok();
    assert_eq!(
        watcher.line().await.unwrap(),
        format!("* STATUS \"Sent\" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY {validity} UNSEEN 1)")
    );
    other.command("b SELECT Sent").await.expect_ok();
    other.command("c STORE 1 +FLAGS (\\Seen)").await.expect_ok();
    assert_eq!(watcher.line().await.unwrap(), format!("* STATUS \"Sent\" (UIDVALIDITY {validity} UNSEEN 0)"));
    // Drafts is not watched for messages.
    other.command(&format!("d APPEND Drafts {{{}+}}\r\n{message}", MESSAGE.len())).await.expect_ok();

    other.command("e CREATE Projects").await.expect_ok();
    assert_eq!(watcher.line().await.unwrap(), "* LIST (\\HasNoChildren) \"/\" \"Projects\"");
    other.command("f SUBSCRIBE Projects").await.expect_ok();
    assert_eq!(watcher.line().await.unwrap(), "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Projects\"");
    other.command("g RENAME Projects Work").await.expect_ok();
    assert_eq!(
        watcher.line().await.unwrap(),
        "* LIST (\\HasNoChildren \\Subscribed) \"/\" \"Work\" (\"OLDNAME\" (\"Projects\"))"
    );
    other.command("h DELETE Work").await.expect_ok();
    assert_eq!(watcher.line().await.unwrap(), "* LIST (\\NonExistent \\Subscribed) \"/\" \"Work\"");
    other.command("i UNSUBSCRIBE Work").await.expect_ok();
    assert_eq!(watcher.line().await.unwrap(), "* LIST (\\NonExistent) \"/\" \"Work\"");

    // During IDLE the same notifications come.
    watcher.send(b"j IDLE\r\n").await;
    assert_eq!(watcher.line().await.unwrap(), "+ idling");
    other.command(&format!("k APPEND Sent {{{}+}}\r\n{message}", MESSAGE.len())).await.expect_ok();
    assert_eq!(
        watcher.line().await.unwrap(),
        format!("* STATUS \"Sent\" (MESSAGES 2 UIDNEXT 3 UIDVALIDITY {validity} UNSEEN 1)")
    );
    watcher.send(b"DONE\r\n").await;
    watcher.responses("j").await;
}

#[tokio::test]
async fn what_notify_cannot_do_is_refused() {
    let f = Fixture::start().await;
    let mut client = f.logged_in("alice@example.org").await;
    let refused = client.command("a NOTIFY SET (personal (MessageNew MessageExpunge AnnotationChange))").await;
    assert!(
        refused
            .status()
            .starts_with("NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange MailboxMetadataChange ServerMetadataChange)]"),
        "{refused:?}"
    );
    for line in [
        "b NOTIFY SET (personal (MessageNew))",
        "c NOTIFY SET (selected (MailboxName))",
        "d NOTIFY SET (selected (MessageNew (BOGUS[) MessageExpunge))",
    ] {
        let refused = client.command(line).await;
        assert!(refused.status().starts_with("BAD"), "{line}: {refused:?}");
    }
    let (mut fresh, _) = f.connect().await;
    let refused = fresh.command("e NOTIFY NONE").await;
    assert!(refused.status().starts_with("BAD"), "NOTIFY needs a login: {refused:?}");
}

#[tokio::test]
async fn notify_before_select_waits_for_a_mailbox_to_watch() {
    let f = Fixture::start().await;
    let mut watcher = f.logged_in("alice@example.org").await;
    // SELECTED with no mailbox selected yet: other mailboxes are told, and notifications go on.
    watcher.command("n NOTIFY SET (selected (MessageNew MessageExpunge)) (personal (MailboxName))").await.expect_ok();
    let mut other = f.logged_in("alice@example.org").await;
    other.command("c CREATE Projects").await.expect_ok();
    assert_eq!(watcher.line().await.unwrap(), "* LIST (\\HasNoChildren) \"/\" \"Projects\"");
    watcher.command("s SELECT INBOX").await.expect_ok();
    f.mailstore.deliver("alice@example.org", MESSAGE).await;
    assert_eq!(watcher.line().await.unwrap(), "* 1 EXISTS", "the mailbox selected since is watched");
}
