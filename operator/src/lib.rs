//! transition-operator: the management-cluster operator.
//!
//! * Controllers, one folder each, each with `reconcile`, `error_policy` and `run`:
//!   [`cluster_policy`] (policy → discovered workloads → Checkpoints), [`checkpoint`] (schedule →
//!   kubelet → S3 → image), [`transition`] (fault or request → phases → Git → target verified).
//! * Detection: [`detect`] (heartbeat endpoint, phi-accrual, corroboration → faults).
//! * External systems, each behind one narrow type: [`kubelet`], [`storage`] (S3), [`image`]
//!   (registry, image builder), [`gitops`] (Git), [`k8s::clusters`] (workload clusters).
//! * Shared plumbing: [`context`] (what reconciles share, caches), [`k8s`] (status apply,
//!   Secrets, CRDs, leader election), [`observe`] (metrics, health server, tracing, locks),
//!   [`config`] (the one clap struct), [`names`].

pub mod checkpoint;
pub mod cluster_policy;
pub mod config;
pub mod context;
pub mod detect;
pub mod gitops;
pub mod image;
pub mod k8s;
pub mod kubelet;
pub mod names;
pub mod observe;
pub mod storage;
pub mod transition;

use k8s::{clusters, crd_install, leader};
use observe::{metrics, server};

use std::sync::Arc;
use std::time::Duration;

/// Why the operator stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("failed to load kubeconfig {path}: {reason}")]
    Kubeconfig { path: String, reason: String },
    #[error("failed to create a Kubernetes client: {0}")]
    Client(#[source] kube::Error),
    #[error(
        "failed to find the management cluster: no kubeconfig ({kubeconfig}) and no in-cluster configuration ({in_cluster})"
    )]
    NoClientConfig {
        kubeconfig: String,
        in_cluster: String,
    },
    #[error(transparent)]
    InstallCrds(#[from] crd_install::InstallError),
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error(transparent)]
    Tokens(#[from] detect::tokens_file::TokensFileError),
    #[error("failed to read {what} from {path}: {reason}")]
    SecretFile {
        what: &'static str,
        path: String,
        reason: String,
    },
    #[error(
        "failed to use --git-clusters-dir {0:?}: it must be a relative folder inside the repository (no `..`, no leading `/`)"
    )]
    ClustersDir(String),
    #[error(transparent)]
    SyncTrigger(#[from] gitops::agents::TriggerError),
    #[error(transparent)]
    HeartbeatTls(#[from] detect::tls::TlsError),
    #[error("failed to bind the heartbeat endpoint to {addr}: {source}")]
    HeartbeatBind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
}

/// How many confirmed faults may wait for the orchestrator (beyond that the detector waits and
/// `transition_queue_full_total{queue="faults"}` counts it).
const FAULT_QUEUE: usize = 64;

/// Confirmed node faults, for the transition orchestrator.
type Faults = tokio::sync::mpsc::Receiver<detect::run::FaultEvent>;

/// Starts the heartbeat endpoint and the detector loop; confirmed faults come out of the receiver.
async fn start_detection(
    config: &config::Config,
    tokens_file: &std::path::Path,
    client: kube::Client,
    metrics: &metrics::Metrics,
    probe: detect::run::SecretClients,
    signatures: Option<image::lookaside::SignatureStore>,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(Arc<detect::server::Beats>, Faults), RunError> {
    let (tokens, loaded) = detect::tokens_file::read(tokens_file).await?;
    let (beats, changes) = detect::beats_counted(
        tokens,
        detect::tracker::TrackerConfig::default(),
        metrics.beats.clone(),
    );
    match detect::restore_from_node_health(&beats, &client, &config.operator_namespace).await {
        Ok(n) => tracing::info!(nodes = n, "restored node list from NodeHealth"),
        Err(e) => {
            tracing::warn!(error = %e, "could not read NodeHealth; starting with no known nodes")
        }
    }
    let (faults_tx, faults_rx) = tokio::sync::mpsc::channel(FAULT_QUEUE);
    let detector = detect::run::Detector {
        beats: beats.clone(),
        // The controllers' credentials: the policies' kubeconfig Secrets (then the folder).
        probe: detect::run::KubeProbe {
            clients: Default::default(),
            secrets: Some(probe),
        },
        writer: Some(detect::run::NodeHealthWriter {
            client,
            namespace: config.operator_namespace.clone(),
        }),
        faults: faults_tx,
        faults_full: metrics
            .queue_full
            .get_or_create(&metrics::QueueLabels {
                queue: "faults".into(),
            })
            .clone(),
        changes,
        probe_timeout: Duration::from_secs(3),
        last_seen_every: Duration::from_secs(600),
    };
    tokio::spawn(detector.run(stop.clone()));
    // A rotated token (the Secret updated) is used without a restart.
    detect::tokens_file::reload_on_change(
        beats.clone(),
        tokens_file.to_owned(),
        loaded,
        stop.clone(),
    );
    let tls = match (
        &config.heartbeat_tls_cert_file,
        &config.heartbeat_tls_key_file,
    ) {
        (Some(cert), Some(key)) => {
            let files = detect::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            };
            let (tls, loaded) = files.load().await?;
            files.reload_on_change(tls.clone(), loaded, stop.clone());
            Some(tls)
        }
        _ => None,
    };
    let addr = config.heartbeat_addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::HeartbeatBind { addr, source })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%addr, scheme, "heartbeat endpoint listening");
    let mut app = detect::server::router(beats.clone());
    if let Some(store) = signatures {
        // Image signatures for the nodes' registries.d lookaside (docs/images.md#signatures).
        app = app.merge(image::lookaside::router(store));
    }
    tokio::spawn(async move {
        let served = match tls {
            Some(tls) => detect::tls::serve(listener, tls, app, stop).await,
            None => {
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await
            }
        };
        if let Err(e) = served {
            tracing::warn!(error = %e, "heartbeat endpoint stopped");
        }
    });
    Ok((beats, faults_rx))
}

/// Builds the management-cluster client from `--kubeconfig`, else $KUBECONFIG / ~/.kube/config,
/// else the in-cluster configuration (the order of `kube::Config::infer`), and logs which one.
pub async fn client(config: &config::Config) -> Result<kube::Client, RunError> {
    let Some(path) = &config.kubeconfig else {
        let options = kube::config::KubeConfigOptions::default();
        let (kc, source) = match kube::Config::from_kubeconfig(&options).await {
            Ok(kc) => (kc, "kubeconfig ($KUBECONFIG or ~/.kube/config)"),
            Err(kubeconfig) => match kube::Config::incluster() {
                Ok(kc) => (kc, "in-cluster configuration (service account token)"),
                Err(in_cluster) => {
                    return Err(RunError::NoClientConfig {
                        kubeconfig: kubeconfig.to_string(),
                        in_cluster: in_cluster.to_string(),
                    });
                }
            },
        };
        tracing::info!(source, api = %kc.cluster_url, "management cluster client");
        return kube::Client::try_from(kc).map_err(RunError::Client);
    };
    tracing::info!(source = "--kubeconfig", path = %path.display(), "management cluster client");
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

fn read_secret_file(what: &'static str, path: &std::path::Path) -> Result<String, RunError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .map_err(|e| RunError::SecretFile {
            what,
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

/// The checkpoint bucket, when `--s3-endpoint` is set.
fn archive_store(config: &config::Config) -> Result<Option<storage::ArchiveStore>, RunError> {
    if config.s3_endpoint.trim().is_empty() {
        return Ok(None);
    }
    let access_key = match &config.s3_access_key_file {
        Some(p) => read_secret_file("the S3 access key", p)?,
        None => std::env::var("MINIO_ACCESS_KEY").unwrap_or_default(),
    };
    let secret_key = match &config.s3_secret_key_file {
        Some(p) => read_secret_file("the S3 secret key", p)?,
        None => std::env::var("MINIO_SECRET_KEY").unwrap_or_default(),
    };
    Ok(Some(storage::ArchiveStore::new(&storage::StoreConfig {
        endpoint: config.s3_endpoint.trim().to_owned(),
        region: config.s3_region.clone(),
        bucket: config.s3_bucket.clone(),
        access_key,
        secret_key,
        timeout: Duration::from_secs(60),
    })))
}

/// Cancels `stop` on SIGINT or SIGTERM.
fn cancel_on_signal(stop: tokio_util::sync::CancellationToken) {
    tokio::spawn(async move {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
        tracing::info!("shutdown signal received");
        stop.cancel();
    });
}

/// Starts the watches that fill the ClusterPolicy and Checkpoint caches (until `stop`).
pub fn run_caches(
    client: &kube::Client,
    namespace: Option<&str>,
    writers: context::CacheWriters,
    stop: tokio_util::sync::CancellationToken,
) {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    fn api<K>(client: &kube::Client, namespace: Option<&str>) -> kube::Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match namespace {
            Some(ns) => kube::Api::namespaced(client.clone(), ns),
            None => kube::Api::all(client.clone()),
        }
    }
    let policies = reflector(
        writers.policies,
        watcher(
            api::<transition_crds::ClusterPolicy>(client, namespace),
            Default::default(),
        ),
    )
    .default_backoff()
    .take_until(stop.clone().cancelled_owned());
    let checkpoints = reflector(
        writers.checkpoints,
        watcher(
            api::<transition_crds::Checkpoint>(client, namespace),
            Default::default(),
        ),
    )
    .default_backoff()
    .take_until(stop.cancelled_owned());
    tokio::spawn(context::drain(policies));
    tokio::spawn(context::drain(checkpoints));
}

/// Marks `readiness` once both caches hold their initial list (or gives up when `stop`).
fn mark_caches_synced(
    caches: &context::Caches,
    readiness: &observe::readiness::Readiness,
    stop: tokio_util::sync::CancellationToken,
) {
    let (policies, checkpoints) = (caches.policies.clone(), caches.checkpoints.clone());
    let readiness = readiness.clone();
    tokio::spawn(async move {
        let both = async {
            policies.wait_until_ready().await.is_ok()
                && checkpoints.wait_until_ready().await.is_ok()
        };
        tokio::select! {
            () = stop.cancelled() => {}
            synced = both => if synced {
                readiness.set_caches_synced(true);
                tracing::info!("ClusterPolicy and Checkpoint caches synced");
            },
        }
    });
}

/// Runs the controllers and the HTTP server until SIGINT/SIGTERM (or lost leadership).
pub async fn run(config: config::Config, client: kube::Client) -> Result<(), RunError> {
    let dir = config.git_clusters_dir.to_string_lossy().into_owned();
    if !cluster_policy::validate::is_safe_relative_path(dir.trim_end_matches('/')) {
        return Err(RunError::ClustersDir(dir));
    }
    let settings = context::Settings::from_config(&config)?;
    if config.install_crds {
        crd_install::install_crds(&client, Duration::from_secs(60)).await?;
    }
    let metrics = Arc::new(metrics::Metrics::default());
    let stop = tokio_util::sync::CancellationToken::new();
    cancel_on_signal(stop.clone());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let readiness = observe::readiness::Readiness::default();
    readiness.probe_api(client.clone(), stop.clone());
    let server = tokio::spawn(server::serve(
        config.metrics_addr,
        metrics.clone(),
        readiness.clone(),
        async move {
            let _ = stop_rx.await;
        },
    ));
    let pod_label = config.pod_name.clone().map(|pod| leader::PodLabel {
        api: kube::Api::namespaced(client.clone(), &config.operator_namespace),
        pod,
    });
    if let Some(label) = &pod_label {
        // A previous run of this Pod may have led: until its label is gone the heartbeat
        // Service could route agents here, where no heartbeat endpoint runs.
        readiness.set_label_cleared(false);
        if label.set_until(false, &stop).await {
            readiness.set_label_cleared(true);
        }
    }
    let running = if config.leader_election {
        let identity = std::env::var("HOSTNAME")
            .unwrap_or_else(|_| format!("transition-operator-{}", std::process::id()));
        leader::Election {
            namespace: config.operator_namespace.clone(),
            name: "transition-operator".into(),
            identity,
            duration: Duration::from_secs(15),
        }
        .lead(client.clone(), stop.clone())
        .await
    } else {
        stop.clone()
    };
    let clusters =
        clusters::WorkloadClusters::new(client.clone(), config.workload_kubeconfig_dir.clone());
    let (caches, writers) = context::Caches::new();
    let ns = config.namespace.as_deref();
    run_caches(&client, ns, writers, running.clone());
    if !running.is_cancelled() {
        readiness.set_role(observe::readiness::Role::Leading);
        mark_caches_synced(&caches, &readiness, running.clone());
        if let Some(label) = pod_label.clone() {
            let running = running.clone();
            tokio::spawn(async move { label.set_until(true, &running).await });
        }
    }
    let mut context = context::Context::new(
        client.clone(),
        metrics.clone(),
        Duration::from_secs(config.resync_seconds),
    )
    .with_caches(caches.clone())
    .with_readiness(readiness.clone())
    .with_settings(settings)
    .with_clusters(clusters);
    if let Some(store) = archive_store(&config)? {
        context = context.with_store(store);
    } else {
        tracing::info!("no --s3-endpoint: checkpoint runs will fail until one is configured");
    }
    let mut faults = None;
    if let Some(path) = &config.heartbeat_tokens_file {
        let probe = detect::run::SecretClients {
            clusters: context.clusters.clone(),
            management: client.clone(),
            caches,
        };
        let signatures = context
            .store
            .as_ref()
            .map(image::lookaside::SignatureStore::new);
        let (beats, rx) = start_detection(
            &config,
            path,
            client,
            &metrics,
            probe,
            signatures,
            running.clone(),
        )
        .await?;
        context = context.with_beats(beats);
        faults = Some(rx);
    } else {
        tracing::info!("no --heartbeat-tokens-file: the heartbeat endpoint is off");
    }
    let ctx = Arc::new(context);
    if let Some(rx) = faults {
        tokio::spawn(transition::handle_faults(ctx.clone(), rx));
    }
    if !running.is_cancelled() {
        tokio::join!(
            cluster_policy::run(ctx.clone(), ns, running.clone()),
            checkpoint::run(ctx.clone(), ns, running.clone()),
            transition::run(ctx.clone(), ns, running.clone()),
        );
    }
    if let Some(label) = &pod_label
        && let Err(e) = label.set(false).await
    {
        // Best effort: the next run of this Pod removes it before it can become Ready.
        tracing::warn!(error = %e, "could not remove the leader label on the way out");
    }
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
