//! Observation, the outermost layer: a request id for every call (`x-request-id`, generated when
//! absent and forwarded to the worker), one access-log line per call when it ends (method,
//! identity, worker, status, duration), and Prometheus metrics, served on `--metrics-port`.
//! This layer is also where gateway errors become trailers-only gRPC responses.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{HeaderValue, Request, Response};
use polarway_telemetry::{method_label, GrpcMetrics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tonic::body::Body;
use tower::{Layer, Service, ServiceExt};

use crate::{rpc_name, HttpService};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeniedLabels {
    method: String,
    reason: &'static str,
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
    registry: Arc<Registry>,
    grpc: GrpcMetrics,
    upstream_healthy: Family<BackendLabel, Gauge>,
    upstream_requests: Family<BackendLabel, Counter>,
    ejections: Family<BackendLabel, Counter>,
    retries: Family<MethodLabel, Counter>,
    rate_limited: Family<MethodLabel, Counter>,
    policy_reloads: Family<ResultLabel, Counter>,
    authz_denied: Family<DeniedLabels, Counter>,
}

/// The gateway's metrics: the per-call series every Polarway server exports (polarway-telemetry)
/// plus the gateway's own; cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let grpc = GrpcMetrics::register(&mut registry);
        let upstream_healthy = Family::<BackendLabel, Gauge>::default();
        let upstream_requests = Family::<BackendLabel, Counter>::default();
        let ejections = Family::<BackendLabel, Counter>::default();
        let retries = Family::<MethodLabel, Counter>::default();
        let rate_limited = Family::<MethodLabel, Counter>::default();
        let policy_reloads = Family::<ResultLabel, Counter>::default();
        let authz_denied = Family::<DeniedLabels, Counter>::default();
        registry.register(
            "polarway_gateway_upstream_healthy",
            "1 when the worker passes its health checks",
            upstream_healthy.clone(),
        );
        registry.register(
            "polarway_gateway_upstream_requests",
            "Calls sent to each worker (retries included)",
            upstream_requests.clone(),
        );
        registry.register(
            "polarway_gateway_ejections",
            "Times a worker was taken out of rotation (failed checks or calls)",
            ejections.clone(),
        );
        registry.register(
            "polarway_gateway_retries",
            "Calls retried on another worker",
            retries.clone(),
        );
        registry.register(
            "polarway_gateway_rate_limited",
            "Calls refused by a rate limit",
            rate_limited.clone(),
        );
        registry.register(
            "polarway_gateway_policy_reloads",
            "Policy reloads, by result (ok, refused)",
            policy_reloads.clone(),
        );
        registry.register(
            "polarway_authz_denied",
            "Calls refused by authorization, by method and reason (grant: the grants lack the method or dataset; key: x-polarway-key names another dataset than the request)",
            authz_denied.clone(),
        );
        let registry = Arc::new(registry);
        Self(Arc::new(Inner {
            registry,
            grpc,
            upstream_healthy,
            upstream_requests,
            ejections,
            retries,
            rate_limited,
            policy_reloads,
            authz_denied,
        }))
    }
}

impl Metrics {
    pub fn retry(&self, method: &str) {
        self.0
            .retries
            .get_or_create(&MethodLabel {
                method: method_label(method).into(),
            })
            .inc();
    }

    pub fn rate_limited(&self, method: &str) {
        self.0
            .rate_limited
            .get_or_create(&MethodLabel {
                method: method_label(method).into(),
            })
            .inc();
    }

    pub fn authz_denied(&self, method: &str, reason: &'static str) {
        self.0
            .authz_denied
            .get_or_create(&DeniedLabels {
                method: method_label(method).into(),
                reason,
            })
            .inc();
    }

    pub fn policy_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "refused" };
        self.0
            .policy_reloads
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    pub fn upstream_health(&self, backend: &str, healthy: bool) {
        self.0
            .upstream_healthy
            .get_or_create(&BackendLabel {
                backend: backend.into(),
            })
            .set(healthy as i64);
    }

    pub fn upstream_request(&self, backend: &str) {
        self.0
            .upstream_requests
            .get_or_create(&BackendLabel {
                backend: backend.into(),
            })
            .inc();
    }

    pub fn ejection(&self, backend: &str) {
        self.0
            .ejections
            .get_or_create(&BackendLabel {
                backend: backend.into(),
            })
            .inc();
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.0.registry.clone()
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        polarway_telemetry::endpoint::encode(&self.0.registry)
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

#[derive(Clone)]
pub struct ObserveLayer {
    pub metrics: Metrics,
}

impl Layer<HttpService> for ObserveLayer {
    type Service = Observe;
    fn layer(&self, inner: HttpService) -> Observe {
        Observe {
            inner,
            metrics: self.metrics.clone(),
        }
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
        let request_id = match req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
        {
            Some(id) if !id.is_empty() && id.len() <= 128 => id.to_string(),
            _ => {
                let id = uuid::Uuid::new_v4().to_string();
                req.headers_mut()
                    .insert("x-request-id", HeaderValue::from_str(&id).expect("uuid"));
                id
            }
        };
        let info = Arc::new(CallInfo::default());
        req.extensions_mut().insert(info.clone());
        let method = rpc_name(req.uri().path()).to_string();
        let grpc = &self.metrics.0.grpc;
        let req = grpc.count_request(req, &method);
        let access_id = request_id.clone();
        let mut call = grpc.start(&method).on_end(move |code, message, elapsed| {
            let backend = info
                .backend
                .lock()
                .unwrap()
                .clone()
                .unwrap_or_else(|| "-".into());
            tracing::info!(
                target: "access",
                request_id = %access_id,
                method = ?method,
                identity = ?info.identity.get().map(String::as_str).unwrap_or("-"),
                backend = %backend,
                status = ?code,
                ms = elapsed.as_secs_f64() * 1000.0,
                "{message}"
            );
        });
        let inner = self.inner.clone();
        Box::pin(async move {
            let mut resp = match inner.oneshot(req).await {
                Ok(resp) => resp,
                Err(e) => {
                    call.finish(e.code(), &e.to_string());
                    e.into_response()
                }
            };
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                resp.headers_mut().insert("x-request-id", v);
            }
            Ok(call.observe(resp))
        })
    }
}
