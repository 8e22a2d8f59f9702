//! Prometheus metrics of the operator.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of reconcile metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    pub controller: String,
}

/// Labels of failure metrics: the error variant.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub controller: String,
    pub error: String,
}

/// Labels of outcome counters (`taken`, `pruned`, `completed`, `failed`, …) and phase timings.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

/// Labels of bounded-queue metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: String,
}

/// All metrics, registered once.
#[derive(Debug)]
pub struct Metrics {
    pub reconciles: Family<ReconcileLabels, Counter>,
    pub failures: Family<FailureLabels, Counter>,
    pub reconcile_seconds: Family<ReconcileLabels, Histogram>,
    /// Checkpoint archives taken / images pushed / old ones pruned.
    pub checkpoints: Family<OutcomeLabels, Counter>,
    /// Transitions completed / failed.
    pub transitions: Family<OutcomeLabels, Counter>,
    /// Transition phase durations, by phase.
    pub phase_seconds: Family<OutcomeLabels, Histogram>,
    /// Sends that found a bounded queue full (nothing is dropped: the sender waits).
    pub queue_full: Family<QueueLabels, Counter>,
    /// Reads of a checkpoint archive's object that found S3 unreachable (retried).
    pub archive_read_retries: Counter,
    /// The heartbeat endpoint's counters.
    pub beats: crate::detect::BeatCounters,
    pub registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("transition");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let reconcile_seconds = Family::<ReconcileLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 12))
        });
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "Reconciles that failed, by error",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration",
            reconcile_seconds.clone(),
        );
        let checkpoints = Family::<OutcomeLabels, Counter>::default();
        let transitions = Family::<OutcomeLabels, Counter>::default();
        let phase_seconds = Family::<OutcomeLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.05, 2.0, 12))
        });
        registry.register(
            "checkpoints",
            "Checkpoint archives taken, images pushed and old ones pruned",
            checkpoints.clone(),
        );
        registry.register("transitions", "Transitions by outcome", transitions.clone());
        registry.register(
            "transition_phase_duration_seconds",
            "Transition phase durations",
            phase_seconds.clone(),
        );
        registry.register(
            "lock_poisoned",
            "Locks found poisoned by a panicked task (their data was used as left)",
            super::locks::POISONED.clone(),
        );
        let archive_read_retries = Counter::default();
        registry.register(
            "archive_read_retries",
            "Reads of a checkpoint archive that found S3 unreachable and were retried",
            archive_read_retries.clone(),
        );
        let queue_full = Family::<QueueLabels, Counter>::default();
        registry.register(
            "queue_full",
            "Sends that found a bounded queue full and had to wait, by queue",
            queue_full.clone(),
        );
        let beats = crate::detect::BeatCounters::default();
        registry.register(
            "heartbeats_accepted",
            "Heartbeats accepted by the endpoint",
            beats.accepted.clone(),
        );
        registry.register(
            "heartbeats_rejected",
            "Heartbeats refused (bad token, body, or field)",
            beats.rejected.clone(),
        );
        registry.register(
            "health_changes_dropped",
            "Node health changes dropped because the detector's queue was full",
            beats.changes_dropped.clone(),
        );
        Metrics {
            archive_read_retries,
            beats,
            queue_full,
            checkpoints,
            transitions,
            phase_seconds,
            reconciles,
            failures,
            reconcile_seconds,
            registry,
        }
    }
}

impl Metrics {
    /// Text exposition of every metric.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_heartbeat_endpoints_counters_are_in_the_exposition() {
        let m = Metrics::default();
        let (beats, _rx) = crate::detect::beats_counted(
            crate::detect::server::Tokens::default(),
            Default::default(),
            m.beats.clone(),
        );
        beats.accepted.inc();
        beats.rejected.inc();
        beats.rejected.inc();
        let text = m.render().unwrap();
        assert!(
            text.contains("transition_heartbeats_accepted_total 1"),
            "{text}"
        );
        assert!(
            text.contains("transition_heartbeats_rejected_total 2"),
            "{text}"
        );
        assert!(
            text.contains("transition_health_changes_dropped_total 0"),
            "{text}"
        );
    }
}
