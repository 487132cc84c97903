//! Deadlines: the caller's `grpc-timeout`, cut to the policy's `limits.max_deadline_secs`, becomes
//! a [`Deadline`] that the proxy forwards as the time left; if the worker has not answered by then
//! the call ends with a trailers-only DEADLINE_EXCEEDED. The policy's cap also bounds streams that
//! have started (they end with DEADLINE_EXCEEDED trailers).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use polarway_access::PolicyHandle;
use polarway_proto::transport::grpc_timeout;
use tonic::body::Body;
use tower::ServiceExt;

use crate::call::{Deadline, HttpService};
use crate::error::GatewayError;
use crate::layers::Step;

/// Sets each call's [`Deadline`] and ends calls that pass it.
#[derive(Clone)]
pub struct Deadlines {
    pub policy: PolicyHandle,
}

impl Step for Deadlines {
    fn call(
        &self,
        mut req: Request<Body>,
        next: HttpService,
    ) -> impl Future<Output = Result<Response<Body>, GatewayError>> + Send + 'static + use<> {
        let requested = req
            .headers()
            .get(grpc_timeout::HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(grpc_timeout::parse);
        let cap = self.policy.current().max_deadline;
        let timeout = match (requested, cap) {
            (Some(r), Some(c)) => Some(r.min(c)),
            (r, c) => r.or(c),
        };
        let now = Instant::now();
        // Like the workers (tonic), the caller's deadline bounds the wait for the response; a
        // stream that has started may outlive it (the Rust client bounds each message instead).
        // The policy's cap bounds the whole call, streams included.
        let at = timeout.map(|t| now + t);
        let stream_at = cap.map(|c| now + c);
        if let Some(at) = at {
            req.extensions_mut().insert(Deadline(at));
        }
        async move {
            let Some(at) = at else {
                return next.oneshot(req).await;
            };
            match tokio::time::timeout_at(at.into(), next.oneshot(req)).await {
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
        }
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
