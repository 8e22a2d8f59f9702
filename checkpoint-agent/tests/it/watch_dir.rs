//! The archive watcher over a real folder, against a REAL s3s-fs, with REAL CRIU-made archives.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use checkpoint_agent::metrics::{Label, Metrics};
use checkpoint_agent::upload::{Uploader, UploaderConfig};
use checkpoint_agent::watch::{ArchiveWatcher, Health, WatchConfig};
use tokio_util::sync::CancellationToken;
use transition_testlab::S3Server;

fn watch_config(dir: &std::path::Path) -> WatchConfig {
    WatchConfig {
        dir: dir.to_path_buf(),
        cluster: "cluster1-azure".into(),
        node: "worker-1".into(),
        settle: Duration::from_millis(300),
        rescan: Duration::from_secs(1),
        delete_after_upload: false,
        writer_check: true,
    }
}

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

fn spawn(config: WatchConfig, up: Uploader, metrics: Arc<Metrics>) -> Running {
    let health = Arc::new(Health::default());
    let watcher = ArchiveWatcher::new(
        config,
        up,
        metrics.clone(),
        health.clone(),
        Arc::new(Mutex::new(None)),
    );
    let stop = CancellationToken::new();
    let (s, a) = (stop.clone(), CancellationToken::new());
    let task = tokio::spawn(async move {
        watcher.run(s, a).await.unwrap();
    });
    Running {
        stop,
        task,
        metrics,
        health,
    }
}

async fn keys(s3: &S3Server) -> Vec<String> {
    store(s3, &s3.secret_key)
        .list("checkpoints/")
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_log_one_error_and_pause_instead_of_retrying() {
    let s3 = S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("ckpt");
    std::fs::create_dir(&watched).unwrap();
    for pod in ["a", "b", "c"] {
        archive_in(&watched, SMALL, pod);
    }
    let metrics = Arc::new(Metrics::default());
    let config = UploaderConfig {
        state_dir: dir.path().join("state"),
        part_size: 8 << 20,
        parallelism: 4,
        max_attempts: 5,
        recipients_file: None,
    };
    let up = Uploader::new(store(&s3, "wrong-secret"), config, metrics.clone());
    let run = spawn(watch_config(&watched), up, metrics);
    eventually(10, "the credential failure", || {
        run.health.s3_auth_failed.load(Ordering::Relaxed)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        Metrics::count(&run.metrics.failures, "auth"),
        1,
        "one failure, not one per archive or per retry"
    );
    assert_eq!(
        run.metrics.s3_requests.get(),
        1,
        "a single request in 3 s: no retry storm"
    );
    run.stop.cancel();
    run.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_archive_still_being_written_is_uploaded_only_after_it_is_finished() {
    let s3 = S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("ckpt");
    std::fs::create_dir(&watched).unwrap();
    let source = archive_in(dir.path(), SMALL, "src");
    let bytes = std::fs::read(&source).unwrap();
    let target = watched.join("checkpoint-writing_default-counter-2026-11-21T10:00:00Z.tar");
    // Like the kubelet: the file is created in place and filled while open for writing.
    let mut writer = std::fs::File::create(&target).unwrap();
    writer.write_all(&bytes[..bytes.len() / 2]).unwrap();
    writer.flush().unwrap();

    let metrics = Arc::new(Metrics::default());
    let run = spawn(
        watch_config(&watched),
        uploader(&s3, &dir.path().join("state"), 8, metrics.clone()),
        metrics,
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        keys(&s3).await.is_empty(),
        "nothing uploaded while half written (size was stable for 2 s)"
    );

    writer.write_all(&bytes[bytes.len() / 2..]).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        keys(&s3).await.is_empty(),
        "nothing uploaded while the writer still holds the file open"
    );
    drop(writer);
    let key = "checkpoints/v1/cluster1-azure/worker-1/checkpoint-writing_default-counter-2026-11-21T10:00:00Z.tar";
    let path = s3.object_path(key);
    eventually(10, "the finished archive in S3", || path.exists()).await;
    assert_eq!(sha256_file(&path), sha256_file(&source));
    run.stop.cancel();
    run.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_names_symlinks_and_folders_are_never_uploaded() {
    let s3 = S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("ckpt");
    std::fs::create_dir(&watched).unwrap();
    let good = archive_in(&watched, SMALL, "good");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(watched.join("has space.tar"), &bytes).unwrap();
    std::fs::write(
        watched.join(std::ffi::OsStr::from_bytes(b"bad\xff\x01.tar")),
        &bytes,
    )
    .unwrap();
    std::fs::write(watched.join("..hidden.tar"), &bytes).unwrap();
    std::os::unix::fs::symlink(&good, watched.join("link.tar")).unwrap();
    std::os::unix::fs::symlink("/etc", watched.join("etc.tar")).unwrap();
    std::fs::create_dir(watched.join("folder.tar")).unwrap();

    let metrics = Arc::new(Metrics::default());
    let run = spawn(
        watch_config(&watched),
        uploader(&s3, &dir.path().join("state"), 8, metrics.clone()),
        metrics,
    );
    eventually(10, "the good archive", || {
        Metrics::count(&run.metrics.uploads, "uploaded") == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stored = keys(&s3).await;
    assert_eq!(
        stored,
        vec![
            "checkpoints/v1/cluster1-azure/worker-1/checkpoint-good_default-counter-2026-11-21T10:00:00Z.tar"
        ]
    );
    assert_eq!(
        run.metrics
            .skipped_files
            .get_or_create(&Label::of("unsafe_name"))
            .get(),
        2
    );
    assert_eq!(
        run.metrics
            .skipped_files
            .get_or_create(&Label::of("not_regular"))
            .get(),
        3
    );
    run.stop.cancel();
    run.task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_upload_can_delete_the_local_archive() {
    let s3 = S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("ckpt");
    std::fs::create_dir(&watched).unwrap();
    let path = archive_in(&watched, SMALL, "gc");
    let local = sha256_file(&path);
    let metrics = Arc::new(Metrics::default());
    let mut config = watch_config(&watched);
    config.delete_after_upload = true;
    let run = spawn(
        config,
        uploader(&s3, &dir.path().join("state"), 8, metrics.clone()),
        metrics,
    );
    eventually(10, "the local archive to go", || !path.exists()).await;
    let key = "checkpoints/v1/cluster1-azure/worker-1/checkpoint-gc_default-counter-2026-11-21T10:00:00Z.tar";
    assert_eq!(
        sha256_file(&s3.object_path(key)),
        local,
        "deleted only after S3 holds the same bytes"
    );
    run.stop.cancel();
    run.task.await.unwrap();
}
