//! What the integration tests of the worker (`compute/tests`) and the gateway (`gateway/tests`)
//! share, so that each suite holds only its own cases:
//!
//! - `process.rs`: a real binary started on a free loopback port, its addresses read from the
//!   lines it prints, killed when dropped; free ports; peak memory.
//! - `pki.rs`: certificate authorities and certificates made for a test, as PEM files.
//! - `metrics.rs`: a `/metrics` endpoint scraped and its samples summed.
//!
//! Every wait is bounded.

pub mod metrics;
pub mod pki;
pub mod process;

use std::path::Path;
use std::time::{Duration, Instant};

pub use process::{free_port, Proc};

/// The gRPC code of a call that must fail.
pub fn code_of<T: std::fmt::Debug>(r: polarway::Result<T>) -> polarway::Code {
    match r {
        Ok(v) => panic!("expected an error, got {v:?}"),
        Err(e) => e
            .code()
            .unwrap_or_else(|| panic!("error without a status code: {e}")),
    }
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

/// With a worker started with `--max-concurrent-requests 1`: send `sql` (a query that runs for
/// long) through `via` until `probe`, a client of that worker, is refused for want of the slot,
/// so the query is seen running there. A query turned away while the probe held the slot is sent
/// again. Returns the handle that drops the query's call.
pub async fn query_holding_the_only_slot(
    via: &polarway::DistributedClient,
    probe: &polarway::DistributedClient,
    sql: &'static str,
) -> tokio::task::AbortHandle {
    let start = || {
        let client = via.clone();
        tokio::spawn(async move { client.query(sql).await })
    };
    let mut query = start();
    for _ in 0..100 {
        if query.is_finished() {
            assert_eq!(
                code_of(query.await.unwrap()),
                polarway::Code::ResourceExhausted
            );
            query = start();
        } else if let Err(e) = probe.list("").await {
            assert_eq!(e.code(), Some(polarway::Code::ResourceExhausted), "{e}");
            if !query.is_finished() {
                return query.abort_handle();
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the slow query never held the worker's slot");
}

/// Whether a call of `probe` gets through within 10 s, while every refusal is RESOURCE_EXHAUSTED
/// (the worker's one request slot is still taken).
pub async fn slot_frees(probe: &polarway::DistributedClient) -> bool {
    eventually(Duration::from_secs(10), || async {
        match probe.list("").await {
            Ok(_) => true,
            Err(e) => {
                assert_eq!(e.code(), Some(polarway::Code::ResourceExhausted), "{e}");
                false
            }
        }
    })
    .await
}

/// Write `text` to `path` atomically (a rename), so a reloader never reads half a file.
pub fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The level the started binaries log at: `TEST_RUST_LOG`, default `warn`.
pub fn log_level() -> String {
    std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "warn".into())
}
