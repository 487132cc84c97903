//! Assemble the worker from its configuration and serve it until a shutdown signal.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::TryStreamExt;
use polarway_proto::transport::linger::Linger;
use polarway_proto::transport::{CONNECTION_WINDOW, MAX_FRAME, STREAM_WINDOW};
use polarway_proto::v1::polarway_server::PolarwayServer;
use polarway_proto::MAX_MESSAGE_BYTES;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::auth::Authenticator;
use crate::cache::Cache;
use crate::coldview::ColdView;
use crate::config::{HandleStoreKind, ServerArgs};
use crate::flight::Flight;
use crate::metrics::WorkerMetrics;
use crate::service::{PolarwayService, Worker};
use crate::sql::SqlLimits;
use crate::store::disk_cache::DiskCache;
use crate::store::s3::{S3Backend, S3Options};
use crate::store::{dir::DirBackend, memory::MemoryBackend, Backend, Catalog};
use arrow_flight::flight_service_server::FlightServiceServer;

/// The largest Flight message (one record batch) accepted or sent.
const FLIGHT_MAX_MESSAGE_BYTES: usize = 256 << 20;

pub async fn build_worker(args: &ServerArgs) -> anyhow::Result<Worker> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create data directory {}", args.data_dir.display()))?;
    let mut disk_cache = None;
    let mut s3_metrics = None;
    let backend: Arc<dyn Backend> = match args.handle_store {
        HandleStoreKind::External => Arc::new(DirBackend::open(&args.state_dir())?),
        HandleStoreKind::Memory => Arc::new(MemoryBackend::new(args.data_dir.join("tmp"))?),
        HandleStoreKind::S3 => {
            let bucket = args.s3_bucket.clone().filter(|b| !b.is_empty()).context(
                "POLARWAY_HANDLE_STORE=s3 needs a bucket: set POLARWAY_S3_BUCKET (or --s3-bucket)",
            )?;
            let opts = S3Options {
                bucket,
                prefix: args.s3_prefix.clone(),
                endpoint: args.s3_endpoint.clone(),
                path_style: args.s3_path_style,
                timeout: Duration::from_secs_f64(args.s3_timeout.max(0.1)),
                allow_unconditional_writes: args.s3_allow_unconditional_writes,
            };
            let disk = Arc::new(DiskCache::open(
                &args.data_dir.join("s3-cache"),
                args.disk_cache_bytes(),
            )?);
            let s3 = Arc::new(
                S3Backend::connect(&opts, args.data_dir.join("tmp/staging"), disk.clone()).await?,
            );
            disk_cache = Some(disk);
            s3_metrics = Some(s3.clone());
            s3
        }
    };
    let policy = match &args.policy {
        Some(path) => Some(polarway_access::PolicyHandle::new(
            polarway_access::Policy::load(path).context("the policy file is invalid")?,
        )),
        None => None,
    };
    let cold = ColdView::new(args.cold_dir())?;
    let cold_dirs = cold_dirs(cold.dir())?;
    let cache = Arc::new(Cache::new(args.cache_bytes()));
    let metrics = WorkerMetrics::new(
        cache.clone(),
        disk_cache.clone(),
        backend.counters(),
        |registry| {
            if let Some(s3) = &s3_metrics {
                s3.register_metrics(registry);
            }
        },
    );
    let sql = SqlLimits {
        timeout: Duration::from_secs_f64(args.query_timeout.max(0.001)),
        memory_limit: args.query_memory_limit.clone(),
        threads: args
            .query_threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())),
    };
    let pins_dir = private_root(&args.data_dir.join("tmp/pins"))?;
    let sql_pool = crate::sql::Pool::new(&pins_dir, &private_root(&args.spill_dir())?, sql);
    sql_pool.warm();
    Ok(Worker {
        disk_cache,
        metrics,
        catalog: Catalog::new(backend, args.retain_versions),
        cache,
        cold,
        cold_dirs,
        sql_pool,
        sql_gate: Arc::new(crate::sql::gate::Gate::new()?),
        pins_dir,
        auth: Authenticator::new(args.auth_token.clone(), policy),
        max_upload_bytes: args.max_upload_bytes,
        in_flight: Arc::new(Semaphore::new(args.max_concurrent_requests.max(1))),
        identity_slots: Default::default(),
        stall_timeout: Duration::from_secs_f64(args.stall_timeout.clamp(0.1, 86_400.0)),
    })
}

/// A directory whose entries are per-query directories named after their process: those left by
/// dead processes of this host (a crash) are removed; other workers sharing it keep theirs.
fn private_root(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for entry in std::fs::read_dir(dir)?.flatten() {
        if crate::scratch::left_by_a_dead_process(&entry.file_name().to_string_lossy()) {
            let _ = std::fs::remove_dir_all(entry.path())
                .or_else(|_| std::fs::remove_file(entry.path()));
        }
    }
    Ok(dir.to_path_buf())
}

/// The ways SQL may name the cold directory: as configured (made absolute) and canonical.
fn cold_dirs(dir: &std::path::Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let absolute =
        std::path::absolute(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let canonical =
        std::fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let mut dirs = vec![absolute];
    if !dirs.contains(&canonical) {
        dirs.push(canonical);
    }
    Ok(dirs)
}

pub fn tls_config(args: &ServerArgs) -> anyhow::Result<Option<ServerTlsConfig>> {
    let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
        return Ok(None);
    };
    let read = |p: &std::path::PathBuf| {
        std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
    if let Some(ca) = &args.tls_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(Some(tls))
}

/// Serve until `shutdown` resolves, then stop accepting calls and let in-flight ones finish
/// (bounded by `grace`).
pub async fn run(
    listener: TcpListener,
    worker: Worker,
    signer: crate::flight::ticket::Signer,
    tls: Option<ServerTlsConfig>,
    grace: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<PolarwayServer<PolarwayService>>()
        .await;
    // grpcurl asks for v1 reflection, older tools for v1alpha: serve both.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(polarway_proto::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    if let Some(policy) = worker.auth.policy().cloned() {
        tokio::spawn(policy.watch(Duration::from_secs(1), |_| {}));
    }
    let worker_metrics = worker.metrics.grpc.clone();
    let worker = Arc::new(worker);
    let polarway = PolarwayService::new(worker.clone());
    // Load goes through tonic: framed beneath it (`crate::wire`, as Flight's DoGet is), a load
    // in flight could be cut short by a graceful shutdown (see the issue note).
    let service = PolarwayServer::new(polarway)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // Flight clients send each record batch as one message, as large as the batch.
    let flight = Flight::new(worker, signer);
    let flight = crate::flight::grpc::service(
        FlightServiceServer::new(flight.clone())
            .max_decoding_message_size(FLIGHT_MAX_MESSAGE_BYTES)
            .max_encoding_message_size(FLIGHT_MAX_MESSAGE_BYTES),
        flight,
    );

    let metrics_layer = polarway_telemetry::GrpcMetricsLayer {
        metrics: worker_metrics,
    };
    let mut builder = Server::builder()
        // Every log line of a call carries its method and the caller's request id.
        .trace_fn(|req| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("rpc", method = %req.uri().path(), request_id = %id)
        })
        .initial_stream_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        // Clients may send 1 MiB DATA frames (uploads in fewer, larger frames).
        .max_frame_size(MAX_FRAME)
        // The metrics see the status as rewritten (RESOURCE_EXHAUSTED for an over-size message).
        .layer(
            tower::ServiceBuilder::new()
                .layer(metrics_layer)
                .map_response(crate::oversize::rewrite_response),
        );
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }

    // On the signal: report NOT_SERVING (so balancers stop sending), then drain.
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let health_on_stop = health.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: draining in-flight calls");
        health_on_stop
            .set_not_serving::<PolarwayServer<PolarwayService>>()
            .await;
        let _ = drain_tx.send(());
    });
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let linger = Linger::new();
    let accepted = linger.clone();
    let serve = builder
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(service)
        .add_service(flight)
        // Connections accepted here are configured here (the builder's tcp_nodelay only applies to
        // listeners it binds itself): without TCP_NODELAY small replies wait for delayed ACKs.
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .map_ok(move |tcp| accepted.wrap(tcp)),
            async move {
                let _ = drain_rx.await;
                let _ = drained_tx.send(());
            },
        );
    tokio::pin!(serve);
    tokio::select! {
        result = &mut serve => {
            result?;
            linger.closed().await;
        }
        _ = async {
            let _ = drained_rx.await;
            tokio::time::sleep(grace).await;
        } => tracing::warn!("in-flight calls did not finish within {grace:?}; stopping anyway"),
    }
    Ok(())
}
