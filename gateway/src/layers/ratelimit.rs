//! Rate limits: a call over its identity's quota (`quota.rs`) is refused with RESOURCE_EXHAUSTED
//! and the wait in `retry-after-ms` (and `grpc-retry-pushback-ms`).

use std::future::Future;
use std::sync::Arc;

use http::{Request, Response};
use polarway_access::PolicyHandle;
use tonic::body::Body;
use tower::ServiceExt;

use crate::call::{rpc_name, HttpService, Identity};
use crate::error::GatewayError;
use crate::layers::Step;
use crate::metrics::Metrics;
use crate::quota::Limiters;

#[derive(Clone)]
pub struct RateLimit {
    limiters: Arc<Limiters>,
    metrics: Metrics,
}

impl RateLimit {
    pub fn new(policy: PolicyHandle, metrics: Metrics) -> Self {
        Self {
            limiters: Limiters::new(policy),
            metrics,
        }
    }
}

impl Step for RateLimit {
    fn call(
        &self,
        req: Request<Body>,
        next: HttpService,
    ) -> impl Future<Output = Result<Response<Body>, GatewayError>> + Send + 'static + use<> {
        let identity = req.extensions().get::<Arc<Identity>>().cloned();
        let method = rpc_name(req.uri().path()).to_string();
        let limits = self.limiters.get();
        let metrics = self.metrics.clone();
        async move {
            if let Some(identity) = identity {
                if let Err(retry_after) = limits.acquire(&identity, &method) {
                    metrics.rate_limited(&method);
                    return Err(GatewayError::RateLimited {
                        identity: identity.name.clone(),
                        retry_after,
                    });
                }
            }
            next.oneshot(req).await
        }
    }
}
