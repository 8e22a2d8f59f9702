//! Where image signatures live: objects in the checkpoint bucket laid out as a containers/image
//! "lookaside" (`sigstore/<repo>@sha256=<hex>/signature-<n>`), served read-only at
//! `GET /sigstore/<repo>@sha256=<hex>/signature-<n>` beside the heartbeat endpoint, so a node's
//! `registries.d` names `lookaside: https://<operator>/sigstore` (docs/images.md#signatures).
//! A registry cannot hold these signatures: the distribution API has no place for them (only
//! OpenShift's registry extension, and sigstore attachments, which Debian's skopeo disables).
//! The request path comes from the network: [`SignaturePath::parse`] accepts exactly that shape.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use transition_runtime::s3::{ErrorKind, read_small};

use crate::storage::{ArchiveStore, StoreError};

/// Key prefix of the signatures in the bucket, and the route's first path segment.
pub const PREFIX: &str = "sigstore";
/// Longest request path accepted after `/sigstore/` (a repository is at most 255 characters).
pub const MAX_PATH: usize = 400;
/// Largest signature served or stored (a simple signature is under 1 KiB).
pub const MAX_SIGNATURE_BYTES: usize = 64 << 10;
/// Highest `signature-<n>` accepted (containers/image asks 1, 2, … until a 404).
pub const MAX_INDEX: u32 = 999;
/// Name of the record, beside an index's signature, listing the platform manifests signed with
/// it (so a deletion finds them without the registry).
const INSTANCES: &str = "instances.json";

/// Why a lookaside path was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("longer than {MAX_PATH} characters")]
    TooLong,
    #[error("not <repository>@sha256=<64 hex>/signature-<n>")]
    Shape,
    #[error("the repository is not a Docker repository path")]
    Repository,
    #[error("the digest is not sha256=<64 lowercase hex>")]
    Digest,
    #[error("the signature number is not 1..={MAX_INDEX}")]
    Index,
}

/// One signature's place: `<repo>@sha256=<hex>/signature-<index>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignaturePath {
    pub repo: String,
    /// 64 lowercase hex digits.
    pub hex: String,
    pub index: u32,
}

/// A Docker repository path (`reference.Path`): `/`-separated components of lowercase letters
/// and digits joined by `.`, `_`, `__` or runs of `-` (the distribution grammar; pure).
pub fn is_repository(repo: &str) -> bool {
    repo.len() <= 255 && !repo.is_empty() && repo.split('/').all(is_component)
}

fn is_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut sep = String::new();
    for &x in b {
        if alnum(x) {
            let ok = sep.is_empty()
                || sep == "."
                || sep == "_"
                || sep == "__"
                || sep.bytes().all(|s| s == b'-');
            if !ok {
                return false;
            }
            sep.clear();
        } else if matches!(x, b'.' | b'_' | b'-') {
            sep.push(char::from(x));
        } else {
            return false;
        }
    }
    true
}

fn is_hex64(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl SignaturePath {
    /// Parses the path after `/sigstore/` (pure).
    pub fn parse(path: &str) -> Result<SignaturePath, PathError> {
        if path.len() > MAX_PATH {
            return Err(PathError::TooLong);
        }
        let (repo, rest) = path.split_once('@').ok_or(PathError::Shape)?;
        let (digest, file) = rest.split_once('/').ok_or(PathError::Shape)?;
        if !is_repository(repo) {
            return Err(PathError::Repository);
        }
        let hex = digest.strip_prefix("sha256=").ok_or(PathError::Digest)?;
        if !is_hex64(hex) {
            return Err(PathError::Digest);
        }
        let n = file.strip_prefix("signature-").ok_or(PathError::Shape)?;
        if n.is_empty()
            || n.len() > 3
            || n.starts_with('0')
            || !n.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(PathError::Index);
        }
        let index = n.parse::<u32>().map_err(|_| PathError::Index)?;
        Ok(SignaturePath {
            repo: repo.to_owned(),
            hex: hex.to_owned(),
            index,
        })
    }

    /// The place of signature `index` of `digest` (`sha256:<hex>`) in `repo`.
    pub fn of(repo: &str, digest: &str, index: u32) -> Result<SignaturePath, PathError> {
        let hex = digest.strip_prefix("sha256:").ok_or(PathError::Digest)?;
        SignaturePath::parse(&format!("{repo}@sha256={hex}/signature-{index}"))
    }

    /// The path below the lookaside's base URL.
    pub fn relative(&self) -> String {
        format!("{}@sha256={}/signature-{}", self.repo, self.hex, self.index)
    }

    /// The object key in the bucket.
    pub fn key(&self) -> String {
        format!("{PREFIX}/{}", self.relative())
    }
}

/// The signatures in the checkpoint bucket.
#[derive(Clone, Debug)]
pub struct SignatureStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

/// The signatures of one pushed image, as [`SignatureStore::put_image`] stores them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSignatures {
    pub repo: String,
    /// `sha256:…` of the index (what status and Git record) and its signature.
    pub index: (String, Vec<u8>),
    /// `sha256:…` of each platform manifest (what a pull of the index verifies) and its signature.
    pub instances: Vec<(String, Vec<u8>)>,
}

impl SignatureStore {
    /// The signatures kept in `store`'s bucket.
    pub fn new(store: &ArchiveStore) -> SignatureStore {
        let (client, bucket) = store.s3();
        SignatureStore {
            client: client.clone(),
            bucket: bucket.to_owned(),
        }
    }

    fn failed(&self, op: &'static str, key: &str, kind: ErrorKind, reason: String) -> StoreError {
        StoreError::Request {
            op,
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            reason,
            transient: kind == ErrorKind::Transient,
        }
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/octet-stream")
            .body(bytes.into())
            .send()
            .await
            .map_err(|e| {
                let (kind, reason) = transition_runtime::s3::classify(&e);
                self.failed("write", key, kind, reason)
            })?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| {
                let (kind, reason) = transition_runtime::s3::classify(&e);
                self.failed("delete", key, kind, reason)
            })?;
        Ok(())
    }

    /// The signature at `path`, `None` when there is none.
    pub async fn get(&self, path: &SignaturePath) -> Result<Option<Vec<u8>>, StoreError> {
        let key = path.key();
        let bytes = read_small(&self.client, &self.bucket, &key, MAX_SIGNATURE_BYTES)
            .await
            .map_err(|(kind, reason)| self.failed("read", &key, kind, reason))?;
        match bytes {
            Some(b) if b.len() > MAX_SIGNATURE_BYTES => Err(self.failed(
                "read",
                &key,
                ErrorKind::Other,
                format!("over {MAX_SIGNATURE_BYTES} bytes: not a signature"),
            )),
            other => Ok(other),
        }
    }

    /// Stores the signatures of one image: the instances' first, then the index's, then the
    /// record of the instances (a deletion reads it), each as `signature-1`.
    pub async fn put_image(&self, signed: &ImageSignatures) -> Result<Vec<String>, StoreError> {
        let place = |digest: &str| {
            SignaturePath::of(&signed.repo, digest, 1).map_err(|e| {
                self.failed(
                    "write",
                    &format!("{PREFIX}/{}@{digest}", signed.repo),
                    ErrorKind::Other,
                    e.to_string(),
                )
            })
        };
        let mut keys = Vec::new();
        for (digest, blob) in signed.instances.iter().chain([&signed.index]) {
            let key = place(digest)?.key();
            self.put(&key, blob.clone()).await?;
            keys.push(key);
        }
        let digests: Vec<&str> = signed.instances.iter().map(|(d, _)| d.as_str()).collect();
        let record =
            serde_json::to_vec(&serde_json::json!({ "instances": digests })).unwrap_or_default();
        self.put(&instances_key(&place(&signed.index.0)?), record)
            .await?;
        Ok(keys)
    }

    /// Deletes the signatures of the image `repo@index_digest` and of the platform manifests
    /// its record names; nothing there is not an error. The record goes last, so a retry after
    /// a failure still finds the instances.
    pub async fn delete_image(&self, repo: &str, index_digest: &str) -> Result<(), StoreError> {
        let Ok(index) = SignaturePath::of(repo, index_digest, 1) else {
            // Not a reference the operator pushed (so nothing it signed).
            return Ok(());
        };
        let record_key = instances_key(&index);
        let record = read_small(&self.client, &self.bucket, &record_key, MAX_SIGNATURE_BYTES)
            .await
            .map_err(|(kind, reason)| self.failed("read", &record_key, kind, reason))?;
        let instances: Vec<String> = record
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| {
                v["instances"].as_array().map(|a| {
                    a.iter()
                        .filter_map(|d| d.as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default();
        for digest in &instances {
            if let Ok(p) = SignaturePath::of(repo, digest, 1) {
                self.delete(&p.key()).await?;
            }
        }
        self.delete(&index.key()).await?;
        self.delete(&record_key).await
    }
}

fn instances_key(index: &SignaturePath) -> String {
    format!("{PREFIX}/{}@sha256={}/{INSTANCES}", index.repo, index.hex)
}

/// `GET /sigstore/{path}`: the signature, 404 when absent (containers/image stops there), 400
/// for any other path shape, 503 when S3 cannot answer.
async fn signature(State(store): State<SignatureStore>, Path(path): Path<String>) -> Response {
    let place = match SignaturePath::parse(&path) {
        Ok(p) => p,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("invalid signature path: {e}\n"),
            )
                .into_response();
        }
    };
    match store.get(&place).await {
        Ok(Some(bytes)) => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            Body::from(bytes),
        )
            .into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "could not read an image signature for the lookaside");
            let status = match e.unreachable() {
                Some(_) => StatusCode::SERVICE_UNAVAILABLE,
                None => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (status, "signature storage unavailable\n").into_response()
        }
    }
}

/// `GET /sigstore/<repo>@sha256=<hex>/signature-<n>` (read-only; HEAD too).
pub fn router(store: SignatureStore) -> Router {
    Router::new()
        .route(&format!("/{PREFIX}/{{*path}}"), get(signature))
        .with_state(store)
}

#[cfg(test)]
mod tests;
