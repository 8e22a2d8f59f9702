//! Shared helpers: a private real s3s-fs, real CRIU-made archives, and an uploader wired to them.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use checkpoint_agent::archive::{self, Candidate};
use checkpoint_agent::config::Secret;
use checkpoint_agent::metrics::Metrics;
use checkpoint_agent::store::{ObjectStore, StoreConfig};
use checkpoint_agent::upload::{Uploader, UploaderConfig};
use sha2::{Digest, Sha256};
use transition_crds::storage::ArchiveKey;
use transition_testlab::{S3Server, checkpoint_fixture};

pub const SMALL: (&str, u32) = ("small", 0);
pub const LARGE: (&str, u32) = ("large-110mib", 110);

/// A fixture archive copied into `dir` under a kubelet-style name.
pub fn archive_in(dir: &Path, fixture: (&str, u32), pod: &str) -> PathBuf {
    let src = checkpoint_fixture(fixture.0, fixture.1).unwrap();
    let path = dir.join(format!(
        "checkpoint-{pod}_default-counter-2026-11-21T10:00:00Z.tar"
    ));
    std::fs::copy(&src, &path).unwrap();
    path
}

pub fn store(s3: &S3Server, secret: &str) -> ObjectStore {
    ObjectStore::new(&StoreConfig {
        endpoint: s3.endpoint(),
        region: "us-east-1".into(),
        bucket: s3.bucket.clone(),
        access_key: Secret::new(&s3.access_key),
        secret_key: Secret::new(secret),
        timeout: Duration::from_secs(30),
    })
}

pub fn uploader(s3: &S3Server, state: &Path, part_mib: u64, metrics: Arc<Metrics>) -> Uploader {
    let config = UploaderConfig {
        state_dir: state.to_path_buf(),
        part_size: part_mib << 20,
        parallelism: 4,
        max_attempts: 8,
        recipients_file: None,
    };
    Uploader::new(store(s3, &s3.secret_key), config, metrics)
}

pub fn candidate(path: &Path) -> Candidate {
    archive::classify(path).unwrap().unwrap()
}

/// [`archive_in`], its candidate and its key in cluster `c1`, node `w1`.
pub fn archive_with_key(
    dir: &Path,
    fixture: (&str, u32),
    pod: &str,
) -> (PathBuf, Candidate, ArchiveKey) {
    let path = archive_in(dir, fixture, pod);
    let c = candidate(&path);
    let key = ArchiveKey::new("c1", "w1", &c.name).unwrap();
    (path, c, key)
}

pub fn sha256_file(path: &Path) -> String {
    let mut file = std::fs::File::open(path).unwrap();
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).unwrap();
    hex::encode(hasher.finalize())
}

/// Polls `check` every 100 ms for up to `secs` seconds.
pub async fn eventually(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
