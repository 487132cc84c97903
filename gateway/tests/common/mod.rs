//! Test backbone: three real `polarway` workers sharing one state directory, and the real
//! `polarway-gateway` binary in front of them, all on free loopback ports. What every suite
//! shares (processes, ports, certificates, metrics) is `polarway-testkit`.
// Each test crate uses its own part of this module (and of what it re-exports).
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::Command;

use polarway::DistributedClient;
use polarway_testkit::log_level;
pub use polarway_testkit::metrics::{http_get, parse, scrape, sum, Sample};
use polarway_testkit::process::with_private_mount;
pub use polarway_testkit::{code_of, eventually, write_atomic, Proc};

pub const GATEWAY_BIN: &str = env!("CARGO_BIN_EXE_polarway-gateway");

/// The worker binary: $POLARWAY_BIN, else `polarway` of the build this test belongs to.
pub fn worker_bin() -> PathBuf {
    polarway_testkit::process::workspace_bin("polarway", "POLARWAY_BIN")
}

pub struct Worker {
    pub proc: Proc,
    _dir: tempfile::TempDir,
}

impl Worker {
    pub fn url(&self) -> String {
        format!("http://{}", self.proc.addr())
    }
    pub fn addr(&self) -> &str {
        self.proc.addr()
    }
    pub async fn client(&self) -> DistributedClient {
        DistributedClient::connect(self.url())
            .await
            .expect("connect to worker")
    }
}

/// Three workers over one shared state directory: any of them can serve any dataset.
pub struct Cluster {
    pub workers: Vec<Worker>,
    pub state: tempfile::TempDir,
    args: Vec<String>,
}

fn spawn_worker(state: &Path, data: &Path, port: &str, args: &[String]) -> Proc {
    spawn_worker_listening(state, data, &["--grpc-port", port], args)
}

/// A worker listening on `bind` (`ip:port`, any 127.0.0.0/8 address) over the shared `state`.
pub fn worker_at(state: &Path, bind: &str) -> Worker {
    let dir = tempfile::tempdir().unwrap();
    let proc = spawn_worker_listening(
        state,
        &dir.path().join("data"),
        &["--bind-address", bind],
        &[],
    );
    Worker { proc, _dir: dir }
}

fn spawn_worker_listening(state: &Path, data: &Path, listen: &[&str], args: &[String]) -> Proc {
    let mut cmd = Command::new(worker_bin());
    cmd.arg("server")
        .args(listen)
        .args(["--handle-store", "external"])
        .arg("--data-dir")
        .arg(data)
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .env_remove("POLARWAY_AUTH_TOKEN")
        .env_remove("POLARWAY_HANDLE_STORE")
        .env_remove("POLARWAY_STATE_DIR")
        .env("RUST_LOG", log_level());
    Proc::spawn(cmd, "polarway")
}

impl Cluster {
    pub fn start(n: usize) -> Self {
        Self::start_with(n, &[])
    }

    pub fn start_with(n: usize, args: &[&str]) -> Self {
        let state = tempfile::tempdir().unwrap();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let workers = (0..n)
            .map(|_| {
                let dir = tempfile::tempdir().unwrap();
                Worker {
                    proc: spawn_worker(state.path(), &dir.path().join("data"), "0", &args),
                    _dir: dir,
                }
            })
            .collect();
        Cluster {
            workers,
            state,
            args,
        }
    }

    /// Start worker `i` again (after a kill) on its old port, data and state directories.
    pub fn restart(&mut self, i: usize) {
        let w = &mut self.workers[i];
        let port = w.addr().rsplit(':').next().unwrap().to_string();
        w.proc.kill9();
        w.proc = spawn_worker(
            self.state.path(),
            &w._dir.path().join("data"),
            &port,
            &self.args,
        );
    }

    pub fn backend_args(&self) -> Vec<String> {
        self.workers
            .iter()
            .flat_map(|w| ["--backend".to_string(), w.url()])
            .collect()
    }
}

pub struct Gateway {
    pub proc: Proc,
}

impl Gateway {
    /// A gateway in front of `cluster` with `args` added (e.g. `--policy FILE`).
    pub fn start(cluster: &Cluster, args: &[&str]) -> Self {
        Self::start_backends(&cluster.backend_args(), args)
    }

    /// A gateway with explicit backend arguments (e.g. `https://` workers).
    pub fn start_backends(backends: &[String], args: &[&str]) -> Self {
        Self::spawn(None, backends, args)
    }

    /// A gateway that resolves host names with `hosts` as its /etc/hosts: it runs in a private
    /// mount namespace where that file is bind-mounted, so a test can change what a name resolves
    /// to (write the file in place; a rename would not show through the bind mount).
    pub fn start_with_hosts(hosts: &Path, backends: &[String], args: &[&str]) -> Self {
        Self::spawn(Some(hosts), backends, args)
    }

    fn spawn(hosts: Option<&Path>, backends: &[String], args: &[&str]) -> Self {
        // POLARWAY_GATEWAY_BIN: measure another build (e.g. release) with the same tests.
        let bin = std::env::var("POLARWAY_GATEWAY_BIN").unwrap_or_else(|_| GATEWAY_BIN.to_string());
        let mut cmd = match hosts {
            None => Command::new(bin),
            Some(hosts) => with_private_mount(
                &["--bind".as_ref(), hosts.as_os_str(), "/etc/hosts".as_ref()],
                bin,
            ),
        };
        cmd.args(["--grpc-port", "0", "--metrics-port", "0", "--debug-headers"]);
        if !args.contains(&"--health-interval") {
            cmd.args(["--health-interval", "0.5"]);
        }
        cmd.args(backends).args(args).env("RUST_LOG", log_level());
        for (k, _) in std::env::vars() {
            if k.starts_with("POLARWAY_") && k != "POLARWAY_GATEWAY_BIN" {
                cmd.env_remove(k);
            }
        }
        Gateway {
            proc: Proc::spawn(cmd, "polarway-gateway"),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.proc.addr())
    }

    pub fn metrics_url(&self) -> String {
        format!("http://{}/metrics", self.proc.addrs["metrics"])
    }

    pub async fn client(&self) -> DistributedClient {
        DistributedClient::connect(self.url())
            .await
            .expect("connect to gateway")
    }

    pub async fn client_with_token(&self, token: &str) -> DistributedClient {
        DistributedClient::builder(self.url())
            .auth_token(token)
            .connect()
            .await
            .expect("connect to gateway")
    }
}

pub type Raw = polarway_proto::v1::polarway_client::PolarwayClient<tonic::transport::Channel>;

/// A bare gRPC client, to read response metadata the real client does not expose.
pub async fn raw(url: &str) -> Raw {
    Raw::connect(url.to_string())
        .await
        .expect("connect")
        .max_decoding_message_size(polarway_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(polarway_proto::MAX_MESSAGE_BYTES)
}

/// The worker that answered a Describe of `name` through the gateway (`x-polarway-backend`).
pub async fn backend_of(raw: &mut Raw, name: &str) -> Result<String, tonic::Status> {
    let mut req = tonic::Request::new(polarway_proto::v1::DescribeRequest {
        name: name.into(),
        version: None,
    });
    req.metadata_mut()
        .insert("x-polarway-key", name.parse().unwrap());
    let resp = raw.describe(req).await?;
    Ok(resp
        .metadata()
        .get("x-polarway-backend")
        .expect("x-polarway-backend header")
        .to_str()
        .unwrap()
        .to_string())
}

pub fn frame(rows: usize) -> polars::prelude::DataFrame {
    use polars::prelude::*;
    let a: Vec<i64> = (0..rows as i64).collect();
    let b: Vec<String> = (0..rows).map(|i| format!("r{i}")).collect();
    df! { "a" => a, "b" => b }.unwrap()
}

/// `msg` as one gRPC message: the uncompressed flag, its length, its bytes.
pub fn framed(msg: &[u8]) -> Vec<u8> {
    let mut f = vec![0];
    f.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    f.extend_from_slice(msg);
    f
}
