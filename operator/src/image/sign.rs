//! Image signatures in containers/image's "simple signing" format (`containers-signature(5)`):
//! a JSON payload naming the image (`docker-reference`) and one manifest digest, wrapped in a
//! binary OpenPGP signed message (not a detached signature) made with the operator's key. skopeo,
//! podman, CRI-O and buildah verify it with a `signedBy` / `GPGKeys` policy requirement
//! (docs/images.md#signatures). Pure: the key is parsed from text the caller read, and signing
//! touches no file or network.

use pgp::composed::{Deserializable, MessageBuilder, SignedSecretKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::types::{KeyDetails, Password};
use serde_json::json;

/// `critical.type` of every simple signature.
pub const SIGNATURE_TYPE: &str = "atomic container signature";

/// Largest key file read (an armored Ed25519 or RSA-4096 secret key is a few KiB).
pub const MAX_KEY_FILE_BYTES: u64 = 1 << 20;

/// Why the signing key cannot be used. The messages name the file and never echo its content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("failed to read the image signing key {path}: {reason}")]
    Read { path: String, reason: String },
    #[error(
        "failed to use the image signing key {path}: it is a PUBLIC key; mount the secret key (`gpg --armor --export-secret-keys KEYID`)"
    )]
    PublicKey { path: String },
    #[error(
        "failed to use the image signing key {path}: not an ASCII-armored OpenPGP secret key (`-----BEGIN PGP PRIVATE KEY BLOCK-----`)"
    )]
    NotArmoredSecretKey { path: String },
    #[error("failed to use the image signing key {path}: the OpenPGP secret key does not parse")]
    Malformed { path: String },
    #[error(
        "failed to use the image signing key {path}: it is protected by a passphrase; export a key without one"
    )]
    Passphrase { path: String },
    #[error(
        "failed to use the image signing key {path}: its primary key may not sign (containers/image accepts only signatures by a primary key; a signing subkey is refused by the nodes)"
    )]
    NoSigningKey { path: String },
}

/// Why a payload could not be built or signed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error("failed to sign image {reference}: {digest:?} is not a sha256 manifest digest")]
    BadDigest { reference: String, digest: String },
    #[error("failed to sign image {reference}: the OpenPGP signature could not be made: {reason}")]
    Sign { reference: String, reason: String },
}

/// The operator's signing key (the secret parts never reach `Debug` or an error). Its PRIMARY
/// key signs: containers/image compares the signing key's fingerprint with the fingerprints of
/// the keys it imported from the policy, which are primary keys' — a subkey's signature is
/// refused on the nodes, so a key whose primary may not sign is refused here.
pub struct SigningKey {
    key: SignedSecretKey,
    fingerprint: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.fingerprint)
    }
}

/// `sha256:` and 64 lowercase hex digits (the only digests the operator pushes).
pub fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// The simple-signing payload for `docker_reference` (`host/repo:tag`; containers/image refuses
/// a name-only identity) and one manifest digest (pure).
pub fn payload(
    docker_reference: &str,
    manifest_digest: &str,
    creator: &str,
    unix_seconds: i64,
) -> Result<Vec<u8>, SignError> {
    if !is_sha256_digest(manifest_digest) {
        return Err(SignError::BadDigest {
            reference: docker_reference.to_owned(),
            digest: manifest_digest.to_owned(),
        });
    }
    let body = json!({
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": manifest_digest},
            "type": SIGNATURE_TYPE,
        },
        "optional": {"creator": creator, "timestamp": unix_seconds},
    });
    Ok(serde_json::to_vec(&body).unwrap_or_default())
}

impl SigningKey {
    /// Parses an ASCII-armored secret key without passphrase; `path` only names it in errors.
    pub fn from_armored(path: &str, text: &str) -> Result<SigningKey, KeyError> {
        let path = path.to_owned();
        let begin = text
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("-----BEGIN PGP "));
        match begin {
            Some("-----BEGIN PGP PRIVATE KEY BLOCK-----") => {}
            Some("-----BEGIN PGP PUBLIC KEY BLOCK-----") => {
                return Err(KeyError::PublicKey { path });
            }
            _ => return Err(KeyError::NotArmoredSecretKey { path }),
        }
        // rPGP's parse errors may quote packet bytes: they are dropped, the file is named.
        let (key, _) = SignedSecretKey::from_armor_single(text.as_bytes())
            .map_err(|_| KeyError::Malformed { path: path.clone() })?;
        if key.primary_key.secret_params().is_encrypted() {
            return Err(KeyError::Passphrase { path });
        }
        let primary_signs = key
            .details
            .users
            .iter()
            .flat_map(|u| u.signatures.iter())
            .chain(key.details.direct_signatures.iter())
            .any(|s| s.key_flags().sign());
        if !primary_signs {
            return Err(KeyError::NoSigningKey { path });
        }
        let fingerprint = format!("{:X}", key.primary_key.fingerprint());
        Ok(SigningKey { key, fingerprint })
    }

    /// Reads and parses the key file (read at each use, so a rotated Secret is used at once).
    pub async fn read(path: &std::path::Path) -> Result<SigningKey, KeyError> {
        let name = path.display().to_string();
        let read_error = |reason: String| KeyError::Read {
            path: name.clone(),
            reason,
        };
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| read_error(e.to_string()))?;
        if meta.len() > MAX_KEY_FILE_BYTES {
            return Err(read_error(format!(
                "{} bytes, more than the {MAX_KEY_FILE_BYTES} a key file may hold",
                meta.len()
            )));
        }
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| read_error(e.to_string()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| KeyError::NotArmoredSecretKey { path: name.clone() })?;
        SigningKey::from_armored(&name, &text)
    }

    /// Fingerprint of the key that signs (40 uppercase hex digits for a v4 key), as `gpg
    /// --fingerprint` and `skopeo standalone-verify` write it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// `payload` as a binary OpenPGP signed message (one-pass signature, literal data,
    /// signature), the form containers/image reads from a lookaside.
    pub fn sign(&self, reference: &str, payload: &[u8]) -> Result<Vec<u8>, SignError> {
        let fail = |e: pgp::errors::Error| SignError::Sign {
            reference: reference.to_owned(),
            reason: e.to_string(),
        };
        let signer: &dyn pgp::types::SigningKey = &self.key.primary_key;
        let hash = match signer.hash_alg() {
            h @ (HashAlgorithm::Sha384 | HashAlgorithm::Sha512) => h,
            _ => HashAlgorithm::Sha256,
        };
        let mut builder = MessageBuilder::from_bytes("", payload.to_vec());
        builder.sign(signer, Password::empty(), hash);
        builder.to_vec(rand::thread_rng()).map_err(fail)
    }

    /// Signs `digest` of `docker_reference` now: the signature blob to store.
    pub fn sign_manifest(
        &self,
        docker_reference: &str,
        digest: &str,
        unix_seconds: i64,
    ) -> Result<Vec<u8>, SignError> {
        let creator = format!("transition-operator {}", env!("CARGO_PKG_VERSION"));
        let body = payload(docker_reference, digest, &creator, unix_seconds)?;
        self.sign(docker_reference, &body)
    }
}

#[cfg(test)]
mod tests;
