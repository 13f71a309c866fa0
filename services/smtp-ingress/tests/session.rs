//! SMTP sessions driven through in-memory streams, one test per verb family, against a real
//! mailstore (SQLite over gRPC) and the real local spool and queue.

mod common;

use std::time::{Duration, Instant};

use common::{Fixture, b64, plain, test_settings};
use kubemail_proto::queue::{DsnNotify, DsnReturn};
use kubemail_smtp_ingress::session::Listener;
use kubemail_smtp_ingress::session::Settings;

const MESSAGE: &str = "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nHello Bob.\r\n";

#[tokio::test]
async fn ehlo_advertises_the_extensions_and_helo_is_plain() {
    let f = Fixture::start().await;
    let mut mx = f.connect(Listener::Mx).await;
    let ehlo = mx.command("EHLO client.example", 250).await;
    for extension in
        ["PIPELINING", "SIZE 65536", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "CHUNKING", "DSN", "STARTTLS"]
    {
        assert!(ehlo.lines().any(|line| line == extension), "{extension} missing from {ehlo:?}");
    }
    assert!(!ehlo.contains("AUTH"), "no AUTH before TLS: {ehlo}");
    let helo = mx.command("HELO client.example", 250).await;
    assert_eq!(helo, "mx.example.org Hello client.example");
    mx.command("NOOP", 250).await;
    assert!(mx.command("VRFY bob", 252).await.starts_with("2.5.0"));
    assert!(mx.command("HELP", 214).await.starts_with("2.0.0"));
    assert!(mx.command("EXPN staff", 502).await.starts_with("5.5.1"));
    assert!(mx.command("XYZZY", 500).await.starts_with("5.5.1"));
    mx.command("QUIT", 221).await;
    assert!(mx.closed().await);
}

#[tokio::test]
async fn a_message_to_a_local_recipient_is_spooled_and_queued_before_250() {
    let f = Fixture::start().await;
    let mut mx = f.connect(Listener::Mx).await;
    mx.command("EHLO client.example", 250).await;
    mx.command("MAIL FROM:<sender@remote.example> RET=HDRS ENVID=env-1", 250).await;
    mx.command("RCPT TO:<Bob@Example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob@example.org", 250).await;
    mx.command("RCPT TO:<al@example.org>", 250).await;
    mx.command("DATA", 354).await;
    mx.send(&format!("{MESSAGE}..leading dot\r\n.\r\n")).await;
    let accepted = mx.expect(250).await;
    let id = accepted.strip_prefix("2.0.0 OK: queued as ").expect("the reply names the queue id").to_string();

    let queued = f.queued().await;
    assert_eq!(queued.len(), 1);
    let (envelope, body) = &queued[0];
    assert_eq!(envelope.id, id);
    assert_eq!(envelope.mail_from, "sender@remote.example");
    assert_eq!(envelope.dsn_return, DsnReturn::Headers as i32);
    assert_eq!(envelope.dsn_envid, "env-1");
    assert_eq!(envelope.client_ip, common::CLIENT_IP);
    assert_eq!(envelope.helo, "client.example");
    let recipients: Vec<_> = envelope.recipients.iter().map(|r| (r.address.as_str(), r.local)).collect();
    assert_eq!(recipients, [("Bob@example.org", true), ("al@example.org", true)]);
    assert_eq!(envelope.recipients[0].notify, DsnNotify::Success as u32 | DsnNotify::Failure as u32);
    assert_eq!(envelope.recipients[0].original_recipient, "rfc822;bob@example.org");
    assert!(body.starts_with("Received: from client.example ([192.0.2.10])\r\n\tby mx.example.org (kubemail)"));
    assert!(body.contains(&format!("with ESMTP id {id}")));
    assert!(body.ends_with(&format!("{MESSAGE}.leading dot\r\n")), "dot-unstuffed body: {body:?}");
    assert_eq!(envelope.size, body.len() as u64);
}

#[tokio::test]
async fn a_bare_line_feed_dot_cannot_end_the_message_or_smuggle_another() {
    let f = Fixture::start().await;
    let mut mx = f.connect(Listener::Mx).await;
    mx.command("EHLO client.example", 250).await;
    mx.command("MAIL FROM:<sender@remote.example>", 250).await;
    mx.command("RCPT TO:<bob@example.org>", 250).await;
    mx.command("DATA", 354).await;
    // The classic smuggling payloads: `<LF>.<LF>`, `<LF>.<CR><LF>` and `<CR>.<CR>`, each
    // followed by a second transaction that must stay part of the first message.
    mx.send("Subject: one\r\n\r\nfirst\n.\nMAIL FROM:<ceo@example.org>\r\nRCPT TO:<alice@example.org>\r\nDATA\r\n")
        .await;
    mx.send("second\n.\r\nthird\r.\rfourth\r\n.\r\n").await;
    mx.expect(250).await;
    mx.command("QUIT", 221).await;
    let queued = f.queued().await;
    assert_eq!(queued.len(), 1, "exactly one message");
    let body = &queued[0].1;
    assert!(body.contains("first\r\n.\r\nMAIL FROM:<ceo@example.org>\r\n"), "{body:?}");
    assert!(body.ends_with("second\r\n.\r\nthird\r\n.\r\nfourth\r\n"), "line endings made CRLF: {body:?}");
}

#[tokio::test]
async fn commands_out_of_order_get_503() {
    let f = Fixture::start().await;
    let mut mx = f.connect(Listener::Mx).await;
    assert!(mx.command("MAIL FROM:<a@remote.example>", 503).await.starts_with("5.5.1"));
    mx.command("EHLO client.example", 250).await;
    mx.command("RCPT TO:<bob@example.org>", 503).await;
    mx.command("DATA", 503).await;
    mx.command("MAIL FROM:<a@remote.example>", 250).await;
    mx.command("MAIL FROM:<a@remote.example>", 503).await;
    assert!(mx.command("DATA", 554).await.contains("No valid recipients"));
    mx.command("RSET", 250).await;
    mx.command("RCPT TO:<bob@example.org>", 503).await;
}

#[tokio::test]
async fn recipients_are_resolved_by_the_mailstore() {
    let f = Fixture::start().await;
    let mut mx = f.connect(Listener::Mx).await;
    mx.command("EHLO client.example", 250).await;
    mx.command("MAIL FROM:<a@remote.example> SIZE=3000", 250).await;
    assert!(mx.command("RCPT TO:<nobody@example.org>", 550).await.starts_with("5.1.1"));
    assert!(mx.command("RCPT TO:<carol@example.org>", 550).await.starts_with("5.2.1"), "suspended");
    // bob's quota is 2,000 octets: a declared 3,000 can never fit.
    assert!(mx.command("RCPT TO:<bob@example.org>", 552).await.starts_with("5.2.2"));
    // With 1,500 of them used, 1,000 more do not fit now, but may once he cleans up.
    f.mailstore.deliver("bob@example.org", &common::message_of(1_500)).await;
    mx.command("RSET", 250).await;
    mx.command("MAIL FROM:<a@remote.example> SIZE=1000", 250).await;
    assert!(mx.command("RCPT TO:<bob@example.org>", 452).await.starts_with("4.2.2"), "mailbox full");
    assert!(mx.command("RCPT TO:<alice+lists@example.org>", 250).await.starts_with("2.1.5"), "subaddress");
    mx.command("RSET", 250).await;
    mx.command("MAIL FROM:<a@remote.example>", 250).await;
    for i in 0..5 {
        mx.command(&format!("RCPT TO:<alice+{i}@example.org>"), 250).await;
    }
    assert!(mx.command("RCPT TO:<alice+6@example.org>", 452).await.starts_with("4.5.3"), "100 by default, 5 here");
    // The client sends to the five, and the rest in the next transaction.
    mx.command("DATA", 354).await;
    mx.send(&format!("{MESSAGE}.\r\n")).await;
    mx.expect(250).await;
}

#[tokio::test]
async fn an_unauthenticated_client_cannot_relay_by_any_trick() {
    let f = Fixture::start().await;
    let mut mx = f.connect(Listener::Mx).await;
    mx.command("EHLO client.example", 250).await;
    mx.command("MAIL FROM:<a@remote.example>", 250).await;
    for (recipient, code) in [
        ("<victim@remote.example>", 554),
        ("<@example.org:victim@remote.example>", 554),
        ("<@mx.example.org,@example.org:victim@remote.example>", 554),
        ("<victim%remote.example@example.org>", 550),
        ("<\"victim@remote.example\"@example.org>", 550),
        ("<victim@[192.0.2.99]>", 501),
        ("<victim@remote.example.>", 501),
        ("<victim!remote.example@example.org>", 550),
    ] {
        let reply = mx.command(&format!("RCPT TO:{recipient}"), code).await;
        assert!(reply.starts_with('5'), "{recipient}: {reply}");
    }
    assert!(mx.command("DATA", 554).await.contains("No valid recipients"));
    // Too many refusals end the session (10 by default).
    mx.command("RCPT TO:<victim@remote.example>", 554).await;
    assert!(mx.expect(421).await.starts_with("4.7.0"));
    assert!(mx.closed().await);
    assert!(f.queued().await.is_empty());
}

#[tokio::test]
async fn size_limits_are_enforced_while_reading() {
    let f = Fixture::start().await;
    let mut mx = f.connect(Listener::Mx).await;
    mx.command("EHLO client.example", 250).await;
    assert!(mx.command("MAIL FROM:<a@remote.example> SIZE=1000000", 552).await.starts_with("5.3.4"));
    mx.command("MAIL FROM:<a@remote.example>", 250).await;
    mx.command("RCPT TO:<alice@example.org>", 250).await;
    mx.command("DATA", 354).await;
    let line = format!("{}\r\n", "x".repeat(998));
    for _ in 0..70 {
        mx.send(&line).await;
    }
    mx.send(".\r\n").await;
    assert!(mx.expect(552).await.starts_with("5.3.4"));
    // The session goes on: the next transaction works.
    mx.command("MAIL FROM:<a@remote.example>", 250).await;
    mx.command("RCPT TO:<alice@example.org>", 250).await;
    mx.command("DATA", 354).await;
    mx.send(&format!("{MESSAGE}.\r\n")).await;
    mx.expect(250).await;
    assert_eq!(f.queued().await.len(), 1);
}

#[tokio::test]
async fn long_lines_and_garbage_get_errors_and_the_session_survives() {
    let f = Fixture::start().await;
    let mut mx = f.connect(Listener::Mx).await;
    mx.command("EHLO client.example", 250).await;
    let long = format!("NOOP {}", "a".repeat(2000));
    assert!(mx.command(&long, 500).await.starts_with("5.5.2"));
    mx.send_bytes(b"\x00\xff\xfe garbage \x01\r\n").await;
    assert_eq!(mx.reply().await.expect("a reply").code, 500);
    mx.command("MAIL FROM:<a@remote.example> FOO=bar", 555).await;
    mx.command("MAIL FROM:<a@remote.example> BODY=BINARYMIME", 555).await;
    mx.command("NOOP", 250).await;
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let f = Fixture::start().await;
    let mut mx = f.connect(Listener::Mx).await;
    mx.command("EHLO client.example", 250).await;
    mx.send(
        "MAIL FROM:<a@remote.example>\r\nRCPT TO:<alice@example.org>\r\nRCPT TO:<nobody@example.org>\r\n\
         RCPT TO:<bob@example.org>\r\nDATA\r\n",
    )
    .await;
    for code in [250, 250, 550, 250, 354] {
        mx.expect(code).await;
    }
    mx.send(&format!("{MESSAGE}.\r\nQUIT\r\n")).await;
    mx.expect(250).await;
    mx.expect(221).await;
    let queued = f.queued().await;
    assert_eq!(queued[0].0.recipients.len(), 2);
}

#[tokio::test]
async fn bdat_chunks_make_one_message() {
    let f = Fixture::start().await;
    let mut mx = f.connect(Listener::Mx).await;
    mx.command("EHLO client.example", 250).await;
    // A chunk sent without a transaction is still read, so the session stays in step.
    mx.send("BDAT 5\r\nhello").await;
    mx.expect(503).await;
    mx.command("MAIL FROM:<a@remote.example>", 250).await;
    mx.command("RCPT TO:<alice@example.org>", 250).await;
    let (first, second) = MESSAGE.split_at(20);
    mx.send(&format!("BDAT {}\r\n{first}", first.len())).await;
    assert!(mx.expect(250).await.contains("octets received"));
    mx.send(&format!("BDAT {} LAST\r\n{second}", second.len())).await;
    assert!(mx.expect(250).await.contains("queued as"));
    mx.command("DATA", 503).await;
    let queued = f.queued().await;
    assert!(queued[0].1.ends_with(MESSAGE));
    // A size that cannot be read ends the session rather than misreading the chunk.
    mx.command("BDAT 99999999999999999999999", 501).await;
    assert!(mx.closed().await);
}

#[tokio::test]
async fn submission_needs_tls_then_auth_then_an_owned_sender() {
    let f = Fixture::start().await;
    let mut plain_text = f.connect(Listener::Submission).await;
    plain_text.command("EHLO laptop", 250).await;
    assert!(plain_text.command("MAIL FROM:<alice@example.org>", 530).await.contains("STARTTLS"));
    assert!(
        plain_text
            .command(&format!("AUTH PLAIN {}", plain("alice@example.org", "secret")), 538)
            .await
            .starts_with("5.7.11")
    );

    let mut tls = plain_text.starttls(&f.tls_connector()).await;
    let ehlo = tls.command("EHLO laptop", 250).await;
    assert!(ehlo.lines().any(|line| line == "AUTH PLAIN LOGIN"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"));
    assert!(tls.command("MAIL FROM:<alice@example.org>", 530).await.starts_with("5.7.0"));
    assert!(
        tls.command(&format!("AUTH PLAIN {}", plain("alice@example.org", "wrong")), 535).await.starts_with("5.7.8")
    );
    tls.command(&format!("AUTH PLAIN {}", plain("alice@example.org", "secret")), 235).await;
    tls.command("AUTH PLAIN", 503).await;
    assert!(tls.command("MAIL FROM:<bob@example.org>", 553).await.starts_with("5.7.1"), "not alice's address");
    tls.command("MAIL FROM:<>", 553).await;
    tls.command("MAIL FROM:<al@example.org>", 250).await;
    tls.command("RCPT TO:<friend@remote.example>", 250).await;
    tls.command("RCPT TO:<bob@example.org>", 250).await;
    tls.command("DATA", 354).await;
    tls.send(&format!("{MESSAGE}.\r\n")).await;
    tls.expect(250).await;
    let queued = f.queued().await;
    let (envelope, body) = &queued[0];
    assert_eq!(envelope.auth_identity, "alice@example.org");
    let recipients: Vec<_> = envelope.recipients.iter().map(|r| (r.address.as_str(), r.local)).collect();
    assert_eq!(recipients, [("friend@remote.example", false), ("bob@example.org", true)]);
    assert!(body.contains("with ESMTPSA id"), "{body}");
    assert!(body.contains("(using TLSv1.3 with cipher"), "{body}");
}

#[tokio::test]
async fn auth_login_and_cancellation() {
    let f = Fixture::start().await;
    let mut tls = f.connect(Listener::Submission).await;
    tls.command("EHLO laptop", 250).await;
    let mut tls = tls.starttls(&f.tls_connector()).await;
    tls.command("EHLO laptop", 250).await;
    assert_eq!(tls.command("AUTH LOGIN", 334).await, "VXNlcm5hbWU6");
    assert!(tls.command("*", 501).await.starts_with("5.0.0"));
    tls.command("AUTH PLAIN", 334).await;
    assert!(tls.command("not base64!", 501).await.starts_with("5.5.2"));
    assert!(tls.command("AUTH CRAM-MD5", 504).await.starts_with("5.5.4"));
    tls.command("AUTH LOGIN", 334).await;
    assert_eq!(tls.command(&b64("alice@example.org"), 334).await, "UGFzc3dvcmQ6");
    tls.command(&b64("secret"), 235).await;
}

#[tokio::test]
async fn repeated_auth_failures_close_the_session() {
    let f = Fixture::start().await;
    let mut tls = f.connect(Listener::Submission).await;
    tls.command("EHLO laptop", 250).await;
    let mut tls = tls.starttls(&f.tls_connector()).await;
    tls.command("EHLO laptop", 250).await;
    for _ in 0..3 {
        tls.command(&format!("AUTH PLAIN {}", plain("alice@example.org", "guess")), 535).await;
    }
    assert!(tls.expect(421).await.starts_with("4.7.0"));
    assert!(tls.closed().await);
}

#[tokio::test]
async fn failed_auth_from_one_address_is_answered_ever_later_across_sessions() {
    let base = Duration::from_millis(50);
    let f = Fixture::with_settings(Settings { auth_failure_delay: base, ..test_settings() }).await;
    let mut last = Duration::ZERO;
    // Reconnecting does not start the count over: the fourth failure from one address, in a
    // session of its own, waits 2^3 times the first one's delay.
    for _ in 0..4 {
        let mut tls = f.connect(Listener::Submission).await;
        tls.command("EHLO laptop", 250).await;
        let mut tls = tls.starttls(&f.tls_connector()).await;
        tls.command("EHLO laptop", 250).await;
        let started = std::time::Instant::now();
        tls.command(&format!("AUTH PLAIN {}", plain("alice@example.org", "guess")), 535).await;
        last = started.elapsed();
    }
    assert!(last >= base * 8, "the fourth failure from one address was answered after {last:?}");
}

#[tokio::test]
async fn commands_pipelined_after_starttls_are_discarded() {
    let f = Fixture::start().await;
    let mut mx = f.connect(Listener::Mx).await;
    mx.command("EHLO client.example", 250).await;
    // RFC 3207 §4.2 / CVE-2011-0411: a plaintext command injected behind STARTTLS must not be
    // executed inside the TLS session.
    mx.send("STARTTLS\r\nMAIL FROM:<injected@remote.example>\r\n").await;
    mx.expect(220).await;
    let stream = mx.into_stream();
    let tls = f
        .tls_connector()
        .connect(rustls::pki_types::ServerName::try_from(common::HOSTNAME).unwrap(), stream)
        .await
        .expect("handshake");
    let mut tls = common::Client::new(tls);
    tls.command("EHLO client.example", 250).await;
    tls.command("MAIL FROM:<a@remote.example>", 250).await;
}

#[tokio::test]
async fn an_idle_client_is_timed_out() {
    let f = Fixture::with_settings(Settings { command_timeout: Duration::from_millis(300), ..test_settings() }).await;
    let mut mx = f.connect(Listener::Mx).await;
    assert!(mx.expect(421).await.starts_with("4.4.2"));
    assert!(mx.closed().await);
}

#[tokio::test]
async fn shutdown_lets_a_transaction_finish_and_then_says_421() {
    let f = Fixture::start().await;
    let mut mx = f.connect(Listener::Mx).await;
    mx.command("EHLO client.example", 250).await;
    mx.command("MAIL FROM:<a@remote.example>", 250).await;
    f.services.shutdown.trigger();
    mx.command("RCPT TO:<alice@example.org>", 250).await;
    mx.command("DATA", 354).await;
    mx.send(&format!("{MESSAGE}.\r\n")).await;
    mx.expect(250).await;
    assert!(mx.expect(421).await.starts_with("4.3.2"));
    assert!(mx.closed().await);
    assert_eq!(f.queued().await.len(), 1);
}

#[tokio::test]
async fn a_slow_drip_client_is_timed_out_per_line() {
    let f = Fixture::with_settings(Settings { command_timeout: Duration::from_millis(500), ..test_settings() }).await;
    let mut mx = f.connect(Listener::Mx).await;
    // One octet every 100 ms keeps each read inside the timeout, but not the line.
    for byte in b"EHLO slow.example" {
        mx.send_until_closed(&[*byte]).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(mx.expect(421).await.starts_with("4.4.2"));
    assert!(mx.closed().await);
}

#[tokio::test]
async fn control_characters_cannot_smuggle_headers_through_addresses_or_helo() {
    let f = Fixture::start().await;
    let mut mx = f.connect(Listener::Mx).await;
    // A bare CR survives line reading; written into the envelope or a header, it would start a
    // new header on any hop that takes CR as a line end. The parser drops it; any other control
    // character in an address is refused.
    mx.command("EHLO client.example\rBcc: victim@remote.example", 250).await;
    for sender in
        ["<a\rBcc: victim@remote.example@remote.example>", "<a\u{0}b@remote.example>", "<a\u{b}b@remote.example>"]
    {
        assert!(mx.command(&format!("MAIL FROM:{sender}"), 501).await.starts_with("5.1.7"), "{sender:?}");
    }
    mx.command("MAIL FROM:<\"a\rX-Evil: 1\"@remote.example>", 250).await;
    for recipient in ["<bob\u{0}@example.org>", "<bob\u{b}@example.org>"] {
        assert!(mx.command(&format!("RCPT TO:{recipient}"), 501).await.starts_with("5.1.3"), "{recipient:?}");
    }
    mx.command("RCPT TO:<bob\r@example.org>", 250).await;
    mx.command("DATA", 354).await;
    mx.send(&format!("{MESSAGE}.\r\n")).await;
    mx.expect(250).await;

    let queued = f.queued().await;
    let (envelope, body) = &queued[0];
    assert_eq!(envelope.mail_from, "aX-Evil: 1@remote.example");
    assert_eq!(envelope.recipients.iter().map(|r| r.address.as_str()).collect::<Vec<_>>(), ["bob@example.org"]);
    let trace = body.split("\r\n").take_while(|line| !line.starts_with("From:")).collect::<Vec<_>>();
    assert!(trace.iter().all(|line| !line.contains(['\r', '\n', '\u{0}'])), "{trace:?}");
    assert_eq!(trace[0], "Received: from client.exampleBcc: ([192.0.2.10])");
    assert!(trace[1..].iter().all(|line| line.starts_with('\t')), "one Received header: {trace:?}");
}

#[tokio::test]
async fn ten_thousand_recipients_end_in_a_bounded_refusal() {
    let f = Fixture::start().await;
    let mut mx = f.connect(Listener::Mx).await;
    mx.command("EHLO client.example", 250).await;
    mx.command("MAIL FROM:<a@remote.example>", 250).await;
    let flood: String = (0..10_000).map(|i| format!("RCPT TO:<alice+{i}@example.org>\r\n")).collect();
    mx.send_until_closed(flood.as_bytes()).await;
    let mut codes = Vec::new();
    while let Some(reply) = mx.reply().await {
        codes.push(reply.code);
    }
    // 5 recipients accepted, then 452: the first 1,000 past the limit are tolerated (the
    // client is expected to send the rest later), the next 10 reach the error limit.
    assert_eq!(codes[..5], [250; 5]);
    assert_eq!(codes[5..1015], [452; 1010]);
    assert_eq!(codes[1015..], [421]);
    assert!(f.queued().await.is_empty());
}

#[tokio::test]
async fn a_domain_catch_all_takes_unknown_local_parts() {
    let f = Fixture::start().await;
    let mut mx = f.connect(Listener::Mx).await;
    mx.command("EHLO client.example", 250).await;
    mx.command("MAIL FROM:<a@remote.example>", 250).await;
    // example.com sends unknown local parts to alice; example.org has no catch-all.
    assert!(mx.command("RCPT TO:<anyone@example.com>", 250).await.starts_with("2.1.5"));
    assert!(mx.command("RCPT TO:<anyone@example.org>", 550).await.starts_with("5.1.1"));
    mx.command("DATA", 354).await;
    mx.send(&format!("{MESSAGE}.\r\n")).await;
    mx.expect(250).await;
    let queued = f.queued().await;
    assert_eq!(queued.len(), 1);
    let recipients: Vec<_> = queued[0].0.recipients.iter().map(|r| (r.address.as_str(), r.local)).collect();
    assert_eq!(recipients, [("anyone@example.com", true)]);
}

#[tokio::test]
async fn a_bdat_chunk_over_the_size_limit_gets_552_and_the_rest_is_discarded() {
    let f = Fixture::start().await;
    let mut mx = f.connect(Listener::Mx).await;
    mx.command("EHLO client.example", 250).await;
    mx.command("MAIL FROM:<a@remote.example>", 250).await;
    mx.command("RCPT TO:<alice@example.org>", 250).await;
    // One chunk of 70,000 octets, over the 65,536 allowed.
    mx.send(&format!("BDAT 70000 LAST\r\n{}", "x".repeat(70_000))).await;
    assert!(mx.expect(552).await.starts_with("5.3.4"));

    mx.command("MAIL FROM:<a@remote.example>", 250).await;
    mx.command("RCPT TO:<alice@example.org>", 250).await;
    let filler = "x".repeat(40_000);
    mx.send(&format!("BDAT 40000\r\n{filler}")).await;
    mx.expect(250).await;
    // The second chunk takes the message to 80,000 octets; the client streams its last chunk
    // behind it, and that chunk's commands must not run (RFC 3030 §2: after a failed chunk the
    // server accepts and discards the ones already sent).
    let smuggled = "MAIL FROM:<smuggled@remote.example>\r\nRCPT TO:<alice@example.org>\r\n";
    mx.send(&format!("BDAT 40000\r\n{filler}BDAT {} LAST\r\n{smuggled}", smuggled.len())).await;
    assert!(mx.expect(552).await.starts_with("5.3.4"), "the chunk that goes over the limit fails");
    let discarded = mx.reply().await.expect("a reply to the chunk after the failed one");
    assert!(discarded.code >= 500, "a chunk after a failed one is discarded: {discarded:?}");
    mx.command("NOOP", 250).await;

    // The session is still in step: the next message is taken.
    mx.command("MAIL FROM:<a@remote.example>", 250).await;
    mx.command("RCPT TO:<alice@example.org>", 250).await;
    mx.send(&format!("BDAT {} LAST\r\n{MESSAGE}", MESSAGE.len())).await;
    mx.expect(250).await;
    let queued = f.queued().await;
    assert_eq!(queued.len(), 1, "only the message within the limit is queued");
    assert!(queued[0].1.ends_with(MESSAGE));
}

#[tokio::test]
async fn an_auth_response_over_the_limit_is_refused_and_the_session_goes_on() {
    let f = Fixture::start().await;
    let mut tls = f.connect(Listener::Submission).await;
    tls.command("EHLO laptop", 250).await;
    let mut tls = tls.starttls(&f.tls_connector()).await;
    tls.command("EHLO laptop", 250).await;
    // RFC 4954 §4: responses up to 12,288 octets are read; this one of 11,868 is checked (and
    // its password is wrong).
    let long_password = "p".repeat(8_880);
    let response = plain("alice@example.org", &long_password);
    assert_eq!(response.len(), 11_868);
    tls.command("AUTH PLAIN", 334).await;
    assert!(tls.command(&response, 535).await.starts_with("5.7.8"));
    // Longer ones are refused, however long: what goes beyond the limit is dropped as it arrives.
    tls.command("AUTH PLAIN", 334).await;
    assert!(tls.command(&"A".repeat(12_288), 500).await.starts_with("5.5.2"));
    tls.command("AUTH LOGIN", 334).await;
    assert!(tls.command(&"A".repeat(200_000), 500).await.starts_with("5.5.2"));
    tls.command("NOOP", 250).await;
    tls.command(&format!("AUTH PLAIN {}", plain("alice@example.org", "secret")), 235).await;
}

#[tokio::test]
async fn a_client_that_stops_sending_a_message_is_timed_out() {
    let data_timeout = Duration::from_millis(300);
    let f = Fixture::with_settings(Settings { data_timeout, ..test_settings() }).await;
    // DATA and BDAT both wait at most the data timeout for more of the body (the command
    // timeout, 10 s here, is not what ends them).
    for (command, partial) in [("DATA", "Subject: half\r\n\r\nThe rest never"), ("BDAT 1000 LAST", "Subject: half")] {
        let mut mx = f.connect(Listener::Mx).await;
        mx.command("EHLO client.example", 250).await;
        mx.command("MAIL FROM:<a@remote.example>", 250).await;
        mx.command("RCPT TO:<alice@example.org>", 250).await;
        if command == "DATA" {
            mx.command(command, 354).await;
            mx.send(partial).await;
        } else {
            mx.send(&format!("{command}\r\n{partial}")).await;
        }
        let stopped = Instant::now();
        assert!(mx.expect(421).await.starts_with("4.4.2"), "{command}");
        assert!(mx.closed().await, "{command}");
        assert!(stopped.elapsed() < Duration::from_secs(5), "{command}: cut off after {:?}", stopped.elapsed());
    }
    assert!(f.queued().await.is_empty());
}

#[tokio::test]
async fn a_client_silent_after_starttls_is_disconnected() {
    let command_timeout = Duration::from_millis(300);
    let f = Fixture::with_settings(Settings { command_timeout, ..test_settings() }).await;
    // No ClientHello at all, and the first five octets of one (a TLS record header).
    for sent in [&b""[..], b"\x16\x03\x01\x02\x00"] {
        let mut mx = f.connect(Listener::Mx).await;
        mx.command("EHLO client.example", 250).await;
        mx.command("STARTTLS", 220).await;
        let started = Instant::now();
        mx.send_bytes(sent).await;
        assert!(mx.closed().await, "the handshake is abandoned after {sent:?}");
        let waited = started.elapsed();
        assert!(waited >= command_timeout / 2, "the client had time to start: {waited:?}");
        assert!(waited < Duration::from_secs(5), "disconnected after {waited:?}");
    }
}
