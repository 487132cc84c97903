use clap::Parser;
use polarway_gateway::config::{Args, Command};

/// Small calls allocate a little for each header and frame: mimalloc, as in the worker, spends
/// less on it than glibc's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Command::Health(h)) = &args.command {
        polarway_telemetry::health::run(h, "127.0.0.1:50051");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    // One crypto provider each, chosen here (two enabled providers make rustls panic).
    let _ = rustls::crypto::ring::default_provider().install_default();
    polarway_access::install_jwt_crypto();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    };
    polarway_gateway::run(args, shutdown).await
}
