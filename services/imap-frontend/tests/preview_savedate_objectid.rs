//! PREVIEW (RFC 8970), SAVEDATE (RFC 8514) and OBJECTID (RFC 8474): a short plain-text start
//! of each message, from its text or its HTML (also in the drafts' SNIPPET and PREVIEW (FUZZY)
//! forms); the date a message was saved into its mailbox,
//! anew when copied, and the SAVED* search keys; EMAILID kept by a copy and searched for,
//! THREADID NIL; MAILBOXID from SELECT, CREATE, STATUS and LIST-STATUS, kept across RENAME.

mod common;

use common::Fixture;

const TEXT: &str = "From: bob@example.org\r\nSubject: plans\r\n\r\nHello   there,\r\n\r\nsee you\ttomorrow.\r\n";
const HTML: &str =
    "From: carol@example.org\r\nSubject: news\r\nContent-Type: text/html\r\n\r\n<p>Big <b>news</b> today</p>\r\n";
const UMLAUT: &str = "From: dora@example.org\r\nSubject: hi\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nGr\u{fc}\u{df}e \"aus\" Wien\r\n";

/// The value in parentheses after `item` in `line`: `EMAILID (M12)` gives `M12`.
fn parenthesized<'a>(line: &'a str, item: &str) -> &'a str {
    let start =
        line.find(&format!("{item} (")).unwrap_or_else(|| panic!("{item} missing from {line}")) + item.len() + 2;
    &line[start..start + line[start..].find(')').unwrap()]
}

#[tokio::test]
async fn previews_are_the_start_of_the_text_in_plain_words() {
    let f = Fixture::start().await;
    for message in [TEXT, HTML, UMLAUT, "From: erin@example.org\r\n\r\n"] {
        f.mailstore.deliver("alice@example.org", message.as_bytes()).await;
    }
    let mut client = f.logged_in("alice@example.org").await;
    let capabilities = client.command("c CAPABILITY").await.expect_ok().join(" ");
    for capability in [" PREVIEW", " SAVEDATE", " OBJECTID"] {
        assert!(capabilities.contains(capability), "{capability} missing from {capabilities}");
    }
    client.command("s SELECT INBOX").await.expect_ok();
    let previews = client.command("f FETCH 1:4 (PREVIEW)").await.expect_ok();
    assert_eq!(
        previews,
        [
            "* 1 FETCH (PREVIEW \"Hello there, see you tomorrow.\")".to_string(),
            "* 2 FETCH (PREVIEW \"Big news today\")".to_string(),
            // Quotes and non-ASCII letters go in a literal.
            format!("* 3 FETCH (PREVIEW {{{}}}\r\nGr\u{fc}\u{df}e \"aus\" Wien)", "Grüße \"aus\" Wien".len()),
            "* 4 FETCH (PREVIEW NIL)".to_string(),
        ]
    );
    // LAZY is accepted; with other items, and as a UID FETCH.
    let lazy = client.command("g UID FETCH 1 (FLAGS PREVIEW (LAZY))").await.expect_ok();
    assert_eq!(lazy, ["* 1 FETCH (UID 1 FLAGS (\\Recent) PREVIEW \"Hello there, see you tomorrow.\")"]);
    let refused = client.command("h FETCH 1 (PREVIEW (EAGER))").await;
    assert!(refused.status().starts_with("BAD"), "{refused:?}");
    // The drafts' forms, as Dovecot's clients send them, are answered in kind.
    let drafts = client.command("i FETCH 2 (SNIPPET (LAZY=FUZZY) PREVIEW (FUZZY))").await.expect_ok();
    assert_eq!(drafts, ["* 2 FETCH (SNIPPET (FUZZY \"Big news today\") PREVIEW (FUZZY \"Big news today\"))"]);
    let capabilities = client.command("j CAPABILITY").await.expect_ok().join(" ");
    assert!(capabilities.contains(" SNIPPET=FUZZY") && capabilities.contains(" PREVIEW=FUZZY"), "{capabilities}");
}

#[tokio::test]
async fn a_copy_keeps_its_emailid_and_gets_a_save_date_of_its_own() {
    let f = Fixture::start().await;
    f.mailstore.deliver("alice@example.org", TEXT.as_bytes()).await;
    f.mailstore.deliver("alice@example.org", HTML.as_bytes()).await;
    let mut client = f.logged_in("alice@example.org").await;
    let selected = client.command("s SELECT INBOX").await.expect_ok();
    let inbox_id = selected.iter().find(|line| line.starts_with("* OK [MAILBOXID (")).expect("MAILBOXID on SELECT");
    let inbox_id = parenthesized(inbox_id, "MAILBOXID").to_string();

    let fetched = client.command("f FETCH 1:2 (INTERNALDATE SAVEDATE EMAILID THREADID)").await.expect_ok();
    let (first, second) = (&fetched[0], &fetched[1]);
    let email_id = parenthesized(first, "EMAILID").to_string();
    assert!(email_id.starts_with('M') && email_id.len() > 8, "{first}");
    assert_ne!(email_id, parenthesized(second, "EMAILID"), "two messages, two EMAILIDs");
    assert!(first.contains("THREADID NIL"), "{first}");
    // Delivered now: saved today, the day of its INTERNALDATE.
    let day = first.split('"').nth(1).unwrap().split(' ').next().unwrap().trim_start_matches(' ').to_string();
    assert!(first.contains(&format!("SAVEDATE \"{day}")), "{first}");

    let created = client.command("c CREATE Archive").await;
    let archive_id = parenthesized(&created.tagged, "MAILBOXID").to_string();
    assert_ne!(archive_id, inbox_id);
    client.command("k COPY 1 Archive").await.expect_ok();
    client.command("s SELECT Archive").await.expect_ok();
    let copied = client.command("f FETCH 1 (EMAILID SAVEDATE)").await.expect_ok();
    assert_eq!(parenthesized(&copied[0], "EMAILID"), email_id, "a copy is the same email");
    assert!(copied[0].contains("SAVEDATE \""), "{copied:?}");

    client.command("s SELECT INBOX").await.expect_ok();
    for (criteria, found) in [
        (format!("EMAILID {email_id}"), "1"),
        (format!("SAVEDON {day}"), "1 2"),
        (format!("SAVEDSINCE {day} NOT EMAILID {email_id}"), "2"),
        ("SAVEDBEFORE 1-Jan-2000".to_string(), ""),
        ("SAVEDATESUPPORTED".to_string(), "1 2"),
        ("THREADID T1".to_string(), ""),
        ("OR EMAILID Mnothing SUBJECT news".to_string(), "2"),
    ] {
        let result = client.command(&format!("t SEARCH {criteria}")).await.expect_ok();
        let expected = if found.is_empty() { "* SEARCH".to_string() } else { format!("* SEARCH {found}") };
        assert_eq!(result, [expected], "SEARCH {criteria}");
    }
    let sorted = client.command(&format!("o UID SORT (SUBJECT) UTF-8 SAVEDON {day}")).await.expect_ok();
    assert_eq!(sorted, ["* SORT 2 1"]);
    let refused = client.command("r SEARCH SAVEDON 40-Dec-2026").await;
    assert!(refused.status().starts_with("BAD"), "{refused:?}");

    // MAILBOXID from STATUS and LIST-STATUS, the same after RENAME.
    let status = client.command("m STATUS Archive (MESSAGES MAILBOXID)").await.expect_ok();
    assert_eq!(status, [format!("* STATUS \"Archive\" (MESSAGES 1 MAILBOXID ({archive_id}))")]);
    client.command("n RENAME Archive Old").await.expect_ok();
    let status = client.command("m STATUS Old (MAILBOXID)").await.expect_ok();
    assert_eq!(status, [format!("* STATUS \"Old\" (MAILBOXID ({archive_id}))")], "RENAME keeps the MAILBOXID");
    let listed = client.command("l LIST \"\" Old RETURN (STATUS (MAILBOXID))").await.expect_ok();
    assert_eq!(listed[1], format!("* STATUS \"Old\" (MAILBOXID ({archive_id}))"), "{listed:?}");
}
