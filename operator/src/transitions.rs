//! Transition orchestration: a confirmed node fault (or a person's `Transition`) moves one
//! package from the source cluster to the target through Git.
//!
//! Phases (each persisted in status with its timing before its work starts, so a restarted
//! operator resumes at the recorded phase; every step is idempotent, so a repeat changes nothing):
//!
//! * `NodeFault` / `Manual`: Pending → Fencing (taint the dead node `out-of-service` in the
//!   source cluster) → Committing (ONE Git change: target pinned to the checkpoint images, package
//!   removed from the source) → Syncing (Argo CD `operation.sync`, when an Application exists) →
//!   Verifying (the workloads Ready in the target cluster's API) → Completed.
//! * `Planned` (make-before-break): Pending → Checkpointing (a fresh checkpoint of every pod) →
//!   Committing (target only) → Syncing → Verifying → Fencing (package removed from the source)
//!   → Completed.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument, warn};
use transition_crds::checkpoint::CheckpointPhase;
use transition_crds::cluster_policy::{
    ClusterPolicySpec, PackageSelector, PackageTransitionCondition, TransitionMode,
    TransitionedPackage,
};
use transition_crds::conditions::{self, Status};
use transition_crds::transition::{
    CommitRecord, ImageRecord, PolicyRef, TransitionPhase, TransitionSpec, TransitionStatus,
    Trigger, TriggerType,
};
use transition_crds::{Checkpoint, ClusterPolicy, Transition};

use crate::context::Context;
use crate::crd_install::FIELD_MANAGER;
use crate::detect::run::FaultEvent;
use crate::discovery::{LABEL_PACKAGE, LABEL_POLICY, policy_label};
use crate::gitops::repo::{GitConfig, GitRepo, run_blocking};
use crate::gitops::writer::{self, FailoverPlan, ImageSwap, Strategy};
use crate::metrics::{OutcomeLabels, ReconcileLabels};
use crate::names::unique_name;

const CONTROLLER: &str = "transition";
/// Field manager for the policy's transition history (the policy controller owns the rest).
pub const HISTORY_MANAGER: &str = "transition-operator-history";
/// The taint of Kubernetes' non-graceful node shutdown: the source cluster force-deletes the
/// node's pods, so a node that comes back does not run them again.
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";
/// Condition: the source is fenced.
pub const FENCED: &str = "Fenced";
/// Condition: the package is redeployed without state.
pub const STATELESS: &str = "StatelessRedeploy";
/// Condition: how the target's GitOps agent was asked to sync.
pub const SYNC: &str = "SyncRequested";

/// Errors of one Transition reconcile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Nothing will make this transition possible without a change: it ends `Failed`.
    #[error("failed to carry out Transition {transition}: {reason}")]
    Invalid { transition: String, reason: String },
    /// A step failed; it is retried with backoff.
    #[error("failed to carry out Transition {transition} in phase {phase:?}: {reason}")]
    Step {
        transition: String,
        phase: TransitionPhase,
        reason: String,
    },
    #[error("failed to write the status of Transition {transition}: {source}")]
    PatchStatus {
        transition: String,
        source: kube::Error,
    },
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Invalid { .. } => "Invalid",
            Error::Step { .. } => "Step",
            Error::PatchStatus { .. } => "PatchStatus",
        }
    }
}

/// The phases a trigger goes through, in order.
pub fn phases(trigger: TriggerType) -> &'static [TransitionPhase] {
    use TransitionPhase::*;
    match trigger {
        TriggerType::Planned => &[
            Pending,
            Checkpointing,
            Committing,
            Syncing,
            Verifying,
            Fencing,
            Completed,
        ],
        TriggerType::NodeFault | TriggerType::Manual => {
            &[Pending, Fencing, Committing, Syncing, Verifying, Completed]
        }
    }
}

/// The phase after `current` for `trigger`.
pub fn next_phase(trigger: TriggerType, current: TransitionPhase) -> Option<TransitionPhase> {
    let order = phases(trigger);
    let i = order.iter().position(|p| *p == current)?;
    order.get(i + 1).copied()
}

/// The newest checkpoint image of each original image of `package` (pure).
pub fn images_for(package: &str, checkpoints: &[Checkpoint]) -> Vec<ImageRecord> {
    let mut best: BTreeMap<String, (Timestamp, ImageRecord)> = BTreeMap::new();
    for c in checkpoints {
        let ours = c
            .spec
            .cluster_ref
            .as_ref()
            .and_then(|r| r.package_name.as_deref());
        if ours != Some(package) {
            continue;
        }
        let Some(status) = &c.status else { continue };
        for container in &c.spec.containers {
            let Some(rec) = status.latest_image(&container.name) else {
                continue;
            };
            let Some((image, digest)) = rec.image.as_deref().and_then(|i| i.split_once('@')) else {
                continue;
            };
            let record = ImageRecord {
                container: Some(container.name.clone()),
                image: image.to_owned(),
                digest: digest.to_owned(),
                original: Some(container.image.clone()),
            };
            let newer = best
                .get(&container.image)
                .is_none_or(|(t, _)| rec.time.0 > *t);
            if newer {
                best.insert(container.image.clone(), (rec.time.0, record));
            }
        }
    }
    best.into_values().map(|(_, r)| r).collect()
}

/// What a transition writes, derived from its spec and policy (pure).
#[derive(Clone, Debug)]
pub struct Plan {
    pub selector: PackageSelector,
    pub source_repo: String,
    pub target_repo: String,
    pub failover: FailoverPlan,
}

/// Checks a transition against its policy and builds the Git plan (pure).
pub fn plan(
    spec: &TransitionSpec,
    policy_key: &str,
    policy: &ClusterPolicySpec,
    images: &[ImageRecord],
) -> Result<Plan, String> {
    let selector = policy
        .package_selectors
        .iter()
        .find(|p| p.name == spec.package)
        .cloned()
        .ok_or_else(|| {
            format!(
                "ClusterPolicy {policy_key} has no package {:?}",
                spec.package
            )
        })?;
    let source = &policy.cluster_selector.name;
    if &spec.source_cluster != source {
        return Err(format!(
            "sourceCluster {:?} is not the policy's source cluster {source:?}",
            spec.source_cluster
        ));
    }
    if spec.target_cluster == *source {
        return Err("targetCluster is the source cluster".into());
    }
    let tcp = policy.target_cluster_policy.clone().unwrap_or_default();
    if tcp
        .avoid_clusters
        .iter()
        .any(|a| a.name == spec.target_cluster)
    {
        return Err(format!(
            "targetCluster {:?} is in the policy's avoidClusters",
            spec.target_cluster
        ));
    }
    let target_repo = tcp
        .prefer_clusters
        .iter()
        .find(|c| c.name == spec.target_cluster)
        .and_then(|c| c.repo.clone())
        .unwrap_or_else(|| policy.cluster_selector.repo.clone());
    let fault = match spec.trigger.type_ {
        TriggerType::NodeFault => format!(
            "NodeFailed{}",
            spec.trigger
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        TriggerType::Manual => "Manual".into(),
        TriggerType::Planned => "Planned".into(),
    };
    let failover = FailoverPlan {
        policy: policy_key.to_owned(),
        package: spec.package.clone(),
        package_path: PathBuf::from(selector.package_path.trim_end_matches('/')),
        source_dir: PathBuf::from("clusters").join(source),
        target_dir: PathBuf::from("clusters").join(&spec.target_cluster),
        images: images
            .iter()
            .filter_map(|i| {
                Some(ImageSwap {
                    original: i.original.clone()?,
                    reference: format!("{}@{}", i.image, i.digest),
                })
            })
            .collect(),
        strategy: Strategy::Kustomize,
        fence: spec.trigger.type_ != TriggerType::Planned,
        node: spec.trigger.node.clone().unwrap_or_else(|| "-".into()),
        fault,
        workloads: Vec::new(),
    };
    Ok(Plan {
        selector,
        source_repo: policy.cluster_selector.repo.clone(),
        target_repo,
        failover,
    })
}

fn key_of(t: &Transition) -> String {
    format!(
        "transition/{}/{}",
        t.namespace().unwrap_or_default(),
        t.name_any()
    )
}

fn id_of(t: &Transition) -> String {
    format!("{}/{}", t.namespace().unwrap_or_default(), t.name_any())
}

async fn write_status(
    ctx: &Context,
    t: &Transition,
    status: &TransitionStatus,
) -> Result<(), Error> {
    let api: Api<Transition> =
        Api::namespaced(ctx.client.clone(), &t.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": "transition.dcnlab.ssu.ac.kr/v1alpha1",
        "kind": "Transition",
        "status": status,
    });
    api.patch_status(
        &t.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::PatchStatus {
        transition: id_of(t),
        source,
    })?;
    Ok(())
}

async fn publish(ctx: &Context, t: &Transition, type_: EventType, reason: &str, note: &str) {
    ctx.publish(&t.object_ref(&()), type_, reason, "Transition", note)
        .await;
}

/// Reconciles one Transition.
#[instrument(skip_all, fields(transition = %id_of(&tr)))]
pub async fn reconcile(tr: Arc<Transition>, ctx: Arc<Context>) -> Result<Action, Error> {
    let labels = ReconcileLabels {
        controller: CONTROLLER.into(),
    };
    ctx.metrics.reconciles.get_or_create(&labels).inc();
    let result = step(&tr, &ctx).await;
    match result {
        Ok(a) => {
            ctx.reset_backoff(&key_of(&tr));
            Ok(a)
        }
        Err(Error::Invalid { transition, reason }) => {
            let mut status = tr.status.clone().unwrap_or_default();
            let now = Timestamp::now();
            status.message = Some(reason.clone());
            conditions::set(
                &mut status.conditions,
                conditions::READY,
                Status::False,
                "Invalid",
                &reason,
                tr.meta().generation,
                now,
            );
            status.enter_phase(TransitionPhase::Failed, now);
            write_status(&ctx, &tr, &status).await?;
            publish(&ctx, &tr, EventType::Warning, "TransitionFailed", &reason).await;
            ctx.metrics
                .transitions
                .get_or_create(&OutcomeLabels {
                    outcome: "failed".into(),
                })
                .inc();
            record_history(
                &ctx,
                &tr,
                &status,
                PackageTransitionCondition::Failed,
                &reason,
            )
            .await;
            warn!(%transition, %reason, "transition failed");
            Ok(Action::await_change())
        }
        Err(e) => Err(e),
    }
}

/// Enters `phase` and persists it (with the pause tests use to stop the operator inside it).
async fn enter(
    ctx: &Context,
    t: &Transition,
    status: &mut TransitionStatus,
    phase: TransitionPhase,
) -> Result<(), Error> {
    let now = Timestamp::now();
    if let Some(open) = status.phase_timings.last()
        && open.finished_at.is_none()
    {
        let secs = (now.as_millisecond() - open.started_at.0.as_millisecond()).max(0) as f64 / 1e3;
        ctx.metrics
            .phase_seconds
            .get_or_create(&OutcomeLabels {
                outcome: format!("{:?}", open.phase),
            })
            .observe(secs);
    }
    status.enter_phase(phase, now);
    status.observed_generation = t.meta().generation;
    status.message = Some(format!("{phase:?}"));
    write_status(ctx, t, status).await?;
    info!(?phase, "transition phase");
    if !ctx.settings.phase_pause.is_zero() && !phase.is_terminal() {
        tokio::time::sleep(ctx.settings.phase_pause).await;
    }
    Ok(())
}

async fn step(t: &Transition, ctx: &Context) -> Result<Action, Error> {
    let mut status = t.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or(TransitionPhase::Pending);
    if phase.is_terminal() {
        return Ok(Action::await_change());
    }
    let trigger = t.spec.trigger.type_;
    let ns = t.namespace().unwrap_or_default();
    let policy_ns = t
        .spec
        .policy_ref
        .namespace
        .clone()
        .unwrap_or_else(|| ns.clone());
    let policy_key = format!("{policy_ns}/{}", t.spec.policy_ref.name);
    let invalid = |reason: String| Error::Invalid {
        transition: id_of(t),
        reason,
    };
    let failed = |phase: TransitionPhase, reason: String| Error::Step {
        transition: id_of(t),
        phase,
        reason,
    };
    let policies: Api<ClusterPolicy> = Api::namespaced(ctx.client.clone(), &policy_ns);
    let policy = policies
        .get_opt(&t.spec.policy_ref.name)
        .await
        .map_err(|e| {
            failed(
                phase,
                format!("failed to read ClusterPolicy {policy_key}: {e}"),
            )
        })?
        .ok_or_else(|| invalid(format!("ClusterPolicy {policy_key} does not exist")))?;
    if policy.spec.transition_mode == Some(TransitionMode::None) {
        return Err(invalid(format!(
            "ClusterPolicy {policy_key} has transitionMode: None"
        )));
    }
    // Checkpoints are read only where they matter: choosing the images, and a fresh checkpoint.
    let checkpoints = if (phase == TransitionPhase::Pending && status.images.is_empty())
        || phase == TransitionPhase::Checkpointing
    {
        package_checkpoints(ctx, &policy_ns, &policy.name_any(), &t.spec.package)
            .await
            .map_err(|e| failed(phase, e))?
    } else {
        Vec::new()
    };
    if status.phase.is_none() {
        enter(ctx, t, &mut status, TransitionPhase::Pending).await?;
    }
    let images = if status.images.is_empty() {
        images_for(&t.spec.package, &checkpoints)
    } else {
        status.images.clone()
    };
    let plan = plan(&t.spec, &policy_key, &policy.spec, &images).map_err(invalid)?;
    let now = Timestamp::now();
    let generation = t.meta().generation;

    match phase {
        TransitionPhase::Pending => {
            status.images = images.clone();
            status.workloads = policy
                .status
                .as_ref()
                .and_then(|s| s.packages.iter().find(|p| p.name == t.spec.package))
                .map(|p| p.workloads.clone())
                .unwrap_or_default();
            if plan.selector.live_state_package && images.is_empty() {
                conditions::set(
                    &mut status.conditions,
                    STATELESS,
                    Status::True,
                    "NoCheckpointImage",
                    format!(
                        "package {} has no completed checkpoint image: redeployed on {} without its state",
                        t.spec.package, t.spec.target_cluster
                    ),
                    generation,
                    now,
                );
            } else if !plan.selector.live_state_package {
                conditions::set(
                    &mut status.conditions,
                    STATELESS,
                    Status::True,
                    "NotLiveState",
                    "the package is not live-state: redeployed without state",
                    generation,
                    now,
                );
            } else {
                conditions::set(
                    &mut status.conditions,
                    STATELESS,
                    Status::False,
                    "CheckpointImages",
                    format!("{} checkpoint image(s) will be deployed", images.len()),
                    generation,
                    now,
                );
            }
            conditions::set(
                &mut status.conditions,
                conditions::PROGRESSING,
                Status::True,
                "Started",
                format!(
                    "moving {} from {} to {}",
                    t.spec.package, t.spec.source_cluster, t.spec.target_cluster
                ),
                generation,
                now,
            );
            publish(
                ctx,
                t,
                EventType::Normal,
                "TransitionStarted",
                &format!(
                    "moving {} from {} to {} ({:?})",
                    t.spec.package, t.spec.source_cluster, t.spec.target_cluster, trigger
                ),
            )
            .await;
            record_history(
                ctx,
                t,
                &status,
                PackageTransitionCondition::InProgress,
                "started",
            )
            .await;
        }
        TransitionPhase::Fencing => {
            if trigger == TriggerType::Planned {
                commit(ctx, t, &mut status, &plan, Side::Fence)
                    .await
                    .map_err(|e| failed(phase, e))?;
            }
            let (state, reason, message) = fence_node(ctx, t, &policy_ns, &policy).await;
            conditions::set(
                &mut status.conditions,
                FENCED,
                state,
                reason,
                message,
                generation,
                now,
            );
        }
        TransitionPhase::Checkpointing => {
            match fresh_checkpoints(ctx, t, &policy_ns, &checkpoints).await {
                Err(e) => return Err(failed(phase, e)),
                Ok(false) => {
                    let started = status
                        .phase_timings
                        .last()
                        .map(|p| p.started_at.0)
                        .unwrap_or(now);
                    let waited = (now.as_millisecond() - started.as_millisecond()).max(0) as u64;
                    let limit = ctx.settings.archive_wait + ctx.settings.kubelet_timeout * 2;
                    if Duration::from_millis(waited) > limit {
                        return Err(invalid(format!(
                            "the fresh checkpoint did not complete within {}s",
                            limit.as_secs()
                        )));
                    }
                    return Ok(Action::requeue(Duration::from_secs(1)));
                }
                Ok(true) => {
                    let fresh =
                        package_checkpoints(ctx, &policy_ns, &policy.name_any(), &t.spec.package)
                            .await
                            .map_err(|e| failed(phase, e))?;
                    status.images = images_for(&t.spec.package, &fresh);
                }
            }
        }
        TransitionPhase::Committing => {
            let side = if trigger == TriggerType::Planned {
                Side::Target
            } else {
                Side::Both
            };
            commit(ctx, t, &mut status, &plan, side)
                .await
                .map_err(|e| failed(phase, e))?;
        }
        TransitionPhase::Syncing => {
            let (state, reason, message) = request_sync(ctx, t, &policy_ns, &policy).await;
            conditions::set(
                &mut status.conditions,
                SYNC,
                state,
                reason,
                message,
                generation,
                now,
            );
        }
        TransitionPhase::Verifying => match verify(ctx, t, &policy_ns, &policy, &status).await {
            Ok(None) => {}
            Ok(Some(waiting)) => {
                let started = status
                    .phase_timings
                    .last()
                    .map(|p| p.started_at.0)
                    .unwrap_or(now);
                let waited = (now.as_millisecond() - started.as_millisecond()).max(0) as u64;
                if Duration::from_millis(waited) > ctx.settings.verify_timeout {
                    return Err(invalid(format!(
                        "the target did not become Ready within {}s: {waiting}",
                        ctx.settings.verify_timeout.as_secs()
                    )));
                }
                if status.message.as_deref() != Some(waiting.as_str()) {
                    status.message = Some(waiting);
                    write_status(ctx, t, &status).await?;
                }
                return Ok(Action::requeue(Duration::from_secs(2)));
            }
            Err(e) => return Err(failed(phase, e)),
        },
        TransitionPhase::Completed | TransitionPhase::Failed => return Ok(Action::await_change()),
    }

    if !ctx.settings.phase_pause.is_zero() {
        tokio::time::sleep(ctx.settings.phase_pause).await;
    }
    let Some(next) = next_phase(trigger, phase) else {
        return Ok(Action::await_change());
    };
    if next == TransitionPhase::Completed {
        let total = status
            .started_at
            .as_ref()
            .map(|s| (Timestamp::now().as_millisecond() - s.0.as_millisecond()).max(0))
            .unwrap_or(0);
        let note = format!(
            "{} moved from {} to {} in {total} ms ({})",
            t.spec.package,
            t.spec.source_cluster,
            t.spec.target_cluster,
            status
                .phase_timings
                .iter()
                .map(|p| format!("{:?} {} ms", p.phase, p.duration_ms.unwrap_or(0)))
                .collect::<Vec<_>>()
                .join(", ")
        );
        conditions::set(
            &mut status.conditions,
            conditions::READY,
            Status::True,
            "Completed",
            &note,
            generation,
            Timestamp::now(),
        );
        conditions::set(
            &mut status.conditions,
            conditions::PROGRESSING,
            Status::False,
            "Completed",
            "done",
            generation,
            Timestamp::now(),
        );
        enter(ctx, t, &mut status, next).await?;
        status.message = Some(note.clone());
        write_status(ctx, t, &status).await?;
        ctx.metrics
            .transitions
            .get_or_create(&OutcomeLabels {
                outcome: "completed".into(),
            })
            .inc();
        publish(ctx, t, EventType::Normal, "TransitionCompleted", &note).await;
        record_history(
            ctx,
            t,
            &status,
            PackageTransitionCondition::Completed,
            &note,
        )
        .await;
        info!(%note, "transition completed");
        return Ok(Action::await_change());
    }
    enter(ctx, t, &mut status, next).await?;
    Ok(Action::requeue(Duration::from_millis(10)))
}

/// The Checkpoints of one package of a policy.
async fn package_checkpoints(
    ctx: &Context,
    ns: &str,
    policy: &str,
    package: &str,
) -> Result<Vec<Checkpoint>, String> {
    let api: Api<Checkpoint> = Api::namespaced(ctx.client.clone(), ns);
    let selector = format!(
        "{LABEL_POLICY}={},{LABEL_PACKAGE}={}",
        policy_label(policy),
        unique_name(package, 63)
    );
    api.list(&ListParams::default().labels(&selector))
        .await
        .map(|l| l.items)
        .map_err(|e| format!("failed to list the Checkpoints of {ns}/{policy} {package}: {e}"))
}

/// Which Git change a commit step makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    /// Target and fence together (one commit per repository).
    Both,
    Target,
    Fence,
}

async fn git_config(ctx: &Context, url: &str, ns: &str) -> Result<GitConfig, String> {
    let credentials = match &ctx.settings.git_secret {
        None => None,
        Some(name) => {
            let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
            let secret = api
                .get_opt(name)
                .await
                .map_err(|e| format!("failed to read Git Secret {ns}/{name}: {e}"))?
                .ok_or_else(|| format!("Git Secret {ns}/{name} does not exist"))?;
            Some(crate::gitops::credentials_from_secret(&secret)?)
        }
    };
    Ok(GitConfig {
        url: url.to_owned(),
        branch: "main".into(),
        cache_dir: ctx.settings.git_cache_dir.clone(),
        credentials,
        author_name: "transition-operator".into(),
        author_email: "transition-operator@transition.invalid".into(),
        max_attempts: 5,
    })
}

/// Makes the Git change(s) of `side`, recording each commit. Idempotent: a change already in the
/// repository commits nothing and records the current head instead.
async fn commit(
    ctx: &Context,
    t: &Transition,
    status: &mut TransitionStatus,
    plan: &Plan,
    side: Side,
) -> Result<(), String> {
    let ns = t.namespace().unwrap_or_default();
    let same_repo = plan.source_repo == plan.target_repo;
    let mut steps: Vec<(String, &'static str)> = Vec::new();
    match (side, same_repo) {
        (Side::Both, true) => steps.push((plan.source_repo.clone(), "both")),
        (Side::Both, false) => {
            steps.push((plan.target_repo.clone(), "target"));
            steps.push((plan.source_repo.clone(), "fence"));
        }
        (Side::Target, _) => steps.push((plan.target_repo.clone(), "target")),
        (Side::Fence, _) => steps.push((plan.source_repo.clone(), "fence")),
    }
    for (url, what) in steps {
        let lock = ctx.git_lock(&url);
        let _guard = lock.lock().await;
        let config = git_config(ctx, &url, &ns).await?;
        let fp = plan.failover.clone();
        let mut message = writer::message(&fp);
        message.push_str(&format!("Transition: {}\n", id_of(t)));
        if what == "fence" && side == Side::Fence {
            message = format!(
                "transition: fence {} on {} (planned move done)\n\nTransition: {}\n",
                fp.package,
                t.spec.source_cluster,
                id_of(t)
            );
        }
        let sha = run_blocking(&url, ctx.settings.git_timeout, move || {
            let repo = GitRepo::open_or_clone(config)?;
            let outcome = repo.change(&message, false, &|root| match what {
                "both" => writer::apply(root, &fp).map(|_| ()),
                "target" => writer::apply_target(root, &fp).map(|_| ()),
                _ => writer::apply_fence(root, &fp).map(|_| ()),
            })?;
            match outcome.commit {
                Some(sha) => Ok(sha),
                None => repo.sync().map(|head| format!("{head} (already applied)")),
            }
        })
        .await
        .map_err(|e| e.to_string())?;
        info!(repo = %url, %sha, what, "GitOps change");
        let path = match what {
            "fence" => plan.failover.source_dir.display().to_string(),
            _ => plan.failover.target_dir.display().to_string(),
        };
        if !status
            .commits
            .iter()
            .any(|c| c.repo == url && c.path.as_deref() == Some(&path))
        {
            status.commits.push(CommitRecord {
                repo: url.clone(),
                sha,
                branch: Some("main".into()),
                path: Some(path),
            });
        }
    }
    Ok(())
}

/// Fences a dead node in the source cluster with the `out-of-service` taint (Kubernetes'
/// non-graceful node shutdown); the Git fence removes the package from the source's desired
/// state in the commit. Best effort: an unreachable source is fenced by Git only.
async fn fence_node(
    ctx: &Context,
    t: &Transition,
    ns: &str,
    policy: &ClusterPolicy,
) -> (Status, &'static str, String) {
    let Some(node) = t.spec.trigger.node.as_deref() else {
        return (
            Status::True,
            "GitOnly",
            "no node named: the source is fenced by removing the package from its kustomization"
                .into(),
        );
    };
    if t.spec.trigger.type_ == TriggerType::Planned {
        return (
            Status::True,
            "GitFence",
            "package removed from the source's kustomization".into(),
        );
    }
    let annotations = policy.metadata.annotations.clone().unwrap_or_default();
    let result = async {
        let client = ctx
            .clusters
            .client(&t.spec.source_cluster, ns, &annotations)
            .await
            .map_err(|e| e.to_string())?;
        let nodes: Api<Node> = Api::all(client);
        let current = tokio::time::timeout(Duration::from_secs(10), nodes.get_opt(node))
            .await
            .map_err(|_| "no answer within 10s".to_owned())?
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("node {node} does not exist"))?;
        let mut taints = current.spec.and_then(|s| s.taints).unwrap_or_default();
        if taints.iter().any(|x| x.key == OUT_OF_SERVICE_TAINT) {
            return Ok(());
        }
        taints.push(k8s_openapi::api::core::v1::Taint {
            key: OUT_OF_SERVICE_TAINT.into(),
            value: Some("nodeshutdown".into()),
            effect: "NoExecute".into(),
            time_added: None,
        });
        let patch = json!({"spec": {"taints": taints}});
        tokio::time::timeout(
            Duration::from_secs(10),
            nodes.patch(node, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
        .map_err(|_| "no answer within 10s".to_owned())?
        .map_err(|e| e.to_string())?;
        Ok::<(), String>(())
    }
    .await;
    match result {
        Ok(()) => (
            Status::True,
            "OutOfService",
            format!(
                "node {node} tainted {OUT_OF_SERVICE_TAINT}=nodeshutdown:NoExecute in {}, and the package leaves its kustomization",
                t.spec.source_cluster
            ),
        ),
        Err(e) => (
            Status::True,
            "GitOnly",
            format!(
                "could not taint node {node} ({e}); the package leaves the source's kustomization"
            ),
        ),
    }
}

/// Asks the target's Argo CD Application (named like the cluster) to sync now.
async fn request_sync(
    ctx: &Context,
    t: &Transition,
    ns: &str,
    policy: &ClusterPolicy,
) -> (Status, &'static str, String) {
    let annotations = policy.metadata.annotations.clone().unwrap_or_default();
    let target = &t.spec.target_cluster;
    let client = match ctx.clusters.client(target, ns, &annotations).await {
        Ok(c) => c,
        Err(e) => {
            return (
                Status::False,
                "TargetUnreachable",
                format!("{e}; the GitOps agent picks the commit up on its next poll"),
            );
        }
    };
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "applications");
    let apps: Api<DynamicObject> =
        Api::namespaced_with(client, &ctx.settings.argocd_namespace, &ar);
    let patch = json!({"operation": {"initiatedBy": {"username": "transition-operator"},
        "sync": {"prune": true}}});
    match tokio::time::timeout(
        Duration::from_secs(10),
        apps.patch(target, &PatchParams::default(), &Patch::Merge(&patch)),
    )
    .await
    {
        Ok(Ok(_)) => (
            Status::True,
            "ArgoCDSync",
            format!("operation.sync set on Application {}/{target}", ctx.settings.argocd_namespace),
        ),
        Ok(Err(kube::Error::Api(s))) if s.code == 404 => (
            Status::False,
            "NoArgoCDApplication",
            format!(
                "no Argo CD Application {}/{target} in {target}: its GitOps agent (Flux or Argo CD) picks the commit up on its next poll",
                ctx.settings.argocd_namespace
            ),
        ),
        Ok(Err(e)) => (
            Status::False,
            "SyncRequestFailed",
            format!("could not set operation.sync ({e}); the GitOps agent picks the commit up on its next poll"),
        ),
        Err(_) => (
            Status::False,
            "SyncRequestFailed",
            "the target API did not answer within 10s; the GitOps agent picks the commit up on its next poll".into(),
        ),
    }
}

/// `None` when every workload of the package is Ready in the target cluster (with the checkpoint
/// images, when there are any); otherwise what is still missing.
async fn verify(
    ctx: &Context,
    t: &Transition,
    ns: &str,
    policy: &ClusterPolicy,
    status: &TransitionStatus,
) -> Result<Option<String>, String> {
    use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
    let images = &status.images;
    let workloads = &status.workloads;
    if workloads.is_empty() {
        return Ok(None);
    }
    let annotations = policy.metadata.annotations.clone().unwrap_or_default();
    let client = ctx
        .clusters
        .client(&t.spec.target_cluster, ns, &annotations)
        .await
        .map_err(|e| e.to_string())?;
    for w in workloads {
        let waiting = || {
            Ok(Some(format!(
                "waiting for {} {}/{} in {}",
                w.kind, w.namespace, w.name, t.spec.target_cluster
            )))
        };
        let (ready, want, template) = if w.kind == "StatefulSet" {
            let api: Api<StatefulSet> = Api::namespaced(client.clone(), &w.namespace);
            let Some(s) = api.get_opt(&w.name).await.map_err(|e| e.to_string())? else {
                return waiting();
            };
            let spec = s.spec.unwrap_or_default();
            let ready = s.status.and_then(|x| x.ready_replicas).unwrap_or(0);
            (ready, spec.replicas.unwrap_or(1), spec.template)
        } else {
            let api: Api<Deployment> = Api::namespaced(client.clone(), &w.namespace);
            let Some(d) = api.get_opt(&w.name).await.map_err(|e| e.to_string())? else {
                return waiting();
            };
            let st = d.status.unwrap_or_default();
            let spec = d.spec.unwrap_or_default();
            // Ready only counts once the controller has seen the current spec.
            let ready = if st.observed_generation >= d.metadata.generation {
                st.updated_replicas
                    .unwrap_or(0)
                    .min(st.ready_replicas.unwrap_or(0))
            } else {
                0
            };
            (ready, spec.replicas.unwrap_or(1), spec.template)
        };
        let template_images: Vec<String> = template
            .spec
            .map(|p| p.containers.into_iter().filter_map(|c| c.image).collect())
            .unwrap_or_default();
        let missing: Vec<&ImageRecord> = images
            .iter()
            .filter(|i| {
                w.checkpointable
                    && !template_images.iter().any(|ti| ti.ends_with(&i.digest))
                    && template_images
                        .iter()
                        .any(|ti| Some(ti) == i.original.as_ref())
            })
            .collect();
        if !missing.is_empty() {
            return Ok(Some(format!(
                "{} {}/{} in {} still runs {} instead of the checkpoint image",
                w.kind,
                w.namespace,
                w.name,
                t.spec.target_cluster,
                missing
                    .iter()
                    .filter_map(|m| m.original.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        if ready < want {
            return Ok(Some(format!(
                "{} {}/{} in {}: {ready}/{want} ready",
                w.kind, w.namespace, w.name, t.spec.target_cluster
            )));
        }
    }
    Ok(None)
}

/// Asks every Checkpoint of the package for a fresh run (token = the transition's uid) and says
/// whether all of them completed it.
async fn fresh_checkpoints(
    ctx: &Context,
    t: &Transition,
    ns: &str,
    checkpoints: &[Checkpoint],
) -> Result<bool, String> {
    let token = format!(
        "planned-{}",
        t.metadata.uid.clone().unwrap_or_else(|| t.name_any())
    );
    let api: Api<Checkpoint> = Api::namespaced(ctx.client.clone(), ns);
    if checkpoints.is_empty() {
        return Ok(true);
    }
    let mut all_done = true;
    for c in checkpoints {
        let status = c.status.clone().unwrap_or_default();
        let handled = status.last_manual_token.as_deref() == Some(token.as_str());
        if handled && status.run.is_none() {
            if status.phase == Some(CheckpointPhase::Failed) {
                return Err(format!(
                    "the fresh checkpoint {ns}/{} failed: {}",
                    c.name_any(),
                    status.message.unwrap_or_default()
                ));
            }
            continue;
        }
        all_done = false;
        let asked = c
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(crate::schedule::CHECKPOINT_NOW))
            == Some(&token);
        if !asked {
            let patch =
                json!({"metadata": {"annotations": {crate::schedule::CHECKPOINT_NOW: token}}});
            api.patch(
                &c.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|e| {
                format!(
                    "failed to ask Checkpoint {ns}/{} for a fresh run: {e}",
                    c.name_any()
                )
            })?;
        }
    }
    Ok(all_done)
}

/// Records the transition in the policy's `status.transitionedPackages` (own field manager).
async fn record_history(
    ctx: &Context,
    t: &Transition,
    status: &TransitionStatus,
    condition: PackageTransitionCondition,
    message: &str,
) {
    let ns = t
        .spec
        .policy_ref
        .namespace
        .clone()
        .unwrap_or_else(|| t.namespace().unwrap_or_default());
    let api: Api<ClusterPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    let Ok(Some(policy)) = api.get_opt(&t.spec.policy_ref.name).await else {
        return;
    };
    let mut ps = policy.status.clone().unwrap_or_default();
    let name = t.name_any();
    let selectors: Vec<PackageSelector> = policy
        .spec
        .package_selectors
        .iter()
        .filter(|p| p.name == t.spec.package)
        .cloned()
        .collect();
    let entry = TransitionedPackage {
        package_selectors: selectors,
        last_transition_time: Some(Time(
            status
                .completed_at
                .as_ref()
                .map(|c| c.0)
                .unwrap_or_else(Timestamp::now),
        )),
        package_transition_condition: Some(condition),
        package_transition_message: Some(message.chars().take(1000).collect()),
        transition_ref: Some(name.clone()),
    };
    if let Some(existing) = ps
        .transitioned_packages
        .iter_mut()
        .find(|e| e.transition_ref.as_deref() == Some(name.as_str()))
    {
        *existing = entry;
    } else {
        ps.record_transition(entry);
    }
    let patch = json!({
        "apiVersion": "transition.dcnlab.ssu.ac.kr/v1",
        "kind": "ClusterPolicy",
        "status": {"transitionedPackages": ps.transitioned_packages},
    });
    if let Err(e) = api
        .patch_status(
            &policy.name_any(),
            &PatchParams::apply(HISTORY_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
    {
        warn!(error = %e, "failed to record the transition in the policy status");
    }
}

/// Spec problems end the transition; step failures retry with bounded backoff.
pub fn error_policy(t: Arc<Transition>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.retry_after(CONTROLLER, error.metric_label(), &key_of(&t), false, error)
}

/// Runs the Transition controller until shutdown.
pub async fn run_controller(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    stop: tokio_util::sync::CancellationToken,
) {
    let api: Api<Transition> = ctx.api(namespace);
    let results = Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(reconcile, error_policy, ctx);
    crate::context::drain(results).await;
}

/// The Transition a fault asks for (pure): one per policy + package + node, so a repeated fault
/// event never creates a second one.
pub fn fault_transition(
    policy: &ClusterPolicy,
    package: &str,
    fault: &FaultEvent,
    unhealthy: &[String],
) -> Result<Transition, String> {
    let policy_name = policy.name_any();
    let target =
        crate::policy::choose_target_excluding(&policy.spec, unhealthy).ok_or_else(|| {
            format!(
                "ClusterPolicy {policy_name}: no healthy target cluster (unhealthy: {})",
                if unhealthy.is_empty() {
                    "none".into()
                } else {
                    unhealthy.join(", ")
                }
            )
        })?;
    let name = unique_name(&format!("{policy_name}-{package}-{}", fault.node), 253);
    let mut t = Transition::new(
        &name,
        TransitionSpec {
            policy_ref: PolicyRef {
                name: policy_name.clone(),
                namespace: None,
            },
            package: package.to_owned(),
            source_cluster: fault.cluster.clone(),
            target_cluster: target.to_owned(),
            trigger: Trigger {
                type_: TriggerType::NodeFault,
                node: Some(fault.node.clone()),
                reason: Some(fault.reason.clone()),
            },
        },
    );
    t.metadata.namespace = policy.namespace();
    t.metadata.labels = Some(BTreeMap::from([
        (LABEL_POLICY.to_owned(), policy_label(&policy_name)),
        (LABEL_PACKAGE.to_owned(), unique_name(package, 63)),
    ]));
    Ok(t)
}

/// The packages of `policy` with a workload on the faulty node (pure).
pub fn packages_on_node(policy: &ClusterPolicy, fault: &FaultEvent) -> Vec<String> {
    if policy.spec.cluster_selector.name != fault.cluster
        || policy.spec.transition_mode.unwrap_or_default() != TransitionMode::Automatic
    {
        return Vec::new();
    }
    policy
        .status
        .iter()
        .flat_map(|s| &s.packages)
        .filter(|p| p.workloads.iter().any(|w| w.nodes.contains(&fault.node)))
        .map(|p| p.name.clone())
        .collect()
}

/// Clusters none of whose known nodes is healthy (from the detector's view).
pub fn unhealthy_clusters(beats: Option<&crate::detect::server::Beats>) -> Vec<String> {
    use crate::detect::tracker::Health;
    let Some(beats) = beats else {
        return Vec::new();
    };
    let Ok(tracker) = beats.tracker.lock() else {
        return Vec::new();
    };
    let mut by_cluster: BTreeMap<String, bool> = BTreeMap::new();
    for (key, health, _, _) in tracker.snapshot(crate::detect::server::now_ms()) {
        let healthy = matches!(
            health,
            Health::Healthy | Health::Suspect | Health::AgentDown
        );
        *by_cluster.entry(key.cluster).or_insert(false) |= healthy;
    }
    by_cluster
        .into_iter()
        .filter(|(_, h)| !h)
        .map(|(c, _)| c)
        .collect()
}

/// Turns confirmed faults into Transitions (exactly one per policy + package + node).
pub async fn handle_faults(ctx: Arc<Context>, mut faults: tokio::sync::mpsc::Receiver<FaultEvent>) {
    while let Some(fault) = faults.recv().await {
        warn!(cluster = %fault.cluster, node = %fault.node, reason = %fault.reason, "node failure confirmed");
        let unhealthy = unhealthy_clusters(ctx.beats.as_deref());
        let mut delay = Duration::from_secs(1);
        for attempt in 1..=5 {
            match on_fault(&ctx, &fault, &unhealthy).await {
                Ok(n) => {
                    info!(node = %fault.node, transitions = n, "fault handled");
                    break;
                }
                Err(e) if attempt < 5 => {
                    warn!(error = %e, retry_in = ?delay, "failed to handle a fault");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => warn!(error = %e, "gave up handling a fault"),
            }
        }
    }
}

/// Creates the Transitions for one fault; returns how many were created.
pub async fn on_fault(
    ctx: &Context,
    fault: &FaultEvent,
    unhealthy: &[String],
) -> Result<usize, String> {
    let policies: Api<ClusterPolicy> = Api::all(ctx.client.clone());
    let list = policies
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("failed to list ClusterPolicies: {e}"))?;
    let mut created = 0;
    for policy in &list.items {
        for package in packages_on_node(policy, fault) {
            let t = match fault_transition(policy, &package, fault, unhealthy) {
                Ok(t) => t,
                Err(e) => {
                    warn!(error = %e, "no transition");
                    continue;
                }
            };
            let ns = t.namespace().unwrap_or_default();
            let api: Api<Transition> = Api::namespaced(ctx.client.clone(), &ns);
            match api.create(&PostParams::default(), &t).await {
                Ok(_) => {
                    created += 1;
                    info!(transition = %t.name_any(), package = %package, target = %t.spec.target_cluster, "transition created");
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {
                    info!(transition = %t.name_any(), "transition already exists (exactly once)");
                }
                Err(e) => {
                    return Err(format!(
                        "failed to create Transition {ns}/{}: {e}",
                        t.name_any()
                    ));
                }
            }
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
apiVersion: transition.dcnlab.ssu.ac.kr/v1
kind: ClusterPolicy
metadata: {name: p1, namespace: ops}
spec:
  clusterSelector: {name: cluster1-azure, repo: "http://git/c1.git", repoType: git}
  selectMode: Specific
  packageSelectors:
    - {name: counter, packagePath: catalog/counter, packageType: Stateful, liveStatePackage: true}
  targetClusterPolicy:
    preferClusters:
      - {name: cluster2-aws, repoType: git, weight: 100}
      - {name: cluster3, repoType: git, weight: 50, repo: "http://git/c3.git"}
    avoidClusters: [{name: cluster9, repoType: git}]
status:
  packages:
    - name: counter
      packageType: Stateful
      liveState: true
      workloads: [{kind: Deployment, namespace: default, name: counter, nodes: [worker-1], checkpointable: true}]
"#;

    fn policy() -> ClusterPolicy {
        serde_saphyr::from_str(POLICY).unwrap()
    }

    fn fault(node: &str) -> FaultEvent {
        FaultEvent {
            cluster: "cluster1-azure".into(),
            node: node.into(),
            reason: "Lease stale".into(),
            at_ms: 0,
        }
    }

    fn checkpoint(pod: &str, second: i64, digest: char) -> Checkpoint {
        let mut c: Checkpoint = serde_saphyr::from_str(&format!(
            r#"
apiVersion: transition.dcnlab.ssu.ac.kr/v1
kind: Checkpoint
metadata: {{name: "c-{pod}", namespace: ops}}
spec:
  schedule: "@manual"
  clusterRef: {{name: cluster1-azure, packageName: counter}}
  podRef: {{namespace: default, name: {pod}, containerRef: {{containers: [{{name: counter}}]}}}}
  resourceRef: {{apiVersion: apps/v1, kind: Deployment, namespace: default, name: counter}}
  registry: {{url: "http://r", repository: c}}
  containers: [{{name: counter, image: "busybox:1.36"}}]
"#
        ))
        .unwrap();
        let mut status = transition_crds::checkpoint::CheckpointStatus::default();
        status.record(
            transition_crds::checkpoint::CheckpointRecord {
                time: Time(Timestamp::from_second(second).unwrap()),
                container: "counter".into(),
                archive_key: None,
                image: Some(format!(
                    "r/c/default/counter-counter@sha256:{}",
                    digest.to_string().repeat(64)
                )),
                size_bytes: None,
                trigger: None,
            },
            3,
        );
        c.status = Some(status);
        c
    }

    #[test]
    fn a_fault_on_a_node_with_a_protected_workload_asks_for_one_named_transition() {
        let p = policy();
        assert_eq!(packages_on_node(&p, &fault("worker-1")), vec!["counter"]);
        assert!(packages_on_node(&p, &fault("worker-2")).is_empty());
        let t = fault_transition(&p, "counter", &fault("worker-1"), &[]).unwrap();
        assert_eq!(t.name_any(), "p1-counter-worker-1");
        assert_eq!(t.spec.target_cluster, "cluster2-aws");
        assert_eq!(t.spec.trigger.node.as_deref(), Some("worker-1"));
        let again = fault_transition(&p, "counter", &fault("worker-1"), &[]).unwrap();
        assert_eq!(
            again.name_any(),
            t.name_any(),
            "same fault, same name: created once"
        );
    }

    #[test]
    fn an_unhealthy_target_is_skipped_and_none_left_is_an_error() {
        let p = policy();
        let t =
            fault_transition(&p, "counter", &fault("worker-1"), &["cluster2-aws".into()]).unwrap();
        assert_eq!(t.spec.target_cluster, "cluster3");
        let err = fault_transition(
            &p,
            "counter",
            &fault("w"),
            &["cluster2-aws".into(), "cluster3".into()],
        )
        .unwrap_err();
        assert!(err.contains("no healthy target"), "{err}");
    }

    #[test]
    fn manual_and_none_policies_never_fail_over_on_a_fault() {
        let mut p = policy();
        p.spec.transition_mode = Some(TransitionMode::Manual);
        assert!(packages_on_node(&p, &fault("worker-1")).is_empty());
    }

    #[test]
    fn the_newest_checkpoint_image_of_each_original_image_is_chosen() {
        let images = images_for(
            "counter",
            &[checkpoint("a", 10, 'a'), checkpoint("b", 20, 'b')],
        );
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].digest, format!("sha256:{}", "b".repeat(64)));
        assert_eq!(images[0].original.as_deref(), Some("busybox:1.36"));
        assert!(images_for("redis", &[checkpoint("a", 10, 'a')]).is_empty());
    }

    #[test]
    fn the_plan_targets_the_right_repositories_and_refuses_bad_targets() {
        let p = policy();
        let images = images_for("counter", &[checkpoint("a", 10, 'a')]);
        let mut t = fault_transition(&p, "counter", &fault("worker-1"), &[]).unwrap();
        let plan1 = plan(&t.spec, "ops/p1", &p.spec, &images).unwrap();
        assert_eq!(
            plan1.source_repo, plan1.target_repo,
            "no repo given: the source's"
        );
        assert!(plan1.failover.fence);
        assert_eq!(plan1.failover.images[0].original, "busybox:1.36");
        assert_eq!(
            plan1.failover.target_dir,
            PathBuf::from("clusters/cluster2-aws")
        );
        t.spec.target_cluster = "cluster3".into();
        t.spec.trigger.type_ = TriggerType::Planned;
        let plan3 = plan(&t.spec, "ops/p1", &p.spec, &images).unwrap();
        assert_eq!(plan3.target_repo, "http://git/c3.git");
        assert!(
            !plan3.failover.fence,
            "planned: the fence is a later, separate step"
        );
        t.spec.target_cluster = "cluster9".into();
        assert!(
            plan(&t.spec, "ops/p1", &p.spec, &images)
                .unwrap_err()
                .contains("avoidClusters")
        );
        t.spec.target_cluster = "cluster1-azure".into();
        assert!(plan(&t.spec, "ops/p1", &p.spec, &images).is_err());
        t.spec.package = "nope".into();
        assert!(
            plan(&t.spec, "ops/p1", &p.spec, &images)
                .unwrap_err()
                .contains("no package")
        );
    }

    #[test]
    fn planned_moves_fence_last_and_failovers_fence_first() {
        let f = phases(TriggerType::NodeFault);
        let p = phases(TriggerType::Planned);
        let pos = |list: &[TransitionPhase], x| list.iter().position(|y| *y == x).unwrap();
        assert!(pos(f, TransitionPhase::Fencing) < pos(f, TransitionPhase::Committing));
        assert!(pos(p, TransitionPhase::Fencing) > pos(p, TransitionPhase::Verifying));
        assert_eq!(
            next_phase(TriggerType::Planned, TransitionPhase::Pending),
            Some(TransitionPhase::Checkpointing)
        );
        assert_eq!(
            next_phase(TriggerType::Manual, TransitionPhase::Verifying),
            Some(TransitionPhase::Completed)
        );
        assert_eq!(
            next_phase(TriggerType::Manual, TransitionPhase::Completed),
            None
        );
    }
}
