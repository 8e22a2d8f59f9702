//! The ClusterPolicy controller: dereference → validate → build (pure: [`validate`],
//! [`discover`]) → apply (the policy's Checkpoints) → status (server-side apply, one field
//! manager) → requeue at the next schedule.
//!
//! The source cluster is listed only when discovery is due — a new spec generation, or
//! [`Context::resync`] since the last listing — never because a Checkpoint's status changed:
//! those changes only refresh the newest-checkpoint figures, read from the cache.

pub mod away;
pub mod checkpoints;
pub mod discover;
pub mod source;
pub mod targets;
pub mod validate;
pub mod workload;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tracing::{info, instrument};
use transition_crds::cluster_policy::ClusterPolicyStatus;
use transition_crds::conditions::{self, Status};
use transition_crds::{Checkpoint, ClusterPolicy};

pub use crate::context::Context;
use crate::k8s::{FIELD_MANAGER, id_of};
use crate::observe::locks::lock;

const CONTROLLER: &str = "clusterpolicy";
/// Condition reporting discovery in the source cluster.
pub const DISCOVERED: &str = "WorkloadsDiscovered";
/// Condition listing workloads handled as stateless because of their runtime.
pub const STATELESS_FALLBACK: &str = "StatelessFallback";
/// Condition listing live-state workloads whose restore would be wrong (several replicas, volumes
/// without replicated storage): they get no Checkpoint and fail over without state.
pub const RESTORE_REFUSED: &str = "RestoreRefused";

/// Errors of one reconcile. The variant name is the metric label and Event reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user must fix the spec; retrying will not help.
    #[error("failed to accept ClusterPolicy {policy}: {reason}")]
    InvalidSpec { policy: String, reason: String },
    #[error("failed to read ClusterPolicy {policy}: it has no namespace")]
    MissingNamespace { policy: String },
    #[error("failed to write the status of ClusterPolicy {policy}: {source}")]
    PatchStatus {
        policy: String,
        #[source]
        source: kube::Error,
    },
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

/// What one listing of a source cluster found (or why it failed), shared by reconciles.
pub type Listing = Arc<
    Result<
        (
            Vec<discover::Workload>,
            Vec<k8s_openapi::api::core::v1::Pod>,
        ),
        String,
    >,
>;

/// The last listing of each policy's source cluster, reused until the policy's generation
/// changes or [`Context::resync`] has passed: the source cluster sees requests at the resync
/// rate, not at the rate Checkpoint statuses change.
#[derive(Default)]
pub struct SourceListings(Mutex<HashMap<String, Marked>>);

/// A listing with the policy generation it was made for and when.
type Marked = (Option<i64>, Instant, Listing);

impl SourceListings {
    /// The listing of `policy` at `generation` if it is younger than `every`.
    pub fn fresh(&self, policy: &str, generation: Option<i64>, every: Duration) -> Option<Listing> {
        lock(&self.0, "source listings")
            .get(policy)
            .filter(|(g, at, _)| *g == generation && at.elapsed() < every)
            .map(|(_, _, l)| l.clone())
    }

    /// Remembers a new listing of `policy`.
    pub fn store(&self, policy: &str, generation: Option<i64>, listing: Listing) {
        lock(&self.0, "source listings")
            .insert(policy.to_owned(), (generation, Instant::now(), listing));
    }
}

/// Reconciles one ClusterPolicy.
#[instrument(skip_all, fields(policy = %id_of(policy.as_ref())))]
pub async fn reconcile(policy: Arc<ClusterPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = id_of(policy.as_ref());
    ctx.timed(CONTROLLER, &key, apply(&policy, &ctx)).await
}

async fn apply(policy: &ClusterPolicy, ctx: &Context) -> Result<Action, Error> {
    let name = policy.name_any();
    let ns = policy.namespace().ok_or_else(|| Error::MissingNamespace {
        policy: name.clone(),
    })?;
    let now = Timestamp::now();
    let old = policy.status.as_ref();
    let mut eval = validate::evaluate(&policy.spec, old, policy.meta().generation, now);
    if let Some(beats) = &ctx.beats {
        let base = crate::detect::tracker::TrackerConfig::default();
        let fd = policy.spec.fault_detection.clone().unwrap_or_default();
        lock(&beats.tracker, "detector tracker").set_cluster_config(
            &policy.spec.cluster_selector.name,
            crate::detect::config_from_policy(&fd, base),
        );
    }
    if eval.errors.is_empty() {
        sync_checkpoints(policy, &ns, ctx, &mut eval.status, now).await;
        not_ready_without_discovery(&mut eval.status, policy.meta().generation, now);
        restore_capability(policy, ctx, &mut eval.status, now);
    }
    if old != Some(&eval.status) {
        // The transition history belongs to the Transition controller's field manager.
        let mut status = serde_json::to_value(&eval.status).unwrap_or_default();
        if let Some(o) = status.as_object_mut() {
            o.remove("transitionedPackages");
        }
        crate::k8s::status::apply(&ctx.client, policy, &status, FIELD_MANAGER)
            .await
            .map_err(|source| Error::PatchStatus {
                policy: format!("{ns}/{name}"),
                source,
            })?;
    }
    if !eval.errors.is_empty() {
        let was_valid = old.is_none_or(|s| {
            conditions::find(&s.conditions, conditions::SPEC_VALID)
                .is_none_or(|c| c.status != "False")
        });
        let reason = eval
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        if was_valid {
            ctx.publish(policy, EventType::Warning, "InvalidSpec", &reason)
                .await;
        }
        return Err(Error::InvalidSpec {
            policy: format!("{ns}/{name}"),
            reason,
        });
    }
    let refused_before = old.is_some_and(|s| conditions::is_true(&s.conditions, RESTORE_REFUSED));
    if !refused_before
        && let Some(c) = conditions::find(&eval.status.conditions, RESTORE_REFUSED)
            .filter(|c| c.status == "True")
    {
        let note = c.message.clone();
        ctx.publish(policy, EventType::Warning, "RestoreRefused", &note)
            .await;
    }
    let ready_before = old.is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY));
    let ready_now = conditions::is_true(&eval.status.conditions, conditions::READY);
    if !ready_before && ready_now {
        let note = conditions::find(&eval.status.conditions, conditions::READY)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        info!(target_cluster = ?eval.status.target_cluster, packages = ?eval.status.protected_packages, "policy protected");
        ctx.publish(policy, EventType::Normal, "Protected", &note)
            .await;
    }
    let wake = eval.wake_after.map_or(ctx.resync, |w| w.min(ctx.resync));
    Ok(Action::requeue(wake.max(Duration::from_secs(1))))
}

/// Discovers the protected workloads when due and applies the policy's Checkpoints, then reports
/// each package's newest checkpoint. Problems become conditions; the reconcile goes on.
async fn sync_checkpoints(
    policy: &ClusterPolicy,
    ns: &str,
    ctx: &Context,
    status: &mut ClusterPolicyStatus,
    now: Timestamp,
) {
    let generation = policy.meta().generation;
    let existing = match checkpoints::existing(ctx, ns, &policy.name_any()).await {
        Ok(e) => e,
        Err(e) => {
            set_discovered(
                status,
                Status::False,
                "ApplyFailed",
                e.to_string(),
                generation,
                now,
            );
            return;
        }
    };
    let moved = away::list_away(policy, ns, ctx, status).await;
    discover_and_apply(policy, ns, ctx, status, &existing, &moved, now).await;
    away::report(policy, status, &moved, generation, now);
    checkpoints::report_newest(status, &existing);
    if let Some(why) = checkpoints::unprotected(status, now) {
        conditions::set(
            &mut status.conditions,
            conditions::READY,
            Status::False,
            "NotProtected",
            why,
            generation,
            now,
        );
    }
}

fn set_discovered(
    status: &mut ClusterPolicyStatus,
    state: Status,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) {
    conditions::set(
        &mut status.conditions,
        DISCOVERED,
        state,
        reason,
        message,
        generation,
        now,
    );
}

/// `cluster`'s protected workloads and their pods (the source's, or where moved packages run):
/// the cached listing, else a new one.
async fn cluster_listing(
    policy: &ClusterPolicy,
    ns: &str,
    ctx: &Context,
    cluster: &str,
) -> Listing {
    let key = if cluster == policy.spec.cluster_selector.name {
        id_of(policy)
    } else {
        format!("{}@{cluster}", id_of(policy))
    };
    let generation = policy.meta().generation;
    if let Some(listing) = ctx.listings.fresh(&key, generation, ctx.resync) {
        return listing;
    }
    let annotations = policy.metadata.annotations.clone().unwrap_or_default();
    let found = async {
        let client = ctx.clusters.client(cluster, ns, &annotations).await?;
        source::list_workloads(cluster, &client).await
    }
    .await;
    let listing = Arc::new(found.map_err(|e| e.to_string()));
    ctx.listings.store(&key, generation, listing.clone());
    listing
}

/// Applies the Checkpoints the source cluster's workloads call for (and, for packages that moved
/// away, those of the cluster they run on now) and records what was found.
async fn discover_and_apply(
    policy: &ClusterPolicy,
    ns: &str,
    ctx: &Context,
    status: &mut ClusterPolicyStatus,
    existing: &[Arc<Checkpoint>],
    moved: &std::collections::BTreeMap<String, away::Away>,
    now: Timestamp,
) {
    let generation = policy.meta().generation;
    let source = &policy.spec.cluster_selector.name;
    let listing = cluster_listing(policy, ns, ctx, source).await;
    let (workloads, pods) = match listing.as_ref() {
        Ok(x) => x,
        Err(e) => {
            set_discovered(
                status,
                Status::False,
                "SourceUnreachable",
                e.clone(),
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
    let defaults = discover::Defaults { registry };
    let mut desired = discover::discover(policy, workloads, pods, &defaults);
    desired.retain_packages(|p| !moved.contains_key(p));
    let mut elsewhere: Vec<&str> = moved.values().map(|a| a.cluster.as_str()).collect();
    elsewhere.sort_unstable();
    elsewhere.dedup();
    let mut away_problems = Vec::new();
    for cluster in elsewhere {
        match cluster_listing(policy, ns, ctx, cluster).await.as_ref() {
            Ok((w, p)) => {
                let mut found = discover::discover_in(policy, cluster, w, p, &defaults);
                found.retain_packages(|pk| moved.get(pk).is_some_and(|a| a.cluster == cluster));
                desired.merge(found);
            }
            Err(e) => away_problems.push(format!(
                "failed to list {cluster}, where moved packages run: {e}"
            )),
        }
    }
    for p in &mut status.packages {
        p.workloads = desired.workloads.get(&p.name).cloned().unwrap_or_default();
    }
    add_unlisted_packages(status, &desired);
    let problems = if ctx.settings.registry.is_some() {
        checkpoints::apply(ctx, ns, &desired, existing).await
    } else {
        Vec::new()
    };
    let count: usize = desired.workloads.values().map(Vec::len).sum();
    let (state, reason, message) = if !problems.is_empty() || !away_problems.is_empty() {
        let mut text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        text.extend(away_problems);
        (Status::False, "ApplyFailed", text.join("; "))
    } else if ctx.settings.registry.is_none() {
        (
            Status::True,
            "NoRegistry",
            format!(
                "{count} workload(s) found in {source}; no checkpoint registry configured (--registry-url), so no Checkpoints"
            ),
        )
    } else {
        (
            Status::True,
            "Discovered",
            format!(
                "{count} workload(s) found in {source}; {} Checkpoint(s)",
                desired.checkpoints.len()
            ),
        )
    };
    set_discovered(status, state, reason, message, generation, now);
    report_vm_runtimes(status, &desired, generation, now);
    report_refusals(status, &desired, generation, now);
}

/// `selectMode: All`: annotated packages nobody listed are protected too — in the status (so a
/// node fault finds them) with their folder (so a failover can write them).
fn add_unlisted_packages(status: &mut ClusterPolicyStatus, desired: &discover::Discovered) {
    for (name, path) in &desired.unlisted {
        if status.packages.iter().any(|p| &p.name == name) {
            continue;
        }
        status
            .packages
            .push(transition_crds::cluster_policy::PackageStatus {
                name: name.clone(),
                package_type: transition_crds::cluster_policy::PackageType::Stateful,
                live_state: true,
                package_path: Some(path.clone()),
                schedules: Vec::new(),
                last_checkpoint_time: None,
                last_checkpoint_image: None,
                workloads: desired.workloads.get(name).cloned().unwrap_or_default(),
                current_cluster: None,
                target_cluster: None,
            });
    }
    status.protected_packages = Some(i32::try_from(status.packages.len()).unwrap_or(i32::MAX));
}

/// A policy whose source could not be listed protects nothing it can vouch for: Ready=False.
fn not_ready_without_discovery(
    status: &mut ClusterPolicyStatus,
    generation: Option<i64>,
    now: Timestamp,
) {
    let Some(d) = conditions::find(&status.conditions, DISCOVERED).filter(|c| c.status == "False")
    else {
        return;
    };
    let message = format!("workload discovery failed: {}", d.message);
    conditions::set(
        &mut status.conditions,
        conditions::READY,
        Status::False,
        "DiscoveryFailed",
        message,
        generation,
        now,
    );
}

/// Whether each preferred target can restore this policy's checkpoints, from the heartbeats of
/// both sides ([`targets::record`]); nothing without a heartbeat endpoint.
fn restore_capability(
    policy: &ClusterPolicy,
    ctx: &Context,
    status: &mut ClusterPolicyStatus,
    now: Timestamp,
) {
    let Some(beats) = ctx.beats.as_deref() else {
        return;
    };
    let source = &policy.spec.cluster_selector.name;
    let nodes = targets::source_nodes(status);
    let verdicts: Vec<(String, crate::detect::restore::Verdict)> = policy
        .spec
        .target_cluster_policy
        .iter()
        .flat_map(|t| &t.prefer_clusters)
        .filter(|c| &c.name != source)
        .map(|c| {
            let v = crate::detect::restore::verdict(Some(beats), source, &nodes, &c.name);
            (c.name.clone(), v)
        })
        .collect();
    targets::record(
        &policy.spec,
        status,
        &verdicts,
        policy.meta().generation,
        now,
    );
}

/// Sets [`RESTORE_REFUSED`]: live-state workloads whose restore would be wrong.
fn report_refusals(
    status: &mut ClusterPolicyStatus,
    desired: &discover::Discovered,
    generation: Option<i64>,
    now: Timestamp,
) {
    let (state, reason, message) = if desired.refused.is_empty() {
        (
            Status::False,
            "NoneRefused",
            "every live-state workload can be restored as it was".to_owned(),
        )
    } else {
        (
            Status::True,
            "RestoreWouldBeWrong",
            desired.refused.join("; "),
        )
    };
    conditions::set(
        &mut status.conditions,
        RESTORE_REFUSED,
        state,
        reason,
        message,
        generation,
        now,
    );
}

/// Sets [`STATELESS_FALLBACK`]: the workloads handled as stateless because of a VM runtime.
fn report_vm_runtimes(
    status: &mut ClusterPolicyStatus,
    desired: &discover::Discovered,
    generation: Option<i64>,
    now: Timestamp,
) {
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
    let (state, reason, message) = if vm.is_empty() {
        (
            Status::False,
            "AllCheckpointable",
            "every live-state workload can be checkpointed".to_owned(),
        )
    } else {
        (
            Status::True,
            "VMRuntime",
            format!(
                "handled as stateless (VM runtime, no CRIU): {}",
                vm.join(", ")
            ),
        )
    };
    conditions::set(
        &mut status.conditions,
        STATELESS_FALLBACK,
        state,
        reason,
        message,
        generation,
        now,
    );
}

/// Spec errors wait for a spec change; everything else retries with bounded backoff.
pub fn error_policy(policy: Arc<ClusterPolicy>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.retry_after(
        CONTROLLER,
        error.metric_label(),
        &id_of(policy.as_ref()),
        error.is_permanent(),
        error,
    )
}

/// Runs the ClusterPolicy controller until `stop`. Owned Checkpoints re-trigger it (their
/// newest images are reported, and a deleted one is re-applied at the next discovery).
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    stop: tokio_util::sync::CancellationToken,
) {
    let api: kube::Api<ClusterPolicy> = ctx.api(namespace);
    let owned: kube::Api<Checkpoint> = ctx.api(namespace);
    let controller = Controller::new(api, watcher::Config::default().any_semantic())
        .owns(owned, watcher::Config::default());
    crate::context::run_controller(controller, reconcile, error_policy, ctx, stop).await;
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

    #[test]
    fn a_source_listing_is_reused_until_a_new_generation_or_the_resync() {
        let listings = SourceListings::default();
        let every = Duration::from_secs(60);
        assert!(
            listings.fresh("ns/p", Some(1), every).is_none(),
            "never listed"
        );
        listings.store("ns/p", Some(1), Arc::new(Err("down".into())));
        assert!(
            listings.fresh("ns/p", Some(1), every).is_some(),
            "a Checkpoint status change reuses it"
        );
        assert!(
            listings.fresh("ns/p", Some(2), every).is_none(),
            "a new spec"
        );
        assert!(
            listings.fresh("ns/p", Some(1), Duration::ZERO).is_none(),
            "resync elapsed"
        );
    }
}
