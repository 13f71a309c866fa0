//! Process-wide telemetry setup: `tracing` logs to stdout, and OpenTelemetry traces exported over
//! OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (DESIGN §6).
//!
//! Environment, read by [`init`]:
//! - `RUST_LOG` — which spans and events are kept (`info` by default), for logs and traces alike.
//! - `KUBEMAIL_LOG_FORMAT` — `json` for one JSON object per line, `text` (default) for humans.
//! - `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT` — the collector's
//!   gRPC endpoint (`http://otel-collector:4317`); unset means no export. The exporter also
//!   honours the other standard `OTEL_EXPORTER_OTLP_*` variables (headers, timeout) and
//!   `OTEL_RESOURCE_ATTRIBUTES`.
//!
//! Once per process: `kubemail dev` runs every service in one process and calls it once, with
//! "kubemail". A second call returns an error and changes nothing.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tokio::runtime::{Handle, RuntimeFlavor};
use tracing_subscriber::filter::{EnvFilter, LevelFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

use crate::{Error, Result};

/// Chooses the log output format.
pub const LOG_FORMAT_ENV: &str = "KUBEMAIL_LOG_FORMAT";
/// The standard `tracing` filter variable.
pub const LOG_FILTER_ENV: &str = "RUST_LOG";

/// How long the final flush of buffered spans may take when the process stops.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Name prefixes of the crates that carry the OTLP export itself: tracing their spans would
/// export the exporter's own work, a feedback loop once `RUST_LOG` is at debug.
const EXPORT_PATH_CRATES: &[&str] = &["opentelemetry", "tonic", "h2", "hyper", "tower"];

static INITIALISED: AtomicBool = AtomicBool::new(false);

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines, coloured on a terminal.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Everything [`init_with`] needs; [`TelemetryConfig::from_env`] reads it from the environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// The OpenTelemetry `service.name` resource attribute.
    pub service_name: String,
    /// A `RUST_LOG`-style filter (`info,kubemail_mailstore=debug`); `None` keeps `info` and above.
    pub log_filter: Option<String>,
    pub log_format: LogFormat,
    /// The OTLP/gRPC collector endpoint; `None` exports no traces.
    pub otlp_endpoint: Option<String>,
}

impl TelemetryConfig {
    /// The configuration described in the [module documentation](self).
    pub fn from_env(service_name: &str) -> Result<Self> {
        Self::from_lookup(service_name, |name| std::env::var(name).ok())
    }

    fn from_lookup(service_name: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        // Set-but-empty counts as unset, as the OpenTelemetry specification asks.
        let non_empty = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let log_format = match non_empty(LOG_FORMAT_ENV).as_deref().map(str::trim) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(Error::Config(format!("{LOG_FORMAT_ENV} must be \"json\" or \"text\", not \"{other}\"")));
            }
        };
        Ok(TelemetryConfig {
            service_name: service_name.to_owned(),
            log_filter: non_empty(LOG_FILTER_ENV),
            log_format,
            otlp_endpoint: non_empty(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
                .or_else(|| non_empty(OTEL_EXPORTER_OTLP_ENDPOINT)),
        })
    }
}

/// Sets up telemetry for this process from the environment; see the
/// [module documentation](self). Keep the guard until the process ends.
pub fn init(service_name: &str) -> Result<TelemetryGuard> {
    init_with(TelemetryConfig::from_env(service_name)?)
}

/// Sets up telemetry for this process: the global `tracing` subscriber, the W3C trace context
/// propagator, the OTLP trace exporter when an endpoint is configured (which needs a Tokio
/// runtime: call this inside it), and the Prometheus metrics recorder
/// ([`crate::admin_http::install_metrics_recorder`]).
///
/// Fails when telemetry or another global `tracing` subscriber is already set up (leaving it as
/// it was), when the filter or endpoint is invalid, or when another metrics recorder is installed.
pub fn init_with(config: TelemetryConfig) -> Result<TelemetryGuard> {
    let already = || Error::Config("telemetry is already initialised in this process".into());
    if INITIALISED.load(Ordering::Acquire) {
        return Err(already());
    }
    let filter = env_filter(config.log_filter.as_deref())?;
    crate::admin_http::install_metrics_recorder()?;
    let provider = match &config.otlp_endpoint {
        Some(endpoint) => Some(tracer_provider(&config.service_name, endpoint)?),
        None => None,
    };
    let guard = TelemetryGuard { provider };
    if INITIALISED.swap(true, Ordering::AcqRel) {
        return Err(already());
    }

    let log_layer = match config.log_format {
        LogFormat::Json => fmt::layer().json().flatten_event(true).boxed(),
        LogFormat::Text => fmt::layer().with_ansi(std::io::stdout().is_terminal()).boxed(),
    };
    let trace_layer = guard.provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(env!("CARGO_PKG_NAME")))
            .with_filter(filter_fn(|metadata| !is_export_path(metadata.target())))
    });
    tracing_subscriber::registry()
        .with(filter)
        .with(log_layer)
        .with(trace_layer)
        .try_init()
        .map_err(|error| Error::Config(format!("a global tracing subscriber is already set: {error}")))?;

    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    if let Some(provider) = &guard.provider {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    tracing::info!(
        service = %config.service_name,
        otlp_endpoint = config.otlp_endpoint.as_deref().unwrap_or("none"),
        "telemetry initialised"
    );
    Ok(guard)
}

/// Whether a span or event `target` (a module path, or for OpenTelemetry's own logs a package
/// name such as `opentelemetry-otlp`) belongs to one of the [`EXPORT_PATH_CRATES`].
fn is_export_path(target: &str) -> bool {
    let crate_name = target.split("::").next().unwrap_or(target);
    EXPORT_PATH_CRATES.iter().any(|prefix| crate_name.starts_with(prefix))
}

fn env_filter(spec: Option<&str>) -> Result<EnvFilter> {
    EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse(spec.unwrap_or_default())
        .map_err(|error| Error::Config(format!("invalid {LOG_FILTER_ENV} filter: {error}")))
}

/// A tracer provider that batches spans to the OTLP/gRPC collector at `endpoint`.
fn tracer_provider(service_name: &str, endpoint: &str) -> Result<SdkTracerProvider> {
    // The gRPC channel runs its connection on the current Tokio runtime.
    if Handle::try_current().is_err() {
        return Err(Error::Config("OTLP trace export needs a Tokio runtime: initialise telemetry inside it".into()));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|error| Error::Config(format!("OTLP endpoint \"{endpoint}\": {error}")))?;
    // `Resource::builder` also reads `OTEL_RESOURCE_ATTRIBUTES` (pod name, namespace, ...).
    let resource = Resource::builder()
        .with_service_name(service_name.to_owned())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
}

/// Keeps the trace exporter running; ending it flushes the spans still buffered.
///
/// Prefer `guard.shutdown().await` at the end of `main`. Dropping works too, but inside a
/// current-thread runtime the flush then runs unawaited and may be cut short by the process exit.
#[must_use = "dropping the guard stops trace export"]
#[derive(Debug)]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Whether traces are exported (an OTLP endpoint was configured).
    pub fn exports_traces(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes buffered spans to the collector and stops the exporter.
    pub async fn shutdown(mut self) {
        if let Some(provider) = self.provider.take() {
            // The flush blocks until the export, which runs on this runtime, is done: wait for it
            // on a blocking thread so a current-thread runtime keeps driving the export.
            let _ = tokio::task::spawn_blocking(move || shut_down(&provider)).await;
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let Some(provider) = self.provider.take() else { return };
        match Handle::try_current().map(|runtime| runtime.runtime_flavor()) {
            Err(_) => shut_down(&provider),
            Ok(RuntimeFlavor::MultiThread) => {
                tokio::task::block_in_place(|| shut_down(&provider));
            }
            // Blocking the only runtime thread would stall the export being waited for.
            Ok(_) => {
                std::thread::spawn(move || shut_down(&provider));
            }
        }
    }
}

fn shut_down(provider: &SdkTracerProvider) {
    if let Err(error) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT) {
        tracing::warn!(%error, "trace exporter did not shut down cleanly");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
    use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use tokio::sync::mpsc;

    use super::*;

    fn config_from(vars: &[(&str, &str)]) -> Result<TelemetryConfig> {
        let vars: HashMap<String, String> = vars.iter().map(|&(k, v)| (k.to_owned(), v.to_owned())).collect();
        TelemetryConfig::from_lookup("mailstore", |name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_are_info_text_and_no_export() {
        assert_eq!(
            config_from(&[]).unwrap(),
            TelemetryConfig {
                service_name: "mailstore".into(),
                log_filter: None,
                log_format: LogFormat::Text,
                otlp_endpoint: None,
            }
        );
        let empty = config_from(&[(OTEL_EXPORTER_OTLP_ENDPOINT, ""), (LOG_FILTER_ENV, " ")]);
        assert_eq!(empty.unwrap(), config_from(&[]).unwrap(), "empty counts as unset");
    }

    #[test]
    fn environment_selects_format_filter_and_endpoint() {
        let config = config_from(&[
            (LOG_FORMAT_ENV, "json"),
            (LOG_FILTER_ENV, "warn,kubemail_mailstore=debug"),
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://collector:4317"),
        ])
        .unwrap();
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.log_filter.as_deref(), Some("warn,kubemail_mailstore=debug"));
        assert_eq!(config.otlp_endpoint.as_deref(), Some("http://collector:4317"));

        let traces_first = config_from(&[
            (OTEL_EXPORTER_OTLP_ENDPOINT, "http://collector:4317"),
            (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, "http://traces:4317"),
        ]);
        assert_eq!(traces_first.unwrap().otlp_endpoint.as_deref(), Some("http://traces:4317"));
    }

    #[test]
    fn bad_settings_are_config_errors() {
        let format = config_from(&[(LOG_FORMAT_ENV, "xml")]).unwrap_err();
        assert!(format.to_string().contains("must be \"json\" or \"text\", not \"xml\""));
        let filter = env_filter(Some("kubemail=loud")).unwrap_err();
        assert!(matches!(filter, Error::Config(_)), "{filter}");
        assert!(env_filter(Some("info,h2=off")).is_ok());
        assert!(env_filter(None).is_ok());
    }

    #[test]
    fn the_exporters_own_crates_are_not_traced() {
        for target in ["tonic::transport::channel", "h2::proto", "hyper_util", "opentelemetry-otlp", "tower"] {
            assert!(is_export_path(target), "{target}");
        }
        for target in ["kubemail_runtime::propagation", "sqlx::query", "async_nats"] {
            assert!(!is_export_path(target), "{target}");
        }
    }

    #[tokio::test]
    async fn a_bad_endpoint_is_a_config_error() {
        let error = tracer_provider("mailstore", "http://[not-a-host").unwrap_err();
        assert!(error.to_string().contains("http://[not-a-host"), "{error}");
    }

    #[test]
    fn export_needs_a_runtime() {
        let error = tracer_provider("mailstore", "http://127.0.0.1:4317").unwrap_err();
        assert!(error.to_string().contains("Tokio runtime"), "{error}");
    }

    /// An OTLP collector that forwards what it receives.
    struct Collector(mpsc::UnboundedSender<ExportTraceServiceRequest>);

    #[tonic::async_trait]
    impl TraceService for Collector {
        async fn export(
            &self,
            request: tonic::Request<ExportTraceServiceRequest>,
        ) -> std::result::Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
            let _ = self.0.send(request.into_inner());
            Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
        }
    }

    /// Starts an OTLP/gRPC collector on loopback; returns its endpoint and what it receives.
    async fn start_collector() -> (String, mpsc::UnboundedReceiver<ExportTraceServiceRequest>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (received, exports) = mpsc::unbounded_channel();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Collector(received)))
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
        );
        (endpoint, exports)
    }

    /// Waits for a span called `span_name`, checking that every export names `service`.
    async fn expect_span(
        exports: &mut mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
        service: &str,
        span_name: &str,
    ) {
        let mut names = Vec::new();
        while let Ok(Some(export)) = tokio::time::timeout(Duration::from_secs(10), exports.recv()).await {
            for resource_spans in export.resource_spans {
                let exported_service = resource_spans
                    .resource
                    .iter()
                    .flat_map(|resource| &resource.attributes)
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| kv.value.as_ref()?.value.clone());
                assert_eq!(exported_service, Some(Value::StringValue(service.into())));
                let spans = resource_spans.scope_spans.into_iter().flat_map(|scope| scope.spans);
                names.extend(spans.map(|span| span.name));
            }
            if names.iter().any(|name| name == span_name) {
                return;
            }
        }
        panic!("the collector never received {span_name:?}; got {names:?}");
    }

    /// The only test that initialises the process-wide telemetry: spans reach a real OTLP/gRPC
    /// collector on loopback, tagged with the service name, and a second call is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exports_spans_to_an_otlp_collector() {
        let (endpoint, mut exports) = start_collector().await;
        let guard = init_with(TelemetryConfig {
            service_name: "kubemail-telemetry-test".into(),
            // Keeps other crates' logs out of the test output.
            log_filter: Some("off,kubemail_runtime=info".into()),
            log_format: LogFormat::Text,
            otlp_endpoint: Some(endpoint),
        })
        .unwrap();
        assert!(guard.exports_traces());
        let again = init_with(config_from(&[]).unwrap()).unwrap_err();
        assert!(again.to_string().contains("already initialised"), "{again}");

        tracing::info_span!("telemetry test span").in_scope(|| tracing::info!("inside"));
        guard.shutdown().await;
        expect_span(&mut exports, "kubemail-telemetry-test", "telemetry test span").await;
    }

    /// Dropping the guard flushes through the exporter, without stalling the runtime the export
    /// needs; each runtime flavour takes its own path in `Drop`.
    async fn dropping_the_guard_flushes(span_name: &'static str) {
        use opentelemetry::trace::Tracer as _;

        let (endpoint, mut exports) = start_collector().await;
        let provider = tracer_provider("kubemail-drop-test", &endpoint).unwrap();
        provider.tracer("test").in_span(span_name, |_| {});
        let dropping = std::time::Instant::now();
        drop(TelemetryGuard { provider: Some(provider) });
        // A drop that blocked the runtime the export runs on would wait out the whole timeout.
        assert!(dropping.elapsed() < SHUTDOWN_TIMEOUT / 2, "dropping the guard stalled");
        expect_span(&mut exports, "kubemail-drop-test", span_name).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropping_the_guard_flushes_in_a_multi_thread_runtime() {
        dropping_the_guard_flushes("dropped in a multi-thread runtime").await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn dropping_the_guard_flushes_in_a_current_thread_runtime() {
        dropping_the_guard_flushes("dropped in a current-thread runtime").await;
    }
}
