//! The policy's Checkpoints in the management cluster: apply the desired ones that differ, delete
//! the ones no longer wanted, and report each package's newest checkpoint image.

use std::sync::Arc;

use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use transition_crds::Checkpoint;
use transition_crds::cluster_policy::ClusterPolicyStatus;

use super::discover::{self, Discovered};
use crate::context::Context;
use crate::k8s::FIELD_MANAGER;

/// A Checkpoint the policy could not apply, list or delete.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("failed to list Checkpoints in {namespace}: {source}")]
    List {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to apply Checkpoint {namespace}/{name}: {source}")]
    Apply {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to delete Checkpoint {namespace}/{name}: {source}")]
    Delete {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The policy's existing Checkpoints (from the cache once it is filled).
pub async fn existing(
    ctx: &Context,
    namespace: &str,
    policy: &str,
) -> Result<Vec<Arc<Checkpoint>>, ApplyError> {
    let label = discover::policy_label(policy);
    ctx.checkpoints(namespace, &[(discover::LABEL_POLICY, label.as_str())])
        .await
        .map_err(|source| ApplyError::List {
            namespace: namespace.to_owned(),
            source,
        })
}

/// Applies the desired Checkpoints that differ from `existing` and deletes the unwanted ones;
/// returns how many are desired and every problem met (the others still go ahead).
pub async fn apply(
    ctx: &Context,
    namespace: &str,
    desired: &Discovered,
    existing: &[Arc<Checkpoint>],
) -> Vec<ApplyError> {
    let api: Api<Checkpoint> = Api::namespaced(ctx.client.clone(), namespace);
    let mut problems = Vec::new();
    let stale = desired
        .checkpoints
        .iter()
        .filter(|c| !existing.iter().any(|e| discover::up_to_date(e, c)));
    for c in stale {
        let name = c.name_any();
        let mut body = serde_json::to_value(c).unwrap_or_default();
        if let Some(o) = body.as_object_mut() {
            o.remove("status");
        }
        if let Err(source) = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
        {
            problems.push(ApplyError::Apply {
                namespace: namespace.to_owned(),
                name,
                source,
            });
        }
    }
    let owned: Vec<Checkpoint> = existing.iter().map(|c| (**c).clone()).collect();
    for name in discover::garbage(&owned, desired) {
        match api.delete(&name, &Default::default()).await {
            Ok(_) => tracing::info!(checkpoint = %name, "checkpoint no longer wanted: deleted"),
            Err(source) => problems.push(ApplyError::Delete {
                namespace: namespace.to_owned(),
                name,
                source,
            }),
        }
    }
    problems
}

/// Sets each package's newest checkpoint time and image from the policy's Checkpoints (pure).
pub fn report_newest(status: &mut ClusterPolicyStatus, checkpoints: &[Arc<Checkpoint>]) {
    for p in &mut status.packages {
        let newest = checkpoints
            .iter()
            .filter(|c| {
                c.spec
                    .cluster_ref
                    .as_ref()
                    .and_then(|r| r.package_name.as_deref())
                    == Some(p.name.as_str())
            })
            .filter_map(|c| c.status.as_ref())
            .filter(|s| s.last_checkpoint_image.is_some())
            .max_by_key(|s| s.last_checkpoint_time.as_ref().map(|t| t.0));
        if let Some(s) = newest {
            p.last_checkpoint_time = s.last_checkpoint_time.clone();
            p.last_checkpoint_image = s.last_checkpoint_image.clone();
        }
    }
}
