//! Per-call gRPC metrics, recorded from the HTTP/2 exchange: the method from the path, the status
//! from `grpc-status` (in the response headers of a trailers-only answer, else in the trailers),
//! the bytes from the body frames. Payloads are never decoded, so the gateway can use this too.
//!
//! Series (labels: `method` = RPC name, `status` = canonical gRPC code name such as `NOT_FOUND`):
//! `polarway_grpc_requests_total`, `polarway_grpc_errors_total`,
//! `polarway_grpc_request_duration_seconds`, `polarway_grpc_requests_in_flight`,
//! `polarway_grpc_message_bytes_total{direction="received"|"sent"}`.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response};
use http_body::Frame;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tonic::body::Body;
use tonic::Code;
use tower::{Layer, Service};

/// Buckets from 100 µs (a cached Describe) to 5 min (a long query or a multi-GiB stream).
pub const DURATION_BUCKETS: [f64; 20] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

pub fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodStatus {
    method: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodDirection {
    pub method: String,
    pub direction: &'static str,
}

/// The metric families every Polarway server exports; cheap to clone.
#[derive(Clone)]
pub struct GrpcMetrics {
    requests: Family<MethodStatus, Counter>,
    errors: Family<MethodStatus, Counter>,
    duration: Family<MethodLabel, Histogram>,
    in_flight: Gauge,
    bytes: Family<MethodDirection, Counter>,
}

impl GrpcMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            requests: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            in_flight: Gauge::default(),
            bytes: Family::default(),
        };
        registry.register(
            "polarway_grpc_requests",
            "gRPC calls, by method and status",
            m.requests.clone(),
        );
        registry.register(
            "polarway_grpc_errors",
            "gRPC calls that ended with a status other than OK",
            m.errors.clone(),
        );
        registry.register(
            "polarway_grpc_request_duration_seconds",
            "Duration of gRPC calls, to the end of the response stream",
            m.duration.clone(),
        );
        registry.register(
            "polarway_grpc_requests_in_flight",
            "gRPC calls in progress",
            m.in_flight.clone(),
        );
        registry.register(
            "polarway_grpc_message_bytes",
            "gRPC body bytes, by method and direction (received, sent)",
            m.bytes.clone(),
        );
        m
    }

    fn bytes_counter(&self, method: &str, direction: &'static str) -> Counter {
        self.bytes
            .get_or_create(&MethodDirection {
                method: method_label(method).into(),
                direction,
            })
            .clone()
    }

    /// Start recording a call; it is recorded once, when its status is known or when it is dropped.
    pub fn start(&self, method: &str) -> Call {
        self.in_flight.inc();
        Call {
            metrics: self.clone(),
            sent: self.bytes_counter(method, "sent"),
            method: method_label(method).to_string(),
            started: Instant::now(),
            on_end: None,
            done: false,
        }
    }

    /// Count the request body's bytes as they arrive.
    pub fn count_request(&self, req: Request<Body>, method: &str) -> Request<Body> {
        let counter = self.bytes_counter(method, "received");
        req.map(|inner| Body::new(CountedBody { inner, counter }))
    }
}

type OnEnd = Box<dyn FnOnce(Code, &str, Duration) + Send + Sync>;

/// One call being recorded.
pub struct Call {
    metrics: GrpcMetrics,
    sent: Counter,
    method: String,
    started: Instant,
    on_end: Option<OnEnd>,
    done: bool,
}

impl Call {
    /// Also run `f` (status, message, duration) when the call ends: the gateway's access log.
    pub fn on_end(mut self, f: impl FnOnce(Code, &str, Duration) + Send + Sync + 'static) -> Self {
        self.on_end = Some(Box::new(f));
        self
    }

    pub fn finish(&mut self, code: Code, message: &str) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let m = &self.metrics;
        let labels = MethodStatus {
            method: self.method.clone(),
            status: code_name(code),
        };
        m.requests.get_or_create(&labels).inc();
        if code != Code::Ok {
            m.errors.get_or_create(&labels).inc();
        }
        let elapsed = self.started.elapsed();
        m.duration
            .get_or_create(&MethodLabel {
                method: self.method.clone(),
            })
            .observe(elapsed.as_secs_f64());
        m.in_flight.dec();
        if let Some(f) = self.on_end.take() {
            f(code, message, elapsed);
        }
    }

    /// Record the call when `resp` ends: now for a trailers-only answer, else when its trailers pass.
    pub fn observe(mut self, resp: Response<Body>) -> Response<Body> {
        if let Some(code) = header_status(resp.headers()) {
            let message = resp
                .headers()
                .get("grpc-message")
                .and_then(|m| m.to_str().ok())
                .unwrap_or("")
                .to_string();
            self.finish(code, &message);
            return resp;
        }
        resp.map(|inner| Body::new(ObservedBody { inner, call: self }))
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        // Dropped before a status went by: the caller went away or the connection broke.
        self.finish(Code::Cancelled, "cancelled before the end of the response");
    }
}

/// Passes a response through, counting its bytes, and records the call at its trailers.
struct ObservedBody {
    inner: Body,
    call: Call,
}

impl http_body::Body for ObservedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.call.sent.inc_by(data.len() as u64);
                } else if let Some(trailers) = frame.trailers_ref() {
                    let code = header_status(trailers).unwrap_or(Code::Unknown);
                    let message = trailers
                        .get("grpc-message")
                        .and_then(|m| m.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    self.call.finish(code, &message);
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let (code, message) = (e.code(), e.message().to_string());
                self.call.finish(code, &message);
            }
            Poll::Ready(None) => self
                .call
                .finish(Code::Unknown, "response ended without a status"),
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

/// Passes a request body through, counting its bytes.
struct CountedBody {
    inner: Body,
    counter: Counter,
}

impl http_body::Body for CountedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.counter.inc_by(data.len() as u64);
            }
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

/// Records every call through a tonic server (the worker's outermost layer).
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    pub metrics: GrpcMetrics,
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: GrpcMetrics,
}

impl<S> Service<Request<Body>> for GrpcMetricsService<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let method = rpc_name(req.uri().path()).to_string();
        let call = self.metrics.start(&method);
        let req = self.metrics.count_request(req, &method);
        // The clone is the ready one's twin; call the one poll_ready prepared (tower's idiom).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move { Ok(call.observe(inner.call(req).await?)) })
    }
}

/// The method name used in metrics and policies: `Load` for `/polarway.v1.Polarway/Load`, the
/// full `service/method` for other services.
pub fn rpc_name(path: &str) -> &str {
    match path.strip_prefix("/polarway.v1.Polarway/") {
        Some(m) => m,
        None => path.trim_start_matches('/'),
    }
}

/// Methods that appear as themselves in metric labels; any other path is counted as `other`, so
/// no caller-chosen text ever becomes a label (each would be a new series, and a `"` in one
/// would break the exposition format).
const KNOWN_METHODS: &[&str] = &[
    "Health",
    "Store",
    "StoreBatch",
    "Load",
    "Query",
    "List",
    "Describe",
    "Delete",
    "CacheStats",
    "arrow.flight.protocol.FlightService/Handshake",
    "arrow.flight.protocol.FlightService/ListFlights",
    "arrow.flight.protocol.FlightService/GetFlightInfo",
    "arrow.flight.protocol.FlightService/PollFlightInfo",
    "arrow.flight.protocol.FlightService/GetSchema",
    "arrow.flight.protocol.FlightService/DoGet",
    "arrow.flight.protocol.FlightService/DoPut",
    "arrow.flight.protocol.FlightService/DoExchange",
    "arrow.flight.protocol.FlightService/DoAction",
    "arrow.flight.protocol.FlightService/ListActions",
    "grpc.health.v1.Health/Check",
    "grpc.health.v1.Health/Watch",
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// The `method` label of an RPC name (as `rpc_name` gives it): the name itself if known, else `other`.
pub fn method_label(rpc: &str) -> &'static str {
    KNOWN_METHODS
        .iter()
        .find(|m| **m == rpc)
        .copied()
        .unwrap_or("other")
}

/// The gRPC status a header map carries (response headers of a trailers-only answer, or trailers).
pub fn header_status(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32)
}

pub use polarway_proto::transport::code_name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_is_counted_once_with_its_status() {
        let mut registry = Registry::default();
        let m = GrpcMetrics::register(&mut registry);
        let mut call = m.start("Load");
        call.finish(Code::NotFound, "no such dataset");
        drop(call); // must not count a second time as CANCELLED
        drop(m.start("Describe")); // a call that never got a status
        let text = crate::endpoint::encode(&registry);
        assert!(
            text.contains(r#"polarway_grpc_requests_total{method="Load",status="NOT_FOUND"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"polarway_grpc_errors_total{method="Load",status="NOT_FOUND"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"polarway_grpc_requests_total{method="Describe",status="CANCELLED"} 1"#
            ),
            "{text}"
        );
        assert!(!text.contains(r#"status="CANCELLED"} 2"#), "{text}");
        assert!(
            text.contains("polarway_grpc_requests_in_flight 0"),
            "{text}"
        );
        assert!(
            text.contains(r#"polarway_grpc_request_duration_seconds_count{method="Load"} 1"#),
            "{text}"
        );
    }
}
