//! The auth matrix through the gateway: static tokens, JWT (RS256, ES256, HS256; JWKS with key
//! rotation), every way a token can be wrong, roles without the method or the dataset; TLS and
//! mutual TLS in front.

use polarway_testkit::pki::Pki;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::*;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use polarway::{Code, DistributedClient};
use serde_json::json;

const ISSUER: &str = "https://issuer.test";

fn keys() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/keys")
}

fn policy(dir: &Path) -> PathBuf {
    let keys = keys();
    std::fs::write(dir.join("jwks.json"), r#"{"keys": []}"#).unwrap();
    let text = format!(
        r#"
[[identity]]
name = "admin"
token = "admin-token"
roles = ["admin"]

[[identity]]
name = "ann"
# printf %s analyst-token | sha256sum
token_sha256 = "{ann}"
roles = ["analyst"]

[[jwt]]
issuer = "{ISSUER}"
audiences = ["polarway"]
algorithms = ["RS256", "ES256", "HS256"]
leeway_secs = 30
keys = [
  {{ kid = "rsa1", alg = "RS256", public_key_file = "{rsa}" }},
  {{ kid = "ec1", alg = "ES256", public_key_file = "{ec}" }},
  {{ kid = "hs1", alg = "HS256", secret = "hs-secret-of-at-least-32-bytes!!" }},
]
# Tokens of this issuer may claim the analyst role (and no other).
allowed_roles = ["analyst"]

[[jwt]]
issuer = "https://rotating.test"
algorithms = ["RS256"]
jwks_file = "jwks.json"
default_roles = ["analyst"]

[roles.admin]
methods = ["*"]
datasets = ["*"]

[roles.analyst]
methods = ["Load", "Query", "List", "Describe", "Health", "CacheStats"]
datasets = ["trades_*"]
"#,
        ann = hex::encode(polarway_access::policy::sha256(b"analyst-token")),
        rsa = keys.join("rsa_public.pem").display(),
        ec = keys.join("ec_public.pem").display(),
    );
    let path = dir.join("policy.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(iss: &str, aud: &str, exp_in: i64, nbf_in: i64) -> serde_json::Value {
    json!({ "sub": "alice", "iss": iss, "aud": aud, "exp": now() + exp_in, "nbf": now() + nbf_in, "roles": ["analyst"] })
}

fn sign(alg: Algorithm, kid: &str, claims: &serde_json::Value) -> String {
    let key = match alg {
        Algorithm::RS256 => {
            EncodingKey::from_rsa_pem(&std::fs::read(keys().join("rsa_private.pem")).unwrap())
                .unwrap()
        }
        Algorithm::ES256 => {
            EncodingKey::from_ec_pem(&std::fs::read(keys().join("ec_private.pem")).unwrap())
                .unwrap()
        }
        _ => EncodingKey::from_secret(b"hs-secret-of-at-least-32-bytes!!"),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    encode(&header, claims, &key).unwrap()
}

fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

async fn as_token(gw: &Gateway, token: &str) -> DistributedClient {
    DistributedClient::builder(gw.url())
        .auth_token(token)
        .retries(0, Duration::ZERO)
        .connect()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(3);
    let gw = Gateway::start(
        &cluster,
        &["--policy", policy(dir.path()).to_str().unwrap()],
    );
    let df = frame(5);

    let admin = as_token(&gw, "admin-token").await;
    admin.store("trades_a", &df).await.unwrap();
    admin.store("quotes_a", &df).await.unwrap();

    // Who are you?
    let anonymous = DistributedClient::builder(gw.url())
        .retries(0, Duration::ZERO)
        .connect()
        .await
        .unwrap();
    assert_eq!(
        code_of(anonymous.load("trades_a").await),
        Code::Unauthenticated,
        "no token"
    );
    assert_eq!(
        code_of(as_token(&gw, "wrong-token").await.load("trades_a").await),
        Code::Unauthenticated,
        "wrong token"
    );
    let cases = [
        (
            "expired",
            sign(
                Algorithm::RS256,
                "rsa1",
                &claims(ISSUER, "polarway", -3600, -7200),
            ),
        ),
        (
            "not yet valid",
            sign(
                Algorithm::RS256,
                "rsa1",
                &claims(ISSUER, "polarway", 7200, 3600),
            ),
        ),
        (
            "wrong issuer",
            sign(
                Algorithm::RS256,
                "rsa1",
                &claims("https://evil.test", "polarway", 600, -10),
            ),
        ),
        (
            "wrong audience",
            sign(Algorithm::RS256, "rsa1", &claims(ISSUER, "other", 600, -10)),
        ),
        (
            "bad signature",
            format!(
                "{}x",
                sign(
                    Algorithm::RS256,
                    "rsa1",
                    &claims(ISSUER, "polarway", 600, -10)
                )
            ),
        ),
        (
            "unknown kid",
            sign(
                Algorithm::RS256,
                "nope",
                &claims(ISSUER, "polarway", 600, -10),
            ),
        ),
    ];
    for (what, token) in &cases {
        assert_eq!(
            code_of(as_token(&gw, token).await.load("trades_a").await),
            Code::Unauthenticated,
            "{what}"
        );
    }
    // alg: none, unsigned.
    let body = claims(ISSUER, "polarway", 600, -10).to_string();
    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(body.as_bytes())
    );
    assert_eq!(
        code_of(as_token(&gw, &none).await.load("trades_a").await),
        Code::Unauthenticated,
        "alg none"
    );
    // Algorithm confusion: HS256 "signed" with the RSA public key, naming the RSA key, or no key.
    let public = std::fs::read(keys().join("rsa_public.pem")).unwrap();
    for kid in [Some("rsa1"), None] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(String::from);
        let forged = encode(
            &header,
            &claims(ISSUER, "polarway", 600, -10),
            &EncodingKey::from_secret(&public),
        )
        .unwrap();
        assert_eq!(
            code_of(as_token(&gw, &forged).await.load("trades_a").await),
            Code::Unauthenticated,
            "HS256 with the RSA public key, kid {kid:?}"
        );
    }

    // What may you do?
    let ann = as_token(&gw, "analyst-token").await;
    assert_eq!(ann.load("trades_a").await.unwrap().height(), 5);
    assert_eq!(
        ann.query("SELECT count(*) AS n FROM trades_a")
            .await
            .unwrap()
            .height(),
        1
    );
    assert!(!ann.list("").await.unwrap().is_empty());
    assert_eq!(
        code_of(ann.store("trades_b", &df).await),
        Code::PermissionDenied,
        "role without the method"
    );
    assert_eq!(
        code_of(ann.delete("trades_a").await),
        Code::PermissionDenied,
        "role without the method"
    );
    assert_eq!(
        code_of(ann.load("quotes_a").await),
        Code::PermissionDenied,
        "dataset outside the pattern"
    );
    // A query reads only what the role covers, whatever it starts from (the worker checks).
    assert_eq!(ann.query("SELECT 1 AS one").await.unwrap().height(), 1);
    assert_eq!(
        code_of(ann.query("SELECT * FROM quotes_a").await),
        Code::PermissionDenied,
        "dataset outside the pattern"
    );
    assert_eq!(
        code_of(ann.query("SELECT * FROM range(3), quotes_a").await),
        Code::PermissionDenied,
        "dataset outside the pattern"
    );
    assert_eq!(
        ann.list("")
            .await
            .unwrap()
            .iter()
            .map(|d| d.name.as_str())
            .collect::<Vec<_>>(),
        ["trades_a"],
        "List shows the pattern only"
    );

    // Valid JWTs of every algorithm, including one expired within the leeway.
    for (alg, kid) in [
        (Algorithm::RS256, "rsa1"),
        (Algorithm::ES256, "ec1"),
        (Algorithm::HS256, "hs1"),
    ] {
        let c = as_token(&gw, &sign(alg, kid, &claims(ISSUER, "polarway", 600, -10))).await;
        assert_eq!(c.load("trades_a").await.unwrap().height(), 5, "{alg:?}");
        assert_eq!(
            code_of(c.load("quotes_a").await),
            Code::PermissionDenied,
            "{alg:?} outside the pattern"
        );
    }
    let within_leeway = sign(
        Algorithm::RS256,
        "rsa1",
        &claims(ISSUER, "polarway", -5, -60),
    );
    assert_eq!(
        as_token(&gw, &within_leeway)
            .await
            .load("trades_a")
            .await
            .unwrap()
            .height(),
        5
    );

    // JWKS key rotation: a token under a new kid fails until the JWKS file lists it.
    let rotating = json!({ "sub": "bob", "iss": "https://rotating.test", "exp": now() + 600 });
    let token = sign(Algorithm::RS256, "k2", &rotating);
    assert_eq!(
        code_of(as_token(&gw, &token).await.load("trades_a").await),
        Code::Unauthenticated
    );
    let key =
        EncodingKey::from_rsa_pem(&std::fs::read(keys().join("rsa_private.pem")).unwrap()).unwrap();
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("k2".into());
    write_atomic(
        &dir.path().join("jwks.json"),
        &json!({ "keys": [jwk] }).to_string(),
    );
    let client = as_token(&gw, &token).await;
    let rotated = eventually(Duration::from_secs(20), || async {
        client.load("trades_a").await.is_ok()
    })
    .await;
    assert!(rotated, "the new JWKS key was not picked up");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_and_mutual_tls() {
    let pki = Pki::new();
    let cluster = Cluster::start(1);
    let (cert, key, ca) = (
        pki.arg("server.crt"),
        pki.arg("server.key"),
        pki.arg("ca.crt"),
    );
    let tls_gw = Gateway::start(&cluster, &["--tls-cert", &cert, "--tls-key", &key]);
    let mtls_gw = Gateway::start(
        &cluster,
        &["--tls-cert", &cert, "--tls-key", &key, "--tls-ca", &ca],
    );
    let https = |gw: &Gateway| {
        format!(
            "https://localhost:{}",
            gw.proc.addr().rsplit(':').next().unwrap()
        )
    };
    let df = frame(3);

    let client = DistributedClient::builder(https(&tls_gw))
        .tls(pki.client_options(false))
        .connect()
        .await
        .unwrap();
    client.store("secure_a", &df).await.unwrap();
    assert!(client.load("secure_a").await.unwrap().equals_missing(&df));

    let client = DistributedClient::builder(https(&mtls_gw))
        .tls(pki.client_options(true))
        .connect()
        .await
        .unwrap();
    assert!(client.load("secure_a").await.unwrap().equals_missing(&df));

    // Without a client certificate the mTLS gateway refuses the connection.
    let refused = match DistributedClient::builder(https(&mtls_gw))
        .tls(pki.client_options(false))
        .retries(0, Duration::ZERO)
        .connect()
        .await
    {
        Err(_) => true,
        Ok(c) => c.health_check().await.is_err(),
    };
    assert!(
        refused,
        "a client without a certificate got through mutual TLS"
    );
    // Plaintext to the TLS port fails too.
    let plain = match DistributedClient::builder(tls_gw.url())
        .retries(0, Duration::ZERO)
        .connect()
        .await
    {
        Err(_) => true,
        Ok(c) => c.health_check().await.is_err(),
    };
    assert!(plain);
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_certificate_reloads_without_restart() {
    let (old, new) = (Pki::new(), Pki::new());
    let live = tempfile::tempdir().unwrap();
    let (cert, key) = (
        live.path().join("server.crt"),
        live.path().join("server.key"),
    );
    std::fs::copy(old.path("server.crt"), &cert).unwrap();
    std::fs::copy(old.path("server.key"), &key).unwrap();
    let cluster = Cluster::start(1);
    let gw = Gateway::start(
        &cluster,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--tls-reload-interval",
            "0.2",
        ],
    );
    let url = format!(
        "https://localhost:{}",
        gw.proc.addr().rsplit(':').next().unwrap()
    );
    // Whether a fresh connection trusting `pki`'s CA gets through.
    let trusted_by = |pki: &Pki| {
        let (url, tls) = (url.clone(), pki.client_options(false));
        async move {
            match DistributedClient::builder(url)
                .tls(tls)
                .retries(0, Duration::ZERO)
                .connect()
                .await
            {
                Ok(c) => c.health_check().await.is_ok(),
                Err(_) => false,
            }
        }
    };
    let client = DistributedClient::builder(url.clone())
        .tls(old.client_options(false))
        .connect()
        .await
        .unwrap();
    client.store("rotated_a", &frame(5)).await.unwrap();
    assert!(trusted_by(&old).await);
    assert!(!trusted_by(&new).await);

    // Rotate the files in place (key first, then certificate): new connections get the new one.
    write_atomic(
        &key,
        &std::fs::read_to_string(new.path("server.key")).unwrap(),
    );
    write_atomic(
        &cert,
        &std::fs::read_to_string(new.path("server.crt")).unwrap(),
    );
    assert!(
        eventually(Duration::from_secs(20), || trusted_by(&new)).await,
        "the new certificate was not picked up"
    );
    assert!(!trusted_by(&old).await);
    let client = DistributedClient::builder(url)
        .tls(new.client_options(false))
        .connect()
        .await
        .unwrap();
    assert!(client
        .load("rotated_a")
        .await
        .unwrap()
        .equals_missing(&frame(5)));
}

/// A loopback HTTP server for JWKS documents: `docs` by path, with a count of GETs per path.
struct JwksServer {
    addr: String,
    docs: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, (String, usize)>>>,
}

impl JwksServer {
    fn start() -> Self {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let docs = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
            String,
            (String, usize),
        >::new()));
        let served = docs.clone();
        // Detached: it dies with the test process.
        std::thread::spawn(move || {
            for mut stream in listener.incoming().map_while(Result::ok) {
                let mut line = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                // Skip the headers.
                let mut h = String::new();
                while reader.read_line(&mut h).map(|n| n > 2).unwrap_or(false) {
                    h.clear();
                }
                let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                let body = served.lock().unwrap().get_mut(&path).map(|(doc, hits)| {
                    *hits += 1;
                    doc.clone()
                });
                let resp = match body {
                    Some(b) => format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{b}", b.len()),
                    None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string(),
                };
                let _ = stream.write_all(resp.as_bytes());
            }
        });
        Self { addr, docs }
    }

    fn set(&self, path: &str, kids: &[&str]) {
        let key =
            EncodingKey::from_rsa_pem(&std::fs::read(keys().join("rsa_private.pem")).unwrap())
                .unwrap();
        let jwks: Vec<_> = kids
            .iter()
            .map(|kid| {
                let mut jwk =
                    jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
                jwk.common.key_id = Some(kid.to_string());
                jwk
            })
            .collect();
        let mut docs = self.docs.lock().unwrap();
        let hits = docs.get(path).map_or(0, |d| d.1);
        docs.insert(path.into(), (json!({ "keys": jwks }).to_string(), hits));
    }

    fn hits(&self, path: &str) -> usize {
        self.docs.lock().unwrap().get(path).map_or(0, |d| d.1)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jwks_url_is_cached_and_follows_rotation() {
    let jwks = JwksServer::start();
    jwks.set("/cached.json", &["c1"]);
    jwks.set("/rotating.json", &["r1"]);
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            r#"
[[jwt]]
issuer = "https://cached.test"
algorithms = ["RS256"]
jwks_url = "http://{a}/cached.json"
default_roles = ["all"]

[[jwt]]
issuer = "https://rotating.test"
algorithms = ["RS256"]
jwks_url = "http://{a}/rotating.json"
jwks_refresh_secs = 1
default_roles = ["all"]

[roles.all]
methods = ["*"]
datasets = ["*"]
"#,
            a = jwks.addr
        ),
    )
    .unwrap();
    let cluster = Cluster::start(1);
    let gw = Gateway::start(&cluster, &["--policy", policy.to_str().unwrap()]);
    let token = |iss: &str, kid: &str| {
        sign(
            Algorithm::RS256,
            kid,
            &json!({ "sub": "carol", "iss": iss, "exp": now() + 600 }),
        )
    };

    // Cached: many calls, one fetch.
    let cached = as_token(&gw, &token("https://cached.test", "c1")).await;
    cached.store("jwks_a", &frame(4)).await.unwrap();
    for _ in 0..10 {
        assert_eq!(cached.load("jwks_a").await.unwrap().height(), 4);
    }
    assert_eq!(jwks.hits("/cached.json"), 1);
    // A kid the JWKS does not list is refused.
    assert_eq!(
        code_of(
            as_token(&gw, &token("https://cached.test", "c9"))
                .await
                .load("jwks_a")
                .await
        ),
        Code::Unauthenticated
    );

    // Rotation at the URL: r2 replaces r1; once refreshed, r2 passes and r1 is refused.
    let (r1, r2) = (
        as_token(&gw, &token("https://rotating.test", "r1")).await,
        as_token(&gw, &token("https://rotating.test", "r2")).await,
    );
    assert_eq!(r1.load("jwks_a").await.unwrap().height(), 4);
    assert_eq!(code_of(r2.load("jwks_a").await), Code::Unauthenticated);
    jwks.set("/rotating.json", &["r2"]);
    assert!(
        eventually(Duration::from_secs(20), || async {
            r2.load("jwks_a").await.is_ok()
        })
        .await,
        "the rotated key was not fetched"
    );
    assert_eq!(code_of(r1.load("jwks_a").await), Code::Unauthenticated);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tls_files_are_refused() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();

    // At start: the gateway does not serve; it exits with an error that names the file.
    let mut child = std::process::Command::new(GATEWAY_BIN)
        .args([
            "--grpc-port",
            "0",
            "--metrics-port",
            "0",
            "--backend",
            "http://127.0.0.1:9",
        ])
        .arg("--tls-cert")
        .arg(&garbage)
        .arg("--tls-key")
        .arg(pki.path("server.key"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let until = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > until {
            let _ = child.kill();
            panic!("the gateway kept running with an unreadable certificate");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("garbage.pem"), "{stderr}");

    // While running: a broken file is refused and the certificate in force keeps serving; the
    // watcher is still alive afterwards (a good file is picked up).
    let live = tempfile::tempdir().unwrap();
    let (cert, key) = (
        live.path().join("server.crt"),
        live.path().join("server.key"),
    );
    std::fs::copy(pki.path("server.crt"), &cert).unwrap();
    std::fs::copy(pki.path("server.key"), &key).unwrap();
    let cluster = Cluster::start(1);
    let gw = Gateway::start(
        &cluster,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--tls-reload-interval",
            "0.2",
        ],
    );
    let url = format!(
        "https://localhost:{}",
        gw.proc.addr().rsplit(':').next().unwrap()
    );
    let trusted_by = |p: &Pki| {
        let (url, tls) = (url.clone(), p.client_options(false));
        async move {
            match DistributedClient::builder(url)
                .tls(tls)
                .retries(0, Duration::ZERO)
                .connect()
                .await
            {
                Ok(c) => c.health_check().await.is_ok(),
                Err(_) => false,
            }
        }
    };
    assert!(trusted_by(&pki).await);
    write_atomic(&cert, &std::fs::read_to_string(&garbage).unwrap());
    // Several reload polls (0.2 s, plus 0.2 s for the writer to finish).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        trusted_by(&pki).await,
        "a broken certificate file replaced the one in force"
    );
    let next = Pki::new();
    write_atomic(
        &key,
        &std::fs::read_to_string(next.path("server.key")).unwrap(),
    );
    write_atomic(
        &cert,
        &std::fs::read_to_string(next.path("server.crt")).unwrap(),
    );
    assert!(
        eventually(Duration::from_secs(20), || trusted_by(&next)).await,
        "the watcher stopped after the refusal"
    );
}
