//! An SMTP session fed arbitrary client input. The first octet picks the listener (MX or
//! submission) and how many octets each read gets; the rest is what the client sends. The
//! session must end once the input does, every reply must be framed as RFC 5321 says, and
//! every message answered `queued as <id>` must be in the queue with its body in the spool.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kubemail_proto::Message as _;
use kubemail_proto::queue::Envelope;
use kubemail_runtime::config::flag_defaults;
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::{Queue as _, Spool as _};
use kubemail_smtp_ingress::config::LimitFlags;
use kubemail_smtp_ingress::session::io::Connection;
use kubemail_smtp_ingress::session::{self, Listener, Services, Settings};
use kubemail_smtp_ingress::{ServiceSettings, SmtpIngress, Transports};

use crate::backend::{self, Backend, Harness};
use crate::wire;

const HOSTNAME: &str = "mx.example.org";
/// What a `250` to a message body says before the queue id.
const QUEUED_AS: &str = "250 2.0.0 OK: queued as ";

fn harness() -> &'static Harness<Services> {
    static HARNESS: OnceLock<Harness<Services>> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let backend = Backend::start(HOSTNAME);
        let channel = backend.mailstore.channel.clone();
        let session = Settings {
            max_message_size: 64 * 1024,
            auth_failure_delay: Duration::ZERO,
            // Submission is reachable without a TLS handshake the input cannot complete.
            allow_plaintext_auth: true,
            ..flag_defaults::<LimitFlags>().settings(HOSTNAME)
        };
        let settings =
            ServiceSettings { tls: Some(backend.tls.clone()), ..ServiceSettings::new(session, Duration::from_secs(5)) };
        let transports = Transports {
            handoff: Some((Arc::new(backend.transport.spool.clone()), Arc::new(backend.transport.queue.clone()))),
            mailstore: channel,
        };
        let services = SmtpIngress::new(settings, transports, Shutdown::new()).services();
        Harness { backend, services }
    })
}

/// Runs one session on `input` and returns its reply codes; panics on anything a client would
/// notice.
pub fn session(input: &[u8]) -> Vec<u16> {
    let Some((&mode, client)) = input.split_first() else { return Vec::new() };
    let listener = if mode & 1 == 0 { Listener::Mx } else { Listener::Submission };
    let chunk = read_size(mode >> 1);
    let harness = harness();
    harness.backend.runtime.block_on(async {
        let services = harness.services.clone();
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let output = backend::converse(client, chunk, move |server| {
            session::serve(Connection::Plain(server), loopback, listener, services)
        })
        .await;
        let codes = wire::smtp_replies(&output).unwrap_or_else(|problem| panic!("{problem}"));
        assert_eq!(codes.first(), Some(&220), "the session opens with a 220 greeting");
        check_queued(&harness.backend, &output).await;
        codes
    })
}

/// Octets per read: from one at a time, which splits every line and terminator, up to the
/// sessions' own buffer size.
pub fn read_size(choice: u8) -> usize {
    match choice % 8 {
        0 => 1,
        1 => 2,
        2 => 7,
        3 => 64,
        _ => 16 * 1024,
    }
}

/// Every message the session accepted is queued, and nothing else is.
async fn check_queued(backend: &Backend, output: &[u8]) {
    let text = String::from_utf8_lossy(output);
    let mut accepted: Vec<String> =
        text.split("\r\n").filter_map(|line| line.strip_prefix(QUEUED_AS)).map(str::to_string).collect();
    if accepted.is_empty() {
        return;
    }
    let mut queued = Vec::new();
    loop {
        let leases = backend.transport.queue.pull(100, Duration::from_millis(1)).await.expect("pull the queue");
        if leases.is_empty() {
            break;
        }
        for lease in leases {
            let envelope = Envelope::decode(lease.payload.clone()).expect("a queued envelope decodes");
            let body = backend.transport.spool.get(&envelope.id).await.expect("read the spool");
            assert!(body.is_some_and(|body| body.len() as u64 == envelope.size), "{} is spooled whole", envelope.id);
            queued.push(envelope.id);
            lease.ack().await.expect("ack");
        }
    }
    accepted.sort();
    queued.sort();
    assert_eq!(accepted, queued, "the messages answered `queued as` are the ones in the queue");
}
