//! One file per Transition phase. Each phase is a function of a [`Step`] returning an
//! [`Outcome`]; the driver ([`super::driver`]) alone enters phases, saves the status, requeues
//! and enforces each phase's deadline ([`deadline`]).

pub mod checkpointing;
pub mod committing;
pub mod fencing;
pub mod pending;
pub mod syncing;
pub mod verifying;

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use transition_crds::transition::{ImageRecord, TransitionPhase, TransitionStatus};
use transition_crds::{ClusterPolicy, Transition};

use super::Error;
use super::plan::{Plan, PlanError};
use crate::context::{Context, Settings};

/// What a phase asks the driver to do next.
#[derive(Debug)]
pub enum Outcome {
    /// The phase's work is done: enter the next phase.
    Advance,
    /// Not done yet: look again after `after`; `why` is shown in the status message.
    Wait { after: Duration, why: String },
    /// The Transition cannot succeed: it ends `Failed` with this reason.
    Fail(Refusal),
}

/// Why a Transition ends `Failed`. The variant name is the condition reason.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("ClusterPolicy {policy} does not exist")]
    PolicyMissing { policy: String },
    #[error("ClusterPolicy {policy} has transitionMode: None")]
    TransitionsOff { policy: String },
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(
        "package {package} has no Checkpoint on {cluster} to take a fresh checkpoint with (is it running there, and discovered?): a planned move never goes without its state"
    )]
    NothingToCheckpoint { package: String, cluster: String },
    #[error("the fresh checkpoint {checkpoint} failed: {message}")]
    FreshCheckpointFailed { checkpoint: String, message: String },
    #[error("{what} within {seconds}s: {why}")]
    TimedOut {
        what: &'static str,
        seconds: u64,
        why: String,
    },
    /// The repository does not have the layout the change needs (package folder, kustomization).
    #[error("the Git repository {repo} cannot take the change: {reason}")]
    GitLayout { repo: String, reason: String },
    /// The target cluster cannot restore the checkpoints (restore turned off, another
    /// architecture, older CRIU/runc/kernel than the source): found before Git is touched.
    #[error("target cluster {target} cannot restore the checkpoints: {reason}")]
    TargetCannotRestore { target: String, reason: String },
    /// A step kept failing: given up after this many attempts.
    #[error("gave up in phase {phase:?} after {attempts} failed attempts: {error}")]
    GaveUp {
        phase: TransitionPhase,
        attempts: u32,
        error: String,
    },
}

impl Refusal {
    /// The condition reason and Event note prefix.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::PolicyMissing { .. } => "PolicyMissing",
            Refusal::TransitionsOff { .. } => "TransitionsOff",
            Refusal::Plan(_) => "Invalid",
            Refusal::FreshCheckpointFailed { .. } => "FreshCheckpointFailed",
            Refusal::NothingToCheckpoint { .. } => "NothingToCheckpoint",
            Refusal::TimedOut { .. } => "TimedOut",
            Refusal::GitLayout { .. } => "GitLayout",
            Refusal::TargetCannotRestore { .. } => "TargetCannotRestore",
            Refusal::GaveUp { .. } => "GaveUp",
        }
    }
}

/// Everything a phase works with.
pub struct Step<'a> {
    pub ctx: &'a Context,
    pub transition: &'a Transition,
    pub policy: &'a ClusterPolicy,
    /// Namespace of the policy (and of its Checkpoints and Secrets).
    pub policy_ns: String,
    pub plan: Plan,
    /// The checkpoint images the plan deploys (recorded in status by Pending).
    pub images: Vec<ImageRecord>,
    pub status: &'a mut TransitionStatus,
    pub now: Timestamp,
}

impl Step<'_> {
    /// `namespace/name` of the Transition.
    pub fn id(&self) -> String {
        crate::k8s::id_of(self.transition)
    }

    /// The policy's annotations (per-cluster kubeconfig overrides).
    pub fn annotations(&self) -> std::collections::BTreeMap<String, String> {
        self.policy.metadata.annotations.clone().unwrap_or_default()
    }
}

/// Runs `phase`'s work once.
pub async fn run(phase: TransitionPhase, step: &mut Step<'_>) -> Result<Outcome, Error> {
    match phase {
        TransitionPhase::Pending => pending::run(step).await,
        TransitionPhase::Fencing => fencing::run(step).await,
        TransitionPhase::Checkpointing => checkpointing::run(step).await,
        TransitionPhase::Committing => committing::run(step).await,
        TransitionPhase::Syncing => syncing::run(step).await,
        TransitionPhase::Verifying => verifying::run(step).await,
        TransitionPhase::Completed | TransitionPhase::Failed | TransitionPhase::DryRun => {
            Ok(Outcome::Advance)
        }
    }
}

/// How long `phase` may keep waiting, and what it waits for (the table the driver enforces).
pub fn deadline(phase: TransitionPhase, settings: &Settings) -> Option<(Duration, &'static str)> {
    match phase {
        TransitionPhase::Checkpointing => Some((
            settings.archive_wait + settings.kubelet_timeout * 2,
            "the fresh checkpoint did not complete",
        )),
        TransitionPhase::Verifying => {
            Some((settings.verify_timeout, "the target did not become Ready"))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_waiting_phases_have_a_deadline() {
        let s = Settings::default();
        assert!(deadline(TransitionPhase::Verifying, &s).is_some());
        assert!(deadline(TransitionPhase::Checkpointing, &s).is_some());
        for p in [
            TransitionPhase::Pending,
            TransitionPhase::Fencing,
            TransitionPhase::Committing,
            TransitionPhase::Syncing,
        ] {
            assert!(deadline(p, &s).is_none(), "{p:?}");
        }
    }
}
