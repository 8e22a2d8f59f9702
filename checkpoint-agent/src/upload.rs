//! Uploads one archive to S3, streaming, with its sha256 computed in the same read pass.
//!
//! * Archives up to one part go in a single PUT (atomically visible, sha256 in its metadata).
//! * Larger ones go multipart: parts are read once, hashed in order and uploaded `parallelism` at a
//!   time. The object becomes visible, whole, only at CompleteMultipartUpload; the sha256 then
//!   goes into a digest record beside it (`<key>.sha256.json`, `transition_crds::storage`) — no
//!   server-side copy (5 GiB limit on AWS, URL-encoded source keys). Readers treat an archive as
//!   ready only once its sha256 is in its metadata or in its digest record.
//! * Dedupe is by HEAD + metadata (size, source mtime) and the recorded sha256: nothing large is
//!   ever downloaded.
//! * An in-progress multipart upload is recorded in the state folder; after a restart its parts
//!   already on the server are kept (re-hashed locally, not re-sent) and the rest follows.
//! * Every S3 request is retried with bounded exponential backoff when the failure is transient;
//!   credential errors are not retried.
//! * Encrypted uploads (`--encryption-recipients-file`) are in [`crate::upload_sealed`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesUnordered, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use transition_crds::storage::{
    ArchiveKey, DIGEST_RECORD_MAX_BYTES, DIGEST_SUFFIX, DigestRecord, ENCRYPTION_AGE, META_CLUSTER,
    META_ENCRYPTION, META_NODE, META_PLAINTEXT_SIZE, META_SHA256,
};

use crate::archive::Candidate;
use crate::metrics::{Label, Metrics};
use crate::recipients::{RecipientsError, read_recipients};
pub use crate::retry::with_retry;
use crate::seal::SealError;
use crate::store::{ErrorKind, ObjectInfo, ObjectStore, StoreError};
use crate::upload_record::{UploadRecord, read_record, write_record};

/// User-metadata key: the object's size in bytes (the archive's; the ciphertext's when encrypted,
/// the archive's being then in [`META_PLAINTEXT_SIZE`]).
pub const META_SIZE: &str = "size";
/// User-metadata key: the local file's mtime (ns since the epoch) when uploaded.
pub const META_SOURCE_MTIME: &str = "source-mtime";
/// S3 allows at most this many parts.
pub(crate) const MAX_PARTS: u64 = 10_000;

/// What happened to an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Bytes were sent; `resumed_parts` came from an earlier, interrupted run.
    Uploaded {
        bytes: u64,
        sha256: String,
        resumed_parts: u32,
    },
    /// The same archive was already complete in S3; nothing was read or sent.
    AlreadyPresent { sha256: String },
    /// The object was complete but its sha256 was not recorded (a crash just before writing the
    /// digest record): hashed locally and recorded, nothing re-sent.
    MetadataCompleted { sha256: String },
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Uploaded { .. } => "uploaded",
            Outcome::AlreadyPresent { .. } => "already_present",
            Outcome::MetadataCompleted { .. } => "metadata_completed",
        }
    }
    pub fn sha256(&self) -> &str {
        match self {
            Outcome::Uploaded { sha256, .. }
            | Outcome::AlreadyPresent { sha256 }
            | Outcome::MetadataCompleted { sha256 } => sha256,
        }
    }
}

/// Why an archive was not uploaded.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("failed to read archive {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("failed to upload {path}: it changed while being read (size {before} -> {after})")]
    Changed {
        path: String,
        before: u64,
        after: u64,
    },
    #[error("failed to upload {key}: stopped by shutdown; the multipart upload was aborted")]
    Cancelled { key: String },
    #[error("failed to record upload progress in {path}: {source}")]
    State {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Recipients(#[from] RecipientsError),
    #[error("failed to encrypt archive {path}: {source}")]
    Encrypt {
        path: String,
        #[source]
        source: SealError,
    },
}

impl UploadError {
    /// Metric label / log kind.
    pub fn kind(&self) -> &'static str {
        match self {
            UploadError::Read { .. } | UploadError::State { .. } => "local",
            UploadError::Store(e) => match e.kind {
                ErrorKind::Auth => "auth",
                ErrorKind::Transient => "transient",
                _ => "other",
            },
            UploadError::Changed { .. } => "changed",
            UploadError::Cancelled { .. } => "cancelled",
            UploadError::Recipients(_) | UploadError::Encrypt { .. } => "encryption",
        }
    }
    pub fn is_auth(&self) -> bool {
        matches!(self, UploadError::Store(e) if e.kind == ErrorKind::Auth)
    }
}

/// Uploader settings.
#[derive(Clone, Debug)]
pub struct UploaderConfig {
    pub state_dir: PathBuf,
    pub part_size: u64,
    pub parallelism: usize,
    pub max_attempts: u32,
    /// age recipients file (`--encryption-recipients-file`); `None`: archives go up unencrypted.
    pub recipients_file: Option<PathBuf>,
}

/// Uploads archives to one bucket.
#[derive(Clone)]
pub struct Uploader {
    pub(crate) store: ObjectStore,
    pub(crate) config: UploaderConfig,
    pub(crate) metrics: Arc<Metrics>,
}

pub(crate) fn mtime_ns(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos())
}

impl Uploader {
    pub fn new(store: ObjectStore, config: UploaderConfig, metrics: Arc<Metrics>) -> Uploader {
        Uploader {
            store,
            config,
            metrics,
        }
    }

    pub fn store(&self) -> &ObjectStore {
        &self.store
    }

    fn base_metadata(key: &ArchiveKey, c: &Candidate) -> HashMap<String, String> {
        HashMap::from([
            (META_NODE.to_owned(), key.node.clone()),
            (META_CLUSTER.to_owned(), key.cluster.clone()),
            (META_SIZE.to_owned(), c.size.to_string()),
            (META_SOURCE_MTIME.to_owned(), mtime_ns(c.mtime).to_string()),
        ])
    }

    pub(crate) fn record_path(&self, key: &str) -> PathBuf {
        let digest = hex::encode(Sha256::digest(key.as_bytes()));
        self.config
            .state_dir
            .join(format!("upload-{}.json", &digest[..32]))
    }

    /// Uploads `candidate` to `key` (see the module docs). `cancel` stops a multipart upload
    /// between parts and aborts it.
    pub async fn upload(
        &self,
        candidate: &Candidate,
        key: &ArchiveKey,
        cancel: &CancellationToken,
    ) -> Result<Outcome, UploadError> {
        let key_s = key.to_string();
        // Read for every archive: a rotated Secret applies without a restart.
        let recipients = match &self.config.recipients_file {
            Some(path) => Some(read_recipients(path)?),
            None => None,
        };
        let meta = Self::base_metadata(key, candidate);
        let m = &self.metrics;
        let head = with_retry(m, self.config.max_attempts, || self.store.head(&key_s)).await?;
        if let Some(info) = head {
            let encrypted = info.metadata.contains_key(META_ENCRYPTION);
            let same = archive_size(&info) == Some(candidate.size)
                && info.metadata.get(META_SOURCE_MTIME) == meta.get(META_SOURCE_MTIME)
                && encrypted == recipients.is_some();
            if same {
                let recorded = with_retry(m, self.config.max_attempts, || {
                    self.recorded_sha256(&key_s, &info)
                })
                .await?;
                if let Some(sha) = recorded {
                    debug!(key = %key_s, "already uploaded");
                    return Ok(Outcome::AlreadyPresent { sha256: sha });
                }
                let sha = self.hash_file(candidate).await?;
                self.record_digest(&key_s, &sha, info.size, &meta).await?;
                info!(key = %key_s, "recorded the sha256 of an already complete object");
                return Ok(Outcome::MetadataCompleted { sha256: sha });
            }
            if encrypted == recipients.is_some() {
                warn!(key = %key_s, remote_size = info.size, local_size = candidate.size, "object differs from the local archive; uploading again");
            } else {
                info!(key = %key_s, stored_encrypted = encrypted, encrypting = recipients.is_some(), "encryption was turned on or off since this archive went up; uploading it again");
            }
        }
        if let Some(recipients) = recipients {
            let outcome = self
                .upload_sealed(candidate, &key_s, meta, &recipients, cancel)
                .await?;
            self.metrics.encrypted_uploads.inc();
            return Ok(outcome);
        }
        if candidate.size <= self.config.part_size {
            self.put_whole(candidate, &key_s, meta).await
        } else {
            self.multipart(candidate, &key_s, meta, cancel).await
        }
    }

    /// The sha256 recorded for the object `key` that HEAD described as `info`: its `sha256`
    /// metadata (one PUT) or its digest record (parts) when the record's size matches. `None`:
    /// not recorded (yet), or a record that does not describe this object (logged).
    pub async fn recorded_sha256(
        &self,
        key: &str,
        info: &ObjectInfo,
    ) -> Result<Option<String>, StoreError> {
        if let Some(sha) = info.metadata.get(META_SHA256) {
            return Ok(Some(sha.clone()));
        }
        let record_key = format!("{key}{DIGEST_SUFFIX}");
        let Some(bytes) = self
            .store
            .get_record(&record_key, DIGEST_RECORD_MAX_BYTES)
            .await?
        else {
            return Ok(None);
        };
        match DigestRecord::parse(&record_key, &bytes) {
            Ok(r) if r.size == info.size => Ok(Some(r.sha256)),
            Ok(r) => {
                warn!(
                    key,
                    recorded = r.size,
                    actual = info.size,
                    "digest record is for another size; recording again"
                );
                Ok(None)
            }
            Err(e) => {
                warn!(error = %e, "unusable digest record; recording again");
                Ok(None)
            }
        }
    }

    /// Writes the digest record of the complete object `key`.
    pub(crate) async fn record_digest(
        &self,
        key: &str,
        sha256: &str,
        size: u64,
        meta: &HashMap<String, String>,
    ) -> Result<(), UploadError> {
        let record = DigestRecord {
            sha256: sha256.to_owned(),
            size,
            source_mtime: meta.get(META_SOURCE_MTIME).cloned().unwrap_or_default(),
        };
        let record_key = format!("{key}{DIGEST_SUFFIX}");
        with_retry(&self.metrics, self.config.max_attempts, || {
            self.store.put_record(&record_key, record.to_bytes())
        })
        .await?;
        Ok(())
    }

    pub(crate) async fn open(&self, c: &Candidate) -> Result<tokio::fs::File, UploadError> {
        let file =
            crate::archive::open_no_follow(&c.path).map_err(|source| read_err(&c.path, source))?;
        Ok(tokio::fs::File::from_std(file))
    }

    /// Reads exactly `len` bytes (fewer only at end of file).
    pub(crate) async fn read_chunk(
        &self,
        file: &mut tokio::fs::File,
        len: usize,
        path: &Path,
    ) -> Result<Bytes, UploadError> {
        let mut buf = BytesMut::zeroed(len);
        let mut filled = 0;
        while filled < len {
            let n = file
                .read(&mut buf[filled..])
                .await
                .map_err(|source| read_err(path, source))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        buf.truncate(filled);
        self.metrics.read_bytes.inc_by(filled as u64);
        Ok(buf.freeze())
    }

    async fn hash_file(&self, c: &Candidate) -> Result<String, UploadError> {
        let mut file = self.open(c).await?;
        let mut hasher = Sha256::new();
        loop {
            let chunk = self.read_chunk(&mut file, 8 << 20, &c.path).await?;
            if chunk.is_empty() {
                break;
            }
            hasher = hash_in_background(hasher, chunk.clone()).await;
        }
        Ok(hex::encode(hasher.finalize()))
    }

    async fn put_whole(
        &self,
        c: &Candidate,
        key: &str,
        mut meta: HashMap<String, String>,
    ) -> Result<Outcome, UploadError> {
        let mut file = self.open(c).await?;
        let body = self
            .read_chunk(
                &mut file,
                usize::try_from(c.size).unwrap_or(usize::MAX),
                &c.path,
            )
            .await?;
        ensure_unchanged(c, body.len() as u64)?;
        let sha = hex::encode(Sha256::digest(&body));
        meta.insert(META_SHA256.to_owned(), sha.clone());
        let bytes = body.len() as u64;
        with_retry(&self.metrics, self.config.max_attempts, || {
            self.store.put(key, body.clone(), meta.clone())
        })
        .await?;
        self.metrics.uploaded_bytes.inc_by(bytes);
        Ok(Outcome::Uploaded {
            bytes,
            sha256: sha,
            resumed_parts: 0,
        })
    }

    async fn multipart(
        &self,
        c: &Candidate,
        key: &str,
        meta: HashMap<String, String>,
        cancel: &CancellationToken,
    ) -> Result<Outcome, UploadError> {
        let part_size = self.config.part_size.max(c.size.div_ceil(MAX_PARTS));
        let total_parts = c.size.div_ceil(part_size);
        let record_path = self.record_path(key);
        let wanted = UploadRecord {
            key: key.to_owned(),
            upload_id: String::new(),
            size: c.size,
            mtime_ns: mtime_ns(c.mtime),
            part_size,
            encrypted: false,
        };

        // Resume what the server already has from an interrupted run of the same file.
        let mut resumed: Vec<(i32, String)> = Vec::new();
        let mut upload_id = None;
        if let Some(old) = read_record(&record_path) {
            let same_file = UploadRecord {
                upload_id: old.upload_id.clone(),
                ..wanted.clone()
            } == old;
            if same_file {
                match with_retry(&self.metrics, self.config.max_attempts, || {
                    self.store.list_parts(key, &old.upload_id)
                })
                .await
                {
                    Ok(parts) => {
                        for (i, p) in parts.iter().enumerate() {
                            let expected = u64::try_from(i).unwrap_or(u64::MAX) + 1;
                            let full = u64::try_from(p.number).ok() == Some(expected)
                                && (p.size == part_size || expected == total_parts);
                            if !full {
                                break;
                            }
                            resumed.push((p.number, p.etag.clone()));
                        }
                        upload_id = Some(old.upload_id.clone());
                    }
                    Err(e) if matches!(e.kind, ErrorKind::NoSuchUpload | ErrorKind::NotFound) => {
                        debug!(key, "recorded multipart upload is gone; starting afresh");
                    }
                    Err(e) => return Err(e.into()),
                }
            } else {
                let _ = self.store.abort(&old.key, &old.upload_id).await;
            }
        }
        let upload_id = match upload_id {
            Some(id) => id,
            None => {
                let id = with_retry(&self.metrics, self.config.max_attempts, || {
                    self.store.create_multipart(key, meta.clone())
                })
                .await?;
                write_record(
                    &record_path,
                    &UploadRecord {
                        upload_id: id.clone(),
                        ..wanted.clone()
                    },
                )?;
                id
            }
        };
        let resumed_parts = u32::try_from(resumed.len()).unwrap_or(u32::MAX);
        if resumed_parts > 0 {
            info!(
                key,
                resumed_parts, total_parts, "resuming an interrupted multipart upload"
            );
            self.metrics.resumed_parts.inc_by(u64::from(resumed_parts));
        }

        let result = self
            .send_parts(c, key, &upload_id, part_size, resumed, cancel)
            .await;
        let (etags, sha, sent) = match result {
            Ok(v) => v,
            Err(e) => {
                if matches!(
                    e,
                    UploadError::Cancelled { .. } | UploadError::Changed { .. }
                ) {
                    let _ = self.store.abort(key, &upload_id).await;
                    let _ = std::fs::remove_file(&record_path);
                }
                return Err(e);
            }
        };
        with_retry(&self.metrics, self.config.max_attempts, || {
            self.store.complete(key, &upload_id, &etags)
        })
        .await?;
        self.record_digest(key, &sha, c.size, &meta).await?;
        let _ = std::fs::remove_file(&record_path);
        Ok(Outcome::Uploaded {
            bytes: sent,
            sha256: sha,
            resumed_parts,
        })
    }

    /// Reads the file once: re-hashes the resumed prefix, then hashes and uploads the rest.
    async fn send_parts(
        &self,
        c: &Candidate,
        key: &str,
        upload_id: &str,
        part_size: u64,
        resumed: Vec<(i32, String)>,
        cancel: &CancellationToken,
    ) -> Result<(Vec<(i32, String)>, String, u64), UploadError> {
        let chunk_len = usize::try_from(part_size).unwrap_or(usize::MAX);
        let mut file = self.open(c).await?;
        let mut hasher = Sha256::new();
        let mut etags = resumed;
        let mut read_total = 0u64;
        for _ in 0..etags.len() {
            let chunk = self.read_chunk(&mut file, chunk_len, &c.path).await?;
            read_total += chunk.len() as u64;
            hasher = hash_in_background(hasher, chunk).await;
        }
        let mut in_flight = FuturesUnordered::new();
        let mut sent = 0u64;
        let mut number = i32::try_from(etags.len()).unwrap_or(i32::MAX);
        loop {
            if cancel.is_cancelled() {
                return Err(UploadError::Cancelled {
                    key: key.to_owned(),
                });
            }
            let chunk = self.read_chunk(&mut file, chunk_len, &c.path).await?;
            if chunk.is_empty() {
                break;
            }
            read_total += chunk.len() as u64;
            hasher = hash_in_background(hasher, chunk.clone()).await;
            number += 1;
            in_flight.push(self.send_part(key, upload_id, number, chunk));
            while in_flight.len() >= self.config.parallelism.max(1) {
                collect_part(&mut in_flight, cancel, key, &mut etags, &mut sent).await?;
            }
        }
        while !in_flight.is_empty() {
            collect_part(&mut in_flight, cancel, key, &mut etags, &mut sent).await?;
        }
        ensure_unchanged(c, read_total)?;
        etags.sort_by_key(|(n, _)| *n);
        Ok((etags, hex::encode(hasher.finalize()), sent))
    }
    /// Uploads part `number` of `upload_id` (retried); yields its number, ETag and size.
    pub(crate) fn send_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> impl std::future::Future<Output = Result<(i32, String, u64), StoreError>> + use<> {
        let (store, metrics, attempts) = (
            self.store.clone(),
            self.metrics.clone(),
            self.config.max_attempts,
        );
        let (key, upload_id, len) = (key.to_owned(), upload_id.to_owned(), body.len() as u64);
        async move {
            let etag = with_retry(&metrics, attempts, || {
                store.upload_part(&key, &upload_id, number, body.clone())
            })
            .await?;
            metrics.uploaded_bytes.inc_by(len);
            Ok((number, etag, len))
        }
    }
}

/// Waits for the next part in flight to finish (or for `cancel`): adds its size to `sent` and
/// keeps its number and ETag in `etags`.
pub(crate) async fn collect_part<F>(
    in_flight: &mut FuturesUnordered<F>,
    cancel: &CancellationToken,
    key: &str,
    etags: &mut Vec<(i32, String)>,
    sent: &mut u64,
) -> Result<(), UploadError>
where
    F: std::future::Future<Output = Result<(i32, String, u64), StoreError>>,
{
    if let Some((number, etag, len)) = next_or_cancel(in_flight, cancel, key).await? {
        *sent += len;
        etags.push((number, etag));
    }
    Ok(())
}

async fn next_or_cancel<F>(
    in_flight: &mut FuturesUnordered<F>,
    cancel: &CancellationToken,
    key: &str,
) -> Result<Option<(i32, String, u64)>, UploadError>
where
    F: std::future::Future<Output = Result<(i32, String, u64), StoreError>>,
{
    tokio::select! {
        done = in_flight.next() => match done {
            Some(Ok(v)) => Ok(Some(v)),
            Some(Err(e)) => Err(e.into()),
            None => Ok(None),
        },
        () = cancel.cancelled() => Err(UploadError::Cancelled { key: key.to_owned() }),
    }
}

async fn hash_in_background(mut hasher: Sha256, chunk: Bytes) -> Sha256 {
    match tokio::task::spawn_blocking(move || {
        hasher.update(&chunk);
        hasher
    })
    .await
    {
        Ok(h) => h,
        // The blocking pool is gone only at runtime shutdown; the upload is abandoned then.
        Err(_) => Sha256::new(),
    }
}

/// The size of the archive the object `info` holds: its `plaintext-size` when it is an age file,
/// its own size when it is plaintext; `None` when it cannot tell (unknown encryption, missing or
/// garbled `plaintext-size`), so the object is never taken for the archive.
pub fn archive_size(info: &ObjectInfo) -> Option<u64> {
    match info.metadata.get(META_ENCRYPTION) {
        None => Some(info.size),
        Some(scheme) if scheme == ENCRYPTION_AGE => {
            info.metadata.get(META_PLAINTEXT_SIZE)?.parse().ok()
        }
        Some(_) => None,
    }
}

fn read_err(path: &Path, source: std::io::Error) -> UploadError {
    UploadError::Read {
        path: path.display().to_string(),
        source,
    }
}

/// The archive must still have the size and mtime it had when it was judged complete.
pub(crate) fn ensure_unchanged(c: &Candidate, read: u64) -> Result<(), UploadError> {
    let meta = std::fs::symlink_metadata(&c.path).map_err(|source| read_err(&c.path, source))?;
    let now_mtime = meta
        .modified()
        .map_err(|source| read_err(&c.path, source))?;
    if meta.len() != c.size || read != c.size || now_mtime != c.mtime {
        return Err(UploadError::Changed {
            path: c.path.display().to_string(),
            before: c.size,
            after: meta.len().max(read),
        });
    }
    Ok(())
}

/// Label for the uploads metric.
pub fn outcome_label(o: &Outcome) -> Label {
    Label::of(o.label())
}
