//! Certificates made for a test: a certificate authority and the certificates it signs, written
//! as PEM files into a directory the test owns.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

pub type Ca = CertifiedIssuer<'static, KeyPair>;

/// A new CA, its certificate written to `dir/NAME.crt`.
pub fn ca(dir: &Path, name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), ca.pem()).unwrap();
    ca
}

/// A certificate for the names `sans` signed by `ca`, written to `dir/NAME.crt` and `dir/NAME.key`.
pub fn leaf(dir: &Path, ca: &Ca, name: &str, sans: &[&str]) {
    let key = KeyPair::generate().unwrap();
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let cert = CertificateParams::new(sans)
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

/// The usual set in a temporary directory: `ca.crt`, `server.crt`/`server.key` for localhost and
/// 127.0.0.1, and `client.crt`/`client.key` for mutual TLS.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let authority = ca(dir.path(), "ca");
        leaf(
            dir.path(),
            &authority,
            "server",
            &["localhost", "127.0.0.1"],
        );
        leaf(dir.path(), &authority, "client", &["client"]);
        Self { dir }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// `path` as a string, for command-line arguments.
    pub fn arg(&self, file: &str) -> String {
        self.path(file).display().to_string()
    }

    /// Client options that trust this CA, with the client certificate or without.
    pub fn client_options(&self, with_client_cert: bool) -> polarway::TlsOptions {
        polarway::TlsOptions {
            ca_cert: Some(self.path("ca.crt")),
            client_cert: with_client_cert.then(|| self.path("client.crt")),
            client_key: with_client_cert.then(|| self.path("client.key")),
            domain: None,
        }
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}
