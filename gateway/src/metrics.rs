//! The gateway's Prometheus metrics, served on `--metrics-port`: the per-call series every
//! Polarway server exports (recorded by the observe layer) and the gateway's own (workers' health,
//! ejections, retries, rate limits, policy reloads, authorization refusals). Labels are method
//! names from a fixed list, worker addresses and fixed words: never caller text.

use std::sync::Arc;

use polarway_telemetry::{method_label, GrpcMetrics};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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

    /// The per-call series (requests, durations, statuses, bytes).
    pub fn grpc(&self) -> &GrpcMetrics {
        &self.0.grpc
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.0.registry.clone()
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        polarway_telemetry::endpoint::encode(&self.0.registry)
    }
}
