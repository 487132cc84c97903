//! Real binaries on loopback ports. A Polarway binary started on port 0 prints
//! `<program>: listening on ADDR` (and `<program>: metrics on ADDR`) on stdout; `Proc::spawn`
//! reads those lines, bounded, so a test never guesses a port.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a binary may take to print that it is listening.
const START_WITHIN: Duration = Duration::from_secs(60);

/// A child process, killed when dropped.
pub struct Proc {
    pub child: Child,
    /// Lines `<program>: <what> on ADDR` seen on stdout before it listened, by `<what>`.
    pub addrs: HashMap<String, String>,
}

impl Proc {
    /// Spawn `cmd` and wait (bounded) for `<program>: listening on ADDR` on its stdout. Its
    /// stderr goes to the test's.
    pub fn spawn(mut cmd: Command, program: &str) -> Self {
        cmd.stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {program}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let prefix = format!("{program}: ");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some((what, addr)) = line
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.split_once(" on "))
                {
                    let _ = tx.send((what.to_string(), addr.to_string()));
                }
            }
        });
        let mut addrs = HashMap::new();
        let until = Instant::now() + START_WITHIN;
        while !addrs.contains_key("listening") {
            match rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
                Ok((what, addr)) => {
                    addrs.insert(what, addr);
                }
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "{program} did not start within {START_WITHIN:?} (status {:?})",
                        child.try_wait()
                    );
                }
            }
        }
        Proc { child, addrs }
    }

    /// The gRPC address (`ip:port`).
    pub fn addr(&self) -> &str {
        &self.addrs["listening"]
    }

    pub fn port(&self) -> u16 {
        self.addr()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("ip:port")
    }

    /// The metrics address, for binaries started with a metrics port of 0.
    pub fn metrics_addr(&self) -> Option<&str> {
        self.addrs.get("metrics").map(String::as_str)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid; no memory is shared.
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

    /// SIGTERM and wait (bounded) for the exit; whether it exited by itself (else it is killed).
    pub fn terminate(&mut self) -> bool {
        self.signal(libc::SIGTERM);
        let exited = self.wait_exit(Duration::from_secs(20));
        if !exited {
            self.kill9();
        }
        exited
    }

    /// Peak resident memory of the process so far (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill9();
        }
    }
}

/// `program` run in a private mount namespace after `mount MOUNT_ARGS` there: only it sees the
/// mount, which goes with it (e.g. a bind mount at a fixed path, or a small tmpfs). The caller adds
/// the program's own arguments.
pub fn with_private_mount<S: AsRef<OsStr>>(
    mount_args: &[S],
    program: impl AsRef<OsStr>,
) -> Command {
    let n = mount_args.len();
    let positional: Vec<String> = (1..=n).map(|i| format!("\"${i}\"")).collect();
    let script = format!("mount {} && shift {n} && exec \"$@\"", positional.join(" "));
    let mut c = Command::new("unshare");
    c.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        &script,
        "sh",
    ])
    .args(mount_args)
    .arg(program);
    c
}

/// A loopback port that was free a moment ago, below the kernel's ephemeral range: the kernel
/// never hands it to a server started on port 0 (another test's), and never uses it as a client's
/// source port, so a client that connects before the server is up cannot meet itself (a TCP
/// self-connect, which answers the HTTP/2 preface with garbage).
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    const LOW: u16 = 10_000;
    let span = ephemeral_low.saturating_sub(LOW);
    // A random start, so that tests asking at the same time rarely try the same ports.
    let start = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    for i in 0..u64::from(span) {
        let port = LOW + ((start.wrapping_add(i)) % u64::from(span.max(1))) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Wait (bounded) until something accepts connections on `127.0.0.1:port`.
pub fn wait_for_port(port: u16, what: &str, within: Duration) {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not listen on port {port} within {within:?}");
}

/// A binary of the workspace's build that a test runs but does not belong to: `$env_var` if set,
/// else `<name>` next to the test binary's own directory. A test binary lives in
/// `<target>/<profile>/deps/` and cargo puts the workspace's binaries in `<target>/<profile>/`, so
/// `cargo test --release --workspace` runs the release binaries, wherever the target directory is.
pub fn workspace_bin(name: &str, env_var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var) {
        return p.into();
    }
    let exe = std::env::current_exe().expect("the test binary's own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("a test binary lives in <target>/<profile>/deps/");
    let bin = profile_dir.join(name);
    assert!(
        bin.exists(),
        "{name} not found at {}: build it (cargo build --release --workspace) or set {env_var}",
        bin.display()
    );
    bin
}
