//! The policy's `status.transitionedPackages`: one entry per Transition, written under its own
//! field manager with an optimistic lock (the policy's resourceVersion), so two Transitions
//! finishing at once never overwrite each other's entry.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::Api;
use tracing::warn;
use transition_crds::cluster_policy::{
    ClusterPolicyStatus, PackageSelector, PackageTransitionCondition, TransitionedPackage,
};
use transition_crds::transition::TransitionStatus;
use transition_crds::{ClusterPolicy, Transition};

use crate::context::Context;

/// Field manager for the policy's transition history (the policy controller owns the rest).
pub const HISTORY_MANAGER: &str = "transition-operator-history";
/// Attempts when another writer changed the policy between our read and our write.
const ATTEMPTS: usize = 5;

/// Why the history could not be written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("failed to read ClusterPolicy {policy} for its transition history: {source}")]
    Read {
        policy: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to write the transition history of ClusterPolicy {policy}: {source}")]
    Write {
        policy: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "failed to write the transition history of ClusterPolicy {policy}: changed by others {attempts} times in a row"
    )]
    Contended { policy: String, attempts: usize },
}

/// Puts `entry` into `status`'s history, replacing the entry of the same Transition (pure).
pub fn upsert(status: &mut ClusterPolicyStatus, entry: TransitionedPackage) {
    match status
        .transitioned_packages
        .iter_mut()
        .find(|e| e.transition_ref == entry.transition_ref)
    {
        Some(existing) => *existing = entry,
        None => status.record_transition(entry),
    }
}

/// The history entry of `t` (pure).
pub fn entry(
    policy: &ClusterPolicy,
    t: &Transition,
    status: &TransitionStatus,
    condition: PackageTransitionCondition,
    message: &str,
) -> TransitionedPackage {
    let selectors: Vec<PackageSelector> = policy
        .spec
        .package_selectors
        .iter()
        .filter(|p| p.name == t.spec.package)
        .cloned()
        .collect();
    TransitionedPackage {
        package_selectors: selectors,
        last_transition_time: Some(Time(
            status
                .completed_at
                .as_ref()
                .map(|c| c.0)
                .unwrap_or_else(Timestamp::now),
        )),
        package_transition_condition: Some(condition),
        package_transition_message: Some(message.chars().take(1000).collect()),
        transition_ref: Some(t.name_any()),
    }
}

/// Records `t` in its policy's history; a failure is logged (the Transition's own status is the
/// record that counts).
pub async fn record(
    ctx: &Context,
    t: &Transition,
    status: &TransitionStatus,
    condition: PackageTransitionCondition,
    message: &str,
) {
    if let Err(e) = try_record(ctx, t, status, condition, message).await {
        warn!(error = %e, "failed to record the transition in the policy status");
    }
}

async fn try_record(
    ctx: &Context,
    t: &Transition,
    status: &TransitionStatus,
    condition: PackageTransitionCondition,
    message: &str,
) -> Result<(), HistoryError> {
    let ns = t
        .spec
        .policy_ref
        .namespace
        .clone()
        .unwrap_or_else(|| t.namespace().unwrap_or_default());
    let name = &t.spec.policy_ref.name;
    let id = format!("{ns}/{name}");
    let api: Api<ClusterPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    for _ in 0..ATTEMPTS {
        let Some(policy) = api
            .get_opt(name)
            .await
            .map_err(|source| HistoryError::Read {
                policy: id.clone(),
                source,
            })?
        else {
            return Ok(());
        };
        let mut ps = policy.status.clone().unwrap_or_default();
        upsert(&mut ps, entry(&policy, t, status, condition, message));
        let version = policy.resource_version().unwrap_or_default();
        let body = serde_json::json!({"transitionedPackages": ps.transitioned_packages});
        match crate::k8s::status::apply_if_unchanged(
            &ctx.client,
            &policy,
            &version,
            &body,
            HISTORY_MANAGER,
        )
        .await
        {
            Ok(_) => return Ok(()),
            Err(e) if crate::k8s::is_status(&e, 409) => continue,
            Err(source) => {
                return Err(HistoryError::Write { policy: id, source });
            }
        }
    }
    Err(HistoryError::Contended {
        policy: id,
        attempts: ATTEMPTS,
    })
}
