//! One message, one trace: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the spans of a message
//! sent to a mailbox whose owner waits in IDLE come from smtp-ingress, delivery-queue,
//! mailstore and imap-frontend, all in the message's trace (linked through the queue's NATS
//! headers, gRPC metadata and the mailbox event's headers).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::distributed::Distributed;
use common::{admin, ok, python_in_background, swaks, text};
use kubemail_testkit::otlp::Collector;

/// Bob in IDLE on implicit TLS: `idling`, then the first EXISTS.
const IDLE: &str = r#"
host, port = address(sys.argv[1])
m = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=60)
m.login("bob@example.org", "bob's password")
m.select("INBOX")
m.send(b"t1 IDLE\r\n")
if m.readline().startswith(b"+"):
    print("idling")
while not m.readline().strip().endswith(b"EXISTS"):
    pass
print("exists")
"#;

#[test]
fn a_message_is_one_trace_from_smtp_to_the_idle_push() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let collector = runtime.block_on(Collector::start());
    // Spans leave each service within a tenth of a second, not the default five.
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let platform = Distributed::start_with_env(&[], &env);
    ok(admin(&platform.grpc, &["domain", "add", "example.org"], None));
    ok(admin(&platform.grpc, &["mailbox", "add", "bob@example.org", "--password-stdin"], Some("bob's password\n")));
    let (_bob, bob_says) = python_in_background(IDLE, &[&platform.imap[1].imaps]);
    assert_eq!(bob_says.recv_timeout(Duration::from_secs(30)).unwrap(), "idling");

    let sent = swaks(&platform.smtp[0].mx, &["--from", "friend@example.net", "--to", "bob@example.org"]);
    assert!(text(&sent.stdout).contains("250 2.0.0"), "{}", text(&sent.stdout));
    assert_eq!(bob_says.recv_timeout(Duration::from_secs(30)).unwrap(), "exists");

    // The message's trace is the one its smtp.message span started.
    let wanted: BTreeSet<&str> = ["smtp-ingress", "delivery-queue", "mailstore", "imap-frontend"].into();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans = collector.spans();
        let message = spans.iter().find(|span| span.name == "smtp.message");
        if let Some(message) = message {
            let in_trace: Vec<_> = spans.iter().filter(|span| span.trace_id == message.trace_id).collect();
            let services: BTreeSet<&str> = in_trace.iter().map(|span| span.service.as_str()).collect();
            if services == wanted {
                assert!(in_trace.iter().any(|s| s.service == "imap-frontend" && s.name == "imap.idle_update"));
                break;
            }
        }
        assert!(Instant::now() < deadline, "no single trace across {wanted:?}: {spans:#?}\n{}", platform.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}
