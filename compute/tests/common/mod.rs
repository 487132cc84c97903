//! Test backbone: start the real `polarway` binary on a free loopback port, talk to it over gRPC.
//! What every suite shares (processes, ports, certificates, metrics) is `polarway-testkit`.
// Each test crate uses its own part of this module (and of what it re-exports).
#![allow(dead_code, unused_imports)]

use std::path::{Path, PathBuf};
use std::process::Command;

use polarway::DistributedClient;
use polarway_testkit::process::with_private_mount;
pub use polarway_testkit::{code_of, free_port, Proc};

pub const BIN: &str = env!("CARGO_BIN_EXE_polarway");

/// A running worker. Killed (and its output dropped) when it goes out of scope.
pub struct Worker {
    pub proc: Proc,
    pub data_dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

#[derive(Default)]
pub struct WorkerConfig {
    pub data_dir: Option<PathBuf>,
    /// Default 0: a free port chosen by the worker.
    pub port: u16,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Serve with `--data-dir /data`, the user guide's path, in a private mount namespace where
    /// the data directory is bind-mounted at /data: nothing outside the test sees it.
    pub at_slash_data: bool,
    /// The data directory is a fresh tmpfs of this many bytes, mounted in a private mount
    /// namespace (only the worker sees it; it is gone with the worker): a small disk that fills.
    pub tmpfs_bytes: Option<u64>,
}

impl WorkerConfig {
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }
    pub fn env(mut self, k: &str, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    pub fn data_dir(mut self, d: &Path) -> Self {
        self.data_dir = Some(d.to_path_buf());
        self
    }
    pub fn at_slash_data(mut self) -> Self {
        self.at_slash_data = true;
        self
    }
    pub fn tmpfs(mut self, bytes: u64) -> Self {
        self.tmpfs_bytes = Some(bytes);
        self
    }
}

impl Worker {
    pub fn start() -> Self {
        Self::start_with(WorkerConfig::default())
    }

    pub fn start_with(cfg: WorkerConfig) -> Self {
        let (tmp, data_dir) = match cfg.data_dir {
            Some(d) => (None, d),
            None => {
                let t = tempfile::tempdir().expect("tempdir");
                let d = t.path().join("data");
                (Some(t), d)
            }
        };
        let mut cmd = if cfg.at_slash_data {
            // The mount point must exist; an empty /data is all this leaves on the host.
            std::fs::create_dir_all("/data").expect("create the /data mount point");
            std::fs::create_dir_all(&data_dir).expect("create the data directory");
            with_private_mount(
                &["--bind".as_ref(), data_dir.as_os_str(), "/data".as_ref()],
                BIN,
            )
        } else if let Some(bytes) = cfg.tmpfs_bytes {
            std::fs::create_dir_all(&data_dir).expect("create the data directory");
            let size = format!("size={bytes}");
            let mount: [&std::ffi::OsStr; 6] = [
                "-t".as_ref(),
                "tmpfs".as_ref(),
                "-o".as_ref(),
                size.as_ref(),
                "tmpfs".as_ref(),
                data_dir.as_os_str(),
            ];
            with_private_mount(&mount, BIN)
        } else {
            Command::new(BIN)
        };
        let served_dir = if cfg.at_slash_data {
            PathBuf::from("/data")
        } else {
            data_dir.clone()
        };
        cmd.arg("server")
            .arg("--grpc-port")
            .arg(cfg.port.to_string())
            .arg("--data-dir")
            .arg(&served_dir)
            .args(&cfg.args)
            .env_remove("POLARWAY_AUTH_TOKEN")
            .env_remove("POLARWAY_HANDLE_STORE")
            .env_remove("POLARWAY_STATE_DIR")
            .env("RUST_LOG", polarway_testkit::log_level());
        for (k, v) in &cfg.env {
            cmd.env(k, v);
        }
        let proc = Proc::spawn(cmd, "polarway");
        Worker {
            proc,
            data_dir,
            _tmp: tmp,
        }
    }

    /// The gRPC address (`ip:port`).
    pub fn addr(&self) -> &str {
        self.proc.addr()
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub fn port(&self) -> u16 {
        self.proc.port()
    }

    pub async fn client(&self) -> DistributedClient {
        DistributedClient::connect(self.url())
            .await
            .expect("connect")
    }

    /// The value of one series (`name{labels}` exactly as exported) on this worker's /metrics
    /// (workers started with `--metrics-enabled --metrics-port 0`).
    pub fn metric(&self, series: &str) -> Option<f64> {
        let addr = self
            .proc
            .metrics_addr()
            .expect("started with --metrics-enabled --metrics-port 0");
        polarway_testkit::metrics::series(addr, series)
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The names in `dir` as the worker sees them (inside its mount namespace, if it has one).
    pub fn list_dir(&self, dir: &Path) -> Vec<String> {
        let out = Command::new("nsenter")
            .args([
                "--mount",
                "--target",
                &self.pid().to_string(),
                "--",
                "ls",
                "-A",
            ])
            .arg(dir)
            .output()
            .expect("run nsenter");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect()
    }

    /// Peak resident memory of the worker so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.proc.peak_rss()
    }

    pub fn kill9(&mut self) {
        self.proc.kill9()
    }

    /// SIGTERM and wait (bounded) for a clean exit; returns whether it exited by itself.
    pub fn terminate(&mut self) -> bool {
        self.proc.terminate()
    }
}

pub type Raw = polarway_proto::v1::polarway_client::PolarwayClient<tonic::transport::Channel>;

/// A bare gRPC client, to send what the real client never would.
pub async fn raw(worker: &Worker) -> Raw {
    Raw::connect(worker.url())
        .await
        .expect("connect")
        .max_decoding_message_size(polarway_proto::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(polarway_proto::MAX_MESSAGE_BYTES)
}

/// `rows` rows of columns a (int64) and b (utf8), their values set by `seed`.
pub fn numbered_batch(rows: usize, seed: i64) -> arrow::array::RecordBatch {
    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use std::sync::Arc;
    let a = Int64Array::from_iter_values((0..rows as i64).map(|i| i ^ seed));
    let b = StringArray::from_iter_values((0..rows).map(|i| format!("r{i}-{seed}")));
    RecordBatch::try_from_iter([("a", Arc::new(a) as _), ("b", Arc::new(b) as _)]).unwrap()
}

/// `batches` as one Arrow IPC stream.
pub fn ipc_stream_of(batches: &[arrow::array::RecordBatch]) -> Vec<u8> {
    let mut w =
        arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &batches[0].schema()).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
    w.into_inner().unwrap()
}

/// A small valid Arrow IPC stream: columns a (int64) and b (utf8).
pub fn ipc_stream(rows: i64) -> Vec<u8> {
    ipc_stream_of(&[numbered_batch(rows as usize, 0)])
}

/// Store request messages: a header, then `chunks`.
pub fn store_messages(name: &str, chunks: Vec<Vec<u8>>) -> Vec<polarway_proto::v1::StoreRequest> {
    use polarway_proto::v1::{store_request::Msg, StoreHeader, StoreRequest};
    let mut out = vec![StoreRequest {
        msg: Some(Msg::Header(StoreHeader {
            name: name.into(),
            condition: None,
        })),
    }];
    out.extend(chunks.into_iter().map(|c| StoreRequest {
        msg: Some(Msg::Ipc(c.into())),
    }));
    out
}
pub mod s3;
