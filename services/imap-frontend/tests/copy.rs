//! COPY, MOVE and APPEND with their answers: the new UIDs (COPYUID, APPENDUID), the moved
//! messages leaving the selected mailbox, TRYCREATE for a missing mailbox and OVERQUOTA for a
//! full account. MULTIAPPEND stores all its messages or none; CATENATE builds a message from
//! text and parts of stored ones, named by URL (with URL-PARTIAL ranges).

mod common;

use common::Fixture;

const MESSAGE: &[u8] = b"From: bob@example.org\r\nSubject: hi\r\n\r\nHello.\r\n";

#[tokio::test]
async fn copy_and_move_report_where_the_messages_went() {
    let f = Fixture::start().await;
    for _ in 0..4 {
        f.mailstore.deliver("alice@example.org", MESSAGE).await;
    }
    let mut client = f.logged_in("alice@example.org").await;
    client.command("c CREATE Archive").await.expect_ok();
    let validity = client.command("v STATUS Archive (UIDVALIDITY)").await.expect_ok();
    let validity = validity[0].trim_end_matches(')').rsplit(' ').next().unwrap().to_string();
    client.command("s SELECT INBOX").await.expect_ok();

    let copied = client.command("a COPY 1:2 Archive").await;
    assert_eq!(copied.tagged, format!("a OK [COPYUID {validity} 1:2 1:2] COPY completed"));
    let moved = client.command("b UID MOVE 3:4 Archive").await;
    assert_eq!(
        moved.untagged,
        [format!("* OK [COPYUID {validity} 3:4 3:4] Moved"), "* 3 EXPUNGE".into(), "* 3 EXPUNGE".into()]
    );
    moved.expect_ok();
    let left = client.command("c FETCH 1:* UID").await.expect_ok();
    assert_eq!(left, ["* 1 FETCH (UID 1)", "* 2 FETCH (UID 2)"]);
    let archived = client.command("d STATUS Archive (MESSAGES)").await.expect_ok();
    assert_eq!(archived, ["* STATUS \"Archive\" (MESSAGES 4)"]);

    let missing = client.command("e COPY 1 Nowhere").await;
    assert!(missing.status().starts_with("NO [TRYCREATE]"), "{missing:?}");
    let nothing = client.command("f UID COPY 99 Archive").await;
    assert!(nothing.status().starts_with("OK"), "no such UID, nothing copied: {nothing:?}");
    client.command("g EXAMINE INBOX").await.expect_ok();
    let refused = client.command("h MOVE 1 Archive").await;
    assert!(refused.status().starts_with("NO [READ-ONLY]"), "{refused:?}");
}

#[tokio::test]
async fn append_stores_the_message_with_its_flags_and_date() {
    let f = Fixture::start().await;
    let mut client = f.logged_in("alice@example.org").await;
    let validity = client.command("v STATUS Drafts (UIDVALIDITY)").await.expect_ok();
    let validity = validity[0].trim_end_matches(')').rsplit(' ').next().unwrap().to_string();
    let length = MESSAGE.len();
    client
        .send(format!("a APPEND Drafts (\\Draft $Todo) \"05-Mar-2024 10:20:30 +0100\" {{{length}}}\r\n").as_bytes())
        .await;
    assert_eq!(client.line().await.unwrap(), "+ Ready for literal data");
    client.send(MESSAGE).await;
    client.send(b"\r\n").await;
    let appended = client.responses("a").await;
    assert_eq!(appended.tagged, format!("a OK [APPENDUID {validity} 1] APPEND completed"));

    // LITERAL+ needs no go-ahead.
    let second =
        client.command(&format!("b APPEND Drafts {{{length}+}}\r\n{}", String::from_utf8_lossy(MESSAGE))).await;
    assert_eq!(second.tagged, format!("b OK [APPENDUID {validity} 2] APPEND completed"));

    client.command("s SELECT Drafts").await.expect_ok();
    let stored = client.command("f FETCH 1 (FLAGS INTERNALDATE BODY.PEEK[])").await.expect_ok();
    let expected_body = String::from_utf8_lossy(MESSAGE);
    assert_eq!(
        stored,
        [format!(
            "* 1 FETCH (FLAGS (\\Draft \\Recent $Todo) INTERNALDATE \"05-Mar-2024 09:20:30 +0000\" BODY[] {{{length}}}\r\n{expected_body})"
        )]
    );
    let missing = client.command(&format!("c APPEND Nowhere {{{length}+}}\r\n{expected_body}")).await;
    assert!(missing.status().starts_with("NO [TRYCREATE]"), "{missing:?}");
}

#[tokio::test]
async fn append_over_quota_is_refused_with_overquota() {
    let f = Fixture::start().await;
    // bob's quota is 2,000 octets.
    let mut client = f.logged_in("bob@example.org").await;
    let big = "x".repeat(2500);
    let refused = client.command(&format!("a APPEND INBOX {{{}+}}\r\n{big}", big.len())).await;
    assert!(refused.status().starts_with("NO [OVERQUOTA]"), "{refused:?}");
    let fits = client.command(&format!("b APPEND INBOX {{{}+}}\r\n{}", 100, "y".repeat(100))).await;
    assert!(fits.status().starts_with("OK [APPENDUID"), "{fits:?}");
}

#[tokio::test]
async fn multiappend_stores_every_message_or_none() {
    let f = Fixture::start().await;
    let mut client = f.logged_in("bob@example.org").await;
    let validity = client.command("v STATUS INBOX (UIDVALIDITY)").await.expect_ok();
    let validity = validity[0].trim_end_matches(')').rsplit(' ').next().unwrap().to_string();
    let capabilities = client.command("c CAPABILITY").await.expect_ok().join(" ");
    assert!(capabilities.contains(" MULTIAPPEND"), "{capabilities}");
    // Three messages, the second with synchronizing literals: each waits for the go-ahead.
    let (one, two, three) = ("Subject: one\r\n\r\n1\r\n", "Subject: two\r\n\r\n2\r\n", "Subject: three\r\n\r\n3\r\n");
    client
        .send(
            format!(
                "a APPEND INBOX (\\Seen) {{{}+}}\r\n{one} (\\Flagged) \"05-Mar-2024 10:20:30 +0100\" {{{}}}\r\n",
                one.len(),
                two.len()
            )
            .as_bytes(),
        )
        .await;
    assert_eq!(client.line().await.unwrap(), "+ Ready for literal data");
    client.send(format!("{two} ~{{{}+}}\r\n{three}\r\n", three.len()).as_bytes()).await;
    let appended = client.responses("a").await;
    assert_eq!(appended.tagged, format!("a OK [APPENDUID {validity} 1:3] APPEND completed"));
    client.command("s SELECT INBOX").await.expect_ok();
    let stored =
        client.command("f FETCH 1:* (FLAGS INTERNALDATE BODY.PEEK[HEADER.FIELDS (SUBJECT)])").await.expect_ok();
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert!(stored[0].contains("FLAGS (\\Seen \\Recent)") && stored[0].contains("Subject: one"), "{stored:?}");
    assert!(
        stored[1].contains("FLAGS (\\Flagged \\Recent)") && stored[1].contains("05-Mar-2024 09:20:30 +0000"),
        "{stored:?}"
    );
    assert!(stored[2].contains("Subject: three"), "{stored:?}");

    // bob's quota is 2,000 octets: 1,500 and 1,500 fit one at a time, not together.
    let half = "x".repeat(1500);
    let refused = client.command(&format!("b APPEND INBOX {{1500+}}\r\n{half} {{1500+}}\r\n{half}")).await;
    assert!(refused.status().starts_with("NO [OVERQUOTA]"), "{refused:?}");
    let refused = client.command("c APPEND INBOX {3+}\r\nabc (\\Bogus) {3+}\r\nabc").await;
    assert!(refused.status().starts_with("BAD"), "a bad flag on the second message: {refused:?}");
    let count = client.command("d STATUS INBOX (MESSAGES)").await.expect_ok();
    assert_eq!(count, ["* STATUS \"INBOX\" (MESSAGES 3)"], "neither refused MULTIAPPEND stored anything");
}

#[tokio::test]
async fn catenate_builds_a_message_from_text_and_stored_parts() {
    let f = Fixture::start().await;
    let original = "From: bob@example.org\r\nSubject: report\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b1--\r\n";
    f.mailstore.deliver("alice@example.org", original.as_bytes()).await;
    let mut client = f.logged_in("alice@example.org").await;
    let capabilities = client.command("c CAPABILITY").await.expect_ok().join(" ");
    assert!(capabilities.contains(" CATENATE") && capabilities.contains(" URL-PARTIAL"), "{capabilities}");
    let validity = client.command("v STATUS INBOX (UIDVALIDITY)").await.expect_ok();
    let validity = validity[0].trim_end_matches(')').rsplit(' ').next().unwrap().to_string();
    let base = format!("/INBOX;UIDVALIDITY={validity}/;UID=1");

    // A draft that keeps the header and the attachment and replaces the text (RFC 4469 A.1).
    let (opening, text, closing) =
        ("\r\n--b1\r\n", "Content-Type: text/plain\r\n\r\nNew text.\r\n--b1\r\n", "\r\n--b1--\r\n");
    let command = format!(
        "a APPEND Drafts (\\Draft) CATENATE (URL \"{base}/;SECTION=HEADER\" TEXT {{{}+}}\r\n{opening} TEXT {{{}+}}\r\n{text} URL \"{base}/;SECTION=2.MIME\" URL \"{base}/;SECTION=2\" TEXT {{{}+}}\r\n{closing})",
        opening.len(),
        text.len(),
        closing.len()
    );
    let appended = client.command(&command).await;
    assert!(appended.status().starts_with("OK [APPENDUID"), "{appended:?}");
    client.command("s SELECT Drafts").await.expect_ok();
    let stored = client.command("f FETCH 1 BODY.PEEK[]").await.expect_ok();
    let expected = "From: bob@example.org\r\nSubject: report\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nNew text.\r\n--b1\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--b1--\r\n";
    assert_eq!(stored, [format!("* 1 FETCH (BODY[] {{{}}}\r\n{expected})", expected.len())]);

    // URL-PARTIAL: the first 21 octets of the original.
    let partial = client.command(&format!("p APPEND Drafts CATENATE (URL \"{base}/;PARTIAL=0.21\")")).await;
    assert!(partial.status().starts_with("OK [APPENDUID"), "{partial:?}");
    let fetched = client.command("q FETCH 2 BODY.PEEK[]").await.expect_ok();
    assert!(fetched.iter().any(|line| line.ends_with("{21}\r\nFrom: bob@example.org)")), "{fetched:?}");

    for url in
        ["/INBOX;UIDVALIDITY=1/;UID=1", "/INBOX/;UID=99", "/Nowhere/;UID=1", "imap://alice@example.org/INBOX/;UID=1"]
    {
        let refused = client.command(&format!("r APPEND Drafts CATENATE (URL \"{url}\")")).await;
        assert!(refused.status().starts_with(&format!("NO [BADURL {url}]")), "{url}: {refused:?}");
    }
    assert_eq!(client.command("t STATUS Drafts (MESSAGES)").await.expect_ok(), ["* STATUS \"Drafts\" (MESSAGES 2)"]);
}
