//! CONDSTORE (RFC 7162 §3.1): every change to a message's flags raises its MODSEQ; a client
//! asks for what changed since a MODSEQ it knows (FETCH CHANGEDSINCE, SEARCH MODSEQ), stores
//! only if nobody changed the message meanwhile (STORE UNCHANGEDSINCE), and once CONDSTORE is
//! on hears the MODSEQ with every flag change, its own and others', never going back.
//!
//! QRESYNC (RFC 7162 §3.2): a client that knew a mailbox at some MODSEQ resynchronises in its
//! SELECT, hearing the UIDs expunged since (VANISHED (EARLIER)) and the messages changed since;
//! once enabled, expunges are told as VANISHED UIDs.

mod common;

use std::time::Duration;

use common::Fixture;

const MESSAGE: &[u8] = b"From: bob@example.org\r\nSubject: hi\r\n\r\nHello.\r\n";

async fn with_messages(count: usize) -> Fixture {
    let f = Fixture::start().await;
    for _ in 0..count {
        f.mailstore.deliver("alice@example.org", MESSAGE).await;
    }
    f
}

/// The number after `name ` or inside `name (…)` in `line`, e.g. `MODSEQ (12)` → 12.
fn number_after(line: &str, name: &str) -> u64 {
    let start = line.find(name).unwrap_or_else(|| panic!("no {name} in {line}")) + name.len();
    let digits: String =
        line[start..].trim_start_matches([' ', '(']).chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or_else(|_| panic!("no number after {name} in {line}"))
}

#[tokio::test]
async fn condstore_is_advertised_and_enabled() {
    let f = with_messages(1).await;
    let mut client = f.logged_in("alice@example.org").await;
    let capabilities = client.command("c CAPABILITY").await.expect_ok();
    assert!(capabilities[0].split(' ').any(|word| word == "CONDSTORE"), "{capabilities:?}");
    assert_eq!(client.command("e ENABLE CONDSTORE").await.expect_ok(), ["* ENABLED CONDSTORE"]);
    let status = client.command("s STATUS INBOX (MESSAGES HIGHESTMODSEQ)").await.expect_ok();
    let highest = number_after(&status[0], "HIGHESTMODSEQ");
    assert!(highest > 0, "{status:?}");
    let selected = client.command("t SELECT INBOX (CONDSTORE)").await.expect_ok();
    let announced = selected.iter().find(|line| line.contains("[HIGHESTMODSEQ")).expect("HIGHESTMODSEQ");
    assert_eq!(number_after(announced, "HIGHESTMODSEQ"), highest, "{selected:?}");
    // QRESYNC's SELECT parameter needs ENABLE QRESYNC first (RFC 7162 §3.2.5).
    let refused = client.command("q SELECT INBOX (QRESYNC (1 1))").await;
    assert!(refused.status().starts_with("BAD"), "{refused:?}");
}

#[tokio::test]
async fn fetch_changedsince_returns_only_what_changed() {
    let f = with_messages(3).await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("s SELECT INBOX").await.expect_ok();
    let before = client.command("f FETCH 1:* (MODSEQ)").await.expect_ok();
    // The first command to turn CONDSTORE on tells the HIGHESTMODSEQ, then the messages.
    assert!(before[0].starts_with("* OK [HIGHESTMODSEQ "), "{before:?}");
    assert_eq!(before.len(), 4, "{before:?}");
    let known = before.iter().map(|line| number_after(line, "MODSEQ")).max().unwrap();

    // FETCH MODSEQ turned CONDSTORE on: STORE answers carry the new MODSEQ.
    let stored = client.command("a STORE 2 +FLAGS (\\Flagged)").await.expect_ok();
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert!(stored[0].starts_with("* 2 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ ("), "{stored:?}");
    let raised = number_after(&stored[0], "MODSEQ");
    assert!(raised > known, "a change raises the MODSEQ: {known} → {raised}");

    let changed = client.command(&format!("b FETCH 1:* (FLAGS) (CHANGEDSINCE {known})")).await.expect_ok();
    assert_eq!(changed, [format!("* 2 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ ({raised}))")]);
    let by_uid = client.command(&format!("c UID FETCH 1:* (FLAGS) (CHANGEDSINCE {raised})")).await.expect_ok();
    assert!(by_uid.is_empty(), "nothing changed since the last change: {by_uid:?}");
    let everything = client.command("d FETCH 1:* (FLAGS) (CHANGEDSINCE 1)").await.expect_ok();
    assert_eq!(everything.len(), 3, "{everything:?}");
}

#[tokio::test]
async fn store_unchangedsince_skips_messages_changed_meanwhile() {
    let f = with_messages(3).await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("s SELECT INBOX (CONDSTORE)").await.expect_ok();
    let modseqs: Vec<u64> = client
        .command("f FETCH 1:* (MODSEQ)")
        .await
        .expect_ok()
        .iter()
        .map(|line| number_after(line, "MODSEQ"))
        .collect();
    let known = *modseqs.iter().max().unwrap();

    // Another session changes message 1 after this client read the MODSEQs.
    let mut other = f.logged_in("alice@example.org").await;
    other.command("s SELECT INBOX").await.expect_ok();
    other.command("a STORE 1 +FLAGS (\\Seen)").await.expect_ok();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let answer = client.command(&format!("a STORE 1:3 (UNCHANGEDSINCE {known}) +FLAGS (\\Deleted)")).await;
    assert_eq!(answer.status(), "OK [MODIFIED 1] Conditional STORE failed for some messages", "{answer:?}");
    let stored: Vec<&String> = answer.untagged.iter().filter(|line| line.contains("\\Deleted")).collect();
    assert_eq!(stored.len(), 2, "messages 2 and 3 were stored: {answer:?}");
    assert!(stored.iter().all(|line| line.contains("MODSEQ (")), "{answer:?}");
    let flags = client.command("b FETCH 1:3 (FLAGS)").await.expect_ok();
    assert_eq!(flags.len(), 3, "{flags:?}");
    assert_eq!(flags[0], "* 1 FETCH (FLAGS (\\Seen \\Recent))", "message 1 untouched: {flags:?}");
    assert!(flags[1].contains("\\Deleted") && flags[2].contains("\\Deleted"), "{flags:?}");

    // A silent conditional STORE still tells the new MODSEQ (RFC 7162 §3.1.3), by UID here.
    let silent =
        client.command(&format!("c UID STORE 2 (UNCHANGEDSINCE {}) -FLAGS.SILENT (\\Deleted)", u64::MAX / 2)).await;
    let silent = silent.expect_ok();
    assert_eq!(silent.len(), 1, "{silent:?}");
    assert!(silent[0].starts_with("* 2 FETCH (UID 2 MODSEQ ("), "{silent:?}");

    // UNCHANGEDSINCE 0 fails for every message and changes nothing.
    let none = client.command("d UID STORE 1:3 (UNCHANGEDSINCE 0) +FLAGS (\\Answered)").await;
    assert_eq!(none.status(), "OK [MODIFIED 1:3] Conditional STORE failed", "{none:?}");
    let flags = client.command("e FETCH 1:3 (FLAGS)").await.expect_ok();
    assert!(flags.iter().all(|line| !line.contains("\\Answered")), "{flags:?}");
}

#[tokio::test]
async fn search_modseq_finds_changes_and_tells_the_highest() {
    let f = with_messages(4).await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("s SELECT INBOX").await.expect_ok();
    let known = client
        .command("f FETCH 1:* (MODSEQ)")
        .await
        .expect_ok()
        .iter()
        .map(|line| number_after(line, "MODSEQ"))
        .max()
        .unwrap();
    client.command("a STORE 2,4 +FLAGS.SILENT (\\Flagged)").await.expect_ok();
    let newest = client.command("b FETCH 4 (MODSEQ)").await.expect_ok();
    let highest = number_after(&newest[0], "MODSEQ");
    let found = client.command(&format!("c SEARCH MODSEQ {}", known + 1)).await.expect_ok();
    assert_eq!(found, [format!("* SEARCH 2 4 (MODSEQ {highest})")]);
    let with_entry = client.command(&format!("d UID SEARCH MODSEQ \"/flags/\\\\flagged\" all {}", known + 1)).await;
    assert_eq!(with_entry.expect_ok(), [format!("* SEARCH 2 4 (MODSEQ {highest})")]);
    let nothing = client.command(&format!("e SEARCH MODSEQ {}", highest + 1)).await.expect_ok();
    assert_eq!(nothing, ["* SEARCH"]);
}

#[tokio::test]
async fn flag_changes_from_elsewhere_carry_their_modseq() {
    let f = with_messages(1).await;
    let mut watcher = f.logged_in("alice@example.org").await;
    watcher.command("e ENABLE CONDSTORE").await.expect_ok();
    watcher.command("s SELECT INBOX").await.expect_ok();
    watcher.send(b"i IDLE\r\n").await;
    assert_eq!(watcher.line().await.unwrap(), "+ idling");

    let mut other = f.logged_in("alice@example.org").await;
    other.command("s SELECT INBOX").await.expect_ok();
    let stored = other.command("a STORE 1 +FLAGS (\\Flagged)").await.expect_ok();
    // The other session did not turn CONDSTORE on, so it hears no MODSEQ.
    assert_eq!(stored, ["* 1 FETCH (FLAGS (\\Flagged))"]);
    let heard = watcher.line().await.unwrap();
    assert!(heard.starts_with("* 1 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ ("), "{heard}");
    let modseq = number_after(&heard, "MODSEQ");
    watcher.send(b"DONE\r\n").await;
    watcher.responses("i").await;
    let fetched = watcher.command("f FETCH 1 (MODSEQ)").await.expect_ok();
    assert_eq!(fetched, [format!("* 1 FETCH (MODSEQ ({modseq}))")]);
}

/// The UIDVALIDITY and HIGHESTMODSEQ a SELECT announced.
fn announced(selected: &[String]) -> (u64, u64) {
    let find = |code: &str| {
        let line = selected.iter().find(|line| line.contains(code)).unwrap_or_else(|| panic!("{code}: {selected:?}"));
        number_after(line, code)
    };
    (find("[UIDVALIDITY"), find("[HIGHESTMODSEQ"))
}

#[tokio::test]
async fn qresync_select_tells_what_vanished_and_changed_since() {
    let f = with_messages(5).await;
    let mut before = f.logged_in("alice@example.org").await;
    assert!(before.command("c CAPABILITY").await.expect_ok()[0].split(' ').any(|word| word == "QRESYNC"));
    assert_eq!(before.command("e ENABLE QRESYNC").await.expect_ok(), ["* ENABLED QRESYNC"]);
    let (uidvalidity, known) = announced(&before.command("s SELECT INBOX").await.expect_ok());
    before.command("l LOGOUT").await;

    // Meanwhile, elsewhere: UID 2 flagged, UIDs 3 and 5 expunged.
    let mut other = f.logged_in("alice@example.org").await;
    other.command("s SELECT INBOX").await.expect_ok();
    other.command("a STORE 2 +FLAGS.SILENT (\\Flagged)").await.expect_ok();
    other.command("b STORE 3,5 +FLAGS.SILENT (\\Deleted)").await.expect_ok();
    other.command("c EXPUNGE").await.expect_ok();
    other.command("l LOGOUT").await;

    let mut client = f.logged_in("alice@example.org").await;
    client.command("e ENABLE QRESYNC").await.expect_ok();
    let answer = client.command(&format!("s SELECT INBOX (QRESYNC ({uidvalidity} {known}))")).await;
    assert_eq!(answer.status(), "OK [READ-WRITE] SELECT completed", "{answer:?}");
    let selected = answer.untagged.clone();
    let (_, highest) = announced(&selected);
    assert!(selected.contains(&"* 3 EXISTS".to_string()), "{selected:?}");
    let resync: Vec<&String> =
        selected.iter().filter(|line| line.starts_with("* VANISHED") || line.contains(" FETCH ")).collect();
    assert_eq!(resync.len(), 2, "one VANISHED, one FETCH: {selected:?}");
    assert_eq!(resync[0], "* VANISHED (EARLIER) 3,5", "{selected:?}");
    assert!(resync[1].starts_with("* 2 FETCH (UID 2 FLAGS (\\Flagged) MODSEQ ("), "{selected:?}");
    assert!(number_after(resync[1], "MODSEQ") > known && number_after(resync[1], "MODSEQ") <= highest);

    // Only the UIDs the client says it holds; nothing at all for another UIDVALIDITY.
    let within = client.command(&format!("t EXAMINE INBOX (QRESYNC ({uidvalidity} {known} 1:4))")).await;
    assert!(within.expect_ok().contains(&"* VANISHED (EARLIER) 3".to_string()));
    let other_mailbox = client.command(&format!("u SELECT INBOX (QRESYNC ({} {known}))", uidvalidity + 1)).await;
    let other_mailbox = other_mailbox.expect_ok();
    assert!(
        other_mailbox.iter().all(|line| !line.starts_with("* VANISHED") && !line.contains(" FETCH ")),
        "{other_mailbox:?}"
    );
}

#[tokio::test]
async fn qresync_tells_expunges_as_vanished_uids() {
    let f = with_messages(4).await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("e ENABLE QRESYNC").await.expect_ok();
    let (_, known) = announced(&client.command("s SELECT INBOX").await.expect_ok());

    client.command("a STORE 2:3 +FLAGS.SILENT (\\Deleted)").await.expect_ok();
    assert_eq!(client.command("b EXPUNGE").await.expect_ok(), ["* VANISHED 2:3"]);

    // Expunged by another session while this one idles.
    client.send(b"i IDLE\r\n").await;
    assert_eq!(client.line().await.unwrap(), "+ idling");
    let mut other = f.logged_in("alice@example.org").await;
    other.command("s SELECT INBOX").await.expect_ok();
    other.command("a UID STORE 4 +FLAGS.SILENT (\\Deleted)").await.expect_ok();
    other.command("b UID EXPUNGE 4").await.expect_ok();
    // The flag change comes first (`* 2 FETCH (FLAGS (\Deleted) …)`), then the expunge.
    let mut heard = vec![client.line().await.unwrap()];
    while heard.len() < 3 && !heard[heard.len() - 1].starts_with("* VANISHED") {
        heard.push(client.line().await.unwrap());
    }
    assert_eq!(heard.last().map(String::as_str), Some("* VANISHED 4"), "{heard:?}");
    assert!(heard.iter().all(|line| !line.contains("EXPUNGE")), "{heard:?}");
    client.send(b"DONE\r\n").await;
    client.responses("i").await;

    // UID FETCH … (CHANGEDSINCE … VANISHED): the UIDs gone since, then what changed.
    let fetched = client.command(&format!("f UID FETCH 1:* (FLAGS) (CHANGEDSINCE {known} VANISHED)")).await;
    assert_eq!(fetched.expect_ok(), ["* VANISHED (EARLIER) 2:4"]);
    let without_changedsince = client.command("g UID FETCH 1:* (FLAGS) (VANISHED)").await;
    assert!(without_changedsince.status().starts_with("BAD"), "{without_changedsince:?}");
    let by_number = client.command(&format!("h FETCH 1:* (FLAGS) (CHANGEDSINCE {known} VANISHED)")).await;
    assert!(by_number.status().starts_with("BAD"), "{by_number:?}");
}

#[tokio::test]
async fn a_modseq_told_past_a_held_back_expunge_comes_with_a_lower_highestmodseq() {
    let f = with_messages(3).await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("e ENABLE QRESYNC").await.expect_ok();
    client.command("s SELECT INBOX").await.expect_ok();

    // Elsewhere: UID 1 expunged, then UID 2 flagged (a higher MODSEQ).
    let mut other = f.logged_in("alice@example.org").await;
    other.command("s SELECT INBOX (CONDSTORE)").await.expect_ok();
    other.command("a UID STORE 1 +FLAGS.SILENT (\\Deleted)").await.expect_ok();
    let expunged = other.command("b UID EXPUNGE 1").await;
    assert!(expunged.status().starts_with("OK [HIGHESTMODSEQ "), "the MODSEQ the expunge took: {expunged:?}");
    let expunge_modseq = number_after(expunged.status(), "HIGHESTMODSEQ");
    other.command("c UID STORE 2 +FLAGS.SILENT (\\Flagged)").await.expect_ok();
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A FETCH by number may not carry the expunge, but tells the flag change and its MODSEQ.
    let fetched = client.command("f FETCH 1 (UID)").await.expect_ok();
    let flagged = fetched.iter().position(|line| line.contains("\\Flagged")).expect("the flag change");
    assert!(number_after(&fetched[flagged], "MODSEQ") > expunge_modseq, "{fetched:?}");
    let lower = fetched.iter().find(|line| line.starts_with("* OK [HIGHESTMODSEQ")).expect("a lower HIGHESTMODSEQ");
    assert!(number_after(lower, "HIGHESTMODSEQ") < expunge_modseq, "{fetched:?}");
    assert!(fetched.iter().all(|line| !line.contains("VANISHED")), "the expunge waits: {fetched:?}");
    // So does this session's own STORE by number, with the MODSEQ it made.
    let stored = client.command("g STORE 2 +FLAGS (\\Seen)").await.expect_ok();
    assert!(stored[0].starts_with("* 2 FETCH (FLAGS (\\Flagged \\Seen \\Recent) MODSEQ ("), "{stored:?}");
    assert!(number_after(&stored[1], "HIGHESTMODSEQ") < expunge_modseq, "{stored:?}");
    assert_eq!(client.command("n NOOP").await.expect_ok(), ["* VANISHED 1"]);
}

#[tokio::test]
async fn flags_and_modseqs_never_go_back_when_older_changes_arrive_after_newer_ones() {
    let f = with_messages(1).await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("e ENABLE CONDSTORE").await.expect_ok();
    client.command("s SELECT INBOX").await.expect_ok();
    // Another session's change, whose event waits for the client's next command.
    let mut other = f.logged_in("alice@example.org").await;
    other.command("s SELECT INBOX").await.expect_ok();
    other.command("a STORE 1 +FLAGS (\\Flagged)").await.expect_ok();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The client's own STORE comes after it: the mailstore answers with both flags and a
    // higher MODSEQ, and the older event may not take either back.
    let stored = client.command("b STORE 1 +FLAGS (\\Seen)").await.expect_ok();
    let mut last_modseq = 0;
    for line in &stored {
        let modseq = number_after(line, "MODSEQ");
        assert!(modseq >= last_modseq, "MODSEQ went back to {modseq} after {last_modseq}: {stored:?}");
        last_modseq = modseq;
    }
    assert!(stored.last().unwrap().contains("FLAGS (\\Flagged \\Seen \\Recent)"), "{stored:?}");
    let fetched = client.command("f FETCH 1 (FLAGS MODSEQ)").await.expect_ok();
    assert_eq!(fetched, [format!("* 1 FETCH (FLAGS (\\Flagged \\Seen \\Recent) MODSEQ ({last_modseq}))")]);
    assert!(client.command("n NOOP").await.expect_ok().is_empty(), "nothing older is told later");
}

#[tokio::test]
async fn the_first_command_that_turns_condstore_on_in_a_mailbox_tells_its_highestmodseq() {
    let f = with_messages(2).await;
    let mut client = f.logged_in("alice@example.org").await;
    let selected = client.command("s SELECT INBOX").await.expect_ok();
    let (_, highest) = announced(&selected);
    let fetched = client.command("f FETCH 1 (MODSEQ)").await.expect_ok();
    assert_eq!(fetched[0], format!("* OK [HIGHESTMODSEQ {highest}] Highest"), "{fetched:?}");
    let again = client.command("g FETCH 2 (MODSEQ)").await.expect_ok();
    assert_eq!(again.len(), 1, "told once: {again:?}");
    // ENABLE in the selected state does the same.
    let mut other = f.logged_in("alice@example.org").await;
    other.command("s SELECT INBOX").await.expect_ok();
    let enabled = other.command("e ENABLE CONDSTORE").await.expect_ok();
    assert_eq!(enabled, [format!("* OK [HIGHESTMODSEQ {highest}] Highest"), "* ENABLED CONDSTORE".to_string()]);
}

#[tokio::test]
async fn esearch_min_and_max_tell_the_modseq_of_the_messages_they_return() {
    let f = with_messages(3).await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("e ENABLE CONDSTORE").await.expect_ok();
    client.command("s SELECT INBOX").await.expect_ok();
    let mut modseq = Vec::new();
    for number in [1, 3, 2] {
        let stored = client.command(&format!("a STORE {number} +FLAGS (\\Flagged)")).await.expect_ok();
        modseq.push(number_after(&stored[0], "MODSEQ"));
    }
    let (first, third, second) = (modseq[0], modseq[1], modseq[2]);
    assert!(first < third && third < second, "{modseq:?}");
    for (returns, expected) in [
        ("MIN", format!("MIN 1 MODSEQ {first}")),
        ("MAX", format!("MAX 3 MODSEQ {third}")),
        ("MIN MAX", format!("MIN 1 MAX 3 MODSEQ {third}")),
        ("COUNT", format!("COUNT 3 MODSEQ {second}")),
        ("ALL", format!("ALL 1:3 MODSEQ {second}")),
    ] {
        let answer = client.command(&format!("r SEARCH RETURN ({returns}) MODSEQ 1")).await.expect_ok();
        assert_eq!(answer, [format!("* ESEARCH (TAG \"r\") {expected}")], "RETURN ({returns})");
    }
}
