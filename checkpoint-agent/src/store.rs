//! `ObjectStore`: the agent's one narrow type over S3 (aws-sdk-s3). Every call has a timeout; the
//! SDK makes no retries of its own (the uploader retries with backoff and knows which errors are
//! worth retrying, see [`ErrorKind`]).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;

use crate::config::Secret;

pub use transition_runtime::s3::ErrorKind;
use transition_runtime::s3::classify;

/// A failed S3 call, naming the operation and the object.
#[derive(Debug, thiserror::Error)]
#[error("failed to {op} s3://{bucket}/{key}: {message}")]
pub struct StoreError {
    pub op: &'static str,
    pub bucket: String,
    pub key: String,
    pub kind: ErrorKind,
    pub message: String,
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        self.kind == ErrorKind::Transient
    }
}

/// What HEAD tells about an object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub size: u64,
    pub metadata: HashMap<String, String>,
}

/// One uploaded part of a multipart upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartInfo {
    pub number: i32,
    pub size: u64,
    pub etag: String,
}

/// Connection settings.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub access_key: Secret,
    pub secret_key: Secret,
    pub timeout: Duration,
}

/// A bucket on an S3 endpoint.
#[derive(Clone, Debug)]
pub struct ObjectStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl ObjectStore {
    /// A client for `config.bucket` (path-style addressing, as MinIO and s3s-fs expect).
    pub fn new(config: &StoreConfig) -> ObjectStore {
        let client = transition_runtime::s3::client(&transition_runtime::s3::ClientSettings {
            endpoint: &config.endpoint,
            region: &config.region,
            access_key: config.access_key.expose(),
            secret_key: config.secret_key.expose(),
            timeout: config.timeout,
            // The uploader retries with its own backoff and knows which errors are worth it.
            sdk_retries: false,
            provider: "checkpoint-agent",
        });
        ObjectStore {
            client,
            bucket: config.bucket.clone(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn err<E>(&self, op: &'static str, key: &str, e: &SdkError<E>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let (kind, message) = classify(e);
        StoreError {
            op,
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            kind,
            message,
        }
    }

    /// Size and user metadata of `key`, or `None` when it does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some(ObjectInfo {
                size: u64::try_from(out.content_length().unwrap_or(0)).unwrap_or(0),
                metadata: out.metadata().cloned().unwrap_or_default(),
            })),
            Err(e) => {
                let err = self.err("inspect", key, &e);
                if err.kind == ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// Writes `body` to `key` in one request (atomically visible).
    pub async fn put(
        &self,
        key: &str,
        body: Bytes,
        metadata: HashMap<String, String>,
    ) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .set_metadata(Some(metadata))
            .content_type("application/x-tar")
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.err("upload", key, &e))
    }

    /// Starts a multipart upload; returns its id.
    pub async fn create_multipart(
        &self,
        key: &str,
        metadata: HashMap<String, String>,
    ) -> Result<String, StoreError> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .set_metadata(Some(metadata))
            .content_type("application/x-tar")
            .send()
            .await
            .map_err(|e| self.err("start a multipart upload of", key, &e))?;
        out.upload_id()
            .map(str::to_owned)
            .ok_or_else(|| StoreError {
                op: "start a multipart upload of",
                bucket: self.bucket.clone(),
                key: key.to_owned(),
                kind: ErrorKind::Other,
                message: "the server returned no upload id".into(),
            })
    }

    /// Uploads part `number` (1-based); returns its ETag.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        body: Bytes,
    ) -> Result<String, StoreError> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.err("upload a part of", key, &e))?;
        Ok(out.e_tag().unwrap_or_default().to_owned())
    }

    /// Parts the server already has for `upload_id`, in order.
    pub async fn list_parts(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<Vec<PartInfo>, StoreError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload_id)
                .set_part_number_marker(marker.clone())
                .send()
                .await
                .map_err(|e| self.err("list the uploaded parts of", key, &e))?;
            for p in out.parts() {
                parts.push(PartInfo {
                    number: p.part_number().unwrap_or(0),
                    size: u64::try_from(p.size().unwrap_or(0)).unwrap_or(0),
                    etag: p.e_tag().unwrap_or_default().to_owned(),
                });
            }
            match (out.is_truncated(), out.next_part_number_marker()) {
                (Some(true), Some(next)) => marker = Some(next.to_owned()),
                _ => break,
            }
        }
        parts.sort_by_key(|p| p.number);
        Ok(parts)
    }

    /// Completes a multipart upload: the object becomes visible, whole, at once.
    pub async fn complete(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<(), StoreError> {
        let completed = parts
            .iter()
            .map(|(n, etag)| CompletedPart::builder().part_number(*n).e_tag(etag).build())
            .collect::<Vec<_>>();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(completed))
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.err("complete the multipart upload of", key, &e))
    }

    /// Abandons a multipart upload and frees its parts.
    pub async fn abort(&self, key: &str, upload_id: &str) -> Result<(), StoreError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.err("abort the multipart upload of", key, &e))
    }

    /// Writes the small JSON object `body` to `key` (a digest record).
    pub async fn put_record(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.err("record the digest in", key, &e))
    }

    /// The bytes of the small object `key` (at most `limit` + 1 are read), or `None` when it
    /// does not exist.
    pub async fn get_record(&self, key: &str, limit: usize) -> Result<Option<Vec<u8>>, StoreError> {
        transition_runtime::s3::read_small(&self.client, &self.bucket, key, limit)
            .await
            .map_err(|(kind, message)| StoreError {
                op: "read",
                bucket: self.bucket.clone(),
                key: key.to_owned(),
                kind,
                message,
            })
    }

    /// Keys under `prefix` (for tests and tools).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.clone())
                .send()
                .await
                .map_err(|e| self.err("list", prefix, &e))?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            match out.next_continuation_token() {
                Some(next) if out.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(keys)
    }
}
