//! The server's memory stays bounded while it stores and streams a dataset several times larger
//! than its cache. Prints the figures; asserts a generous bound.

mod common;

use common::{Worker, WorkerConfig};
use futures::StreamExt;
use polars::prelude::*;

#[tokio::test(flavor = "multi_thread")]
async fn load_stream_memory_is_bounded() {
    // Cache: 64 MiB. Dataset: 16M rows x 3 int64 columns = 384 MiB decoded, 6x the cache.
    let worker = Worker::start_with(WorkerConfig::default().arg("--cache-size").arg("0.0625"));
    let client = worker.client().await;
    let n = 16_000_000i64;
    let dataset_bytes = (n * 8 * 3) as u64;
    {
        let df = DataFrame::new_infer_height(vec![
            Series::new("a".into(), (0..n).collect::<Vec<_>>()).into_column(),
            Series::new("b".into(), (0..n).map(|i| i.wrapping_mul(2_654_435_761)).collect::<Vec<_>>()).into_column(),
            Series::new("c".into(), (0..n).map(|i| i % 1000).collect::<Vec<_>>()).into_column(),
        ])
        .unwrap();
        client.store("huge_dataset", &df).await.unwrap();
    }
    let after_store = worker.peak_rss();
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
    let peak = worker.peak_rss();
    let stats = client.cache_stats().await.unwrap();
    println!(
        "server peak RSS: after store {} MiB, after 2 streamed loads {} MiB; dataset {} MiB decoded; cache {} MiB (holding {} bytes)",
        after_store >> 20,
        peak >> 20,
        dataset_bytes >> 20,
        stats.capacity >> 20,
        stats.bytes
    );
    assert!(peak < dataset_bytes / 2, "peak RSS {peak} is not bounded well below the dataset size {dataset_bytes}");
    assert_eq!(stats.entries, 0, "a dataset larger than the cache's admission limit must not be cached");
}
