//! What every reconcile shares: clients, the narrow types over external systems, settings,
//! metrics and per-object backoff.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use transition_crds::checkpoint::{RegistryRef, SecretRef};

use crate::clusters::WorkloadClusters;
use crate::crd_install::FIELD_MANAGER;
use crate::metrics::Metrics;
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
    pub verify_timeout: Duration,
    pub argocd_namespace: String,
    /// Pause after each persisted transition phase (tests and demos).
    pub phase_pause: Duration,
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
            verify_timeout: Duration::from_secs(600),
            argocd_namespace: "argocd".into(),
            phase_pause: Duration::ZERO,
        }
    }
}

impl Settings {
    /// Settings from the operator's flags.
    pub fn from_config(config: &crate::config::Config) -> Settings {
        let registry = (!config.registry_url.trim().is_empty()).then(|| RegistryRef {
            url: config.registry_url.trim().to_owned(),
            repository: config.registry_repository.clone(),
            secret_ref: config.registry_secret.as_ref().map(|name| SecretRef {
                name: name.clone(),
                namespace: None,
            }),
        });
        Settings {
            registry,
            retention: config.checkpoint_retention.max(1),
            archive_wait: Duration::from_secs(config.archive_wait_seconds),
            kubelet_timeout: Duration::from_secs(config.kubelet_timeout_seconds.max(1)),
            git_cache_dir: config.git_cache_dir.clone(),
            git_secret: config.git_secret.clone(),
            verify_timeout: Duration::from_secs(config.verify_timeout_seconds),
            argocd_namespace: config.argocd_namespace.clone(),
            phase_pause: Duration::from_millis(config.phase_pause_ms),
            ..Settings::default()
        }
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
}

impl Context {
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
        }
    }

    /// Lets reconciles pass each policy's fault-detection thresholds to the detector.
    pub fn with_beats(mut self, beats: Arc<crate::detect::server::Beats>) -> Context {
        self.beats = Some(beats);
        self
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
        match self.git_locks.lock() {
            Ok(mut map) => map.entry(url.to_owned()).or_default().clone(),
            Err(_) => Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// The next retry delay for `key` (doubles per consecutive failure, bounded).
    pub fn backoff(&self, key: &str) -> Duration {
        let Ok(mut map) = self.failures.lock() else {
            return MAX_BACKOFF;
        };
        let n = map.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        MIN_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
    }

    /// Consecutive failures recorded for `key`.
    pub fn failures(&self, key: &str) -> u32 {
        self.failures
            .lock()
            .ok()
            .and_then(|m| m.get(key).copied())
            .unwrap_or(0)
    }

    pub fn reset_backoff(&self, key: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(key);
        }
    }
}

impl Context {
    /// Publishes an Event about `object`; a failure to publish is logged, never fatal.
    pub async fn publish(
        &self,
        object: &k8s_openapi::api::core::v1::ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
    ) {
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(note.chars().take(1024).collect()),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, object).await {
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
            .get_or_create(&crate::metrics::FailureLabels {
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
