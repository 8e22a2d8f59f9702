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
pub mod image;
pub mod metrics;
pub mod policy;
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
    let ctx = Arc::new(controller::Context::new(
        client,
        metrics.clone(),
        Duration::from_secs(config.resync_seconds),
    ));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(config.metrics_addr, metrics, async move {
        let _ = stop_rx.await;
    }));
    controller::run(ctx, config.namespace.as_deref()).await;
    let _ = stop_tx.send(());
    match server.await {
        Ok(result) => result.map_err(RunError::from),
        Err(join) => {
            tracing::warn!(error = %join, "metrics server task ended abnormally");
            Ok(())
        }
    }
}
