//! An IMAP session fed arbitrary client input, logged in or not as the input says, over an
//! account whose INBOX holds a plain, a multipart and a forwarded message. The first octet
//! picks how many octets each read gets; the rest is what the client sends. The session must
//! end once the input does, and every response must be framed as RFC 9051 says.
//!
//! The mailstore lives as long as the process, so what one input changes (flags, expunges, new
//! mailboxes) the next one sees, as a real account would.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kubemail_imap_frontend::config::SessionFlags;
use kubemail_imap_frontend::imap;
use kubemail_imap_frontend::services::{Services, Settings};
use kubemail_imap_frontend::{ImapFrontend, ServiceSettings, Transports};
use kubemail_runtime::config::flag_defaults;
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::tls::Connection;

use crate::backend::{self, Backend, Harness};
use crate::smtp::read_size;
use crate::wire::{self, Response};

const HOSTNAME: &str = "imap.example.org";

/// The INBOX every run starts from; sessions log in as `alice@example.org` with the testkit's
/// password.
const MESSAGES: [&[u8]; 3] = [
    b"From: Bob <bob@example.org>\r\nTo: alice@example.org\r\nSubject: plain\r\nDate: Thu, 26 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@example.org>\r\n\r\nHello Alice.\r\n",
    b"From: bob@example.org\r\nTo: alice@example.org, \"Carol, C.\" <carol@example.org>\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9\r\n--b1\r\nContent-Type: application/octet-stream; name=a.bin\r\nContent-Disposition: attachment; filename=a.bin\r\nContent-Transfer-Encoding: base64\r\n\r\nAAECAwQF\r\n--b1--\r\n",
    b"From: carol@example.org\r\nTo: alice@example.org\r\nSubject: fwd\r\nMIME-Version: 1.0\r\nContent-Type: message/rfc822\r\n\r\nFrom: dave@example.net\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\ninner text\r\n--x\r\nContent-Type: text/html\r\n\r\n<p>inner</p>\r\n--x--\r\n",
];

fn harness() -> &'static Harness<Services> {
    static HARNESS: OnceLock<Harness<Services>> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let backend = Backend::start(HOSTNAME);
        let session = Settings {
            auth_failure_delay: Duration::ZERO,
            // LOGIN is reachable without a TLS handshake the input cannot complete.
            allow_plaintext_auth: true,
            default_domain: Some("example.org".into()),
            ..flag_defaults::<SessionFlags>().settings(HOSTNAME, 64 * 1024, 3, 10)
        };
        let settings = ServiceSettings {
            tls: Some(backend.tls.clone()),
            select_cache_min_messages: 1,
            ..ServiceSettings::new(session, Duration::from_secs(300), 1000)
        };
        let transports = Transports {
            events: Arc::new(backend.transport.events.clone()),
            mailstore: backend.mailstore.channel.clone(),
        };
        // The services start tasks (the login cache's listener), so inside the runtime.
        let services = backend.runtime.block_on(async {
            for message in MESSAGES {
                backend.mailstore.deliver("alice@example.org", message).await;
            }
            ImapFrontend::new(settings, transports, Shutdown::new()).services()
        });
        Harness { backend, services }
    })
}

/// Runs one session on `input` and returns its responses; panics on anything a client would
/// notice.
pub fn session(input: &[u8]) -> Vec<Response> {
    let Some((&mode, client)) = input.split_first() else { return Vec::new() };
    let harness = harness();
    harness.backend.runtime.block_on(async {
        let services = harness.services.clone();
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let output = backend::converse(client, read_size(mode), move |server| {
            imap::serve(Connection::Plain(server), loopback, services)
        })
        .await;
        let responses = wire::imap_responses(&output).unwrap_or_else(|problem| panic!("{problem}"));
        assert_eq!(responses.first(), Some(&Response::Untagged), "the session opens with an untagged greeting");
        responses
    })
}
