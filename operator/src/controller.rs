//! The ClusterPolicy controller: dereference → validate → build (pure, in [`crate::policy`]) →
//! apply status (server-side apply, one field manager) → requeue at the next schedule.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument};
use transition_crds::ClusterPolicy;
use transition_crds::conditions;

use crate::crd_install::FIELD_MANAGER;
use crate::metrics::ReconcileLabels;
use crate::policy;

const CONTROLLER: &str = "clusterpolicy";

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

pub use crate::context::Context;

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

    let mut eval = eval;
    if eval.errors.is_empty() {
        discover_and_apply(policy, &ns, ctx, &mut eval.status, now).await;
    }

    if old != Some(&eval.status) {
        let api: Api<ClusterPolicy> = Api::namespaced(ctx.client.clone(), &ns);
        // The transition history belongs to the Transition controller's field manager.
        let mut status = serde_json::to_value(&eval.status).unwrap_or_default();
        if let Some(o) = status.as_object_mut() {
            o.remove("transitionedPackages");
        }
        let patch = json!({
            "apiVersion": "transition.dcnlab.ssu.ac.kr/v1",
            "kind": "ClusterPolicy",
            "status": status,
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

/// Condition reporting discovery in the source cluster.
pub const DISCOVERED: &str = "WorkloadsDiscovered";
/// Condition listing workloads handled as stateless because of their runtime.
pub const STATELESS_FALLBACK: &str = "StatelessFallback";

/// Finds the protected workloads in the source cluster, applies one Checkpoint per pod + package
/// and collects the ones no longer wanted. Problems become conditions; the reconcile goes on.
async fn discover_and_apply(
    policy: &ClusterPolicy,
    ns: &str,
    ctx: &Context,
    status: &mut transition_crds::cluster_policy::ClusterPolicyStatus,
    now: Timestamp,
) {
    let generation = policy.meta().generation;
    let source = &policy.spec.cluster_selector.name;
    let annotations = policy.metadata.annotations.clone().unwrap_or_default();
    let found = async {
        let client = ctx
            .clusters
            .client(source, ns, &annotations)
            .await
            .map_err(|e| ("SourceUnreachable", e.to_string()))?;
        list_workloads(&client).await.map_err(|e| {
            (
                "SourceUnreachable",
                format!("failed to list workloads in cluster {source}: {e}"),
            )
        })
    }
    .await;
    let (workloads, pods) = match found {
        Ok(x) => x,
        Err((reason, message)) => {
            conditions::set(
                &mut status.conditions,
                DISCOVERED,
                conditions::Status::False,
                reason,
                &message,
                generation,
                now,
            );
            return;
        }
    };
    let registry =
        ctx.settings
            .registry
            .clone()
            .unwrap_or_else(|| transition_crds::checkpoint::RegistryRef {
                url: String::new(),
                repository: String::new(),
                secret_ref: None,
            });
    let desired = crate::discovery::discover(
        policy,
        &workloads,
        &pods,
        &crate::discovery::Defaults { registry },
    );
    for p in &mut status.packages {
        p.workloads = desired.workloads.get(&p.name).cloned().unwrap_or_default();
    }
    let api: Api<transition_crds::Checkpoint> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!(
        "{}={}",
        crate::discovery::LABEL_POLICY,
        crate::discovery::policy_label(&policy.name_any())
    );
    let mut problems = Vec::new();
    let existing = match api
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
    {
        Ok(list) => Some(list.items),
        Err(e) => {
            problems.push(format!("failed to list Checkpoints in {ns}: {e}"));
            None
        }
    };
    let applied = if ctx.settings.registry.is_some() {
        desired.checkpoints.len()
    } else {
        0
    };
    // Only what differs is applied: Checkpoint status changes re-run this reconcile.
    let stale = desired.checkpoints.iter().filter(|c| {
        ctx.settings.registry.is_some()
            && !existing
                .iter()
                .flatten()
                .any(|e| crate::discovery::up_to_date(e, c))
    });
    for c in stale {
        let name = c.name_any();
        let mut body = serde_json::to_value(c).unwrap_or_default();
        if let Some(o) = body.as_object_mut() {
            o.remove("status");
        }
        if let Err(e) = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
        {
            problems.push(format!("failed to apply Checkpoint {ns}/{name}: {e}"));
        }
    }
    if let Some(existing) = existing {
        for name in crate::discovery::garbage(&existing, &desired) {
            if let Err(e) = api.delete(&name, &Default::default()).await {
                problems.push(format!("failed to delete Checkpoint {ns}/{name}: {e}"));
            } else {
                info!(checkpoint = %name, "checkpoint no longer wanted: deleted");
            }
        }
        for p in &mut status.packages {
            let newest = existing
                .iter()
                .filter(|c| {
                    c.spec
                        .cluster_ref
                        .as_ref()
                        .and_then(|r| r.package_name.as_deref())
                        == Some(p.name.as_str())
                })
                .filter_map(|c| c.status.as_ref())
                .filter(|s| s.last_checkpoint_image.is_some())
                .max_by_key(|s| s.last_checkpoint_time.as_ref().map(|t| t.0));
            if let Some(s) = newest {
                p.last_checkpoint_time = s.last_checkpoint_time.clone();
                p.last_checkpoint_image = s.last_checkpoint_image.clone();
            }
        }
    }
    let count: usize = desired.workloads.values().map(Vec::len).sum();
    let (state, reason, message) = if !problems.is_empty() {
        (
            conditions::Status::False,
            "ApplyFailed",
            problems.join("; "),
        )
    } else if ctx.settings.registry.is_none() {
        (
            conditions::Status::True,
            "NoRegistry",
            format!(
                "{count} workload(s) found in {source}; no checkpoint registry configured (--registry-url), so no Checkpoints"
            ),
        )
    } else {
        (
            conditions::Status::True,
            "Discovered",
            format!("{count} workload(s) found in {source}; {applied} Checkpoint(s)"),
        )
    };
    conditions::set(
        &mut status.conditions,
        DISCOVERED,
        state,
        reason,
        &message,
        generation,
        now,
    );
    let vm: Vec<String> = desired
        .workloads
        .values()
        .flatten()
        .filter(|w| {
            w.reason
                .as_deref()
                .is_some_and(|r| r.contains("runtimeClass"))
        })
        .map(|w| format!("{}/{}", w.namespace, w.name))
        .collect();
    if vm.is_empty() {
        conditions::set(
            &mut status.conditions,
            STATELESS_FALLBACK,
            conditions::Status::False,
            "AllCheckpointable",
            "every live-state workload can be checkpointed",
            generation,
            now,
        );
    } else {
        conditions::set(
            &mut status.conditions,
            STATELESS_FALLBACK,
            conditions::Status::True,
            "VMRuntime",
            format!(
                "handled as stateless (VM runtime, no CRIU): {}",
                vm.join(", ")
            ),
            generation,
            now,
        );
    }
}

/// A list call bounded by `limit`.
async fn timed_list<K>(
    api: Api<K>,
    lp: &kube::api::ListParams,
    limit: Duration,
) -> Result<kube::core::ObjectList<K>, String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&Default::default()).into_owned();
    match tokio::time::timeout(limit, api.list(lp)).await {
        Ok(Ok(x)) => Ok(x),
        Ok(Err(e)) => Err(format!("list {kind}: {e}")),
        Err(_) => Err(format!(
            "list {kind}: no answer within {}s",
            limit.as_secs()
        )),
    }
}

/// The annotated Deployments/StatefulSets of a cluster and the pods of their namespaces.
async fn list_workloads(
    client: &kube::Client,
) -> Result<
    (
        Vec<crate::discovery::Workload>,
        Vec<k8s_openapi::api::core::v1::Pod>,
    ),
    String,
> {
    use crate::discovery::Workload;
    use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    let lp = kube::api::ListParams::default();
    let limit = Duration::from_secs(15);
    let deployments = timed_list(Api::<Deployment>::all(client.clone()), &lp, limit).await?;
    let statefulsets = timed_list(Api::<StatefulSet>::all(client.clone()), &lp, limit).await?;
    let mut workloads: Vec<Workload> = deployments
        .items
        .iter()
        .filter_map(Workload::from_deployment)
        .chain(
            statefulsets
                .items
                .iter()
                .filter_map(Workload::from_statefulset),
        )
        .filter(|w| w.package().is_some())
        .collect();
    workloads.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut namespaces: Vec<&str> = workloads.iter().map(|w| w.namespace.as_str()).collect();
    namespaces.dedup();
    let mut pods = Vec::new();
    for ns in namespaces {
        let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
        let list = timed_list(api, &lp, limit).await?;
        pods.extend(list.items);
    }
    Ok((workloads, pods))
}

async fn publish(
    ctx: &Context,
    policy: &ClusterPolicy,
    type_: EventType,
    reason: &str,
    note: &str,
) {
    ctx.publish(&policy.object_ref(&()), type_, reason, "Reconcile", note)
        .await;
}

/// Spec errors wait for a spec change; everything else retries with bounded backoff.
pub fn error_policy(policy: Arc<ClusterPolicy>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.retry_after(
        CONTROLLER,
        error.metric_label(),
        &key_of(&policy),
        error.is_permanent(),
        error,
    )
}

/// Runs the ClusterPolicy controller until a shutdown signal.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    stop: tokio_util::sync::CancellationToken,
) {
    let api: Api<ClusterPolicy> = ctx.api(namespace);
    let owned: Api<transition_crds::Checkpoint> = ctx.api(namespace);
    let results = Controller::new(api, watcher::Config::default().any_semantic())
        .owns(owned, watcher::Config::default())
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(reconcile, error_policy, ctx);
    crate::context::drain(results).await;
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
