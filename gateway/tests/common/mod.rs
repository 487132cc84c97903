//! Test backbone: three real `polarway` workers sharing one state directory, and the real
//! `polarway-gateway` binary in front of them, all on free loopback ports.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use polarway::DistributedClient;

pub const GATEWAY_BIN: &str = env!("CARGO_BIN_EXE_polarway-gateway");

/// The worker binary: $POLARWAY_BIN, else `polarway` of the build this test belongs to. A test
/// binary lives in `<target>/<profile>/deps/`, and cargo puts the workspace's binaries in
/// `<target>/<profile>/`, so `cargo test --release --workspace` runs the release worker and a
/// `cargo test` without `--release` the debug one, wherever the target directory is.
pub fn worker_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("POLARWAY_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("the test binary's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary lives in <target>/<profile>/deps/");
    let bin = profile_dir.join("polarway");
    assert!(
        bin.exists(),
        "worker binary {} not found: build it (cargo build --release --workspace) or set POLARWAY_BIN",
        bin.display()
    );
    bin
}

fn log_level() -> String {
    std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "warn".into())
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    /// Lines `<prefix>: <what> on ADDR` seen on stdout, by `<what>`.
    pub addrs: std::collections::HashMap<String, String>,
}

impl Proc {
    /// Spawn and wait (bounded) for `<prefix>: listening on ADDR` on stdout.
    pub fn spawn(mut cmd: Command, prefix: &str) -> Self {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {prefix}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let prefix_owned = format!("{prefix}: ");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix(&prefix_owned) {
                    if let Some((what, addr)) = rest.split_once(" on ") {
                        let _ = tx.send((what.to_string(), addr.to_string()));
                    }
                }
            }
        });
        let mut addrs = std::collections::HashMap::new();
        let until = Instant::now() + Duration::from_secs(60);
        while !addrs.contains_key("listening") {
            match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok((what, addr)) => {
                    addrs.insert(what, addr);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "{prefix} did not start within 60 s (status {:?})",
                        child.try_wait()
                    );
                }
            }
        }
        Proc { child, addrs }
    }

    pub fn addr(&self) -> &str {
        &self.addrs["listening"]
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Wait (bounded) for the process to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// SIGTERM and wait (bounded) for the exit; whether it exited by itself.
    pub fn terminate(&mut self) -> bool {
        self.signal(libc::SIGTERM);
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill9();
        }
    }
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
            Some(hosts) => {
                let mut c = Command::new("unshare");
                c.args([
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    r#"mount --bind "$1" /etc/hosts && shift && exec "$@""#,
                    "sh",
                ])
                .arg(hosts)
                .arg(bin);
                c
            }
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

pub fn code_of<T: std::fmt::Debug>(r: polarway::Result<T>) -> polarway::Code {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e
            .code()
            .unwrap_or_else(|| panic!("error without a status code: {e}")),
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

/// GET a URL over plain HTTP/1.1 (the metrics endpoint), bounded.
pub fn http_get(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest
        .split_once('/')
        .map(|(h, p)| (h, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// One sample of the Prometheus text format: name, labels, value.
#[derive(Clone)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

pub fn parse(text: &str) -> Vec<Sample> {
    let body = text.split_once("\r\n\r\n").map_or(text, |(_, b)| b);
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .filter_map(|p| p.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                .collect();
            Some(Sample {
                name: name.to_string(),
                labels,
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// The sum of `name` over the samples whose labels include every pair of `want`.
pub fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| {
            s.name == name
                && want
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

pub fn scrape(url: &str) -> Vec<Sample> {
    let text = http_get(url);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    parse(&text)
}

/// Write `text` to `path` atomically (a rename), so a reloader never reads half a file.
pub fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Poll `check` every 100 ms until it returns true, for at most `within`.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + within;
    while Instant::now() < until {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

pub fn frame(rows: usize) -> polars::prelude::DataFrame {
    use polars::prelude::*;
    let a: Vec<i64> = (0..rows as i64).collect();
    let b: Vec<String> = (0..rows).map(|i| format!("r{i}")).collect();
    df! { "a" => a, "b" => b }.unwrap()
}
