//! The ClusterPolicy controller: dereference → validate → build (pure, in [`crate::policy`]) →
//! apply status (server-side apply, one field manager) → requeue at the next schedule.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument, warn};
use transition_crds::ClusterPolicy;
use transition_crds::conditions;

use crate::crd_install::FIELD_MANAGER;
use crate::metrics::{FailureLabels, Metrics, ReconcileLabels};
use crate::policy;

const CONTROLLER: &str = "clusterpolicy";
/// First retry delay after a transient failure; doubles per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Errors of one reconcile. The variant name is the metric label and Event reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user must fix the spec; retrying will not help.
    #[error("failed to accept ClusterPolicy {policy}: {reason}")]
    InvalidSpec { policy: String, reason: String },
    #[error("failed to read ClusterPolicy {policy}: it has no namespace")]
    MissingNamespace { policy: String },
    #[error("failed to write the status of ClusterPolicy {policy}: {source}")]
    PatchStatus { policy: String, source: kube::Error },
}

impl Error {
    /// Short name for metrics and Events.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidSpec { .. } => "InvalidSpec",
            Error::MissingNamespace { .. } => "MissingNamespace",
            Error::PatchStatus { .. } => "PatchStatus",
        }
    }

    /// Whether only a spec change can fix this.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Error::InvalidSpec { .. } | Error::MissingNamespace { .. }
        )
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
}

impl Context {
    pub fn new(client: kube::Client, metrics: Arc<Metrics>, resync: Duration) -> Context {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("HOSTNAME").ok(),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        Context {
            client,
            recorder,
            metrics,
            resync,
            failures: Mutex::new(HashMap::new()),
            beats: None,
        }
    }

    /// Lets reconciles pass each policy's fault-detection thresholds to the detector.
    pub fn with_beats(mut self, beats: Arc<crate::detect::server::Beats>) -> Context {
        self.beats = Some(beats);
        self
    }

    fn backoff(&self, key: &str) -> Duration {
        let Ok(mut map) = self.failures.lock() else {
            return MAX_BACKOFF;
        };
        let n = map.entry(key.to_owned()).or_insert(0);
        *n = n.saturating_add(1);
        let factor = 1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX);
        MIN_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
    }

    fn reset_backoff(&self, key: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(key);
        }
    }
}

fn key_of(policy: &ClusterPolicy) -> String {
    format!(
        "{}/{}",
        policy.namespace().unwrap_or_default(),
        policy.name_any()
    )
}

/// Reconciles one ClusterPolicy.
#[instrument(skip_all, fields(policy = %key_of(&policy)))]
pub async fn reconcile(policy: Arc<ClusterPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let labels = ReconcileLabels {
        controller: CONTROLLER.into(),
    };
    ctx.metrics.reconciles.get_or_create(&labels).inc();
    let started = Instant::now();
    let result = apply(&policy, &ctx).await;
    ctx.metrics
        .reconcile_seconds
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.reset_backoff(&key_of(&policy));
    }
    result
}

async fn apply(policy: &ClusterPolicy, ctx: &Context) -> Result<Action, Error> {
    let name = policy.name_any();
    let ns = policy.namespace().ok_or_else(|| Error::MissingNamespace {
        policy: name.clone(),
    })?;
    let now = Timestamp::now();
    let old = policy.status.as_ref();
    let eval = policy::evaluate(&policy.spec, old, policy.meta().generation, now);
    if let Some(beats) = &ctx.beats
        && let Ok(mut tracker) = beats.tracker.lock()
    {
        let base = crate::detect::tracker::TrackerConfig::default();
        let fd = policy.spec.fault_detection.clone().unwrap_or_default();
        tracker.set_cluster_config(
            &policy.spec.cluster_selector.name,
            crate::detect::config_from_policy(&fd, base),
        );
    }

    if old != Some(&eval.status) {
        let api: Api<ClusterPolicy> = Api::namespaced(ctx.client.clone(), &ns);
        let patch = json!({
            "apiVersion": "transition.dcnlab.ssu.ac.kr/v1",
            "kind": "ClusterPolicy",
            "status": eval.status,
        });
        api.patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(|source| Error::PatchStatus {
            policy: format!("{ns}/{name}"),
            source,
        })?;
    }

    let was_valid = old.is_none_or(|s| {
        conditions::find(&s.conditions, conditions::SPEC_VALID).is_none_or(|c| c.status != "False")
    });
    if !eval.errors.is_empty() {
        let reason = eval
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        if was_valid {
            publish(ctx, policy, EventType::Warning, "InvalidSpec", &reason).await;
        }
        return Err(Error::InvalidSpec {
            policy: format!("{ns}/{name}"),
            reason,
        });
    }
    let ready_before = old.is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY));
    if !ready_before {
        let note = conditions::find(&eval.status.conditions, conditions::READY)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        info!(target_cluster = ?eval.status.target_cluster, packages = ?eval.status.protected_packages, "policy protected");
        publish(ctx, policy, EventType::Normal, "Protected", &note).await;
    }
    let wake = eval.wake_after.map_or(ctx.resync, |w| w.min(ctx.resync));
    Ok(Action::requeue(wake.max(Duration::from_secs(1))))
}

/// Publishes an Event; a failure to publish is logged, never fatal.
async fn publish(
    ctx: &Context,
    policy: &ClusterPolicy,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note.chars().take(1024).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &policy.object_ref(&())).await {
        warn!(error = %e, "failed to publish event");
    }
}

/// Spec errors wait for a spec change; everything else retries with bounded backoff.
pub fn error_policy(policy: Arc<ClusterPolicy>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .failures
        .get_or_create(&FailureLabels {
            controller: CONTROLLER.into(),
            error: error.metric_label().into(),
        })
        .inc();
    if error.is_permanent() {
        warn!(policy = %key_of(&policy), error = %error, "spec needs fixing; waiting for a change");
        return Action::await_change();
    }
    let delay = ctx.backoff(&key_of(&policy));
    warn!(policy = %key_of(&policy), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Runs the ClusterPolicy controller until a shutdown signal.
pub async fn run(ctx: Arc<Context>, namespace: Option<&str>) {
    let api: Api<ClusterPolicy> = match namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    Controller::new(api, watcher::Config::default().any_semantic())
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile round ended with an error");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_errors_are_permanent_and_api_errors_are_not() {
        let spec = Error::InvalidSpec {
            policy: "ns/p".into(),
            reason: "x".into(),
        };
        assert!(spec.is_permanent());
        let api = Error::PatchStatus {
            policy: "ns/p".into(),
            source: kube::Error::Api(
                kube::core::Status::failure("m", "InternalError")
                    .with_code(500)
                    .boxed(),
            ),
        };
        assert!(!api.is_permanent());
        assert_eq!(api.metric_label(), "PatchStatus");
    }
}
