//! Trace context: each accepted message starts a trace of its own, which the queued envelope
//! carries on to delivery (DESIGN §5).

mod common;

use common::Fixture;
use kubemail_smtp_ingress::session::Listener;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;

const MESSAGE: &str = "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nHello Bob.\r\n";

/// The trace id of a W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
fn trace_id(traceparent: &str) -> &str {
    let fields: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(fields.len(), 4, "malformed traceparent {traceparent:?}");
    assert_eq!(fields[1].len(), 32, "malformed trace id in {traceparent:?}");
    assert_ne!(fields[1], "0".repeat(32), "invalid (all-zero) trace id");
    fields[1]
}

#[tokio::test]
async fn every_message_is_queued_with_a_trace_of_its_own() {
    // The OpenTelemetry layer a service installs when it exports traces, for this thread (the
    // test runtime runs the session tasks on it).
    let provider = SdkTracerProvider::builder().build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
    let _default = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));

    let f = Fixture::start().await;
    let mut mx = f.connect(Listener::Mx).await;
    mx.command("EHLO client.example", 250).await;
    for _ in 0..2 {
        mx.command("MAIL FROM:<sender@remote.example>", 250).await;
        mx.command("RCPT TO:<bob@example.org>", 250).await;
        mx.command("DATA", 354).await;
        mx.send(&format!("{MESSAGE}.\r\n")).await;
        mx.expect(250).await;
    }

    let queued = f.queued().await;
    assert_eq!(queued.len(), 2);
    let traces: Vec<&str> = queued
        .iter()
        .map(|(envelope, _)| {
            let traceparent = envelope.trace_context.get("traceparent");
            trace_id(traceparent.unwrap_or_else(|| panic!("no traceparent in {:?}", envelope.trace_context)))
        })
        .collect();
    assert_ne!(traces[0], traces[1], "two messages of one session must not share a trace");
}
