//! The innermost service: forward the HTTP/2 gRPC call to the chosen worker as is — headers,
//! body frames both ways without buffering, trailers — over a pooled HTTP/2 connection with large
//! flow-control windows. A worker that fails before answering counts toward its passive
//! ejection; one that fails mid-stream ends the call with UNAVAILABLE trailers.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri};
use http_body::Frame;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use polarway_proto::transport::{grpc_timeout, MAX_FRAME, STREAM_WINDOW};
use tonic::body::Body;
use tower::util::BoxCloneSyncService;

use crate::backends::Endpoint;
use crate::call::{Deadline, HttpService};
use crate::error::GatewayError;
use crate::metrics::Metrics;

pub type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

/// How much response data HTTP/2 may queue per stream before it waits for the peer.
pub const SEND_BUFFER: usize = 8 << 20;
/// Toward workers, the connection window is far larger than the stream window: all callers'
/// calls to a worker share one connection, and a caller that stops reading fills its streams'
/// windows; with a connection window of a few stream windows, four unread streams would stall
/// every other caller's responses (and the health checks) on that worker. Each stream stays
/// bounded by `STREAM_WINDOW`, and unread ones end after the stall timeout (`inflight.rs`).
pub const UPSTREAM_CONNECTION_WINDOW: u32 = 1 << 30;

/// A pooled HTTP/2 client toward the workers: h2c for `http://`, TLS with ALPN h2 for `https://`.
pub fn upstream_client(tls: rustls::ClientConfig, server_name: Option<String>) -> UpstreamClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let builder = match server_name.map(rustls::pki_types::ServerName::try_from) {
        Some(Ok(name)) => {
            builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name))
        }
        Some(Err(e)) => {
            tracing::error!("invalid --backend-tls-name: {e}");
            builder
        }
        None => builder,
    };
    let connector = builder.enable_http2().wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .http2_only(true)
        .http2_initial_stream_window_size(STREAM_WINDOW)
        .http2_initial_connection_window_size(UPSTREAM_CONNECTION_WINDOW)
        .http2_max_frame_size(MAX_FRAME)
        .http2_max_send_buf_size(SEND_BUFFER)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .http2_keep_alive_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector)
}

/// Headers that describe one hop, not the call.
const HOP_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
];

pub struct Proxy {
    pub client: UpstreamClient,
    /// Sent to workers as `authorization: Bearer ...` (workers started with `--auth-token`).
    pub backend_token: Option<HeaderValue>,
    pub eject_after: u32,
    /// Add `x-polarway-backend: ADDR` to responses (debugging and tests).
    pub debug_headers: bool,
    pub metrics: Metrics,
}

impl Proxy {
    /// The innermost service of the request path.
    pub fn into_service(self) -> HttpService {
        // Shared, not cloned per call: a clone of the pooled client copies its connector.
        let this = Arc::new(self);
        BoxCloneSyncService::new(tower::service_fn(move |req| this.clone().forward(req)))
    }

    async fn forward(self: Arc<Self>, req: Request<Body>) -> Result<Response<Body>, GatewayError> {
        let endpoint = req
            .extensions()
            .get::<Arc<Endpoint>>()
            .cloned()
            .ok_or_else(|| GatewayError::Internal("no worker chosen".into()))?;
        let deadline = req.extensions().get::<Deadline>().copied();
        let (mut parts, body) = req.into_parts();
        let mut uri = endpoint.uri.clone().into_parts();
        uri.path_and_query = parts.uri.path_and_query().cloned();
        parts.uri = Uri::from_parts(uri).map_err(|e| GatewayError::Internal(e.to_string()))?;
        for h in HOP_HEADERS {
            parts.headers.remove(*h);
        }
        parts.headers.remove(http::header::AUTHORIZATION);
        if let Some(token) = &self.backend_token {
            parts
                .headers
                .insert(http::header::AUTHORIZATION, token.clone());
        }
        if let Some(Deadline(at)) = deadline {
            // The worker gets the time that is left, not the caller's original budget.
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(GatewayError::DeadlineExceeded);
            }
            let timeout = HeaderValue::from_str(&grpc_timeout::encode(left))
                .map_err(|e| GatewayError::Internal(format!("grpc-timeout: {e}")))?;
            parts.headers.insert(grpc_timeout::HEADER, timeout);
        }
        parts.extensions = Default::default();
        self.metrics.upstream_request(&endpoint.addr);
        let body = Body::new(Coalesced::new(body));
        let sent = self.client.request(Request::from_parts(parts, body)).await;
        match sent {
            Ok(resp) => {
                endpoint.record_success();
                let (mut parts, body) = resp.into_parts();
                if parts.status != http::StatusCode::OK {
                    return Err(GatewayError::Upstream {
                        backend: endpoint.addr.clone(),
                        source: format!("HTTP {}", parts.status).into(),
                    });
                }
                if self.debug_headers {
                    if let Ok(v) = HeaderValue::from_str(&endpoint.addr) {
                        parts.headers.insert("x-polarway-backend", v);
                    }
                }
                parts.extensions = Default::default();
                parts.extensions.insert(endpoint.clone());
                let body = UpstreamBody {
                    inner: Some(body),
                    backend: endpoint.addr.clone(),
                };
                Ok(Response::from_parts(parts, Body::new(body)))
            }
            Err(e) => {
                if worker_is_down(&e) && endpoint.record_failure(self.eject_after) {
                    self.metrics.ejection(&endpoint.addr);
                    tracing::warn!(backend = %endpoint.addr, "worker ejected after {} failed calls in a row", self.eject_after);
                }
                Err(GatewayError::Upstream {
                    backend: endpoint.addr.clone(),
                    source: Box::new(e),
                })
            }
        }
    }
}

/// Whether a failed call says that the worker, or the connection to it, is down, rather than
/// that the worker refused this one request (an HTTP/2 stream reset, e.g. for a malformed body):
/// only the former count toward ejecting it, so that no caller can eject healthy workers by
/// sending garbage.
fn worker_is_down(e: &hyper_util::client::legacy::Error) -> bool {
    if e.is_connect() {
        return true;
    }
    let mut next = std::error::Error::source(e);
    while let Some(s) = next {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return !(h2.is_reset() && h2.is_remote());
        }
        next = s.source();
    }
    true
}

/// A request body on its way to a worker, its small DATA frames merged. All callers' calls to a
/// worker share one HTTP/2 connection, and HTTP/2 servers (h2's, the workers') end a connection
/// whose peer sends too many small non-final DATA frames (framing-overhead flood protection):
/// forwarded one for one, one caller's tiny frames would end every caller's calls on that
/// worker. Frames already waiting are merged up to `MERGED_BYTES`; nothing waits for frames that
/// have not arrived, so no call is delayed. A request that still arrives in more than
/// `MAX_SMALL_FRAMES` small pieces is ended with an error instead of being forwarded further.
struct Coalesced {
    inner: Option<Body>,
    merged: bytes::BytesMut,
    /// Trailers (or the end) that came after data still to be sent.
    held: Option<Frame<Bytes>>,
    small_sent: usize,
}

/// Merge frames up to this size; a frame at least this large goes on as it is (no copy).
const MERGED_BYTES: usize = 64 * 1024;
/// Non-final frames under this size count as small (as h2 counts them).
const SMALL_FRAME: usize = 256;
const MAX_SMALL_FRAMES: usize = 1024;

impl Coalesced {
    fn new(inner: Body) -> Self {
        Self {
            inner: Some(inner),
            merged: bytes::BytesMut::new(),
            held: None,
            small_sent: 0,
        }
    }

    fn flush(&mut self, end: bool) -> Poll<Option<Result<Frame<Bytes>, tonic::Status>>> {
        let data = self.merged.split().freeze();
        if data.len() < SMALL_FRAME && !end {
            self.small_sent += 1;
            if self.small_sent > MAX_SMALL_FRAMES {
                self.inner = None;
                return Poll::Ready(Some(Err(tonic::Status::invalid_argument(format!(
                    "the request body arrived in more than {MAX_SMALL_FRAMES} pieces under {SMALL_FRAME} bytes; send larger HTTP/2 DATA frames"
                )))));
            }
        }
        Poll::Ready(Some(Ok(Frame::data(data))))
    }
}

impl http_body::Body for Coalesced {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.merged.is_empty() {
            if let Some(held) = this.held.take() {
                return Poll::Ready(Some(Ok(held)));
            }
        }
        loop {
            let Some(inner) = this.inner.as_mut() else {
                return match this.merged.is_empty() {
                    true => Poll::Ready(this.held.take().map(Ok)),
                    false => this.flush(this.held.is_none()),
                };
            };
            match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if this.merged.is_empty() && data.len() >= MERGED_BYTES => {
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(data) => {
                        this.merged.extend_from_slice(&data);
                        if this.merged.len() >= MERGED_BYTES {
                            return this.flush(false);
                        }
                    }
                    Err(trailers) => {
                        this.inner = None;
                        if this.merged.is_empty() {
                            return Poll::Ready(Some(Ok(trailers)));
                        }
                        this.held = Some(trailers);
                        return this.flush(false);
                    }
                },
                Poll::Ready(Some(Err(e))) => {
                    this.inner = None;
                    this.merged.clear();
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => this.inner = None,
                Poll::Pending if this.merged.is_empty() => return Poll::Pending,
                Poll::Pending => return this.flush(false),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.merged.is_empty()
            && self.held.is_none()
            && self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }
}

/// A worker's response body; a transport failure mid-stream ends it with UNAVAILABLE trailers
/// (so the caller gets a retriable status instead of a reset stream).
struct UpstreamBody {
    inner: Option<hyper::body::Incoming>,
    backend: String,
}

impl http_body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                self.inner = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(e))) => {
                self.inner = None;
                let status = tonic::Status::unavailable(format!(
                    "worker {} failed mid-stream: {e}",
                    self.backend
                ));
                let mut trailers = http::HeaderMap::new();
                let _ = status.add_header(&mut trailers);
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map(|b| b.size_hint())
            .unwrap_or_default()
    }
}
