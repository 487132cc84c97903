//! Real S3-compatible server (moto_server, installed by scripts/test.sh) and real nginx for the
//! multi-worker tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, Worker, WorkerConfig};
use polarway_testkit::process::wait_for_port;

/// A moto S3 server on a free loopback port, killed on drop.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
}

fn moto_binary() -> PathBuf {
    if let Ok(p) = std::env::var("POLARWAY_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let p = PathBuf::from(home).join(".cache/polarway/tools-venv/bin/moto_server");
    assert!(
        p.exists(),
        "moto_server not found at {} (scripts/test.sh installs it; or set POLARWAY_MOTO_SERVER)",
        p.display()
    );
    p
}

impl S3Server {
    /// moto one request at a time, checking every request's AWS Signature V4
    /// (`scripts/s3-serial.py --verify-signatures`), with `bucket` made; returns it and the
    /// credentials of the one IAM user allowed in.
    pub fn start_verifying(bucket: &str) -> (Self, String, String) {
        use std::io::BufRead;
        let port = free_port();
        let python = moto_binary().with_file_name("python");
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/s3-serial.py");
        let mut child = Command::new(python)
            .arg(script)
            .args([
                "127.0.0.1",
                &port.to_string(),
                "--verify-signatures",
                bucket,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start scripts/s3-serial.py");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(rest) = line.strip_prefix("credentials ") {
                    let _ = tx.send(rest.to_string());
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the signature-checking S3 server did not print its credentials within 60 s");
        let (key, secret) = line.split_once(' ').expect("credentials KEY SECRET");
        (
            Self {
                child,
                endpoint: format!("http://127.0.0.1:{port}"),
            },
            key.to_string(),
            secret.to_string(),
        )
    }

    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new(moto_binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        wait_for_port(port, "moto_server", Duration::from_secs(30));
        Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    /// The SDK client a test uses to look inside the bucket.
    pub async fn client(&self) -> aws_sdk_s3::Client {
        let creds =
            aws_sdk_s3::config::Credentials::new("test", "test", None, None, "polarway-tests");
        let conf = aws_sdk_s3::config::Builder::new()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(creds)
            .endpoint_url(&self.endpoint)
            .force_path_style(true)
            // The worker's HTTP client (rustls with ring): the SDK has no default one here.
            .http_client(aws_smithy_http_client::Builder::new().build_http())
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// A fresh bucket for one test.
    pub async fn bucket(&self) -> String {
        let name = format!("polarway-{}", uuid::Uuid::new_v4().simple());
        self.client()
            .await
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .expect("create bucket");
        name
    }

    /// Every key in `bucket` under `prefix`.
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let out = self
            .client()
            .await
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .send()
            .await
            .expect("list");
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }

    /// Freeze the server (SIGSTOP): connections hang, as in an outage.
    pub fn pause(&self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGSTOP) };
    }

    pub fn resume(&self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGCONT) };
    }

    /// A worker configuration on this server's `bucket`.
    pub fn worker(&self, bucket: &str) -> WorkerConfig {
        WorkerConfig::default()
            .env("POLARWAY_HANDLE_STORE", "s3")
            .env("POLARWAY_S3_BUCKET", bucket)
            .env("POLARWAY_S3_ENDPOINT", self.endpoint.clone())
            .env("POLARWAY_S3_PATH_STYLE", "true")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            // Never look for instance metadata (a non-loopback address).
            .env("AWS_EC2_METADATA_DISABLED", "true")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Real nginx with the user guide's gRPC round-robin configuration in front of `workers`.
pub struct Nginx {
    child: Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub fn start(workers: &[&Worker]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let servers: String = workers
            .iter()
            .map(|w| format!("        server {};\n", w.addr()))
            .collect();
        let p = dir.path().display();
        // The user guide's nginx.conf, on loopback, with private paths for logs and temp files.
        // `client_max_body_size 0`: nginx refuses request bodies over 1 MiB by default, which
        // would cut off any Store larger than that.
        // Run as root, nginx would hand requests to `nobody`, who cannot enter the test's
        // private directory.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;\n"
        } else {
            ""
        };
        let conf = format!(
            "{user}daemon off;
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{
    worker_connections 1024;
}}

http {{
    access_log off;
    client_body_temp_path {p}/body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;

    upstream polarway_backend {{
{servers}    }}

    server {{
        listen 127.0.0.1:{port} http2;
        client_max_body_size 0;

        location / {{
            grpc_pass grpc://polarway_backend;
            grpc_set_header Host $host;
            grpc_read_timeout 300s;
            grpc_send_timeout 300s;
        }}
    }}
}}
"
        );
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let bin = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("nginx not found (scripts/test.sh installs Debian's nginx-light)");
        let child = Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        wait_for_port(port, "nginx", Duration::from_secs(30));
        Self {
            child,
            addr: format!("127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its workers; then make sure.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy in front of the S3 server that, for the next `drops` conditional writes
/// (`If-None-Match`), lets the request through and the server act on it, but closes the
/// connection instead of passing the answer back: the write happened and the client does not
/// know. The S3 client then sends it again, as it does after any dropped connection.
pub struct AnswerDropper {
    pub endpoint: String,
    drops: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// How many answers were dropped so far.
    dropped: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl AnswerDropper {
    pub async fn start(upstream: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let drops = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (d, n) = (drops.clone(), dropped.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let (upstream, drops, dropped) = (upstream.clone(), d.clone(), n.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut buf_c, mut buf_s) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
                    let mut drop_answer = false;
                    loop {
                        tokio::select! {
                            r = client.read(&mut buf_c) => {
                                let Ok(k @ 1..) = r else { return };
                                let head = String::from_utf8_lossy(&buf_c[..k]).to_ascii_lowercase();
                                if head.contains("if-none-match")
                                    && drops
                                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                                        .is_ok()
                                {
                                    drop_answer = true;
                                }
                                if server.write_all(&buf_c[..k]).await.is_err() { return; }
                            }
                            r = server.read(&mut buf_s) => {
                                let Ok(k @ 1..) = r else { return };
                                if drop_answer {
                                    // The server has answered: the write is done. Hang up.
                                    dropped.fetch_add(1, Ordering::SeqCst);
                                    return;
                                }
                                if client.write_all(&buf_s[..k]).await.is_err() { return; }
                            }
                        }
                    }
                });
            }
        });
        Self {
            endpoint,
            drops,
            dropped,
            task,
        }
    }

    /// Drop the answers of the next `n` conditional writes.
    pub fn drop_next(&self, n: usize) {
        self.drops.store(n, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn dropped(&self) -> usize {
        self.dropped.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for AnswerDropper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
