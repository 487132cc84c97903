//! Sticky routing: the call goes to the worker its key ranks first among the healthy workers it
//! has not tried yet (`backends.rs` ranks them). The key is the dataset the call names; without
//! one, the caller's identity (so one caller's keyless calls share a warm worker); anonymous calls
//! without a key go round robin.

use std::future::Future;
use std::sync::Arc;

use http::{Request, Response};
use polarway_access::PolicyHandle;
use tonic::body::Body;
use tower::ServiceExt;

use crate::backends::{Backends, Strategy};
use crate::call::{routing_key, CallInfo, HttpService, Identity, Tried};
use crate::error::GatewayError;
use crate::layers::Step;

/// Chooses the worker and puts its `Arc<Endpoint>` in the request's extensions.
#[derive(Clone)]
pub struct Route {
    pub backends: Arc<Backends>,
    pub policy: PolicyHandle,
    /// From `--routing`; the policy's `routing.strategy` otherwise; hash by default.
    pub strategy: Option<Strategy>,
}

impl Step for Route {
    fn call(
        &self,
        mut req: Request<Body>,
        next: HttpService,
    ) -> impl Future<Output = Result<Response<Body>, GatewayError>> + Send + 'static + use<> {
        let strategy = self
            .strategy
            .or(self.policy.current().strategy)
            .unwrap_or(Strategy::Hash);
        let identity = req
            .extensions()
            .get::<Arc<Identity>>()
            .filter(|i| i.authenticated)
            .map(|i| i.name.clone());
        let key = routing_key(req.headers()).map(String::from).or(identity);
        let tried = req.extensions().get::<Tried>().map(|t| t.0.as_slice());
        let picked = self
            .backends
            .pick(strategy, key.as_deref(), tried.unwrap_or_default());
        let total = self.backends.endpoints().len();
        async move {
            let endpoint = picked.ok_or_else(|| {
                GatewayError::NoBackend(format!(
                    "no healthy worker left to try ({total} configured)"
                ))
            })?;
            if let Some(info) = req.extensions().get::<Arc<CallInfo>>() {
                info.set_backend(&endpoint.addr);
            }
            req.extensions_mut().insert(endpoint);
            next.oneshot(req).await
        }
    }
}
