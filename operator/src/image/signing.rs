//! The signing step after a push: read the key file (each time, so a rotated Secret is used at
//! once), sign the index digest (what status and Git record, `host/repo@sha256:<index>`) and each
//! platform manifest digest (what containers/image checks when it pulls that index and picks the
//! node's platform), and store the signatures in the lookaside ([`super::lookaside`]).

use std::path::Path;

use super::build::PushedImage;
use super::lookaside::{ImageSignatures, SignatureStore};
use super::sign::{KeyError, SignError, SigningKey};
use crate::storage::StoreError;

/// Why an image was not signed.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error("failed to store the signatures of image {image}: {source}")]
    Store {
        image: String,
        #[source]
        source: StoreError,
    },
}

impl SigningError {
    /// Retrying can help (S3 unreachable); otherwise the key file must be fixed.
    pub fn transient(&self) -> bool {
        match self {
            SigningError::Store { source, .. } => source.unreachable().is_some(),
            SigningError::Key(_) | SigningError::Sign(_) => false,
        }
    }
}

/// What was signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signed {
    /// Fingerprint of the key that signed.
    pub fingerprint: String,
    /// The digests signed: the index, then the platform manifest.
    pub digests: Vec<String>,
    /// The objects written.
    pub keys: Vec<String>,
}

/// The signatures' identity: `host/repo:<immutable tag>`. containers/image's default
/// `matchRepoDigestOrExact` refuses a name-only identity (`host/repo`); with a tag it accepts a
/// pull by digest of the same repository (what nodes do) and a pull by that exact tag.
pub fn docker_reference(pushed: &PushedImage) -> String {
    let name = pushed
        .reference
        .split_once('@')
        .map_or(pushed.reference.as_str(), |(name, _)| name);
    format!("{name}:{}", pushed.tag)
}

/// Signs `pushed` (in `repo`) with the key in `key_file` and stores the signatures.
pub async fn sign_pushed(
    key_file: &Path,
    store: &SignatureStore,
    pushed: &PushedImage,
    repo: &str,
    unix_seconds: i64,
) -> Result<Signed, SigningError> {
    let key = SigningKey::read(key_file).await?;
    let identity = docker_reference(pushed);
    let index = (
        pushed.index_digest.clone(),
        key.sign_manifest(&identity, &pushed.index_digest, unix_seconds)?,
    );
    let instance = (
        pushed.manifest_digest.clone(),
        key.sign_manifest(&identity, &pushed.manifest_digest, unix_seconds)?,
    );
    let signatures = ImageSignatures {
        repo: repo.to_owned(),
        index,
        instances: vec![instance],
    };
    let keys = store
        .put_image(&signatures)
        .await
        .map_err(|source| SigningError::Store {
            image: pushed.reference.clone(),
            source,
        })?;
    Ok(Signed {
        fingerprint: key.fingerprint().to_owned(),
        digests: vec![pushed.index_digest.clone(), pushed.manifest_digest.clone()],
        keys,
    })
}
