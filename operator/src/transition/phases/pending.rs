//! Pending: records the images and workloads the Transition moves, says whether the state comes
//! along, checks that the target can restore it (before Git is touched), announces the start
//! (Event, policy history).

use kube::Resource;
use kube::runtime::events::EventType;
use transition_crds::cluster_policy::PackageTransitionCondition;
use transition_crds::conditions::{self, Status};

use super::{Outcome, Refusal, Step};
use crate::detect::restore::{Verdict, verdict};
use crate::transition::{Error, HOME_UNFENCED, STATELESS, TARGET_CAN_RESTORE, history};

pub async fn run(step: &mut Step<'_>) -> Result<Outcome, Error> {
    let t = step.transition;
    let generation = t.meta().generation;
    let now = step.now;
    step.status.images = step.images.clone();
    step.status.workloads = step
        .policy
        .status
        .as_ref()
        .and_then(|s| s.packages.iter().find(|p| p.name == t.spec.package))
        .map(|p| p.workloads.clone())
        .unwrap_or_default();
    let live = step.plan.selector.live_state_package;
    let (state, reason, message) = match (live, step.images.len()) {
        (true, 0) => (
            Status::True,
            "NoCheckpointImage",
            format!(
                "package {} has no completed checkpoint image: redeployed on {} without its state",
                t.spec.package, t.spec.target_cluster
            ),
        ),
        (false, _) => (
            Status::True,
            "NotLiveState",
            "the package is not live-state: redeployed without state".to_owned(),
        ),
        (true, n) => (
            Status::False,
            "CheckpointImages",
            format!("{n} checkpoint image(s) will be deployed"),
        ),
    };
    conditions::set(
        &mut step.status.conditions,
        STATELESS,
        state,
        reason,
        message,
        generation,
        now,
    );
    if live && !step.images.is_empty() {
        // The source nodes: the faulty one first, then those the package's live pods ran on.
        let mut nodes: Vec<String> = t.spec.trigger.node.iter().cloned().collect();
        nodes.extend(
            step.status
                .workloads
                .iter()
                .filter(|w| w.checkpointable)
                .flat_map(|w| w.nodes.iter().cloned()),
        );
        let v = verdict(
            step.ctx.beats.as_deref(),
            &t.spec.source_cluster,
            &nodes,
            &t.spec.target_cluster,
        );
        if let Verdict::Cannot(reason) = v {
            return Ok(Outcome::Fail(Refusal::TargetCannotRestore {
                target: t.spec.target_cluster.clone(),
                reason,
            }));
        }
        let state = if matches!(v, Verdict::Capable { .. }) {
            Status::True
        } else {
            Status::Unknown
        };
        conditions::set(
            &mut step.status.conditions,
            TARGET_CAN_RESTORE,
            state,
            v.word(),
            v.message(),
            generation,
            now,
        );
    }
    if crate::transition::plan::is_failback(&t.spec, &step.policy.spec) {
        let (state, reason, message) = match super::fencing::unfence_home(step).await {
            Ok(nodes) if nodes.is_empty() => (
                Status::True,
                "NothingFenced",
                format!(
                    "no Ready node of {} carries the out-of-service taint",
                    t.spec.target_cluster
                ),
            ),
            Ok(nodes) => (
                Status::True,
                "Untainted",
                format!(
                    "node(s) {} of {} are Ready again: the out-of-service taint of the failover is removed",
                    nodes.join(", "),
                    t.spec.target_cluster
                ),
            ),
            Err(e) => (
                Status::False,
                "UntaintFailed",
                format!(
                    "could not remove the out-of-service taint at home ({e}); Verifying waits for the workloads"
                ),
            ),
        };
        conditions::set(
            &mut step.status.conditions,
            HOME_UNFENCED,
            state,
            reason,
            message,
            generation,
            now,
        );
    }
    conditions::set(
        &mut step.status.conditions,
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
    let note = format!(
        "moving {} from {} to {} ({:?})",
        t.spec.package, t.spec.source_cluster, t.spec.target_cluster, t.spec.trigger.type_
    );
    step.ctx
        .publish(t, EventType::Normal, "TransitionStarted", &note)
        .await;
    history::record(
        step.ctx,
        t,
        step.status,
        PackageTransitionCondition::InProgress,
        "started",
    )
    .await;
    Ok(Outcome::Advance)
}
