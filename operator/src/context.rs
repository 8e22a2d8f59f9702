//! What every reconcile shares: clients, the narrow types over external systems, settings,
//! metrics and per-object backoff.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};
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
