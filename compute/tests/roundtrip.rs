//! Round trips through the real server: every Arrow type Polars produces, exactly.

use crate::common::Worker;
use futures::StreamExt;
use polars::prelude::*;

fn opt<T>(i: usize, v: T) -> Option<T> {
    (i % 5 != 3).then_some(v)
}

/// A frame with every data type Polars produces, nulls in every column.
fn wide_frame(n: usize) -> DataFrame {
    let ints: Vec<Option<i64>> = (0..n)
        .map(|i| opt(i, i as i64 * 1_000_003 - 7_000_000))
        .collect();
    let int_series = Series::new("x".into(), &ints);
    let cast = |name: &str, dt: DataType| {
        int_series
            .cast(&dt)
            .unwrap()
            .with_name(name.into())
            .into_column()
    };
    let strings: Vec<Option<String>> = (0..n)
        .map(|i| {
            opt(
                i,
                match i % 4 {
                    0 => String::new(),
                    1 => format!("ü-{i}-日本"),
                    _ => format!("s{i}"),
                },
            )
        })
        .collect();
    let lists: Vec<Option<Series>> = (0..n)
        .map(|i| {
            opt(
                i,
                Series::new(
                    "".into(),
                    (0..(i % 4) as i64)
                        .map(|k| if k == 1 { None } else { Some(k * i as i64) })
                        .collect::<Vec<_>>(),
                ),
            )
        })
        .collect();
    let list_strs: Vec<Option<Series>> = (0..n)
        .map(|i| opt(i, Series::new("".into(), vec![format!("a{i}"); i % 3])))
        .collect();
    let struct_col = StructChunked::from_columns(
        "struct".into(),
        n,
        &[
            Series::new("a".into(), &ints).into_column(),
            Series::new("b".into(), &strings).into_column(),
        ],
    )
    .unwrap()
    .into_series()
    .into_column();
    let cats: Vec<Option<&str>> = (0..n)
        .map(|i| opt(i, ["red", "green", "blue"][i % 3]))
        .collect();
    let categorical = Series::new("cat".into(), &cats)
        .cast(&DataType::from_categories(Categories::global()))
        .unwrap()
        .into_column();
    let enum_type =
        DataType::from_frozen_categories(FrozenCategories::new(["red", "green", "blue"]).unwrap());
    let enumerated = Series::new("enum".into(), &cats)
        .cast(&enum_type)
        .unwrap()
        .into_column();
    let paris = unsafe { TimeZone::new_unchecked("Europe/Paris") };
    DataFrame::new_infer_height(vec![
        cast("i8", DataType::Int8),
        cast("i16", DataType::Int16),
        cast("i32", DataType::Int32),
        Series::new("i64".into(), &ints).into_column(),
        cast("u8", DataType::UInt8),
        cast("u16", DataType::UInt16),
        cast("u32", DataType::UInt32),
        cast("u64", DataType::UInt64),
        Series::new(
            "f32".into(),
            (0..n).map(|i| opt(i, i as f32 / 3.0)).collect::<Vec<_>>(),
        )
        .into_column(),
        Series::new(
            "f64".into(),
            (0..n)
                .map(|i| {
                    opt(
                        i,
                        if i == 1 {
                            f64::INFINITY
                        } else {
                            i as f64 * -0.125
                        },
                    )
                })
                .collect::<Vec<_>>(),
        )
        .into_column(),
        Series::new(
            "bool".into(),
            (0..n).map(|i| opt(i, i % 2 == 0)).collect::<Vec<_>>(),
        )
        .into_column(),
        Series::new("str".into(), &strings).into_column(),
        Series::new(
            "bin".into(),
            (0..n)
                .map(|i| opt(i, vec![i as u8, 0, 255]))
                .collect::<Vec<_>>(),
        )
        .into_column(),
        cast("date", DataType::Date),
        cast(
            "dt_utc_us",
            DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)),
        ),
        cast(
            "dt_paris_ns",
            DataType::Datetime(TimeUnit::Nanoseconds, Some(paris)),
        ),
        cast(
            "dt_naive_ms",
            DataType::Datetime(TimeUnit::Milliseconds, None),
        ),
        cast("dur_us", DataType::Duration(TimeUnit::Microseconds)),
        cast("dur_ns", DataType::Duration(TimeUnit::Nanoseconds)),
        Series::new(
            "time".into(),
            (0..n)
                .map(|i| opt(i, (i as i64 % 86_400) * 1_000_000_000))
                .collect::<Vec<_>>(),
        )
        .cast(&DataType::Time)
        .unwrap()
        .into_column(),
        cast("decimal", DataType::Decimal(18, 3)),
        Series::new("list_i64".into(), lists).into_column(),
        Series::new("list_str".into(), list_strs).into_column(),
        struct_col,
        categorical,
        enumerated,
        Series::new_null("null".into(), n).into_column(),
    ])
    .unwrap()
}

fn assert_same(expected: &DataFrame, got: &DataFrame) {
    assert_eq!(expected.schema(), got.schema(), "schemas differ");
    assert_eq!(expected.height(), got.height(), "row counts differ");
    for (e, g) in expected.columns().iter().zip(got.columns()) {
        assert!(
            e.equals_missing(g),
            "column {} differs:\nexpected {e:?}\ngot {g:?}",
            e.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_polars_type_round_trips_exactly() {
    let worker = Worker::start();
    let client = worker.client().await;
    let df = wide_frame(2_000);
    let info = client.store("wide", &df).await.unwrap();
    assert_eq!(info.version, 1);
    assert_eq!(info.rows, 2_000);
    assert_eq!(info.columns.len(), df.width());
    // Cold (from Parquet) and warm (from the cache) loads.
    assert_same(&df, &client.load("wide").await.unwrap());
    assert_same(&df, &client.load("wide").await.unwrap());
    let stats = client.cache_stats().await.unwrap();
    assert!(stats.hits >= 1 && stats.misses >= 1, "{stats:?}");
    // Streamed.
    let mut stream = client.load_stream("wide").await.unwrap();
    let mut parts = Vec::new();
    while let Some(part) = stream.next().await {
        parts.push(part.unwrap());
    }
    let mut joined = parts.remove(0);
    for p in parts {
        joined.vstack_mut_owned(p).unwrap();
    }
    assert_same(&df, &joined);
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_frames_and_projections_and_versions() {
    let worker = Worker::start();
    let client = worker.client().await;
    let empty = wide_frame(0);
    client.store("empty", &empty).await.unwrap();
    assert_same(&empty, &client.load("empty").await.unwrap());

    let v1 =
        df! { "a" => &[1i64, 2, 3], "b" => &["x", "y", "z"], "c" => &[true, false, true] }.unwrap();
    let v2 = df! { "a" => &[10i64], "b" => &["only"], "c" => &[false] }.unwrap();
    assert_eq!(client.store("ver", &v1).await.unwrap().version, 1);
    assert_eq!(client.store("ver", &v2).await.unwrap().version, 2);
    assert_same(&v2, &client.load("ver").await.unwrap());
    assert_same(&v1, &client.load_with("ver", &[], Some(1)).await.unwrap());
    let projected = client.load_with("ver", &["c", "a"], Some(1)).await.unwrap();
    assert_same(&v1.select(["c", "a"]).unwrap(), &projected);

    let described = client.describe("ver").await.unwrap();
    assert_eq!((described.version, described.rows), (2, 1));
    let names: Vec<String> = described.columns.iter().map(|c| c.name.clone()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    let listed = client.list("").await.unwrap();
    assert_eq!(
        listed.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["empty", "ver"]
    );
    assert_eq!(client.list("ve").await.unwrap().len(), 1);

    assert_eq!(client.delete("ver").await.unwrap(), 2);
    assert_eq!(
        client.load("ver").await.unwrap_err().code(),
        Some(polarway::Code::NotFound)
    );
    assert_eq!(client.list("").await.unwrap().len(), 1);
    // A name can be stored again after a delete; versions keep counting.
    assert_eq!(client.store("ver", &v1).await.unwrap().version, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn ten_million_rows_in_one_column() {
    let worker = Worker::start();
    let client = worker.client().await;
    let n = 10_000_000i64;
    let df = DataFrame::new_infer_height(vec![Series::new(
        "v".into(),
        (0..n).map(|i| i * 7 - 3).collect::<Vec<_>>(),
    )
    .into_column()])
    .unwrap();
    client.store("big", &df).await.unwrap();
    let back = client.load("big").await.unwrap();
    assert_same(&df, &back);
}

#[tokio::test(flavor = "multi_thread")]
async fn store_batch_commits_all() {
    let worker = Worker::start();
    let client = worker.client().await;
    let a = df! { "x" => &[1i32, 2] }.unwrap();
    let b = df! { "y" => &["p", "q", "r"] }.unwrap();
    let infos = client
        .store_batch([("trades_20260203", &a), ("quotes_20260203", &b)])
        .await
        .unwrap();
    assert_eq!(
        infos
            .iter()
            .map(|i| (i.name.as_str(), i.rows))
            .collect::<Vec<_>>(),
        [("trades_20260203", 2), ("quotes_20260203", 3)]
    );
    let (ta, tb) = tokio::try_join!(
        client.load("trades_20260203"),
        client.load("quotes_20260203")
    )
    .unwrap();
    assert_same(&a, &ta);
    assert_same(&b, &tb);
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_handle_store() {
    let worker = Worker::start_with(
        crate::common::WorkerConfig::default().env("POLARWAY_HANDLE_STORE", "memory"),
    );
    let client = worker.client().await;
    let health = client.health_check().await.unwrap();
    assert_eq!(health, "OK");
    let df = wide_frame(500);
    client.store("m", &df).await.unwrap();
    assert_same(&df, &client.load("m").await.unwrap());
    let a = df! { "x" => &[1i64, 2, 3] }.unwrap();
    client
        .store_batch([("m_a", &a), ("m_b", &a)])
        .await
        .unwrap();
    let sum = client
        .query("SELECT SUM(x)::BIGINT AS s FROM m_a")
        .await
        .unwrap();
    assert_eq!(sum.column("s").unwrap().i64().unwrap().get(0), Some(6));
    let glob = format!(
        "SELECT COUNT(*)::BIGINT AS n FROM '{}/m_*.parquet'",
        worker.data_dir.join("cold").display()
    );
    assert_eq!(
        client
            .query(&glob)
            .await
            .unwrap()
            .column("n")
            .unwrap()
            .i64()
            .unwrap()
            .get(0),
        Some(6)
    );
    assert_eq!(client.list("m").await.unwrap().len(), 3);
    // Nothing of the memory store lands in a state directory.
    assert!(!worker.data_dir.join("state").exists());
}

/// Arrow metadata (schema-level and per field) comes back as it was sent: pandas and other
/// writers keep their index and dtype descriptions there.
#[tokio::test(flavor = "multi_thread")]
async fn arrow_schema_and_field_metadata_round_trip() {
    use std::collections::HashMap;
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType as ArrowType, Field, Schema};

    let worker = Worker::start();
    let mut raw = crate::common::raw(&worker).await;
    let field_md = HashMap::from([("unit".to_string(), "USD".to_string())]);
    let schema_md = HashMap::from([(
        "pandas".to_string(),
        r#"{"index_columns": ["a"]}"#.to_string(),
    )]);
    let schema = Arc::new(Schema::new_with_metadata(
        vec![
            Field::new("a", ArrowType::Int64, true).with_metadata(field_md),
            Field::new("b", ArrowType::Int64, false),
        ],
        schema_md,
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![Some(1), None])),
            Arc::new(Int64Array::from(vec![3, 4])),
        ],
    )
    .unwrap();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &schema).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    raw.store(futures::stream::iter(crate::common::store_messages(
        "meta",
        vec![w.into_inner().unwrap()],
    )))
    .await
    .unwrap();

    // Twice: the first load reads Parquet, the second is served from the cache.
    for _ in 0..2 {
        let mut stream = raw
            .load(polarway_proto::v1::LoadRequest {
                name: "meta".into(),
                columns: vec![],
                version: None,
            })
            .await
            .unwrap()
            .into_inner();
        let mut bytes = Vec::new();
        while let Some(msg) = stream.message().await.unwrap() {
            bytes.extend_from_slice(&msg.ipc);
        }
        let reader =
            arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
        assert_eq!(reader.schema(), schema, "schema or metadata changed");
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        assert_eq!(batches, vec![batch.clone()]);
    }
}
