//! Observation, the outermost layer: a request id for every call (`x-request-id`, generated when
//! absent and forwarded to the worker), one access-log line per call when it ends (method,
//! identity, worker, status, duration), and the per-call metrics. This layer is also where gateway
//! errors become trailers-only gRPC responses: it never returns an error.

use std::future::Future;
use std::sync::Arc;

use http::{HeaderValue, Request, Response};
use tonic::body::Body;
use tower::ServiceExt;

use crate::call::{rpc_name, CallInfo, HttpService};
use crate::error::GatewayError;
use crate::layers::Step;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct Observe {
    pub metrics: Metrics,
}

impl Step for Observe {
    fn call(
        &self,
        mut req: Request<Body>,
        next: HttpService,
    ) -> impl Future<Output = Result<Response<Body>, GatewayError>> + Send + 'static + use<> {
        let request_id = match req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
        {
            Some(id) if !id.is_empty() && id.len() <= 128 => id.to_string(),
            _ => {
                // From the thread-local CSPRNG: `Uuid::new_v4` makes a getrandom syscall per call,
                // which showed in the gateway's profile of small calls.
                let id = uuid::Builder::from_random_bytes(rand::random())
                    .into_uuid()
                    .to_string();
                req.headers_mut()
                    .insert("x-request-id", HeaderValue::from_str(&id).expect("uuid"));
                id
            }
        };
        let info = Arc::new(CallInfo::default());
        req.extensions_mut().insert(info.clone());
        let method = rpc_name(req.uri().path()).to_string();
        let grpc = self.metrics.grpc();
        let req = grpc.count_request(req, &method);
        let access_id = request_id.clone();
        let mut call = grpc.start(&method).on_end(move |code, message, elapsed| {
            let backend = info.backend();
            tracing::info!(
                target: "access",
                request_id = %access_id,
                method = ?method,
                identity = ?info.identity(),
                backend = %backend,
                status = ?code,
                ms = elapsed.as_secs_f64() * 1000.0,
                "{message}"
            );
        });
        async move {
            let mut resp = match next.oneshot(req).await {
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
        }
    }
}
