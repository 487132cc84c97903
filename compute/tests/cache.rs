//! The read-through cache: warm loads are served from memory, the bound holds, counters add up.

use std::time::Duration;

use crate::common::{free_port, Worker, WorkerConfig};
use polars::prelude::*;
use polarway::DistributedClient;

#[tokio::test(flavor = "multi_thread")]
async fn warm_loads_do_not_read_the_stored_object() {
    let worker = Worker::start();
    let client = worker.client().await;
    let df = df! { "a" => &[1i64, 2, 3], "b" => &["x", "y", "z"] }.unwrap();
    client.store("hot", &df).await.unwrap();
    let before = client.cache_stats().await.unwrap();
    assert!(client.load("hot").await.unwrap().equals_missing(&df)); // miss: read and cached

    // Take the stored Parquet object away: warm loads must not need it.
    let dir = worker.data_dir.join("state/datasets/hot");
    let data_file = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("data-")
        })
        .expect("the version's data object");
    let aside = worker.data_dir.join("aside.parquet");
    std::fs::rename(&data_file, &aside).unwrap();
    for _ in 0..3 {
        assert!(client.load("hot").await.unwrap().equals_missing(&df));
    }
    assert!(client
        .load_with("hot", &["b"], None)
        .await
        .unwrap()
        .equals_missing(&df.select(["b"]).unwrap()));
    let after = client.cache_stats().await.unwrap();
    assert_eq!(after.misses - before.misses, 1, "{after:?}");
    assert_eq!(after.hits - before.hits, 4, "{after:?}");
    assert_eq!(after.entries, 1);
    assert!(after.bytes > 0 && after.bytes <= after.capacity);
    assert!((after.hit_rate - after.hits as f64 / (after.hits + after.misses) as f64).abs() < 1e-9);
    std::fs::rename(&aside, &data_file).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cache_stays_within_its_size() {
    // 2 MiB of cache; each dataset decodes to ~400 KiB (under the 512 KiB admission limit).
    let worker = Worker::start_with(
        WorkerConfig::default()
            .arg("--cache-size")
            .arg(format!("{}", 2.0 / 1024.0)),
    );
    let client = worker.client().await;
    let frame = |salt: i64| {
        DataFrame::new_infer_height(vec![Series::new(
            "v".into(),
            (0..50_000i64).map(|i| i * salt).collect::<Vec<_>>(),
        )
        .into_column()])
        .unwrap()
    };
    for i in 0..12 {
        client.store(&format!("d{i}"), &frame(i)).await.unwrap();
    }
    for round in 0..2 {
        for i in 0..12 {
            assert!(
                client
                    .load(&format!("d{i}"))
                    .await
                    .unwrap()
                    .equals_missing(&frame(i)),
                "round {round} d{i}"
            );
        }
    }
    let stats = client.cache_stats().await.unwrap();
    assert_eq!(stats.capacity, 2 << 20);
    assert!(stats.bytes <= stats.capacity, "{stats:?}");
    assert!(stats.evictions > 0, "{stats:?}");
    assert!(stats.entries < 12, "{stats:?}");
    assert_eq!(stats.hits + stats.misses, 24);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_client_retries_until_a_late_server_is_up() {
    let port = free_port();
    let client = DistributedClient::builder(format!("http://127.0.0.1:{port}"))
        .lazy(true)
        .retries(10, Duration::from_millis(100))
        .connect()
        .await
        .unwrap();
    let starter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(800));
        Worker::start_with(WorkerConfig::default().port(port))
    });
    // The first attempts find nothing listening (UNAVAILABLE); the retries reach the server.
    assert_eq!(client.health_check().await.unwrap(), "OK");
    assert!(client.list("").await.unwrap().is_empty());
    drop(starter.join().unwrap());
    // Without retries, a call to a server that is gone fails with UNAVAILABLE.
    let no_retry = DistributedClient::builder(format!("http://127.0.0.1:{port}"))
        .lazy(true)
        .retries(0, Duration::ZERO)
        .connect()
        .await
        .unwrap();
    assert_eq!(
        no_retry.list("").await.unwrap_err().code(),
        Some(polarway::Code::Unavailable)
    );
}
