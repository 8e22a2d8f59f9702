//! Syncing: asks the target's Argo CD Application (named like the cluster) to sync now; without
//! one, the target's GitOps agent (Flux or Argo CD) picks the commit up on its next poll.

use std::time::Duration;

use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;
use transition_crds::conditions::{self, Status};

use super::{Outcome, Step};
use crate::transition::{Error, SYNC};

/// How long the sync request may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(step: &mut Step<'_>) -> Result<Outcome, Error> {
    let (state, reason, message) = request_sync(step).await;
    let generation = step.transition.meta().generation;
    conditions::set(
        &mut step.status.conditions,
        SYNC,
        state,
        reason,
        message,
        generation,
        step.now,
    );
    Ok(Outcome::Advance)
}

/// The `(status, reason, message)` of the [`SYNC`] condition.
async fn request_sync(step: &Step<'_>) -> (Status, &'static str, String) {
    let target = &step.transition.spec.target_cluster;
    let argocd = &step.ctx.settings.argocd_namespace;
    let client = match step
        .ctx
        .clusters
        .client(target, &step.policy_ns, &step.annotations())
        .await
    {
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
    let apps: Api<DynamicObject> = Api::namespaced_with(client, argocd, &ar);
    let patch = json!({"operation": {"initiatedBy": {"username": "transition-operator"},
        "sync": {"prune": true}}});
    let (params, merge) = (PatchParams::default(), Patch::Merge(&patch));
    let call = apps.patch(target, &params, &merge);
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(_)) => (
            Status::True,
            "ArgoCDSync",
            format!("operation.sync set on Application {argocd}/{target}"),
        ),
        Ok(Err(e)) if crate::k8s::is_status(&e, 404) => (
            Status::False,
            "NoArgoCDApplication",
            format!(
                "no Argo CD Application {argocd}/{target} in {target}: its GitOps agent (Flux or Argo CD) picks the commit up on its next poll"
            ),
        ),
        Ok(Err(e)) => (
            Status::False,
            "SyncRequestFailed",
            format!(
                "could not set operation.sync ({e}); the GitOps agent picks the commit up on its next poll"
            ),
        ),
        Err(_) => (
            Status::False,
            "SyncRequestFailed",
            format!(
                "the target API did not answer within {}s; the GitOps agent picks the commit up on its next poll",
                CALL_TIMEOUT.as_secs()
            ),
        ),
    }
}
