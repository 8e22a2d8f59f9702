//! The heartbeat tokens file (`cluster=token` lines, a mounted Secret), read at start and re-read
//! while the operator runs: a rotated token is accepted and a removed one refused without a
//! restart. Content that does not parse never replaces the tokens in use.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::server::{Beats, Tokens, TokensError};

/// How often the file is re-read (the kubelet updates a mounted Secret within about a minute).
pub const RELOAD_EVERY: Duration = Duration::from_secs(30);

/// Why the tokens file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TokensFileError {
    #[error("failed to read heartbeat tokens from {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read heartbeat tokens from {path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: TokensError,
    },
}

/// The tokens in `path` and the digest of its content.
pub async fn read(path: &Path) -> Result<(Tokens, [u8; 32]), TokensFileError> {
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|source| TokensFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
    let tokens = Tokens::parse(&text).map_err(|source| TokensFileError::Parse {
        path: path.display().to_string(),
        source,
    })?;
    Ok((tokens, Sha256::digest(text.as_bytes()).into()))
}

/// Loads `path` into `beats` when its content differs from the one read as `current`; the new
/// digest and the number of clusters, or `None` when nothing changed.
pub async fn reload(
    beats: &Beats,
    path: &Path,
    current: [u8; 32],
) -> Result<Option<([u8; 32], usize)>, TokensFileError> {
    let (tokens, digest) = read(path).await?;
    if digest == current {
        return Ok(None);
    }
    let clusters = tokens.clusters();
    beats.set_tokens(tokens);
    Ok(Some((digest, clusters)))
}

/// Re-reads `path` every [`RELOAD_EVERY`] until `stop` (see [`reload`]); a file that does not
/// load is logged and the tokens in use stay.
pub fn reload_on_change(
    beats: Arc<Beats>,
    path: PathBuf,
    loaded: [u8; 32],
    stop: CancellationToken,
) {
    super::reload_every(RELOAD_EVERY, stop, loaded, move |current| {
        let (beats, path) = (beats.clone(), path.clone());
        async move {
            match reload(&beats, &path, current).await {
                Ok(Some((digest, clusters))) => {
                    tracing::info!(path = %path.display(), clusters, "heartbeat tokens reloaded");
                    digest
                }
                Ok(None) => current,
                Err(e) => {
                    tracing::warn!(error = %e, "kept the heartbeat tokens in use");
                    current
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn bearer(token: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", format!("Bearer {token}").parse().unwrap());
        h
    }

    #[tokio::test]
    async fn a_rotated_token_is_accepted_and_the_old_one_refused_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "cluster1=old-token-0123456789abcdef\n").unwrap();
        let (tokens, digest) = read(&path).await.unwrap();
        let (beats, _changes) = crate::detect::beats(tokens, Default::default());
        assert_eq!(
            beats
                .cluster_of(&bearer("old-token-0123456789abcdef"))
                .as_deref(),
            Some("cluster1")
        );
        assert_eq!(
            reload(&beats, &path, digest).await.unwrap(),
            None,
            "unchanged"
        );

        // The kubelet swaps a mounted Secret's file: a new file takes the old name.
        let next = dir.path().join("tokens.new");
        std::fs::write(&next, "cluster1=new-token-0123456789abcdef\n").unwrap();
        std::fs::rename(&next, &path).unwrap();
        let (digest, clusters) = reload(&beats, &path, digest).await.unwrap().unwrap();
        assert_eq!(clusters, 1);
        assert_eq!(
            beats
                .cluster_of(&bearer("new-token-0123456789abcdef"))
                .as_deref(),
            Some("cluster1")
        );
        assert_eq!(
            beats.cluster_of(&bearer("old-token-0123456789abcdef")),
            None
        );

        // A broken file (a weak token) or a missing one keeps the tokens in use.
        std::fs::write(&path, "cluster1=short\n").unwrap();
        let e = reload(&beats, &path, digest).await.unwrap_err().to_string();
        assert!(e.contains("line 1") && !e.contains("=short"), "{e}");
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            reload(&beats, &path, digest).await,
            Err(TokensFileError::Read { .. })
        ));
        assert_eq!(
            beats
                .cluster_of(&bearer("new-token-0123456789abcdef"))
                .as_deref(),
            Some("cluster1")
        );
    }
}
