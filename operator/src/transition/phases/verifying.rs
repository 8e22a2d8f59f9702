//! Verifying: every workload of the package Ready in the target cluster's API, running the
//! checkpoint images (when there are any). An unreachable target is waited for like a workload
//! that is not Ready yet: the driver's deadline ends the wait with the reason.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::api::Api;
use transition_crds::cluster_policy::ProtectedWorkload;
use transition_crds::transition::ImageRecord;

use super::{Outcome, Step};
use crate::transition::Error;

/// How often the target is looked at while waiting.
const POLL: Duration = Duration::from_secs(2);
/// How long one read of the target may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(step: &mut Step<'_>) -> Result<Outcome, Error> {
    if step.status.workloads.is_empty() {
        return Ok(Outcome::Advance);
    }
    let target = step.transition.spec.target_cluster.clone();
    let client = match step
        .ctx
        .clusters
        .client(&target, &step.policy_ns, &step.annotations())
        .await
    {
        Ok(c) => c,
        Err(e) => return Ok(wait(format!("target {target} unreachable: {e}"))),
    };
    for w in &step.status.workloads {
        let observed = match tokio::time::timeout(CALL_TIMEOUT, observe(&client, w)).await {
            Err(_) => {
                return Ok(wait(format!(
                    "target {target} did not answer within {}s",
                    CALL_TIMEOUT.as_secs()
                )));
            }
            Ok(Err(e)) => {
                return Ok(wait(format!(
                    "failed to read {} {}/{} in {target}: {e}",
                    w.kind, w.namespace, w.name
                )));
            }
            Ok(Ok(o)) => o,
        };
        if let Some(why) = still_missing(w, &target, observed.as_ref(), &step.status.images) {
            return Ok(wait(why));
        }
    }
    Ok(Outcome::Advance)
}

fn wait(why: String) -> Outcome {
    Outcome::Wait { after: POLL, why }
}

/// What the target shows of one workload: `(ready, wanted, pod template)`.
pub type Observed = (i32, i32, PodTemplateSpec);

/// Reads `w` from the target (`None`: not there yet).
async fn observe(
    client: &kube::Client,
    w: &ProtectedWorkload,
) -> Result<Option<Observed>, kube::Error> {
    if w.kind == "StatefulSet" {
        let api: Api<StatefulSet> = Api::namespaced(client.clone(), &w.namespace);
        let Some(s) = api.get_opt(&w.name).await? else {
            return Ok(None);
        };
        let spec = s.spec.unwrap_or_default();
        let ready = s.status.and_then(|x| x.ready_replicas).unwrap_or(0);
        return Ok(Some((ready, spec.replicas.unwrap_or(1), spec.template)));
    }
    let api: Api<Deployment> = Api::namespaced(client.clone(), &w.namespace);
    let Some(d) = api.get_opt(&w.name).await? else {
        return Ok(None);
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
    Ok(Some((ready, spec.replicas.unwrap_or(1), spec.template)))
}

/// What is still missing for `w` to count as restored on `target` (pure); `None`: nothing.
pub fn still_missing(
    w: &ProtectedWorkload,
    target: &str,
    observed: Option<&Observed>,
    images: &[ImageRecord],
) -> Option<String> {
    let Some((ready, want, template)) = observed else {
        return Some(format!(
            "waiting for {} {}/{} in {target}",
            w.kind, w.namespace, w.name
        ));
    };
    let template_images: Vec<String> = template
        .spec
        .as_ref()
        .map(|p| {
            p.containers
                .iter()
                .filter_map(|c| c.image.clone())
                .collect()
        })
        .unwrap_or_default();
    let containers: Vec<(String, String)> = template
        .spec
        .as_ref()
        .map(|p| {
            p.containers
                .iter()
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let mine = |i: &&ImageRecord| {
        i.workload
            .as_ref()
            .is_some_and(|iw| iw.kind == w.kind && iw.namespace == w.namespace && iw.name == w.name)
    };
    // Images pinned to this workload: its container of that name must run exactly that digest.
    let wrong: Vec<String> = images
        .iter()
        .filter(mine)
        .filter(|_| w.checkpointable)
        .filter(|i| {
            !containers.iter().any(|(name, image)| {
                Some(name) == i.container.as_ref() && image.ends_with(&i.digest)
            })
        })
        .map(|i| {
            format!(
                "container {} (want {})",
                i.container.as_deref().unwrap_or("?"),
                i.digest
            )
        })
        .collect();
    if !wrong.is_empty() {
        return Some(format!(
            "{} {}/{} in {target} does not run its checkpoint image yet: {}",
            w.kind,
            w.namespace,
            w.name,
            wrong.join(", ")
        ));
    }
    // Images from an older status, by image name only.
    let missing: Vec<String> = images
        .iter()
        .filter(|i| i.workload.is_none())
        .filter(|i| {
            w.checkpointable
                && !template_images.iter().any(|ti| ti.ends_with(&i.digest))
                && template_images
                    .iter()
                    .any(|ti| Some(ti) == i.original.as_ref())
        })
        .filter_map(|m| m.original.clone())
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "{} {}/{} in {target} still runs {} instead of the checkpoint image",
            w.kind,
            w.namespace,
            w.name,
            missing.join(", ")
        ));
    }
    (ready < want).then(|| {
        format!(
            "{} {}/{} in {target}: {ready}/{want} ready",
            w.kind, w.namespace, w.name
        )
    })
}
