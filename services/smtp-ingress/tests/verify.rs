//! SPF, DKIM and DMARC of inbound mail against a DNS server of the test's own: the results in
//! the Authentication-Results header, a DMARC `p=reject` enforced when asked, forged results in
//! this server's name removed.

mod common;

use base64::Engine as _;
use common::{Client, Fixture, HOSTNAME, test_settings};
use kubemail_smtp_ingress::session::Listener;
use kubemail_smtp_ingress::verify::Verifier;
use kubemail_testkit::dns::Dns;
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::DkimSigner;
use tokio::io::DuplexStream;

/// remote.example signs with DKIM (selector `sel`, Ed25519), sends from the fixture's client
/// address and publishes DMARC p=reject; bank.example sends from elsewhere, also p=reject.
/// A verifier asking `dns` only.
fn verifier(dns: &Dns, enforce_dmarc_reject: bool) -> Verifier {
    let (config, options) = dns.resolver_config();
    Verifier::with_resolver(config, options, HOSTNAME, enforce_dmarc_reject).expect("resolver")
}

async fn dns() -> (Dns, Ed25519Key) {
    let dns = Dns::start().await;
    let pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
    let key = Ed25519Key::from_pkcs8_der(&pkcs8).unwrap();
    let public = base64::engine::general_purpose::STANDARD.encode(key.public_key());
    dns.txt("remote.example", &format!("v=spf1 ip4:{} -all", common::CLIENT_IP));
    dns.txt("sel._domainkey.remote.example", &format!("v=DKIM1; k=ed25519; p={public}"));
    dns.txt("_dmarc.remote.example", "v=DMARC1; p=reject");
    dns.txt("bank.example", "v=spf1 ip4:198.51.100.1 -all");
    dns.txt("_dmarc.bank.example", "v=DMARC1; p=reject");
    (dns, key)
}

async fn send(client: &mut Client<DuplexStream>, mail_from: &str, message: &str) -> common::Reply {
    client.command("EHLO client.example", 250).await;
    client.command(&format!("MAIL FROM:<{mail_from}>"), 250).await;
    client.command("RCPT TO:<alice@example.org>", 250).await;
    client.command("DATA", 354).await;
    client.send(&format!("{message}.\r\n")).await;
    client.reply().await.expect("a reply")
}

#[tokio::test]
async fn signed_mail_from_an_authorised_address_passes_everything() {
    let (dns, key) = dns().await;
    let f = Fixture::build(test_settings(), Some(verifier(&dns, true))).await;
    let message = "From: news@remote.example\r\nTo: alice@example.org\r\nSubject: news\r\n\r\nHello.\r\n";
    let signature = DkimSigner::from_key(key)
        .domain("remote.example")
        .selector("sel")
        .headers(["From", "To", "Subject"])
        .sign(message.as_bytes())
        .unwrap();
    let signed = format!("{}{message}", signature.to_header());
    // A forged verdict in this server's name must not reach alice.
    let forged = format!("Authentication-Results: {HOSTNAME}; dkim=pass header.d=bank.example\r\n{signed}");
    let mut mx = f.connect(Listener::Mx).await;
    assert_eq!(send(&mut mx, "news@remote.example", &forged).await.code, 250);
    let body = f.queued().await.remove(0).1;
    let results: Vec<&str> = body.split("\r\n").skip_while(|l| !l.starts_with("Authentication-Results:")).collect();
    let header =
        results.iter().take_while(|l| !l.starts_with("DKIM-Signature")).copied().collect::<Vec<_>>().join("\n");
    assert!(header.starts_with(&format!("Authentication-Results: {HOSTNAME}")), "{body}");
    for verdict in ["dkim=pass", "spf=pass", "dmarc=pass"] {
        assert!(header.contains(verdict), "{verdict} in {header}");
    }
    assert_eq!(body.matches("Authentication-Results:").count(), 1, "the forged one is gone: {body}");
    assert!(body.starts_with("Received: "), "the Received header comes first: {body}");
}

#[tokio::test]
async fn a_forged_sender_is_refused_under_dmarc_reject_when_enforced_and_marked_otherwise() {
    let message = "From: ceo@bank.example\r\nTo: alice@example.org\r\nSubject: urgent transfer\r\n\r\nPay.\r\n";
    let (dns, _) = dns().await;
    let enforcing = Fixture::build(test_settings(), Some(verifier(&dns, true))).await;
    let mut mx = enforcing.connect(Listener::Mx).await;
    let refused = send(&mut mx, "ceo@bank.example", message).await;
    assert_eq!(refused.code, 550, "{refused:?}");
    assert!(refused.text().starts_with("5.7.1") && refused.text().contains("bank.example"), "{refused:?}");
    assert!(enforcing.queued().await.is_empty());

    let recording = Fixture::build(test_settings(), Some(verifier(&dns, false))).await;
    let mut mx = recording.connect(Listener::Mx).await;
    assert_eq!(send(&mut mx, "ceo@bank.example", message).await.code, 250);
    let body = recording.queued().await.remove(0).1;
    for verdict in ["spf=fail", "dmarc=fail", "policy.dmarc=reject"] {
        assert!(body.contains(verdict), "{verdict} in {body}");
    }
}
