//! Prometheus metrics for every gRPC server, as a tower layer:
//! `kubemail_grpc_server_requests_total{method, code}` and
//! `kubemail_grpc_server_request_duration_seconds{method}`.
//!
//! The code is read from the response headers, where gRPC puts it for errors ("trailers-only"
//! responses); a response without it succeeded or failed later in its stream, and counts as
//! OK. For streaming calls the duration is the time to the response headers.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tower::{Layer, Service};

/// Add with `tonic::transport::Server::builder().layer(GrpcMetricsLayer)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcMetricsLayer;

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, RequestBody, ResponseBody> Service<http::Request<RequestBody>> for GrpcMetrics<S>
where
    S: Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let method = request.uri().path().trim_start_matches('/').to_string();
        let started = Instant::now();
        let response = self.inner.call(request);
        Box::pin(async move {
            let result = response.await;
            let code = match &result {
                Ok(response) => status_name(response.headers()),
                Err(_) => "TRANSPORT_ERROR".to_string(),
            };
            metrics::counter!("kubemail_grpc_server_requests_total", "method" => method.clone(), "code" => code)
                .increment(1);
            metrics::histogram!("kubemail_grpc_server_request_duration_seconds", "method" => method)
                .record(started.elapsed().as_secs_f64());
            result
        })
    }
}

/// The gRPC status name in `headers` ("OK" when absent), e.g. "NOT_FOUND".
fn status_name(headers: &http::HeaderMap) -> String {
    let code = headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
        .unwrap_or(tonic::Code::Ok);
    screaming_snake(&format!("{code:?}"))
}

/// `NotFound` → `NOT_FOUND`, the spelling of the gRPC specification.
fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_follow_the_grpc_spelling() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(status_name(&headers), "OK");
        headers.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(status_name(&headers), "NOT_FOUND");
        headers.insert("grpc-status", "8".parse().unwrap());
        assert_eq!(status_name(&headers), "RESOURCE_EXHAUSTED");
    }
}
