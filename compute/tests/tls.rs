//! TLS and mutual TLS on the standalone server, with certificates made for the test.

use std::path::Path;

use crate::common::{Worker, WorkerConfig};
use polars::prelude::*;
use polarway::{DistributedClient, TlsOptions};
use polarway_testkit::pki::Pki;

/// The worker's TLS flags for the test certificates (`--tls-ca` too for mutual TLS).
fn server_args(pki: &Pki, mutual: bool) -> WorkerConfig {
    let cfg = WorkerConfig::default()
        .arg("--tls-cert")
        .arg(pki.path("server.crt").display().to_string())
        .arg("--tls-key")
        .arg(pki.path("server.key").display().to_string());
    if mutual {
        cfg.arg("--tls-ca")
            .arg(pki.path("ca.crt").display().to_string())
    } else {
        cfg
    }
}

async fn round_trip(client: &DistributedClient) {
    let df = df! { "a" => &[1i64, 2], "b" => &["x", "y"] }.unwrap();
    client.store("secure", &df).await.unwrap();
    assert!(client.load("secure").await.unwrap().equals_missing(&df));
}

fn https(worker: &Worker) -> String {
    format!("https://localhost:{}", worker.port())
}

#[tokio::test(flavor = "multi_thread")]
async fn tls() {
    let pki = Pki::new();
    let worker = Worker::start_with(server_args(&pki, false));
    let client = DistributedClient::builder(https(&worker))
        .tls(pki.client_options(false))
        .connect()
        .await
        .unwrap();
    round_trip(&client).await;
    // Plaintext to a TLS port fails; so does TLS without trusting the CA.
    let plain = DistributedClient::builder(worker.url())
        .retries(0, Default::default())
        .connect()
        .await;
    let failed = match plain {
        Err(_) => true,
        Ok(c) => c.health_check().await.is_err(),
    };
    assert!(failed, "plaintext must not work against a TLS server");
    let untrusted = TlsOptions {
        ca_cert: Some(Path::new(&pki.path("client.crt")).to_path_buf()),
        ..Default::default()
    };
    let r = DistributedClient::builder(https(&worker))
        .tls(untrusted)
        .retries(0, Default::default())
        .connect()
        .await;
    assert!(r.is_err() || r.unwrap().health_check().await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls() {
    let pki = Pki::new();
    let worker = Worker::start_with(server_args(&pki, true));
    let client = DistributedClient::builder(https(&worker))
        .tls(pki.client_options(true))
        .connect()
        .await
        .unwrap();
    round_trip(&client).await;
    // Without a client certificate the handshake (or the first call) fails.
    let anonymous = DistributedClient::builder(https(&worker))
        .tls(pki.client_options(false))
        .retries(0, Default::default())
        .connect()
        .await;
    let refused = match anonymous {
        Err(_) => true,
        Ok(c) => c.health_check().await.is_err(),
    };
    assert!(refused, "mTLS must refuse a client without a certificate");
}
