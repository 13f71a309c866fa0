//! FETCH and UID FETCH of metadata, whole messages, headers, texts, header fields and partial
//! ranges; \Seen set by reading without PEEK (but never in EXAMINE); sequence sets checked;
//! ENVELOPE, BODY, BODYSTRUCTURE and PREVIEW from the items the mailstore cached, the same as
//! from the parsed body for every message of the test corpora.

mod common;

use common::Fixture;
use kubemail_message::mime;

fn message(number: u32) -> String {
    format!("From: bob@example.org\r\nSubject: note {number}\r\nTo: alice@example.org\r\n\r\nHello {number}.\r\n")
}

async fn with_three_messages() -> Fixture {
    let f = Fixture::start().await;
    for number in 1..=3 {
        f.mailstore.deliver("alice@example.org", message(number).as_bytes()).await;
    }
    f
}

#[tokio::test]
async fn metadata_of_every_message_in_sequence_order() {
    let f = with_three_messages().await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("s SELECT INBOX").await.expect_ok();
    let lines = client.command("f FETCH 1:* (UID FLAGS RFC822.SIZE)").await.expect_ok();
    let expected: Vec<String> =
        (1..=3).map(|n| format!("* {n} FETCH (UID {n} FLAGS (\\Recent) RFC822.SIZE {})", message(n).len())).collect();
    assert_eq!(lines, expected);
    let dated = client.command("f FETCH 2 INTERNALDATE").await.expect_ok();
    assert!(dated[0].starts_with("* 2 FETCH (INTERNALDATE \"") && dated[0].ends_with(" +0000\")"), "{dated:?}");
    let fast = client.command("f FETCH 3 FAST").await.expect_ok();
    assert!(fast[0].starts_with("* 3 FETCH (FLAGS (\\Recent) INTERNALDATE \""), "{fast:?}");

    // UID FETCH always reports UIDs; `n:*` past the end still names the last message.
    let by_uid = client.command("u UID FETCH 2 FLAGS").await.expect_ok();
    assert_eq!(by_uid, ["* 2 FETCH (UID 2 FLAGS (\\Recent))"]);
    let past_end = client.command("u UID FETCH 9:* FLAGS").await.expect_ok();
    assert_eq!(past_end, ["* 3 FETCH (UID 3 FLAGS (\\Recent))"]);
    let none = client.command("u UID FETCH 7 FLAGS").await.expect_ok();
    assert!(none.is_empty(), "no such UID, nothing to say: {none:?}");
    let refused = client.command("f FETCH 4 FLAGS").await;
    assert!(refused.status().starts_with("BAD"), "no message 4: {refused:?}");
}

/// FLAGS of more messages than one write of the answer holds: every line once, in order.
#[tokio::test]
async fn flags_of_thousands_of_messages_arrive_whole_and_in_order() {
    const MESSAGES: u32 = 2300;
    let f = Fixture::start().await;
    let body = message(0);
    for _ in 0..MESSAGES {
        f.mailstore.deliver("alice@example.org", body.as_bytes()).await;
    }
    let mut client = f.logged_in("alice@example.org").await;
    client.command("s SELECT INBOX").await.expect_ok();
    client.command("t STORE 1500 +FLAGS.SILENT (\\Flagged $Work)").await.expect_ok();
    let lines = client.command("f FETCH 1:* (UID FLAGS)").await.expect_ok();
    let expected: Vec<String> = (1..=MESSAGES)
        .map(|n| match n {
            1500 => format!("* {n} FETCH (UID {n} FLAGS (\\Flagged \\Recent $Work))"),
            _ => format!("* {n} FETCH (UID {n} FLAGS (\\Recent))"),
        })
        .collect();
    assert_eq!(lines.len(), expected.len());
    assert_eq!(lines, expected);
    client.command("n NOOP").await.expect_ok();
}

#[tokio::test]
async fn bodies_headers_texts_and_partial_ranges() {
    let f = with_three_messages().await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("s SELECT INBOX").await.expect_ok();
    let whole = client.command("f FETCH 1 BODY.PEEK[]").await.expect_ok();
    assert_eq!(whole, [format!("* 1 FETCH (BODY[] {{{}}}\r\n{})", message(1).len(), message(1))]);
    let header_end = message(2).find("\r\n\r\n").unwrap() + 4;
    let header = client.command("f FETCH 2 BODY.PEEK[HEADER]").await.expect_ok();
    assert_eq!(header, [format!("* 2 FETCH (BODY[HEADER] {{{header_end}}}\r\n{})", &message(2)[..header_end])]);
    let text = client.command("f FETCH 2 BODY.PEEK[TEXT]").await.expect_ok();
    assert_eq!(text, ["* 2 FETCH (BODY[TEXT] {10}\r\nHello 2.\r\n)"]);
    let fields = client.command("f FETCH 3 BODY.PEEK[HEADER.FIELDS (subject)]").await.expect_ok();
    assert_eq!(fields, ["* 3 FETCH (BODY[HEADER.FIELDS (\"subject\")] {19}\r\nSubject: note 3\r\n\r\n)"]);
    let others = client.command("f FETCH 3 BODY.PEEK[HEADER.FIELDS.NOT (Subject To)]").await.expect_ok();
    assert!(others[0].contains("{25}\r\nFrom: bob@example.org\r\n\r\n)"), "{others:?}");
    let partial = client.command("f FETCH 1 BODY.PEEK[TEXT]<0.5>").await.expect_ok();
    assert_eq!(partial, ["* 1 FETCH (BODY[TEXT]<0> {5}\r\nHello)"]);
    let beyond = client.command("f FETCH 1 BODY.PEEK[]<5000.10>").await.expect_ok();
    assert_eq!(beyond, ["* 1 FETCH (BODY[]<5000> {0}\r\n)"]);
    let rfc822 = client.command("f FETCH 2 (RFC822.HEADER RFC822.SIZE)").await.expect_ok();
    assert!(rfc822[0].starts_with("* 2 FETCH (RFC822.HEADER {"), "{rfc822:?}");
    let flags = client.command("f FETCH 1:3 FLAGS").await.expect_ok();
    assert!(flags.iter().all(|line| line.ends_with("FLAGS (\\Recent))")), "PEEK leaves \\Seen alone: {flags:?}");
}

#[tokio::test]
async fn reading_without_peek_sets_seen_except_in_examine() {
    let f = with_three_messages().await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("e EXAMINE INBOX").await.expect_ok();
    let read = client.command("f FETCH 1 BODY[TEXT]").await.expect_ok();
    assert_eq!(read, ["* 1 FETCH (BODY[TEXT] {10}\r\nHello 1.\r\n)"], "no FLAGS: nothing changed");
    client.command("s SELECT INBOX").await.expect_ok();
    let read = client.command("f FETCH 1 BODY[TEXT]").await.expect_ok();
    assert_eq!(read, ["* 1 FETCH (BODY[TEXT] {10}\r\nHello 1.\r\n FLAGS (\\Seen \\Recent))"]);
    let read = client.command("f FETCH 2 RFC822").await.expect_ok();
    assert!(read[0].ends_with(" FLAGS (\\Seen \\Recent))"), "{read:?}");
    let status = client.command("t STATUS INBOX (UNSEEN)").await.expect_ok();
    assert_eq!(status, ["* STATUS \"INBOX\" (UNSEEN 1)"]);
}

const MULTIPART: &str = "From: Carol <carol@example.org>\r\nTo: alice@example.org\r\nSubject: Files\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <7@example.org>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee attached.\r\n--b1\r\nContent-Type: message/rfc822\r\n\r\nFrom: dave@example.org\r\nSubject: Inner\r\n\r\nInner text.\r\n--b1--\r\n";

#[tokio::test]
async fn envelope_body_structure_and_mime_parts() {
    let f = Fixture::start().await;
    f.mailstore.deliver("alice@example.org", MULTIPART.as_bytes()).await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("s SELECT INBOX").await.expect_ok();
    let envelope = client.command("f FETCH 1 ENVELOPE").await.expect_ok();
    let carol = "((\"Carol\" NIL \"carol\" \"example.org\"))";
    assert_eq!(
        envelope,
        [format!(
            "* 1 FETCH (ENVELOPE (\"Thu, 26 Nov 2026 10:00:00 +0000\" \"Files\" {carol} {carol} {carol} ((NIL NIL \"alice\" \"example.org\")) NIL NIL NIL \"<7@example.org>\"))"
        )]
    );
    let structure = client.command("f FETCH 1 BODYSTRUCTURE").await.expect_ok();
    assert!(
        structure[0].starts_with("* 1 FETCH (BODYSTRUCTURE ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 13 1 NIL NIL NIL NIL)(\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" "),
        "{structure:?}"
    );
    assert!(
        structure[0].contains("(NIL \"Inner\" ((NIL NIL \"dave\""),
        "the encapsulated message's envelope: {structure:?}"
    );
    assert!(structure[0].contains("\"7BIT\" 11 1 NIL NIL NIL NIL) 4 "), "its body, and its lines: {structure:?}");
    assert!(structure[0].ends_with(" \"mixed\" (\"boundary\" \"b1\") NIL NIL NIL))"), "{structure:?}");
    let body = client.command("f FETCH 1 BODY").await.expect_ok();
    assert!(
        body[0].starts_with("* 1 FETCH (BODY ((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 13 1)"),
        "{body:?}"
    );

    let first = client.command("f FETCH 1 BODY.PEEK[1]").await.expect_ok();
    assert_eq!(first, ["* 1 FETCH (BODY[1] {13}\r\nSee attached.)"]);
    let mime = client.command("f FETCH 1 BODY.PEEK[2.MIME]").await.expect_ok();
    assert_eq!(mime, ["* 1 FETCH (BODY[2.MIME] {32}\r\nContent-Type: message/rfc822\r\n\r\n)"]);
    let inner_header = client.command("f FETCH 1 BODY.PEEK[2.HEADER.FIELDS (SUBJECT)]").await.expect_ok();
    assert_eq!(inner_header, ["* 1 FETCH (BODY[2.HEADER.FIELDS (\"SUBJECT\")] {18}\r\nSubject: Inner\r\n\r\n)"]);
    let inner_text = client.command("f FETCH 1 BODY.PEEK[2.TEXT]").await.expect_ok();
    assert_eq!(inner_text, ["* 1 FETCH (BODY[2.TEXT] {11}\r\nInner text.)"]);
    let missing = client.command("f FETCH 1 BODY.PEEK[3]").await.expect_ok();
    assert_eq!(missing, ["* 1 FETCH (BODY[3] NIL)"]);
    let all = client.command("f FETCH 1 ALL").await.expect_ok();
    assert!(all[0].starts_with("* 1 FETCH (FLAGS (\\Recent) INTERNALDATE \""), "{all:?}");
    assert!(all[0].contains(" ENVELOPE (\"Thu, 26 Nov 2026"), "{all:?}");
}

/// A text part in quoted-printable, an attachment in base64 holding NUL octets, and a part in
/// an encoding nobody can undo.
const ENCODED: &str = "From: carol@example.org\r\nTo: alice@example.org\r\nSubject: Encoded\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b2\"\r\n\r\n--b2\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nCaf=E9 =3D soft=\r\n break\r\n--b2\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAEC\r\nAwT/\r\n--b2\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n--b2--\r\n";

/// A message read whole is kept by the frontend: what a client reads of it next (its header, a
/// part, a range, the whole again; \Seen set by a read without PEEK) is what the mailstore gave,
/// and needs no mailstore, while a message never read whole does.
#[tokio::test]
async fn pieces_of_a_message_read_whole_come_from_what_the_frontend_kept() {
    let f = Fixture::start().await;
    f.mailstore.deliver("alice@example.org", MULTIPART.as_bytes()).await;
    f.mailstore.deliver("alice@example.org", message(2).as_bytes()).await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("s SELECT INBOX").await.expect_ok();
    const PIECES: &str = "f FETCH 1 (UID BODY.PEEK[HEADER] BODY.PEEK[1] BODY.PEEK[2.HEADER] BINARY.PEEK[1] \
                          BODY.PEEK[TEXT]<0.20> RFC822.SIZE ENVELOPE)";
    let envelope = client.command("f FETCH 1:2 ENVELOPE").await.expect_ok();
    let headers = client.command("f FETCH 2 RFC822.HEADER").await.expect_ok();
    let pieces = client.command(PIECES).await.expect_ok();
    assert!(pieces[0].contains(" BODY[1] {13}\r\nSee attached. BODY[2.HEADER] {42}\r\nFrom: dave"), "{pieces:?}");
    let whole = client.command("f FETCH 1 BODY.PEEK[]").await.expect_ok();
    assert_eq!(whole, [format!("* 1 FETCH (BODY[] {{{}}}\r\n{MULTIPART})", MULTIPART.len())]);
    // Read without PEEK from what is kept: \Seen is set at the mailstore and reported.
    let read = client.command("f FETCH 1 BODY[1]").await.expect_ok();
    assert_eq!(read, ["* 1 FETCH (BODY[1] {13}\r\nSee attached. FLAGS (\\Seen \\Recent))"]);
    let status = client.command("t STATUS INBOX (UNSEEN)").await.expect_ok();
    assert_eq!(status, ["* STATUS \"INBOX\" (UNSEEN 1)"]);

    f.mailstore.stop();
    assert_eq!(client.command(PIECES).await.expect_ok(), pieces);
    assert_eq!(client.command("f FETCH 1 BODY.PEEK[]").await.expect_ok(), whole);
    assert_eq!(client.command("f FETCH 1:2 ENVELOPE").await.expect_ok(), envelope, "held as before");
    // Message 2 was only read in part (its header): its body was not kept.
    let unread = client.command("f FETCH 2 BODY.PEEK[TEXT]").await;
    assert!(unread.tagged.starts_with("f NO [UNAVAILABLE]"), "{unread:?}");
    let header = client.command("f FETCH 2 RFC822.HEADER").await;
    assert!(header.tagged.starts_with("f NO [UNAVAILABLE]"), "{header:?} (read before: {headers:?})");
}

#[tokio::test]
async fn binary_undoes_the_content_transfer_encoding() {
    let f = Fixture::start().await;
    f.mailstore.deliver("alice@example.org", ENCODED.as_bytes()).await;
    let mut client = f.logged_in("alice@example.org").await;
    let capabilities = client.command("c CAPABILITY").await.expect_ok();
    assert!(capabilities[0].split(' ').any(|word| word == "BINARY"), "{capabilities:?}");
    client.command("s EXAMINE INBOX").await.expect_ok();

    // The text in its own charset (é is one octet, 0xE9), soft line break gone.
    let text = client.command("a FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])").await.expect_ok();
    assert_eq!(text, ["* 1 FETCH (BINARY[1] {17}\r\nCaf\u{fffd} = soft break BINARY.SIZE[1] 17)"]);
    // Octets with a NUL come as a literal8; without one, as a plain literal.
    client.send(b"b FETCH 1 (BINARY.PEEK[2] BINARY.PEEK[2]<1.2>)\r\n").await;
    let raw = read_until(&mut client, b"b OK FETCH completed\r\n").await;
    let expected: &[u8] = b"* 1 FETCH (BINARY[2] ~{6}\r\n\x00\x01\x02\x03\x04\xff BINARY[2]<1> {2}\r\n\x01\x02)\r\n";
    assert_eq!(&raw[..expected.len()], expected, "{:?}", String::from_utf8_lossy(&raw));

    let whole = client.command("c FETCH 1 (BINARY.SIZE[] BINARY[9])").await.expect_ok();
    assert_eq!(whole, [format!("* 1 FETCH (BINARY.SIZE[] {} BINARY[9] NIL)", ENCODED.len())]);
    let unknown = client.command("d FETCH 1 BINARY.PEEK[3]").await;
    assert!(unknown.status().starts_with("NO [UNKNOWN-CTE]"), "{unknown:?}");

    // APPEND takes a literal8 too (RFC 3516 §4.4), NUL octets and all.
    client.send(b"e APPEND INBOX ~{8+}\r\nX: \0\r\n\r\n\r\n").await;
    client.responses("e").await.expect_ok();
    let appended = client.command("f FETCH 2 (RFC822.SIZE BINARY.SIZE[])").await.expect_ok();
    assert_eq!(appended, ["* 2 FETCH (RFC822.SIZE 8 BINARY.SIZE[] 8)"]);
    // A plain literal may not carry the NUL (RFC 9051 §4.3): BODY[] shows 0x80 in its place.
    client.send(b"g FETCH 2 BODY.PEEK[]\r\n").await;
    let raw = read_until(&mut client, b"g OK FETCH completed\r\n").await;
    assert!(raw.starts_with(b"* 2 FETCH (BODY[] {8}\r\nX: \x80\r\n\r\n)\r\n"), "{:?}", String::from_utf8_lossy(&raw));
}

/// A quoted-printable line's trailing white space was added on the way, and `=` before it is
/// still a soft line break (RFC 2045 §6.7).
#[tokio::test]
async fn binary_drops_quoted_printable_padding() {
    let f = Fixture::start().await;
    let message = "Subject: padded\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\na=20 \t\r\nb= \r\nc=3d\r\n";
    f.mailstore.deliver("alice@example.org", message.as_bytes()).await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("s EXAMINE INBOX").await.expect_ok();
    let text = client.command("a FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])").await.expect_ok();
    assert_eq!(text, ["* 1 FETCH (BINARY[1] {9}\r\na \r\nbc=\r\n BINARY.SIZE[1] 9)"]);
}

/// What the client reads up to and including `end`, octet for octet.
async fn read_until(client: &mut common::Client<impl tokio::io::AsyncRead + Unpin>, end: &[u8]) -> Vec<u8> {
    let mut raw = Vec::new();
    while !raw.ends_with(end) {
        let mut chunk = [0u8; 256];
        let read = tokio::io::AsyncReadExt::read(&mut client.stream, &mut chunk).await.expect("read");
        assert!(read > 0, "closed: {raw:?}");
        raw.extend_from_slice(&chunk[..read]);
    }
    raw
}

/// A group with only a comment in it has no address, and an obsolete source route is the
/// address's route (RFC 9051 §7.5.2, RFC 5322 §4.4).
#[tokio::test]
async fn envelope_groups_hold_addresses_only_and_routes_are_routes() {
    let f = Fixture::start().await;
    let message = "From: joe@example.org\r\nTo: undisclosed-recipients: (nobody);\r\nCc: <@relay.example.net:ann@example.org>\r\nSubject: routed\r\n\r\nHi.\r\n";
    f.mailstore.deliver("alice@example.org", message.as_bytes()).await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("s EXAMINE INBOX").await.expect_ok();
    let envelope = client.command("a FETCH 1 ENVELOPE").await.expect_ok();
    let to_and_cc = "((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) \
                     ((NIL \"@relay.example.net\" \"ann\" \"example.org\"))";
    assert!(envelope[0].contains(to_and_cc), "{envelope:?}");
}

/// The TEXT of an encapsulated message runs to the end of its part: a multipart body's epilogue
/// is part of it (RFC 9051 §6.4.5).
#[tokio::test]
async fn the_text_of_a_forwarded_multipart_keeps_its_epilogue() {
    let f = Fixture::start().await;
    let inner =
        "Subject: inner\r\nContent-Type: multipart/mixed; boundary=i\r\n\r\n--i\r\n\r\none\r\n--i--\r\nepilogue\r\n";
    let message = format!("Subject: fwd\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\n{inner}");
    f.mailstore.deliver("alice@example.org", message.as_bytes()).await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("s EXAMINE INBOX").await.expect_ok();
    let text = client.command("a FETCH 1 BODY.PEEK[1.TEXT]").await.expect_ok();
    assert_eq!(text, ["* 1 FETCH (BODY[1.TEXT] {29}\r\n--i\r\n\r\none\r\n--i--\r\nepilogue\r\n)"]);
}

/// A string as FETCH writes a PREVIEW: quoted when it can be, else a literal.
fn preview_string(text: &str) -> String {
    match text.bytes().all(|byte| (0x20..0x7f).contains(&byte) && byte != b'"' && byte != b'\\') {
        true => format!("\"{text}\""),
        false => format!("{{{}}}\r\n{text}", text.len()),
    }
}

/// `octets` as a literal in an answer: a literal carries each NUL as 0x80.
fn literal(octets: &[u8]) -> String {
    let shown: Vec<u8> = octets.iter().map(|&octet| if octet == 0 { 0x80 } else { octet }).collect();
    format!("{{{}}}\r\n{}", octets.len(), String::from_utf8_lossy(&shown))
}

/// HEADER.FIELDS of the fields clients list messages by come from the lines the mailstore kept
/// with the cached items, with metadata alone and the second time from what the frontend holds;
/// for every message of the test corpora, and fields it has and has not, in any case, they are
/// what the frontend cuts from the body.
#[tokio::test]
async fn common_header_fields_are_what_the_body_gives() {
    let f = Fixture::start().await;
    let corpus: Vec<(String, Vec<u8>)> =
        kubemail_testkit::mime_corpus().into_iter().filter(|(_, body)| !body.is_empty()).collect();
    for (_, body) in &corpus {
        f.mailstore.deliver("alice@example.org", body).await;
    }
    let stored = f.mailstore.inbox("alice@example.org").await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("s EXAMINE INBOX").await.expect_ok();
    let common = kubemail_message::fields::COMMON_FIELDS;
    for start in [0, 5, 11, 16] {
        // Three names in turn, one of them in upper case.
        let names: Vec<String> = (0..3)
            .map(|i| common[(start + i) % common.len()])
            .enumerate()
            .map(|(i, name)| if i == 1 { name.to_uppercase() } else { name.to_string() })
            .collect();
        let section = format!("HEADER.FIELDS ({})", names.join(" "));
        // The answer names the fields as quoted strings.
        let quoted: Vec<String> = names.iter().map(|name| format!("\"{name}\"")).collect();
        let answered = format!("HEADER.FIELDS ({})", quoted.join(" "));
        let from_cache = client.command(&format!("c FETCH 1:* (BODY.PEEK[{section}])")).await.expect_ok();
        let held = client.command(&format!("h FETCH 1:* (BODY.PEEK[{section}])")).await.expect_ok();
        let with_body =
            client.command(&format!("b FETCH 1:* (BODY.PEEK[{section}] BODY.PEEK[TEXT])")).await.expect_ok();
        assert_eq!(from_cache.len(), stored.len());
        for (index, body) in stored.iter().enumerate() {
            let number = index + 1;
            let lines = kubemail_message::fields::header_fields(body, &names, true);
            let item = format!("BODY[{answered}] {}", literal(&lines));
            let name = &corpus[index].0;
            assert!(with_body[index].starts_with(&format!("* {number} FETCH ({item} BODY[TEXT]")), "{name}");
            assert_eq!(from_cache[index], format!("* {number} FETCH ({item})"), "{name}, {section}");
            assert_eq!(held[index], from_cache[index], "{name}, {section}, held");
        }
    }
}

/// ENVELOPE, BODY, BODYSTRUCTURE and PREVIEW come from the items the mailstore derived when it
/// stored each message, with metadata alone and with a body, and the second time from what the
/// frontend holds of them; for every message of the test corpora they are what the frontend
/// writes from the parsed body, with UTF-8 and without.
#[tokio::test]
async fn cached_items_are_what_the_parsed_body_gives() {
    let f = Fixture::start().await;
    let corpus: Vec<(String, Vec<u8>)> =
        kubemail_testkit::mime_corpus().into_iter().filter(|(_, body)| !body.is_empty()).collect();
    assert!(corpus.len() >= 10, "the corpora are there: {}", corpus.len());
    for (_, body) in &corpus {
        f.mailstore.deliver("alice@example.org", body).await;
    }
    let stored = f.mailstore.inbox("alice@example.org").await;
    assert_eq!(stored.len(), corpus.len());
    for utf8 in [false, true] {
        let mut client = f.logged_in("alice@example.org").await;
        if utf8 {
            client.command("e ENABLE UTF8=ACCEPT").await.expect_ok();
        }
        client.command("s EXAMINE INBOX").await.expect_ok();
        let from_cache = client.command("f FETCH 1:* (ENVELOPE BODY BODYSTRUCTURE PREVIEW)").await.expect_ok();
        let with_bodies = client.command("b FETCH 1:* (BODYSTRUCTURE BODY.PEEK[])").await.expect_ok();
        assert_eq!(from_cache.len(), corpus.len());
        assert_eq!(with_bodies.len(), corpus.len());
        for (index, (name, body)) in stored.iter().enumerate().map(|(i, body)| (i, (&corpus[i].0, body))) {
            let number = index + 1;
            let parsed = mime::parse(body);
            let (envelope, structure, extended, preview) = match &parsed {
                Some(message) => (
                    mime::envelope(message, utf8),
                    mime::body_structure(message, false, utf8),
                    mime::body_structure(message, true, utf8),
                    mime::preview(message).map_or_else(|| "NIL".to_string(), |text| preview_string(&text)),
                ),
                None => ("NIL".into(), "NIL".into(), "NIL".into(), "NIL".into()),
            };
            assert_eq!(
                from_cache[index],
                format!(
                    "* {number} FETCH (ENVELOPE {envelope} BODY {structure} BODYSTRUCTURE {extended} PREVIEW {preview})"
                ),
                "{name}, UTF-8 {utf8}"
            );
            let literal = literal(body);
            assert_eq!(
                with_bodies[index],
                format!("* {number} FETCH (BODYSTRUCTURE {extended} BODY[] {literal})"),
                "{name}, UTF-8 {utf8}"
            );
        }
    }
}
