//! W3C trace context (`traceparent`, `tracestate`) in and out of gRPC metadata and our message
//! [`Headers`], so one trace follows a message from SMTP to IMAP (DESIGN §5).
//!
//! Sending side: call [`inject_headers`] before publishing a queue message or event, and build
//! gRPC clients with [`grpc_client_interceptor`]
//! (`MailStoreClient::with_interceptor(channel, propagation::grpc_client_interceptor)`). Both
//! carry the context of the current `tracing` span.
//!
//! Receiving side: a span's parent must be set **before the span is first entered** —
//! `tracing-opentelemetry` starts the OpenTelemetry span on entry and ignores a later parent. So
//! these helpers never touch the current span; they set the parent of a span you are about to
//! enter:
//! - gRPC servers: `Server::builder().trace_fn(propagation::grpc_server_span)` gives every request
//!   a server span whose parent comes from the request headers; handlers run inside it, so their
//!   own spans join the caller's trace. This is tonic's own per-request span hook and needs no
//!   extra tower layer.
//! - Queue and event consumers: create the span, [`set_parent_from_headers`], then enter it
//!   (`.instrument(span)`).
//! - A handler on a server without that hook: create its span, [`set_parent_from_metadata`]
//!   with `request.metadata()`, then enter it.
//!
//! The propagator is W3C TraceContext itself rather than the process-global one: the wire format
//! is a contract between services, not a per-process setting, and it then works even where
//! [`crate::telemetry`] was never initialised (tests of other crates). Without the OpenTelemetry
//! layer (no `OTEL_EXPORTER_OTLP_ENDPOINT`) spans have no trace context: nothing is injected and
//! setting a parent does nothing.

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::MetadataMap;
use tracing::Span;
use tracing_opentelemetry::{OpenTelemetrySpanExt, SetParentError};

use crate::Headers;

/// Writes the current span's trace context into message headers (queue messages, events).
pub fn inject_headers(headers: &mut Headers) {
    TraceContextPropagator::new().inject_context(&Span::current().context(), &mut HeadersInjector(headers));
}

/// Writes the current span's trace context into outgoing gRPC metadata.
pub fn inject_metadata(metadata: &mut MetadataMap) {
    inject_header_map(metadata.as_mut());
}

/// The interceptor of [`traced`] channels.
pub type TraceInterceptor = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;

/// A gRPC channel that passes the caller's trace context on with every call.
pub type TracedChannel = tonic::service::interceptor::InterceptedService<tonic::transport::Channel, TraceInterceptor>;

/// `channel` with [`grpc_client_interceptor`]: `MailStoreClient::new(traced(channel))`.
pub fn traced(channel: tonic::transport::Channel) -> TracedChannel {
    tonic::service::interceptor::InterceptedService::new(channel, grpc_client_interceptor as TraceInterceptor)
}

/// The mailstore client of every service: each call carries the caller's trace context.
pub type MailstoreClient = kubemail_proto::mailstore::mail_store_client::MailStoreClient<TracedChannel>;

/// A mailstore client on `channel`.
pub fn mailstore_client(channel: tonic::transport::Channel) -> MailstoreClient {
    MailstoreClient::new(traced(channel))
}

/// A tonic client interceptor that adds the current span's trace context to every call:
/// `ServiceClient::with_interceptor(channel, grpc_client_interceptor)`. It runs when the call
/// is made, so the caller's span at that moment becomes the server span's parent.
pub fn grpc_client_interceptor(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    inject_metadata(request.metadata_mut());
    Ok(request)
}

/// The trace context carried by message headers (an empty context when there is none).
pub fn extract_headers(headers: &Headers) -> Context {
    TraceContextPropagator::new().extract(&HeadersExtractor(headers))
}

/// The trace context carried by incoming gRPC metadata (an empty context when there is none).
pub fn extract_metadata(metadata: &MetadataMap) -> Context {
    extract_header_map(metadata.as_ref())
}

/// Makes the trace in `headers` the parent of `span`, which must not have been entered yet.
pub fn set_parent_from_headers(span: &Span, headers: &Headers) {
    set_parent(span, extract_headers(headers));
}

/// Makes the trace in a gRPC request's metadata the parent of `span`, which must not have been
/// entered yet. Servers built with [`grpc_server_span`] do not need this.
pub fn set_parent_from_metadata(span: &Span, metadata: &MetadataMap) {
    set_parent(span, extract_metadata(metadata));
}

/// The span for one incoming gRPC request, child of the caller's trace: pass this function to
/// `tonic::transport::Server::builder().trace_fn(..)`.
///
/// Named after the gRPC method (`kubemail.mailstore.v1.MailStore/Deliver`) with the OpenTelemetry
/// RPC attributes, so traces read the same in every backend.
pub fn grpc_server_span(request: &http::Request<()>) -> Span {
    // gRPC paths are `/package.Service/Method` (gRPC over HTTP/2, "Path").
    let path = request.uri().path();
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    let span = tracing::info_span!(
        "grpc request",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
    );
    set_parent(&span, extract_header_map(request.headers()));
    span
}

fn inject_header_map(headers: &mut HeaderMap) {
    TraceContextPropagator::new().inject_context(&Span::current().context(), &mut HeaderMapInjector(headers));
}

fn extract_header_map(headers: &HeaderMap) -> Context {
    TraceContextPropagator::new().extract(&HeaderMapExtractor(headers))
}

fn set_parent(span: &Span, parent: Context) {
    match span.set_parent(parent) {
        // No OpenTelemetry layer, or the span is filtered out: there is no trace to join.
        Ok(()) | Err(SetParentError::LayerNotFound | SetParentError::SpanDisabled) => {}
        // A caller bug that silently splits traces; say so where someone will look.
        Err(error @ SetParentError::AlreadyStarted) => {
            tracing::warn!(%error, "trace parent not set: the span was already entered");
        }
    }
}

struct HeadersInjector<'a>(&'a mut Headers);

impl Injector for HeadersInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

/// Headers are written by our own code, but looked up case-insensitively as a fallback so a
/// transport that normalises header names (NATS, HTTP) does not break the trace.
struct HeadersExtractor<'a>(&'a Headers);

impl Extractor for HeadersExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .or_else(|| self.0.iter().find(|(name, _)| name.eq_ignore_ascii_case(key)).map(|(_, v)| v))
            .map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct HeaderMapInjector<'a>(&'a mut HeaderMap);

impl Injector for HeaderMapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // The propagator only writes valid header names and values; anything else is skipped
        // rather than sent malformed.
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(&value)) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderMapExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderMapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use opentelemetry::trace::{SpanId, TraceContextExt, TraceId, TracerProvider as _};
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
    use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
    use tokio::sync::mpsc;
    use tracing::Instrument;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// A real SDK pipeline recording finished spans in memory, installed for the current thread.
    struct Tracing {
        provider: SdkTracerProvider,
        exporter: InMemorySpanExporter,
        _default: tracing::subscriber::DefaultGuard,
    }

    impl Tracing {
        fn install() -> Self {
            let exporter = InMemorySpanExporter::default();
            let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
            let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
            let subscriber = tracing_subscriber::registry().with(layer);
            let _default = tracing::subscriber::set_default(subscriber);
            Tracing { provider, exporter, _default }
        }

        fn finished(&self, name: &str) -> SpanData {
            self.provider.force_flush().unwrap();
            let spans = self.exporter.get_finished_spans().unwrap();
            let mut named = spans.into_iter().filter(|span| span.name == name);
            let span = named.next().unwrap_or_else(|| panic!("no finished span {name:?}"));
            assert!(named.next().is_none(), "more than one span {name:?}");
            span
        }

        /// Asserts that `child` continues `parent`'s trace as its direct child.
        fn assert_child_of(&self, child: &str, parent: &str) {
            let (child, parent) = (self.finished(child), self.finished(parent));
            assert_ne!(parent.span_context.trace_id(), TraceId::INVALID);
            assert_eq!(child.span_context.trace_id(), parent.span_context.trace_id());
            assert_eq!(child.parent_span_id, parent.span_context.span_id());
            assert!(child.parent_span_is_remote, "parent should come from the carrier");
        }
    }

    #[test]
    fn headers_carry_the_trace_to_a_consumer_span() {
        let tracing = Tracing::install();
        let mut headers = Headers::new();
        headers.insert("message-id".into(), "m1".into());
        tracing::info_span!("publish").in_scope(|| inject_headers(&mut headers));
        assert!(headers["traceparent"].starts_with("00-"), "{headers:?}");
        assert_eq!(headers["message-id"], "m1", "other headers are kept");

        let consume = tracing::info_span!("consume");
        set_parent_from_headers(&consume, &headers);
        consume.in_scope(|| {});
        drop(consume);

        tracing.assert_child_of("consume", "publish");
    }

    #[test]
    fn header_names_match_regardless_of_case() {
        let tracing = Tracing::install();
        let mut headers = Headers::new();
        tracing::info_span!("publish").in_scope(|| inject_headers(&mut headers));
        let shouted: Headers = headers.into_iter().map(|(name, value)| (name.to_uppercase(), value)).collect();

        let consume = tracing::info_span!("consume");
        set_parent_from_headers(&consume, &shouted);
        drop(consume);

        tracing.assert_child_of("consume", "publish");
    }

    #[test]
    fn metadata_carries_the_trace_to_a_handler_span() {
        let tracing = Tracing::install();
        let mut metadata = MetadataMap::new();
        tracing::info_span!("call").in_scope(|| inject_metadata(&mut metadata));
        assert!(metadata.get("traceparent").is_some(), "{metadata:?}");

        let handle = tracing::info_span!("handle");
        set_parent_from_metadata(&handle, &metadata);
        drop(handle);

        tracing.assert_child_of("handle", "call");
    }

    #[test]
    fn without_a_trace_nothing_is_injected_and_spans_stay_roots() {
        let tracing = Tracing::install();
        let mut headers = Headers::new();
        inject_headers(&mut headers);
        assert!(headers.is_empty(), "{headers:?}");

        let consume = tracing::info_span!("consume");
        set_parent_from_headers(&consume, &headers);
        drop(consume);
        assert_eq!(tracing.finished("consume").parent_span_id, SpanId::INVALID);
    }

    #[test]
    fn a_parent_set_after_entering_is_ignored() {
        let tracing = Tracing::install();
        let mut headers = Headers::new();
        tracing::info_span!("publish").in_scope(|| inject_headers(&mut headers));

        let late = tracing::info_span!("late");
        late.in_scope(|| set_parent_from_headers(&Span::current(), &headers));
        drop(late);

        let (late, publish) = (tracing.finished("late"), tracing.finished("publish"));
        assert_ne!(late.span_context.trace_id(), publish.span_context.trace_id());
    }

    #[test]
    fn server_span_is_named_after_the_method() {
        let tracing = Tracing::install();
        let request =
            http::Request::builder().uri("http://mailstore/kubemail.mailstore.v1.MailStore/Deliver").body(()).unwrap();
        drop(grpc_server_span(&request));

        let span = tracing.finished("kubemail.mailstore.v1.MailStore/Deliver");
        let attribute =
            |key: &str| span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.to_string());
        assert_eq!(attribute("rpc.service").as_deref(), Some("kubemail.mailstore.v1.MailStore"));
        assert_eq!(attribute("rpc.method").as_deref(), Some("Deliver"));
        assert_eq!(span.span_kind, opentelemetry::trace::SpanKind::Server);
    }

    /// A gRPC service whose handler reports the trace it runs in.
    struct TraceReporter(mpsc::UnboundedSender<TraceId>);

    #[tonic::async_trait]
    impl TraceService for TraceReporter {
        async fn export(
            &self,
            _request: tonic::Request<ExportTraceServiceRequest>,
        ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let trace_id = Span::current().context().span().span_context().trace_id();
            let _ = self.0.send(trace_id);
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }

    /// Client interceptor → HTTP/2 over loopback → `trace_fn` server span → handler.
    /// A current-thread runtime keeps client and server tasks on this thread, under the
    /// thread's test subscriber.
    #[tokio::test]
    async fn grpc_calls_carry_the_trace_from_client_to_handler() {
        let tracing = Tracing::install();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address: SocketAddr = listener.local_addr().unwrap();
        let (reported, mut reports) = mpsc::unbounded_channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .trace_fn(grpc_server_span)
                .add_service(TraceServiceServer::new(TraceReporter(reported)))
                .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), async {
                    let _ = stopped.await;
                }),
        );

        let channel =
            tonic::transport::Endpoint::from_shared(format!("http://{address}")).unwrap().connect().await.unwrap();
        let mut client = TraceServiceClient::with_interceptor(channel, grpc_client_interceptor);
        let call = tracing::info_span!("client call");
        let client_trace = call.context().span().span_context().trace_id();
        client.export(ExportTraceServiceRequest::default()).instrument(call).await.unwrap();

        let handler_trace = tokio::time::timeout(Duration::from_secs(5), reports.recv()).await.unwrap().unwrap();
        assert_eq!(handler_trace, client_trace);
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
        tracing.assert_child_of("opentelemetry.proto.collector.trace.v1.TraceService/Export", "client call");
    }
}
