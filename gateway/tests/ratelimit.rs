//! Rate limits: an identity over its quota gets RESOURCE_EXHAUSTED with a retry delay in the
//! metadata; another identity is unaffected; per-method quotas apply on top.

use std::time::Duration;

use crate::common::*;
use polarway::{Code, DistributedClient};

const POLICY: &str = r#"
[limits]
rate = { per_second = 1000, burst = 1000 }

[limits.methods.Store]
# One store per 100 s per identity.
per_second = 0.01
burst = 1

[[identity]]
name = "slow"
token = "slow-token"
roles = ["admin"]
# Three calls, then one per 100 s.
rate = { per_second = 0.01, burst = 3 }

[[identity]]
name = "fast"
token = "fast-token"
roles = ["admin"]

[roles.admin]
methods = ["*"]
datasets = ["*"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn quotas_per_identity_and_method() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, POLICY).unwrap();
    let cluster = Cluster::start(3);
    let gw = Gateway::start(&cluster, &["--policy", path.to_str().unwrap()]);
    let client = |t: &str| {
        DistributedClient::builder(gw.url())
            .auth_token(t)
            .retries(0, Duration::ZERO)
            .connect()
    };
    let (slow, fast) = (
        client("slow-token").await.unwrap(),
        client("fast-token").await.unwrap(),
    );

    fast.store("rl_a", &frame(3)).await.unwrap();
    for _ in 0..3 {
        assert_eq!(slow.describe("rl_a").await.unwrap().rows, 3);
    }
    assert_eq!(
        code_of(slow.describe("rl_a").await),
        Code::ResourceExhausted
    );

    // The delay is in the metadata.
    let mut raw = raw(&gw.url()).await;
    let mut req = tonic::Request::new(polarway_proto::v1::DescribeRequest {
        name: "rl_a".into(),
        version: None,
    });
    req.metadata_mut()
        .insert("authorization", "Bearer slow-token".parse().unwrap());
    let status = raw.describe(req).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    let ms: u64 = status
        .metadata()
        .get("retry-after-ms")
        .expect("retry-after-ms")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ms > 1000, "retry in {ms} ms");
    assert!(status.metadata().get("grpc-retry-pushback-ms").is_some());

    // The other identity is unaffected...
    for _ in 0..50 {
        assert_eq!(fast.describe("rl_a").await.unwrap().rows, 3);
    }
    // ... except by its per-method quota (one Store already spent).
    assert_eq!(
        code_of(fast.store("rl_b", &frame(3)).await),
        Code::ResourceExhausted
    );
    assert_eq!(fast.load("rl_a").await.unwrap().height(), 3);

    let text = http_get(&gw.metrics_url());
    assert!(
        text.contains("polarway_gateway_rate_limited_total{method=\"Describe\"} 2"),
        "{text}"
    );
}

const JWT_SECRET: &str = "rate-keys-test-secret-0123456789abcdef";

const BOUNDED_POLICY: &str = r#"
[limits]
# One call per 100 s for each caller; at most 3 JWT subjects get buckets of their own.
rate = { per_second = 0.01, burst = 1 }
max_rate_keys = 3

[[identity]]
name = "ops"
token = "ops-token"
roles = ["admin"]
rate = { per_second = 1000, burst = 1000 }

[[jwt]]
issuer = "rate-keys-test"
algorithms = ["HS256"]
keys = [{ kid = "k1", alg = "HS256", secret = "rate-keys-test-secret-0123456789abcdef" }]
default_roles = ["admin"]

[roles.admin]
methods = ["*"]
datasets = ["*"]
"#;

fn jwt_for(subject: &str) -> String {
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = serde_json::json!({ "sub": subject, "iss": "rate-keys-test", "exp": exp });
    encode(
        &header,
        &claims,
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_keys_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, BOUNDED_POLICY).unwrap();
    let cluster = Cluster::start(1);
    let gw = Gateway::start(&cluster, &["--policy", path.to_str().unwrap()]);
    let client = |t: String| {
        DistributedClient::builder(gw.url())
            .auth_token(t)
            .retries(0, Duration::ZERO)
            .connect()
    };
    // An allowed Describe of a missing dataset answers NOT_FOUND; a limited one RESOURCE_EXHAUSTED.
    let mut first_calls = Vec::new();
    for i in 1..=8 {
        let c = client(jwt_for(&format!("user-{i}"))).await.unwrap();
        first_calls.push(code_of(c.describe("rate_keys").await));
    }
    let (nf, re) = (Code::NotFound, Code::ResourceExhausted);
    // Subjects 1-3 get their own buckets; from the 4th on, new subjects share one overflow bucket,
    // so memory stays bounded whatever tokens callers bring: the 4th spends it, the rest wait.
    assert_eq!(first_calls, vec![nf, nf, nf, nf, re, re, re, re]);
    let again = client(jwt_for("user-1")).await.unwrap();
    assert_eq!(
        code_of(again.describe("rate_keys").await),
        re,
        "user-1's own bucket is spent"
    );
    // Identities of the policy are a fixed set: never in the overflow bucket.
    let ops = client("ops-token".into()).await.unwrap();
    for _ in 0..5 {
        assert_eq!(code_of(ops.describe("rate_keys").await), nf);
    }
}
