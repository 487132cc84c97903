use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use polarway_compute::config::ServerArgs;
use polarway_compute::server;

/// Polarway: store DataFrames by name, load them back, run SQL over them.
#[derive(Parser)]
#[command(name = "polarway", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a worker: the gRPC server.
    Server(Box<ServerArgs>),
    /// Check that a worker answers grpc.health.v1 SERVING; exit 0 if so (Docker HEALTHCHECK).
    Health(polarway_telemetry::health::HealthArgs),
}

/// mimalloc reuses freed memory for the next buffers (a warm load streams through the same pages
/// instead of faulting fresh ones in: 2.3x less worker CPU per GiB than glibc with a fixed mmap
/// threshold) and returns idle memory to the OS, which keeps RSS bounded: storing 915 MiB peaks at
/// 155 MiB (tests/memory.rs, docs/measurements.md). glibc's default instead kept multi-MiB IPC and
/// Parquet buffers on its heap and grew with the upload.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // One TLS crypto provider for the whole process: with two enabled, rustls refuses to choose.
    let _ = rustls::crypto::ring::default_provider().install_default();
    polarway_access::install_jwt_crypto();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    polarway_compute::panics::install_hook();
    let args = match Cli::parse().command {
        Command::Server(args) => *args,
        Command::Health(h) => polarway_telemetry::health::run(&h, "127.0.0.1:50052"),
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(args))
}

async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    let addr = args.listen_addr();
    let tls = server::tls_config(&args)?;
    let worker = server::build_worker(&args).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr()?;
    if args.metrics_enabled {
        let at = std::net::SocketAddr::new(addr.ip(), args.metrics_port);
        let metrics = tokio::net::TcpListener::bind(at)
            .await
            .with_context(|| format!("cannot serve metrics on {at}"))?;
        if args.metrics_port == 0 {
            println!("polarway: metrics on {}", metrics.local_addr()?);
        }
        tokio::spawn(polarway_telemetry::endpoint::serve(
            metrics,
            worker.metrics.registry.clone(),
        ));
    }
    // A stable line for scripts and tests (which start workers on port 0).
    println!("polarway: listening on {addr}");
    tracing::info!(
        %addr,
        tls = tls.is_some(),
        mutual_tls = args.tls_ca.is_some(),
        auth = worker.auth.enabled(),
        handle_store = worker.catalog.kind(),
        data_dir = %args.data_dir.display(),
        cache_gb = args.cache_size,
        "polarway worker serving"
    );
    let grace = Duration::from_secs_f64(args.shutdown_grace.max(0.0));
    let signer = polarway_compute::flight::ticket::Signer::new(
        args.ticket_key.as_deref(),
        args.auth_token.as_deref(),
    );
    server::run(listener, worker, signer, tls, grace, shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
