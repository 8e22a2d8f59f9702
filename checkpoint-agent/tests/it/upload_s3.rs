//! The uploader against a REAL s3s-fs (SigV4, multipart) with REAL archives made by runc + CRIU.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::sync::Arc;

use crate::common::*;
use checkpoint_agent::metrics::Metrics;
use checkpoint_agent::store::ErrorKind;
use checkpoint_agent::upload::{Outcome, UploadError};
use tokio_util::sync::CancellationToken;
use transition_crds::storage::{ArchiveKey, DigestRecord, META_SHA256};
use transition_testlab::S3Server;

#[tokio::test]
async fn small_and_large_archives_arrive_whole_with_their_sha256_in_metadata_or_digest_record() {
    let s3 = S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::default());
    let up = uploader(&s3, &dir.path().join("state"), 8, metrics.clone());
    for (fixture, pod) in [(SMALL, "small"), (LARGE, "large")] {
        let path = archive_in(dir.path(), fixture, pod);
        let c = candidate(&path);
        let key = ArchiveKey::new("cluster1-azure", "worker-1", &c.name).unwrap();
        let outcome = up
            .upload(&c, &key, &CancellationToken::new())
            .await
            .unwrap();
        let local = sha256_file(&path);
        assert!(
            matches!(outcome, Outcome::Uploaded { bytes, .. } if bytes == c.size),
            "{outcome:?}"
        );
        assert_eq!(outcome.sha256(), local);
        assert_eq!(
            sha256_file(&s3.object_path(&key.to_string())),
            local,
            "the stored bytes are the archive"
        );
        let head = up.store().head(&key.to_string()).await.unwrap().unwrap();
        assert_eq!(head.size, c.size);
        let record_file = s3.object_path(&key.digest_key());
        if pod == "small" {
            assert_eq!(
                head.metadata.get(META_SHA256),
                Some(&local),
                "one PUT: in its metadata"
            );
            assert!(!record_file.exists());
        } else {
            // In parts: no server-side copy to add metadata; a digest record beside it.
            assert_eq!(head.metadata.get(META_SHA256), None);
            let record =
                DigestRecord::parse("record", &std::fs::read(&record_file).unwrap()).unwrap();
            assert_eq!(
                (record.sha256.as_str(), record.size),
                (local.as_str(), c.size)
            );
        }
        assert_eq!(
            up.recorded_sha256(&key.to_string(), &head).await.unwrap(),
            Some(local.clone())
        );
    }
    let large = std::fs::metadata(
        dir.path()
            .join("checkpoint-large_default-counter-2026-11-21T10:00:00Z.tar"),
    )
    .unwrap()
    .len();
    assert!(
        large > 100 << 20,
        "the large archive is over 100 MiB ({large} bytes)"
    );
    let small = std::fs::metadata(
        dir.path()
            .join("checkpoint-small_default-counter-2026-11-21T10:00:00Z.tar"),
    )
    .unwrap()
    .len();
    assert_eq!(
        metrics.read_bytes.get(),
        large + small,
        "each archive was read from disk exactly once"
    );
}

#[tokio::test]
async fn a_second_run_reads_and_sends_nothing() {
    let s3 = S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_, c, key) = archive_with_key(dir.path(), LARGE, "again");
    let first = Arc::new(Metrics::default());
    uploader(&s3, &dir.path().join("state"), 8, first)
        .upload(&c, &key, &CancellationToken::new())
        .await
        .unwrap();

    let second = Arc::new(Metrics::default());
    let outcome = uploader(&s3, &dir.path().join("state"), 8, second.clone())
        .upload(&c, &key, &CancellationToken::new())
        .await
        .unwrap();
    assert!(
        matches!(outcome, Outcome::AlreadyPresent { .. }),
        "{outcome:?}"
    );
    assert_eq!(second.uploaded_bytes.get(), 0, "no bytes sent");
    assert_eq!(second.read_bytes.get(), 0, "the archive was not even read");
    assert_eq!(
        second.s3_requests.get(),
        2,
        "one HEAD and one read of the small digest record; the archive is not downloaded"
    );
}

#[tokio::test]
async fn an_upload_waits_out_an_s3_outage_and_completes() {
    let mut s3 = S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (path, c, key) = archive_with_key(dir.path(), SMALL, "outage");
    let metrics = Arc::new(Metrics::default());
    let up = uploader(&s3, &dir.path().join("state"), 8, metrics.clone());
    s3.stop();
    let task = tokio::spawn(async move { up.upload(&c, &key, &CancellationToken::new()).await });
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(!task.is_finished(), "still retrying while S3 is down");
    s3.restart().unwrap();
    let outcome = task.await.unwrap().unwrap();
    assert_eq!(outcome.sha256(), sha256_file(&path));
    assert!(
        metrics.s3_requests.get() > 2,
        "it retried ({} requests)",
        metrics.s3_requests.get()
    );
}

#[tokio::test]
async fn wrong_credentials_fail_at_once_with_a_clear_error() {
    let s3 = S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (_, c, key) = archive_with_key(dir.path(), SMALL, "creds");
    let metrics = Arc::new(Metrics::default());
    let config = checkpoint_agent::upload::UploaderConfig {
        state_dir: dir.path().join("state"),
        part_size: 8 << 20,
        parallelism: 4,
        max_attempts: 8,
        recipients_file: None,
    };
    let up = checkpoint_agent::upload::Uploader::new(
        store(&s3, "not-the-secret"),
        config,
        metrics.clone(),
    );
    let err = up
        .upload(&c, &key, &CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.is_auth(), "{err}");
    let UploadError::Store(e) = &err else {
        panic!("{err:?}")
    };
    assert_eq!(e.kind, ErrorKind::Auth);
    assert!(
        err.to_string().contains("credentials") && err.to_string().contains(&key.to_string()),
        "{err}"
    );
    assert_eq!(
        metrics.s3_requests.get(),
        1,
        "no retry of a credential error"
    );
}
