//! Syncing: asks the GitOps agents that deploy the target's folder to act on the commit now —
//! Argo CD (`operation.sync` on the Application, in the hub or in the target) and/or Flux
//! (`reconcile.fluxcd.io/requestedAt` on the Kustomization and its source), as configured
//! ([`crate::gitops::agents`]). A trigger that cannot be sent is recorded in the `SyncRequested`
//! condition and the transition goes on: the agent picks the commit up on its next poll, and
//! Verifying waits for the workload either way.

use std::time::Duration;

use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use transition_crds::conditions::{self, Status};

use super::{Outcome, Step};
use crate::context::Context;
use crate::gitops::agents::{self, Agent, Trigger};
use crate::transition::{Error, SYNC};

/// How long each call to an agent's API may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// What the agents do without a trigger.
const ON_NEXT_POLL: &str = "the GitOps agent picks the commit up on its next poll";

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

/// One trigger's outcome: `Ok((reason, what was asked))` or `Err((reason, why not))`.
type Sent = Result<(&'static str, String), (&'static str, String)>;

/// The `(status, reason, message)` of the [`SYNC`] condition.
async fn request_sync(step: &Step<'_>) -> (Status, &'static str, String) {
    let req = SyncRequest {
        target: &step.transition.spec.target_cluster,
        package: &step.transition.spec.package,
        policy_ns: &step.policy_ns,
        annotations: step.annotations(),
        now: step.now,
    };
    request(step.ctx, &req).await
}

/// What a sync request is about.
pub struct SyncRequest<'a> {
    /// The cluster whose folder changed.
    pub target: &'a str,
    pub package: &'a str,
    /// Namespace of the policy (where cluster credentials Secrets are looked up).
    pub policy_ns: &'a str,
    /// The policy's annotations (per-cluster kubeconfig overrides).
    pub annotations: std::collections::BTreeMap<String, String>,
    pub now: k8s_openapi::jiff::Timestamp,
}

/// Sends every configured trigger; `(status, reason, message)` for the [`SYNC`] condition:
/// True when at least one agent was asked to sync.
pub async fn request(ctx: &Context, req: &SyncRequest<'_>) -> (Status, &'static str, String) {
    let triggers = &ctx.settings.sync_triggers;
    if triggers.is_empty() {
        return (
            Status::False,
            "NoSyncTrigger",
            format!(
                "no GitOps agent to ask (--argocd-cluster and --flux-cluster are off); {ON_NEXT_POLL}"
            ),
        );
    }
    let mut sent = Vec::new();
    for t in triggers {
        sent.push(send(ctx, req, t).await);
    }
    summarise(&sent)
}

/// The condition for the outcomes of every configured trigger.
fn summarise(sent: &[Sent]) -> (Status, &'static str, String) {
    let message = sent
        .iter()
        .map(|s| match s {
            Ok((_, m)) | Err((_, m)) => m.as_str(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    match sent.iter().find_map(|s| s.as_ref().ok()) {
        Some((reason, _)) if sent.len() == 1 => (Status::True, *reason, message),
        Some(_) => (Status::True, "SyncRequested", message),
        None => {
            let reason = sent
                .iter()
                .find_map(|s| s.as_ref().err().map(|(r, _)| *r))
                .unwrap_or("SyncRequestFailed");
            (Status::False, reason, format!("{message}; {ON_NEXT_POLL}"))
        }
    }
}

/// Sends one trigger.
async fn send(ctx: &Context, req: &SyncRequest<'_>, t: &Trigger) -> Sent {
    let name = t.name.render(req.target, req.package);
    let client = match t.cluster(req.target) {
        None => ctx.client.clone(),
        Some(cluster) => ctx
            .clusters
            .client(cluster, req.policy_ns, &req.annotations)
            .await
            .map_err(|e| {
                (
                    "SyncAgentUnreachable",
                    format!("{} in {}: {e}", t.agent, t.location),
                )
            })?,
    };
    match t.agent {
        Agent::ArgoCd => {
            let apps = dynamic(
                client,
                &t.namespace,
                ("argoproj.io", "v1alpha1", "Application", "applications"),
            );
            let what = format!(
                "Argo CD Application {}/{name} in {}",
                t.namespace, t.location
            );
            patch(&apps, &name, &agents::argocd_sync_patch(), &what).await?;
            Ok(("ArgoCDSync", format!("operation.sync set on {what}")))
        }
        Agent::Flux => {
            let ks = dynamic(
                client.clone(),
                &t.namespace,
                (
                    "kustomize.toolkit.fluxcd.io",
                    "v1",
                    "Kustomization",
                    "kustomizations",
                ),
            );
            let what = format!(
                "Flux Kustomization {}/{name} in {}",
                t.namespace, t.location
            );
            let found = call(ks.get(&name), &what).await?;
            let value = serde_json::to_value(&found.data).unwrap_or_default();
            let requested_at = req.now.to_string();
            let patch_body = agents::flux_reconcile_patch(&requested_at);
            let mut source_note = String::new();
            if let Some(src) = agents::flux_source_ref(&value, &t.namespace) {
                match src.resource() {
                    Some((group, version, plural)) => {
                        let sources =
                            dynamic(client, &src.namespace, (group, version, &src.kind, plural));
                        let src_what = format!(
                            "Flux {} {}/{} in {}",
                            src.kind, src.namespace, src.name, t.location
                        );
                        patch(&sources, &src.name, &patch_body, &src_what).await?;
                        source_note = format!(" and its {} {}", src.kind, src.name);
                    }
                    None => {
                        source_note = format!(
                            " (its source kind {} is not one Flux's source-controller serves at v1: not annotated)",
                            src.kind
                        );
                    }
                }
            }
            patch(&ks, &name, &patch_body, &what).await?;
            Ok((
                "FluxReconcileRequested",
                format!(
                    "Flux reconcile requested ({} = {requested_at}) on {what}{source_note}",
                    agents::FLUX_REQUESTED_AT
                ),
            ))
        }
    }
}

/// A namespaced API over `(group, version, kind, plural)`.
fn dynamic(
    client: kube::Client,
    namespace: &str,
    (group, version, kind, plural): (&str, &str, &str, &str),
) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
    Api::namespaced_with(client, namespace, &ar)
}

async fn patch(
    api: &Api<DynamicObject>,
    name: &str,
    body: &serde_json::Value,
    what: &str,
) -> Result<(), (&'static str, String)> {
    call(
        api.patch(name, &PatchParams::default(), &Patch::Merge(body)),
        what,
    )
    .await
    .map(|_| ())
}

/// Runs one API call under [`CALL_TIMEOUT`], mapping its failure to a condition reason.
async fn call<T>(
    fut: impl Future<Output = Result<T, kube::Error>>,
    what: &str,
) -> Result<T, (&'static str, String)> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if crate::k8s::is_status(&e, 404) => Err((
            "NoSyncObject",
            format!("no {what} (or its CRD is not installed)"),
        )),
        Ok(Err(e)) if crate::k8s::is_status(&e, 403) => {
            Err(("SyncForbidden", format!("not allowed to patch {what}: {e}")))
        }
        Ok(Err(e)) => Err(("SyncRequestFailed", format!("could not patch {what}: {e}"))),
        Err(_) => Err((
            "SyncRequestFailed",
            format!(
                "{what}: the API did not answer within {}s",
                CALL_TIMEOUT.as_secs()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_condition_is_true_when_any_agent_was_asked_and_names_every_outcome() {
        let ok: Sent = Ok((
            "ArgoCDSync",
            "operation.sync set on Argo CD Application argocd/c2".into(),
        ));
        let flux: Sent = Ok((
            "FluxReconcileRequested",
            "Flux reconcile requested on Flux Kustomization flux-system/c2".into(),
        ));
        let missing: Sent = Err((
            "NoSyncObject",
            "no Flux Kustomization flux-system/c2".into(),
        ));
        assert_eq!(summarise(std::slice::from_ref(&ok)).1, "ArgoCDSync");
        assert_eq!(
            summarise(std::slice::from_ref(&flux)).1,
            "FluxReconcileRequested"
        );
        let (state, reason, message) = summarise(&[ok, missing.clone()]);
        assert_eq!((state, reason), (Status::True, "SyncRequested"));
        assert!(
            message.contains("argocd/c2") && message.contains("no Flux"),
            "{message}"
        );
        let (state, reason, message) = summarise(&[missing]);
        assert_eq!((state, reason), (Status::False, "NoSyncObject"));
        assert!(message.ends_with(ON_NEXT_POLL), "{message}");
    }
}
