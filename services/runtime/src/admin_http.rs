//! The admin HTTP endpoint every service serves on its admin port (DESIGN §6):
//!
//! - `GET /healthz` — `200 ok` while the process runs (Kubernetes liveness probe).
//! - `GET /readyz` — `200 ok` once every registered component is ready, otherwise `503` with the
//!   names of those that are not (readiness probe: traffic only goes to ready pods).
//! - `GET /metrics` — everything recorded through the `metrics` facade, in the Prometheus text
//!   format.
//!
//! Components report readiness through [`Readiness`]; metrics go through the process-wide
//! Prometheus recorder that [`install_metrics_recorder`] installs once.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::{Error, Result};

/// Content type of the Prometheus text exposition format, version 0.0.4.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// How often histogram samples are folded into their summaries between scrapes, so an
/// unscraped process does not grow without bound (a scrape folds them too).
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Which components of the process are ready to serve. Cloning shares the same set.
///
/// The process is ready when every registered component is; with none registered it is ready.
#[derive(Clone, Debug, Default)]
pub struct Readiness {
    components: Arc<Mutex<BTreeMap<String, bool>>>,
}

impl Readiness {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a component, not ready until it says so. Registering a name again returns a
    /// handle to the same component and marks it not ready (it is starting over).
    pub fn component(&self, name: impl Into<String>) -> Component {
        let name = name.into();
        self.lock().insert(name.clone(), false);
        Component { readiness: self.clone(), name }
    }

    /// Whether every registered component is ready.
    pub fn is_ready(&self) -> bool {
        self.lock().values().all(|&ready| ready)
    }

    /// The names of the components that are not ready, in name order.
    pub fn not_ready(&self) -> Vec<String> {
        self.lock().iter().filter(|(_, ready)| !**ready).map(|(name, _)| name.clone()).collect()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, bool>> {
        // The map stays consistent whatever panicked while holding it: every write is one insert.
        self.components.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One component's say in [`Readiness`]. Dropping it leaves its last state in place.
#[derive(Clone, Debug)]
pub struct Component {
    readiness: Readiness,
    name: String,
}

impl Component {
    /// Marks the component ready (it can serve) or not ready (e.g. its database went away).
    pub fn set_ready(&self, ready: bool) {
        self.readiness.lock().insert(self.name.clone(), ready);
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Installs the process-wide Prometheus recorder behind the `metrics` facade, once; later calls
/// return the same handle. [`crate::telemetry::init`] calls it, so metrics recorded before the
/// admin endpoint starts are kept (the facade drops them while no recorder is installed).
///
/// Fails only when another `metrics` recorder was installed first.
pub fn install_metrics_recorder() -> Result<PrometheusHandle> {
    static RECORDER: OnceLock<std::result::Result<PrometheusHandle, String>> = OnceLock::new();
    RECORDER
        .get_or_init(|| {
            let handle = PrometheusBuilder::new().install_recorder().map_err(|error| error.to_string())?;
            start_metrics_upkeep(handle.clone());
            record_process_metrics();
            Ok(handle)
        })
        .clone()
        .map_err(|error| Error::Config(format!("cannot install the metrics recorder: {error}")))
}

fn start_metrics_upkeep(handle: PrometheusHandle) {
    let upkeep = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
        loop {
            std::thread::sleep(METRICS_UPKEEP_INTERVAL);
            handle.run_upkeep();
        }
    });
    // Scrapes do the same work, so metrics stay correct without it.
    if let Err(error) = upkeep {
        tracing::warn!(%error, "no metrics upkeep thread; histograms are folded on scrape only");
    }
}

/// Metrics about the process itself, so every service exports something from the start.
fn record_process_metrics() {
    metrics::describe_gauge!("kubemail_build_info", "Always 1; labels identify the build.");
    metrics::gauge!("kubemail_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::describe_gauge!(
        "process_start_time_seconds",
        metrics::Unit::Seconds,
        "Start time of the process since the Unix epoch."
    );
    let started = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    metrics::gauge!("process_start_time_seconds").set(started.as_secs_f64());
}

#[derive(Clone)]
struct AdminState {
    readiness: Readiness,
    metrics: PrometheusHandle,
}

/// The admin endpoint running in a task of its own.
pub struct AdminEndpoint(tokio::task::JoinHandle<Result<()>>);

impl AdminEndpoint {
    /// Binds `address` (a process's `--http-listen`) and serves the endpoint there until
    /// `shutdown`, for a process whose readiness is that of one `component`: the returned handle
    /// says when it is ready. A taken port is an error naming the flag.
    pub async fn start(
        component: &str,
        address: std::net::SocketAddr,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::result::Result<(AdminEndpoint, Component), String> {
        let readiness = Readiness::new();
        let ready = readiness.component(component);
        let listener =
            TcpListener::bind(address).await.map_err(|e| format!("cannot listen on {address} (--http-listen): {e}"))?;
        Ok((AdminEndpoint(tokio::spawn(serve(listener, readiness, shutdown))), ready))
    }

    /// Waits for the endpoint to stop (after the shutdown), and says why if it failed.
    pub async fn finish(self) -> std::result::Result<(), String> {
        match self.0.await {
            Ok(result) => result.map_err(|e| format!("admin HTTP: {e}")),
            Err(e) => Err(format!("admin HTTP task: {e}")),
        }
    }
}

/// Serves the admin endpoint on `listener` until `shutdown` completes, then finishes the
/// requests in flight and returns.
pub async fn serve(
    listener: TcpListener,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let state = AdminState { readiness, metrics: install_metrics_recorder()? };
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "admin HTTP endpoint listening");
    }
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

/// [`serve`] on a new listener bound to `address`; fails at once when the port is taken.
pub async fn bind_and_serve(
    address: SocketAddr,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let listener = TcpListener::bind(address).await.map_err(|error| {
        Error::Io(std::io::Error::new(error.kind(), format!("admin HTTP endpoint cannot listen on {address}: {error}")))
    })?;
    serve(listener, readiness, shutdown).await
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, String) {
    let waiting = state.readiness.not_ready();
    if waiting.is_empty() {
        (StatusCode::OK, "ok".into())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", waiting.join(", ")))
    }
}

async fn metrics(State(state): State<AdminState>) -> ([(header::HeaderName, &'static str); 1], String) {
    ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], state.metrics.render())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    /// Long enough for a loaded 2-core machine.
    const PATIENCE: Duration = Duration::from_secs(10);

    struct Reply {
        status: u16,
        headers: String,
        body: String,
    }

    /// One HTTP/1.1 GET over a fresh connection, read until the server closes it.
    async fn get(address: SocketAddr, path: &str) -> Reply {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut reply = String::new();
        tokio::time::timeout(PATIENCE, stream.read_to_string(&mut reply)).await.expect("no reply in time").unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").expect("no end of headers");
        let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
        let status = status_line.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap();
        Reply { status, headers: headers.to_ascii_lowercase(), body: body.to_owned() }
    }

    #[test]
    fn readiness_needs_every_component() {
        let readiness = Readiness::new();
        assert!(readiness.is_ready(), "nothing to wait for");

        let store = readiness.component("mailstore");
        let nats = readiness.clone().component("nats");
        assert_eq!(readiness.not_ready(), ["mailstore", "nats"]);

        store.set_ready(true);
        assert_eq!(readiness.not_ready(), ["nats"]);
        assert!(!readiness.is_ready());
        nats.clone().set_ready(true);
        assert!(readiness.is_ready());

        store.set_ready(false);
        assert_eq!(readiness.not_ready(), ["mailstore"]);
        drop(store);
        assert_eq!(readiness.not_ready(), ["mailstore"], "dropping keeps the last state");

        let restarted = readiness.component("nats");
        assert_eq!(restarted.name(), "nats");
        assert_eq!(readiness.not_ready(), ["mailstore", "nats"], "re-registering starts over");
    }

    #[test]
    fn the_recorder_is_installed_once() {
        let first = install_metrics_recorder().unwrap();
        let second = install_metrics_recorder().unwrap();
        metrics::counter!("kubemail_test_recorder_shared_total").increment(3);
        assert!(first.render().contains("kubemail_test_recorder_shared_total 3"));
        assert!(second.render().contains("kubemail_test_recorder_shared_total 3"));
    }

    #[tokio::test]
    async fn serves_health_readiness_and_metrics_until_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let readiness = Readiness::new();
        let store = readiness.component("mailstore");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, readiness.clone(), async {
            let _ = stopped.await;
        }));

        let health = get(address, "/healthz").await;
        assert_eq!((health.status, health.body.as_str()), (200, "ok"));

        let waiting = get(address, "/readyz").await;
        assert_eq!(waiting.status, 503);
        assert_eq!(waiting.body, "not ready: mailstore\n");
        store.set_ready(true);
        let ready = get(address, "/readyz").await;
        assert_eq!((ready.status, ready.body.as_str()), (200, "ok"));

        metrics::counter!("kubemail_test_admin_requests_total", "kind" => "probe").increment(2);
        let scraped = get(address, "/metrics").await;
        assert_eq!(scraped.status, 200);
        assert!(scraped.headers.contains("content-type: text/plain; version=0.0.4"));
        assert!(scraped.body.contains("kubemail_test_admin_requests_total{kind=\"probe\"} 2"), "{}", scraped.body);
        let version = env!("CARGO_PKG_VERSION");
        assert!(scraped.body.contains(&format!("kubemail_build_info{{version=\"{version}\"}} 1")));
        assert!(scraped.body.contains("# TYPE process_start_time_seconds gauge"));

        assert_eq!(get(address, "/nope").await.status, 404);

        stop.send(()).unwrap();
        tokio::time::timeout(PATIENCE, server).await.expect("server ignored shutdown").unwrap().unwrap();
        assert!(TcpStream::connect(address).await.is_err(), "still listening after shutdown");
    }

    #[tokio::test]
    async fn a_taken_port_is_an_error_naming_it() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = taken.local_addr().unwrap();
        let error = bind_and_serve(address, Readiness::new(), std::future::pending()).await.unwrap_err();
        assert!(error.to_string().contains(&address.to_string()), "{error}");
    }
}
