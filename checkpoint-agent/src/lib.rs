//! checkpoint-agent: runs on every source worker. Watches the kubelet's checkpoint folder, uploads
//! each complete archive to S3 (streaming, multipart, sha256 in the same read pass, resumable),
//! and sends heartbeats to the operator. Uploads and heartbeats run on separate tasks so neither
//! can stall the other.

pub mod archive;
pub mod capability;
pub mod config;
pub mod heartbeat;
pub mod metrics;
pub mod node;
pub mod recipients;
pub mod retry;
pub mod seal;
pub mod server;
pub mod store;
pub mod upload;
pub mod upload_record;
pub mod upload_sealed;
pub mod vantage;
pub mod watch;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Config, ConfigError, resolve_secret};
use crate::metrics::Metrics;
use crate::store::{ObjectStore, StoreConfig};
use crate::upload::{Uploader, UploaderConfig};
use crate::watch::{ArchiveWatcher, Health, WatchConfig};

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Watch(#[from] watch::WatchError),
    #[error(transparent)]
    Heartbeat(#[from] heartbeat::HeartbeatError),
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error("failed to upload {failed} of {total} archives")]
    OnceFailed { failed: usize, total: usize },
    #[error(
        "failed to start: the cluster name is unknown (no `cluster.x-k8s.io/cluster-name` annotation on Node {node}, no --cluster-name / CLUSTER_NAME); archives would go under a prefix the operator never reads"
    )]
    NoClusterName { node: String },
}

/// The uploader described by `config`.
pub fn uploader(config: &Config, metrics: Arc<Metrics>) -> Result<Uploader, ConfigError> {
    let s3 = &config.s3;
    let store = ObjectStore::new(&StoreConfig {
        endpoint: s3.endpoint_url(),
        region: s3.region.clone(),
        bucket: s3.bucket.clone(),
        access_key: resolve_secret(
            "S3 access key",
            s3.access_key.as_ref(),
            s3.access_key_file.as_ref(),
        )?,
        secret_key: resolve_secret(
            "S3 secret key",
            s3.secret_key.as_ref(),
            s3.secret_key_file.as_ref(),
        )?,
        timeout: Duration::from_secs(s3.timeout_seconds),
    });
    let up = &config.upload;
    Ok(Uploader::new(
        store,
        UploaderConfig {
            state_dir: up.state_dir.clone(),
            part_size: up.part_size_mib.max(5) << 20,
            parallelism: up.parallelism,
            max_attempts: up.max_attempts,
            recipients_file: up.encryption_recipients_file.clone(),
        },
        metrics,
    ))
}

/// Resolves once SIGINT or SIGTERM arrives.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Runs the agent until a signal (or, with `--once`, until the present archives are uploaded).
pub async fn run(config: Config) -> Result<(), RunError> {
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let last_upload = Arc::new(Mutex::new(None));
    let uploader = uploader(&config, metrics.clone())?;
    if let Some(path) = &config.upload.encryption_recipients_file {
        // Checked at start to say so early; a bad file does not stop the agent (heartbeats must
        // go on): each archive waits, retried, until the file is fixed.
        match recipients::read_recipients(path) {
            Ok(list) => {
                info!(file = %path.display(), recipients = list.len(), "archives are encrypted with age before upload")
            }
            Err(e) => {
                error!(error = %e, "archives will not be uploaded until the recipients file is fixed")
            }
        }
    }
    let meta = node::resolve(&config.node).await;
    if meta.cluster_name.is_empty() {
        return Err(RunError::NoClusterName {
            node: config.node.node_name.clone(),
        });
    }
    let cluster = meta.cluster_name.clone();
    let watch_config = WatchConfig {
        dir: config.upload.checkpoint_dir.clone(),
        cluster,
        node: config.node.node_name.clone(),
        settle: Duration::from_millis(config.upload.settle_ms),
        rescan: Duration::from_secs(config.upload.rescan_seconds.max(1)),
        delete_after_upload: config.upload.delete_after_upload,
        writer_check: !config.upload.no_writer_check,
    };
    let mut watcher = ArchiveWatcher::new(
        watch_config,
        uploader,
        metrics.clone(),
        health.clone(),
        last_upload.clone(),
    );
    let stop = CancellationToken::new();
    let abort = CancellationToken::new();

    if config.once {
        let (total, failed) = watcher.run_once(&abort).await;
        info!(total, failed, "one-shot upload finished");
        return if failed == 0 {
            Ok(())
        } else {
            Err(RunError::OnceFailed { failed, total })
        };
    }

    let server_stop = stop.clone();
    let server = tokio::spawn(server::serve(
        config.metrics_addr,
        metrics.clone(),
        health,
        async move {
            server_stop.cancelled().await;
        },
    ));
    let heartbeats = (!config.heartbeat.controller_url.is_empty()).then(|| {
        tokio::spawn(heartbeat::run(
            config.heartbeat.clone(),
            config.node.node_name.clone(),
            meta.clone(),
            last_upload.clone(),
            metrics.clone(),
            stop.clone(),
        ))
    });
    let mut uploads = tokio::spawn(watcher.run(stop.clone(), abort.clone()));

    let finished_early = tokio::select! {
        () = shutdown_signal() => None,
        r = &mut uploads => Some(r),
    };
    stop.cancel();
    let watch_result = match finished_early {
        Some(r) => r,
        None => {
            info!(
                grace = config.shutdown_grace_seconds,
                "shutting down; letting the upload in progress finish"
            );
            match tokio::time::timeout(
                Duration::from_secs(config.shutdown_grace_seconds),
                &mut uploads,
            )
            .await
            {
                Ok(r) => r,
                Err(_) => {
                    warn!("grace period over; aborting the upload in progress");
                    abort.cancel();
                    uploads.await
                }
            }
        }
    };
    if let Some(h) = heartbeats
        && let Ok(Err(e)) = h.await
    {
        warn!(error = %e, "heartbeats stopped with an error");
    }
    if let Ok(Err(e)) = server.await {
        warn!(error = %e, "metrics server stopped with an error");
    }
    match watch_result {
        Ok(r) => r.map_err(RunError::from),
        Err(join) => {
            warn!(error = %join, "upload task ended abnormally");
            Ok(())
        }
    }
}
