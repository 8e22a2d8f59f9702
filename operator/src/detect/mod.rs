//! Heartbeats and fault detection: a phi-accrual detector per node ([`phi`]), per-node health with
//! corroboration by the workload cluster's API ([`tracker`]).

pub mod kubelet_reach;
pub mod phi;
pub mod restore;
pub mod run;
pub mod server;
pub mod tls;
pub mod tokens_file;
pub mod tracker;

use std::sync::{Arc, Mutex};

use tracker::{Health, NodeKey, Tracker, TrackerConfig};

/// Runs `step` every `every` until `stop`, on a task of its own, threading its state from one
/// run to the next: the loop of the files the operator re-reads while running (the heartbeat TLS
/// certificate, the heartbeat tokens), whose state is the digest of the content in use.
pub fn reload_every<S, F, Fut>(
    every: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
    initial: S,
    mut step: F,
) where
    S: Send + 'static,
    F: FnMut(S) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = S> + Send,
{
    tokio::spawn(async move {
        let mut state = initial;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            state = step(state).await;
        }
    });
}

/// How many health changes found by the heartbeat endpoint may wait for the detector loop; beyond
/// that a change is dropped and counted (the tracker itself is already up to date, only the
/// NodeHealth write of that recovery waits for the next change).
pub const CHANGES_QUEUE: usize = 1024;

/// The endpoint's counters (clones share their value: the operator registers them in /metrics).
#[derive(Clone, Debug, Default)]
pub struct BeatCounters {
    pub accepted: prometheus_client::metrics::counter::Counter,
    pub rejected: prometheus_client::metrics::counter::Counter,
    pub changes_dropped: prometheus_client::metrics::counter::Counter,
}

/// The endpoint's shared state plus the receiving end of its health changes.
pub fn beats(
    tokens: server::Tokens,
    config: TrackerConfig,
) -> (
    Arc<server::Beats>,
    tokio::sync::mpsc::Receiver<tracker::Change>,
) {
    beats_counted(tokens, config, BeatCounters::default())
}

/// [`beats`] counting into `counters`.
pub fn beats_counted(
    tokens: server::Tokens,
    config: TrackerConfig,
    counters: BeatCounters,
) -> (
    Arc<server::Beats>,
    tokio::sync::mpsc::Receiver<tracker::Change>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(CHANGES_QUEUE);
    let beats = server::Beats {
        tokens: Mutex::new(tokens),
        tracker: Mutex::new(Tracker::new(config, server::now_ms())),
        last: Mutex::new(Default::default()),
        changes: tx,
        accepted: counters.accepted,
        rejected: counters.rejected,
        changes_dropped: counters.changes_dropped,
    };
    (Arc::new(beats), rx)
}

/// Seeds the tracker with the nodes NodeHealth knows (after a restart): each is judged only after
/// the warm-up, from fresh beats.
pub async fn restore_from_node_health(
    beats: &server::Beats,
    client: &kube::Client,
    namespace: &str,
) -> Result<usize, kube::Error> {
    let api: kube::Api<transition_crds::NodeHealth> =
        kube::Api::namespaced(client.clone(), namespace);
    let list = api.list(&Default::default()).await?;
    let mut n = 0;
    {
        let mut t = crate::observe::locks::lock(&beats.tracker, "detector tracker");
        for nh in list.items {
            let status = nh.status.unwrap_or_default();
            let (Some(cluster), Some(node)) =
                (status.cluster_name.clone(), nh.spec.node_name.clone())
            else {
                continue;
            };
            let health = match status.condition {
                Some(transition_crds::node_health::NodeCondition::Unhealthy) => Health::Suspect,
                _ => Health::Healthy,
            };
            t.restore(&NodeKey { cluster, node }, health);
            n += 1;
        }
    }
    Ok(n)
}

/// Tracker settings from a ClusterPolicy's `faultDetection` (unset fields keep the defaults).
pub fn config_from_policy(
    fd: &transition_crds::cluster_policy::FaultDetection,
    base: TrackerConfig,
) -> TrackerConfig {
    let mut c = base;
    if let Some(v) = fd.heartbeat_interval_ms {
        c.phi.first_interval_ms = f64::from(v);
    }
    if let Some(v) = fd.phi_threshold {
        c.phi.threshold = f64::from(v);
    }
    if let Some(v) = fd.acceptable_pause_ms {
        c.phi.acceptable_pause_ms = f64::from(v);
    }
    if let Some(v) = fd.lease_fresh_seconds {
        c.lease_fresh_ms = u64::from(v) * 1000;
    }
    if let Some(v) = fd.unreachable_grace_seconds {
        c.unreachable_grace_ms = u64::from(v) * 1000;
    }
    if let Some(v) = fd.recovery_beats {
        c.recovery_beats = v;
    }
    if let Some(v) = fd.cluster_outage_failover {
        c.outage_failover = v;
    }
    if let Some(v) = fd.kubelet_probe {
        c.kubelet_probe = v;
    }
    c
}
