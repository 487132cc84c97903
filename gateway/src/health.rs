//! Health: active `grpc.health.v1` checks of every worker (a failed check ejects it, a passing
//! one brings it back; the proxy also ejects after consecutive transport failures), and the
//! gateway's own `grpc.health.v1` service: SERVING while at least one worker is, NOT_SERVING when
//! none is or while draining.

use std::sync::Arc;
use std::time::Duration;

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::server::HealthReporter;

use crate::backends::{Backends, Endpoint};
use crate::metrics::Metrics;
use crate::proxy::UpstreamClient;

/// The service names the gateway reports: the whole server and the proxied service.
pub const SERVICES: &[&str] = &["", "polarway.v1.Polarway"];

pub async fn set_all(reporter: &HealthReporter, status: tonic_health::ServingStatus) {
    for s in SERVICES {
        reporter.set_service_status(*s, status).await;
    }
}

async fn check(
    client: &UpstreamClient,
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<(), String> {
    let mut health = HealthClient::with_origin(client.clone(), endpoint.uri.clone());
    let call = health.check(HealthCheckRequest {
        service: String::new(),
    });
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Err(format!("no answer within {timeout:?}")),
        Ok(Err(status)) => Err(status.message().to_string()),
        Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32 => Ok(()),
        Ok(Ok(r)) => Err(format!("status {:?}", r.get_ref().status())),
    }
}

/// Check every worker every `every`, forever.
pub async fn check_loop(
    backends: Arc<Backends>,
    client: UpstreamClient,
    reporter: HealthReporter,
    metrics: Metrics,
    every: Duration,
    timeout: Duration,
) {
    let mut serving = None;
    loop {
        let endpoints = backends.endpoints();
        let results =
            futures::future::join_all(endpoints.iter().map(|e| check(&client, e, timeout))).await;
        for (endpoint, result) in endpoints.iter().zip(results) {
            let ok = result.is_ok();
            if endpoint.set_healthy(ok) {
                match result {
                    Ok(()) => {
                        tracing::info!(backend = %endpoint.addr, "worker healthy: back in rotation")
                    }
                    Err(e) => {
                        metrics.ejection(&endpoint.addr);
                        tracing::warn!(backend = %endpoint.addr, "worker unhealthy, ejected: {e}")
                    }
                }
            }
            metrics.upstream_health(&endpoint.addr, ok);
        }
        let any = endpoints.iter().any(|e| e.is_healthy());
        if serving != Some(any) {
            serving = Some(any);
            set_all(
                &reporter,
                if any {
                    tonic_health::ServingStatus::Serving
                } else {
                    tonic_health::ServingStatus::NotServing
                },
            )
            .await;
        }
        tokio::time::sleep(every).await;
    }
}
