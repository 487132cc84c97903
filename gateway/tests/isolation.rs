//! Tenant isolation and stored-data integrity, tried as an attacker would. Two tenants (alice on
//! `alice_*`, bob on `bob_*`), a reader of both, an administrator and three JWT issuers; every
//! attack runs twice: through the gateway (in front of a worker that trusts only the gateway's
//! token) and against a worker enforcing the same policy file itself. Each attack asserts the
//! status that came back, that no secret row leaked, and that nothing stored changed on disk.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use futures::StreamExt;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use polars::prelude::*;
use polarway::{Code, DistributedClient};
use polarway_proto::v1 as pb;
use serde_json::json;
use tonic::metadata::MetadataValue;

const SECRET_A: &str = "tenant-a-secret-of-at-least-32-bytes!";
const SECRET_B: &str = "tenant-b-secret-of-at-least-32-bytes!";
const SECRET_CORP: &str = "corp-idp-secret-of-at-least-32-bytes!";
const GATEWAY_TOKEN: &str = "gateway-to-worker-token";
/// The value only bob's datasets hold: it must never reach alice.
const BOB_SECRET: i64 = 424242;

fn policy_text() -> String {
    format!(
        r#"
[limits]
max_in_flight = 6
stall_timeout_secs = 2
methods.CacheStats = {{ per_second = 0.01, burst = 1 }}

[[identity]]
name = "alice"
token = "alice-token"
roles = ["alice"]

[[identity]]
name = "bob"
token = "bob-token"
roles = ["bob"]

[[identity]]
name = "reader"
token = "reader-token"
roles = ["reader"]

[[identity]]
name = "admin"
token = "admin-token"
roles = ["admin"]

# Tenant A's identity provider: its users are alice's tenant, whatever they claim.
[[jwt]]
issuer = "https://tenant-a.test"
audiences = ["polarway"]
algorithms = ["HS256"]
keys = [{{ kid = "a", alg = "HS256", secret = "{SECRET_A}" }}]
default_roles = ["alice"]

[[jwt]]
issuer = "https://tenant-b.test"
algorithms = ["HS256"]
keys = [{{ kid = "b", alg = "HS256", secret = "{SECRET_B}" }}]
default_roles = ["bob"]

# The company's provider may grant reader and admin, and only those.
[[jwt]]
issuer = "https://corp.test"
algorithms = ["HS256"]
keys = [{{ kid = "c", alg = "HS256", secret = "{SECRET_CORP}" }}]
allowed_roles = ["reader", "admin"]

[roles.alice]
methods = ["*"]
datasets = ["alice_*"]

[roles.bob]
methods = ["*"]
datasets = ["bob_*"]

[roles.reader]
methods = ["Load", "Query", "List", "Describe"]
datasets = ["alice_*", "bob_*"]

[roles.admin]
methods = ["*"]
datasets = ["*"]
"#
    )
}

fn jwt(issuer: &str, secret: &str, kid: &str, sub: &str, extra: serde_json::Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut claims = json!({ "iss": issuer, "sub": sub, "exp": now + 600 });
    for (k, v) in extra.as_object().unwrap() {
        claims[k] = v.clone();
    }
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.into());
    encode(
        &header,
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// One deployment under attack.
struct Deployment {
    url: String,
    /// The worker's data directory (its cold/ files) and the shared state directory.
    data_dir: PathBuf,
    state_dir: PathBuf,
    worker_metrics: String,
    gateway_metrics: Option<String>,
    _procs: Vec<Proc>,
    _dirs: Vec<tempfile::TempDir>,
}

fn spawn_worker(dir: &Path, policy: &Path, through_gateway: bool) -> Proc {
    let mut cmd = std::process::Command::new(worker_bin());
    cmd.arg("server")
        .args([
            "--grpc-port",
            "0",
            "--metrics-enabled",
            "--metrics-port",
            "0",
            "--handle-store",
            "external",
        ])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("RUST_LOG", "warn");
    for (k, _) in std::env::vars() {
        if k.starts_with("POLARWAY_") {
            cmd.env_remove(k);
        }
    }
    if through_gateway {
        cmd.args(["--auth-token", GATEWAY_TOKEN]);
    } else {
        cmd.arg("--policy").arg(policy);
    }
    Proc::spawn(cmd, "polarway")
}

impl Deployment {
    fn start(through_gateway: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let policy = dir.path().join("policy.toml");
        std::fs::write(&policy, policy_text()).unwrap();
        let worker = spawn_worker(dir.path(), &policy, through_gateway);
        let worker_url = format!("http://{}", worker.addr());
        let worker_metrics = format!("http://{}/metrics", worker.addrs["metrics"]);
        let mut procs = vec![worker];
        let (url, gateway_metrics) = if through_gateway {
            let gw = Gateway::start_backends(
                &["--backend".into(), worker_url],
                &[
                    "--policy",
                    policy.to_str().unwrap(),
                    "--backend-token",
                    GATEWAY_TOKEN,
                ],
            );
            let url = gw.url();
            let metrics = gw.metrics_url();
            procs.push(gw.proc);
            (url, Some(metrics))
        } else {
            (worker_url, None)
        };
        Deployment {
            url,
            data_dir: dir.path().join("data"),
            state_dir: dir.path().join("state"),
            worker_metrics,
            gateway_metrics,
            _procs: procs,
            _dirs: vec![dir],
        }
    }

    fn cold(&self) -> PathBuf {
        self.data_dir.join("cold")
    }

    async fn client(&self, token: &str) -> DistributedClient {
        DistributedClient::builder(self.url.clone())
            .auth_token(token)
            .retries(0, Duration::ZERO)
            .connect()
            .await
            .unwrap()
    }

    /// Every file of the store and of the cold directory, with its content.
    fn disk(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        for root in [&self.state_dir, &self.cold()] {
            let mut stack = vec![root.to_path_buf()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                    let p = e.path();
                    let name = p.file_name().unwrap().to_string_lossy().to_string();
                    if p.is_dir() {
                        stack.push(p);
                    } else if !name.starts_with('.') {
                        out.insert(p.clone(), std::fs::read(&p).unwrap_or_default());
                    }
                }
            }
        }
        out
    }
}

fn rows(values: &[i64]) -> DataFrame {
    df! { "id" => values, "v" => values.iter().map(|v| format!("v{v}")).collect::<Vec<_>>() }
        .unwrap()
}

async fn seed(d: &Deployment) {
    let admin = d.client("admin-token").await;
    admin.store("alice_data", &rows(&[1, 2])).await.unwrap();
    admin.store("alice_more", &rows(&[3])).await.unwrap();
    admin
        .store("bob_secret", &rows(&[BOB_SECRET, BOB_SECRET + 1]))
        .await
        .unwrap();
    admin.store("bob_victim", &rows(&[7, 8])).await.unwrap();
}

/// A request carrying `token` and, when given, an `x-polarway-key`.
fn with_meta<T>(msg: T, token: &str, key: Option<&str>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from(format!("Bearer {token}")).unwrap(),
    );
    if let Some(k) = key {
        req.metadata_mut()
            .insert("x-polarway-key", k.parse().unwrap());
    }
    req
}

fn store_stream(datasets: &[(&str, &DataFrame)]) -> impl futures::Stream<Item = pb::StoreRequest> {
    let mut msgs = Vec::new();
    for (name, df) in datasets {
        msgs.push(pb::StoreRequest {
            msg: Some(pb::store_request::Msg::Header(pb::StoreHeader {
                name: name.to_string(),
                condition: None,
            })),
        });
        let mut buf = Vec::new();
        IpcStreamWriter::new(&mut buf)
            .finish(&mut (*df).clone())
            .unwrap();
        msgs.push(pb::StoreRequest {
            msg: Some(pb::store_request::Msg::Ipc(buf.into())),
        });
    }
    futures::stream::iter(msgs)
}

/// The status of a call expected to fail.
fn code<T>(r: Result<T, tonic::Status>) -> tonic::Code {
    match r {
        Ok(_) => panic!("the call succeeded"),
        Err(s) => s.code(),
    }
}

/// Whatever a query returned, does any of it hold bob's secret?
fn leaks(df: &DataFrame) -> bool {
    format!("{df:?}").contains(&BOB_SECRET.to_string())
}

async fn attack(d: &Deployment) {
    seed(d).await;
    let before = d.disk();
    let cold = d.cold().display().to_string();
    let alice = d.client("alice-token").await;
    let admin = d.client("admin-token").await;

    // 1. Stacked statements and other writes through SQL: refused for everyone, nothing written.
    for who in [&alice, &admin] {
        for sql in [
            format!("SELECT 1 AS victim; COPY (SELECT 666 AS id, 'TAMPERED' AS v) TO '{cold}/bob_victim.parquet' (FORMAT parquet, USE_TMP_FILE false); SELECT 2"),
            format!("EXPLAIN /**/ ANALYZE COPY (SELECT 666 AS id) TO '{cold}/bob_victim.parquet' (FORMAT parquet)"),
            format!("SELECT 1; ATTACH '{cold}/evil.duckdb' AS evil; CREATE TABLE evil.t AS SELECT 1"),
            format!("COPY (SELECT 1) TO '{cold}/alice_data.parquet'"),
            "SELECT * FROM query('COPY (SELECT 1) TO ''x.parquet''')".to_string(),
            "INSTALL httpfs".to_string(),
            "SET enable_external_access = true".to_string(),
        ] {
            assert_eq!(code_of(who.query(&sql).await), Code::PermissionDenied, "{sql}");
        }
    }
    assert!(!d.cold().join("evil.duckdb").exists());

    // 2. A routing key that names one dataset and a body that names another.
    let mut raw = raw(&d.url).await;
    let load = |name: &str| pb::LoadRequest {
        name: name.into(),
        columns: vec![],
        version: None,
    };
    assert_eq!(
        code(
            raw.load(with_meta(
                load("bob_secret"),
                "alice-token",
                Some("alice_data")
            ))
            .await
        ),
        tonic::Code::PermissionDenied
    );
    assert_eq!(
        code(
            raw.describe(with_meta(
                pb::DescribeRequest {
                    name: "bob_secret".into(),
                    version: None
                },
                "alice-token",
                Some("alice_data")
            ))
            .await
        ),
        tonic::Code::PermissionDenied
    );
    assert_eq!(
        code(
            raw.delete(with_meta(
                pb::DeleteRequest {
                    name: "bob_victim".into()
                },
                "alice-token",
                Some("alice_data")
            ))
            .await
        ),
        tonic::Code::PermissionDenied
    );
    let evil = rows(&[666]);
    assert_eq!(
        code(
            raw.store(with_meta(
                store_stream(&[("bob_victim", &evil)]),
                "alice-token",
                Some("alice_data")
            ))
            .await
        ),
        tonic::Code::PermissionDenied
    );
    // A bob frame smuggled behind an allowed one: the whole batch fails, nothing is committed.
    let batch = store_stream(&[("alice_new", &evil), ("bob_smuggled", &evil)]);
    assert_eq!(
        code(
            raw.store_batch(with_meta(batch, "alice-token", Some("alice_new")))
                .await
        ),
        tonic::Code::PermissionDenied
    );
    assert_eq!(code_of(admin.describe("alice_new").await), Code::NotFound);
    assert_eq!(
        code_of(admin.describe("bob_smuggled").await),
        Code::NotFound
    );
    let into = pb::QueryRequest {
        sql: "SELECT 666 AS id".into(),
        into: Some("bob_victim".into()),
    };
    assert_eq!(
        code(
            raw.query(with_meta(into, "alice-token", Some("alice_data")))
                .await
        ),
        tonic::Code::PermissionDenied
    );
    // The plain client, with honest keys.
    assert_eq!(
        code_of(alice.load("bob_secret").await),
        Code::PermissionDenied
    );
    assert_eq!(
        code_of(alice.delete("bob_victim").await),
        Code::PermissionDenied
    );
    assert_eq!(
        code_of(alice.store("bob_victim", &evil).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code_of(alice.query_into("SELECT 666 AS id", "bob_victim").await),
        Code::PermissionDenied
    );
    // A forbidden dataset and a missing one look alike.
    assert_eq!(
        code_of(alice.describe("bob_no_such").await),
        Code::PermissionDenied
    );

    // 3. SQL that reaches for bob's data by name, by path, by glob, through every construct.
    for sql in [
        "SELECT * FROM bob_secret".to_string(),
        "SELECT * FROM \"bob_secret\"".to_string(),
        "SELECT * FROM main.bob_secret".to_string(),
        "SELECT * FROM alice_data JOIN bob_secret USING (id)".to_string(),
        "SELECT * FROM alice_data WHERE id IN (SELECT id FROM bob_secret)".to_string(),
        "WITH x AS (SELECT * FROM bob_secret) SELECT * FROM x".to_string(),
        "WITH a AS (SELECT * FROM bob_secret), bob_secret AS (SELECT 1) SELECT * FROM a".to_string(),
        "SELECT * FROM alice_data UNION ALL SELECT * FROM bob_secret".to_string(),
        "SELECT * FROM alice_data, LATERAL (SELECT * FROM bob_secret WHERE bob_secret.id > alice_data.id)".to_string(),
        "SELECT (SELECT max(id) FROM bob_secret)".to_string(),
        format!("SELECT * FROM read_parquet('{cold}/bob_secret.parquet')"),
        format!("SELECT * FROM parquet_scan(['{cold}/alice_data.parquet', '{cold}/bob_secret.parquet'])"),
        format!("SELECT * FROM '{cold}/bob_secret.parquet'"),
        format!("SELECT * FROM read_blob('{cold}/bob_secret.parquet')"),
        format!("SELECT * FROM read_text('{cold}/bob_secret.parquet')"),
        format!("SELECT * FROM glob('{cold}/*')"),
        format!("SELECT * FROM read_parquet('{cold}/../state/datasets/bob_secret/*.parquet')"),
        format!("SELECT * FROM read_parquet('{}/datasets/bob_secret/*.parquet')", d.state_dir.display()),
        "SELECT * FROM read_csv('/etc/passwd')".to_string(),
        "SELECT * FROM duckdb_settings()".to_string(),
        "SELECT current_setting('temp_directory')".to_string(),
        "SELECT * FROM duckdb_views()".to_string(),
        "SELECT * FROM information_schema.tables".to_string(),
        "SHOW ALL TABLES".to_string(),
    ] {
        match alice.query(&sql).await {
            Ok(df) => panic!("{sql} ran: {df:?}"),
            Err(e) => {
                let c = e.code().unwrap();
                assert!(matches!(c, Code::PermissionDenied | Code::NotFound), "{sql}: {e}");
                let msg = e.to_string();
                let state = d.state_dir.display().to_string();
                assert!(!msg.contains(&state) || sql.contains(&state), "{sql} reveals a server path: {msg}");
                assert!(!msg.contains(&BOB_SECRET.to_string()), "{sql}: {msg}");
            }
        }
    }
    // Globs quietly leave out what the caller may not read; nothing readable matching is NOT_FOUND.
    let all = alice
        .query(&format!(
            "SELECT * FROM parquet_scan('{cold}/*.parquet') ORDER BY id"
        ))
        .await
        .unwrap();
    assert!(!leaks(&all), "{all:?}");
    assert_eq!(all.height(), 3, "alice_data and alice_more: {all:?}");
    assert_eq!(
        code_of(
            alice
                .query(&format!(
                    "SELECT * FROM parquet_scan('{cold}/bob_*.parquet')"
                ))
                .await
        ),
        Code::NotFound
    );
    // What alice may read still works, by name and by the cold path of the user guide.
    assert_eq!(
        alice
            .query("SELECT sum(id) AS s FROM alice_data")
            .await
            .unwrap()
            .column("s")
            .unwrap()
            .get(0)
            .unwrap()
            .try_extract::<i64>()
            .unwrap(),
        3
    );
    let by_path = alice
        .query(&format!(
            "SELECT count(*) AS n FROM parquet_scan('{cold}/alice_data.parquet')"
        ))
        .await
        .unwrap();
    assert_eq!(
        by_path
            .column("n")
            .unwrap()
            .get(0)
            .unwrap()
            .try_extract::<i64>()
            .unwrap(),
        2
    );
    let joined = alice
        .query(
            "WITH t AS (SELECT * FROM alice_data) SELECT count(*) AS n FROM t JOIN alice_more ON t.id < alice_more.id",
        )
        .await
        .unwrap();
    assert_eq!(
        joined
            .column("n")
            .unwrap()
            .get(0)
            .unwrap()
            .try_extract::<i64>()
            .unwrap(),
        2
    );

    // 4. A read-only role writes nothing, through any method.
    let reader = d.client("reader-token").await;
    assert_eq!(
        reader
            .query("SELECT count(*) FROM bob_secret")
            .await
            .unwrap()
            .height(),
        1
    );
    assert_eq!(
        code_of(
            reader
                .query_into("SELECT * FROM alice_data", "alice_copy")
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        code_of(reader.store("alice_data", &evil).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code_of(reader.delete("alice_data").await),
        Code::PermissionDenied
    );

    // 5. JWTs: an issuer cannot grant roles it was not allowed to, `aud` is required where
    // audiences are listed.
    let claims_admin = jwt(
        "https://tenant-a.test",
        SECRET_A,
        "a",
        "mallory",
        json!({"aud": "polarway", "roles": ["admin"]}),
    );
    let mallory = d.client(&claims_admin).await;
    assert_eq!(
        code_of(mallory.load("bob_secret").await),
        Code::PermissionDenied
    );
    assert_eq!(mallory.load("alice_data").await.unwrap().height(), 2);
    let b_admin = jwt(
        "https://tenant-b.test",
        SECRET_B,
        "b",
        "eve",
        json!({"roles": ["admin", "alice"]}),
    );
    assert_eq!(
        code_of(d.client(&b_admin).await.load("alice_data").await),
        Code::PermissionDenied
    );
    let no_aud = jwt("https://tenant-a.test", SECRET_A, "a", "carol", json!({}));
    assert_eq!(
        code_of(d.client(&no_aud).await.list("").await),
        Code::Unauthenticated
    );
    let corp_admin = jwt(
        "https://corp.test",
        SECRET_CORP,
        "c",
        "ops",
        json!({"roles": ["admin", "bob"]}),
    );
    assert_eq!(
        d.client(&corp_admin)
            .await
            .load("bob_secret")
            .await
            .unwrap()
            .height(),
        2
    );
    let corp_nothing = jwt(
        "https://corp.test",
        SECRET_CORP,
        "c",
        "nobody",
        json!({"roles": ["bob"]}),
    );
    assert_eq!(
        code_of(d.client(&corp_nothing).await.load("bob_secret").await),
        Code::PermissionDenied
    );

    // 6. List shows each caller only what it may see.
    let names = |l: Vec<polarway::DatasetInfo>| l.into_iter().map(|d| d.name).collect::<Vec<_>>();
    assert_eq!(
        names(alice.list("").await.unwrap()),
        ["alice_data", "alice_more"]
    );
    assert_eq!(
        names(alice.list("bob").await.unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(names(reader.list("").await.unwrap()).len(), 4);

    // 9. No server path through settings or errors.
    let e = alice
        .query("SELECT nope FROM alice_data")
        .await
        .unwrap_err();
    assert!(
        !e.to_string().contains(&d.data_dir.display().to_string()),
        "{e}"
    );

    // Forged grants never widen: bob claims everything in the header the gateway would send.
    let everything = polarway_access::Grants::everything("forged").encode();
    let mut req = with_meta(load("alice_data"), "bob-token", Some("alice_data"));
    req.metadata_mut()
        .insert(polarway_access::GRANTS_HEADER, everything.parse().unwrap());
    assert_eq!(code(raw.load(req).await), tonic::Code::PermissionDenied);

    // Nothing stored changed, and every dataset reads back as stored.
    assert_eq!(
        d.disk(),
        before,
        "files under the state or cold directory changed"
    );
    assert!(admin
        .load("bob_victim")
        .await
        .unwrap()
        .equals_missing(&rows(&[7, 8])));
    assert_eq!(admin.describe("bob_victim").await.unwrap().version, 1);

    // Refusals are counted by method and reason, and the worker kept serving.
    let worker = scrape(&d.worker_metrics);
    assert!(
        sum(
            &worker,
            "polarway_authz_denied_total",
            &[("reason", "statement")]
        ) > 0.0
    );
    if let Some(gateway) = &d.gateway_metrics {
        assert!(
            sum(
                &scrape(gateway),
                "polarway_authz_denied_total",
                &[("method", "Load"), ("reason", "grant")]
            ) > 0.0
        );
    } else {
        assert!(
            sum(
                &worker,
                "polarway_authz_denied_total",
                &[("method", "Load"), ("reason", "grant")]
            ) > 0.0
        );
    }
    assert_eq!(admin.health_check().await.unwrap(), "OK");
}

#[tokio::test(flavor = "multi_thread")]
async fn attacks_through_the_gateway() {
    let d = Deployment::start(true);
    attack(&d).await;
    // The worker behind the gateway refuses anyone without the gateway's token.
    let worker = d._procs[0].addr().to_string();
    let direct = DistributedClient::builder(format!("http://{worker}"))
        .auth_token("alice-token")
        .connect()
        .await
        .unwrap();
    assert_eq!(code_of(direct.list("").await), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread")]
async fn attacks_on_a_worker_with_the_policy() {
    attack(&Deployment::start(false)).await;
}

/// 7. One tenant cannot hold every slot: a bound on calls in progress per identity, and streams
/// nobody reads are ended.
#[tokio::test(flavor = "multi_thread")]
async fn one_tenant_cannot_take_every_slot_through_the_gateway() {
    let d = Deployment::start(true);
    hold_every_slot(&d).await;

    // 5. JWT identities carry their issuer: the same subject at two issuers has two rate buckets.
    let a = jwt(
        "https://tenant-a.test",
        SECRET_A,
        "a",
        "u1",
        json!({"aud": "polarway"}),
    );
    let b = jwt("https://tenant-b.test", SECRET_B, "b", "u1", json!({}));
    assert!(d.client(&a).await.cache_stats().await.is_ok());
    assert!(
        d.client(&b).await.cache_stats().await.is_ok(),
        "tenant b's u1 shares tenant a's bucket"
    );
    assert_eq!(
        code_of(d.client(&a).await.cache_stats().await),
        Code::ResourceExhausted
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_tenant_cannot_take_every_slot_of_a_worker_with_the_policy() {
    hold_every_slot(&Deployment::start(false)).await;
}

async fn hold_every_slot(d: &Deployment) {
    seed(d).await;
    let admin = d.client("admin-token").await;
    // Big enough that an unread Load cannot fit in the HTTP/2 windows along the way.
    let n = 12_000_000usize;
    let big = df! { "x" => (0..n as i64).collect::<Vec<_>>() }.unwrap();
    admin.store("alice_big", &big).await.unwrap();

    let mut held = Vec::new();
    for _ in 0..6 {
        let mut raw = raw(&d.url).await;
        let stream = raw
            .load(with_meta(
                pb::LoadRequest {
                    name: "alice_big".into(),
                    columns: vec![],
                    version: None,
                },
                "alice-token",
                Some("alice_big"),
            ))
            .await
            .unwrap();
        held.push((raw, stream.into_inner()));
    }
    let alice = d.client("alice-token").await;
    assert_eq!(
        code_of(alice.describe("alice_data").await),
        Code::ResourceExhausted
    );
    // Another tenant is not affected while alice's streams sit unread (their HTTP/2 windows full).
    let bob = d.client("bob-token").await;
    for _ in 0..8 {
        assert_eq!(bob.describe("bob_secret").await.unwrap().version, 1);
        assert_eq!(bob.load("bob_victim").await.unwrap().height(), 2);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    // The unread streams are ended after the stall timeout (2 s) while the caller still holds its
    // end: by the gateway (which cancels them on the worker) or by the worker itself. Alice's slots
    // are free again, and none of the held streams delivers the whole table.
    let all_ended = eventually(Duration::from_secs(20), || async {
        match &d.gateway_metrics {
            Some(_) => {
                sum(
                    &scrape(&d.worker_metrics),
                    "polarway_grpc_requests_in_flight",
                    &[],
                ) == 0.0
            }
            None => {
                sum(
                    &scrape(&d.worker_metrics),
                    "polarway_stalled_streams_total",
                    &[("method", "Load")],
                ) == 6.0
            }
        }
    })
    .await;
    let m = scrape(&d.worker_metrics);
    let stalled = sum(&m, "polarway_stalled_streams_total", &[]);
    let in_flight = sum(&m, "polarway_grpc_requests_in_flight", &[]);
    assert!(
        all_ended,
        "the unread streams were not ended (worker: {stalled} stalled, {in_flight} in flight)"
    );
    assert_eq!(alice.describe("alice_data").await.unwrap().version, 1);
    for (_raw, mut stream) in held {
        let mut got = 0usize;
        let ended_early = loop {
            match tokio::time::timeout(Duration::from_secs(20), stream.next())
                .await
                .expect("stream hung")
            {
                Some(Ok(m)) => got += m.ipc.len(),
                Some(Err(_)) => break true,
                None => break false,
            }
        };
        assert!(
            ended_early,
            "a stalled stream delivered all its {got} bytes"
        );
    }
}

/// 8. Callers cannot grow or break the metrics with made-up paths, at the gateway or a worker.
#[tokio::test(flavor = "multi_thread")]
async fn unknown_paths_do_not_reach_metric_labels() {
    let through_gateway = Deployment::start(true);
    flood_with_unknown_paths(
        &through_gateway.url,
        through_gateway.gateway_metrics.as_ref().unwrap(),
    )
    .await;
    let worker = Deployment::start(false);
    flood_with_unknown_paths(&worker.url, &worker.worker_metrics).await;
}

async fn flood_with_unknown_paths(url: &str, metrics: &str) {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    for i in 0..300 {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let path = http::uri::PathAndQuery::try_from(format!("/evil\"{i}.Svc/M{i}\"x"))
            .unwrap_or_else(|_| http::uri::PathAndQuery::from_static("/evil/x"));
        let codec: tonic_prost::ProstCodec<pb::HealthRequest, pb::HealthResponse> =
            tonic_prost::ProstCodec::default();
        let _ = grpc
            .unary(tonic::Request::new(pb::HealthRequest {}), path, codec)
            .await;
    }
    let text = http_get(metrics);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(text.as_str(), |(_, b)| b);
    let mut methods = std::collections::BTreeSet::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        // Every series line is `name{k="v",...} value` with no stray quote.
        assert_eq!(
            line.matches('"').count() % 2,
            0,
            "broken exposition line: {line}"
        );
        if let Some(rest) = line.split("method=\"").nth(1) {
            methods.insert(rest.split('"').next().unwrap().to_string());
        }
    }
    assert!(methods.contains("other"), "{methods:?}");
    assert!(methods.len() < 20, "caller text became labels: {methods:?}");
    assert!(!body.contains("evil"), "caller text in /metrics");
}
