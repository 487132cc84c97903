//! SQL over stored datasets and the cold directory.

use crate::common::{code_of, Worker, WorkerConfig};
use polars::prelude::*;
use polarway::Code;
use polarway_testkit::{query_holding_the_only_slot, slot_frees};

fn trades(day: i32, prices: &[i64]) -> DataFrame {
    let symbols = ["BTC", "ETH", "SOL"];
    let n = prices.len();
    let ts: Vec<i64> = (0..n as i64)
        .map(|i| (day as i64 * 86_400 + i * 60) * 1_000_000)
        .collect();
    DataFrame::new_infer_height(vec![
        Series::new(
            "symbol".into(),
            (0..n).map(|i| symbols[i % 3]).collect::<Vec<_>>(),
        )
        .into_column(),
        Series::new("price".into(), prices).into_column(),
        Series::new("timestamp".into(), ts)
            .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
            .unwrap()
            .into_column(),
    ])
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_user_guide_query_over_cold_paths_and_tables() {
    let worker = Worker::start();
    let client = worker.client().await;
    // 2026-01-31 (before the filter) and 2026-02-03.
    client
        .store("trades_20260131", &trades(20484, &[1, 1, 1]))
        .await
        .unwrap();
    client
        .store(
            "trades_20260203",
            &trades(20487, &[50000, 3000, 100, 52000, 3100, 110]),
        )
        .await
        .unwrap();
    client
        .store("quotes_20260203", &trades(20487, &[7, 7, 7]))
        .await
        .unwrap();

    let cold = worker.data_dir.join("cold");
    let sql = format!(
        "SELECT symbol, AVG(price) as avg_price
         FROM parquet_scan('{}/trades_*.parquet')
         WHERE timestamp > '2026-02-01'
         GROUP BY symbol ORDER BY symbol",
        cold.display()
    );
    let result = client.query(&sql).await.unwrap();
    let expected =
        df! { "symbol" => &["BTC", "ETH", "SOL"], "avg_price" => &[51000.0, 3050.0, 105.0] }
            .unwrap();
    assert!(result.equals_missing(&expected), "{result:?}");

    // Datasets are tables by name, and a query result can be kept as a dataset.
    let joined = client
        .query("SELECT COUNT(*)::BIGINT AS n FROM trades_20260203 t JOIN \"quotes_20260203\" q USING (symbol)")
        .await
        .unwrap();
    assert_eq!(joined.column("n").unwrap().i64().unwrap().get(0), Some(6));
    let info = client.query_into(&sql, "avg_by_symbol").await.unwrap();
    assert_eq!((info.version, info.rows), (1, 3));
    assert!(client
        .load("avg_by_symbol")
        .await
        .unwrap()
        .equals_missing(&expected));

    // A new version shows up in the next query; a deleted dataset disappears from globs.
    client
        .store("trades_20260203", &trades(20487, &[10, 20, 30]))
        .await
        .unwrap();
    let again = client.query(&sql).await.unwrap();
    assert_eq!(
        again.column("avg_price").unwrap().f64().unwrap().get(0),
        Some(10.0)
    );
    client.delete("trades_20260203").await.unwrap();
    assert!(!cold.join("trades_20260203.parquet").exists());
    assert_eq!(client.query(&sql).await.unwrap().height(), 0);

    // Parquet files users drop into cold/ are queryable too.
    let copy_sql = format!(
        "SELECT COUNT(*)::BIGINT AS n FROM '{}/quotes_20260203.parquet'",
        cold.display()
    );
    assert_eq!(
        client
            .query(&copy_sql)
            .await
            .unwrap()
            .column("n")
            .unwrap()
            .i64()
            .unwrap()
            .get(0),
        Some(3)
    );
}

/// The user guide's query exactly as written, against a server started with `--data-dir /data`.
#[tokio::test(flavor = "multi_thread")]
async fn the_user_guide_query_as_written_with_data_dir_slash_data() {
    let worker = Worker::start_with(WorkerConfig::default().at_slash_data());
    let client = worker.client().await;
    client
        .store("trades_20260131", &trades(20484, &[1, 1, 1]))
        .await
        .unwrap();
    client
        .store("trades_20260203", &trades(20487, &[50000, 3000, 100]))
        .await
        .unwrap();
    let result = client
        .query(
            "SELECT symbol, AVG(price) as avg_price
         FROM parquet_scan('/data/cold/trades_*.parquet')
         WHERE timestamp > '2026-02-01'
         GROUP BY symbol",
        )
        .await
        .unwrap()
        .sort(["symbol"], Default::default())
        .unwrap();
    let expected =
        df! { "symbol" => &["BTC", "ETH", "SOL"], "avg_price" => &[50000.0, 3000.0, 100.0] }
            .unwrap();
    assert!(result.equals_missing(&expected), "{result:?}");
    // The files really are in the test's own directory, seen by the server as /data.
    assert!(worker
        .data_dir
        .join("cold/trades_20260203.parquet")
        .exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn results_stream_and_empty_results_keep_their_schema() {
    let worker = Worker::start();
    let client = worker.client().await;
    let big = client
        .query("SELECT i, i * 2 AS j, 'x' || i::VARCHAR AS s FROM range(1000000) t(i)")
        .await
        .unwrap();
    assert_eq!(big.height(), 1_000_000);
    assert_eq!(
        big.column("j").unwrap().i64().unwrap().get(999_999),
        Some(1_999_998)
    );
    let empty = client
        .query("SELECT 1::INTEGER AS a, 'x' AS b WHERE false")
        .await
        .unwrap();
    assert_eq!(empty.height(), 0);
    assert_eq!(empty.get_column_names(), ["a", "b"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn per_query_timeout_and_memory_limit() {
    let impatient = Worker::start_with(
        WorkerConfig::default()
            .arg("--query-timeout")
            .arg("1")
            .arg("--query-threads")
            .arg("1"),
    );
    let client = impatient.client().await;
    let slow = "SELECT COUNT(*) FROM range(100000000000) a";
    assert_eq!(code_of(client.query(slow).await), Code::DeadlineExceeded);
    assert_eq!(client.query("SELECT 42 AS x").await.unwrap().height(), 1);

    // A generous time limit, so that only the memory limit can stop this one however slow the
    // machine: 50 million int64 in one list need about 400 MB.
    let frugal = Worker::start_with(
        WorkerConfig::default()
            .arg("--query-timeout")
            .arg("600")
            .arg("--query-memory-limit")
            .arg("64MB")
            .arg("--query-threads")
            .arg("1"),
    );
    let client = frugal.client().await;
    let hungry = "SELECT list(i) FROM range(50000000) t(i)";
    assert_eq!(code_of(client.query(hungry).await), Code::ResourceExhausted);
    assert_eq!(client.query("SELECT 42 AS x").await.unwrap().height(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_stops_when_its_caller_gives_up() {
    // One request at a time: while a query runs, every other call gets RESOURCE_EXHAUSTED.
    let worker = Worker::start_with(
        WorkerConfig::default()
            .arg("--max-concurrent-requests")
            .arg("1")
            .arg("--query-timeout")
            .arg("120"),
    );
    let slow = "SELECT COUNT(*) FROM range(100000000000) a";

    // The caller's own deadline (grpc-timeout) bounds the query.
    let impatient = polarway::DistributedClient::builder(worker.url())
        .timeout(std::time::Duration::from_secs(1))
        .retries(0, Default::default())
        .connect()
        .await
        .unwrap();
    assert_eq!(code_of(impatient.query(slow).await), Code::DeadlineExceeded);

    // A caller that goes away (drops the call) stops the query too. First the stopped query's
    // slot comes free, then the abandoned query is seen holding it, so that the test cannot pass
    // by the second query being turned away.
    let client = worker.client().await;
    assert!(
        slot_frees(&client).await,
        "the query stopped at its deadline kept its slot"
    );
    let abandoned = query_holding_the_only_slot(&client, &client, slow).await;
    abandoned.abort();
    assert!(
        slot_frees(&client).await,
        "the abandoned query kept running (its slot was never freed)"
    );
}
