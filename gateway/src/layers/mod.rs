//! The request path: each layer is one decision about a call, written as a [`Step`] (what it does
//! before handing the call to the rest of the path, and with the response that comes back).
//! `stack` puts them in order; `wrap` is the one adapter from a step to a tower service, so no
//! layer repeats tower's `Layer`/`Service`/`poll_ready` preamble.
//!
//! Outermost first: observe → deadline → auth (with body_key) → rate limit → in flight → retry →
//! route → the proxy. Layers talk to each other only through the request's extensions, whose
//! types live in `call.rs`.

pub mod auth;
pub mod body_key;
pub mod deadline;
pub mod inflight;
pub mod observe;
pub mod ratelimit;
pub mod retry;
pub mod route;

use std::future::Future;
use std::sync::Arc;

use http::{Request, Response};
use polarway_access::PolicyHandle;
use tonic::body::Body;
use tower::util::BoxCloneSyncService;

use crate::backends::{Backends, Strategy};
use crate::call::HttpService;
use crate::error::GatewayError;
use crate::metrics::Metrics;

/// One layer's decision about a call. `next` is the rest of the path.
pub trait Step: Clone + Send + Sync + 'static {
    fn call(
        &self,
        req: Request<Body>,
        next: HttpService,
    ) -> impl Future<Output = Result<Response<Body>, GatewayError>> + Send + 'static + use<Self>;
}

/// `step` in front of `next`.
pub fn wrap(step: impl Step, next: HttpService) -> HttpService {
    BoxCloneSyncService::new(tower::service_fn(move |req| step.call(req, next.clone())))
}

/// What the layers are made from.
pub struct Settings {
    pub policy: PolicyHandle,
    pub backends: Arc<Backends>,
    pub metrics: Metrics,
    /// `--routing`; the policy's `routing.strategy` otherwise.
    pub strategy: Option<Strategy>,
    pub retry_attempts: usize,
    pub retry_budget_percent: f32,
}

/// The whole path in front of `proxy`, outermost layer first. Starts the layers' background
/// tasks, so call it inside the runtime.
pub fn stack(s: &Settings, proxy: HttpService) -> HttpService {
    let path = wrap(
        route::Route {
            backends: s.backends.clone(),
            policy: s.policy.clone(),
            strategy: s.strategy,
        },
        proxy,
    );
    let path = wrap(
        retry::Retry::new(s.retry_attempts, s.retry_budget_percent, s.metrics.clone()),
        path,
    );
    let path = wrap(inflight::InFlight::new(s.policy.clone()), path);
    let path = wrap(
        ratelimit::RateLimit::new(s.policy.clone(), s.metrics.clone()),
        path,
    );
    let path = wrap(
        auth::Auth {
            policy: s.policy.clone(),
            metrics: s.metrics.clone(),
            jwks: Default::default(),
        },
        path,
    );
    let path = wrap(
        deadline::Deadlines {
            policy: s.policy.clone(),
        },
        path,
    );
    wrap(
        observe::Observe {
            metrics: s.metrics.clone(),
        },
        path,
    )
}
