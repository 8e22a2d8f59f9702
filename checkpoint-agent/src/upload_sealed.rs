//! Encrypted uploads (`--encryption-recipients-file`, [`crate::recipients`], [`crate::seal`]): the
//! archive is encrypted on the node to the age recipients of that file (re-read for every
//! archive) in the same single read pass that hashes it; parts are cut from the ciphertext as it
//! is produced. The object is an age file whose size is predicted before the first byte, so:
//! one PUT when the ciphertext fits in one part, else multipart. Its metadata says
//! `encryption: age` and `plaintext-size: <archive bytes>`; `size` (metadata and digest record)
//! is always the OBJECT's size, the ciphertext's here, and `sha256` always the PLAINTEXT
//! archive's (readers verify it after decrypting). Dedupe accepts an encrypted object only while
//! encryption is on (and a plaintext one only while it is off): turning encryption on or off
//! uploads every archive again. An interrupted encrypted multipart upload is NOT resumed — each
//! encryption has a fresh file key, so parts of an earlier run cannot be continued — it is
//! aborted and the archive sent again from the start.

use std::collections::HashMap;
use std::path::Path;

use bytes::Bytes;
use futures::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use transition_crds::storage::{ENCRYPTION_AGE, META_ENCRYPTION, META_PLAINTEXT_SIZE, META_SHA256};

use crate::archive::Candidate;
use crate::retry::with_retry;
use crate::seal::{SealError, Sealer, check_size};
use crate::store::ErrorKind;
use crate::upload::{
    MAX_PARTS, META_SIZE, Outcome, UploadError, Uploader, collect_part, ensure_unchanged, mtime_ns,
};
use crate::upload_record::{UploadRecord, read_record, write_record};

/// Plaintext read per step while encrypting (the ciphertext buffer stays under a part plus this).
const SEAL_READ: usize = 1 << 20;

impl Uploader {
    /// Encrypts `c` to `recipients` and uploads the age file (see the module docs): one PUT when
    /// the ciphertext fits in one part, else multipart. `meta` gets the encrypted object's keys.
    pub(crate) async fn upload_sealed(
        &self,
        c: &Candidate,
        key: &str,
        mut meta: HashMap<String, String>,
        recipients: &[crate::recipients::Recipient],
        cancel: &CancellationToken,
    ) -> Result<Outcome, UploadError> {
        let sealer = Sealer::new(recipients).map_err(|source| seal_err(&c.path, source))?;
        let sealed_size = sealer.sealed_size(c.size);
        meta.insert(META_SIZE.to_owned(), sealed_size.to_string());
        meta.insert(META_ENCRYPTION.to_owned(), ENCRYPTION_AGE.to_owned());
        meta.insert(META_PLAINTEXT_SIZE.to_owned(), c.size.to_string());
        debug!(
            key,
            recipients = recipients.len(),
            plaintext_size = c.size,
            sealed_size,
            "encrypting the archive with age"
        );
        self.abandon_interrupted(key).await;
        if sealed_size <= self.config.part_size {
            self.put_sealed(c, key, meta, sealer, sealed_size).await
        } else {
            self.multipart_sealed(c, key, meta, sealer, sealed_size, cancel)
                .await
        }
    }

    /// An interrupted multipart upload of `key` recorded in the state folder cannot be continued
    /// by an encrypted upload (each encryption has a fresh file key): aborts it (best effort;
    /// a failed abort leaves the record, and the next attempt tries again).
    async fn abandon_interrupted(&self, key: &str) {
        let record_path = self.record_path(key);
        let Some(old) = read_record(&record_path) else {
            return;
        };
        info!(
            key,
            was_encrypted = old.encrypted,
            "an interrupted multipart upload cannot be resumed when encrypting (a fresh file key each time); aborting it and sending the archive again from the start"
        );
        match with_retry(&self.metrics, self.config.max_attempts, || {
            self.store.abort(&old.key, &old.upload_id)
        })
        .await
        {
            Ok(()) => {}
            Err(e) if matches!(e.kind, ErrorKind::NoSuchUpload | ErrorKind::NotFound) => {}
            Err(e) => {
                warn!(key, error = %e, "failed to abort the interrupted multipart upload; will try again");
                return;
            }
        }
        let _ = std::fs::remove_file(&record_path);
    }

    /// Reads the next plaintext step of `c` (never past one byte beyond its expected size, so
    /// a growing file cannot grow the buffers; [`ensure_unchanged`] then reports it).
    async fn read_step(
        &self,
        file: &mut tokio::fs::File,
        c: &Candidate,
        read_total: u64,
    ) -> Result<Bytes, UploadError> {
        let left = c.size.saturating_sub(read_total).saturating_add(1);
        let len = usize::try_from(left).map_or(SEAL_READ, |l| l.min(SEAL_READ));
        if read_total > c.size {
            return Ok(Bytes::new());
        }
        self.read_chunk(file, len, &c.path).await
    }

    async fn put_sealed(
        &self,
        c: &Candidate,
        key: &str,
        mut meta: HashMap<String, String>,
        mut sealer: Sealer,
        sealed_size: u64,
    ) -> Result<Outcome, UploadError> {
        let mut file = self.open(c).await?;
        let mut read_total = 0u64;
        loop {
            let chunk = self.read_step(&mut file, c, read_total).await?;
            if chunk.is_empty() {
                break;
            }
            read_total += chunk.len() as u64;
            sealer = seal_in_background(sealer, chunk, &c.path).await?;
        }
        ensure_unchanged(c, read_total)?;
        let sealed = sealer
            .finish()
            .map_err(|source| seal_err(&c.path, source))?;
        check_size(sealed_size, &sealed).map_err(|source| seal_err(&c.path, source))?;
        meta.insert(META_SHA256.to_owned(), sealed.sha256.clone());
        let body = sealed.rest;
        with_retry(&self.metrics, self.config.max_attempts, || {
            self.store.put(key, body.clone(), meta.clone())
        })
        .await?;
        self.metrics.uploaded_bytes.inc_by(sealed.ciphertext);
        Ok(Outcome::Uploaded {
            bytes: sealed.ciphertext,
            sha256: sealed.sha256,
            resumed_parts: 0,
        })
    }

    async fn multipart_sealed(
        &self,
        c: &Candidate,
        key: &str,
        meta: HashMap<String, String>,
        sealer: Sealer,
        sealed_size: u64,
        cancel: &CancellationToken,
    ) -> Result<Outcome, UploadError> {
        let part_size = self.config.part_size.max(sealed_size.div_ceil(MAX_PARTS));
        let record_path = self.record_path(key);
        let upload_id = with_retry(&self.metrics, self.config.max_attempts, || {
            self.store.create_multipart(key, meta.clone())
        })
        .await?;
        // Recorded only so that a restart finds and aborts it (it is never resumed).
        write_record(
            &record_path,
            &UploadRecord {
                key: key.to_owned(),
                upload_id: upload_id.clone(),
                size: c.size,
                mtime_ns: mtime_ns(c.mtime),
                part_size,
                encrypted: true,
            },
        )?;
        let sent = match self
            .send_sealed_parts(c, key, &upload_id, part_size, sealer, sealed_size, cancel)
            .await
        {
            Ok(v) => v,
            Err(e) => {
                // Never resumable: free the parts now rather than at the next attempt.
                if self.store.abort(key, &upload_id).await.is_ok() {
                    let _ = std::fs::remove_file(&record_path);
                }
                return Err(e);
            }
        };
        let (etags, sha, bytes) = sent;
        with_retry(&self.metrics, self.config.max_attempts, || {
            self.store.complete(key, &upload_id, &etags)
        })
        .await?;
        self.record_digest(key, &sha, sealed_size, &meta).await?;
        let _ = std::fs::remove_file(&record_path);
        Ok(Outcome::Uploaded {
            bytes,
            sha256: sha,
            resumed_parts: 0,
        })
    }

    /// Reads the file once, hashing and encrypting it, and uploads each part of ciphertext as
    /// soon as it is complete (`parallelism` at a time).
    #[expect(clippy::too_many_arguments, reason = "one call site, all distinct")]
    async fn send_sealed_parts(
        &self,
        c: &Candidate,
        key: &str,
        upload_id: &str,
        part_size: u64,
        sealer: Sealer,
        sealed_size: u64,
        cancel: &CancellationToken,
    ) -> Result<(Vec<(i32, String)>, String, u64), UploadError> {
        let part_len = usize::try_from(part_size).unwrap_or(usize::MAX);
        let mut file = self.open(c).await?;
        let mut in_flight = FuturesUnordered::new();
        let mut etags = Vec::new();
        let (mut sent, mut read_total, mut number) = (0u64, 0u64, 0i32);
        let parallelism = self.config.parallelism.max(1);
        let mut sealer = Some(sealer);
        let mut sha256 = None;
        while let Some(mut s) = sealer.take() {
            if cancel.is_cancelled() {
                return Err(UploadError::Cancelled {
                    key: key.to_owned(),
                });
            }
            let chunk = self.read_step(&mut file, c, read_total).await?;
            let parts = if chunk.is_empty() {
                ensure_unchanged(c, read_total)?;
                let sealed = s.finish().map_err(|source| seal_err(&c.path, source))?;
                check_size(sealed_size, &sealed).map_err(|source| seal_err(&c.path, source))?;
                let mut rest = sealed.rest;
                let mut parts = Vec::new();
                while !rest.is_empty() {
                    parts.push(rest.split_to(part_len.min(rest.len())));
                }
                sha256 = Some(sealed.sha256);
                parts
            } else {
                read_total += chunk.len() as u64;
                s = seal_in_background(s, chunk, &c.path).await?;
                let parts = s
                    .take_parts(part_len)
                    .map_err(|source| seal_err(&c.path, source))?;
                sealer = Some(s);
                parts
            };
            for body in parts {
                number += 1;
                in_flight.push(self.send_part(key, upload_id, number, body));
                while in_flight.len() >= parallelism {
                    collect_part(&mut in_flight, cancel, key, &mut etags, &mut sent).await?;
                }
            }
        }
        while !in_flight.is_empty() {
            collect_part(&mut in_flight, cancel, key, &mut etags, &mut sent).await?;
        }
        etags.sort_by_key(|(n, _)| *n);
        let sha256 = sha256.ok_or_else(|| {
            seal_err(
                &c.path,
                SealError::Write {
                    source: std::io::Error::other("the archive was never finished"),
                },
            )
        })?;
        Ok((etags, sha256, sent))
    }
}

/// Hashes and encrypts `chunk` on the blocking pool (CPU work off the async threads).
async fn seal_in_background(
    mut sealer: Sealer,
    chunk: Bytes,
    path: &Path,
) -> Result<Sealer, UploadError> {
    match tokio::task::spawn_blocking(move || sealer.push(&chunk).map(|()| sealer)).await {
        Ok(Ok(sealer)) => Ok(sealer),
        Ok(Err(source)) => Err(seal_err(path, source)),
        // The blocking pool is gone only at runtime shutdown; the upload is abandoned then.
        Err(join) => Err(seal_err(
            path,
            SealError::Write {
                source: std::io::Error::other(join.to_string()),
            },
        )),
    }
}

fn seal_err(path: &Path, source: SealError) -> UploadError {
    UploadError::Encrypt {
        path: path.display().to_string(),
        source,
    }
}
