//! Command-line flags, each with an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;

use polarway_access::Strategy;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "polarway-gateway",
    version,
    about = "The Polarway gateway: the public gRPC entry point in front of Polarway workers",
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address to serve gRPC on.
    #[arg(
        long,
        env = "POLARWAY_GATEWAY_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: SocketAddr,
    /// Port to serve on, overriding the port of --listen; 0 picks a free one (printed on stdout).
    #[arg(long, env = "POLARWAY_GATEWAY_PORT")]
    pub grpc_port: Option<u16>,
    /// A worker URL (`http://host:port`, `https://host:port`); repeat for several. Host names are
    /// resolved again every --dns-interval.
    #[arg(
        long = "backend",
        env = "POLARWAY_GATEWAY_BACKENDS",
        value_delimiter = ','
    )]
    pub backends: Vec<String>,
    /// Policy file (identities, roles, JWT issuers, limits). Without one every call is allowed.
    #[arg(long, env = "POLARWAY_GATEWAY_POLICY")]
    pub policy: Option<PathBuf>,
    /// Routing strategy; the policy's `routing.strategy` otherwise; `hash` by default.
    #[arg(long, env = "POLARWAY_GATEWAY_ROUTING", value_enum)]
    pub routing: Option<Strategy>,

    /// TLS certificate chain (PEM) of the gateway.
    #[arg(long, env = "POLARWAY_GATEWAY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, env = "POLARWAY_GATEWAY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: clients must present a certificate signed by this CA.
    #[arg(long, env = "POLARWAY_GATEWAY_TLS_CA", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
    /// Seconds between checks of the TLS files for a new certificate.
    #[arg(
        long,
        env = "POLARWAY_GATEWAY_TLS_RELOAD_INTERVAL",
        default_value_t = 5.0
    )]
    pub tls_reload_interval: f64,

    /// CA to verify `https://` workers with.
    #[arg(long, env = "POLARWAY_BACKEND_TLS_CA")]
    pub backend_ca: Option<PathBuf>,
    /// Client certificate and key the gateway presents to `https://` workers (mutual TLS).
    #[arg(long, env = "POLARWAY_BACKEND_TLS_CERT", requires = "backend_key")]
    pub backend_cert: Option<PathBuf>,
    #[arg(long, env = "POLARWAY_BACKEND_TLS_KEY", requires = "backend_cert")]
    pub backend_key: Option<PathBuf>,
    /// Name to verify worker certificates against (when backends are addressed by IP).
    #[arg(long, env = "POLARWAY_BACKEND_TLS_NAME")]
    pub backend_tls_name: Option<String>,
    /// Token sent to workers (their --auth-token); callers' credentials never reach workers.
    #[arg(long, env = "POLARWAY_BACKEND_TOKEN", hide_env_values = true)]
    pub backend_token: Option<String>,

    /// Seconds between active health checks of each worker.
    #[arg(long, env = "POLARWAY_GATEWAY_HEALTH_INTERVAL", default_value_t = 2.0)]
    pub health_interval: f64,
    /// Seconds a health check may take.
    #[arg(long, env = "POLARWAY_GATEWAY_HEALTH_TIMEOUT", default_value_t = 2.0)]
    pub health_timeout: f64,
    /// Eject a worker after this many transport failures in a row (until a check passes).
    #[arg(long, env = "POLARWAY_GATEWAY_EJECT_AFTER", default_value_t = 3)]
    pub eject_after: u32,
    /// Seconds between DNS resolutions of backend host names.
    #[arg(long, env = "POLARWAY_GATEWAY_DNS_INTERVAL", default_value_t = 10.0)]
    pub dns_interval: f64,

    /// Calls at most per idempotent request (1 = no retry).
    #[arg(long, env = "POLARWAY_GATEWAY_RETRY_ATTEMPTS", default_value_t = 3)]
    pub retry_attempts: usize,
    /// Retries may add at most this percentage of recent calls.
    #[arg(
        long,
        env = "POLARWAY_GATEWAY_RETRY_BUDGET_PERCENT",
        default_value_t = 20.0
    )]
    pub retry_budget_percent: f32,

    /// Seconds between checks of the policy file for changes (SIGHUP reloads at once).
    #[arg(long, env = "POLARWAY_GATEWAY_POLICY_POLL", default_value_t = 1.0)]
    pub policy_poll: f64,
    /// Seconds in-flight calls get after SIGINT/SIGTERM.
    #[arg(long, env = "POLARWAY_SHUTDOWN_GRACE", default_value_t = 30.0)]
    pub shutdown_grace: f64,

    /// Serve Prometheus metrics at http://<listen host>:PORT/metrics (0: a free port, printed).
    #[arg(long, env = "POLARWAY_METRICS_PORT", default_value_t = 9090)]
    pub metrics_port: u16,
    /// Serve Prometheus metrics (`--metrics-enabled false` turns them off).
    #[arg(long, env = "POLARWAY_METRICS_ENABLED", default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub metrics_enabled: bool,

    /// Add `x-polarway-backend: ADDR` (the worker that answered) to responses.
    #[arg(long, env = "POLARWAY_GATEWAY_DEBUG_HEADERS")]
    pub debug_headers: bool,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Check that a gateway (or worker) answers grpc.health.v1 SERVING; exit 0 if so (Docker HEALTHCHECK).
    Health(polarway_telemetry::health::HealthArgs),
}

impl Args {
    pub fn listen_addr(&self) -> SocketAddr {
        let mut a = self.listen;
        if let Some(p) = self.grpc_port {
            a.set_port(p);
        }
        a
    }
}
