//! The gateway toward its workers and the clock: deadlines end to end (the caller's
//! `grpc-timeout` and the policy's cap), the backend token (workers that require `--auth-token`),
//! and TLS toward `https://` workers.

use polarway_testkit::pki::{ca, leaf};
use std::time::Duration;

use crate::common::*;
use polarway::{Code, DistributedClient};

/// Runs for minutes on a worker: only a deadline ends it early.
const SLOW_QUERY: &str = "SELECT COUNT(*) FROM range(100000000000) a";

/// A slow query through `client`, bounded so that a hang fails the test instead of stalling it.
async fn slow_query_code(client: &DistributedClient) -> Code {
    let r = tokio::time::timeout(Duration::from_secs(30), client.query(SLOW_QUERY)).await;
    code_of(r.expect("the slow query hung past its deadline"))
}

#[tokio::test(flavor = "multi_thread")]
async fn deadlines_end_to_end() {
    let cluster = Cluster::start(2);
    let gw = Gateway::start(&cluster, &[]);

    // The caller's own deadline (grpc-timeout 1 s).
    let short = DistributedClient::builder(gw.url())
        .timeout(Duration::from_secs(1))
        .retries(0, Duration::ZERO)
        .connect()
        .await
        .unwrap();
    assert_eq!(slow_query_code(&short).await, Code::DeadlineExceeded);
    // The workers gave up too (the remaining time was forwarded): a normal call still works.
    let client = gw.client().await;
    let one = client.query("SELECT 41 + 1 AS x").await.unwrap();
    assert_eq!(one.column("x").unwrap().i32().unwrap().get(0), Some(42));

    // The policy's cap: a caller asking for 60 s (or nothing) is cut to 1 s.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[auth]\nanonymous_roles = [\"all\"]\n\n[roles.all]\nmethods = [\"*\"]\ndatasets = [\"*\"]\n\n[limits]\nmax_deadline_secs = 1\n",
    )
    .unwrap();
    let capped = Gateway::start(&cluster, &["--policy", policy.to_str().unwrap()]);
    let patient = DistributedClient::builder(capped.url())
        .timeout(Duration::from_secs(60))
        .retries(0, Duration::ZERO)
        .connect()
        .await
        .unwrap();
    assert_eq!(slow_query_code(&patient).await, Code::DeadlineExceeded);
    let text = http_get(&capped.metrics_url());
    assert!(
        text.contains(
            "polarway_grpc_errors_total{method=\"Query\",status=\"DEADLINE_EXCEEDED\"} 1"
        ),
        "{text}"
    );
    // Quick calls under the cap are unaffected.
    let df = frame(100);
    patient.store("capped_ok", &df).await.unwrap();
    assert!(patient.load("capped_ok").await.unwrap().equals_missing(&df));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_policy_cap_bounds_a_started_stream() {
    use futures::StreamExt;
    let cluster = Cluster::start(1);
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[auth]\nanonymous_roles = [\"all\"]\n\n[roles.all]\nmethods = [\"*\"]\ndatasets = [\"*\"]\n\n[limits]\nmax_deadline_secs = 2\n",
    )
    .unwrap();
    // Stored directly on the worker: the cap would bound a slow store through the gateway too.
    let n = 4_000_000;
    let direct = DistributedClient::builder(cluster.workers[0].url())
        .timeout(Duration::from_secs(120))
        .connect()
        .await
        .unwrap();
    direct.store("long_stream", &frame(n)).await.unwrap();

    let gw = Gateway::start(&cluster, &["--policy", policy.to_str().unwrap()]);
    let client = DistributedClient::builder(gw.url())
        .timeout(Duration::from_secs(60))
        .retries(0, Duration::ZERO)
        .connect()
        .await
        .unwrap();
    // A slow reader: far more data than the flow-control windows hold, read a part at a time.
    let read = tokio::time::timeout(Duration::from_secs(120), async {
        let mut stream = client.load_stream("long_stream").await?;
        let mut rows = 0;
        while let Some(part) = stream.next().await {
            rows += part?.height();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok::<usize, polarway::Error>(rows)
    })
    .await
    .expect("the capped stream did not end");
    // (Before the fix, a worker that kept up meant the cap was never checked: all rows came.)
    assert_eq!(code_of(read), Code::DeadlineExceeded);
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_token_reaches_workers_that_require_one() {
    let cluster = Cluster::start_with(2, &["--auth-token", "worker-secret"]);
    let gw = Gateway::start(&cluster, &["--backend-token", "worker-secret"]);
    let client = gw.client().await;
    let df = frame(500);
    client.store("tok_a", &df).await.unwrap();
    assert!(client.load("tok_a").await.unwrap().equals_missing(&df));
    assert_eq!(client.describe("tok_a").await.unwrap().rows, 500);
    assert_eq!(client.list("tok_").await.unwrap().len(), 1);

    // The workers do require it: direct calls without it (or with a wrong one) are refused.
    for w in &cluster.workers {
        assert_eq!(
            code_of(w.client().await.describe("tok_a").await),
            Code::Unauthenticated
        );
        let wrong = DistributedClient::builder(w.url())
            .auth_token("nope")
            .connect()
            .await
            .unwrap();
        assert_eq!(code_of(wrong.load("tok_a").await), Code::Unauthenticated);
        let right = DistributedClient::builder(w.url())
            .auth_token("worker-secret")
            .connect()
            .await
            .unwrap();
        assert!(right.load("tok_a").await.unwrap().equals_missing(&df));
    }
    // A gateway without the token gets the workers' UNAUTHENTICATED, passed through.
    let tokenless = Gateway::start(&cluster, &[]);
    assert_eq!(
        code_of(tokenless.client().await.load("tok_a").await),
        Code::Unauthenticated
    );
}

fn https_backends(cluster: &Cluster) -> Vec<String> {
    cluster
        .workers
        .iter()
        .flat_map(|w| ["--backend".to_string(), format!("https://{}", w.addr())])
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_toward_workers() {
    let pki = tempfile::tempdir().unwrap();
    let path = |f: &str| pki.path().join(f).display().to_string();
    // Another CA, to show an untrusted worker certificate is refused.
    ca(pki.path(), "other");
    let ca = ca(pki.path(), "ca");
    leaf(pki.path(), &ca, "worker", &["worker.polarway.test"]);

    let (crt, key) = (path("worker.crt"), path("worker.key"));
    let cluster = Cluster::start_with(2, &["--tls-cert", &crt, "--tls-key", &key]);
    let backends = https_backends(&cluster);
    let name = ["--backend-tls-name", "worker.polarway.test"];
    let gw = Gateway::start_backends(
        &backends,
        &[&["--backend-ca", &path("ca.crt")][..], &name].concat(),
    );
    let client = gw.client().await;
    let df = frame(2000);
    client.store("tls_a", &df).await.unwrap();
    assert!(client.load("tls_a").await.unwrap().equals_missing(&df));
    let n = client
        .query("SELECT COUNT(*) AS n FROM tls_a")
        .await
        .unwrap();
    assert_eq!(n.column("n").unwrap().i64().unwrap().get(0), Some(2000));

    // The workers speak TLS only, and the gateway verifies them: a wrong CA gets UNAVAILABLE.
    assert!(plaintext_refused(&cluster).await);
    let untrusted = Gateway::start_backends(
        &backends,
        &[&["--backend-ca", &path("other.crt")][..], &name].concat(),
    );
    let c = DistributedClient::builder(untrusted.url())
        .retries(0, Duration::ZERO)
        .connect()
        .await
        .unwrap();
    assert_eq!(code_of(c.load("tls_a").await), Code::Unavailable);
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_toward_workers() {
    let pki = tempfile::tempdir().unwrap();
    let path = |f: &str| pki.path().join(f).display().to_string();
    let ca = ca(pki.path(), "ca");
    leaf(pki.path(), &ca, "worker", &["worker.polarway.test"]);
    leaf(pki.path(), &ca, "gateway", &["gateway.polarway.test"]);

    // Workers that require a client certificate from the CA.
    let (crt, key, ca_crt) = (path("worker.crt"), path("worker.key"), path("ca.crt"));
    let cluster = Cluster::start_with(
        2,
        &["--tls-cert", &crt, "--tls-key", &key, "--tls-ca", &ca_crt],
    );
    let backends = https_backends(&cluster);
    let common = [
        "--backend-ca",
        &ca_crt,
        "--backend-tls-name",
        "worker.polarway.test",
    ];
    let (gw_crt, gw_key) = (path("gateway.crt"), path("gateway.key"));
    let gw = Gateway::start_backends(
        &backends,
        &[
            &common[..],
            &["--backend-cert", &gw_crt, "--backend-key", &gw_key],
        ]
        .concat(),
    );
    let client = gw.client().await;
    let df = frame(300);
    client.store("mtls_a", &df).await.unwrap();
    assert!(client.load("mtls_a").await.unwrap().equals_missing(&df));

    // A gateway without its certificate is refused by the workers: UNAVAILABLE, not a hang.
    let anonymous = Gateway::start_backends(&backends, &common);
    let c = DistributedClient::builder(anonymous.url())
        .retries(0, Duration::ZERO)
        .connect()
        .await
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(30), c.load("mtls_a"))
        .await
        .expect("load hung");
    assert_eq!(code_of(r), Code::Unavailable);
}

/// Plaintext calls to the TLS workers fail.
async fn plaintext_refused(cluster: &Cluster) -> bool {
    let w = &cluster.workers[0];
    match DistributedClient::builder(w.url())
        .retries(0, Duration::ZERO)
        .connect()
        .await
    {
        Err(_) => true,
        Ok(c) => c.health_check().await.is_err(),
    }
}
