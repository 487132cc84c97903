//! Operations: after a known workload through the gateway, the `/metrics` of the gateway and of
//! the three workers count exactly what that workload must have produced (calls by method and
//! status, rows, cache hit rate, store bytes), and the `health` subcommands answer as Docker's
//! HEALTHCHECK needs.

use std::process::Command;

use crate::common::*;
use polarway::Code;

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_a_known_workload_on_gateway_and_workers() {
    let cluster = Cluster::start_with(3, &["--metrics-enabled", "--metrics-port", "0"]);
    let gw = Gateway::start(&cluster, &[]);
    let client = gw.client().await;

    let rows = 1000;
    client.store("metrics_a", &frame(rows)).await.unwrap();
    for _ in 0..3 {
        assert_eq!(client.load("metrics_a").await.unwrap().height(), rows);
    }
    assert_eq!(
        code_of(client.describe("metrics_missing").await),
        Code::NotFound
    );

    let g = scrape(&gw.metrics_url());
    let req = "polarway_grpc_requests_total";
    assert_eq!(sum(&g, req, &[("method", "Store"), ("status", "OK")]), 1.0);
    assert_eq!(sum(&g, req, &[("method", "Load"), ("status", "OK")]), 3.0);
    assert_eq!(
        sum(&g, req, &[("method", "Describe"), ("status", "NOT_FOUND")]),
        1.0
    );
    assert_eq!(
        sum(&g, "polarway_grpc_errors_total", &[]),
        1.0,
        "only the Describe failed"
    );
    assert_eq!(
        sum(
            &g,
            "polarway_grpc_request_duration_seconds_count",
            &[("method", "Load")]
        ),
        3.0
    );
    assert_eq!(sum(&g, "polarway_grpc_requests_in_flight", &[]), 0.0);
    assert_eq!(
        sum(&g, "polarway_gateway_upstream_requests_total", &[]),
        5.0,
        "five calls, no retries"
    );
    assert_eq!(sum(&g, "polarway_gateway_upstream_healthy", &[]), 3.0);
    assert_eq!(sum(&g, "polarway_gateway_retries_total", &[]), 0.0);
    let stored = sum(
        &g,
        "polarway_grpc_message_bytes_total",
        &[("method", "Store"), ("direction", "received")],
    );
    let loaded = sum(
        &g,
        "polarway_grpc_message_bytes_total",
        &[("method", "Load"), ("direction", "sent")],
    );
    assert!(stored > (rows * 8) as f64, "the upload's bytes: {stored}");
    assert!(
        loaded > (3 * rows * 8) as f64,
        "three loads of {rows} rows: {loaded}"
    );

    // The workers, together, saw the same calls; the one that owns the dataset had 1 miss, 2 hits.
    let per_worker: Vec<Vec<Sample>> = cluster
        .workers
        .iter()
        .map(|w| scrape(&format!("http://{}/metrics", w.proc.addrs["metrics"])))
        .collect();
    let all: Vec<Sample> = per_worker.concat();
    assert_eq!(
        sum(&all, req, &[("method", "Store"), ("status", "OK")]),
        1.0
    );
    assert_eq!(sum(&all, req, &[("method", "Load"), ("status", "OK")]), 3.0);
    assert_eq!(
        sum(
            &all,
            req,
            &[("method", "Describe"), ("status", "NOT_FOUND")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &all,
            "polarway_grpc_errors_total",
            &[("status", "NOT_FOUND")]
        ),
        1.0
    );
    assert_eq!(
        sum(
            &all,
            "polarway_rows_total",
            &[("method", "Store"), ("direction", "received")]
        ),
        rows as f64
    );
    assert_eq!(
        sum(
            &all,
            "polarway_rows_total",
            &[("method", "Load"), ("direction", "sent")]
        ),
        3.0 * rows as f64
    );
    let worker_loaded = sum(
        &all,
        "polarway_grpc_message_bytes_total",
        &[("method", "Load"), ("direction", "sent")],
    );
    assert_eq!(
        worker_loaded, loaded,
        "the gateway passes the workers' bytes through unchanged"
    );

    let owner = per_worker
        .iter()
        .position(|s| sum(s, req, &[("method", "Load")]) > 0.0)
        .expect("a worker served the loads");
    let o = &per_worker[owner];
    assert_eq!(
        sum(o, req, &[("method", "Load"), ("status", "OK")]),
        3.0,
        "sticky routing: one worker served every load"
    );
    assert_eq!(
        (
            sum(o, "polarway_cache_hits_total", &[]),
            sum(o, "polarway_cache_misses_total", &[])
        ),
        (2.0, 1.0)
    );
    assert!((sum(o, "polarway_cache_hit_rate", &[]) - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(sum(o, "polarway_cache_entries", &[]), 1.0);

    // The same figures as the worker's own CacheStats.
    let direct = cluster.workers[owner]
        .client()
        .await
        .cache_stats()
        .await
        .unwrap();
    assert_eq!((direct.hits, direct.misses), (2, 1));
    assert!((sum(o, "polarway_cache_hit_rate", &[]) - direct.hit_rate).abs() < 1e-9);
    let written = sum(&all, "polarway_state_store_bytes_written_total", &[]);
    assert!(
        written > stored * 0.1,
        "the dataset (Parquet) and its manifest were written: {written}"
    );
    let mut direct_written = 0;
    for w in &cluster.workers {
        direct_written += w
            .client()
            .await
            .cache_stats()
            .await
            .unwrap()
            .store_bytes_written;
    }
    assert_eq!(written, direct_written as f64);
    assert!(
        sum(o, "polarway_state_store_bytes_read_total", &[]) > 0.0,
        "the first load read the dataset"
    );
}

#[test]
fn health_subcommands_answer_for_docker() {
    let cluster = Cluster::start(1);
    let gw = Gateway::start(&cluster, &[]);
    let run = |bin: &str, addr: &str| {
        Command::new(bin)
            .args(["health", "--addr", addr, "--timeout", "5"])
            .output()
            .unwrap()
    };

    let ok = run(&worker_bin().to_string_lossy(), cluster.workers[0].addr());
    assert!(ok.status.success(), "{ok:?}");
    assert!(String::from_utf8_lossy(&ok.stdout).contains("SERVING"));
    let ok = run(GATEWAY_BIN, gw.proc.addr());
    assert!(ok.status.success(), "{ok:?}");

    // Nothing listens on a port just freed: exit 1 with a reason.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let down = run(GATEWAY_BIN, &closed);
    assert_eq!(down.status.code(), Some(1), "{down:?}");
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("cannot connect"),
        "{down:?}"
    );
}
