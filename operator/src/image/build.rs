//! Builds a checkpoint OCI image from a kubelet checkpoint archive and pushes it, streaming:
//! the archive is read ONCE, validated (see [`super::archive`]) and hashed on a blocking thread
//! while its bytes are uploaded as the single layer in chunks (OCI distribution chunked upload).
//! The manifest is written only if validation passed. Memory stays bounded by a few chunks
//! whatever the archive size.
//!
//! Layer: the archive bytes as they are (`application/vnd.oci.image.layer.v1.tar`,
//! uncompressed: see docs/benchmarks.md for the measurement behind that choice), so the layer
//! digest equals the archive's sha256 that the agent recorded in S3.
//!
//! Encrypted archives (age, [`super::age_archive`]) are decrypted on the same reading thread
//! before validation, so the digest checked is the plaintext's. With [`ImageSpec::encryption`] the
//! layer is pushed encrypted in the ocicrypt format ([`super::ocicrypt`]): each chunk is encrypted
//! as it is produced, the layer descriptor's digest and size are the ciphertext's, the config's
//! `diff_ids` the plaintext's, and no known-blob dedupe applies (every encryption differs).
//!
//! Annotations (CRI-O and containerd/checkpointctl keys) are written on the manifest AND on the
//! image index's manifest descriptor and the index itself, so every reader finds them at the level
//! it reads. The tag names the index; everything downstream uses `host/repo@sha256:<index>`.

use std::collections::BTreeMap;
use std::io::Read;

use bytes::{Bytes, BytesMut};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::age_archive::{AgeError, Unseal};
use super::archive::{self, ArchiveError, ArchiveInfo, Limits};
use super::ocicrypt::{self, CryptoError, LayerEncryptor, RecipientKey};
use super::registry::{Registry, RegistryError};

pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// CRI-O's checkpoint-image annotation (value: container name).
pub const CRIO_CHECKPOINT_NAME: &str = "io.kubernetes.cri-o.annotations.checkpoint.name";
/// containerd / checkpointctl annotations.
pub const CRIU_CONTAINER_NAME: &str = "org.criu.checkpoint.container.name";
pub const CRIU_ROOTFS_IMAGE_NAME: &str = "org.criu.checkpoint.rootfsImageName";
pub const CRIU_ROOTFS_IMAGE_ID: &str = "org.criu.checkpoint.rootfsImageID";
pub const CRIU_POD_NAME: &str = "org.criu.checkpoint.pod.name";
pub const CRIU_POD_NAMESPACE: &str = "org.criu.checkpoint.pod.namespace";
pub const CRIU_RUNTIME_NAME: &str = "org.criu.checkpoint.runtime.name";
pub const CRIU_ENGINE_NAME: &str = "org.criu.checkpoint.engine.name";

/// What to build.
#[derive(Clone, Debug)]
pub struct ImageSpec {
    /// Repository inside the registry, e.g. `checkpoints/default/counter-7d9f5-counter`.
    pub repo: String,
    /// Immutable tag (see [`timestamp_tag`]).
    pub tag: String,
    /// Optional moving tag (e.g. `latest`), never used by the operator itself.
    pub moving_tag: Option<String>,
    /// Bytes per PATCH.
    pub chunk_size: usize,
    pub limits: Limits,
    /// The archive's sha256 if known (from S3 metadata): when the registry has that blob, the
    /// layer is not uploaded again (the archive is still read to validate it). For an encrypted
    /// source it is the PLAINTEXT's, checked after decryption; for an encrypted layer it is
    /// checked but no longer dedupes (the ciphertext differs every time).
    pub known_digest: Option<String>,
    /// Creation time, RFC 3339.
    pub created: String,
    /// The OCI architecture of the node the archive was taken on (`None`: this machine's). A
    /// checkpoint restores only on the architecture it was taken on, so the image says which.
    pub arch: Option<String>,
    /// How to read the source: as it is, or decrypting an age file on the reading thread.
    pub unseal: Unseal,
    /// Push the layer encrypted for these keys (ocicrypt); `None`: plaintext layer.
    pub encryption: Option<LayerEncryption>,
}

/// An encrypted layer's recipients: the RSA public keys of the clusters that may restore it.
#[derive(Clone, Debug)]
pub struct LayerEncryption {
    pub recipients: Vec<RecipientKey>,
}

/// The pushed image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedImage {
    /// `host/repo@sha256:…` (the index digest): what status and Git record.
    pub reference: String,
    pub tag: String,
    pub index_digest: String,
    pub manifest_digest: String,
    pub layer_digest: String,
    pub layer_size: u64,
    /// The layer was already in the registry and was not sent.
    pub layer_reused: bool,
    /// The layer's media type (`…tar` or `…tar+encrypted`).
    pub layer_media_type: String,
    /// The plaintext archive's sha256 (the config's `diff_ids`); equals `layer_digest` unless
    /// the layer is encrypted.
    pub archive_digest: String,
    pub annotations: BTreeMap<String, String>,
}

/// Why no image was pushed.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(
        "failed to build the image: the archive names no container (config.dump `name`, spec.dump annotations)"
    )]
    NoContainerName,
    #[error(
        "failed to build the image: the archive's sha256 {actual} differs from the recorded {expected}"
    )]
    DigestMismatch { expected: String, actual: String },
    #[error("failed to build the image: the archive reader stopped: {0}")]
    Reader(String),
    #[error(transparent)]
    Decrypt(#[from] AgeError),
    #[error(transparent)]
    Encrypt(#[from] CryptoError),
}

/// `ckpt-YYYYMMDDTHHMMSSZ` from an RFC 3339 time (tags allow only `[A-Za-z0-9_.-]`).
pub fn timestamp_tag(rfc3339: &str) -> String {
    let compact: String = rfc3339
        .chars()
        .take(19)
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    format!("ckpt-{compact}Z")
}

/// OCI architecture name of this machine.
/// The OCI architecture name of a kernel/Rust (`x86_64`, `aarch64`) or Go (`amd64`, `arm64`)
/// architecture name, as agents report it in heartbeats (pure).
pub fn oci_arch_of(arch: &str) -> String {
    match arch.trim() {
        "x86_64" | "amd64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "armv7l" | "armv7" | "arm" => "arm",
        "i686" | "i386" | "x86" | "386" => "386",
        "powerpc64le" | "ppc64le" => "ppc64le",
        other => other,
    }
    .to_owned()
}

pub fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The annotations both runtimes need (pure).
pub fn annotations(
    info: &ArchiveInfo,
    created: &str,
) -> Result<BTreeMap<String, String>, ImageError> {
    let name = info
        .container_name
        .clone()
        .ok_or(ImageError::NoContainerName)?;
    let mut a = BTreeMap::from([
        (CRIO_CHECKPOINT_NAME.to_owned(), name.clone()),
        (CRIU_CONTAINER_NAME.to_owned(), name),
        (
            "org.opencontainers.image.created".to_owned(),
            created.to_owned(),
        ),
    ]);
    let optional = [
        (CRIU_ROOTFS_IMAGE_NAME, &info.rootfs_image_name),
        (CRIU_ROOTFS_IMAGE_ID, &info.rootfs_image_id),
        (CRIU_POD_NAME, &info.pod_name),
        (CRIU_POD_NAMESPACE, &info.pod_namespace),
        (CRIU_RUNTIME_NAME, &info.runtime),
        (CRIU_ENGINE_NAME, &info.engine),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            a.insert(key.to_owned(), v.clone());
        }
    }
    Ok(a)
}

/// A reader that forwards everything it reads, in chunks (encrypted first when the layer is),
/// and hashes it.
struct Tee<R> {
    inner: R,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    buf: BytesMut,
    chunk: usize,
    hasher: Sha256,
    total: u64,
    layer: Option<Sealing>,
}

/// The encryption of the layer as it streams: the cipher and the ciphertext's digest and size.
struct Sealing {
    encryptor: LayerEncryptor,
    hasher: Sha256,
    size: u64,
    error: Option<CryptoError>,
}

impl<R: Read> Tee<R> {
    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let mut chunk = self.buf.split().freeze();
        if let Some(sealing) = self.layer.as_mut() {
            match sealing.encryptor.update(&chunk) {
                Ok(sealed) => {
                    sealing.hasher.update(&sealed);
                    sealing.size += sealed.len() as u64;
                    chunk = Bytes::from(sealed);
                }
                Err(e) => {
                    sealing.error = Some(e);
                    return Err(std::io::Error::other("the layer encryption failed"));
                }
            }
        }
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::other("the upload stopped taking data"))
    }
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(out)?;
        if n == 0 {
            self.flush_chunk()?;
            return Ok(0);
        }
        self.hasher.update(&out[..n]);
        self.total += n as u64;
        self.buf.extend_from_slice(&out[..n]);
        if self.buf.len() >= self.chunk {
            self.flush_chunk()?;
        }
        Ok(n)
    }
}

/// What the reading thread found.
struct ReadResult {
    info: Result<ArchiveInfo, ImageError>,
    /// The plaintext archive's digest and size.
    digest: String,
    size: u64,
    /// The encrypted layer: its cipher (to finish) and the ciphertext's digest and size.
    sealed: Option<(LayerEncryptor, String, u64)>,
}

impl ReadResult {
    fn failed(e: ImageError) -> ReadResult {
        ReadResult {
            info: Err(e),
            digest: String::new(),
            size: 0,
            sealed: None,
        }
    }
}

/// Reads `source` on the blocking pool: decrypts it if it is sealed, validates the tar, hashes it
/// and sends it on in chunks, encrypted when `encrypt` is set.
fn spawn_reader<R>(
    source: R,
    unseal: Unseal,
    encrypt: bool,
    limits: archive::Limits,
    read_chunk: usize,
    tx: tokio::sync::mpsc::Sender<Bytes>,
) -> tokio::task::JoinHandle<ReadResult>
where
    R: Read + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let plain = match unseal.open(source) {
            Ok(p) => p,
            Err(e) => return ReadResult::failed(e.into()),
        };
        let layer = if encrypt {
            match LayerEncryptor::new() {
                Ok(encryptor) => Some(Sealing {
                    encryptor,
                    hasher: Sha256::new(),
                    size: 0,
                    error: None,
                }),
                Err(e) => return ReadResult::failed(e.into()),
            }
        } else {
            None
        };
        let mut tee = Tee {
            inner: plain,
            tx,
            buf: BytesMut::with_capacity(read_chunk),
            chunk: read_chunk,
            hasher: Sha256::new(),
            total: 0,
            layer,
        };
        let mut info = archive::validate(&mut tee, limits).map_err(ImageError::from);
        if info.is_ok() {
            // The tar end marker may be followed by padding: the layer is the whole archive.
            if let Err(e) = std::io::copy(&mut tee, &mut std::io::sink()) {
                info = Err(ArchiveError::Read(e).into());
            }
        }
        if let Err(e) = tee.flush_chunk()
            && info.is_ok()
        {
            info = Err(ArchiveError::Read(e).into());
        }
        let sealed = match tee.layer {
            Some(Sealing { error: Some(e), .. }) => return ReadResult::failed(e.into()),
            Some(s) => Some((
                s.encryptor,
                format!("sha256:{}", hex::encode(s.hasher.finalize())),
                s.size,
            )),
            None => None,
        };
        ReadResult {
            info,
            digest: format!("sha256:{}", hex::encode(tee.hasher.finalize())),
            size: tee.total,
            sealed,
        }
    })
}

/// A layer upload in progress: its session, the bytes sent and the first failure.
#[derive(Default)]
struct Upload {
    location: Option<String>,
    offset: u64,
    error: Option<RegistryError>,
}

/// Uploads what arrives on `rx` in `chunk_size` PATCHes (or only drains it when the blob is
/// known already, or after a failure).
async fn upload_layer(
    registry: &Registry,
    repo: &str,
    rx: &mut tokio::sync::mpsc::Receiver<Bytes>,
    reuse: bool,
    chunk_size: usize,
) -> Upload {
    let mut up = Upload::default();
    let mut pending = BytesMut::new();
    while let Some(chunk) = rx.recv().await {
        if reuse || up.error.is_some() {
            continue;
        }
        pending.extend_from_slice(&chunk);
        if pending.len() >= chunk_size {
            up.send(registry, repo, pending.split().freeze()).await;
        }
    }
    if !reuse && up.error.is_none() && !pending.is_empty() {
        up.send(registry, repo, pending.split().freeze()).await;
    }
    up
}

impl Upload {
    async fn send(&mut self, registry: &Registry, repo: &str, body: Bytes) {
        match send_chunk(registry, repo, &mut self.location, self.offset, body).await {
            Ok(n) => self.offset += n,
            Err(e) => self.error = Some(e),
        }
    }
}

/// Builds and pushes the checkpoint image of the archive read from `source`.
pub async fn build_and_push<R>(
    registry: &Registry,
    source: R,
    spec: &ImageSpec,
) -> Result<PushedImage, ImageError>
where
    R: Read + Send + 'static,
{
    let repo = spec.repo.as_str();
    if let Some(enc) = &spec.encryption
        && enc.recipients.is_empty()
    {
        // Never a plaintext layer when encryption was asked for.
        return Err(CryptoError::NoRecipients.into());
    }
    // An encrypted layer differs at every push: the registry cannot already have it.
    let reuse = match (&spec.known_digest, &spec.encryption) {
        (Some(d), None) => registry.blob_exists(repo, d).await?,
        _ => false,
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let read_chunk = (1 << 20).min(spec.chunk_size.max(1));
    let reader = spawn_reader(
        source,
        spec.unseal.clone(),
        spec.encryption.is_some(),
        spec.limits,
        read_chunk,
        tx,
    );
    let up = upload_layer(registry, repo, &mut rx, reuse, spec.chunk_size).await;
    let read = reader
        .await
        .map_err(|e| ImageError::Reader(e.to_string()))?;
    let checked = check_read(
        read.info,
        up.error,
        spec.known_digest.as_deref(),
        &read.digest,
    );
    let info = match checked {
        Ok(info) => info,
        Err(e) => {
            if let Some(l) = &up.location {
                registry.cancel_upload(repo, l).await;
            }
            return Err(e);
        }
    };
    let annotations = match annotations(&info, &spec.created) {
        Ok(a) => a,
        Err(e) => {
            if let Some(l) = &up.location {
                registry.cancel_upload(repo, l).await;
            }
            return Err(e);
        }
    };
    let layer = match (read.sealed, &spec.encryption) {
        (Some((encryptor, digest, size)), Some(enc)) => {
            let layer_annotations = match encryptor.finish(&read.digest, &enc.recipients) {
                Ok(a) => a,
                Err(e) => {
                    if let Some(l) = &up.location {
                        registry.cancel_upload(repo, l).await;
                    }
                    return Err(e.into());
                }
            };
            tracing::info!(
                repo,
                recipients = enc.recipients.len(),
                "checkpoint layer encrypted (ocicrypt, AES_256_CTR_HMAC_SHA256, JWE RSA-OAEP-256)"
            );
            Layer {
                digest,
                size,
                diff_id: read.digest,
                reused: false,
                media_type: ocicrypt::MEDIA_LAYER_TAR_ENCRYPTED,
                annotations: layer_annotations,
            }
        }
        _ => Layer {
            digest: read.digest.clone(),
            size: read.size,
            diff_id: read.digest,
            reused: reuse,
            media_type: MEDIA_LAYER_TAR,
            annotations: BTreeMap::new(),
        },
    };
    if !reuse {
        let loc = match up.location {
            Some(l) => l,
            // An empty archive cannot pass validation; keep the type system honest anyway.
            None => registry.start_upload(repo).await?,
        };
        registry.finish_upload(repo, &loc, &layer.digest).await?;
    }
    debug_assert!(reuse || up.offset == layer.size);
    push_manifests(registry, spec, layer, annotations).await
}

/// The read's verdict: the archive's facts, unless the tar, the upload or the digest failed.
fn check_read(
    info: Result<ArchiveInfo, ImageError>,
    upload: Option<RegistryError>,
    expected: Option<&str>,
    actual: &str,
) -> Result<ArchiveInfo, ImageError> {
    let info = info?;
    if let Some(e) = upload {
        return Err(e.into());
    }
    if let Some(expected) = expected
        && expected != actual
    {
        return Err(ImageError::DigestMismatch {
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        });
    }
    Ok(info)
}

/// The pushed layer.
struct Layer {
    /// The blob's digest and size (the ciphertext's when encrypted).
    digest: String,
    size: u64,
    /// The plaintext archive's digest (the config's `diff_ids`).
    diff_id: String,
    reused: bool,
    media_type: &'static str,
    /// The descriptor's annotations (ocicrypt's, when encrypted).
    annotations: BTreeMap<String, String>,
}

/// Pushes the config, the manifest (by digest) and the index (by tag, and the moving tag).
async fn push_manifests(
    registry: &Registry,
    spec: &ImageSpec,
    layer: Layer,
    annotations: BTreeMap<String, String>,
) -> Result<PushedImage, ImageError> {
    let repo = spec.repo.as_str();
    let arch = spec
        .arch
        .as_deref()
        .map_or_else(|| oci_arch().to_owned(), oci_arch_of);
    let config = json!({
        "created": spec.created,
        "architecture": arch,
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
        "history": [{"created": spec.created, "created_by": "transition-operator: kubelet checkpoint archive as one layer"}],
    });
    let config_bytes = Bytes::from(serde_json::to_vec(&config).unwrap_or_default());
    let config_digest = registry.put_blob(repo, config_bytes.clone()).await?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config_bytes.len()},
        "layers": [layer_descriptor(&layer)],
        "annotations": annotations,
    });
    let manifest_bytes = Bytes::from(serde_json::to_vec(&manifest).unwrap_or_default());
    let manifest_digest = super::registry::digest_of(&manifest_bytes);
    registry
        .put_manifest(
            repo,
            &manifest_digest,
            MEDIA_MANIFEST,
            manifest_bytes.clone(),
        )
        .await?;
    let index = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [{
            "mediaType": MEDIA_MANIFEST,
            "digest": manifest_digest,
            "size": manifest_bytes.len(),
            "platform": {"architecture": arch, "os": "linux"},
            "annotations": annotations,
        }],
        "annotations": annotations,
    });
    let index_bytes = Bytes::from(serde_json::to_vec(&index).unwrap_or_default());
    let index_digest = registry
        .put_manifest(repo, &spec.tag, MEDIA_INDEX, index_bytes.clone())
        .await?;
    if let Some(moving) = &spec.moving_tag {
        registry
            .put_manifest(repo, moving, MEDIA_INDEX, index_bytes)
            .await?;
    }
    Ok(PushedImage {
        reference: format!("{}/{repo}@{index_digest}", registry.host()),
        tag: spec.tag.clone(),
        index_digest,
        manifest_digest,
        layer_digest: layer.digest,
        layer_size: layer.size,
        layer_reused: layer.reused,
        layer_media_type: layer.media_type.to_owned(),
        archive_digest: layer.diff_id,
        annotations,
    })
}

/// The manifest's layer descriptor (pure).
fn layer_descriptor(layer: &Layer) -> serde_json::Value {
    let mut d = json!({"mediaType": layer.media_type, "digest": layer.digest, "size": layer.size});
    if !layer.annotations.is_empty() {
        d["annotations"] = json!(layer.annotations);
    }
    d
}

/// PATCHes one chunk, opening the upload session first if needed; returns the bytes sent.
async fn send_chunk(
    registry: &Registry,
    repo: &str,
    location: &mut Option<String>,
    offset: u64,
    body: Bytes,
) -> Result<u64, RegistryError> {
    let loc = match location.take() {
        Some(l) => l,
        None => registry.start_upload(repo).await?,
    };
    let n = body.len() as u64;
    let next = registry.patch_chunk(repo, &loc, offset, body).await?;
    *location = Some(next);
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_architectures_become_oci_names() {
        assert_eq!(oci_arch_of("x86_64"), "amd64");
        assert_eq!(oci_arch_of("amd64"), "amd64");
        assert_eq!(oci_arch_of("aarch64"), "arm64");
        assert_eq!(oci_arch_of(" arm64 "), "arm64");
        assert_eq!(oci_arch_of("riscv64"), "riscv64");
    }

    #[test]
    fn tags_from_timestamps_are_valid_and_sortable() {
        assert_eq!(
            timestamp_tag("2026-11-22T00:31:05Z"),
            "ckpt-20261122T003105Z"
        );
        assert_eq!(
            timestamp_tag("2026-11-22T00:31:05.123456+00:00"),
            "ckpt-20261122T003105Z"
        );
    }

    #[test]
    fn annotations_carry_both_runtimes_keys_and_only_known_values() {
        let info = ArchiveInfo {
            container_name: Some("counter".into()),
            rootfs_image_name: Some("docker.io/library/busybox:1.36".into()),
            pod_name: Some("counter-7d9f5".into()),
            ..ArchiveInfo::default()
        };
        let a = annotations(&info, "2026-11-22T00:00:00Z").unwrap();
        assert_eq!(
            a.get(CRIO_CHECKPOINT_NAME).map(String::as_str),
            Some("counter")
        );
        assert_eq!(
            a.get(CRIU_CONTAINER_NAME).map(String::as_str),
            Some("counter")
        );
        assert_eq!(
            a.get(CRIU_ROOTFS_IMAGE_NAME).map(String::as_str),
            Some("docker.io/library/busybox:1.36")
        );
        assert_eq!(
            a.get(CRIU_POD_NAME).map(String::as_str),
            Some("counter-7d9f5")
        );
        assert!(
            !a.contains_key(CRIU_POD_NAMESPACE),
            "unknown values are left out, not empty"
        );
        assert!(matches!(
            annotations(&ArchiveInfo::default(), "t"),
            Err(ImageError::NoContainerName)
        ));
    }
}
