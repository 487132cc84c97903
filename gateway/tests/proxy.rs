//! Every client operation through the gateway in front of three workers, large streams both
//! ways, worker errors passed through, the gateway's own health service, metrics and request ids.

use std::time::Duration;

use crate::common::*;
use futures::StreamExt;
use polars::prelude::*;
use polarway::{Code, Condition};
use polarway_testkit::{query_holding_the_only_slot, slot_frees};

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_through_the_gateway() {
    let cluster = Cluster::start(3);
    let gw = Gateway::start(&cluster, &[]);
    let client = gw.client().await;

    assert_eq!(client.health_check().await.unwrap(), "OK");

    let df = df! { "symbol" => &["BTC", "ETH", "SOL"], "price" => &[50000i64, 3000, 100] }.unwrap();
    let info = client.store("trades_gw", &df).await.unwrap();
    assert_eq!((info.version, info.rows), (1, 3));
    assert!(client.load("trades_gw").await.unwrap().equals_missing(&df));
    let prices = client
        .load_with("trades_gw", &["price"], Some(1))
        .await
        .unwrap();
    assert!(prices.equals_missing(&df.select(["price"]).unwrap()));

    // Conditional stores: the worker's ALREADY_EXISTS / ABORTED come through unchanged.
    assert_eq!(
        code_of(client.store_if("trades_gw", &df, Condition::IfAbsent).await),
        Code::AlreadyExists
    );
    assert_eq!(
        code_of(
            client
                .store_if("trades_gw", &df, Condition::IfVersion(7))
                .await
        ),
        Code::Aborted
    );
    assert_eq!(
        client
            .store_if("trades_gw", &df, Condition::IfVersion(1))
            .await
            .unwrap()
            .version,
        2
    );

    let q = df! { "bid" => &[1.5f64, 2.5] }.unwrap();
    let batch = client
        .store_batch([("quotes_a", &q), ("quotes_b", &q)])
        .await
        .unwrap();
    assert_eq!(
        batch.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["quotes_a", "quotes_b"]
    );

    let avg = client
        .query("SELECT symbol, price * 2 AS p2 FROM trades_gw ORDER BY symbol")
        .await
        .unwrap();
    assert_eq!(
        avg.column("p2").unwrap().i64().unwrap().get(0),
        Some(100000)
    );
    let stored = client
        .query_into("SELECT * FROM quotes_a WHERE bid > 2", "quotes_hi")
        .await
        .unwrap();
    assert_eq!(stored.rows, 1);

    let names: Vec<String> = client
        .list("quotes_")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["quotes_a", "quotes_b", "quotes_hi"]);
    let described = client.describe("trades_gw").await.unwrap();
    assert_eq!((described.version, described.columns.len()), (2, 2));
    assert_eq!(client.delete("quotes_b").await.unwrap(), 1);
    assert_eq!(code_of(client.describe("quotes_b").await), Code::NotFound);
    assert_eq!(
        code_of(client.load("no_such_dataset").await),
        Code::NotFound
    );
    assert_eq!(
        code_of(client.query("SELEC nonsense").await),
        Code::InvalidArgument
    );
    assert_eq!(
        code_of(client.query("SELECT * FROM read_csv('/etc/passwd')").await),
        Code::PermissionDenied
    );

    let stats = client.cache_stats().await.unwrap();
    assert!(stats.capacity > 0);

    // The gateway's own grpc.health.v1.
    let channel = tonic::transport::Endpoint::from_shared(gw.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(
        status.get_ref().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Request ids: the caller's is echoed back; one is made up when absent.
    let mut raw = raw(&gw.url()).await;
    let mut req = tonic::Request::new(polarway_proto::v1::HealthRequest {});
    req.metadata_mut()
        .insert("x-request-id", "test-req-42".parse().unwrap());
    let resp = raw.health(req).await.unwrap();
    assert_eq!(resp.metadata().get("x-request-id").unwrap(), "test-req-42");
    let resp = raw
        .health(polarway_proto::v1::HealthRequest {})
        .await
        .unwrap();
    assert_eq!(resp.metadata().get("x-request-id").unwrap().len(), 36);

    // Metrics count calls by method and status.
    let text = http_get(&gw.metrics_url());
    assert!(
        text.contains("polarway_grpc_requests_total{method=\"Store\",status=\"OK\"}"),
        "{text}"
    );
    assert!(
        text.contains("polarway_grpc_errors_total{method=\"Describe\",status=\"NOT_FOUND\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("polarway_grpc_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("polarway_gateway_upstream_healthy"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn large_streams_pass_through() {
    let cluster = Cluster::start(3);
    let gw = Gateway::start(&cluster, &[]);
    let client = polarway::DistributedClient::builder(gw.url())
        .timeout(Duration::from_secs(300))
        .connect()
        .await
        .unwrap();

    // About 160 MB of Arrow data: two 8-byte columns of 10 million rows.
    let n = 10_000_000i64;
    let df = df! { "a" => (0..n).collect::<Vec<i64>>(), "b" => (0..n).map(|i| i as f64 * 0.5).collect::<Vec<f64>>() }.unwrap();
    let info = client.store("big_gw", &df).await.unwrap();
    assert_eq!(info.rows, n as u64);

    let mut stream = client.load_stream("big_gw").await.unwrap();
    let (mut rows, mut sum) = (0usize, 0i64);
    while let Some(part) = stream.next().await {
        let part = part.unwrap();
        rows += part.height();
        sum += part.column("a").unwrap().i64().unwrap().sum().unwrap_or(0);
    }
    assert_eq!(rows, n as usize);
    assert_eq!(sum, n * (n - 1) / 2);
    let whole = client.load("big_gw").await.unwrap();
    assert!(whole.equals_missing(&df));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_a_stream_in_flight() {
    let cluster = Cluster::start(1);
    let mut gw = Gateway::start(&cluster, &[]);
    let client = polarway::DistributedClient::builder(gw.url())
        .timeout(Duration::from_secs(120))
        .connect()
        .await
        .unwrap();
    let n = 2_000_000;
    client.store("drain_me", &frame(n)).await.unwrap();

    let mut stream = client.load_stream("drain_me").await.unwrap();
    let mut rows = stream.next().await.unwrap().unwrap().height();
    gw.proc.signal(libc::SIGTERM);
    while let Some(part) = stream.next().await {
        rows += part.unwrap().height();
    }
    assert_eq!(rows, n, "the stream in flight was cut by the shutdown");
    assert!(
        gw.proc.wait_exit(Duration::from_secs(20)),
        "the gateway did not exit after draining"
    );
}

/// A caller that drops its call through the gateway stops the work on the worker: the gateway
/// resets the worker's stream, and the worker interrupts the query (otherwise an abandoned query
/// holds a request slot and a core until its timeout).
#[tokio::test(flavor = "multi_thread")]
async fn a_query_abandoned_through_the_gateway_stops_on_the_worker() {
    let cluster = Cluster::start_with(
        1,
        &["--max-concurrent-requests", "1", "--query-timeout", "120"],
    );
    let gw = Gateway::start(&cluster, &[]);
    let via_gateway = gw.client().await;
    let direct = cluster.workers[0].client().await;
    let slow = "SELECT COUNT(*) FROM range(100000000000) a";

    query_holding_the_only_slot(&via_gateway, &direct, slow)
        .await
        .abort();
    assert!(
        slot_frees(&direct).await,
        "the worker kept running a query its caller had dropped at the gateway"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unavailable_without_workers() {
    let mut cluster = Cluster::start(1);
    let gw = Gateway::start(&cluster, &[]);
    let client = polarway::DistributedClient::builder(gw.url())
        .retries(0, Duration::ZERO)
        .connect()
        .await
        .unwrap();
    client.store("x_gone", &frame(10)).await.unwrap();

    // The only worker dies: calls get UNAVAILABLE (a gRPC status, not a transport error).
    cluster.workers[0].proc.kill9();
    assert_eq!(code_of(client.describe("x_gone").await), Code::Unavailable);
    assert_eq!(
        code_of(client.store("x_gone", &frame(10)).await),
        Code::Unavailable
    );
    assert_eq!(code_of(client.load("x_gone").await), Code::Unavailable);

    // The gateway's own health turns NOT_SERVING once the check sees it.
    let channel = tonic::transport::Endpoint::from_shared(gw.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel);
    let not_serving = eventually(Duration::from_secs(20), || {
        let mut health = health.clone();
        async move {
            let r = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .unwrap();
            r.get_ref().status
                == tonic_health::pb::health_check_response::ServingStatus::NotServing as i32
        }
    })
    .await;
    assert!(not_serving);
}

/// Send one gRPC call as raw HTTP/2: `body` cut into frames of `frame` bytes. Its status code.
async fn raw_call(
    channel: &mut tonic::transport::Channel,
    method: &str,
    body: Vec<u8>,
    frame: usize,
) -> Code {
    use tonic::client::GrpcService;
    let chunks: Vec<Result<http_body::Frame<bytes::Bytes>, tonic::Status>> = body
        .chunks(frame)
        .map(|c| Ok(http_body::Frame::data(bytes::Bytes::copy_from_slice(c))))
        .collect();
    let body = tonic::body::Body::new(http_body_util::StreamBody::new(futures::stream::iter(
        chunks,
    )));
    let mut req = http::Request::new(body);
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = format!("http://gateway/polarway.v1.Polarway/{method}")
        .parse()
        .unwrap();
    let h = req.headers_mut();
    h.insert("content-type", "application/grpc".parse().unwrap());
    h.insert("te", "trailers".parse().unwrap());
    futures::future::poll_fn(|cx| GrpcService::poll_ready(channel, cx))
        .await
        .unwrap();
    let resp = GrpcService::call(channel, req).await.unwrap();
    if let Some(s) = tonic::Status::from_header_map(resp.headers()) {
        return s.code();
    }
    use http_body_util::BodyExt;
    let collected = resp.into_body().collect().await.unwrap();
    tonic::Status::from_header_map(collected.trailers().expect("trailers"))
        .map_or(Code::Ok, |s| s.code())
}

/// One caller's malformed, finely cut request bodies do not reach other callers. All calls to a
/// worker share one HTTP/2 connection, whose server ends it when too many small DATA frames
/// arrive (a framing flood): the gateway merges small frames before forwarding. And a worker that
/// refuses a request is not a failed worker: garbage cannot get healthy workers ejected.
#[tokio::test(flavor = "multi_thread")]
async fn one_callers_tiny_frames_and_garbage_do_not_reach_other_callers() {
    use prost::Message;
    let cluster = Cluster::start(1);
    let gw = Gateway::start(&cluster, &[]);
    let client = gw.client().await;
    client.store("kept", &frame(10)).await.unwrap();
    // A Store whose IPC is junk, 800 bytes sent one byte per DATA frame: about 130,000 small
    // frames from four callers, twice what one worker connection tolerates.
    let mut body = Vec::new();
    for msg in [
        polarway_proto::v1::StoreRequest {
            msg: Some(polarway_proto::v1::store_request::Msg::Header(
                polarway_proto::v1::StoreHeader {
                    name: "junk".into(),
                    condition: None,
                },
            )),
        },
        polarway_proto::v1::StoreRequest {
            msg: Some(polarway_proto::v1::store_request::Msg::Ipc(
                vec![7u8; 760].into(),
            )),
        },
    ] {
        body.extend(framed(&msg.encode_to_vec()));
    }
    let mut attackers = Vec::new();
    for _ in 0..4 {
        let (url, body) = (gw.url(), body.clone());
        attackers.push(tokio::spawn(async move {
            let mut channel = tonic::transport::Endpoint::from_shared(url)
                .unwrap()
                .connect()
                .await
                .unwrap();
            let mut codes = Vec::new();
            for _ in 0..40 {
                codes.push(raw_call(&mut channel, "Store", body.clone(), 1).await);
            }
            codes
        }));
    }
    // Meanwhile another caller's calls all succeed.
    let mut served = 0;
    while attackers.iter().any(|a| !a.is_finished()) {
        client
            .describe("kept")
            .await
            .expect("another caller's call failed while garbage was sent");
        served += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for a in attackers {
        for code in a.await.unwrap() {
            assert!(
                matches!(code, Code::InvalidArgument | Code::Internal),
                "a garbage Store got {code:?}"
            );
        }
    }
    let text = http_get(&gw.metrics_url());
    let ejections = sum(&parse(&text), "polarway_gateway_ejections_total", &[]);
    assert_eq!(ejections, 0.0, "{text}");
    eprintln!("another caller's calls served meanwhile: {served}");
}
