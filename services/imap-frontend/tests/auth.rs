//! Sessions before and at login: the greeting and capabilities, STARTTLS, LOGIN, AUTHENTICATE
//! PLAIN and LOGIN (with and without SASL-IR), and what is refused before TLS or login.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use std::time::{Duration, Instant};

use common::{Fixture, PASSWORD, test_settings};

/// The capabilities of a `* CAPABILITY …` line or a `[CAPABILITY …]` response code.
fn capabilities(line: &str) -> Vec<&str> {
    let listed = line.split_once("CAPABILITY ").map_or("", |(_, rest)| rest);
    listed.split(']').next().unwrap_or_default().split(' ').collect()
}

#[tokio::test]
async fn before_tls_passwords_are_refused_and_starttls_is_offered() {
    let f = Fixture::start().await;
    let (mut client, greeting) = f.connect().await;
    assert!(greeting.starts_with("* OK [CAPABILITY IMAP4rev1 IMAP4rev2 "), "{greeting}");
    let offered = capabilities(&greeting);
    for expected in ["STARTTLS", "LOGINDISABLED", "SASL-IR", "LITERAL+", "ID", "ENABLE"] {
        assert!(offered.contains(&expected), "{expected} missing from {greeting}");
    }
    assert!(!offered.iter().any(|c| c.starts_with("AUTH=")), "no mechanism before TLS: {greeting}");
    let listed = client.command("a CAPABILITY").await.expect_ok();
    assert_eq!(capabilities(&listed[0]), offered, "CAPABILITY says what the greeting said");

    let refused = client.command(&format!("b LOGIN alice@example.org {PASSWORD}")).await;
    assert!(refused.status().starts_with("NO [PRIVACYREQUIRED]"), "{refused:?}");
    let refused = client.command("c AUTHENTICATE PLAIN AGFsaWNlQGV4YW1wbGUub3JnAHNlY3JldA==").await;
    assert!(refused.status().starts_with("NO [PRIVACYREQUIRED]"), "{refused:?}");
    let refused = client.command("d SELECT INBOX").await;
    assert!(refused.status().starts_with("BAD"), "no mailbox before login: {refused:?}");
    client.command("e NOOP").await.expect_ok();
}

#[tokio::test]
async fn starttls_then_login_with_the_mailstore_password() {
    let f = Fixture::start().await;
    let (mut client, _) = f.connect().await;
    client.command("a STARTTLS").await.expect_ok();
    let mut client = f.upgrade(client).await;
    let listed = client.command("b CAPABILITY").await.expect_ok();
    let offered = capabilities(&listed[0]);
    assert!(offered.contains(&"AUTH=PLAIN") && offered.contains(&"AUTH=LOGIN"), "{offered:?}");
    assert!(!offered.contains(&"STARTTLS") && !offered.contains(&"LOGINDISABLED"), "{offered:?}");
    let again = client.command("c STARTTLS").await;
    assert!(again.status().starts_with("BAD"), "{again:?}");

    let wrong = client.command("d LOGIN alice@example.org wrong").await;
    assert!(wrong.status().starts_with("NO [AUTHENTICATIONFAILED]"), "{wrong:?}");
    let unknown = client.command(&format!("e LOGIN nobody@example.org {PASSWORD}")).await;
    assert_eq!(unknown.status(), wrong.status(), "an unknown user looks like a wrong password");
    let suspended = client.command(&format!("f LOGIN carol@example.org {PASSWORD}")).await;
    assert!(suspended.status().starts_with("NO [CONTACTADMIN]"), "{suspended:?}");

    let logged_in = client.command(&format!("g LOGIN \"alice@example.org\" {{6}}\r\n{PASSWORD}")).await;
    // The synchronizing literal was answered with a continuation request first.
    assert_eq!(logged_in.untagged, ["+ Ready for literal data"]);
    assert!(logged_in.status().starts_with("OK [CAPABILITY IMAP4rev1 IMAP4rev2"), "{logged_in:?}");
    let after = capabilities(&logged_in.tagged);
    assert!(!after.iter().any(|c| c.starts_with("AUTH=") || *c == "SASL-IR"), "{after:?}");
    for offered in ["IDLE", "MOVE", "UIDPLUS", "QUOTA", "SPECIAL-USE", "NAMESPACE", "UTF8=ACCEPT"] {
        assert!(after.contains(&offered), "{offered} after login: {after:?}");
    }
    let again = client.command(&format!("h LOGIN alice@example.org {PASSWORD}")).await;
    assert!(again.status().starts_with("BAD"), "already logged in: {again:?}");

    let bye = client.command("i LOGOUT").await;
    assert_eq!(bye.untagged, ["* BYE Logging out"]);
    assert!(bye.status().starts_with("OK"));
    assert!(client.rest_until_closed().await.is_empty(), "closed after LOGOUT");
}

#[tokio::test]
async fn authenticate_plain_and_login_with_and_without_an_initial_response() {
    let f = Fixture::start().await;
    let plain = BASE64.encode(format!("\0alice@example.org\0{PASSWORD}"));

    let tls_client = async || {
        let (mut client, _) = f.connect().await;
        client.command("s STARTTLS").await.expect_ok();
        f.upgrade(client).await
    };

    let mut client = tls_client().await;
    client.command(&format!("a AUTHENTICATE PLAIN {plain}")).await.expect_ok();

    let mut client = tls_client().await;
    client.send(b"a AUTHENTICATE PLAIN\r\n").await;
    assert_eq!(client.line().await.unwrap(), "+ ", "PLAIN starts with an empty challenge");
    client.send(format!("{plain}\r\n").as_bytes()).await;
    assert!(client.responses("a").await.status().starts_with("OK [CAPABILITY"));

    let mut client = tls_client().await;
    client.send(b"a AUTHENTICATE LOGIN\r\n").await;
    assert_eq!(client.line().await.unwrap(), format!("+ {}", BASE64.encode("Username:")));
    client.send(format!("{}\r\n", BASE64.encode("bob@example.org")).as_bytes()).await;
    assert_eq!(client.line().await.unwrap(), format!("+ {}", BASE64.encode("Password:")));
    client.send(format!("{}\r\n", BASE64.encode(PASSWORD)).as_bytes()).await;
    client.responses("a").await.expect_ok();

    // Cancelled, malformed, acting as someone else, an unknown mechanism.
    let mut client = tls_client().await;
    client.send(b"a AUTHENTICATE PLAIN\r\n").await;
    client.line().await.unwrap();
    client.send(b"*\r\n").await;
    assert!(client.responses("a").await.status().starts_with("BAD"));
    client.send(b"b AUTHENTICATE PLAIN\r\n").await;
    client.line().await.unwrap();
    client.send(b"not base64!\r\n").await;
    assert!(client.responses("b").await.status().starts_with("BAD"));
    let other = BASE64.encode(format!("bob@example.org\0alice@example.org\0{PASSWORD}"));
    let refused = client.command(&format!("c AUTHENTICATE PLAIN {other}")).await;
    assert!(refused.status().starts_with("NO [AUTHENTICATIONFAILED]"), "{refused:?}");
    let refused = client.command("d AUTHENTICATE CRAM-MD5").await;
    assert!(refused.status().starts_with("NO [CANNOT]"), "{refused:?}");
    client.command(&format!("e AUTHENTICATE PLAIN {plain}")).await.expect_ok();
}

#[tokio::test]
async fn too_many_failed_logins_end_the_connection() {
    let f = Fixture::start().await;
    let mut client = {
        let (mut client, _) = f.connect().await;
        client.command("s STARTTLS").await.expect_ok();
        f.upgrade(client).await
    };
    for tag in ["a", "b"] {
        let failed = client.command(&format!("{tag} LOGIN alice@example.org wrong")).await;
        assert!(failed.status().starts_with("NO [AUTHENTICATIONFAILED]"));
    }
    let last = client.command("c LOGIN alice@example.org wrong").await;
    assert!(last.status().starts_with("NO [AUTHENTICATIONFAILED]"));
    assert_eq!(client.rest_until_closed().await, ["* BYE Too many failed logins"]);
}

#[tokio::test]
async fn failed_logins_from_one_address_are_answered_ever_later_across_sessions() {
    let base = Duration::from_millis(50);
    let f = Fixture::with_settings(common::Settings { auth_failure_delay: base, ..test_settings() }).await;
    let failed_login = |ip: &'static str| {
        let f = &f;
        async move {
            let (mut client, _) = f.connect_from(ip.parse().unwrap()).await;
            client.command("s STARTTLS").await.expect_ok();
            let mut client = f.upgrade(client).await;
            let started = Instant::now();
            let failed = client.command("a LOGIN alice@example.org wrong").await;
            assert!(failed.status().starts_with("NO [AUTHENTICATIONFAILED]"), "{}", failed.status());
            started.elapsed()
        }
    };
    // Reconnecting does not start the count over: the fourth failure from one address waits
    // 2^3 times the first one's delay.
    for _ in 0..3 {
        failed_login("192.0.2.77").await;
    }
    let fourth = failed_login("192.0.2.77").await;
    assert!(fourth >= base * 8, "the fourth failure from one address was answered after {fourth:?}");
}

#[tokio::test]
async fn a_dev_server_may_allow_passwords_without_tls_from_loopback_only() {
    let f = Fixture::with_settings(common::Settings { allow_plaintext_auth: true, ..test_settings() }).await;
    let (mut client, greeting) = f.connect_from("127.0.0.1".parse().unwrap()).await;
    let offered = capabilities(&greeting);
    assert!(offered.contains(&"AUTH=PLAIN") && !offered.contains(&"LOGINDISABLED"), "{greeting}");
    client.command(&format!("a LOGIN alice@example.org {PASSWORD}")).await.expect_ok();

    let (mut client, greeting) = f.connect().await;
    assert!(capabilities(&greeting).contains(&"LOGINDISABLED"), "{greeting}");
    let refused = client.command(&format!("a LOGIN alice@example.org {PASSWORD}")).await;
    assert!(refused.status().starts_with("NO [PRIVACYREQUIRED]"), "{refused:?}");
}

#[tokio::test]
async fn id_answers_with_the_server_name() {
    let f = Fixture::start().await;
    let (mut client, _) = f.connect().await;
    let id = client.command("a ID (\"name\" \"test\")").await.expect_ok();
    assert!(id[0].starts_with("* ID (\"name\" \"kubemail\" \"version\" "), "{id:?}");
    client.command("b ID NIL").await.expect_ok();
}

/// A fresh TLS session's answer to LOGIN as `user` with `password`.
async fn login(f: &Fixture, user: &str, password: &str) -> String {
    let (mut client, _) = f.connect().await;
    client.command("t STARTTLS").await.expect_ok();
    let mut client = f.upgrade(client).await;
    client.command(&format!("a LOGIN {user} \"{password}\"")).await.tagged
}

/// Waits until the fixture's login cache follows account changes.
async fn cache_is_live(f: &Fixture) {
    for _ in 0..100 {
        if f.services.logins.is_live() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the login cache never subscribed to account changes");
}

#[tokio::test]
async fn a_login_is_remembered_without_the_password_and_forgotten_when_it_changes() {
    use kubemail_proto::admin::{SetPasswordRequest, UpsertAccountRequest};

    let f = Fixture::start().await;
    cache_is_live(&f).await;
    assert!(login(&f, "alice@example.org", PASSWORD).await.starts_with("a OK"));
    assert!(login(&f, "bob@example.org", PASSWORD).await.starts_with("a OK"));

    // A new password works at once; the old one is refused at once, though it was remembered.
    let mut admin = f.mailstore.admin.clone();
    let request = SetPasswordRequest { address: "alice@example.org".into(), password: "n3w-Secret".into() };
    admin.set_password(request).await.expect("password changed");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(login(&f, "alice@example.org", PASSWORD).await.starts_with("a NO [AUTHENTICATIONFAILED]"));
    assert!(login(&f, "alice@example.org", "n3w-Secret").await.starts_with("a OK"));

    // Suspending bob ends his remembered login too.
    let suspend =
        UpsertAccountRequest { address: "bob@example.org".into(), suspended: Some(true), ..Default::default() };
    admin.upsert_account(suspend).await.expect("suspended");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(login(&f, "bob@example.org", PASSWORD).await.starts_with("a NO [CONTACTADMIN]"));

    // What is remembered is answered without the mailstore; a wrong password is not.
    f.mailstore.stop();
    assert!(login(&f, "alice@example.org", "n3w-Secret").await.starts_with("a OK"), "remembered");
    let unknown = login(&f, "alice@example.org", "guess").await;
    assert!(unknown.starts_with("a NO [UNAVAILABLE]"), "only the mailstore can say: {unknown}");
}

#[tokio::test]
async fn a_login_name_without_a_domain_takes_the_default_one() {
    let settings = common::Settings { default_domain: Some("example.org".into()), ..test_settings() };
    let f = Fixture::with_settings(settings).await;
    assert!(login(&f, "alice", PASSWORD).await.starts_with("a OK"));
    assert!(login(&f, "alice@example.org", PASSWORD).await.starts_with("a OK"), "whole addresses still work");
    assert!(login(&f, "alice", "wrong").await.starts_with("a NO [AUTHENTICATIONFAILED]"));

    let without = Fixture::start().await;
    assert!(login(&without, "alice", PASSWORD).await.starts_with("a NO [AUTHENTICATIONFAILED]"));
}

#[tokio::test]
async fn unauthenticate_returns_to_the_greeting_state_for_another_login() {
    let f = Fixture::start().await;
    f.mailstore.deliver("alice@example.org", b"From: carol@example.org\r\nSubject: for alice\r\n\r\nHi.\r\n").await;
    let mut client = f.logged_in("alice@example.org").await;
    let capabilities = client.command("c CAPABILITY").await.expect_ok();
    assert!(capabilities[0].split(' ').any(|word| word == "UNAUTHENTICATE"), "{capabilities:?}");
    client.command("e ENABLE UTF8=ACCEPT").await.expect_ok();
    client.command("s SELECT INBOX").await.expect_ok();
    client.command("f STORE 1 +FLAGS.SILENT (\\Deleted)").await.expect_ok();

    assert_eq!(client.command("u UNAUTHENTICATE").await.expect_ok(), Vec::<String>::new());
    let refused = client.command("l LIST \"\" *").await;
    assert!(refused.status().starts_with("BAD"), "no longer logged in: {refused:?}");
    let before_login = client.command("c CAPABILITY").await.expect_ok();
    assert!(before_login[0].contains("AUTH=PLAIN") && !before_login[0].contains("UNAUTHENTICATE"), "{before_login:?}");

    client.command(&format!("l LOGIN bob@example.org {PASSWORD}")).await.expect_ok();
    let bob = client.command("s SELECT INBOX").await.expect_ok();
    assert!(bob.contains(&"* 0 EXISTS".to_string()), "bob's INBOX, not alice's: {bob:?}");
    let mut alice = f.logged_in("alice@example.org").await;
    let kept = alice.command("s SELECT INBOX").await.expect_ok();
    assert!(kept.contains(&"* 1 EXISTS".to_string()), "leaving did not expunge: {kept:?}");
    let again = client.command("u UNAUTHENTICATE").await;
    assert!(again.tagged.starts_with("u OK"), "{again:?}");
    let twice = client.command("v UNAUTHENTICATE").await;
    assert!(twice.status().starts_with("BAD"), "{twice:?}");
}
