//! Stateless workers on S3: a real S3-compatible server (moto), several real workers sharing one
//! bucket, and real nginx round-robin in front of them.

use std::time::{Duration, Instant};

use crate::common::s3::{AnswerDropper, Nginx, S3Server};
use crate::common::{code_of, Worker, WorkerConfig};
use polars::prelude::*;
use polarway::{Code, Condition, DistributedClient};

fn numbers(n: i64, salt: i64) -> DataFrame {
    DataFrame::new_infer_height(vec![
        Series::new("v".into(), (0..n).map(|i| i ^ salt).collect::<Vec<_>>()).into_column(),
        // Hard to compress, so that a few million rows make a multi-part object.
        Series::new(
            "h".into(),
            (0..n)
                .map(|i| (i ^ salt).wrapping_mul(0x9E37_79B9_7F4A_7C15u64 as i64))
                .collect::<Vec<_>>(),
        )
        .into_column(),
    ])
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_worker_stores_loads_queries_and_deletes() {
    let s3 = S3Server::start();
    let bucket = s3.bucket().await;
    let worker = Worker::start_with(s3.worker(&bucket));
    let client = worker.client().await;
    assert_eq!(client.health_check().await.unwrap(), "OK");

    let small = numbers(1000, 1);
    assert_eq!(client.store("small", &small).await.unwrap().version, 1);
    // 3 million rows of random-looking int64: a Parquet object of well over one 8 MiB part.
    let big = numbers(3_000_000, 2);
    let info = client.store("big", &big).await.unwrap();
    assert!(
        info.bytes > 16 << 20,
        "expected a multipart object, got {} bytes",
        info.bytes
    );
    assert!(client.load("big").await.unwrap().equals_missing(&big));
    assert!(client.load("small").await.unwrap().equals_missing(&small));

    // Versions and conditions.
    assert_eq!(
        client
            .store_if("small", &numbers(10, 3), Condition::IfVersion(1))
            .await
            .unwrap()
            .version,
        2
    );
    assert_eq!(
        code_of(
            client
                .store_if("small", &small, Condition::IfVersion(1))
                .await
        ),
        Code::Aborted
    );
    assert_eq!(
        code_of(client.store_if("small", &small, Condition::IfAbsent).await),
        Code::AlreadyExists
    );
    assert!(client
        .load_with("small", &[], Some(1))
        .await
        .unwrap()
        .equals_missing(&small));

    // SQL over S3 datasets, by table name and by cold path.
    let n = client
        .query("SELECT COUNT(*)::BIGINT AS n FROM big")
        .await
        .unwrap();
    assert_eq!(
        n.column("n").unwrap().i64().unwrap().get(0),
        Some(3_000_000)
    );
    let cold = worker.data_dir.join("cold");
    let sql = format!(
        "SELECT SUM(v)::BIGINT AS s FROM parquet_scan('{}/sm*.parquet')",
        cold.display()
    );
    let expected: i64 = (0..10i64).map(|i| i ^ 3).sum();
    assert_eq!(
        client
            .query(&sql)
            .await
            .unwrap()
            .column("s")
            .unwrap()
            .i64()
            .unwrap()
            .get(0),
        Some(expected)
    );

    let names: Vec<String> = client
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["big", "small"]);
    client.delete("big").await.unwrap();
    assert_eq!(code_of(client.load("big").await), Code::NotFound);

    // The bucket holds only committed objects: no multipart upload was left unfinished.
    let uploads = s3
        .client()
        .await
        .list_multipart_uploads()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert!(
        uploads.uploads().is_empty(),
        "unfinished uploads: {:?}",
        uploads.uploads()
    );
    let stats = client.cache_stats().await.unwrap();
    assert!(stats.store_bytes_written > info.bytes, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_sharing_a_bucket_read_each_others_writes() {
    let s3 = S3Server::start();
    let bucket = s3.bucket().await;
    let a = Worker::start_with(s3.worker(&bucket));
    let b = Worker::start_with(s3.worker(&bucket));
    let (ca, cb) = (a.client().await, b.client().await);

    for version in 1..=5i64 {
        let df = numbers(2000 + version, version);
        ca.store("shared", &df).await.unwrap();
        // Right after the store returns on A, B serves the new version (after warming up on
        // the previous one, so a stale cache would show).
        assert!(
            cb.load("shared").await.unwrap().equals_missing(&df),
            "version {version}"
        );
        let rows = cb
            .query("SELECT COUNT(*)::BIGINT AS n FROM shared")
            .await
            .unwrap();
        assert_eq!(
            rows.column("n").unwrap().i64().unwrap().get(0),
            Some(2000 + version)
        );
    }

    // Conditional stores racing on two workers: exactly one winner, every time.
    for round in 0..10 {
        let name = format!("race_{round}");
        let (da, db) = (numbers(3000, 10), numbers(3000, 20));
        let (ra, rb) = tokio::join!(
            ca.store_if(&name, &da, Condition::IfAbsent),
            cb.store_if(&name, &db, Condition::IfAbsent)
        );
        assert_eq!(
            [ra.is_ok(), rb.is_ok()].iter().filter(|w| **w).count(),
            1,
            "round {round}: {ra:?} / {rb:?}"
        );
        let winner = if ra.is_ok() { &da } else { &db };
        assert_eq!(
            code_of(if ra.is_ok() { rb } else { ra }),
            Code::AlreadyExists
        );
        assert!(ca.load(&name).await.unwrap().equals_missing(winner));
        assert!(cb.load(&name).await.unwrap().equals_missing(winner));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_sharing_a_data_directory_keep_their_own_disk_caches() {
    // The user guide runs every worker with `--data-dir /data` on one shared volume.
    let s3 = S3Server::start();
    let bucket = s3.bucket().await;
    let shared = tempfile::tempdir().unwrap();
    // No memory tier: every load goes to the disk tier (or S3).
    let cfg = || {
        s3.worker(&bucket)
            .data_dir(shared.path())
            .arg("--cache-size")
            .arg("0")
    };
    // What the layout before per-worker directories left is removed.
    std::fs::create_dir_all(shared.path().join("s3-cache/objects/data")).unwrap();
    std::fs::write(shared.path().join("s3-cache/tmp-0123"), b"partial download").unwrap();
    let a = Worker::start_with(cfg());
    assert!(
        !shared.path().join("s3-cache/objects").exists()
            && !shared.path().join("s3-cache/tmp-0123").exists()
    );
    let ca = a.client().await;
    let df = numbers(5000, 3);
    ca.store("on_disk", &df).await.unwrap();
    assert!(ca.load("on_disk").await.unwrap().equals_missing(&df));
    let before = ca.cache_stats().await.unwrap();

    // A second worker starting on the same data directory must not wipe the first one's cache.
    let b = Worker::start_with(cfg());
    assert!(b
        .client()
        .await
        .load("on_disk")
        .await
        .unwrap()
        .equals_missing(&df));
    for _ in 0..3 {
        assert!(ca.load("on_disk").await.unwrap().equals_missing(&df));
    }
    let after = ca.cache_stats().await.unwrap();
    assert_eq!(after.disk_hits - before.disk_hits, 3, "{after:?}");
    assert_eq!(
        after.store_bytes_read, before.store_bytes_read,
        "A read nothing from S3 again"
    );
    let dirs = std::fs::read_dir(shared.path().join("s3-cache"))
        .unwrap()
        .count();
    assert_eq!(dirs, 2, "one cache directory per worker");

    // A restarted worker clears what a dead one left.
    let mut b = b;
    b.kill9();
    let _c = Worker::start_with(cfg());
    let dirs = std::fs::read_dir(shared.path().join("s3-cache"))
        .unwrap()
        .count();
    assert_eq!(
        dirs, 2,
        "the killed worker's directory was removed, the live one kept"
    );
}

/// Warm loads come from memory after one listing; measure what cross-worker validation costs.
#[tokio::test(flavor = "multi_thread")]
async fn warm_loads_are_served_from_the_cache_and_validated_by_one_listing() {
    let s3 = S3Server::start();
    let bucket = s3.bucket().await;
    let worker = Worker::start_with(
        s3.worker(&bucket)
            .arg("--metrics-enabled")
            .arg("--metrics-port")
            .arg("0"),
    );
    let client = worker.client().await;
    let df = numbers(10_000, 5);
    client.store("hot", &df).await.unwrap();
    client.load("hot").await.unwrap();
    let before = client.cache_stats().await.unwrap();
    let loads = 50;
    let started = Instant::now();
    for _ in 0..loads {
        assert!(client.load("hot").await.unwrap().equals_missing(&df));
    }
    let per_load = started.elapsed() / loads;
    let after = client.cache_stats().await.unwrap();
    assert_eq!(after.hits - before.hits, loads as u64, "{after:?}");
    assert_eq!(after.misses, before.misses);
    assert_eq!(
        after.store_bytes_read, before.store_bytes_read,
        "warm loads must not read objects from S3"
    );
    let requests = (after.store_requests - before.store_requests) as f64 / loads as f64;
    assert!(requests <= 1.0, "{requests} S3 requests per warm load");

    // /metrics tells the same story, per S3 operation (every attempt the SDK sends).
    let m = |series: &str| worker.metric(series).unwrap_or(0.0);
    let lists = m(r#"polarway_s3_requests_total{operation="ListObjectsV2",result="ok"}"#);
    assert!(lists >= loads as f64, "one listing per load: {lists}");
    assert_eq!(
        m(r#"polarway_s3_request_duration_seconds_count{operation="ListObjectsV2"}"#),
        lists
    );
    assert!(
        m(r#"polarway_s3_requests_total{operation="PutObject",result="ok"}"#) >= 2.0,
        "data and manifest"
    );
    assert_eq!(
        m("polarway_state_store_requests_total"),
        after.store_requests as f64
    );
    assert_eq!(
        m("polarway_state_store_bytes_written_total"),
        after.store_bytes_written as f64
    );
    assert_eq!(
        m("polarway_state_store_bytes_read_total"),
        after.store_bytes_read as f64
    );
    assert_eq!(m("polarway_cache_hits_total"), after.hits as f64);
    assert!((m("polarway_cache_hit_rate") - after.hit_rate).abs() < 1e-9);
    assert!(m("polarway_disk_cache_capacity_bytes") > 0.0);

    // The same loads on the external store (no S3 round trip) for comparison.
    let local = Worker::start();
    let lc = local.client().await;
    lc.store("hot", &df).await.unwrap();
    lc.load("hot").await.unwrap();
    let started = Instant::now();
    for _ in 0..loads {
        lc.load("hot").await.unwrap();
    }
    let local_per_load = started.elapsed() / loads;
    println!(
        "warm load of 10k rows (debug build): s3 store {per_load:?} ({requests} S3 request per load), external store {local_per_load:?}; \
         S3 bytes read {}, written {}",
        after.store_bytes_read, after.store_bytes_written
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_during_a_multipart_store_leaves_the_old_version_everywhere() {
    let s3 = S3Server::start();
    let bucket = s3.bucket().await;
    let mut a = Worker::start_with(s3.worker(&bucket));
    let b = Worker::start_with(s3.worker(&bucket));
    let (ca, cb) = (a.client().await, b.client().await);
    let old = numbers(1000, 1);
    ca.store("ds", &old).await.unwrap();
    let old_objects = s3.keys(&bucket, "datasets/ds/").await;

    let big = numbers(6_000_000, 2);
    let upload = tokio::spawn({
        let ca = ca.clone();
        async move { ca.store("ds", &big).await }
    });
    // Kill A once its multipart upload to S3 is under way.
    let s3_client = s3.client().await;
    let mut started = false;
    for _ in 0..1200 {
        let uploads = s3_client
            .list_multipart_uploads()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        if !uploads.uploads().is_empty() {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(started, "the multipart upload never started");
    a.kill9();
    assert!(
        upload.await.unwrap().is_err(),
        "the interrupted store must fail"
    );

    // B (and a fresh A) still serve version 1; no new object became visible.
    assert!(cb.load("ds").await.unwrap().equals_missing(&old));
    assert_eq!(cb.describe("ds").await.unwrap().version, 1);
    assert_eq!(s3.keys(&bucket, "datasets/ds/").await, old_objects);
    let a2 = Worker::start_with(s3.worker(&bucket));
    assert!(a2
        .client()
        .await
        .load("ds")
        .await
        .unwrap()
        .equals_missing(&old));
    // The next store takes version 2.
    assert_eq!(cb.store("ds", &numbers(5, 3)).await.unwrap().version, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_outage_is_unavailable_then_heals_by_itself() {
    let s3 = S3Server::start();
    let bucket = s3.bucket().await;
    let worker = Worker::start_with(s3.worker(&bucket).env("POLARWAY_S3_TIMEOUT", "1"));
    let client = DistributedClient::builder(worker.url())
        .retries(0, Duration::ZERO)
        .connect()
        .await
        .unwrap();
    let df = numbers(1000, 1);
    client.store("kept", &df).await.unwrap();

    s3.pause();
    assert_eq!(code_of(client.store("other", &df).await), Code::Unavailable);
    assert_eq!(code_of(client.load("kept").await), Code::Unavailable);
    assert_eq!(code_of(client.list("").await), Code::Unavailable);
    assert_eq!(
        client.health_check().await.unwrap(),
        "OK",
        "the worker itself keeps serving"
    );

    s3.resume();
    // It recovers without a restart, and nothing was lost or half-written.
    let mut healed = false;
    for _ in 0..100 {
        if client.list("").await.is_ok() {
            healed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healed, "the worker did not recover after S3 came back");
    assert!(client.load("kept").await.unwrap().equals_missing(&df));
    let names: Vec<String> = client
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(
        names,
        ["kept"],
        "a store that failed during the outage became visible"
    );
    assert_eq!(client.store("other", &df).await.unwrap().version, 1);
}

/// A store that ignores If-None-Match would let two workers commit the same version: refuse it.
/// The S3 client sends a write again when its connection drops before the answer. A store whose
/// manifest write succeeded but whose answer was lost is one version, whole: not stored twice,
/// not refused with its data deleted.
#[tokio::test(flavor = "multi_thread")]
async fn a_store_whose_answer_was_lost_is_committed_once() {
    let s3 = S3Server::start();
    let bucket = s3.bucket().await;
    let dropper = AnswerDropper::start(&s3.endpoint).await;
    let worker = Worker::start_with(
        s3.worker(&bucket)
            .env("POLARWAY_S3_ENDPOINT", dropper.endpoint.clone())
            .env("POLARWAY_RETAIN_VERSIONS", "100"),
    );
    let client = worker.client().await;

    let first = numbers(1000, 1);
    dropper.drop_next(1);
    assert_eq!(client.store("lost", &first).await.unwrap().version, 1);
    assert_eq!(
        dropper.dropped(),
        1,
        "the manifest's answer was not dropped"
    );

    let second = numbers(1000, 2);
    dropper.drop_next(1);
    let stored = client
        .store_if("lost", &second, Condition::IfVersion(1))
        .await
        .expect("the conditional store whose answer was lost");
    assert_eq!(stored.version, 2);
    assert_eq!(dropper.dropped(), 2);

    assert_eq!(client.describe("lost").await.unwrap().version, 2);
    for (version, df) in [(1, &first), (2, &second)] {
        let back = client
            .load_with("lost", &[], Some(version))
            .await
            .unwrap_or_else(|e| panic!("version {version}: {e}"));
        assert!(
            back.equals_missing(df),
            "version {version} holds other rows"
        );
    }
    assert_eq!(
        code_of(client.load_with("lost", &[], Some(3)).await),
        Code::NotFound,
        "a third version exists: a write was committed twice"
    );
}

/// On a server that checks every request's signature (moto with IAM authentication): the store,
/// load, query, describe, list and delete requests of a worker are all signed right, and a worker
/// with a wrong secret refuses to start with a message that names the credentials.
#[tokio::test(flavor = "multi_thread")]
async fn requests_pass_a_server_that_checks_signatures() {
    let (s3, key, secret) = S3Server::start_verifying("polarway-signed");
    let signed = |secret: &str| {
        s3.worker("polarway-signed")
            .env("AWS_ACCESS_KEY_ID", key.clone())
            .env("AWS_SECRET_ACCESS_KEY", secret.to_string())
    };
    let worker = Worker::start_with(signed(&secret));
    let client = worker.client().await;
    let small = numbers(1000, 1);
    assert_eq!(client.store("small", &small).await.unwrap().version, 1);
    // Over one 8 MiB part: the multipart requests are signed too.
    let big = numbers(3_000_000, 2);
    assert_eq!(client.store("big", &big).await.unwrap().version, 1);
    assert_eq!(
        client
            .store_if("small", &numbers(10, 3), Condition::IfVersion(1))
            .await
            .unwrap()
            .version,
        2
    );
    assert!(client.load("big").await.unwrap().equals_missing(&big));
    assert_eq!(client.list("").await.unwrap().len(), 2);
    let sum = client.query("SELECT count(*) AS n FROM big").await.unwrap();
    assert_eq!(
        sum.column("n")
            .unwrap()
            .get(0)
            .unwrap()
            .try_extract::<i64>()
            .unwrap(),
        3_000_000
    );
    client.delete("small").await.unwrap();
    assert_eq!(code_of(client.describe("small").await), Code::NotFound);

    let mut cmd = std::process::Command::new(crate::common::BIN);
    cmd.args(["server", "--grpc-port", "0", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path());
    for (k, v) in signed("not-the-secret").env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(
        !out.status.success(),
        "a worker started with a wrong secret"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused this worker's credentials") && err.contains("AWS_SECRET_ACCESS_KEY"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_refuses_a_missing_bucket_with_a_clear_error() {
    let s3 = S3Server::start();
    let mut cmd = std::process::Command::new(crate::common::BIN);
    cmd.args(["server", "--grpc-port", "0", "--data-dir"])
        .arg(tempfile::tempdir().unwrap().path());
    for (k, v) in s3.worker("no-such-bucket").env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no-such-bucket") && err.contains("POLARWAY_S3_BUCKET"),
        "{err}"
    );
}

/// The user guide's multi-worker setup: three workers behind nginx round robin, on both shared
/// stores. Every worker serves, and every answer is the same.
async fn three_workers_behind_nginx(cfg: impl Fn() -> WorkerConfig) {
    let workers: Vec<Worker> = (0..3).map(|_| Worker::start_with(cfg())).collect();
    let nginx = Nginx::start(&workers.iter().collect::<Vec<_>>());
    let client = DistributedClient::connect(nginx.url()).await.unwrap();
    let frames: Vec<DataFrame> = (0..4).map(|i| numbers(5000 + i, i)).collect();
    for (i, df) in frames.iter().enumerate() {
        client.store(&format!("trades_{i}"), df).await.unwrap();
    }
    // A large store streams through nginx too.
    let big = numbers(1_000_000, 9);
    client.store("big", &big).await.unwrap();
    for round in 0..6 {
        for (i, df) in frames.iter().enumerate() {
            assert!(
                client
                    .load(&format!("trades_{i}"))
                    .await
                    .unwrap()
                    .equals_missing(df),
                "round {round} trades_{i}"
            );
        }
        assert_eq!(client.list("trades_").await.unwrap().len(), 4);
        let n = client
            .query("SELECT COUNT(*)::BIGINT AS n FROM trades_2")
            .await
            .unwrap();
        assert_eq!(n.column("n").unwrap().i64().unwrap().get(0), Some(5002));
    }
    assert!(client.load("big").await.unwrap().equals_missing(&big));
    // A new version stored through nginx is what every worker serves next.
    let v2 = numbers(7, 42);
    client.store("trades_0", &v2).await.unwrap();
    for w in &workers {
        assert!(
            w.client()
                .await
                .load("trades_0")
                .await
                .unwrap()
                .equals_missing(&v2),
            "worker {}",
            w.addr()
        );
    }
    // Round robin reached every worker.
    for w in &workers {
        let s = w.client().await.cache_stats().await.unwrap();
        assert!(
            s.hits + s.misses >= 4,
            "worker {} served no loads through nginx: {s:?}",
            w.addr()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_on_a_shared_directory_behind_nginx() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    three_workers_behind_nginx(|| {
        WorkerConfig::default()
            .env("POLARWAY_HANDLE_STORE", "external")
            .env("POLARWAY_STATE_DIR", state.display().to_string())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_on_s3_behind_nginx() {
    let s3 = S3Server::start();
    let bucket = s3.bucket().await;
    three_workers_behind_nginx(|| s3.worker(&bucket)).await;
}
