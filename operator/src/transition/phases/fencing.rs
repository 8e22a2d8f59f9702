//! Fencing: the source must not run the package any more. A dead node gets Kubernetes'
//! non-graceful-shutdown taint `node.kubernetes.io/out-of-service` (the source cluster then
//! force-deletes its pods, so a node that returns does not run them again); a planned move
//! removes the package from the source's kustomization (its Git commit) once the target serves.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Taint};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use transition_crds::conditions::{self, Status};
use transition_crds::transition::TriggerType;

use super::committing::{Side, commit};
use super::{Outcome, Step};
use crate::transition::{Error, FENCED, OUT_OF_SERVICE_TAINT};

/// How long one call to the source cluster may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts when the Node changed between our read and our write.
const ATTEMPTS: usize = 3;

pub async fn run(step: &mut Step<'_>) -> Result<Outcome, Error> {
    let t = step.transition;
    if t.spec.trigger.type_ == TriggerType::Planned
        && let Err(e) = commit(step, Side::Fence).await
    {
        return super::committing::layout_refusal(&e)
            .map(Outcome::Fail)
            .ok_or(e);
    }
    let (state, reason, message) = fence_node(step).await;
    let generation = t.meta().generation;
    conditions::set(
        &mut step.status.conditions,
        FENCED,
        state,
        reason,
        message,
        generation,
        step.now,
    );
    Ok(Outcome::Advance)
}

/// Why the taint could not be set (the fence then holds by Git alone) or removed.
#[derive(Debug, thiserror::Error)]
pub enum TaintError {
    #[error(transparent)]
    Cluster(#[from] crate::k8s::clusters::ClusterError),
    #[error("no answer within {}s", CALL_TIMEOUT.as_secs())]
    Timeout,
    #[error("node {0} does not exist")]
    NoNode(String),
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("the node kept changing under us ({ATTEMPTS} attempts)")]
    Contended,
}

/// The `(status, reason, message)` of the [`FENCED`] condition. Best effort: an unreachable
/// source is fenced by Git only.
async fn fence_node(step: &Step<'_>) -> (Status, &'static str, String) {
    let t = step.transition;
    if t.spec.trigger.type_ == TriggerType::Planned {
        // The fence commit above has just removed it.
        return (
            Status::True,
            "GitFence",
            "package removed from the source's kustomization".into(),
        );
    }
    let Some(node) = t.spec.trigger.node.as_deref() else {
        return (
            Status::False,
            "NoNodeToTaint",
            "no node named: the package leaves the source's kustomization in the Git commit next"
                .into(),
        );
    };
    match taint(step, node).await {
        Ok(()) => (
            Status::True,
            "OutOfService",
            format!(
                "node {node} tainted {OUT_OF_SERVICE_TAINT}=nodeshutdown:NoExecute in {}",
                t.spec.source_cluster
            ),
        ),
        // Nothing is fenced yet: the Git fence (Committing) is what will hold.
        Err(e) => (
            Status::False,
            "TaintFailed",
            format!(
                "could not taint node {node} ({e}); the package leaves the source's kustomization in the Git commit next"
            ),
        ),
    }
}

/// Adds the out-of-service taint to `node`, guarded by its resourceVersion so a concurrent
/// change to the node's taints is never lost.
async fn taint(step: &Step<'_>, node: &str) -> Result<(), TaintError> {
    let client = step
        .ctx
        .clusters
        .client(
            &step.transition.spec.source_cluster,
            &step.policy_ns,
            &step.annotations(),
        )
        .await?;
    let nodes: Api<Node> = Api::all(client);
    for _ in 0..ATTEMPTS {
        let current = tokio::time::timeout(CALL_TIMEOUT, nodes.get_opt(node))
            .await
            .map_err(|_| TaintError::Timeout)??
            .ok_or_else(|| TaintError::NoNode(node.to_owned()))?;
        let version = current.metadata.resource_version.clone();
        let mut taints = current.spec.and_then(|s| s.taints).unwrap_or_default();
        if taints.iter().any(|x| x.key == OUT_OF_SERVICE_TAINT) {
            return Ok(());
        }
        taints.push(Taint {
            key: OUT_OF_SERVICE_TAINT.into(),
            value: Some("nodeshutdown".into()),
            effect: "NoExecute".into(),
            time_added: None,
        });
        let patch = json!({"metadata": {"resourceVersion": version}, "spec": {"taints": taints}});
        let (params, merge) = (PatchParams::default(), Patch::Merge(&patch));
        let call = nodes.patch(node, &params, &merge);
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Err(_) => return Err(TaintError::Timeout),
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) if crate::k8s::is_status(&e, 409) => continue,
            Ok(Err(e)) => return Err(e.into()),
        }
    }
    Err(TaintError::Contended)
}

/// Whether `node` carries the out-of-service taint a failover set (`nodeshutdown`).
fn fenced_by_us(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| {
            t.iter().any(|x| {
                x.key == OUT_OF_SERVICE_TAINT && x.value.as_deref() == Some("nodeshutdown")
            })
        })
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A failback's first step at home: the nodes a failover fenced (`out-of-service=nodeshutdown`)
/// that are Ready again lose the taint, so the package can be scheduled there. Returns the
/// nodes untainted; each write is guarded by the node's resourceVersion.
pub async fn unfence_home(step: &Step<'_>) -> Result<Vec<String>, TaintError> {
    let client = step
        .ctx
        .clusters
        .client(
            &step.transition.spec.target_cluster,
            &step.policy_ns,
            &step.annotations(),
        )
        .await?;
    let nodes: Api<Node> = Api::all(client);
    let list = tokio::time::timeout(CALL_TIMEOUT, nodes.list(&Default::default()))
        .await
        .map_err(|_| TaintError::Timeout)??;
    let mut done = Vec::new();
    for n in list.items.iter().filter(|n| fenced_by_us(n) && is_ready(n)) {
        let name = kube::ResourceExt::name_any(n);
        let mut current = n.clone();
        for attempt in 0..ATTEMPTS {
            let taints: Vec<Taint> = current
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default()
                .into_iter()
                .filter(|x| x.key != OUT_OF_SERVICE_TAINT)
                .collect();
            let patch = json!({"metadata": {"resourceVersion": current.metadata.resource_version},
                               "spec": {"taints": taints}});
            let (params, merge) = (PatchParams::default(), Patch::Merge(&patch));
            let call = nodes.patch(&name, &params, &merge);
            match tokio::time::timeout(CALL_TIMEOUT, call).await {
                Err(_) => return Err(TaintError::Timeout),
                Ok(Ok(_)) => {
                    done.push(name.clone());
                    break;
                }
                Ok(Err(e)) if crate::k8s::is_status(&e, 409) && attempt + 1 < ATTEMPTS => {
                    current = nodes.get(&name).await?;
                }
                Ok(Err(e)) => return Err(e.into()),
            }
        }
    }
    Ok(done)
}
