//! Observation, the outermost layer: a request id for every call (`x-request-id`, generated when
//! absent and forwarded to the worker), one access-log line per call when it ends (method,
//! identity, worker, status, duration), and Prometheus metrics, served on `--metrics-port`.
//! This layer is also where gateway errors become trailers-only gRPC responses.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderValue, Request, Response};
use http_body::Frame;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tonic::body::Body;
use tonic::Code;
use tower::{Layer, Service, ServiceExt};

use crate::error::header_status;
use crate::{rpc_name, HttpService};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodStatus {
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabel {
    backend: String,
}

struct Inner {
    registry: Registry,
    requests: Family<MethodStatus, Counter>,
    errors: Family<MethodStatus, Counter>,
    duration: Family<MethodLabel, Histogram>,
    upstream_healthy: Family<BackendLabel, Gauge>,
    retries: Family<MethodLabel, Counter>,
    rate_limited: Family<MethodLabel, Counter>,
    in_flight: Gauge,
    policy_reloads: Family<ResultLabel, Counter>,
}

/// 0.5 ms to about 4 min.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 20))
}

/// The gateway's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<MethodStatus, Counter>::default();
        let errors = Family::<MethodStatus, Counter>::default();
        let duration = Family::<MethodLabel, Histogram>::new_with_constructor(duration_histogram as fn() -> Histogram);
        let upstream_healthy = Family::<BackendLabel, Gauge>::default();
        let retries = Family::<MethodLabel, Counter>::default();
        let rate_limited = Family::<MethodLabel, Counter>::default();
        let in_flight = Gauge::default();
        let policy_reloads = Family::<ResultLabel, Counter>::default();
        registry.register("polarway_grpc_requests", "gRPC calls through the gateway, by method and status", requests.clone());
        registry.register("polarway_grpc_errors", "gRPC calls that ended with a status other than OK", errors.clone());
        registry.register("polarway_grpc_request_duration_seconds", "Duration of gRPC calls through the gateway", duration.clone());
        registry.register("polarway_gateway_upstream_healthy", "1 when the worker passes its health checks", upstream_healthy.clone());
        registry.register("polarway_gateway_retries", "Calls retried on another worker", retries.clone());
        registry.register("polarway_gateway_rate_limited", "Calls refused by a rate limit", rate_limited.clone());
        registry.register("polarway_gateway_in_flight", "Calls in progress", in_flight.clone());
        registry.register("polarway_gateway_policy_reloads", "Policy reloads, by result (ok, refused)", policy_reloads.clone());
        Self(Arc::new(Inner { registry, requests, errors, duration, upstream_healthy, retries, rate_limited, in_flight, policy_reloads }))
    }
}

impl Metrics {
    pub fn retry(&self, method: &str) {
        self.0.retries.get_or_create(&MethodLabel { method: method.into() }).inc();
    }

    pub fn rate_limited(&self, method: &str) {
        self.0.rate_limited.get_or_create(&MethodLabel { method: method.into() }).inc();
    }

    pub fn policy_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "refused" };
        self.0.policy_reloads.get_or_create(&ResultLabel { result: result.into() }).inc();
    }

    pub fn upstream_health(&self, backend: &str, healthy: bool) {
        self.0.upstream_healthy.get_or_create(&BackendLabel { backend: backend.into() }).set(healthy as i64);
    }

    fn finish(&self, method: &str, code: Code, started: Instant) {
        let labels = MethodStatus { method: method.into(), status: format!("{code:?}") };
        self.0.requests.get_or_create(&labels).inc();
        if code != Code::Ok {
            self.0.errors.get_or_create(&labels).inc();
        }
        self.0.duration.get_or_create(&MethodLabel { method: method.into() }).observe(started.elapsed().as_secs_f64());
        self.0.in_flight.dec();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.0.registry);
        out
    }
}

/// What later layers learn about a call, for its access-log line.
#[derive(Debug, Default)]
pub struct CallInfo {
    identity: OnceLock<String>,
    backend: std::sync::Mutex<Option<String>>,
}

impl CallInfo {
    pub fn set_identity(&self, name: &str) {
        let _ = self.identity.set(name.to_string());
    }
    pub fn set_backend(&self, addr: &str) {
        *self.backend.lock().unwrap() = Some(addr.to_string());
    }
}

/// Everything needed to record a call once it ends, whichever way it ends.
struct Record {
    metrics: Metrics,
    method: String,
    request_id: String,
    info: Arc<CallInfo>,
    started: Instant,
    done: bool,
}

impl Record {
    fn finish(&mut self, code: Code, message: &str) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.metrics.finish(&self.method, code, self.started);
        let backend = self.info.backend.lock().unwrap().clone().unwrap_or_else(|| "-".into());
        tracing::info!(
            target: "access",
            request_id = %self.request_id,
            method = %self.method,
            identity = self.info.identity.get().map(String::as_str).unwrap_or("-"),
            backend = %backend,
            status = ?code,
            ms = self.started.elapsed().as_secs_f64() * 1000.0,
            "{message}"
        );
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        // The caller went away before the end of the response.
        self.finish(Code::Cancelled, "cancelled by the caller");
    }
}

#[derive(Clone)]
pub struct ObserveLayer {
    pub metrics: Metrics,
}

impl Layer<HttpService> for ObserveLayer {
    type Service = Observe;
    fn layer(&self, inner: HttpService) -> Observe {
        Observe { inner, metrics: self.metrics.clone() }
    }
}

#[derive(Clone)]
pub struct Observe {
    inner: HttpService,
    metrics: Metrics,
}

impl Service<Request<Body>> for Observe {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let request_id = match req.headers().get("x-request-id").and_then(|v| v.to_str().ok()) {
            Some(id) if !id.is_empty() && id.len() <= 128 => id.to_string(),
            _ => {
                let id = uuid::Uuid::new_v4().to_string();
                req.headers_mut().insert("x-request-id", HeaderValue::from_str(&id).expect("uuid"));
                id
            }
        };
        let info = Arc::new(CallInfo::default());
        req.extensions_mut().insert(info.clone());
        self.metrics.0.in_flight.inc();
        let mut record = Record {
            metrics: self.metrics.clone(),
            method: rpc_name(req.uri().path()).to_string(),
            request_id: request_id.clone(),
            info,
            started: Instant::now(),
            done: false,
        };
        let inner = self.inner.clone();
        Box::pin(async move {
            let mut resp = match inner.oneshot(req).await {
                Ok(resp) => resp,
                Err(e) => {
                    record.finish(e.code(), &e.to_string());
                    e.into_response()
                }
            };
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                resp.headers_mut().insert("x-request-id", v);
            }
            if let Some(code) = header_status(resp.headers()) {
                let message = resp.headers().get("grpc-message").and_then(|m| m.to_str().ok()).unwrap_or("").to_string();
                record.finish(code, &message);
                return Ok(resp);
            }
            Ok(resp.map(|body| Body::new(ObservedBody { inner: body, record })))
        })
    }
}

/// Passes a response through and records the call when its trailers (its status) go by.
struct ObservedBody {
    inner: Body,
    record: Record,
}

impl http_body::Body for ObservedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = header_status(trailers).unwrap_or(Code::Unknown);
                    let message = trailers.get("grpc-message").and_then(|m| m.to_str().ok()).unwrap_or("").to_string();
                    self.record.finish(code, &message);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let (code, message) = (e.code(), e.message().to_string());
                self.record.finish(code, &message);
            }
            Poll::Ready(None) => self.record.finish(Code::Unknown, "response ended without a status"),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serve `GET /metrics` (HTTP/1.1) until `shutdown`.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Metrics) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move {
                    let resp = if req.uri().path() == "/metrics" {
                        Response::builder()
                            .header("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
                            .body(http_body_util::Full::new(Bytes::from(metrics.encode())))
                    } else {
                        Response::builder().status(404).body(http_body_util::Full::new(Bytes::from("try /metrics\n")))
                    };
                    Ok::<_, http::Error>(resp.expect("response"))
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
        });
    }
}
