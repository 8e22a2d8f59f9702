//! `ArchiveStore`: the operator's narrow read-only view of the checkpoint bucket the agents write
//! (layout and metadata keys in `transition_crds::storage`). Archives are streamed, never
//! buffered whole; an archive counts as ready only once its sha256 is recorded — in its `sha256`
//! metadata (one PUT) or in its digest record `<key>.sha256.json` (uploaded in parts).
//! An archive the agent encrypted (`encryption: age`) is read as it is stored; the image builder
//! decrypts it on its reading thread ([`crate::image::age_archive`]). Its recorded sha256 is the
//! plaintext's, its digest record's size the object's.

use std::time::Duration;

use transition_crds::storage::{
    DIGEST_RECORD_MAX_BYTES, DIGEST_SUFFIX, DigestError, DigestRecord, ENCRYPTION_AGE,
    META_ENCRYPTION, META_PLAINTEXT_SIZE, META_SHA256,
};

/// Connection settings.
#[derive(Clone)]
pub struct StoreConfig {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    pub timeout: Duration,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// A failed read, naming the object.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to {op} s3://{bucket}/{key}: {reason}")]
    Request {
        op: &'static str,
        bucket: String,
        key: String,
        reason: String,
        /// S3 could not be reached or answered 5xx / throttled: retrying may help.
        transient: bool,
    },
    #[error(
        "failed to use s3://{bucket}/{key}: its sha256 is not recorded yet (upload not finished)"
    )]
    NotReady { bucket: String, key: String },
    #[error("failed to use s3://{bucket}/{key}: {source}")]
    BadDigest {
        bucket: String,
        key: String,
        #[source]
        source: DigestError,
    },
    #[error(
        "failed to use s3://{bucket}/{key}: it is encrypted with {encryption:?}, which this operator cannot read (only `age`)"
    )]
    UnknownEncryption {
        bucket: String,
        key: String,
        encryption: String,
    },
    #[error(
        "failed to use s3://{bucket}/{key}: its digest record says {recorded} bytes, the object has {actual}"
    )]
    SizeMismatch {
        bucket: String,
        key: String,
        recorded: u64,
        actual: u64,
    },
}

impl StoreError {
    /// S3 could not be reached (or answered with a server error): the read is worth retrying
    /// and the wait says so in the Checkpoint's status.
    pub fn unreachable(&self) -> Option<&str> {
        match self {
            StoreError::Request {
                reason,
                transient: true,
                ..
            } => Some(reason),
            _ => None,
        }
    }
}

/// A ready archive: size and the sha256 the agent computed while uploading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveObject {
    pub key: String,
    /// `s3://bucket/key`, how errors name it.
    pub url: String,
    /// The object's size (the ciphertext's when encrypted).
    pub size: u64,
    /// `sha256:<hex>` of the PLAINTEXT archive.
    pub digest: String,
    /// The object is an age file (`encryption: age`).
    pub encrypted: bool,
    /// The plaintext archive's size, when the metadata says (encrypted objects); else `size`.
    pub plaintext_size: u64,
}

/// The checkpoint bucket.
#[derive(Clone, Debug)]
pub struct ArchiveStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl ArchiveStore {
    pub fn new(config: &StoreConfig) -> ArchiveStore {
        let client = transition_runtime::s3::client(&transition_runtime::s3::ClientSettings {
            endpoint: &config.endpoint,
            region: &config.region,
            access_key: &config.access_key,
            secret_key: &config.secret_key,
            timeout: config.timeout,
            sdk_retries: true,
            provider: "transition-operator",
        });
        ArchiveStore {
            client,
            bucket: config.bucket.clone(),
        }
    }

    /// The S3 client and bucket, for the image signatures kept in the same bucket
    /// ([`crate::image::lookaside`]).
    pub(crate) fn s3(&self) -> (&aws_sdk_s3::Client, &str) {
        (&self.client, &self.bucket)
    }

    fn err<E>(&self, op: &'static str, key: &str, e: &aws_sdk_s3::error::SdkError<E>) -> StoreError
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    {
        let (kind, reason) = transition_runtime::s3::classify(e);
        StoreError::Request {
            op,
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            reason,
            transient: kind == transition_runtime::s3::ErrorKind::Transient,
        }
    }

    /// The archive at `key` if it is complete: its sha256 is in its metadata or in its digest
    /// record (whose size must match the object's).
    pub async fn ready(&self, key: &str) -> Result<ArchiveObject, StoreError> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.err("inspect", key, &e))?;
        let size = u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0);
        let metadata = out.metadata();
        let meta = |name: &str| metadata.and_then(|m| m.get(name)).map(|v| v.trim());
        let encrypted = match meta(META_ENCRYPTION) {
            None | Some("") => false,
            Some(ENCRYPTION_AGE) => true,
            Some(other) => {
                return Err(StoreError::UnknownEncryption {
                    bucket: self.bucket.clone(),
                    key: key.to_owned(),
                    encryption: other.chars().take(32).collect(),
                });
            }
        };
        let plaintext_size = meta(META_PLAINTEXT_SIZE)
            .and_then(|v| v.parse().ok())
            .filter(|_| encrypted)
            .unwrap_or(size);
        let in_metadata = meta(META_SHA256)
            .filter(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(str::to_owned);
        let sha = match in_metadata {
            Some(sha) => sha,
            None => self.digest_record(key, size).await?,
        };
        Ok(ArchiveObject {
            key: key.to_owned(),
            url: format!("s3://{}/{key}", self.bucket),
            size,
            digest: format!("sha256:{sha}"),
            encrypted,
            plaintext_size,
        })
    }

    /// The sha256 in the digest record of `key` (an archive of `size` bytes).
    async fn digest_record(&self, key: &str, size: u64) -> Result<String, StoreError> {
        let record_key = format!("{key}{DIGEST_SUFFIX}");
        let not_ready = || StoreError::NotReady {
            bucket: self.bucket.clone(),
            key: key.to_owned(),
        };
        let bytes = transition_runtime::s3::read_small(
            &self.client,
            &self.bucket,
            &record_key,
            DIGEST_RECORD_MAX_BYTES,
        )
        .await
        .map_err(|(kind, reason)| StoreError::Request {
            op: "read",
            bucket: self.bucket.clone(),
            key: record_key.clone(),
            reason,
            transient: kind == transition_runtime::s3::ErrorKind::Transient,
        })?
        .ok_or_else(not_ready)?;
        let record =
            DigestRecord::parse(&record_key, &bytes).map_err(|source| StoreError::BadDigest {
                bucket: self.bucket.clone(),
                key: key.to_owned(),
                source,
            })?;
        if record.size != size {
            return Err(StoreError::SizeMismatch {
                bucket: self.bucket.clone(),
                key: key.to_owned(),
                recorded: record.size,
                actual: size,
            });
        }
        Ok(record.sha256)
    }

    /// Deletes the archive at `key` and its digest record (retention); a missing object is not
    /// an error.
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        for k in [key.to_owned(), format!("{key}{DIGEST_SUFFIX}")] {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&k)
                .send()
                .await
                .map_err(|e| self.err("delete", &k, &e))?;
        }
        Ok(())
    }

    /// A blocking reader streaming the archive (for the image builder's reading thread).
    pub async fn open(&self, key: &str) -> Result<impl std::io::Read + Send + 'static, StoreError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.err("read", key, &e))?;
        Ok(tokio_util::io::SyncIoBridge::new(
            out.body.into_async_read(),
        ))
    }
}
