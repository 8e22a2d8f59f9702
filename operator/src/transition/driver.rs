//! The phase driver: the one place that enters phases (persisting each with its timing before its
//! work starts, so a restarted operator resumes at the recorded phase), runs a phase's work,
//! enforces its deadline, saves the status and requeues. Nothing here sleeps: a pause or a wait
//! is a requeue, measured from the phase's recorded start.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use tracing::{info, warn};
use transition_crds::Transition;
use transition_crds::cluster_policy::{PackageTransitionCondition, TransitionMode};
use transition_crds::conditions::{self, Status};
use transition_crds::transition::{TransitionPhase, TransitionStatus};

use super::phases::{self, Outcome, Refusal, Step};
use super::plan::{images_for, next_phase, plan_for};
use super::{Error, history, package_checkpoints_of};
use crate::context::Context;
use crate::k8s::{FIELD_MANAGER, id_of};
use crate::observe::metrics::OutcomeLabels;

fn millis_since(start: Timestamp, now: Timestamp) -> Duration {
    let ms = (now.as_millisecond() - start.as_millisecond()).max(0);
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Time spent so far in the current phase.
fn in_phase(status: &TransitionStatus, now: Timestamp) -> Duration {
    status
        .phase_timings
        .last()
        .map_or(Duration::ZERO, |p| millis_since(p.started_at.0, now))
}

pub async fn write_status(
    ctx: &Context,
    t: &Transition,
    status: &TransitionStatus,
) -> Result<(), Error> {
    crate::k8s::status::apply(&ctx.client, t, status, FIELD_MANAGER)
        .await
        .map_err(|source| Error::PatchStatus {
            transition: id_of(t),
            source,
        })?;
    Ok(())
}

/// Drives `t` one step: its current phase's work, then whatever the outcome asks for.
pub async fn step(t: &Transition, ctx: &Context) -> Result<Action, Error> {
    let mut status = t.status.clone().unwrap_or_default();
    let phase = status.phase.unwrap_or(TransitionPhase::Pending);
    if phase.is_terminal() {
        return Ok(Action::await_change());
    }
    let now = Timestamp::now();
    // The pause tests and demos use to stop the operator inside a phase: a requeue, not a sleep.
    let pause = ctx.settings.phase_pause;
    if status.phase.is_some() && in_phase(&status, now) < pause {
        return Ok(Action::requeue(pause - in_phase(&status, now)));
    }
    let found = match dereference(ctx, t, &status, phase).await? {
        Ok(found) => found,
        Err(refusal) => return fail(ctx, t, status, refusal).await,
    };
    if t.spec.dry_run == Some(true) {
        return dry_run(ctx, t, status, found).await;
    }
    let (policy, policy_ns, plan, images) = found;
    if status.phase.is_none() {
        enter(ctx, t, &mut status, TransitionPhase::Pending).await?;
        if !pause.is_zero() {
            return Ok(Action::requeue(pause));
        }
    }
    let outcome = {
        let mut step = Step {
            ctx,
            transition: t,
            policy: &policy,
            policy_ns,
            plan,
            images,
            status: &mut status,
            now,
        };
        phases::run(phase, &mut step).await?
    };
    match outcome {
        Outcome::Advance => advance(ctx, t, &mut status, phase).await,
        Outcome::Wait { after, why } => {
            if let Some((limit, what)) = phases::deadline(phase, &ctx.settings)
                && in_phase(&status, Timestamp::now()) > limit
            {
                let seconds = limit.as_secs();
                return fail(ctx, t, status, Refusal::TimedOut { what, seconds, why }).await;
            }
            if status.message.as_deref() != Some(why.as_str()) {
                status.message = Some(why);
                write_status(ctx, t, &status).await?;
            }
            Ok(Action::requeue(after))
        }
        Outcome::Fail(refusal) => fail(ctx, t, status, refusal).await,
    }
}

/// What a step works from: the policy, its namespace, the Git plan and the images.
type Dereferenced = (
    std::sync::Arc<transition_crds::ClusterPolicy>,
    String,
    super::plan::Plan,
    Vec<transition_crds::transition::ImageRecord>,
);

/// A dry run: the diffs the Git change would push, recorded in `status.dryRun`; the Transition
/// ends `DryRun` with nothing fenced, committed or synced.
async fn dry_run(
    ctx: &Context,
    t: &Transition,
    mut status: TransitionStatus,
    (policy, policy_ns, plan, images): Dereferenced,
) -> Result<Action, Error> {
    let now = Timestamp::now();
    let changes = {
        let step = Step {
            ctx,
            transition: t,
            policy: &policy,
            policy_ns,
            plan,
            images: images.clone(),
            status: &mut status,
            now,
        };
        match phases::committing::preview(&step).await {
            Ok(c) => c,
            Err(e) => match phases::committing::layout_refusal(&e) {
                Some(refusal) => return fail(ctx, t, status, refusal).await,
                None => return Err(e),
            },
        }
    };
    let files: usize = changes
        .iter()
        .map(|c| c.diff.lines().filter(|l| l.starts_with("+++ ")).count())
        .sum();
    let note = format!(
        "dry run: moving {} from {} to {} would change {files} file(s) in {} repository change(s) ({} checkpoint image(s)); nothing was changed — the diff is in status.dryRun",
        t.spec.package,
        t.spec.source_cluster,
        t.spec.target_cluster,
        changes.len(),
        images.len()
    );
    status.images = images;
    status.dry_run = changes;
    status.message = Some(note.clone());
    let generation = t.meta().generation;
    conditions::set(
        &mut status.conditions,
        conditions::READY,
        Status::True,
        "DryRun",
        &note,
        generation,
        now,
    );
    status.enter_phase(TransitionPhase::DryRun, now);
    write_status(ctx, t, &status).await?;
    count(ctx, "dry_run");
    ctx.publish(t, EventType::Normal, "TransitionDryRun", &note)
        .await;
    info!(%note, "dry run");
    Ok(Action::await_change())
}

/// Reads the policy (cache, else API) and builds the plan; `Ok(Err(_))`: the Transition cannot
/// go ahead.
async fn dereference(
    ctx: &Context,
    t: &Transition,
    status: &TransitionStatus,
    phase: TransitionPhase,
) -> Result<Result<Dereferenced, Refusal>, Error> {
    let ns = kube::ResourceExt::namespace(t).unwrap_or_default();
    let policy_ns = t.spec.policy_ref.namespace.clone().unwrap_or(ns);
    let policy_key = format!("{policy_ns}/{}", t.spec.policy_ref.name);
    let policy = ctx
        .policy(&policy_ns, &t.spec.policy_ref.name)
        .await
        .map_err(|source| Error::ReadPolicy {
            transition: id_of(t),
            policy: policy_key.clone(),
            source,
        })?;
    let Some(policy) = policy else {
        return Ok(Err(Refusal::PolicyMissing { policy: policy_key }));
    };
    if policy.spec.transition_mode == Some(TransitionMode::None) {
        return Ok(Err(Refusal::TransitionsOff { policy: policy_key }));
    }
    // Checkpoints are read only where they matter: choosing the images, once.
    let images = if status.images.is_empty() && phase == TransitionPhase::Pending {
        let found = package_checkpoints_of(ctx, t, &policy_ns, &policy).await?;
        images_for(&t.spec.package, found.iter().map(|c| c.as_ref()))
    } else {
        status.images.clone()
    };
    Ok(match plan_for(&t.spec, &policy_key, &policy, &images) {
        Ok(p) => Ok((
            policy,
            policy_ns,
            p.in_clusters_dir(
                &ctx.settings.git_clusters_dir,
                ctx.settings.git_folder_per_package,
            ),
            images,
        )),
        Err(e) => Err(Refusal::Plan(e)),
    })
}

/// Enters `phase` and persists it, observing how long the previous phase took.
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
        ctx.metrics
            .phase_seconds
            .get_or_create(&OutcomeLabels {
                outcome: format!("{:?}", open.phase),
            })
            .observe(millis_since(open.started_at.0, now).as_secs_f64());
    }
    status.enter_phase(phase, now);
    status.observed_generation = t.meta().generation;
    status.message = Some(format!("{phase:?}"));
    write_status(ctx, t, status).await?;
    info!(?phase, "transition phase");
    Ok(())
}

/// Enters the phase after `phase` (or completes the Transition).
async fn advance(
    ctx: &Context,
    t: &Transition,
    status: &mut TransitionStatus,
    phase: TransitionPhase,
) -> Result<Action, Error> {
    let Some(next) = next_phase(t.spec.trigger.type_, phase) else {
        return Ok(Action::await_change());
    };
    if next == TransitionPhase::Completed {
        return complete(ctx, t, status).await;
    }
    enter(ctx, t, status, next).await?;
    let pause = ctx.settings.phase_pause;
    Ok(Action::requeue(pause.max(Duration::from_millis(10))))
}

/// Marks the Transition Completed, with its phase timings in the message.
async fn complete(
    ctx: &Context,
    t: &Transition,
    status: &mut TransitionStatus,
) -> Result<Action, Error> {
    let total = status
        .started_at
        .as_ref()
        .map_or(Duration::ZERO, |s| millis_since(s.0, Timestamp::now()));
    let timings: Vec<String> = status
        .phase_timings
        .iter()
        .map(|p| format!("{:?} {} ms", p.phase, p.duration_ms.unwrap_or(0)))
        .collect();
    let note = format!(
        "{} moved from {} to {} in {} ms ({})",
        t.spec.package,
        t.spec.source_cluster,
        t.spec.target_cluster,
        total.as_millis(),
        timings.join(", ")
    );
    let generation = t.meta().generation;
    let now = Timestamp::now();
    conditions::set(
        &mut status.conditions,
        conditions::READY,
        Status::True,
        "Completed",
        &note,
        generation,
        now,
    );
    conditions::set(
        &mut status.conditions,
        conditions::PROGRESSING,
        Status::False,
        "Completed",
        "done",
        generation,
        now,
    );
    enter(ctx, t, status, TransitionPhase::Completed).await?;
    status.message = Some(note.clone());
    write_status(ctx, t, status).await?;
    count(ctx, "completed");
    ctx.publish(t, EventType::Normal, "TransitionCompleted", &note)
        .await;
    history::record(ctx, t, status, PackageTransitionCondition::Completed, &note).await;
    info!(%note, "transition completed");
    Ok(Action::await_change())
}

fn count(ctx: &Context, outcome: &str) {
    ctx.metrics
        .transitions
        .get_or_create(&OutcomeLabels {
            outcome: outcome.into(),
        })
        .inc();
}

/// Ends the Transition `Failed` with `refusal` as its reason.
pub async fn fail(
    ctx: &Context,
    t: &Transition,
    mut status: TransitionStatus,
    refusal: Refusal,
) -> Result<Action, Error> {
    let reason = refusal.to_string();
    let now = Timestamp::now();
    status.message = Some(reason.clone());
    conditions::set(
        &mut status.conditions,
        conditions::READY,
        Status::False,
        refusal.reason(),
        &reason,
        t.meta().generation,
        now,
    );
    status.enter_phase(TransitionPhase::Failed, now);
    write_status(ctx, t, &status).await?;
    ctx.publish(t, EventType::Warning, "TransitionFailed", &reason)
        .await;
    count(ctx, "failed");
    history::record(ctx, t, &status, PackageTransitionCondition::Failed, &reason).await;
    warn!(transition = %id_of(t), %reason, "transition failed");
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_in_a_phase_is_measured_from_its_recorded_start() {
        let mut s = TransitionStatus::default();
        let t0 = Timestamp::from_second(100).unwrap();
        assert_eq!(in_phase(&s, t0), Duration::ZERO, "no phase yet");
        s.enter_phase(TransitionPhase::Verifying, t0);
        let later = Timestamp::from_second(103).unwrap();
        assert_eq!(in_phase(&s, later), Duration::from_secs(3));
        assert_eq!(
            in_phase(&s, Timestamp::from_second(90).unwrap()),
            Duration::ZERO,
            "clock skew"
        );
    }
}
