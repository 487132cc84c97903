//! `polarway server` flags; every flag is also an environment variable (the user guide's names).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{Args, ValueEnum};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HandleStoreKind {
    /// Datasets in this process's memory: fast, lost on restart, not shared.
    Memory,
    /// Datasets in a directory shared by all workers (POLARWAY_STATE_DIR).
    External,
    /// Datasets in an S3 bucket shared by all workers (POLARWAY_S3_BUCKET).
    S3,
}

#[derive(Args, Clone, Debug)]
pub struct ServerArgs {
    /// Port to serve gRPC on; overrides the port of POLARWAY_BIND_ADDRESS.
    #[arg(long, env = "POLARWAY_GRPC_PORT")]
    pub grpc_port: Option<u16>,

    /// Address to listen on (host:port). Default 127.0.0.1:50052: local only.
    #[arg(long, env = "POLARWAY_BIND_ADDRESS", default_value = "127.0.0.1:50052")]
    pub bind_address: SocketAddr,

    /// Root of local data: cold/ (Parquet visible to SQL), state/ (datasets), tmp/.
    #[arg(long, env = "POLARWAY_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Read-through cache size in GB.
    #[arg(long, env = "POLARWAY_CACHE_SIZE", default_value_t = 2.0)]
    pub cache_size: f64,

    /// Where the latest version of each dataset X appears as X.parquet for SQL. Default <data-dir>/cold.
    #[arg(long, env = "POLARWAY_PARQUET_PATH")]
    pub parquet_path: Option<PathBuf>,

    /// DuckDB working file location; its directory receives DuckDB's spill files. Default <data-dir>/analytics.duckdb.
    #[arg(long, env = "POLARWAY_DUCKDB_PATH")]
    pub duckdb_path: Option<PathBuf>,

    /// Handle store: where datasets live.
    #[arg(long, env = "POLARWAY_HANDLE_STORE", value_enum, default_value_t = HandleStoreKind::External)]
    pub handle_store: HandleStoreKind,

    /// Shared state directory of the external store. Default <data-dir>/state.
    #[arg(long, env = "POLARWAY_STATE_DIR")]
    pub state_dir: Option<PathBuf>,

    /// Server certificate (PEM); enables TLS with --tls-key.
    #[arg(long, env = "POLARWAY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Server private key (PEM).
    #[arg(long, env = "POLARWAY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// CA (PEM) that client certificates must chain to: enables mutual TLS.
    #[arg(long, env = "POLARWAY_TLS_CA", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,

    /// S3 bucket of the `s3` store.
    #[arg(long, env = "POLARWAY_S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// Key prefix inside the bucket, e.g. `polarway/`.
    #[arg(long, env = "POLARWAY_S3_PREFIX", default_value = "")]
    pub s3_prefix: String,

    /// S3 endpoint URL for S3-compatible stores (AWS_ENDPOINT_URL works too).
    #[arg(long, env = "POLARWAY_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// Path-style addressing (http://host/bucket/key), which most S3-compatible stores need.
    #[arg(long, env = "POLARWAY_S3_PATH_STYLE", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub s3_path_style: bool,

    /// Seconds one S3 request may take before it is retried (3 attempts), then UNAVAILABLE.
    #[arg(long, env = "POLARWAY_S3_TIMEOUT", default_value_t = 30.0)]
    pub s3_timeout: f64,

    /// Run on an S3 store that does not enforce conditional writes (safe with one writer only).
    #[arg(long, env = "POLARWAY_S3_ALLOW_UNCONDITIONAL_WRITES", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub s3_allow_unconditional_writes: bool,

    /// Local disk cache of S3 objects, GB (under <data-dir>/s3-cache).
    #[arg(long, env = "POLARWAY_DISK_CACHE_SIZE", default_value_t = 10.0)]
    pub disk_cache_size: f64,

    /// Bearer token every call except health must present. With --policy: the token of the
    /// gateway (its --backend-token), whose calls carry their callers' grants.
    #[arg(long, env = "POLARWAY_AUTH_TOKEN", hide_env_values = true)]
    pub auth_token: Option<String>,

    /// Key that signs Arrow Flight tickets and prepared-statement handles. Workers that share it
    /// redeem each other's tickets. Unset: derived from --auth-token (shared by the workers
    /// behind one gateway), else random per process.
    #[arg(long, env = "POLARWAY_TICKET_KEY", hide_env_values = true)]
    pub ticket_key: Option<String>,

    /// Policy file (the gateway's format): identities, JWT issuers and roles enforced by this
    /// worker itself; reloaded on SIGHUP and when it changes. Without it, and without
    /// --auth-token, every caller may do everything.
    #[arg(long, env = "POLARWAY_POLICY")]
    pub policy: Option<PathBuf>,

    /// Per-query time limit in seconds.
    #[arg(long, env = "POLARWAY_QUERY_TIMEOUT", default_value_t = 300.0)]
    pub query_timeout: f64,

    /// Per-query DuckDB memory limit.
    #[arg(long, env = "POLARWAY_QUERY_MEMORY_LIMIT", default_value = "2GB")]
    pub query_memory_limit: String,

    /// DuckDB threads per query. Default: the number of cores.
    #[arg(long, env = "POLARWAY_QUERY_THREADS")]
    pub query_threads: Option<usize>,

    /// Largest accepted upload (Store/StoreBatch), bytes of Arrow IPC.
    #[arg(long, env = "POLARWAY_MAX_UPLOAD_BYTES", default_value_t = 64u64 << 30)]
    pub max_upload_bytes: u64,

    /// Calls served at once; more get RESOURCE_EXHAUSTED.
    #[arg(long, env = "POLARWAY_MAX_CONCURRENT_REQUESTS", default_value_t = 512)]
    pub max_concurrent_requests: usize,

    /// Versions kept per dataset (older ones are pruned).
    #[arg(long, env = "POLARWAY_RETAIN_VERSIONS", default_value_t = 5)]
    pub retain_versions: usize,

    /// Serve Prometheus metrics at http://<bind host>:<metrics port>/metrics.
    #[arg(long, env = "POLARWAY_METRICS_ENABLED", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub metrics_enabled: bool,

    /// Port of the metrics endpoint; 0 picks a free one (printed on stdout).
    #[arg(long, env = "POLARWAY_METRICS_PORT", default_value_t = 9090)]
    pub metrics_port: u16,

    /// Seconds a response stream (Load, Query) may wait for its caller to read before it is ended,
    /// freeing its request slot; a policy's `limits.stall_timeout_secs` wins.
    #[arg(long, env = "POLARWAY_STALL_TIMEOUT", default_value_t = 60.0)]
    pub stall_timeout: f64,

    /// Seconds that in-flight calls get to finish after SIGINT/SIGTERM.
    #[arg(long, env = "POLARWAY_SHUTDOWN_GRACE", default_value_t = 30.0)]
    pub shutdown_grace: f64,
}

impl ServerArgs {
    pub fn listen_addr(&self) -> SocketAddr {
        let ip: IpAddr = self.bind_address.ip();
        SocketAddr::new(ip, self.grpc_port.unwrap_or(self.bind_address.port()))
    }

    pub fn cold_dir(&self) -> PathBuf {
        self.parquet_path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("cold"))
    }

    pub fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("state"))
    }

    pub fn spill_dir(&self) -> PathBuf {
        match &self.duckdb_path {
            Some(p) => p
                .parent()
                .map(|d| d.join("duckdb-spill"))
                .unwrap_or_else(|| self.data_dir.join("tmp/duckdb")),
            None => self.data_dir.join("tmp/duckdb"),
        }
    }

    pub fn cache_bytes(&self) -> u64 {
        gb(self.cache_size)
    }

    pub fn disk_cache_bytes(&self) -> u64 {
        gb(self.disk_cache_size)
    }
}

fn gb(v: f64) -> u64 {
    (v.max(0.0) * 1024.0 * 1024.0 * 1024.0) as u64
}
