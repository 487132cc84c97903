//! TLS with rustls (ALPN h2): the gateway's server certificate, optional mutual TLS (clients must
//! present a certificate signed by `--tls-ca`), reloaded without restart when the files change or
//! on SIGHUP (a bad file is refused and the certificate in force stays); and the client side
//! toward workers (`https://` backends).

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |m: String| TlsError::File {
        path: path.into(),
        message: m,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate in the file".into()));
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        path: path.into(),
        message: e.to_string(),
    })
}

fn roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs(path)? {
        roots.add(c).map_err(|e| TlsError::File {
            path: path.into(),
            message: e.to_string(),
        })?;
    }
    Ok(roots)
}

#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Mutual TLS: clients must present a certificate from this CA.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    fn paths(&self) -> Vec<&PathBuf> {
        [&self.cert, &self.key]
            .into_iter()
            .chain(self.client_ca.as_ref())
            .collect()
    }

    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)?), provider())
                        .build()
                        .map_err(|e| TlsError::File {
                            path: ca.clone(),
                            message: e.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs(&self.cert)?, key(&self.key)?)
            .map_err(|e| TlsError::File {
                path: self.cert.clone(),
                message: format!(
                    "not a usable certificate for the key {}: {e}",
                    self.key.display()
                ),
            })?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// The server TLS configuration in force.
pub struct ServerTls {
    files: TlsFiles,
    current: RwLock<Arc<ServerConfig>>,
}

impl ServerTls {
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        let config = files.server_config()?;
        Ok(Self {
            files,
            current: RwLock::new(Arc::new(config)),
        })
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().unwrap().clone())
    }

    pub fn reload(&self) {
        match self.files.server_config() {
            Ok(c) => {
                *self.current.write().unwrap() = Arc::new(c);
                tracing::info!("TLS certificate reloaded");
            }
            Err(e) => tracing::error!("TLS files refused, the certificate in force stays: {e}"),
        }
    }
}

/// Reload when the files change (polled) or on SIGHUP.
pub async fn watch(tls: Arc<ServerTls>, poll: Duration) {
    let files = tls.files.paths().into_iter().cloned().collect::<Vec<_>>();
    // Let a writer finish both files (certificate and key) before reading them.
    polarway_access::reload::on_change(
        "TLS certificate",
        poll,
        Duration::from_millis(200),
        move || files.clone(),
        move || tls.reload(),
    )
    .await
}

/// TLS toward workers: trust `ca` (none: no `https://` backend can be verified), and present
/// `identity` (cert, key) for mutual TLS.
pub fn client_config(
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientConfig, TlsError> {
    let roots = match ca {
        Some(ca) => roots(ca)?,
        None => RootCertStore::empty(),
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match identity {
        Some((cert, k)) => builder.with_client_auth_cert(certs(cert)?, key(k)?)?,
        None => builder.with_no_client_auth(),
    })
}
