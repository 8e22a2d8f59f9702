//! What every reconcile shares: clients, the caches fed by watches, the narrow types over
//! external systems, settings, metrics, Events and per-object backoff.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::{Resource, ResourceExt};
use transition_crds::checkpoint::{RegistryRef, SecretRef};
use transition_crds::{Checkpoint, ClusterPolicy};

use crate::k8s::FIELD_MANAGER;
use crate::k8s::clusters::WorkloadClusters;
use crate::observe::locks::lock;
use crate::observe::metrics::{Metrics, ReconcileLabels};
use crate::storage::ArchiveStore;

/// First retry delay after a transient failure; doubles per failure up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_secs(2);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Operator-wide settings the controllers read (from [`crate::config::Config`]).
#[derive(Clone, Debug)]
pub struct Settings {
    /// Registry for checkpoint images (`None`: no registry configured, Checkpoints not created).
    pub registry: Option<RegistryRef>,
    pub retention: usize,
    pub archive_wait: Duration,
    pub kubelet_timeout: Duration,
    pub git_cache_dir: PathBuf,
    pub git_secret: Option<String>,
    pub git_timeout: Duration,
    /// Branch commits go to.
    pub git_branch: String,
    /// Folder holding `<cluster>/kustomization.yaml` in every repository.
    pub git_clusters_dir: PathBuf,
    /// One kustomization folder per package inside each cluster's folder.
    pub git_folder_per_package: bool,
    pub verify_timeout: Duration,
    /// The GitOps agents the Syncing phase asks to deploy the commit now (empty: they pick it
    /// up on their next poll).
    pub sync_triggers: Vec<crate::gitops::agents::Trigger>,
    /// Pause after each persisted transition phase (tests and demos).
    pub phase_pause: Duration,
    /// Age identities that open encrypted archives (read at every build).
    pub archive_identity_file: Option<PathBuf>,
    /// `<cluster>.pem` public keys: checkpoint layers are pushed encrypted when set.
    pub image_encryption_keys_dir: Option<PathBuf>,
    /// `--image-signing-key-file`: the key that signs every pushed image (`None`: unsigned).
    pub image_signing_key_file: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            registry: None,
            retention: 3,
            archive_wait: Duration::from_secs(300),
            kubelet_timeout: Duration::from_secs(60),
            git_cache_dir: std::env::temp_dir().join("transition-git"),
            git_secret: None,
            git_timeout: Duration::from_secs(120),
            git_branch: "main".into(),
            git_clusters_dir: PathBuf::from("clusters"),
            git_folder_per_package: false,
            verify_timeout: Duration::from_secs(600),
            sync_triggers: Vec::new(),
            phase_pause: Duration::ZERO,
            archive_identity_file: None,
            image_encryption_keys_dir: None,
            image_signing_key_file: None,
        }
    }
}

impl Settings {
    /// Settings from the operator's flags (a sync-trigger flag that does not read is refused).
    pub fn from_config(
        config: &crate::config::Config,
    ) -> Result<Settings, crate::gitops::agents::TriggerError> {
        let registry = (!config.registry_url.trim().is_empty()).then(|| RegistryRef {
            url: config.registry_url.trim().to_owned(),
            repository: config.registry_repository.clone(),
            secret_ref: config.registry_secret.as_ref().map(|name| SecretRef {
                name: name.clone(),
                namespace: None,
            }),
        });
        Ok(Settings {
            registry,
            retention: config.checkpoint_retention.max(1),
            archive_wait: Duration::from_secs(config.archive_wait_seconds),
            kubelet_timeout: Duration::from_secs(config.kubelet_timeout_seconds.max(1)),
            git_cache_dir: config.git_cache_dir.clone(),
            git_secret: config.git_secret.clone(),
            git_branch: config.git_branch.clone(),
            git_clusters_dir: config.git_clusters_dir.clone(),
            git_folder_per_package: config.git_folder_per_package,
            verify_timeout: Duration::from_secs(config.verify_timeout_seconds),
            sync_triggers: sync_triggers(config)?,
            phase_pause: Duration::from_millis(config.phase_pause_ms),
            archive_identity_file: config.archive_identity_file.clone(),
            image_encryption_keys_dir: config.image_encryption_keys_dir.clone(),
            image_signing_key_file: config.image_signing_key_file.clone(),
            ..Settings::default()
        })
    }
}

/// The Argo CD and Flux triggers the flags configure.
fn sync_triggers(
    config: &crate::config::Config,
) -> Result<Vec<crate::gitops::agents::Trigger>, crate::gitops::agents::TriggerError> {
    use crate::gitops::agents::{Agent, NameTemplate, Trigger, parse_location};
    let mut out = Vec::new();
    if let Some(location) = parse_location("--argocd-cluster", &config.argocd_cluster)? {
        out.push(Trigger {
            agent: Agent::ArgoCd,
            location,
            namespace: config.argocd_namespace.clone(),
            name: NameTemplate::parse("--argocd-application", &config.argocd_application)?,
        });
    }
    if let Some(location) = parse_location("--flux-cluster", &config.flux_cluster)? {
        out.push(Trigger {
            agent: Agent::Flux,
            location,
            namespace: config.flux_namespace.clone(),
            name: NameTemplate::parse("--flux-kustomization", &config.flux_kustomization)?,
        });
    }
    Ok(out)
}

/// Read caches fed by watches ([`crate::run_caches`] starts them): reconciles read
/// ClusterPolicies and Checkpoints from here instead of asking the API server.
#[derive(Clone)]
pub struct Caches {
    pub policies: Store<ClusterPolicy>,
    pub checkpoints: Store<Checkpoint>,
}

/// The writing ends of [`Caches`], for the reflectors (or a test) to fill.
pub struct CacheWriters {
    pub policies: reflector::store::Writer<ClusterPolicy>,
    pub checkpoints: reflector::store::Writer<Checkpoint>,
}

impl Caches {
    /// Empty caches and their writers.
    pub fn new() -> (Caches, CacheWriters) {
        let (policies, policy_writer) = reflector::store();
        let (checkpoints, checkpoint_writer) = reflector::store();
        (
            Caches {
                policies,
                checkpoints,
            },
            CacheWriters {
                policies: policy_writer,
                checkpoints: checkpoint_writer,
            },
        )
    }

    /// Whether `store` holds a full initial list (its reflector is running).
    pub fn ready<K>(store: &Store<K>) -> bool
    where
        K: Resource + Clone + 'static,
        K::DynamicType: std::hash::Hash + Eq + Clone,
    {
        use futures::FutureExt;
        matches!(store.wait_until_ready().now_or_never(), Some(Ok(())))
    }

    /// Whether the Checkpoint cache holds a full initial list.
    pub fn checkpoints_ready(&self) -> bool {
        Caches::ready(&self.checkpoints)
    }

    /// ClusterPolicy `namespace/name` from the cache.
    pub fn policy(&self, namespace: &str, name: &str) -> Option<Arc<ClusterPolicy>> {
        self.policies
            .get(&reflector::ObjectRef::new(name).within(namespace))
    }

    /// The Checkpoints in `namespace` whose labels include every `(key, value)` of `labels`.
    pub fn checkpoints_labelled(
        &self,
        namespace: &str,
        labels: &[(&str, &str)],
    ) -> Vec<Arc<Checkpoint>> {
        let mut found: Vec<Arc<Checkpoint>> = self
            .checkpoints
            .state()
            .into_iter()
            .filter(|c| c.namespace().as_deref() == Some(namespace))
            .filter(|c| {
                let have = c.labels();
                labels
                    .iter()
                    .all(|(k, v)| have.get(*k).map(String::as_str) == Some(*v))
            })
            .collect();
        found.sort_by_key(|c| c.name_any());
        found
    }
}

/// What every reconcile shares.
pub struct Context {
    pub client: kube::Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub resync: Duration,
    /// Consecutive transient failures per object, for bounded exponential backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The fault detector, when heartbeats are enabled: policies set their cluster's thresholds.
    pub beats: Option<Arc<crate::detect::server::Beats>>,
    pub clusters: Arc<WorkloadClusters>,
    /// The checkpoint bucket (`None`: not configured; checkpoint runs fail with that reason).
    pub store: Option<ArchiveStore>,
    pub settings: Settings,
    /// One Git operation per repository URL at a time.
    pub git_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub caches: Caches,
    /// The last listing of each ClusterPolicy's source cluster.
    pub listings: crate::cluster_policy::SourceListings,
    /// Tells the controllers when the management API is back after an outage.
    pub readiness: crate::observe::readiness::Readiness,
}

impl Context {
    /// A context whose caches are empty and fed by nothing: reads fall back to the API server
    /// until [`Context::with_caches`] gives it caches that reflectors fill.
    pub fn new(client: kube::Client, metrics: Arc<Metrics>, resync: Duration) -> Context {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("HOSTNAME").ok(),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        Context {
            clusters: Arc::new(WorkloadClusters::new(client.clone(), None)),
            client,
            recorder,
            metrics,
            resync,
            failures: Mutex::new(HashMap::new()),
            beats: None,
            store: None,
            settings: Settings::default(),
            git_locks: Mutex::new(HashMap::new()),
            caches: Caches::new().0,
            listings: Default::default(),
            readiness: Default::default(),
        }
    }

    pub fn with_readiness(mut self, readiness: crate::observe::readiness::Readiness) -> Context {
        self.readiness = readiness;
        self
    }

    /// Lets reconciles pass each policy's fault-detection thresholds to the detector.
    pub fn with_beats(mut self, beats: Arc<crate::detect::server::Beats>) -> Context {
        self.beats = Some(beats);
        self
    }

    pub fn with_caches(mut self, caches: Caches) -> Context {
        self.caches = caches;
        self
    }

    /// ClusterPolicy `namespace/name`: from the cache, else (not yet filled, or really gone)
    /// from the API server.
    pub async fn policy(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<ClusterPolicy>>, kube::Error> {
        if let Some(p) = self.caches.policy(namespace, name) {
            return Ok(Some(p));
        }
        let api: kube::Api<ClusterPolicy> = kube::Api::namespaced(self.client.clone(), namespace);
        Ok(api.get_opt(name).await?.map(Arc::new))
    }

    /// Every ClusterPolicy: from the cache once it is filled, else from the API server.
    pub async fn all_policies(&self) -> Result<Vec<Arc<ClusterPolicy>>, kube::Error> {
        if Caches::ready(&self.caches.policies) {
            return Ok(self.caches.policies.state());
        }
        let api: kube::Api<ClusterPolicy> = kube::Api::all(self.client.clone());
        let list = api.list(&kube::api::ListParams::default()).await?;
        Ok(list.items.into_iter().map(Arc::new).collect())
    }

    /// The Checkpoints in `namespace` carrying every label of `labels`: from the cache once it
    /// is filled, else from the API server.
    pub async fn checkpoints(
        &self,
        namespace: &str,
        labels: &[(&str, &str)],
    ) -> Result<Vec<Arc<Checkpoint>>, kube::Error> {
        if self.caches.checkpoints_ready() {
            return Ok(self.caches.checkpoints_labelled(namespace, labels));
        }
        let api: kube::Api<Checkpoint> = kube::Api::namespaced(self.client.clone(), namespace);
        let selector = labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let list = api
            .list(&kube::api::ListParams::default().labels(&selector))
            .await?;
        Ok(list.items.into_iter().map(Arc::new).collect())
    }

    pub fn with_settings(mut self, settings: Settings) -> Context {
        self.settings = settings;
        self
    }

    pub fn with_store(mut self, store: ArchiveStore) -> Context {
        self.store = Some(store);
        self
    }

    pub fn with_clusters(mut self, clusters: WorkloadClusters) -> Context {
        self.clusters = Arc::new(clusters);
        self
    }

    /// The lock serialising Git operations on `url`.
    pub fn git_lock(&self, url: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.git_locks, "git locks")
            .entry(url.to_owned())
            .or_default()
            .clone()
    }

    /// The next retry delay for `key` (doubles per consecutive failure, bounded).
    pub fn backoff(&self, key: &str) -> Duration {
        let mut map = lock(&self.failures, "backoff");
        let n = map.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        MIN_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
    }

    /// Consecutive failures recorded for `key`.
    pub fn failures(&self, key: &str) -> u32 {
        lock(&self.failures, "backoff")
            .get(key)
            .copied()
            .unwrap_or(0)
    }

    pub fn reset_backoff(&self, key: &str) {
        lock(&self.failures, "backoff").remove(key);
    }
}

impl Context {
    /// Runs one reconcile of `controller` for `key`: counts it, times it, and resets the
    /// object's backoff when it succeeds.
    pub async fn timed<T, E>(
        &self,
        controller: &'static str,
        key: &str,
        reconcile: impl Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let labels = ReconcileLabels {
            controller: controller.into(),
        };
        self.metrics.reconciles.get_or_create(&labels).inc();
        let started = Instant::now();
        let result = reconcile.await;
        self.metrics
            .reconcile_seconds
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        if result.is_ok() {
            self.reset_backoff(key);
        }
        result
    }

    /// Publishes an Event about `object` (the action is its kind); a failure to publish is
    /// logged, never fatal.
    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        note: &str,
    ) {
        let action = K::kind(&()).into_owned();
        let object = object.object_ref(&());
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1024).collect()),
            action,
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &object).await {
            tracing::warn!(error = %e, "failed to publish event");
        }
    }

    /// The shared `error_policy`: counts the failure, then waits for a spec change when only the
    /// user can fix it (`permanent`), else retries with bounded exponential backoff.
    pub fn retry_after(
        &self,
        controller: &str,
        label: &str,
        key: &str,
        permanent: bool,
        error: &dyn std::fmt::Display,
    ) -> Action {
        self.metrics
            .failures
            .get_or_create(&crate::observe::metrics::FailureLabels {
                controller: controller.into(),
                error: label.into(),
            })
            .inc();
        if permanent {
            tracing::warn!(object = %key, %error, "spec needs fixing; waiting for a change");
            return Action::await_change();
        }
        let delay = self.backoff(key);
        tracing::warn!(object = %key, %error, retry_in = ?delay, "reconcile failed");
        Action::requeue(delay)
    }

    /// An API for `K` in `namespace`, or in all namespaces.
    pub fn api<K>(&self, namespace: Option<&str>) -> kube::Api<K>
    where
        K: kube::Resource<Scope = kube::core::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match namespace {
            Some(ns) => kube::Api::namespaced(self.client.clone(), ns),
            None => kube::Api::all(self.client.clone()),
        }
    }
}

/// Runs `controller` with `reconcile` and `error_policy` until `stop` (what every controller's
/// `run` does after configuring its watches).
pub async fn run_controller<K, Fut>(
    controller: kube::runtime::Controller<K>,
    reconcile: impl FnMut(Arc<K>, Arc<Context>) -> Fut,
    error_policy: impl Fn(Arc<K>, &Fut::Error, Arc<Context>) -> Action,
    ctx: Arc<Context>,
    stop: tokio_util::sync::CancellationToken,
) where
    K: Clone + Resource + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: std::fmt::Debug + Eq + std::hash::Hash + Clone + Unpin,
    Fut: futures::TryFuture<Ok = Action> + Send + 'static,
    Fut::Error: std::error::Error + Send + 'static,
{
    // After a management API outage every object is reconciled at once, not when its backed-off
    // retry comes due.
    let results = controller
        .reconcile_all_on(ctx.readiness.api_returns())
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(reconcile, error_policy, ctx);
    drain(results).await;
}

/// Drives a controller's result stream to its end (errors are logged at debug level: each was
/// already handled by its `error_policy`).
pub async fn drain<S, T, E>(results: S)
where
    S: futures::Stream<Item = Result<T, E>>,
    E: std::fmt::Display,
{
    use futures::StreamExt;
    results
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile round ended with an error");
            }
        })
        .await;
}
