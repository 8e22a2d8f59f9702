//! From a confirmed node fault to Transitions: the packages of each automatic policy with a
//! workload on the node, each moved to the best healthy target — exactly one Transition per
//! policy + package + node, whatever the number of fault events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, PostParams};
use tracing::{info, warn};
use transition_crds::cluster_policy::TransitionMode;
use transition_crds::transition::{PolicyRef, TransitionSpec, Trigger, TriggerType};
use transition_crds::{ClusterPolicy, Transition};

use crate::cluster_policy::discover::{LABEL_PACKAGE, LABEL_POLICY, policy_label};
use crate::cluster_policy::validate::choose_target_excluding;
use crate::context::Context;
use crate::detect::run::FaultEvent;
use crate::names::unique_name;
use crate::observe::locks::lock;

/// Why a fault did not become a Transition.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    #[error(
        "failed to choose a target for ClusterPolicy {policy}: no healthy target cluster (unhealthy: {unhealthy})"
    )]
    NoHealthyTarget { policy: String, unhealthy: String },
    #[error("failed to list ClusterPolicies: {source}")]
    ListPolicies {
        #[source]
        source: kube::Error,
    },
    #[error("failed to create Transition {transition}: {source}")]
    Create {
        transition: String,
        #[source]
        source: kube::Error,
    },
}

/// The Transition a fault asks for (pure): one per policy + package + node, so a repeated fault
/// event never creates a second one.
pub fn fault_transition(
    policy: &ClusterPolicy,
    package: &str,
    fault: &FaultEvent,
    unhealthy: &[String],
) -> Result<Transition, FaultError> {
    let policy_name = policy.name_any();
    let target = choose_target_excluding(&policy.spec, unhealthy).ok_or_else(|| {
        FaultError::NoHealthyTarget {
            policy: policy_name.clone(),
            unhealthy: if unhealthy.is_empty() {
                "none".into()
            } else {
                unhealthy.join(", ")
            },
        }
    })?;
    let name = unique_name(&format!("{policy_name}-{package}-{}", fault.node), 253);
    let mut t = Transition::new(
        &name,
        TransitionSpec {
            policy_ref: PolicyRef {
                name: policy_name.clone(),
                namespace: None,
            },
            package: package.to_owned(),
            source_cluster: fault.cluster.clone(),
            target_cluster: target.to_owned(),
            trigger: Trigger {
                type_: TriggerType::NodeFault,
                node: Some(fault.node.clone()),
                reason: Some(fault.reason.clone()),
            },
        },
    );
    t.metadata.namespace = policy.namespace();
    t.metadata.labels = Some(BTreeMap::from([
        (LABEL_POLICY.to_owned(), policy_label(&policy_name)),
        (LABEL_PACKAGE.to_owned(), unique_name(package, 63)),
    ]));
    Ok(t)
}

/// The packages of `policy` with a workload on the faulty node (pure).
pub fn packages_on_node(policy: &ClusterPolicy, fault: &FaultEvent) -> Vec<String> {
    if policy.spec.cluster_selector.name != fault.cluster
        || policy.spec.transition_mode.unwrap_or_default() != TransitionMode::Automatic
    {
        return Vec::new();
    }
    policy
        .status
        .iter()
        .flat_map(|s| &s.packages)
        .filter(|p| p.workloads.iter().any(|w| w.nodes.contains(&fault.node)))
        .map(|p| p.name.clone())
        .collect()
}

/// Clusters none of whose known nodes is healthy (from the detector's view).
pub fn unhealthy_clusters(beats: Option<&crate::detect::server::Beats>) -> Vec<String> {
    use crate::detect::tracker::Health;
    let Some(beats) = beats else {
        return Vec::new();
    };
    let tracker = lock(&beats.tracker, "detector tracker");
    let mut by_cluster: BTreeMap<String, bool> = BTreeMap::new();
    for (key, health, _, _) in tracker.snapshot(crate::detect::server::now_ms()) {
        let healthy = matches!(
            health,
            Health::Healthy | Health::Suspect | Health::AgentDown
        );
        *by_cluster.entry(key.cluster).or_insert(false) |= healthy;
    }
    by_cluster
        .into_iter()
        .filter(|(_, h)| !h)
        .map(|(c, _)| c)
        .collect()
}

/// How many faults are handled at once (each retries on its own, so one failing fault never
/// holds up the next).
const CONCURRENT_FAULTS: usize = 16;
/// Attempts per fault before it is given up (logged; the detector's NodeHealth keeps the record).
const FAULT_ATTEMPTS: u32 = 5;

/// Turns confirmed faults into Transitions (exactly one per policy + package + node).
pub async fn handle_faults(ctx: Arc<Context>, mut faults: tokio::sync::mpsc::Receiver<FaultEvent>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(CONCURRENT_FAULTS));
    while let Some(fault) = faults.recv().await {
        warn!(cluster = %fault.cluster, node = %fault.node, reason = %fault.reason, "node failure confirmed");
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            handle_fault(&ctx, &fault).await;
            drop(slot);
        });
    }
}

/// One fault, retried with bounded backoff in its own task.
async fn handle_fault(ctx: &Context, fault: &FaultEvent) {
    let unhealthy = unhealthy_clusters(ctx.beats.as_deref());
    let mut delay = Duration::from_secs(1);
    for attempt in 1..=FAULT_ATTEMPTS {
        match on_fault(ctx, fault, &unhealthy).await {
            Ok(n) => {
                info!(node = %fault.node, transitions = n, "fault handled");
                return;
            }
            Err(e) if attempt < FAULT_ATTEMPTS => {
                warn!(error = %e, retry_in = ?delay, "failed to handle a fault");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(e) => warn!(error = %e, node = %fault.node, "gave up handling a fault"),
        }
    }
}

/// Creates the Transitions for one fault; returns how many were created.
pub async fn on_fault(
    ctx: &Context,
    fault: &FaultEvent,
    unhealthy: &[String],
) -> Result<usize, FaultError> {
    let policies = ctx
        .all_policies()
        .await
        .map_err(|source| FaultError::ListPolicies { source })?;
    let mut created = 0;
    for policy in &policies {
        for package in packages_on_node(policy, fault) {
            let t = match fault_transition(policy, &package, fault, unhealthy) {
                Ok(t) => t,
                Err(e) => {
                    warn!(error = %e, "no transition");
                    continue;
                }
            };
            let ns = t.namespace().unwrap_or_default();
            let api: Api<Transition> = Api::namespaced(ctx.client.clone(), &ns);
            match api.create(&PostParams::default(), &t).await {
                Ok(_) => {
                    created += 1;
                    info!(transition = %t.name_any(), package = %package, target = %t.spec.target_cluster, "transition created");
                }
                Err(e) if crate::k8s::is_status(&e, 409) => {
                    info!(transition = %t.name_any(), "transition already exists (exactly once)");
                }
                Err(source) => {
                    return Err(FaultError::Create {
                        transition: format!("{ns}/{}", t.name_any()),
                        source,
                    });
                }
            }
        }
    }
    Ok(created)
}
