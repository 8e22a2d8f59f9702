//! The run's signing step, right after an image is pushed (`--image-signing-key-file`): the
//! image is recorded only once its signatures are stored. An image that could not be signed is
//! deleted from the registry (best effort), so no unsigned checkpoint image lingers.

use std::path::Path;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;
use tracing::{info, warn};

use super::Error;
use super::run::Target;
use crate::context::Context;
use crate::image::build::PushedImage;
use crate::image::lookaside::SignatureStore;
use crate::image::registry::Registry;
use crate::image::signing::sign_pushed;
use crate::observe::metrics::OutcomeLabels;
use crate::storage::ArchiveStore;

/// Signs `pushed` (in `repo`) with the key in `key_file` and stores the signatures beside the
/// archives; publishes what was signed as an `ImageSigned` Event.
pub async fn sign(
    ctx: &Context,
    target: &Target<'_>,
    store: &ArchiveStore,
    registry: &Registry,
    pushed: &PushedImage,
    repo: &str,
    key_file: &Path,
) -> Result<(), Error> {
    let signatures = SignatureStore::new(store);
    let now = Timestamp::now().as_second();
    match sign_pushed(key_file, &signatures, pushed, repo, now).await {
        Ok(signed) => {
            ctx.metrics
                .checkpoints
                .get_or_create(&OutcomeLabels {
                    outcome: "signed".into(),
                })
                .inc();
            info!(image = %pushed.reference, key = %signed.fingerprint, "checkpoint image signed");
            let note = format!(
                "signed {} (index {} and platform manifest {}) with key {}",
                pushed.reference, pushed.index_digest, pushed.manifest_digest, signed.fingerprint
            );
            ctx.publish(target.checkpoint, EventType::Normal, "ImageSigned", &note)
                .await;
            Ok(())
        }
        Err(source) => {
            for digest in [&pushed.index_digest, &pushed.manifest_digest] {
                if let Err(e) = registry.delete_manifest(repo, digest).await {
                    warn!(error = %e, "could not delete an image that was not signed");
                }
            }
            // Whatever part of the signatures was stored goes too.
            if let Err(e) = signatures.delete_image(repo, &pushed.index_digest).await {
                warn!(error = %e, "could not delete the signatures of an image not signed");
            }
            Err(Error::Sign {
                checkpoint: target.id.clone(),
                image: pushed.reference.clone(),
                source: Box::new(source),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::sign::KeyError;
    use crate::image::signing::SigningError;
    use crate::storage::StoreError;

    fn failed(source: SigningError) -> Error {
        Error::Sign {
            checkpoint: "ops/c".into(),
            image: "r/c@sha256:1".into(),
            source: Box::new(source),
        }
    }

    #[test]
    fn a_key_that_cannot_sign_ends_the_run_and_unreachable_s3_is_retried() {
        let key = failed(SigningError::Key(KeyError::PublicKey {
            path: "/keys/sign.asc".into(),
        }));
        assert!(key.ends_the_run(), "the key file must be fixed");
        assert_eq!(key.metric_label(), "Sign");
        assert!(key.to_string().contains("/keys/sign.asc"), "{key}");
        assert!(key.to_string().contains("not signed"), "{key}");
        let store = |transient| {
            failed(SigningError::Store {
                image: "r/c@sha256:1".into(),
                source: StoreError::Request {
                    op: "write",
                    bucket: "b".into(),
                    key: "sigstore/x".into(),
                    reason: "down".into(),
                    transient,
                },
            })
        };
        assert!(!store(true).ends_the_run(), "S3 may come back");
        assert!(store(false).ends_the_run(), "S3 refused the write");
    }
}
