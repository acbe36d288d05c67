//! The certificate the service serves itself (`server.tls`): rustls with the ring provider,
//! read again whenever its files change, so that a renewal (certbot, a Kubernetes secret,
//! cert-manager) needs no restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::TlsConfig;

/// The certificate being served, and where it comes from.
pub struct Certificate {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// A digest of the files' contents the current certificate was made from (the key's
    /// bytes are not kept).
    loaded_from: Digest,
    /// How often the files are looked at.
    reload: Duration,
    provider: Arc<CryptoProvider>,
}

/// The certificate file's and the key file's bytes.
type Files = (Vec<u8>, Vec<u8>);

/// SHA-256 of both files.
type Digest = [u8; 32];

fn digest((cert, key): &Files) -> Digest {
    use sha2::{Digest as _, Sha256};
    Sha256::new().chain_update(cert).chain_update([0]).chain_update(key).finalize().into()
}

/// rustls wants its resolvers printable: the path, never the key.
impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate").field("cert_file", &self.cert_file).finish_non_exhaustive()
    }
}

impl Certificate {
    /// Loads the files now: a service that cannot serve its certificate does not start.
    pub fn load(config: &TlsConfig) -> anyhow::Result<Arc<Certificate>> {
        let provider = myscanner_protocol::tls::provider();
        let files = read_files(&config.cert_file, &config.key_file)?;
        let key = certified_key(&files, &provider)?;
        Ok(Arc::new(Certificate {
            cert_file: config.cert_file.clone(),
            key_file: config.key_file.clone(),
            current: RwLock::new(Arc::new(key)),
            loaded_from: digest(&files),
            reload: Duration::from_secs(config.reload_secs),
            provider,
        }))
    }

    /// What to accept TLS connections with. ALPN offers HTTP/1.1 only: the WebSocket routes
    /// (tunnels, sessions) are upgrades of HTTP/1.1 GETs, which a browser that negotiated
    /// HTTP/2 would attempt as extended CONNECTs instead.
    pub fn acceptor(self: &Arc<Self>) -> TlsAcceptor {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    }

    /// Checks the files every `server.tls.reload_secs` until `cancel`, and serves what they hold once it
    /// has changed and loads; a pair caught half-written, or broken, leaves the current
    /// certificate in place (and is tried again at the next check).
    pub async fn watch(self: Arc<Self>, cancel: CancellationToken) {
        let mut seen = self.loaded_from;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(self.reload) => {}
            }
            // Unreadable for a moment (being replaced): looked at again next time.
            let Ok(files) = read_files(&self.cert_file, &self.key_file) else { continue };
            let now = digest(&files);
            if now == seen {
                continue;
            }
            match certified_key(&files, &self.provider) {
                Ok(key) => {
                    *self.current.write().expect("certificate lock") = Arc::new(key);
                    tracing::info!(cert_file = %self.cert_file.display(), "TLS certificate reloaded");
                }
                Err(error) => tracing::warn!(
                    error = format!("{error:#}"),
                    "the TLS certificate files changed but do not load; serving the previous certificate"
                ),
            }
            seen = now;
        }
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().expect("certificate lock").clone())
    }
}

fn read_files(cert_file: &Path, key_file: &Path) -> anyhow::Result<Files> {
    let cert =
        std::fs::read(cert_file).with_context(|| format!("reading server.tls.cert_file {}", cert_file.display()))?;
    let key = std::fs::read(key_file).with_context(|| format!("reading server.tls.key_file {}", key_file.display()))?;
    Ok((cert, key))
}

/// The chain and its key (PEM), checked to belong together.
fn certified_key((cert, key): &Files, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert).collect::<Result<_, _>>().context("server.tls.cert_file: not PEM")?;
    anyhow::ensure!(!chain.is_empty(), "server.tls.cert_file holds no certificate");
    let key = PrivateKeyDer::from_pem_slice(key).context("server.tls.key_file: no PEM private key")?;
    CertifiedKey::from_der(chain, key, provider).context("server.tls: the key does not match the certificate")
}
