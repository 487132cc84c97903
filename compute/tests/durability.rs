//! Durability of the external store: restarts, crashes mid-store, concurrent writers.

use std::time::Duration;

use crate::common::{code_of, Worker, WorkerConfig};
use polars::prelude::*;
use polarway::{Code, Condition};

fn numbers(n: i64, salt: i64) -> DataFrame {
    DataFrame::new_infer_height(vec![
        Series::new("v".into(), (0..n).map(|i| i ^ salt).collect::<Vec<_>>()).into_column(),
        Series::new(
            "s".into(),
            (0..n)
                .map(|i| format!("row-{i}-{salt}"))
                .collect::<Vec<_>>(),
        )
        .into_column(),
    ])
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn survives_restart_and_drains_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let df = numbers(300_000, 1);
    {
        let mut worker = Worker::start_with(WorkerConfig::default().data_dir(&data));
        let client = worker.client().await;
        client.store("kept", &df).await.unwrap();
        // SIGTERM while a load streams: the stream still completes.
        let mut stream = client.load_stream("kept").await.unwrap();
        let first = futures::StreamExt::next(&mut stream)
            .await
            .unwrap()
            .unwrap();
        let pid = worker.pid() as i32;
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let mut rows = first.height();
        while let Some(part) = futures::StreamExt::next(&mut stream).await {
            rows += part.unwrap().height();
        }
        assert_eq!(rows, df.height());
        assert!(worker.terminate(), "the worker did not exit after SIGTERM");
    }
    let worker = Worker::start_with(WorkerConfig::default().data_dir(&data));
    let client = worker.client().await;
    assert!(client.load("kept").await.unwrap().equals_missing(&df));
    assert_eq!(client.describe("kept").await.unwrap().version, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_during_a_large_store_leaves_the_old_version() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let old = numbers(1000, 7);
    let mut worker = Worker::start_with(WorkerConfig::default().data_dir(&data));
    let client = worker.client().await;
    client.store("ds", &old).await.unwrap();

    let big = numbers(6_000_000, 9);
    let writer = client.clone();
    let upload = tokio::spawn(async move { writer.store("ds", &big).await });
    // Wait (bounded) until the server is writing the new version's staging file, then kill it.
    let staging = data.join("state/tmp");
    let mut seen = false;
    for _ in 0..600 {
        let writing = std::fs::read_dir(&staging)
            .map(|d| {
                d.flatten()
                    .any(|e| e.metadata().map(|m| m.len() > 0).unwrap_or(false))
            })
            .unwrap_or(false);
        if writing {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen, "the store never started writing");
    worker.kill9();
    assert!(
        upload.await.unwrap().is_err(),
        "the interrupted store must fail"
    );

    let worker = Worker::start_with(WorkerConfig::default().data_dir(&data));
    let client = worker.client().await;
    assert!(client.load("ds").await.unwrap().equals_missing(&old));
    let info = client.describe("ds").await.unwrap();
    assert_eq!((info.version, info.rows), (1, 1000));
    assert_eq!(client.list("").await.unwrap().len(), 1);
    // No trace of the partial version: no staging files, only version 1's objects.
    let leftovers: Vec<_> = std::fs::read_dir(&staging)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(leftovers.is_empty(), "staging files left: {leftovers:?}");
    let objects: Vec<String> = std::fs::read_dir(data.join("state/datasets/ds"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        objects.len(),
        2,
        "expected one manifest and one data file: {objects:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_conditional_stores_on_two_workers_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    let cfg = || {
        WorkerConfig::default()
            .data_dir(&shared)
            .env("POLARWAY_HANDLE_STORE", "external")
    };
    let a = Worker::start_with(cfg());
    let b = Worker::start_with(cfg());
    let (ca, cb) = (a.client().await, b.client().await);
    for round in 0..20 {
        let name = format!("race_{round}");
        let (da, db) = (numbers(5000, 1), numbers(5000, 2));
        let (ra, rb) = tokio::join!(
            ca.store_if(&name, &da, Condition::IfAbsent),
            cb.store_if(&name, &db, Condition::IfAbsent)
        );
        let winners = [ra.is_ok(), rb.is_ok()].iter().filter(|w| **w).count();
        assert_eq!(winners, 1, "round {round}: {ra:?} / {rb:?}");
        let a_won = ra.is_ok();
        let loser = if a_won { rb } else { ra };
        assert_eq!(code_of(loser), Code::AlreadyExists);
        let stored = cb.load(&name).await.unwrap();
        assert!(
            stored.equals_missing(if a_won { &da } else { &db }),
            "round {round}: the winner's data was not kept"
        );

        // Compare-and-swap from version 1, on both workers at once: one wins, one gets ABORTED.
        let (na, nb) = (numbers(10, 3), numbers(10, 4));
        let (ra, rb) = tokio::join!(
            ca.store_if(&name, &na, Condition::IfVersion(1)),
            cb.store_if(&name, &nb, Condition::IfVersion(1))
        );
        assert_eq!(
            [ra.is_ok(), rb.is_ok()].iter().filter(|w| **w).count(),
            1,
            "round {round}"
        );
        let loser = if ra.is_ok() { rb } else { ra };
        assert_eq!(code_of(loser), Code::Aborted);
        // Read-after-write across workers.
        assert_eq!(ca.describe(&name).await.unwrap().version, 2);
        assert_eq!(cb.load(&name).await.unwrap().height(), 10);
    }
}

/// Numbers that do not compress: `n` rows of 8 bytes each stay about 8n bytes in Parquet.
fn noise(n: usize, seed: u64) -> DataFrame {
    let mut x = seed | 1;
    let v: Vec<i64> = (0..n)
        .map(|_| {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as i64
        })
        .collect();
    df! { "v" => v }.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_refuses_the_store_and_keeps_what_was_stored() {
    // A 24 MiB data directory: a small dataset fits, 40 MiB of incompressible numbers do not.
    let worker = Worker::start_with(WorkerConfig::default().tmpfs(24 << 20));
    let client = worker.client().await;
    let small = numbers(1_000, 7);
    client.store("kept", &small).await.unwrap();

    let too_big = noise(5_000_000, 1);
    let err = client.store("too_big", &too_big).await.unwrap_err();
    assert_eq!(err.code(), Some(Code::ResourceExhausted), "{err}");
    assert!(err.to_string().contains("disk is full"), "{err}");

    // Nothing of the refused store remains, what was stored before is intact, and the worker
    // keeps serving.
    assert_eq!(code_of(client.load("too_big").await), Code::NotFound);
    assert!(client.load("kept").await.unwrap().equals_missing(&small));
    let staging = worker.data_dir.join("state/tmp");
    assert!(
        worker.list_dir(&staging).is_empty(),
        "staging files left after the refused store: {:?}",
        worker.list_dir(&staging)
    );
    // The space is back: a dataset that needs most of what is left fits now.
    let fits = noise(1_500_000, 2);
    client.store("fits", &fits).await.unwrap();
    assert!(client.load("fits").await.unwrap().equals_missing(&fits));
    assert_eq!(client.health_check().await.unwrap(), "OK");
}
