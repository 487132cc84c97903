//! Gateway overhead, measured (not asserted): latency of a small call and throughput of a large
//! load, directly to a worker and through the gateway, in the same run on the same data.
//!
//! ```text
//! cargo build --release --workspace
//! cargo test --release --workspace --test gateway -- bench:: --ignored --nocapture
//! ```
//!
//! With `--release` the worker and the gateway measured are the release binaries of the same build
//! (`$CARGO_TARGET_DIR/release/`); `POLARWAY_BIN` and `POLARWAY_GATEWAY_BIN` measure other ones.

use std::time::{Duration, Instant};

use crate::common::*;
use futures::StreamExt;
use polarway::DistributedClient;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e6
}

async fn latency(client: &DistributedClient, n: usize) -> (f64, f64) {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        client.describe("bench_small").await.unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    (percentile(&times, 0.5), percentile(&times, 0.99))
}

async fn throughput(client: &DistributedClient, bytes: f64) -> f64 {
    let t = Instant::now();
    let mut s = client.load_stream("bench_big").await.unwrap();
    while let Some(part) = s.next().await {
        part.unwrap();
    }
    bytes / t.elapsed().as_secs_f64() / 1e6
}

/// One round's figures: describe p50, p99 direct and via the gateway (us), load direct and via (MB/s).
type Round = (f64, f64, f64, f64, f64, f64);

#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn overhead() {
    let cluster = Cluster::start(1);
    let gw = Gateway::start(&cluster, &[]);
    let direct = DistributedClient::builder(cluster.workers[0].url())
        .timeout(Duration::from_secs(300))
        .connect()
        .await
        .unwrap();
    let via = DistributedClient::builder(gw.url())
        .timeout(Duration::from_secs(300))
        .connect()
        .await
        .unwrap();
    direct.store("bench_small", &frame(10)).await.unwrap();
    let n = 8_000_000i64;
    let big = polars::df! { "a" => (0..n).collect::<Vec<i64>>(), "b" => (0..n).map(|i| i as f64).collect::<Vec<f64>>() }.unwrap();
    direct.store("bench_big", &big).await.unwrap();
    let bytes = (n * 16) as f64;
    // Warm up both paths (connections, worker cache).
    latency(&direct, 200).await;
    latency(&via, 200).await;
    throughput(&direct, bytes).await;
    let mut rows = Vec::new();
    for round in 0..3 {
        let (d50, d99) = latency(&direct, 2000).await;
        let (g50, g99) = latency(&via, 2000).await;
        let dt = throughput(&direct, bytes).await;
        let gt = throughput(&via, bytes).await;
        eprintln!("round {round}: describe p50/p99 direct {d50:.0}/{d99:.0} us, via gateway {g50:.0}/{g99:.0} us; load 128 MB direct {dt:.0} MB/s, via gateway {gt:.0} MB/s");
        rows.push((d50, d99, g50, g99, dt, gt));
    }
    let med = |f: fn(&Round) -> f64| {
        let mut v: Vec<f64> = rows.iter().map(f).collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    eprintln!(
        "median of 3: describe p50 direct {:.0} us, via {:.0} us (+{:.0}); p99 direct {:.0} us, via {:.0} us; load direct {:.0} MB/s, via {:.0} MB/s ({:.0}%)",
        med(|r| r.0), med(|r| r.2), med(|r| r.2) - med(|r| r.0), med(|r| r.1), med(|r| r.3), med(|r| r.4), med(|r| r.5), 100.0 * med(|r| r.5) / med(|r| r.4)
    );
}
