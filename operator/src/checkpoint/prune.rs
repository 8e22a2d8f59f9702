//! Retention: the archives and images of history records beyond the retention are deleted, and
//! with an image its signatures ([`crate::image::lookaside`]).

use tracing::warn;
use transition_crds::checkpoint::CheckpointRecord;

use crate::image::lookaside::SignatureStore;
use crate::image::registry::Registry;
use crate::observe::metrics::{Metrics, OutcomeLabels};
use crate::storage::ArchiveStore;

/// The `(repository, digest)` of a pushed image reference `host/repo@sha256:…` (pure).
pub fn repository_and_digest(image: &str) -> Option<(&str, &str)> {
    let (name, digest) = image.split_once('@')?;
    let (_, repo) = name.split_once('/')?;
    Some((repo, digest))
}

/// Deletes what `dropped` records point at. Failures are logged: a leftover object costs space,
/// never correctness.
pub async fn prune(
    metrics: &Metrics,
    store: &ArchiveStore,
    registry: &Registry,
    dropped: &[CheckpointRecord],
) {
    for r in dropped {
        if let Some(key) = &r.archive_key
            && let Err(e) = store.delete(key).await
        {
            warn!(error = %e, "failed to prune an old archive");
        }
        if let Some((repo, digest)) = r.image.as_deref().and_then(repository_and_digest) {
            if let Err(e) = registry.delete_manifest(repo, digest).await {
                warn!(error = %e, "failed to prune an old checkpoint image");
            }
            if let Err(e) = SignatureStore::new(store).delete_image(repo, digest).await {
                warn!(error = %e, "failed to prune the signatures of an old checkpoint image");
            }
        }
    }
    if !dropped.is_empty() {
        metrics
            .checkpoints
            .get_or_create(&OutcomeLabels {
                outcome: "pruned".into(),
            })
            .inc_by(dropped.len() as u64);
    }
}

/// Deletes the archives of `records`, and with `images` (the registry, and the digests that must
/// stay) their images and the images' signatures too; returns what could not be deleted, one
/// line per object.
pub async fn delete_records(
    store: &ArchiveStore,
    images: Option<(&Registry, &[String])>,
    records: &[CheckpointRecord],
) -> Vec<String> {
    let mut left = Vec::new();
    for r in records {
        if let Some(key) = &r.archive_key
            && let Err(e) = store.delete(key).await
        {
            left.push(e.to_string());
        }
        let Some((registry, pinned)) = images else {
            continue;
        };
        if let Some((repo, digest)) = r.image.as_deref().and_then(repository_and_digest)
            && !pinned.iter().any(|p| p == digest)
        {
            if let Err(e) = registry.delete_manifest(repo, digest).await {
                left.push(e.to_string());
            }
            if let Err(e) = SignatureStore::new(store).delete_image(repo, digest).await {
                left.push(e.to_string());
            }
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pushed_reference_names_its_repository_and_digest() {
        assert_eq!(
            repository_and_digest("127.0.0.1:5000/checkpoints/default/counter-counter@sha256:ab"),
            Some(("checkpoints/default/counter-counter", "sha256:ab"))
        );
        assert_eq!(repository_and_digest("no-digest:tag"), None);
    }
}
