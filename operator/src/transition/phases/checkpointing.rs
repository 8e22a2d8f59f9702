//! Checkpointing (planned moves): a fresh checkpoint of every pod of the package, asked for with
//! a `checkpoint-for` token (the Transition's uid) on each Checkpoint, then its images chosen.

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use transition_crds::Checkpoint;
use transition_crds::checkpoint::CheckpointPhase;

use super::{Outcome, Refusal, Step};
use crate::checkpoint::schedule::CHECKPOINT_FOR;
use crate::transition::plan::images_for;
use crate::transition::{Error, package_checkpoints};

/// How often the Checkpoints are looked at while waiting.
const POLL: Duration = Duration::from_secs(1);

pub async fn run(step: &mut Step<'_>) -> Result<Outcome, Error> {
    let checkpoints = package_checkpoints(step).await?;
    // A planned move of a live-state package never goes ahead without its state.
    if checkpoints.is_empty() && step.plan.selector.live_state_package {
        return Ok(Outcome::Fail(Refusal::NothingToCheckpoint {
            package: step.transition.spec.package.clone(),
            cluster: step.transition.spec.source_cluster.clone(),
        }));
    }
    let token = format!(
        "planned-{}",
        step.transition
            .metadata
            .uid
            .clone()
            .unwrap_or_else(|| step.transition.name_any())
    );
    let mut waiting = Vec::new();
    for c in &checkpoints {
        let status = c.status.clone().unwrap_or_default();
        let handled = status.last_transition_token.as_deref() == Some(token.as_str());
        if handled && status.run.is_none() {
            if status.phase == Some(CheckpointPhase::Failed) {
                return Ok(Outcome::Fail(Refusal::FreshCheckpointFailed {
                    checkpoint: crate::k8s::id_of(c.as_ref()),
                    message: status.message.unwrap_or_default(),
                }));
            }
            continue;
        }
        ask(step, c, &token).await?;
        waiting.push(c.name_any());
    }
    if !waiting.is_empty() {
        return Ok(Outcome::Wait {
            after: POLL,
            why: format!("waiting for the fresh checkpoint of {}", waiting.join(", ")),
        });
    }
    step.status.images = images_for(
        &step.transition.spec.package,
        checkpoints.iter().map(|c| c.as_ref()),
    );
    Ok(Outcome::Advance)
}

/// Puts the token on `c` unless it is already there.
async fn ask(step: &Step<'_>, c: &Arc<Checkpoint>, token: &str) -> Result<(), Error> {
    let asked = c.annotations().get(CHECKPOINT_FOR).map(String::as_str) == Some(token);
    if asked {
        return Ok(());
    }
    let api: Api<Checkpoint> = Api::namespaced(step.ctx.client.clone(), &step.policy_ns);
    let patch = json!({"metadata": {"annotations": {CHECKPOINT_FOR: token}}});
    api.patch(
        &c.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|source| Error::AskCheckpoint {
        transition: step.id(),
        checkpoint: format!("{}/{}", step.policy_ns, c.name_any()),
        source,
    })?;
    Ok(())
}
