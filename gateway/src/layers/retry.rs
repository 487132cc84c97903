//! Retries, as linkerd2-proxy does them: only idempotent calls (Load, Query without `into`, List,
//! Describe, Health, CacheStats, and Flight's GetFlightInfo, GetSchema, DoGet, ListFlights), only when the request body is small enough to keep (≤ 64 KiB;
//! unary requests are tiny), only when the worker failed before answering (a transport error, or
//! a trailers-only UNAVAILABLE), each time on another worker, and within a retry budget (a share
//! of recent calls) so that retries cannot multiply load during an outage.
//!
//! Whether a Query has `into` is read from its buffered body (a QueryRequest is decoded; its
//! payload is a few bytes of SQL).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tonic::body::Body;
use tonic::Code;
use tower::retry::budget::{Budget, TpsBudget};
use tower::ServiceExt;

use crate::backends::Endpoint;
use crate::call::{rpc_name, HttpService, Tried};
use crate::error::{header_status, GatewayError};
use crate::layers::Step;
use crate::metrics::Metrics;

/// Largest request body kept for a retry.
pub const MAX_BUFFER: usize = 64 * 1024;

const IDEMPOTENT: &[&str] = &[
    "Load",
    "Query",
    "List",
    "Describe",
    "Health",
    "CacheStats",
    // Flight reads: a ticket names a fixed snapshot, so its DoGet reads the same on any worker.
    "arrow.flight.protocol.FlightService/GetFlightInfo",
    "arrow.flight.protocol.FlightService/GetSchema",
    "arrow.flight.protocol.FlightService/DoGet",
    "arrow.flight.protocol.FlightService/ListFlights",
    "arrow.flight.protocol.FlightService/ListActions",
];

#[derive(Clone)]
pub struct Retry {
    budget: Arc<TpsBudget>,
    attempts: usize,
    metrics: Metrics,
}

impl Retry {
    /// `attempts` calls at most per request; retries may add `percent` % to recent traffic
    /// (plus a floor of 10 per second).
    pub fn new(attempts: usize, percent: f32, metrics: Metrics) -> Self {
        let budget = TpsBudget::new(
            Duration::from_secs(10),
            10,
            (percent / 100.0).clamp(0.0, 10.0),
        );
        Self {
            budget: Arc::new(budget),
            attempts: attempts.max(1),
            metrics,
        }
    }
}

enum Buffered {
    Whole(Bytes),
    /// Too large to keep: the call goes once, with the part read so far in front.
    Partial(Body),
}

async fn buffer(mut body: Body) -> Result<Buffered, GatewayError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| GatewayError::InvalidArgument(format!("request body: {e}")))?;
        if let Some(data) = frame.data_ref() {
            buf.extend_from_slice(data);
        }
        if buf.len() > MAX_BUFFER {
            let head = futures::stream::once(async move {
                Ok::<_, tonic::Status>(http_body::Frame::data(buf.freeze()))
            });
            let rest = http_body_util::BodyStream::new(body);
            let chained = http_body_util::StreamBody::new(futures::StreamExt::chain(head, rest));
            return Ok(Buffered::Partial(Body::new(chained)));
        }
    }
    Ok(Buffered::Whole(buf.freeze()))
}

/// Does this gRPC-framed QueryRequest set `into`? Incomplete, compressed or undecodable: assume
/// it does (so it is not retried).
pub fn query_has_into(body: &[u8]) -> bool {
    use prost::Message;
    if body.len() < 5 || body[0] != 0 {
        return true;
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    match body
        .get(5..5 + len)
        .map(polarway_proto::v1::QueryRequest::decode)
    {
        Some(Ok(q)) => q.into.is_some(),
        _ => true,
    }
}

fn attempt(parts: &http::request::Parts, body: &Bytes, tried: &[String]) -> Request<Body> {
    let mut req = Request::new(Body::new(Full::new(body.clone())));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = parts.uri.clone();
    *req.version_mut() = parts.version;
    *req.headers_mut() = parts.headers.clone();
    *req.extensions_mut() = parts.extensions.clone();
    req.extensions_mut().insert(Tried(tried.to_vec()));
    req
}

impl Step for Retry {
    fn call(
        &self,
        req: Request<Body>,
        next: HttpService,
    ) -> impl Future<Output = Result<Response<Body>, GatewayError>> + Send + 'static + use<> {
        let this = self.clone();
        let method = rpc_name(req.uri().path()).to_string();
        async move {
            this.budget.deposit();
            if !IDEMPOTENT.contains(&method.as_str()) {
                return next.oneshot(req).await;
            }
            let (parts, body) = req.into_parts();
            let body = match buffer(body).await? {
                Buffered::Whole(b) => b,
                Buffered::Partial(body) => {
                    return next.oneshot(Request::from_parts(parts, body)).await
                }
            };
            if method == "Query" && query_has_into(&body) {
                return next.oneshot(attempt(&parts, &body, &[])).await;
            }
            let mut tried: Vec<String> = Vec::new();
            loop {
                let result = next.clone().oneshot(attempt(&parts, &body, &tried)).await;
                let failed_on = match &result {
                    Err(GatewayError::Upstream { backend, .. }) => Some(backend.clone()),
                    Ok(resp) if header_status(resp.headers()) == Some(Code::Unavailable) => resp
                        .extensions()
                        .get::<Arc<Endpoint>>()
                        .map(|e| e.addr.clone()),
                    _ => None,
                };
                let Some(backend) = failed_on else {
                    return result;
                };
                tried.push(backend);
                if tried.len() >= this.attempts || !this.budget.withdraw() {
                    return result;
                }
                this.metrics.retry(&method);
                tracing::info!(method = %method, tried = ?tried, "retrying on another worker");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::query_has_into;

    fn frame(msg: &[u8]) -> Vec<u8> {
        let mut f = vec![0];
        f.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        f.extend_from_slice(msg);
        f
    }

    #[test]
    fn sees_into_without_decoding() {
        // sql = "SELECT 1"
        let sql = [&[0x0a, 8][..], b"SELECT 1"].concat();
        assert!(!query_has_into(&frame(&sql)));
        let with_into = [&sql[..], &[0x12, 3][..], b"out"].concat();
        assert!(query_has_into(&frame(&with_into)));
        assert!(
            query_has_into(&frame(&[0x0a, 50])),
            "truncated: assume into"
        );
        assert!(query_has_into(&[1, 0, 0, 0, 0]), "compressed: assume into");
    }
}
