//! The server loop: listeners (gRPC, optional metrics), TLS handshakes, HTTP/2 settings, the
//! background tasks (DNS refresh, health checks, policy and certificate reloads) and the drain on
//! shutdown. `grpc.health.v1` calls are answered here; every other call goes down the request path
//! (`layers`).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use futures::future::BoxFuture;
use futures::FutureExt;
use http::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use polarway_access::{Policy, PolicyHandle};
use polarway_proto::transport::linger::Linger;
use polarway_proto::transport::{CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW};
use tonic::body::Body;
use tonic_health::ServingStatus;
use tower::{Service, ServiceExt};

use crate::backends::{self, Backends};
use crate::call::HttpService;
use crate::config::Args;
use crate::error::GatewayError;
use crate::layers::{self, Settings};
use crate::metrics::Metrics;
use crate::{health, proxy, tls};

/// The service hyper serves: the gateway's own health service, or the stack.
#[derive(Clone)]
struct Gateway {
    stack: HttpService,
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
            // The observe layer has turned every error into a gRPC response already.
            Box::pin(
                self.stack
                    .clone()
                    .oneshot(req)
                    .map(|r| Ok(r.unwrap_or_else(GatewayError::into_response))),
            )
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
    tasks.spawn(backends::refresh(
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

    let proxy = proxy::Proxy {
        client,
        backend_token,
        eject_after: args.eject_after.max(1),
        debug_headers: args.debug_headers,
        metrics: metrics.clone(),
    };
    let settings = Settings {
        policy,
        backends,
        metrics,
        strategy: args.routing,
        retry_attempts: args.retry_attempts,
        retry_budget_percent: args.retry_budget_percent,
    };
    let gateway = Gateway {
        stack: layers::stack(&settings, proxy.into_service()),
        health: health_service,
    };

    let mut http = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http.timer(TokioTimer::new())
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_send_buf_size(proxy::SEND_BUFFER)
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));

    tracing::info!(addr = %local, tls = server_tls.is_some(), "serving");
    if args.grpc_port == Some(0) || args.listen.port() == 0 {
        println!("polarway-gateway: listening on {local}");
    }
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let linger = Linger::new();
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
        let stream = linger.wrap(stream);
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
        _ = graceful.shutdown() => {
            tracing::info!("drained");
            linger.closed().await;
        }
        _ = tokio::time::sleep(grace) => tracing::warn!("in-flight calls did not finish within {grace:?}; stopping anyway"),
    }
    Ok(())
}
