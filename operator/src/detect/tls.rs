//! HTTPS for the heartbeat endpoint. Agents run in other clusters and reach the operator across
//! networks, so the endpoint serves TLS from a mounted `kubernetes.io/tls` Secret (`tls.crt`,
//! `tls.key`) and the agents verify it with a CA bundle. The files are read again when they
//! change (a Secret update, a cert-manager renewal), without a restart; a pair that does not load
//! is refused with a warning and the one in use stays.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

/// How often the certificate files are looked at for a change.
pub const RELOAD_EVERY: Duration = Duration::from_secs(30);

/// The certificate and key files of the endpoint.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("failed to read the heartbeat TLS file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "failed to load the heartbeat TLS certificate {cert} with key {key} (PEM certificate chain and its private key expected): {source}"
    )]
    Load {
        cert: String,
        key: String,
        #[source]
        source: std::io::Error,
    },
}

impl TlsFiles {
    async fn read(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        let read = |path: &Path| {
            let path = path.to_owned();
            async move {
                tokio::fs::read(&path)
                    .await
                    .map_err(|source| TlsError::Read {
                        path: path.display().to_string(),
                        source,
                    })
            }
        };
        Ok((read(&self.cert).await?, read(&self.key).await?))
    }

    fn load_error(&self, source: std::io::Error) -> TlsError {
        TlsError::Load {
            cert: self.cert.display().to_string(),
            key: self.key.display().to_string(),
            source,
        }
    }

    /// The server configuration of the current files (refused when they do not load).
    pub async fn load(&self) -> Result<(RustlsConfig, [u8; 32]), TlsError> {
        let (cert, key) = self.read().await?;
        let digest = digest(&cert, &key);
        let config = RustlsConfig::from_pem(cert, key)
            .await
            .map_err(|e| self.load_error(e))?;
        Ok((config, digest))
    }

    /// Re-reads the files every [`RELOAD_EVERY`] until `stop`; a changed pair that loads
    /// replaces the one `config` serves (new connections use it), one that does not is logged.
    pub fn reload_on_change(
        &self,
        config: RustlsConfig,
        loaded: [u8; 32],
        stop: CancellationToken,
    ) {
        let files = self.clone();
        super::reload_every(RELOAD_EVERY, stop, loaded, move |current| {
            let (files, config) = (files.clone(), config.clone());
            async move {
                match files.reload(&config, current).await {
                    Ok(Some(d)) => {
                        tracing::info!(cert = %files.cert.display(), "heartbeat TLS certificate reloaded");
                        d
                    }
                    Ok(None) => current,
                    Err(e) => {
                        tracing::warn!(error = %e, "kept the heartbeat TLS certificate in use");
                        current
                    }
                }
            }
        });
    }

    /// Loads the files into `config` when their content differs from `current`; the new digest.
    pub async fn reload(
        &self,
        config: &RustlsConfig,
        current: [u8; 32],
    ) -> Result<Option<[u8; 32]>, TlsError> {
        let (cert, key) = self.read().await?;
        let d = digest(&cert, &key);
        if d == current {
            return Ok(None);
        }
        config
            .reload_from_pem(cert, key)
            .await
            .map_err(|e| self.load_error(e))?;
        Ok(Some(d))
    }
}

fn digest(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((cert.len() as u64).to_be_bytes());
    h.update(cert);
    h.update(key);
    h.finalize().into()
}

/// Serves `app` on `listener` with TLS from `config` until `stop` (connections get 5 s to end).
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: RustlsConfig,
    app: axum::Router,
    stop: CancellationToken,
) -> std::io::Result<()> {
    let handle = axum_server::Handle::new();
    let shutdown = handle.clone();
    tokio::spawn(async move {
        stop.cancelled().await;
        shutdown.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    axum_server::from_tcp_rustls(listener.into_std()?, config)?
        .handle(handle)
        .serve(app.into_make_service())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pair_that_is_not_pem_is_refused_naming_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        std::fs::write(&files.cert, "not a certificate").unwrap();
        std::fs::write(&files.key, "not a key").unwrap();
        let e = files.load().await.err().unwrap().to_string();
        assert!(e.contains("tls.crt") && e.contains("tls.key"), "{e}");
    }

    #[tokio::test]
    async fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("absent.crt"),
            key: dir.path().join("absent.key"),
        };
        let e = files.load().await.err().unwrap().to_string();
        assert!(e.contains("absent.crt"), "{e}");
    }
}
