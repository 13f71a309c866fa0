//! SORT and THREAD (RFC 5256) with SORT=DISPLAY (RFC 5957): every sort key, REVERSE, ties in
//! mailbox order, a search narrowing what is sorted, UID forms; THREAD REFERENCES following
//! References and In-Reply-To and joining by subject, ORDEREDSUBJECT; unknown charsets and
//! algorithms refused; THREAD=REFS without subject joining, by newest message; summaries served again after the mailbox changed. ESORT: SORT RETURN
//! answers ESEARCH in sort order, with MIN and MAX the first and last and PARTIAL pages.

mod common;

use common::Fixture;

/// Five messages: sent dates not in arrival order, one in another time zone (08:00 -0300 is
/// after 10:00 UTC), one without a Date (its arrival counts), a reply chain with one link
/// missing, and a forward that belongs to a thread by its subject only.
const MESSAGES: [(&str, &str); 5] = [
    (
        "10-Mar-2026 10:00:00 +0000",
        "From: Zed Last <zed@example.org>\r\nTo: Bob <bob@example.org>\r\nCc: carol@example.org\r\nSubject: Plans\r\nMessage-ID: <plans@example.org>\r\nDate: Tue, 03 Mar 2026 10:00:00 +0000\r\n\r\nLet us plan.\r\n",
    ),
    (
        "09-Mar-2026 10:00:00 +0000",
        "From: amy@example.org\r\nTo: zoe@example.org\r\nSubject: Re: Plans\r\nMessage-ID: <reply@example.org>\r\nIn-Reply-To: <plans@example.org>\r\nDate: Wed, 04 Mar 2026 10:00:00 +0000\r\n\r\nSounds good, and this body is the longest of all five of them by far.\r\n",
    ),
    (
        "12-Mar-2026 10:00:00 +0000",
        "From: Bob <bob@example.org>\r\nTo: amy@example.org\r\nSubject: [team] lunch\r\nMessage-ID: <lunch@example.org>\r\nDate: Tue, 03 Mar 2026 08:00:00 -0300\r\n\r\nPizza?\r\n",
    ),
    (
        "11-Mar-2026 10:00:00 +0000",
        "From: Mia <mia@example.org>\r\nTo: zed@example.org\r\nCc: amy@example.org\r\nSubject: Re: Plans\r\nMessage-ID: <second@example.org>\r\nReferences: <plans@example.org> <lost@example.org>\r\nDate: Thu, 05 Mar 2026 10:00:00 +0000\r\n\r\nMe too.\r\n",
    ),
    (
        "08-Mar-2026 10:00:00 +0000",
        "From: Carl <carl@example.org>\r\nTo: bob@example.org\r\nSubject: Fwd: lunch\r\nMessage-ID: <fwd@example.org>\r\n\r\nNo date here.\r\n",
    ),
];

async fn sorting() -> (Fixture, common::Client<tokio_rustls::client::TlsStream<tokio::io::DuplexStream>>) {
    let f = Fixture::start().await;
    let mut client = f.logged_in("alice@example.org").await;
    for (arrival, message) in MESSAGES {
        let append = format!("a APPEND INBOX \"{arrival}\" {{{}+}}\r\n{message}", message.len());
        client.command(&append).await.expect_ok();
    }
    client.command("s SELECT INBOX").await.expect_ok();
    (f, client)
}

#[tokio::test]
async fn sort_is_advertised_with_its_display_keys_and_both_thread_algorithms() {
    let (_f, mut client) = sorting().await;
    let capabilities = client.command("c CAPABILITY").await.expect_ok().join(" ");
    for capability in
        [" SORT ", " ESORT ", " SORT=DISPLAY ", " THREAD=ORDEREDSUBJECT ", " THREAD=REFERENCES ", " THREAD=REFS "]
    {
        assert!(capabilities.contains(capability), "{capability} missing from {capabilities}");
    }
}

#[tokio::test]
async fn every_sort_key_orders_the_messages() {
    let (_f, mut client) = sorting().await;
    for (criteria, order) in [
        // Message 5 has no Date: its arrival (8 March) is its sent date, the latest.
        ("DATE", "1 3 2 4 5"),
        ("REVERSE DATE", "5 4 2 3 1"),
        ("ARRIVAL", "5 2 1 4 3"),
        ("REVERSE ARRIVAL", "3 4 1 2 5"),
        // Base subjects: "lunch" (3, 5) before "plans" (1, 2, 4); ties in mailbox order.
        ("SUBJECT", "3 5 1 2 4"),
        ("SUBJECT DATE", "3 5 1 2 4"),
        ("SUBJECT REVERSE DATE", "5 3 4 2 1"),
        ("REVERSE SUBJECT DATE", "1 2 4 3 5"),
        // Local parts of the first From: amy, bob, carl, mia, zed.
        ("FROM", "2 3 5 4 1"),
        // Of To: amy, bob, bob, zed, zoe.
        ("TO", "3 1 5 4 2"),
        // Of Cc: none (2, 3, 5) first, then amy, carol.
        ("CC", "2 3 5 4 1"),
        // Display names, or the address when there is none: amy@…, Bob, Carl, Mia, Zed Last.
        ("DISPLAYFROM", "2 3 5 4 1"),
        ("REVERSE DISPLAYFROM", "1 4 5 3 2"),
        // amy@…, Bob, bob@…, zed@…, zoe@…
        ("DISPLAYTO", "3 1 5 4 2"),
        ("SIZE", "5 3 1 4 2"),
        ("REVERSE SIZE", "2 4 1 3 5"),
    ] {
        let result = client.command(&format!("t SORT ({criteria}) UTF-8 ALL")).await.expect_ok();
        assert_eq!(result, [format!("* SORT {order}")], "SORT ({criteria})");
    }
}

#[tokio::test]
async fn sort_sorts_only_what_the_search_finds_and_uid_sort_answers_uids() {
    let (_f, mut client) = sorting().await;
    client.command("e STORE 1 +FLAGS.SILENT (\\Deleted)").await.expect_ok();
    client.command("x EXPUNGE").await.expect_ok();
    // Messages 2 to 5 are now 1 to 4, with UIDs 2 to 5.
    assert_eq!(client.command("a SORT (DATE) US-ASCII SUBJECT plans").await.expect_ok(), ["* SORT 1 3"]);
    assert_eq!(client.command("b UID SORT (REVERSE DATE) UTF-8 ALL").await.expect_ok(), ["* SORT 5 4 2 3"]);
    assert_eq!(client.command("c SORT (DATE) UTF-8 SUBJECT nothing-like-this").await.expect_ok(), ["* SORT"]);
}

#[tokio::test]
async fn thread_references_follows_replies_and_joins_by_subject() {
    let (_f, mut client) = sorting().await;
    // 1 is answered by 2 (In-Reply-To) and by 4 (References, through a message not here); the
    // forward 5 joins 3 by its subject. Threads in order of their first message's date.
    let result = client.command("t THREAD REFERENCES UTF-8 ALL").await.expect_ok();
    assert_eq!(result, ["* THREAD (1 (2)(4))(3 5)"]);
    client.command("e STORE 1 +FLAGS.SILENT (\\Deleted)").await.expect_ok();
    client.command("x EXPUNGE").await.expect_ok();
    // The replies (UIDs 2 and 4, now messages 1 and 3) have lost their parent, and stay one
    // thread under the place it held.
    let numbers = client.command("n THREAD REFERENCES UTF-8 ALL").await.expect_ok();
    assert_eq!(numbers, ["* THREAD (2 4)((1)(3))"]);
    let uids = client.command("u UID THREAD REFERENCES UTF-8 NOT FROM carl").await.expect_ok();
    assert_eq!(uids, ["* THREAD (3)((2)(4))"]);
    let ordered = client.command("o THREAD ORDEREDSUBJECT UTF-8 ALL").await.expect_ok();
    assert_eq!(ordered, ["* THREAD (2 4)(1 3)"]);
    let none = client.command("z THREAD REFERENCES UTF-8 SUBJECT nothing-like-this").await.expect_ok();
    assert_eq!(none, ["* THREAD"]);
}

#[tokio::test]
async fn thread_refs_keeps_subjects_apart_and_orders_by_the_newest_message() {
    let (_f, mut client) = sorting().await;
    // As REFERENCES, but the forward 5 stays a thread of its own, and threads go by their
    // newest message: 3 (3 March), 1 with its replies (the newest, 4, on 5 March), 5 (8 March).
    let result = client.command("t THREAD REFS UTF-8 ALL").await.expect_ok();
    assert_eq!(result, ["* THREAD (3)(1 (2)(4))(5)"]);
}

#[tokio::test]
async fn what_cannot_be_sorted_or_threaded_is_refused() {
    let (_f, mut client) = sorting().await;
    let charset = client.command("a SORT (DATE) KOI8-R ALL").await;
    assert!(charset.status().starts_with("NO [BADCHARSET"), "{charset:?}");
    let algorithm = client.command("b THREAD SPAGHETTI UTF-8 ALL").await;
    assert!(algorithm.status().starts_with("BAD"), "{algorithm:?}");
    let key = client.command("c SORT (COLOUR) UTF-8 ALL").await;
    assert!(key.status().starts_with("BAD"), "{key:?}");
    let beyond = client.command("d SORT (DATE) UTF-8 1:9").await;
    assert!(beyond.status().starts_with("BAD"), "{beyond:?}");
    client.command("u UNSELECT").await.expect_ok();
    let unselected = client.command("e SORT (DATE) UTF-8 ALL").await;
    assert!(unselected.status().starts_with("BAD"), "{unselected:?}");
}

#[tokio::test]
async fn a_message_that_arrives_later_is_sorted_with_the_rest() {
    let (f, mut client) = sorting().await;
    // The first SORT keeps the five summaries; the sixth message's is read when it is needed.
    assert_eq!(client.command("a SORT (SUBJECT) UTF-8 ALL").await.expect_ok(), ["* SORT 3 5 1 2 4"]);
    f.mailstore
        .deliver(
            "alice@example.org",
            b"From: ann@example.org\r\nSubject: Re: [team] Lunch\r\nIn-Reply-To: <lunch@example.org>\r\nDate: Mon, 02 Mar 2026 13:00:00 +0000\r\n\r\nYes!\r\n",
        )
        .await;
    // Sorted once the session has told the client of it.
    let mut told = Vec::new();
    for _ in 0..50 {
        told.extend(client.command("n NOOP").await.expect_ok());
        if told.iter().any(|line| line == "* 6 EXISTS") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(told.iter().any(|line| line == "* 6 EXISTS"), "{told:?}");
    let result = client.command("b SORT (SUBJECT DATE) UTF-8 ALL").await.expect_ok();
    assert_eq!(result, ["* 6 RECENT", "* SORT 6 3 5 1 2 4"], "taken as \\Recent on the way");
    let threads = client.command("c THREAD REFERENCES UTF-8 ALL").await.expect_ok();
    assert_eq!(threads, ["* THREAD (1 (2)(4))(3 (6)(5))"]);
}

#[tokio::test]
async fn sort_with_a_modseq_key_tells_the_highest_modseq() {
    let (_f, mut client) = sorting().await;
    client.command("a STORE 2 +FLAGS.SILENT (\\Seen)").await.expect_ok();
    let result = client.command("b SORT (DATE) UTF-8 MODSEQ 1").await.expect_ok();
    let sort = result.iter().find(|line| line.starts_with("* SORT")).expect("a SORT response");
    assert!(sort.starts_with("* SORT 1 3 2 4 5 (MODSEQ "), "{result:?}");
    let fetched = client.command("c FETCH 2 (MODSEQ)").await.expect_ok();
    let modseq = fetched[0].split("MODSEQ (").nth(1).and_then(|rest| rest.split(')').next()).unwrap();
    assert!(sort.ends_with(&format!("(MODSEQ {modseq})")), "{sort} vs {fetched:?}");
}

#[tokio::test]
async fn sort_return_answers_esearch_in_sort_order() {
    let (_f, mut client) = sorting().await;
    // DATE orders the messages 1 3 2 4 5; UIDs are the same numbers here.
    let answer = client.command("a SORT RETURN (MIN MAX COUNT) (DATE) UTF-8 ALL").await.expect_ok();
    assert_eq!(answer, ["* ESEARCH (TAG \"a\") MIN 1 MAX 5 COUNT 5"], "MIN and MAX are the first and the last sorted");
    let answer = client.command("b SORT RETURN (MIN MAX) (REVERSE DATE) UTF-8 ALL").await.expect_ok();
    assert_eq!(answer, ["* ESEARCH (TAG \"b\") MIN 5 MAX 1"]);
    // ALL keeps the sort order; only ascending runs are joined into ranges.
    let answer = client.command("c UID SORT RETURN (ALL) (DATE) UTF-8 ALL").await.expect_ok();
    assert_eq!(answer, ["* ESEARCH (TAG \"c\") UID ALL 1,3,2,4:5"]);
    let answer = client.command("d SORT RETURN () (SUBJECT) UTF-8 SUBJECT nothing-like-this").await.expect_ok();
    assert_eq!(answer, ["* ESEARCH (TAG \"d\")"]);
}

#[tokio::test]
async fn partial_pages_through_a_sorted_or_searched_result() {
    let (_f, mut client) = sorting().await;
    // The second page of two in DATE order (1 3 2 4 5), then the last two, then past the end.
    let answer = client.command("a SORT RETURN (PARTIAL 3:4 COUNT) (DATE) UTF-8 ALL").await.expect_ok();
    assert_eq!(answer, ["* ESEARCH (TAG \"a\") PARTIAL (3:4 2,4) COUNT 5"]);
    let answer = client.command("b UID SORT RETURN (PARTIAL -1:-2) (DATE) UTF-8 ALL").await.expect_ok();
    assert_eq!(answer, ["* ESEARCH (TAG \"b\") UID PARTIAL (-1:-2 4:5)"]);
    let answer = client.command("c SORT RETURN (PARTIAL 6:10) (DATE) UTF-8 ALL").await.expect_ok();
    assert_eq!(answer, ["* ESEARCH (TAG \"c\") PARTIAL (6:10 NIL)"]);
    let answer = client.command("d SEARCH RETURN (PARTIAL 2:3 MIN) ALL").await.expect_ok();
    assert_eq!(answer, ["* ESEARCH (TAG \"d\") MIN 1 PARTIAL (2:3 2:3)"]);
    for (line, reason) in [
        ("e SEARCH RETURN (PARTIAL 1:5 ALL) ALL", "ALL and PARTIAL"),
        ("f SEARCH RETURN (PARTIAL 0:5) ALL", "position 0"),
        ("g SORT RETURN (PARTIAL 1:-5) (DATE) UTF-8 ALL", "mixed signs"),
        ("h SORT RETURN (PARTIAL 1:2 PARTIAL 3:4) (DATE) UTF-8 ALL", "two windows"),
    ] {
        let refused = client.command(line).await;
        assert!(refused.status().starts_with("BAD"), "{reason}: {refused:?}");
    }
}

#[tokio::test]
async fn an_update_sort_tells_changes_at_their_positions() {
    let (_f, mut client) = sorting().await;
    let capabilities = client.command("c CAPABILITY").await.expect_ok().join(" ");
    assert!(capabilities.contains(" CONTEXT=SORT"), "{capabilities}");
    // By DATE, every message unseen: UIDs 1 3 2 4 5.
    let answer = client.command("u UID SORT RETURN (UPDATE ALL) (DATE) UTF-8 UNSEEN").await.expect_ok();
    assert_eq!(answer, ["* ESEARCH (TAG \"u\") UID ALL 1,3,2,4:5"]);
    // Seen, 3 leaves from the second place.
    let stored = client.command("a UID STORE 3 +FLAGS.SILENT (\\Seen)").await.expect_ok();
    let told = if stored.is_empty() { client.command("n NOOP").await.expect_ok() } else { stored };
    assert!(told.contains(&"* ESEARCH (TAG \"u\") UID REMOVEFROM (2 3)".to_string()), "{told:?}");
    // A message sent on 4 March at noon comes third: after 1 and 2, before 4 and 5.
    let message = "From: dan@example.org\r\nSubject: Later\r\nDate: Wed, 04 Mar 2026 12:00:00 +0000\r\n\r\nHi.\r\n";
    client.command(&format!("b APPEND INBOX {{{}+}}\r\n{message}", message.len())).await.expect_ok();
    let mut told = Vec::new();
    for _ in 0..50 {
        told.extend(client.command("n NOOP").await.expect_ok());
        if told.iter().any(|line| line.contains("ADDTO")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(told.contains(&"* ESEARCH (TAG \"u\") UID ADDTO (3 6)".to_string()), "{told:?}");
    // Expunged, 1 leaves from the first place before its EXPUNGE is told.
    client.command("d UID STORE 1 +FLAGS.SILENT (\\Deleted)").await.expect_ok();
    let expunged = client.command("e EXPUNGE").await.expect_ok();
    assert_eq!(expunged[..2], ["* ESEARCH (TAG \"u\") UID REMOVEFROM (1 1)", "* 1 EXPUNGE"], "{expunged:?}");
}
