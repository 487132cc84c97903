//! Deadlines: the caller's `grpc-timeout`, cut to the policy's `limits.max_deadline_secs`, becomes
//! a [`Deadline`] that the proxy forwards as the time left; if the worker has not answered by then
//! the call ends with a trailers-only DEADLINE_EXCEEDED. The policy's cap also bounds streams that
//! have started (they end with DEADLINE_EXCEEDED trailers).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{HeaderValue, Request, Response};
use http_body::Frame;
use tonic::body::Body;
use tower::{Layer, Service, ServiceExt};

use crate::error::GatewayError;
use crate::HttpService;
use polarway_access::PolicyHandle;

/// When the call must be over.
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Instant);

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_timeout(v: &str) -> Option<Duration> {
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

pub fn encode_timeout(d: Duration) -> HeaderValue {
    let ms = d.as_millis();
    let v = if ms == 0 {
        format!("{}u", d.as_micros().max(1))
    } else if ms < 100_000_000 {
        format!("{ms}m")
    } else {
        format!("{}S", d.as_secs().min(99_999_999))
    };
    HeaderValue::from_str(&v).expect("ascii")
}

#[derive(Clone)]
pub struct DeadlineLayer {
    pub policy: PolicyHandle,
}

impl Layer<HttpService> for DeadlineLayer {
    type Service = DeadlineService;
    fn layer(&self, inner: HttpService) -> DeadlineService {
        DeadlineService {
            inner,
            policy: self.policy.clone(),
        }
    }
}

#[derive(Clone)]
pub struct DeadlineService {
    inner: HttpService,
    policy: PolicyHandle,
}

impl Service<Request<Body>> for DeadlineService {
    type Response = Response<Body>;
    type Error = GatewayError;
    type Future = BoxFuture<'static, Result<Response<Body>, GatewayError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), GatewayError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let requested = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_timeout);
        let cap = self.policy.current().max_deadline;
        let timeout = match (requested, cap) {
            (Some(r), Some(c)) => Some(r.min(c)),
            (r, c) => r.or(c),
        };
        let inner = self.inner.clone();
        let Some(timeout) = timeout else {
            return Box::pin(inner.oneshot(req));
        };
        let now = Instant::now();
        let at = now + timeout;
        // Like the workers (tonic), the caller's deadline bounds the wait for the response; a
        // stream that has started may outlive it (the Rust client bounds each message instead).
        // The policy's cap bounds the whole call, streams included.
        let stream_at = cap.map(|c| now + c);
        req.extensions_mut().insert(Deadline(at));
        Box::pin(async move {
            match tokio::time::timeout_at(at.into(), inner.oneshot(req)).await {
                Err(_) => Err(GatewayError::DeadlineExceeded),
                Ok(Err(e)) => Err(e),
                Ok(Ok(resp)) => match stream_at {
                    None => Ok(resp),
                    Some(at) => Ok(resp.map(|body| {
                        Body::new(DeadlineBody {
                            inner: body,
                            sleep: Box::pin(tokio::time::sleep_until(at.into())),
                            done: false,
                        })
                    })),
                },
            }
        })
    }
}

/// Ends a streaming response with DEADLINE_EXCEEDED trailers when the deadline passes.
struct DeadlineBody {
    inner: Body,
    sleep: Pin<Box<tokio::time::Sleep>>,
    done: bool,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        // The deadline first: a worker that keeps up always has data ready, so checking it only
        // when the body is pending would never end a stream read by a slow caller.
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.done = true;
            let mut trailers = http::HeaderMap::new();
            let _ = tonic::Status::deadline_exceeded("deadline exceeded at the gateway")
                .add_header(&mut trailers);
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if frame.is_none() {
            self.done = true;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts() {
        assert_eq!(parse_timeout("30S"), Some(Duration::from_secs(30)));
        assert_eq!(parse_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_timeout("x"), None);
        assert_eq!(parse_timeout("123456789S"), None);
        assert_eq!(encode_timeout(Duration::from_millis(1500)), "1500m");
        assert_eq!(
            parse_timeout(
                encode_timeout(Duration::from_secs(7 * 86400))
                    .to_str()
                    .unwrap()
            ),
            Some(Duration::from_secs(7 * 86400))
        );
    }
}
