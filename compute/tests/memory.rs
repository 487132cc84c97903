//! The server's memory stays bounded while it stores and streams a dataset several times larger
//! than its cache. Prints the figures; asserts a generous bound.

use crate::common::{Worker, WorkerConfig};
use futures::StreamExt;
use polars::prelude::*;

#[tokio::test(flavor = "multi_thread")]
async fn store_and_load_stream_memory_is_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Cache: 64 MiB. Dataset: 24M rows x 3 int64 columns = 549 MiB decoded, 9x the cache. (The
    // store's peak varies by some 40 MiB from run to run with how much the HTTP/2 windows hold,
    // so the dataset is large enough for a bound that does not depend on that.)
    let cfg = || {
        WorkerConfig::default()
            .data_dir(&data)
            .arg("--cache-size")
            .arg("0.0625")
    };
    let n = 24_000_000i64;
    let dataset_bytes = (n * 8 * 3) as u64;

    let mut worker = Worker::start_with(cfg());
    let client = worker.client().await;
    let idle = worker.peak_rss();
    {
        let df = DataFrame::new_infer_height(vec![
            Series::new("a".into(), (0..n).collect::<Vec<_>>()).into_column(),
            Series::new(
                "b".into(),
                (0..n)
                    .map(|i| i.wrapping_mul(2_654_435_761))
                    .collect::<Vec<_>>(),
            )
            .into_column(),
            Series::new("c".into(), (0..n).map(|i| i % 1000).collect::<Vec<_>>()).into_column(),
        ])
        .unwrap();
        client.store("huge_dataset", &df).await.unwrap();
    }
    let store_peak = worker.peak_rss();
    assert!(worker.terminate());

    // A fresh process, so its peak is the loads' alone.
    let worker = Worker::start_with(cfg());
    let client = worker.client().await;
    for _ in 0..2 {
        let mut stream = client.load_stream("huge_dataset").await.unwrap();
        let (mut rows, mut sum) = (0usize, 0i64);
        while let Some(batch) = stream.next().await {
            let batch = batch.unwrap();
            rows += batch.height();
            sum = sum.wrapping_add(batch.column("a").unwrap().i64().unwrap().sum().unwrap_or(0));
        }
        assert_eq!(rows, n as usize);
        assert_eq!(sum, n * (n - 1) / 2);
    }
    let load_peak = worker.peak_rss();
    let stats = client.cache_stats().await.unwrap();
    println!(
        "server peak RSS: idle {} MiB, storing {} MiB, streaming it twice {} MiB; dataset {} MiB decoded; cache {} MiB",
        idle >> 20,
        store_peak >> 20,
        load_peak >> 20,
        dataset_bytes >> 20,
        stats.capacity >> 20,
    );
    assert!(
        load_peak < dataset_bytes / 3,
        "load peak RSS {load_peak} not bounded well below the dataset size {dataset_bytes}"
    );
    assert!(
        store_peak < dataset_bytes / 2,
        "store peak RSS {store_peak} not bounded well below the dataset size {dataset_bytes}"
    );
    assert_eq!(
        stats.entries, 0,
        "a dataset larger than the cache's admission limit must not be cached"
    );
}
