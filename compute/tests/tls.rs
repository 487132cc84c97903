//! TLS and mutual TLS on the standalone server, with certificates made for the test.

mod common;

use std::path::{Path, PathBuf};

use common::{Worker, WorkerConfig};
use polars::prelude::*;
use polarway::{DistributedClient, TlsOptions};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA, a server certificate for localhost/127.0.0.1 and a client certificate, as PEM files.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.pem()).unwrap();
        for (name, sans) in [
            (
                "server",
                vec!["localhost".to_string(), "127.0.0.1".to_string()],
            ),
            ("client", vec!["client".to_string()]),
        ] {
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(sans)
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            std::fs::write(dir.path().join(format!("{name}.crt")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        }
        Self { dir }
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    fn server_args(&self, mutual: bool) -> WorkerConfig {
        let cfg = WorkerConfig::default()
            .arg("--tls-cert")
            .arg(self.path("server.crt").display().to_string())
            .arg("--tls-key")
            .arg(self.path("server.key").display().to_string());
        if mutual {
            cfg.arg("--tls-ca")
                .arg(self.path("ca.crt").display().to_string())
        } else {
            cfg
        }
    }

    fn options(&self, with_client_cert: bool) -> TlsOptions {
        TlsOptions {
            ca_cert: Some(self.path("ca.crt")),
            client_cert: with_client_cert.then(|| self.path("client.crt")),
            client_key: with_client_cert.then(|| self.path("client.key")),
            domain: None,
        }
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
    let worker = Worker::start_with(pki.server_args(false));
    let client = DistributedClient::builder(https(&worker))
        .tls(pki.options(false))
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
    let worker = Worker::start_with(pki.server_args(true));
    let client = DistributedClient::builder(https(&worker))
        .tls(pki.options(true))
        .connect()
        .await
        .unwrap();
    round_trip(&client).await;
    // Without a client certificate the handshake (or the first call) fails.
    let anonymous = DistributedClient::builder(https(&worker))
        .tls(pki.options(false))
        .retries(0, Default::default())
        .connect()
        .await;
    let refused = match anonymous {
        Err(_) => true,
        Ok(c) => c.health_check().await.is_err(),
    };
    assert!(refused, "mTLS must refuse a client without a certificate");
}
