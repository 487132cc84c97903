//! Authentication and authorization: the caller's bearer token or JWT becomes an identity (see
//! `polarway-access`), its roles become grants, and the call goes on only if the grants allow
//! its method on the dataset it names. The dataset is the one `x-polarway-key` names, and the
//! request body must name the same one (`body_key.rs`). The grants go to the worker in
//! `x-polarway-grants`, where they are enforced again on everything the call touches; the
//! caller's own credentials never reach a worker. Failures are UNAUTHENTICATED or
//! PERMISSION_DENIED, trailers-only.

use std::future::Future;
use std::sync::Arc;

use http::{HeaderValue, Request, Response};
use polarway_access::grants::{body_permission, gateway_allows};
use polarway_access::policy::bearer;
use polarway_access::{JwksCache, Policy, PolicyHandle, GRANTS_HEADER};
use tonic::body::Body;
use tower::ServiceExt;

use crate::call::{routing_key, rpc_name, CallInfo, HttpService};
use crate::error::GatewayError;
use crate::layers::{body_key, Step};
use crate::metrics::Metrics;

/// Puts the caller's `Arc<Identity>` in the request's extensions, or refuses the call.
#[derive(Clone)]
pub struct Auth {
    pub policy: PolicyHandle,
    pub metrics: Metrics,
    /// Keys fetched from the policy's JWKS URLs: this layer's own state, kept across reloads.
    pub jwks: Arc<JwksCache>,
}

impl Step for Auth {
    fn call(
        &self,
        req: Request<Body>,
        next: HttpService,
    ) -> impl Future<Output = Result<Response<Body>, GatewayError>> + Send + 'static + use<> {
        let policy = self.policy.current();
        let metrics = self.metrics.clone();
        let jwks = self.jwks.clone();
        let method = rpc_name(req.uri().path()).to_string();
        async move {
            if method == HANDSHAKE {
                return handshake(req, &policy, &jwks).await;
            }
            let result = authorize(req, &policy, &jwks, &method).await;
            if let Err(e) = &result {
                let reason = match e {
                    GatewayError::PermissionDenied(_) => Some("grant"),
                    GatewayError::InvalidArgument(_) => Some("key"),
                    _ => None,
                };
                if let Some(reason) = reason {
                    metrics.authz_denied(&method, reason);
                }
            }
            next.oneshot(result?).await
        }
    }
}

/// Flight's Handshake, by its full name.
const HANDSHAKE: &str = "arrow.flight.protocol.FlightService/Handshake";

/// Flight's Handshake is answered here, since workers never see the caller's credentials: they
/// are checked, and the bearer token to send on later calls comes back in the response headers
/// and trailers, where Flight clients (ADBC, JDBC, pyarrow) look for it. A caller that sent a user
/// name and the token as password (Basic) gets that token.
async fn handshake(
    req: Request<Body>,
    policy: &Policy,
    jwks: &JwksCache,
) -> Result<http::Response<Body>, GatewayError> {
    let identity = policy.authenticate(req.headers(), jwks).await?;
    if let Some(info) = req.extensions().get::<Arc<CallInfo>>() {
        info.set_identity(&identity.name);
    }
    let token = match req.headers().get(http::header::AUTHORIZATION) {
        Some(v) => Some(bearer(v)?),
        None => None,
    };
    let authorization = token
        .map(|t| HeaderValue::from_str(&format!("Bearer {t}")))
        .transpose()
        .map_err(|e| GatewayError::Internal(format!("authorization header: {e}")))?;
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    if let Some(v) = &authorization {
        trailers.insert(http::header::AUTHORIZATION, v.clone());
    }
    // One empty HandshakeResponse: a gRPC frame of length zero.
    let frames = [
        http_body::Frame::data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0])),
        http_body::Frame::trailers(trailers),
    ];
    let body = http_body_util::StreamBody::new(futures::stream::iter(
        frames.map(Ok::<_, std::convert::Infallible>),
    ));
    let mut response = http::Response::new(Body::new(body));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    if let Some(v) = authorization {
        response
            .headers_mut()
            .insert(http::header::AUTHORIZATION, v);
    }
    Ok(response)
}

/// Authenticate the caller, check its grants against the call, and put them on the request.
async fn authorize(
    req: Request<Body>,
    policy: &Policy,
    jwks: &JwksCache,
    method: &str,
) -> Result<Request<Body>, GatewayError> {
    let identity = policy.authenticate(req.headers(), jwks).await?;
    if let Some(info) = req.extensions().get::<Arc<CallInfo>>() {
        info.set_identity(&identity.name);
    }
    let grants = policy.grants(&identity);
    let may_use = |name: &str| match grants.allows(body_permission(method), name) {
        true => Ok(()),
        false => Err(GatewayError::PermissionDenied(format!(
            "{} may not call {method} on dataset {name:?}{}",
            identity.name,
            if method == "Query" {
                " (writing a query's result needs Store on it)"
            } else {
                ""
            }
        ))),
    };
    let mut req = body_key::reconcile(req, method, may_use).await?;
    gateway_allows(&grants, method, routing_key(req.headers()))?;
    // Workers never see the caller's credentials (the proxy sets the backend token); they get
    // the caller's grants instead, replacing whatever the caller sent as such.
    req.headers_mut().remove(http::header::AUTHORIZATION);
    let value = HeaderValue::from_str(&grants.encode())
        .map_err(|e| GatewayError::Internal(format!("grants header: {e}")))?;
    req.headers_mut().insert(GRANTS_HEADER, value);
    req.extensions_mut().insert(identity);
    Ok(req)
}
