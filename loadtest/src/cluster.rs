//! `--spawn-cluster N`: a gateway and N workers from the binaries next to this one (or
//! `--bin-dir`), on free loopback ports, with temporary data directories and one shared state
//! directory (the external store), as in distributed mode. Everything goes away on drop.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct Proc {
    child: Child,
    pub addr: String,
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
}

pub struct ClusterOpts {
    pub bin_dir: PathBuf,
    pub workers: usize,
    pub routing: String,
    pub cache_size_gb: f64,
    pub worker_args: Vec<String>,
    pub gateway_args: Vec<String>,
    /// Workers share a state directory (the external store); otherwise `worker_args` name a store.
    pub shared_state: bool,
}

pub struct Cluster {
    pub workers: Vec<Proc>,
    pub gateway: Proc,
    // Last: removed after the processes are killed.
    _dir: tempfile::TempDir,
}

/// Start `program args`, wait (bounded) for its `<prefix>: listening on ADDR` line on stdout.
async fn start(program: &Path, args: Vec<String>, prefix: &str, log: PathBuf) -> Result<Proc> {
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)?;
    let mut child = Command::new(program)
        .args(&args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let wanted = format!("{prefix}: listening on ");
    let addr = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(addr) = line.strip_prefix(&wanted) {
                return Ok::<String, anyhow::Error>(addr.trim().to_string());
            }
        }
        bail!(
            "{} exited before listening (log: {})",
            program.display(),
            log.display()
        )
    })
    .await
    .with_context(|| {
        format!(
            "{} did not print its address within 30 s (log: {})",
            program.display(),
            log.display()
        )
    })??;
    // Keep draining stdout so that the process never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Proc {
        child,
        addr,
        program: program.to_path_buf(),
        args,
        log,
    })
}

impl Proc {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where its stderr goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// kill -9 and reap.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Start the same command again on the same port.
    pub async fn restart(&mut self, prefix: &str) -> Result<()> {
        let port = self.addr.rsplit(':').next().unwrap_or("0").to_string();
        let mut args = self.args.clone();
        if let Some(i) = args.iter().position(|a| a == "--grpc-port") {
            args[i + 1] = port;
        }
        let fresh = start(&self.program, args, prefix, self.log.clone()).await?;
        *self = fresh;
        Ok(())
    }
}

impl Cluster {
    /// Every process by the name reports give it: `gateway`, `worker0`, `worker1`...
    pub fn processes(&self) -> Vec<(String, &Proc)> {
        std::iter::once(("gateway".to_string(), &self.gateway))
            .chain(
                self.workers
                    .iter()
                    .enumerate()
                    .map(|(i, w)| (format!("worker{i}"), w)),
            )
            .collect()
    }

    pub async fn start(opts: &ClusterOpts) -> Result<Cluster> {
        let worker_bin = opts.bin_dir.join("polarway");
        let gateway_bin = opts.bin_dir.join("polarway-gateway");
        for b in [&worker_bin, &gateway_bin] {
            if !b.is_file() {
                bail!(
                    "{} not found: build the workspace's binaries or pass --bin-dir",
                    b.display()
                );
            }
        }
        let mut dir = tempfile::Builder::new()
            .prefix("polarway-loadtest-")
            .tempdir()?;
        // POLARWAY_LOADTEST_KEEP=1: leave the data directories and logs for a look afterwards.
        if std::env::var_os("POLARWAY_LOADTEST_KEEP").is_some() {
            dir.disable_cleanup(true);
            eprintln!("cluster: data and logs kept in {}", dir.path().display());
        }
        let state = dir.path().join("state");
        let mut workers = Vec::new();
        for i in 0..opts.workers {
            let data = dir.path().join(format!("worker{i}"));
            let mut args: Vec<String> = vec![
                "server".into(),
                "--grpc-port".into(),
                "0".into(),
                "--data-dir".into(),
                data.display().to_string(),
                "--cache-size".into(),
                opts.cache_size_gb.to_string(),
            ];
            if opts.shared_state {
                args.extend([
                    "--handle-store".into(),
                    "external".into(),
                    "--state-dir".into(),
                    state.display().to_string(),
                ]);
            }
            args.extend(opts.worker_args.iter().cloned());
            workers.push(
                start(
                    &worker_bin,
                    args,
                    "polarway",
                    dir.path().join(format!("worker{i}.log")),
                )
                .await?,
            );
        }
        let mut args: Vec<String> = vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--metrics-port".into(),
            "0".into(),
            "--routing".into(),
            opts.routing.clone(),
            "--health-interval".into(),
            "1".into(),
        ];
        for w in &workers {
            args.push("--backend".into());
            args.push(w.url());
        }
        args.extend(opts.gateway_args.iter().cloned());
        let gateway = start(
            &gateway_bin,
            args,
            "polarway-gateway",
            dir.path().join("gateway.log"),
        )
        .await?;
        Ok(Cluster {
            workers,
            gateway,
            _dir: dir,
        })
    }
}

/// The directory of the running executable (where cargo puts the sibling binaries).
pub fn default_bin_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}
