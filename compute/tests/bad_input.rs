//! Bad input gets its documented status, the server keeps serving, and nothing stored changes.

use crate::common::{
    code_of, ipc_stream, ipc_stream_of, numbered_batch, raw, store_messages, Worker, WorkerConfig,
};
use polars::prelude::*;
use polarway::{Code, Condition, DistributedClient};

async fn assert_intact(client: &DistributedClient, expected: &DataFrame) {
    let got = client
        .load("keep")
        .await
        .expect("the stored dataset is still loadable");
    assert!(got.equals_missing(expected), "stored data changed");
    assert_eq!(
        client.describe("keep").await.unwrap().version,
        1,
        "a bad request created a version"
    );
    assert_eq!(client.health_check().await.unwrap(), "OK");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_get_clear_errors_and_change_nothing() {
    let worker = Worker::start();
    let client = worker.client().await;
    let keep = df! { "a" => &[1i64, 2, 3] }.unwrap();
    client.store("keep", &keep).await.unwrap();

    // Invalid names, on every call that takes one.
    let long = "n".repeat(300);
    for name in ["../x", "", long.as_str(), "/abs", ".hidden", "a/b", "x y"] {
        assert_eq!(
            code_of(client.store(name, &keep).await),
            Code::InvalidArgument,
            "store {name:?}"
        );
        assert_eq!(
            code_of(client.load(name).await),
            Code::InvalidArgument,
            "load {name:?}"
        );
        assert_eq!(
            code_of(client.describe(name).await),
            Code::InvalidArgument,
            "describe {name:?}"
        );
        assert_eq!(
            code_of(client.delete(name).await),
            Code::InvalidArgument,
            "delete {name:?}"
        );
    }
    assert_eq!(
        code_of(client.query_into("SELECT 1", "../evil").await),
        Code::InvalidArgument
    );

    // Unknown dataset, unknown version, unknown column.
    assert_eq!(code_of(client.load("nope").await), Code::NotFound);
    assert_eq!(code_of(client.describe("nope").await), Code::NotFound);
    assert_eq!(code_of(client.delete("nope").await), Code::NotFound);
    assert_eq!(
        code_of(client.load_with("keep", &[], Some(7)).await),
        Code::NotFound
    );
    assert_eq!(
        code_of(client.load_with("keep", &["zz"], None).await),
        Code::InvalidArgument
    );

    // Failed conditions.
    assert_eq!(
        code_of(client.store_if("keep", &keep, Condition::IfAbsent).await),
        Code::AlreadyExists
    );
    assert_eq!(
        code_of(
            client
                .store_if("keep", &keep, Condition::IfVersion(5))
                .await
        ),
        Code::Aborted
    );
    assert_eq!(
        code_of(
            client
                .store_if("fresh", &keep, Condition::IfVersion(1))
                .await
        ),
        Code::Aborted
    );

    // Bad SQL.
    assert_eq!(
        code_of(client.query("SELEC nonsense").await),
        Code::InvalidArgument
    );
    assert_eq!(
        code_of(client.query("SELECT * FROM no_such_table").await),
        Code::NotFound
    );
    assert_eq!(code_of(client.query("").await), Code::InvalidArgument);

    assert_intact(&client, &keep).await;
    assert!(
        client.load("fresh").await.is_err(),
        "a failed conditional store created a dataset"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_oversized_uploads() {
    let worker = Worker::start();
    let client = worker.client().await;
    let keep = df! { "a" => &[1i64, 2, 3] }.unwrap();
    client.store("keep", &keep).await.unwrap();
    let mut raw = raw(&worker).await;
    let valid = ipc_stream(1000);

    let cases: Vec<(&str, Vec<Vec<u8>>, Code)> = vec![
        (
            "garbage",
            vec![b"this is not arrow at all".to_vec()],
            Code::InvalidArgument,
        ),
        (
            "truncated",
            vec![valid[..valid.len() - 40].to_vec()],
            Code::InvalidArgument,
        ),
        ("no data", vec![], Code::InvalidArgument),
        (
            "trailing bytes",
            vec![valid.clone(), b"junk".to_vec()],
            Code::InvalidArgument,
        ),
        (
            "chunk over the limit",
            vec![vec![0u8; polarway_proto::CHUNK_LIMIT_BYTES + 1]],
            Code::ResourceExhausted,
        ),
    ];
    for (what, chunks, want) in cases {
        let status = raw
            .store(futures::stream::iter(store_messages("keep", chunks)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), want, "{what}: {}", status.message());
        assert!(!status.message().is_empty());
    }
    // No header first.
    let mut msgs = store_messages("keep", vec![valid.clone()]);
    msgs.remove(0);
    let status = raw.store(futures::stream::iter(msgs)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    // The same valid stream cut at odd places is fine.
    let pieces: Vec<Vec<u8>> = valid.chunks(7).map(|c| c.to_vec()).collect();
    let ok = raw
        .store(futures::stream::iter(store_messages("cut", pieces)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.dataset.unwrap().rows, 1000);

    assert_intact(&client, &keep).await;
    // No staging files were left behind by the failed uploads.
    let tmp = worker.data_dir.join("state/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "staging files left: {left:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_size_limit() {
    let worker = Worker::start_with(
        WorkerConfig::default()
            .arg("--max-upload-bytes")
            .arg("100000"),
    );
    let client = worker.client().await;
    let big = DataFrame::new_infer_height(vec![Series::new(
        "v".into(),
        (0..100_000i64).collect::<Vec<_>>(),
    )
    .into_column()])
    .unwrap();
    assert_eq!(
        code_of(client.store("big", &big).await),
        Code::ResourceExhausted
    );
    assert_eq!(code_of(client.load("big").await), Code::NotFound);
    client
        .store("small", &df! { "v" => &[1i64] }.unwrap())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_escapes_are_denied() {
    let worker = Worker::start();
    let client = worker.client().await;
    let keep = df! { "a" => &[1i64, 2, 3] }.unwrap();
    client.store("keep", &keep).await.unwrap();
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.csv");
    std::fs::write(&secret, "a,b\n1,2\n").unwrap();
    let secret = secret.display().to_string();
    let escapes = [
        "SELECT * FROM read_csv('/etc/passwd')".to_string(),
        format!("SELECT * FROM read_csv('{secret}')"),
        "SELECT * FROM read_text('/etc/hostname')".to_string(),
        format!(
            "SELECT * FROM read_parquet('{}/../state/tmp/x.parquet')",
            worker.data_dir.join("cold").display()
        ),
        "SELECT * FROM glob('/etc/*')".to_string(),
        format!("COPY (SELECT 1) TO '{}/out.csv'", outside.path().display()),
        format!(
            "COPY keep TO '{}/cold/keep.parquet'",
            worker.data_dir.display()
        ),
        "ATTACH '/tmp/evil.duckdb' AS evil".to_string(),
        "INSTALL httpfs".to_string(),
        "LOAD httpfs".to_string(),
        "SET enable_external_access = true".to_string(),
        "SET allowed_directories = ['/']".to_string(),
        "PRAGMA enable_profiling".to_string(),
        "CREATE TABLE t AS SELECT 1".to_string(),
        "EXPLAIN ANALYZE SELECT 1".to_string(),
        // Refused one way or another: several statements, a URL.
        "SELECT 1; COPY (SELECT 1) TO '/tmp/x.csv'".to_string(),
        "SELECT * FROM read_csv('https://example.com/x.csv')".to_string(),
    ];
    for sql in &escapes {
        let code = code_of(client.query(sql).await);
        assert!(
            matches!(code, Code::PermissionDenied | Code::InvalidArgument),
            "{sql}: got {code:?}"
        );
    }
    // The ones that name a forbidden action get PERMISSION_DENIED specifically.
    for sql in &escapes[..escapes.len() - 2] {
        assert_eq!(
            code_of(client.query(sql).await),
            Code::PermissionDenied,
            "{sql}"
        );
    }
    assert!(!outside.path().join("out.csv").exists());
    assert_intact(&client, &keep).await;
    // And real queries still work.
    let df = client.query("SELECT SUM(a) AS s FROM keep").await.unwrap();
    assert_eq!(
        df.column("s")
            .unwrap()
            .as_materialized_series()
            .cast(&DataType::Int64)
            .unwrap()
            .i64()
            .unwrap()
            .get(0),
        Some(6)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn token_auth() {
    let worker =
        Worker::start_with(WorkerConfig::default().env("POLARWAY_AUTH_TOKEN", "s3cret-token"));
    let anonymous = worker.client().await;
    // Health needs no token.
    assert_eq!(anonymous.health_check().await.unwrap(), "OK");
    let df = df! { "a" => &[1i64] }.unwrap();
    assert_eq!(
        code_of(anonymous.store("x", &df).await),
        Code::Unauthenticated
    );
    assert_eq!(code_of(anonymous.list("").await), Code::Unauthenticated);
    let wrong = DistributedClient::builder(worker.url())
        .auth_token("nope")
        .connect()
        .await
        .unwrap();
    assert_eq!(code_of(wrong.load("x").await), Code::Unauthenticated);
    assert_eq!(
        code_of(wrong.query("SELECT 1").await),
        Code::Unauthenticated
    );
    assert_eq!(code_of(wrong.cache_stats().await), Code::Unauthenticated);
    let right = DistributedClient::builder(worker.url())
        .auth_token("s3cret-token")
        .connect()
        .await
        .unwrap();
    right.store("x", &df).await.unwrap();
    assert!(right.load("x").await.unwrap().equals_missing(&df));
    assert_eq!(code_of(wrong.delete("x").await), Code::Unauthenticated);
    assert_eq!(right.list("").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_store_batch_commits_nothing() {
    use polarway_proto::v1::{
        condition::Kind, store_request::Msg, Condition as PbCondition, StoreHeader, StoreRequest,
    };
    let worker = Worker::start();
    let client = worker.client().await;
    let keep = df! { "a" => &[1i64, 2, 3] }.unwrap();
    client.store("keep", &keep).await.unwrap();
    let mut raw = raw(&worker).await;
    let header = |name: &str, condition: Option<Kind>| StoreRequest {
        msg: Some(Msg::Header(StoreHeader {
            name: name.into(),
            condition: condition.map(|k| PbCondition { kind: Some(k) }),
        })),
    };
    let data = |bytes: Vec<u8>| StoreRequest {
        msg: Some(Msg::Ipc(bytes.into())),
    };
    let valid = ipc_stream(100);

    let cases: Vec<(&str, Vec<StoreRequest>, Code)> = vec![
        (
            "malformed second dataset",
            vec![
                header("b1", None),
                data(valid.clone()),
                header("b2", None),
                data(b"junk".to_vec()),
            ],
            Code::InvalidArgument,
        ),
        (
            "invalid second name",
            vec![
                header("b1", None),
                data(valid.clone()),
                header("../b2", None),
                data(valid.clone()),
            ],
            Code::InvalidArgument,
        ),
        (
            "duplicate name",
            vec![
                header("b1", None),
                data(valid.clone()),
                header("b1", None),
                data(valid.clone()),
            ],
            Code::InvalidArgument,
        ),
        (
            "failed condition",
            vec![
                header("b1", None),
                data(valid.clone()),
                header("keep", Some(Kind::IfAbsent(true))),
                data(valid.clone()),
            ],
            Code::AlreadyExists,
        ),
        (
            "stale version",
            vec![
                header("keep", Some(Kind::IfVersion(1))),
                data(valid.clone()),
                header("b1", Some(Kind::IfVersion(3))),
                data(valid.clone()),
            ],
            Code::Aborted,
        ),
    ];
    for (what, msgs, want) in cases {
        let status = raw
            .store_batch(futures::stream::iter(msgs))
            .await
            .unwrap_err();
        assert_eq!(status.code(), want, "{what}: {}", status.message());
        assert_eq!(
            code_of(client.load("b1").await),
            Code::NotFound,
            "{what}: part of a failed batch became visible"
        );
        assert_intact(&client, &keep).await;
    }
    // The same batch, valid, commits both (numbers claimed by the aborted batches are skipped).
    let ok = raw
        .store_batch(futures::stream::iter(vec![
            header("keep", Some(Kind::IfVersion(1))),
            data(valid.clone()),
            header("b1", Some(Kind::IfAbsent(true))),
            data(valid),
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ok.datasets
            .iter()
            .map(|d| (d.name.as_str(), d.version))
            .collect::<Vec<_>>(),
        [("keep", 3), ("b1", 2)]
    );
}

/// An IPC message whose buffer offsets point past its body (found by tests/fuzz.rs: Arrow's reader
/// panics on it) is the caller's bad input: INVALID_ARGUMENT, and the worker goes on serving.
#[tokio::test(flavor = "multi_thread")]
async fn ipc_buffers_outside_their_message_are_refused() {
    // The fuzzer's stream: 32 rows of seed 3.
    let mut bytes = ipc_stream_of(&[numbered_batch(32, 3)]);
    // The shrunk case of tests/fuzz.proptest-regressions: one byte of the batch's metadata set to
    // 1, and the end of the stream cut off.
    let at = (0.29409554830965556 * bytes.len() as f64) as usize;
    bytes[at] = 1;
    bytes.truncate((0.9951585921217114 * bytes.len() as f64) as usize);

    let worker = Worker::start();
    let mut raw = raw(&worker).await;
    let status = raw
        .store(futures::stream::iter(store_messages(
            "damaged",
            vec![bytes],
        )))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
    assert!(
        status.message().contains("outside its body"),
        "{}",
        status.message()
    );
    let client = worker.client().await;
    assert_eq!(client.health_check().await.unwrap(), "OK");
    assert_eq!(code_of(client.load("damaged").await), Code::NotFound);
}

/// A gRPC message over the server's per-message limit is a size limit (RESOURCE_EXHAUSTED, with
/// what to do), not tonic's OUT_OF_RANGE: as a unary request and inside an upload.
#[tokio::test(flavor = "multi_thread")]
async fn messages_over_the_size_limit_are_resource_exhausted() {
    let worker = Worker::start();
    let client = worker.client().await;
    let keep = df! { "v" => &[1i64, 2, 3] }.unwrap();
    client.store("keep", &keep).await.unwrap();
    let over = polarway_proto::MAX_MESSAGE_BYTES + 1;
    let mut raw = raw(&worker).await.max_encoding_message_size(2 * over);

    let status = raw
        .describe(polarway_proto::v1::DescribeRequest {
            name: "n".repeat(over),
            version: None,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status}");
    assert!(
        status.message().contains("smaller messages"),
        "{}",
        status.message()
    );

    let status = raw
        .store(futures::stream::iter(store_messages(
            "big",
            vec![vec![0u8; over]],
        )))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status}");

    assert_intact(&client, &keep).await;
    assert_eq!(code_of(client.load("big").await), Code::NotFound);
}
