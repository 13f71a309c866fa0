//! METADATA (RFC 5464): entries set on a mailbox and on the server, read back with DEPTH and
//! MAXSIZE, removed with NIL; bad names refused with BAD, a missing mailbox with NONEXISTENT,
//! a value too large with `[METADATA MAXSIZE]`; a NOTIFY session hears of changes made by
//! another.

mod common;

use common::{Fixture, Settings, test_settings};

#[tokio::test]
async fn entries_are_set_read_and_removed() {
    let f = Fixture::start().await;
    let mut client = f.logged_in("alice@example.org").await;
    let capabilities = client.command("c CAPABILITY").await.expect_ok().join(" ");
    assert!(capabilities.contains(" METADATA"), "{capabilities}");
    client
        .command("a SETMETADATA INBOX (/private/comment \"My own comment\" /shared/vendor/x/colour {5+}\r\nbl\"ue)")
        .await
        .expect_ok();
    client.command("b SETMETADATA \"\" (/private/vendor/x/theme \"dark\")").await.expect_ok();

    let got = client.command("g GETMETADATA INBOX (/private/comment /shared/comment)").await.expect_ok();
    assert_eq!(got, ["* METADATA \"INBOX\" (/private/comment \"My own comment\" /shared/comment NIL)"]);
    let deep = client.command("h GETMETADATA (DEPTH infinity) INBOX /shared").await.expect_ok();
    assert_eq!(deep, ["* METADATA \"INBOX\" (/shared NIL /shared/vendor/x/colour {5}\r\nbl\"ue)"]);
    let server = client.command("i GETMETADATA \"\" /private/vendor/x/theme").await.expect_ok();
    assert_eq!(server, ["* METADATA \"\" (/private/vendor/x/theme \"dark\")"]);
    let limited = client.command("j GETMETADATA (MAXSIZE 5) INBOX (/private/comment /shared/vendor/x/colour)").await;
    assert_eq!(limited.untagged, ["* METADATA \"INBOX\" (/shared/vendor/x/colour {5}\r\nbl\"ue)"]);
    assert!(limited.status().starts_with("OK [METADATA LONGENTRIES 14]"), "{limited:?}");

    client.command("k SETMETADATA INBOX (/private/comment NIL)").await.expect_ok();
    let removed = client.command("l GETMETADATA INBOX /private/comment").await.expect_ok();
    assert_eq!(removed, ["* METADATA \"INBOX\" (/private/comment NIL)"]);
}

#[tokio::test]
async fn what_cannot_be_stored_is_refused_with_its_code() {
    // Literals large enough for a value over the limit.
    let f = Fixture::with_settings(Settings { max_literal: 1024 * 1024, ..test_settings() }).await;
    let mut client = f.logged_in("alice@example.org").await;
    let bad = client.command("a SETMETADATA INBOX (/comment \"x\")").await;
    assert!(bad.status().starts_with("BAD"), "{bad:?}");
    let missing = client.command("b SETMETADATA Nowhere (/private/comment \"x\")").await;
    assert!(missing.status().starts_with("NO [NONEXISTENT]"), "{missing:?}");
    let big = "x".repeat(64 * 1024 + 1);
    let large = client.command(&format!("c SETMETADATA INBOX (/private/comment {{{}+}}\r\n{big})", big.len())).await;
    assert!(large.status().starts_with("NO [METADATA MAXSIZE 65536]"), "{large:?}");
}

#[tokio::test]
async fn a_notify_session_hears_of_metadata_changes() {
    let f = Fixture::start().await;
    let mut watcher = f.logged_in("alice@example.org").await;
    watcher.command("n NOTIFY SET (personal (MailboxMetadataChange ServerMetadataChange))").await.expect_ok();
    let mut other = f.logged_in("alice@example.org").await;
    other.command("a SETMETADATA Sent (/private/comment \"outgoing\")").await.expect_ok();
    assert_eq!(watcher.line().await.unwrap(), "* METADATA \"Sent\" /private/comment");
    other.command("b SETMETADATA \"\" (/private/vendor/x/theme NIL)").await.expect_ok();
    assert_eq!(watcher.line().await.unwrap(), "* METADATA \"\" /private/vendor/x/theme");
}
