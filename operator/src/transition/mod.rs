//! Transition orchestration: a confirmed node fault ([`faults`]) or a person's `Transition` moves
//! one package from the source cluster to the target through Git.
//!
//! Phases ([`plan::phases`], one file each under [`phases`], driven by [`driver`]):
//!
//! * `NodeFault` / `Manual`: Pending → Fencing (taint the dead node `out-of-service` in the
//!   source cluster) → Committing (ONE Git change: target pinned to the checkpoint images, package
//!   removed from the source) → Syncing (Argo CD `operation.sync`, when an Application exists) →
//!   Verifying (the workloads Ready in the target cluster's API) → Completed.
//! * `Planned` (make-before-break): Pending → Checkpointing (a fresh checkpoint of every pod) →
//!   Committing (target only) → Syncing → Verifying → Fencing (package removed from the source)
//!   → Completed.
//!
//! Each phase is persisted with its timing before its work starts, and every step is idempotent,
//! so a restarted operator resumes at the recorded phase and a repeat changes nothing.

pub mod driver;
pub mod faults;
pub mod history;
pub mod phases;
pub mod plan;

use std::sync::Arc;

use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use tracing::instrument;
use transition_crds::{Checkpoint, ClusterPolicy, Transition};

use crate::cluster_policy::discover::{LABEL_CLUSTER, LABEL_PACKAGE, LABEL_POLICY, policy_label};
use crate::context::Context;
use crate::k8s::id_of;
use crate::names::unique_name;

pub use faults::{
    Occurrence, fault_transition, handle_faults, occurrence, on_fault, packages_on_node,
    unhealthy_clusters,
};
pub use history::HISTORY_MANAGER;
pub use plan::{Plan, images_for, next_phase, phases as phase_order, plan};

const CONTROLLER: &str = "transition";
/// The taint of Kubernetes' non-graceful node shutdown: the source cluster force-deletes the
/// node's pods, so a node that comes back does not run them again.
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";
/// Condition: the source is fenced.
pub const FENCED: &str = "Fenced";
/// Condition: the package is redeployed without state.
pub const STATELESS: &str = "StatelessRedeploy";
/// Condition: whether the target cluster can restore the checkpoints (from its agents' reports).
pub const TARGET_CAN_RESTORE: &str = "TargetCanRestore";
/// Condition (failback): the home nodes a failover fenced are untainted.
pub const HOME_UNFENCED: &str = "HomeUnfenced";
/// Condition: how the target's GitOps agent was asked to sync.
pub const SYNC: &str = "SyncRequested";

/// Transient errors of one Transition reconcile (retried with backoff; what ends a Transition
/// `Failed` is a [`phases::Refusal`]). The variant is the metric label.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "failed to carry out Transition {transition}: failed to read ClusterPolicy {policy}: {source}"
    )]
    ReadPolicy {
        transition: String,
        policy: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "failed to carry out Transition {transition}: failed to list the Checkpoints of {policy} package {package}: {source}"
    )]
    ListCheckpoints {
        transition: String,
        policy: String,
        package: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "failed to carry out Transition {transition}: failed to ask Checkpoint {checkpoint} for a fresh run: {source}"
    )]
    AskCheckpoint {
        transition: String,
        checkpoint: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to carry out Transition {transition}: {source}")]
    GitSecret {
        transition: String,
        #[source]
        source: crate::k8s::secrets::SecretError,
    },
    #[error("failed to carry out Transition {transition}: {source}")]
    Git {
        transition: String,
        repo: String,
        #[source]
        source: crate::gitops::repo::GitError,
    },
    #[error("failed to write the status of Transition {transition}: {source}")]
    PatchStatus {
        transition: String,
        #[source]
        source: kube::Error,
    },
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::ReadPolicy { .. } => "ReadPolicy",
            Error::ListCheckpoints { .. } => "ListCheckpoints",
            Error::AskCheckpoint { .. } => "AskCheckpoint",
            Error::GitSecret { .. } => "GitSecret",
            Error::Git { .. } => "Git",
            Error::PatchStatus { .. } => "PatchStatus",
        }
    }
}

/// The Checkpoints of the Transition's package (from the cache once it is filled).
pub async fn package_checkpoints_of(
    ctx: &Context,
    t: &Transition,
    ns: &str,
    policy: &ClusterPolicy,
) -> Result<Vec<Arc<Checkpoint>>, Error> {
    let policy_name = kube::ResourceExt::name_any(policy);
    let (p, k) = (policy_label(&policy_name), unique_name(&t.spec.package, 63));
    // Only the side the package leaves: a failback restores what its current home checkpointed.
    let c = unique_name(&t.spec.source_cluster, 63);
    ctx.checkpoints(
        ns,
        &[
            (LABEL_POLICY, p.as_str()),
            (LABEL_PACKAGE, k.as_str()),
            (LABEL_CLUSTER, c.as_str()),
        ],
    )
    .await
    .map_err(|source| Error::ListCheckpoints {
        transition: id_of(t),
        policy: format!("{ns}/{policy_name}"),
        package: t.spec.package.clone(),
        source,
    })
}

/// [`package_checkpoints_of`] for a phase.
pub async fn package_checkpoints(step: &phases::Step<'_>) -> Result<Vec<Arc<Checkpoint>>, Error> {
    package_checkpoints_of(step.ctx, step.transition, &step.policy_ns, step.policy).await
}

/// Reconciles one Transition.
#[instrument(skip_all, fields(transition = %id_of(tr.as_ref())))]
pub async fn reconcile(tr: Arc<Transition>, ctx: Arc<Context>) -> Result<Action, Error> {
    let key = id_of(tr.as_ref());
    match ctx.timed(CONTROLLER, &key, driver::step(&tr, &ctx)).await {
        // A step that keeps failing ends the Transition (bounded retries), with its last error.
        Err(e) if ctx.failures(&key) + 1 >= MAX_STEP_ATTEMPTS => {
            let status = tr.status.clone().unwrap_or_default();
            let refusal = phases::Refusal::GaveUp {
                phase: status
                    .phase
                    .unwrap_or(transition_crds::transition::TransitionPhase::Pending),
                attempts: ctx.failures(&key) + 1,
                error: e.to_string(),
            };
            ctx.reset_backoff(&key);
            driver::fail(&ctx, &tr, status, refusal).await
        }
        Err(e) => {
            note_retry(&ctx, &tr, &e).await;
            Err(e)
        }
        ok => ok,
    }
}

/// Puts a failed step's error into `status.message` (the phase stays), so `kubectl get` shows
/// why a Transition is not moving. Reads the status fresh (the step may have moved the phase
/// before it failed) and writes only when the text changes: each write wakes the controller at
/// once, which must not turn the backoff into a tight loop.
async fn note_retry(ctx: &Context, tr: &Transition, e: &Error) {
    use kube::ResourceExt;
    let api: kube::Api<Transition> =
        kube::Api::namespaced(ctx.client.clone(), &tr.namespace().unwrap_or_default());
    let fresh = match api.get_status(&tr.name_any()).await {
        Ok(t) => t,
        Err(w) => {
            tracing::debug!(error = %w, "could not read the status to note a retry");
            return;
        }
    };
    let mut status = fresh.status.clone().unwrap_or_default();
    let Some(phase) = status.phase.filter(|p| !p.is_terminal()) else {
        return;
    };
    let message =
        format!("{phase:?}: retrying with backoff (up to {MAX_STEP_ATTEMPTS} attempts): {e}");
    if status.message.as_deref() == Some(message.as_str()) {
        return;
    }
    status.message = Some(message);
    if let Err(w) = driver::write_status(ctx, &fresh, &status).await {
        tracing::warn!(error = %w, "could not record the failed attempt in the status");
    }
}

/// Consecutive failed attempts of one step before the Transition ends `Failed` (with backoff
/// 2 s → 5 min between them, about 15 minutes in all).
pub const MAX_STEP_ATTEMPTS: u32 = 10;

/// Every error here is transient (refusals end the Transition inside the reconcile).
pub fn error_policy(t: Arc<Transition>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.retry_after(
        CONTROLLER,
        error.metric_label(),
        &id_of(t.as_ref()),
        false,
        error,
    )
}

/// Runs the Transition controller until `stop`.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    stop: tokio_util::sync::CancellationToken,
) {
    let api: kube::Api<Transition> = ctx.api(namespace);
    let controller = Controller::new(api, watcher::Config::default());
    crate::context::run_controller(controller, reconcile, error_policy, ctx, stop).await;
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use kube::ResourceExt;
    use transition_crds::cluster_policy::TransitionMode;
    use transition_crds::transition::{TransitionPhase, TriggerType};

    use super::*;
    use crate::detect::run::FaultEvent;

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
        let t = fault_transition(&p, "counter", &fault("worker-1"), &[], 1).unwrap();
        assert_eq!(t.name_any(), "p1-counter-1");
        assert_eq!(t.spec.target_cluster, "cluster2-aws");
        assert_eq!(t.spec.trigger.node.as_deref(), Some("worker-1"));
        let again = fault_transition(&p, "counter", &fault("worker-1"), &[], 1).unwrap();
        assert_eq!(
            again.name_any(),
            t.name_any(),
            "same occurrence, same name: created once"
        );
    }

    fn with_phase(mut t: Transition, phase: TransitionPhase, second: i64) -> Transition {
        let status = t.status.get_or_insert_with(Default::default);
        status.phase = Some(phase);
        if phase == TransitionPhase::Completed {
            status.completed_at = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                Timestamp::from_second(second).unwrap(),
            ));
        }
        t
    }

    #[test]
    fn a_package_under_way_gets_no_second_transition_from_a_fault_on_another_node() {
        let p = policy();
        let first = fault_transition(&p, "counter", &fault("worker-1"), &[], 1).unwrap();
        assert_eq!(
            occurrence(
                &p,
                "counter",
                "cluster1-azure",
                std::slice::from_ref(&first)
            ),
            Occurrence::InProgress {
                transition: "p1-counter-1".into()
            },
            "no phase yet counts as under way"
        );
        let running = with_phase(first, TransitionPhase::Verifying, 0);
        assert!(matches!(
            occurrence(&p, "counter", "cluster1-azure", &[running]),
            Occurrence::InProgress { .. }
        ));
        assert_eq!(
            occurrence(&p, "redis", "cluster1-azure", &[]),
            Occurrence::New(1),
            "another package is its own occurrence"
        );
    }

    #[test]
    fn after_a_failover_faults_of_the_old_home_move_nothing_and_after_failback_a_new_occurrence_starts()
     {
        let p = policy();
        let out = with_phase(
            fault_transition(&p, "counter", &fault("worker-1"), &[], 1).unwrap(),
            TransitionPhase::Completed,
            100,
        );
        assert_eq!(
            occurrence(&p, "counter", "cluster1-azure", std::slice::from_ref(&out)),
            Occurrence::MovedAway {
                transition: "p1-counter-1".into(),
                cluster: "cluster2-aws".into()
            }
        );
        // Failback: a Planned move from cluster2-aws home to cluster1-azure, completed later.
        let mut back = fault_transition(&p, "counter", &fault("worker-1"), &[], 2).unwrap();
        back.spec.source_cluster = "cluster2-aws".into();
        back.spec.target_cluster = "cluster1-azure".into();
        back.spec.trigger.type_ = TriggerType::Planned;
        let back = with_phase(back, TransitionPhase::Completed, 200);
        assert_eq!(
            occurrence(&p, "counter", "cluster1-azure", &[out.clone(), back]),
            Occurrence::New(3),
            "home again: the same node failing again is the third occurrence"
        );
        let failed = with_phase(
            fault_transition(&p, "counter", &fault("worker-1"), &[], 2).unwrap(),
            TransitionPhase::Failed,
            0,
        );
        let mut home = out;
        home.spec.target_cluster = "cluster1-azure".into();
        assert_eq!(
            occurrence(&p, "counter", "cluster1-azure", &[home, failed]),
            Occurrence::New(3),
            "a failed attempt leaves the package where it was"
        );
    }

    #[test]
    fn a_node_holding_only_stateless_parts_of_a_live_state_package_moves_nothing() {
        let mut p = policy();
        let status = p.status.as_mut().unwrap();
        status.packages[0].workloads.push(
            serde_json::from_value(serde_json::json!({
                "kind": "Deployment", "namespace": "default", "name": "frontend",
                "nodes": ["worker-2"], "checkpointable": false
            }))
            .unwrap(),
        );
        assert!(packages_on_node(&p, &fault("worker-2")).is_empty());
        assert_eq!(packages_on_node(&p, &fault("worker-1")), vec!["counter"]);
        p.status.as_mut().unwrap().packages[0].live_state = false;
        assert_eq!(
            packages_on_node(&p, &fault("worker-2")),
            vec!["counter"],
            "a stateless package moves with any of its workloads"
        );
    }

    #[test]
    fn an_unhealthy_target_is_skipped_and_none_left_is_an_error() {
        let p = policy();
        let t = fault_transition(
            &p,
            "counter",
            &fault("worker-1"),
            &["cluster2-aws".into()],
            1,
        )
        .unwrap();
        assert_eq!(t.spec.target_cluster, "cluster3");
        let err = fault_transition(
            &p,
            "counter",
            &fault("w"),
            &["cluster2-aws".into(), "cluster3".into()],
            1,
        )
        .unwrap_err();
        let err = err.to_string();
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
        let mut t = fault_transition(&p, "counter", &fault("worker-1"), &[], 1).unwrap();
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
                .to_string()
                .contains("avoidClusters")
        );
        t.spec.target_cluster = "cluster1-azure".into();
        assert!(plan(&t.spec, "ops/p1", &p.spec, &images).is_err());
        t.spec.package = "nope".into();
        assert!(
            plan(&t.spec, "ops/p1", &p.spec, &images)
                .unwrap_err()
                .to_string()
                .contains("no package")
        );
    }

    #[test]
    fn a_failback_goes_from_a_preferred_target_home_planned_with_the_old_home_fenced_last() {
        let p = policy();
        let images = images_for("counter", &[checkpoint("a", 10, 'a')]);
        let mut t = fault_transition(&p, "counter", &fault("worker-1"), &[], 2).unwrap();
        t.spec.source_cluster = "cluster3".into();
        t.spec.target_cluster = "cluster1-azure".into();
        t.spec.trigger.type_ = TriggerType::Planned;
        let back = plan(&t.spec, "ops/p1", &p.spec, &images).unwrap();
        assert_eq!(
            back.failover.target_dir,
            PathBuf::from("clusters/cluster1-azure")
        );
        assert_eq!(back.failover.source_dir, PathBuf::from("clusters/cluster3"));
        assert_eq!(
            back.target_repo, "http://git/c1.git",
            "home: the policy's repository"
        );
        assert_eq!(
            back.source_repo, "http://git/c3.git",
            "the old home's own repository"
        );
        assert!(
            !back.failover.fence,
            "make-before-break: fenced in its own, last step"
        );
        t.spec.trigger.type_ = TriggerType::Manual;
        assert_eq!(
            plan(&t.spec, "ops/p1", &p.spec, &images).unwrap_err(),
            plan::PlanError::FailbackNotPlanned
        );
        t.spec.source_cluster = "cluster9".into();
        t.spec.trigger.type_ = TriggerType::Planned;
        assert!(
            matches!(
                plan(&t.spec, "ops/p1", &p.spec, &images),
                Err(plan::PlanError::WrongSource { .. })
            ),
            "only from a preferred target"
        );
    }

    #[test]
    fn in_all_mode_a_discovered_package_without_a_selector_can_fail_over() {
        let mut p = policy();
        p.spec.select_mode = transition_crds::cluster_policy::SelectMode::All;
        let status = p.status.as_mut().unwrap();
        status.packages.push(
            serde_json::from_value(serde_json::json!({
                "name": "redis", "packageType": "Stateful", "liveState": true,
                "packagePath": "apps/redis",
                "workloads": [{"kind": "StatefulSet", "namespace": "default", "name": "redis",
                               "nodes": ["worker-1"], "checkpointable": true}]
            }))
            .unwrap(),
        );
        let found = packages_on_node(&p, &fault("worker-1"));
        assert_eq!(
            found,
            vec!["counter", "redis"],
            "the unlisted package is on the node too"
        );
        let t = fault_transition(&p, "redis", &fault("worker-1"), &[], 1).unwrap();
        let plan = plan::plan_for(&t.spec, "ops/p1", &p, &[]).unwrap();
        assert_eq!(plan.failover.package_path, PathBuf::from("apps/redis"));
        assert!(plan.selector.live_state_package);
        p.spec.select_mode = transition_crds::cluster_policy::SelectMode::Specific;
        assert!(
            plan::plan_for(&t.spec, "ops/p1", &p, &[]).is_err(),
            "Specific mode moves listed packages only"
        );
    }

    #[test]
    fn planned_moves_fence_last_and_failovers_fence_first() {
        let f = phase_order(TriggerType::NodeFault);
        let p = phase_order(TriggerType::Planned);
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
