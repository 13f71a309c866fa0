//! SEARCH and UID SEARCH over flags, keywords, sizes, dates, sets and content — addresses,
//! decoded subjects, any header, bodies and text — combined with NOT, OR and lists; ESEARCH
//! for IMAP4rev2 clients; a charset we cannot read and a message number that does not exist
//! refused. Every occurrence of a repeated field and the name of an address group are searched.
//! OLDER and YOUNGER (WITHIN) count seconds back from now. SEARCH RETURN (SAVE) keeps the result
//! as `$` for FETCH, STORE, COPY, SEARCH and UID EXPUNGE (SEARCHRES). SEARCH RETURN (UPDATE)
//! keeps a result up to date with ADDTO and REMOVEFROM until CANCELUPDATE (CONTEXT=SEARCH).

mod common;

use common::Fixture;

const MESSAGES: [&str; 3] = [
    "From: Bob Example <bob@example.org>\r\nTo: alice@example.org\r\nSubject: Quarterly report\r\nDate: Mon, 02 Mar 2026 10:00:00 +0100\r\n\r\nThe numbers are inside.\r\n",
    "From: carol@example.org\r\nTo: alice@example.org\r\nSubject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\nDate: Thu, 26 Nov 2026 09:00:00 +0000\r\n\r\nHello from Carol.\r\n",
    "From: bob@example.org\r\nTo: alice@example.org\r\nCc: dave@example.org\r\nSubject: lunch\r\nX-Priority: 1\r\nDate: Thu, 26 Nov 2026 11:00:00 +0000\r\n\r\nPizza?\r\n",
];

async fn searching() -> (Fixture, common::Client<tokio_rustls::client::TlsStream<tokio::io::DuplexStream>>) {
    let f = Fixture::start().await;
    for message in MESSAGES {
        f.mailstore.deliver("alice@example.org", message.as_bytes()).await;
    }
    let mut client = f.logged_in("alice@example.org").await;
    client.command("s SELECT INBOX").await.expect_ok();
    client.command("a STORE 1 +FLAGS.SILENT (\\Seen)").await.expect_ok();
    client.command("b STORE 3 +FLAGS.SILENT (\\Flagged $Todo)").await.expect_ok();
    (f, client)
}

#[tokio::test]
async fn every_kind_of_key_finds_its_messages() {
    let (_f, mut client) = searching().await;
    for (criteria, found) in [
        ("ALL", "1 2 3"),
        ("UNSEEN", "2 3"),
        ("NOT SEEN", "2 3"),
        ("FLAGGED KEYWORD $Todo", "3"),
        ("UNKEYWORD $Todo", "1 2"),
        ("FROM bob", "1 3"),
        ("FROM \"Bob Example\"", "1"),
        ("CC dave", "3"),
        ("TO alice", "1 2 3"),
        ("SUBJECT report", "1"),
        ("BODY numbers", "1"),
        ("BODY NUMBERS", "1"),
        ("TEXT priority", "3"),
        ("HEADER X-Priority \"\"", "3"),
        ("OR FROM carol SUBJECT lunch", "2 3"),
        ("(FROM bob) (UNSEEN)", "3"),
        ("LARGER 10 SMALLER 100000", "1 2 3"),
        ("SENTBEFORE 1-Apr-2026", "1"),
        ("SENTON 26-Nov-2026", "2 3"),
        ("SINCE 1-Jan-2020", "1 2 3"),
        ("BEFORE 1-Jan-2020", ""),
        ("2,3 FROM bob", "3"),
        ("UID 2:*", "2 3"),
        // The session was the first to select the INBOX: every message is recent in it.
        ("RECENT", "1 2 3"),
        ("NEW", "2 3"),
        ("OLD", ""),
    ] {
        let result = client.command(&format!("t SEARCH {criteria}")).await.expect_ok();
        let expected = if found.is_empty() { "* SEARCH".to_string() } else { format!("* SEARCH {found}") };
        assert_eq!(result, [expected], "SEARCH {criteria}");
    }
    // A decoded subject, searched in UTF-8.
    let result = client.command("u SEARCH CHARSET UTF-8 SUBJECT {7+}\r\nGrüße").await.expect_ok();
    assert_eq!(result, ["* SEARCH 2"]);
    // Compared with i;unicode-casemap (I18NLEVEL=1): ß is SS, and case does not matter.
    let result = client.command("v SEARCH CHARSET UTF-8 SUBJECT {7+}\r\nGRÜSSE").await.expect_ok();
    assert_eq!(result, ["* SEARCH 2"]);
    let result = client.command("u UID SEARCH FROM bob").await.expect_ok();
    assert_eq!(result, ["* SEARCH 1 3"]);
}

#[tokio::test]
async fn bad_searches_are_refused() {
    let (_f, mut client) = searching().await;
    let refused = client.command("a SEARCH CHARSET KOI8-R ALL").await;
    assert!(refused.status().starts_with("NO [BADCHARSET (UTF-8 US-ASCII)]"), "{refused:?}");
    let refused = client.command("b SEARCH 9").await;
    assert!(refused.status().starts_with("BAD"), "{refused:?}");
    let refused = client.command("c SEARCH FROBNICATE").await;
    assert!(refused.status().starts_with("BAD"), "{refused:?}");
    let nothing = client.command("d UID SEARCH UID 99").await.expect_ok();
    assert_eq!(nothing, ["* SEARCH"], "a UID that does not exist is not an error");
}

#[tokio::test]
async fn an_imap4rev2_client_gets_esearch() {
    let (_f, mut client) = searching().await;
    client.command("e ENABLE IMAP4rev2").await.expect_ok();
    assert_eq!(client.command("x SEARCH FROM bob").await.expect_ok(), ["* ESEARCH (TAG \"x\") ALL 1,3"]);
    assert_eq!(client.command("y UID SEARCH ALL").await.expect_ok(), ["* ESEARCH (TAG \"y\") UID ALL 1:3"]);
    assert_eq!(client.command("z SEARCH BEFORE 1-Jan-2000").await.expect_ok(), ["* ESEARCH (TAG \"z\")"]);
}

#[tokio::test]
async fn search_return_asks_for_min_max_count_or_all() {
    let (_f, mut client) = searching().await;
    // RETURN gets ESEARCH from an IMAP4rev1 client too (RFC 4731).
    let answer = client.command("a SEARCH RETURN (MIN MAX COUNT) FROM bob").await.expect_ok();
    assert_eq!(answer, ["* ESEARCH (TAG \"a\") MIN 1 MAX 3 COUNT 2"]);
    let answer = client.command("b UID SEARCH RETURN () UNSEEN").await.expect_ok();
    assert_eq!(answer, ["* ESEARCH (TAG \"b\") UID ALL 2:3"], "RETURN () is ALL");
    let answer = client.command("c SEARCH RETURN (COUNT MIN) BEFORE 1-Jan-2000").await.expect_ok();
    assert_eq!(answer, ["* ESEARCH (TAG \"c\") COUNT 0"], "no MIN of nothing");
    let answer = client.command("d SEARCH RETURN (ALL) CHARSET UTF-8 SUBJECT \"grüße\"").await.expect_ok();
    assert_eq!(answer, ["* ESEARCH (TAG \"d\") ALL 2"]);
    for line in ["f SEARCH RETURN (BIGGEST) ALL", "g SEARCH RETURN (MIN)"] {
        let refused = client.command(line).await;
        assert!(refused.status().starts_with("BAD"), "{line}: {refused:?}");
    }
    let plain = client.command("h SEARCH FLAGGED").await.expect_ok();
    assert_eq!(plain, ["* SEARCH 3"], "without RETURN an IMAP4rev1 client gets SEARCH");
}

#[tokio::test]
async fn a_repeated_header_and_a_group_name_are_searched_too() {
    let f = Fixture::start().await;
    let message = "From: bob@example.org\r\nTo: Project Team: alice@example.org, carol@example.org;\r\nX-Label: first\r\nX-Label: second\r\nSubject: plan\r\n\r\nHi.\r\n";
    f.mailstore.deliver("alice@example.org", message.as_bytes()).await;
    f.mailstore.deliver("alice@example.org", MESSAGES[0].as_bytes()).await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("s SELECT INBOX").await.expect_ok();
    // Either occurrence of a field that appears twice (RFC 9051 §6.4.4).
    assert_eq!(client.command("a SEARCH HEADER X-Label first").await.expect_ok(), ["* SEARCH 1"]);
    assert_eq!(client.command("b SEARCH HEADER X-Label second").await.expect_ok(), ["* SEARCH 1"]);
    // A group's display name, and the addresses inside it (RFC 5322 §3.4).
    assert_eq!(client.command("c SEARCH TO \"Project Team\"").await.expect_ok(), ["* SEARCH 1"]);
    assert_eq!(client.command("d SEARCH TO carol").await.expect_ok(), ["* SEARCH 1"]);
}

#[tokio::test]
async fn older_and_younger_count_seconds_back_from_now() {
    let f = Fixture::start().await;
    f.mailstore.deliver("alice@example.org", MESSAGES[0].as_bytes()).await;
    f.mailstore.deliver("alice@example.org", MESSAGES[1].as_bytes()).await;
    let mut client = f.logged_in("alice@example.org").await;
    // A message APPENDed with an INTERNALDATE a year back (RFC 5032).
    let message = "From: erin@example.org\r\nSubject: old\r\n\r\nFrom last year.\r\n";
    let append = format!("a APPEND INBOX \"01-Jan-2025 10:00:00 +0000\" {{{}+}}\r\n{message}", message.len());
    client.command(&append).await.expect_ok();
    client.command("s SELECT INBOX").await.expect_ok();
    assert_eq!(client.command("b SEARCH YOUNGER 3600").await.expect_ok(), ["* SEARCH 1 2"]);
    assert_eq!(client.command("c SEARCH OLDER 3600").await.expect_ok(), ["* SEARCH 3"]);
    assert_eq!(client.command("d SEARCH OLDER 100000000").await.expect_ok(), ["* SEARCH"]);
    let refused = client.command("e SEARCH OLDER 0").await;
    assert!(refused.status().starts_with("BAD"), "zero seconds is not a WITHIN interval: {refused:?}");
}

#[tokio::test]
async fn a_saved_result_is_the_message_set_of_later_commands() {
    let (_f, mut client) = searching().await;
    let capabilities = client.command("c CAPABILITY").await.expect_ok().join(" ");
    assert!(capabilities.contains(" SEARCHRES"), "{capabilities}");
    // SAVE alone answers nothing; `$` is then messages 1 and 3 (from bob).
    assert!(client.command("a SEARCH RETURN (SAVE) FROM bob").await.expect_ok().is_empty());
    assert_eq!(client.command("b FETCH $ (UID)").await.expect_ok(), ["* 1 FETCH (UID 1)", "* 3 FETCH (UID 3)"]);
    assert_eq!(client.command("c SEARCH $ UNSEEN").await.expect_ok(), ["* SEARCH 3"]);
    assert_eq!(client.command("d UID SEARCH NOT UID $").await.expect_ok(), ["* SEARCH 2"]);
    let stored = client.command("e STORE $ +FLAGS (\\Answered)").await.expect_ok();
    assert_eq!(stored.len(), 2, "{stored:?}");
    assert_eq!(client.command("f SEARCH ANSWERED").await.expect_ok(), ["* SEARCH 1 3"]);
    client.command("g COPY $ Trash").await.expect_ok();
    assert_eq!(client.command("h STATUS Trash (MESSAGES)").await.expect_ok(), ["* STATUS \"Trash\" (MESSAGES 2)"]);

    // SAVE with MIN keeps only the first, and the answer is still given.
    let answer = client.command("i SEARCH RETURN (SAVE MIN) FROM bob").await.expect_ok();
    assert_eq!(answer, ["* ESEARCH (TAG \"i\") MIN 1"]);
    assert_eq!(client.command("j UID FETCH $ (UID)").await.expect_ok(), ["* 1 FETCH (UID 1)"]);
    // A failed search leaves `$` empty: FETCH $ fetches nothing, and is no error.
    assert!(client.command("k SEARCH RETURN (SAVE) 99").await.status().starts_with("BAD"));
    assert!(client.command("l FETCH $ (UID)").await.expect_ok().is_empty());

    // SORT saves too; UID EXPUNGE $ removes the saved messages; SELECT forgets `$`.
    client.command("m SORT RETURN (SAVE) (SUBJECT) UTF-8 SUBJECT lunch").await.expect_ok();
    client.command("n STORE $ +FLAGS.SILENT (\\Deleted)").await.expect_ok();
    let expunged = client.command("o UID EXPUNGE $").await.expect_ok();
    assert_eq!(expunged, ["* 3 EXPUNGE"]);
    client.command("p SEARCH RETURN (SAVE) ALL").await.expect_ok();
    client.command("q SELECT INBOX").await.expect_ok();
    assert!(client.command("r FETCH $ (UID)").await.expect_ok().is_empty(), "a new selection has no saved result");
}

#[tokio::test]
async fn an_update_search_tells_how_its_result_changes() {
    let (f, mut client) = searching().await;
    let capabilities = client.command("c CAPABILITY").await.expect_ok().join(" ");
    assert!(capabilities.contains(" CONTEXT=SEARCH"), "{capabilities}");
    // Unseen: messages 2 and 3 (UIDs 2 and 3).
    let answer = client.command("B01 UID SEARCH RETURN (UPDATE COUNT) UNSEEN").await.expect_ok();
    assert_eq!(answer, ["* ESEARCH (TAG \"B01\") UID COUNT 2"]);
    let reused = client.command("B01 SEARCH RETURN (UPDATE) ALL").await;
    assert!(reused.status().starts_with("BAD"), "tag reuse: {reused:?}");
    let numbers = client.command("B02 SEARCH RETURN (UPDATE) FLAGGED").await.expect_ok();
    assert_eq!(numbers, ["* ESEARCH (TAG \"B02\")"], "UPDATE alone answers with the tag only");

    // This session's STORE: message 2 is seen now, and flagged.
    let stored = client.command("a STORE 2 +FLAGS (\\Seen \\Flagged)").await;
    assert_eq!(stored.tagged, "a OK STORE completed");
    let after: Vec<&str> =
        stored.untagged.iter().map(String::as_str).filter(|line| line.starts_with("* ESEARCH")).collect();
    let expected = ["* ESEARCH (TAG \"B01\") UID REMOVEFROM (0 2)", "* ESEARCH (TAG \"B02\") ADDTO (0 2)"];
    let told = if after.is_empty() { client.command("n NOOP").await.expect_ok() } else { stored.untagged.clone() };
    for line in expected {
        assert!(told.iter().any(|told| told == line), "{line} missing from {told:?}");
    }

    // A delivery: unseen, so it joins B01.
    f.mailstore.deliver("alice@example.org", MESSAGES[0].as_bytes()).await;
    let mut told = Vec::new();
    for _ in 0..50 {
        told.extend(client.command("n NOOP").await.expect_ok());
        if told.iter().any(|line| line.starts_with("* ESEARCH (TAG \"B01\") UID ADDTO")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let exists = told.iter().position(|line| line == "* 4 EXISTS").expect("EXISTS");
    let added = told.iter().position(|line| line == "* ESEARCH (TAG \"B01\") UID ADDTO (0 4)").expect("ADDTO");
    assert!(exists < added, "EXISTS before ADDTO: {told:?}");

    // An expunge: REMOVEFROM first, with the number the message had.
    client.command("b STORE 3 +FLAGS.SILENT (\\Deleted)").await.expect_ok();
    client.command("n NOOP").await.expect_ok();
    let expunged = client.command("e EXPUNGE").await.expect_ok();
    let removed = expunged.iter().position(|line| line == "* ESEARCH (TAG \"B01\") UID REMOVEFROM (0 3)");
    let expunge = expunged.iter().position(|line| line == "* 3 EXPUNGE");
    assert!(removed.is_some() && removed < expunge, "{expunged:?}");

    client.command("x CANCELUPDATE \"B01\" \"B02\"").await.expect_ok();
    client.command("y STORE 1 -FLAGS.SILENT (\\Seen)").await.expect_ok();
    let quiet = client.command("z NOOP").await.expect_ok();
    assert!(!quiet.iter().any(|line| line.starts_with("* ESEARCH")), "no updates after CANCELUPDATE: {quiet:?}");
    assert!(client.command("w CANCELUPDATE B01").await.status().starts_with("BAD"));
}
