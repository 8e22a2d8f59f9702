//! transition-operator: the management-cluster operator.
//!
//! Modules: [`config`] (the one clap struct), [`policy`] (pure ClusterPolicy logic),
//! [`controller`] (the ClusterPolicy reconciler), [`crd_install`], [`image`] (checkpoint OCI
//! images), [`metrics`], [`server`]
//! (/healthz, /metrics), [`telemetry`].

pub mod config;
pub mod controller;
pub mod crd_install;
pub mod detect;
pub mod gitops;
pub mod image;
pub mod kubelet;
pub mod metrics;
pub mod policy;
pub mod schedule;
pub mod server;
pub mod storage;
pub mod telemetry;

use std::sync::Arc;
use std::time::Duration;

/// Why the operator stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("failed to load kubeconfig {path}: {reason}")]
    Kubeconfig { path: String, reason: String },
    #[error("failed to create a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error(transparent)]
    InstallCrds(#[from] crd_install::InstallError),
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error("failed to read heartbeat tokens from {path}: {reason}")]
    Tokens { path: String, reason: String },
    #[error("failed to bind the heartbeat endpoint to {addr}: {source}")]
    HeartbeatBind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// Starts the heartbeat endpoint and the detector loop (confirmed faults are logged until the
/// transition orchestrator consumes them).
async fn start_detection(
    config: &config::Config,
    tokens_file: &std::path::Path,
    client: kube::Client,
    stop: tokio_util::sync::CancellationToken,
) -> Result<Arc<detect::server::Beats>, RunError> {
    let fail = |reason: String| RunError::Tokens {
        path: tokens_file.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(tokens_file).map_err(|e| fail(e.to_string()))?;
    let tokens = detect::server::Tokens::parse(&text).map_err(fail)?;
    let (beats, changes) = detect::beats(tokens, detect::tracker::TrackerConfig::default());
    match detect::restore_from_node_health(&beats, &client, &config.operator_namespace).await {
        Ok(n) => tracing::info!(nodes = n, "restored node list from NodeHealth"),
        Err(e) => {
            tracing::warn!(error = %e, "could not read NodeHealth; starting with no known nodes")
        }
    }
    let clients = match &config.workload_kubeconfig_dir {
        Some(dir) => detect::workload_clients(dir).await,
        None => Default::default(),
    };
    let (faults_tx, mut faults_rx) = tokio::sync::mpsc::channel(64);
    let detector = detect::run::Detector {
        beats: beats.clone(),
        probe: detect::run::KubeProbe { clients },
        writer: Some(detect::run::NodeHealthWriter {
            client,
            namespace: config.operator_namespace.clone(),
        }),
        faults: faults_tx,
        changes,
        probe_timeout: Duration::from_secs(3),
        last_seen_every: Duration::from_secs(600),
    };
    tokio::spawn(detector.run(stop.clone()));
    tokio::spawn(async move {
        while let Some(f) = faults_rx.recv().await {
            tracing::warn!(cluster = %f.cluster, node = %f.node, reason = %f.reason, "node failure confirmed");
        }
    });
    let addr = config.heartbeat_addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::HeartbeatBind { addr, source })?;
    tracing::info!(%addr, "heartbeat endpoint listening");
    let app = detect::server::router(beats.clone());
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
        {
            tracing::warn!(error = %e, "heartbeat endpoint stopped");
        }
    });
    Ok(beats)
}

/// Builds the management-cluster client from `--kubeconfig`, else $KUBECONFIG / in-cluster.
pub async fn client(config: &config::Config) -> Result<kube::Client, RunError> {
    let Some(path) = &config.kubeconfig else {
        return kube::Client::try_default().await.map_err(RunError::Client);
    };
    let fail = |reason: String| RunError::Kubeconfig {
        path: path.display().to_string(),
        reason,
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| fail(e.to_string()))?;
    let kc = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(|e| fail(e.to_string()))?;
    kube::Client::try_from(kc).map_err(RunError::Client)
}

/// Runs the controllers and the HTTP server until SIGINT/SIGTERM.
pub async fn run(config: config::Config, client: kube::Client) -> Result<(), RunError> {
    if config.install_crds {
        crd_install::install_crds(&client, Duration::from_secs(60)).await?;
    }
    let metrics = Arc::new(metrics::Metrics::default());
    let mut context = controller::Context::new(
        client.clone(),
        metrics.clone(),
        Duration::from_secs(config.resync_seconds),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    if let Some(path) = &config.heartbeat_tokens_file {
        let beats = start_detection(&config, path, client, stop.clone()).await?;
        context = context.with_beats(beats);
    } else {
        tracing::info!("no --heartbeat-tokens-file: the heartbeat endpoint is off");
    }
    let ctx = Arc::new(context);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(config.metrics_addr, metrics, async move {
        let _ = stop_rx.await;
    }));
    controller::run(ctx, config.namespace.as_deref()).await;
    stop.cancel();
    let _ = stop_tx.send(());
    match server.await {
        Ok(result) => result.map_err(RunError::from),
        Err(join) => {
            tracing::warn!(error = %join, "metrics server task ended abnormally");
            Ok(())
        }
    }
}
