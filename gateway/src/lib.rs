//! The Polarway gateway: the public gRPC entry point in front of Polarway workers. It decides who
//! the caller is and what it may do, and routes; workers execute, and enforce the caller's grants
//! (forwarded in `x-polarway-grants`) where data is touched. It is a transparent HTTP/2 proxy: it
//! routes on metadata (the path names the method, `x-polarway-key` the dataset, `authorization`
//! the caller) and never decodes Arrow payloads; it reads only the first, small message of calls
//! that name a dataset (`body_key.rs`) and buffered Query requests (`retry.rs`).
//!
//! # Layout
//! ```text
//! main.rs       flags → run()
//! config.rs     the flags (clap, each with an environment variable)
//! lib.rs        run(): listener, TLS, the service stack (assembled in `stack`), background tasks, drain
//! tls.rs        rustls server config (ALPN h2, optional mTLS), reload; client config toward workers
//! metrics.rs    layer: request id, access log, Prometheus metrics; errors → trailers-only gRPC
//! deadline.rs   layer: grpc-timeout capped by policy, forwarded as time left, DEADLINE_EXCEEDED
//! auth.rs       layer: bearer tokens and JWT → identity → grants (polarway-access); grants checked
//!               against the method and dataset, then forwarded to the worker
//! body_key.rs   the dataset named in a small request body must be the one x-polarway-key names
//! ratelimit.rs  layer: governor quotas per identity (and method) → RESOURCE_EXHAUSTED
//! inflight.rs   layer: calls in progress per identity; response streams nobody reads are ended
//! retry.rs      layer: idempotent calls retried on another worker, small bodies, budget
//! route.rs      layer: rendezvous hashing on x-polarway-key over healthy workers; DNS refresh
//! proxy.rs      service: the call forwarded over pooled HTTP/2 to the chosen worker
//! health.rs     active grpc.health.v1 checks of workers; the gateway's own health service
//! error.rs      GatewayError and its one mapping to gRPC statuses
//! ```
//!
//! # The path of a request
//! A TCP connection is accepted (TLS handshake if configured) and served by hyper as HTTP/2.
//! `grpc.health.v1` calls are answered by the gateway itself. Every other call goes down the stack:
//! `Observe` (request id, timer) → `Deadline` → `Auth` (identity, permission) → `RateLimit` →
//! `InFlight` → `Retry` (buffers small idempotent requests) → `Route` (picks the worker) → `Proxy` (sends it).
//! The worker's response streams back up unbuffered; its trailers carry the status, which
//! `Observe` records. A layer that refuses a call returns a `GatewayError`, which `Observe` turns
//! into a trailers-only gRPC response (HTTP 200 with `grpc-status` and `grpc-message`).

pub mod auth;
pub mod body_key;
pub mod config;
pub mod deadline;
pub mod error;
pub mod health;
pub mod inflight;
pub mod metrics;
pub mod proxy;
pub mod ratelimit;
pub mod retry;
pub mod route;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use futures::future::BoxFuture;
use http::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tonic::body::Body;
use tonic_health::ServingStatus;
use tower::util::BoxCloneSyncService;
use tower::{Layer, Service, ServiceExt};

use crate::config::Args;
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::route::Backends;
use polarway_access::{Policy, PolicyHandle};

/// The service type between layers.
pub type HttpService = BoxCloneSyncService<Request<Body>, Response<Body>, GatewayError>;

pub use polarway_telemetry::rpc_name;

/// The dataset a call names (`x-polarway-key`), if any.
pub fn routing_key(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get("x-polarway-key")
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
}

fn boxed<L>(layer: L, inner: HttpService) -> HttpService
where
    L: Layer<HttpService>,
    L::Service: Service<Request<Body>, Response = Response<Body>, Error = GatewayError>
        + Clone
        + Send
        + Sync
        + 'static,
    <L::Service as Service<Request<Body>>>::Future: Send + 'static,
{
    BoxCloneSyncService::new(layer.layer(inner))
}

/// Everything the stack shares.
pub struct Parts {
    pub policy: PolicyHandle,
    pub backends: Arc<Backends>,
    pub metrics: Metrics,
    pub proxy: proxy::Proxy,
    pub args: Args,
}

/// The request path, outermost layer first (see the crate documentation).
pub fn stack(p: &Parts) -> metrics::Observe {
    let svc: HttpService = BoxCloneSyncService::new(p.proxy.clone());
    let svc = boxed(
        route::RouteLayer {
            backends: p.backends.clone(),
            policy: p.policy.clone(),
            strategy: p.args.routing,
        },
        svc,
    );
    let svc = boxed(
        retry::RetryLayer::new(
            p.args.retry_attempts,
            p.args.retry_budget_percent,
            p.metrics.clone(),
        ),
        svc,
    );
    let svc = boxed(inflight::InFlightLayer::new(p.policy.clone()), svc);
    let svc = boxed(
        ratelimit::RateLimitLayer::new(p.policy.clone(), p.metrics.clone()),
        svc,
    );
    let svc = boxed(
        auth::AuthLayer {
            policy: p.policy.clone(),
            metrics: p.metrics.clone(),
        },
        svc,
    );
    let svc = boxed(
        deadline::DeadlineLayer {
            policy: p.policy.clone(),
        },
        svc,
    );
    metrics::ObserveLayer {
        metrics: p.metrics.clone(),
    }
    .layer(svc)
}

/// The service hyper serves: the gateway's own health service, or the stack.
#[derive(Clone)]
struct Gateway {
    stack: metrics::Observe,
    health: tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
}

impl Service<Request<hyper::body::Incoming>> for Gateway {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<hyper::body::Incoming>) -> Self::Future {
        let req = req.map(Body::new);
        if req.uri().path().starts_with("/grpc.health.v1.Health/") {
            Box::pin(self.health.clone().oneshot(req))
        } else {
            Box::pin(self.stack.clone().oneshot(req))
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.001))
}

/// Serve until `shutdown` resolves, then drain (bounded by `--shutdown-grace`).
pub async fn run(
    args: Args,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let policy = match &args.policy {
        Some(path) => Policy::load(path).with_context(|| "the policy file is invalid")?,
        None => {
            tracing::warn!("no --policy: every call is allowed without authentication");
            Policy::open()
        }
    };
    let policy = PolicyHandle::new(policy);
    if args.backends.is_empty() && policy.current().backends.is_empty() {
        anyhow::bail!("no workers: give --backend URL (or routing.backends in the policy)");
    }
    let server_tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(tls::ServerTls::load(tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: args.tls_ca.clone(),
        })?)),
        _ => None,
    };
    let backend_identity = args
        .backend_cert
        .as_deref()
        .zip(args.backend_key.as_deref());
    let client_tls = tls::client_config(args.backend_ca.as_deref(), backend_identity)?;
    let client = proxy::upstream_client(client_tls, args.backend_tls_name.clone());
    let backend_token = match &args.backend_token {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse::<http::HeaderValue>()
                .context("--backend-token is not a valid header value")?,
        ),
        None => None,
    };

    let metrics = Metrics::default();
    let backends = Arc::new(Backends::default());
    let mut specs = args.backends.clone();
    specs.extend(policy.current().backends.iter().cloned());
    backends.resolve(&specs).await;

    let reporter = tonic_health::server::HealthReporter::new();
    let health_service = tonic_health::pb::health_server::HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
    );
    health::set_all(&reporter, ServingStatus::Serving).await;

    let listener = tokio::net::TcpListener::bind(args.listen_addr())
        .await
        .with_context(|| format!("cannot listen on {}", args.listen_addr()))?;
    let local = listener.local_addr()?;
    let metrics_listener = if args.metrics_enabled {
        let addr = std::net::SocketAddr::new(local.ip(), args.metrics_port);
        Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot serve metrics on {addr}"))?,
        )
    } else {
        None
    };

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(route::refresh(
        backends.clone(),
        args.backends.clone(),
        policy.clone(),
        secs(args.dns_interval),
    ));
    tasks.spawn(health::check_loop(
        backends.clone(),
        client.clone(),
        reporter.clone(),
        metrics.clone(),
        secs(args.health_interval),
        secs(args.health_timeout),
    ));
    let reload_metrics = metrics.clone();
    tasks.spawn(policy.clone().watch(secs(args.policy_poll), move |ok| {
        reload_metrics.policy_reload(ok)
    }));
    if let Some(tls) = &server_tls {
        tasks.spawn(tls::watch(tls.clone(), secs(args.tls_reload_interval)));
    }
    if let Some(l) = metrics_listener {
        if args.metrics_port == 0 {
            println!("polarway-gateway: metrics on {}", l.local_addr()?);
        }
        tasks.spawn(polarway_telemetry::endpoint::serve(l, metrics.registry()));
    }

    let parts = Parts {
        proxy: proxy::Proxy {
            client,
            backend_token,
            eject_after: args.eject_after.max(1),
            debug_headers: args.debug_headers,
            metrics: metrics.clone(),
        },
        policy,
        backends,
        metrics,
        args: args.clone(),
    };
    let gateway = Gateway {
        stack: stack(&parts),
        health: health_service,
    };

    let mut http = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http.timer(TokioTimer::new())
        .initial_stream_window_size(proxy::STREAM_WINDOW)
        .initial_connection_window_size(proxy::CONNECTION_WINDOW)
        .max_frame_size(proxy::MAX_FRAME)
        .max_send_buf_size(proxy::SEND_BUFFER)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));

    tracing::info!(addr = %local, tls = server_tls.is_some(), "serving");
    if args.grpc_port == Some(0) || args.listen.port() == 0 {
        println!("polarway-gateway: listening on {local}");
    }
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let http = http.clone();
        let service = hyper_util::service::TowerToHyperService::new(gateway.clone());
        let acceptor = server_tls.as_ref().map(|t| t.acceptor());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let result = match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => {
                            watcher
                                .watch(http.serve_connection(TokioIo::new(tls), service))
                                .await
                        }
                        Ok(Err(e)) => return tracing::debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(stream), service))
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, "connection ended: {e}");
            }
        });
    }

    tracing::info!("shutting down: draining in-flight calls");
    tasks.abort_all();
    health::set_all(&reporter, ServingStatus::NotServing).await;
    let grace = secs(args.shutdown_grace);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!("in-flight calls did not finish within {grace:?}; stopping anyway"),
    }
    Ok(())
}
