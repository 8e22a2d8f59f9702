//! From a confirmed node fault to Transitions: the packages of each automatic policy with a
//! live-state workload on the node, each moved to the best healthy target.
//!
//! One Transition per package *occurrence*: while a Transition of the package is under way, a
//! fault on another of its nodes (or the same fault reported again) adds none; once the package
//! has moved away, faults of its old home move nothing; after a failback (or a failed attempt) a
//! new fault is a new occurrence. Names are `<policy>-<package>-<n>` with `n` one above the
//! highest occurrence so far, so two handlers racing for the same occurrence create one object
//! (the second gets 409).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use tracing::{info, warn};
use transition_crds::cluster_policy::TransitionMode;
use transition_crds::transition::{
    PolicyRef, TransitionPhase, TransitionSpec, Trigger, TriggerType,
};
use transition_crds::{ClusterPolicy, Transition};

use crate::cluster_policy::discover::{LABEL_PACKAGE, LABEL_POLICY, policy_label};
use crate::cluster_policy::validate::choose_target_excluding;
use crate::context::Context;
use crate::detect::restore::verdict;
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
    #[error("failed to list the Transitions in namespace {namespace}: {source}")]
    ListTransitions {
        namespace: String,
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

/// Label on fault Transitions: the package occurrence they carry out (`1`, `2`, …).
pub const LABEL_OCCURRENCE: &str = "transition.dcnlab.ssu.ac.kr/occurrence";

/// The Transition a fault asks for (pure), for the package's `occurrence`-th move: the same
/// occurrence always gets the same name, so it is created once.
pub fn fault_transition(
    policy: &ClusterPolicy,
    package: &str,
    fault: &FaultEvent,
    unhealthy: &[String],
    occurrence: u32,
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
    let name = unique_name(&format!("{policy_name}-{package}-{occurrence}"), 253);
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
            dry_run: None,
        },
    );
    t.metadata.namespace = policy.namespace();
    t.metadata.labels = Some(BTreeMap::from([
        (LABEL_POLICY.to_owned(), policy_label(&policy_name)),
        (LABEL_PACKAGE.to_owned(), unique_name(package, 63)),
        (LABEL_OCCURRENCE.to_owned(), occurrence.to_string()),
    ]));
    Ok(t)
}

/// What a fault means for one package, given the Transitions that exist (pure).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Occurrence {
    /// A Transition of the package is under way: nothing new.
    InProgress { transition: String },
    /// The package's last move took it to `cluster`, away from the faulty source: nothing moves.
    MovedAway { transition: String, cluster: String },
    /// A new occurrence, to be created with this number.
    New(u32),
}

/// [`Occurrence`] of `package` of `policy` from `transitions` (any in the namespace).
pub fn occurrence(
    policy: &ClusterPolicy,
    package: &str,
    source: &str,
    transitions: &[Transition],
) -> Occurrence {
    let policy_name = policy.name_any();
    let mut mine: Vec<&Transition> = transitions
        .iter()
        .filter(|t| t.spec.policy_ref.name == policy_name && t.spec.package == package)
        .collect();
    if let Some(t) = mine.iter().find(|t| {
        !t.status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|p| p.is_terminal())
    }) {
        return Occurrence::InProgress {
            transition: t.name_any(),
        };
    }
    // The newest completed move says where the package lives now.
    mine.sort_by_key(|t| {
        (
            t.status
                .as_ref()
                .and_then(|s| s.completed_at.clone())
                .map(|c| c.0),
            t.metadata.creation_timestamp.clone().map(|c| c.0),
        )
    });
    let completed = mine
        .iter()
        .rev()
        .find(|t| t.status.as_ref().and_then(|s| s.phase) == Some(TransitionPhase::Completed));
    if let Some(t) = completed
        && t.spec.target_cluster != source
    {
        return Occurrence::MovedAway {
            transition: t.name_any(),
            cluster: t.spec.target_cluster.clone(),
        };
    }
    let highest = mine
        .iter()
        .filter_map(|t| t.labels().get(LABEL_OCCURRENCE)?.parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    Occurrence::New(highest.saturating_add(1))
}

/// The packages of `policy` that lose state with the faulty node (pure): for a live-state package,
/// those with a checkpointable workload on it (a node holding only its stateless parts moves
/// nothing); for a stateless package, any workload on it.
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
        .filter(|p| {
            p.workloads
                .iter()
                .any(|w| w.nodes.contains(&fault.node) && (w.checkpointable || !p.live_state))
        })
        .map(|p| p.name.clone())
        .collect()
}

/// Clusters none of whose known nodes is healthy (from the detector's view; a cluster the
/// management cluster cannot reach is not healthy as a target).
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

/// Turns confirmed faults into Transitions (one per package occurrence).
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
            if create_occurrence(ctx, policy, &package, fault, unhealthy).await? {
                created += 1;
            }
        }
    }
    Ok(created)
}

/// The preferred targets of `policy` that cannot restore what the faulty node checkpointed.
fn cannot_restore(ctx: &Context, policy: &ClusterPolicy, fault: &FaultEvent) -> Vec<String> {
    let nodes = [fault.node.clone()];
    policy
        .spec
        .target_cluster_policy
        .iter()
        .flat_map(|t| &t.prefer_clusters)
        .filter(|c| {
            let v = verdict(ctx.beats.as_deref(), &fault.cluster, &nodes, &c.name);
            if v.cannot() {
                info!(target = %c.name, reason = %v.message(), "target skipped: it cannot restore");
            }
            v.cannot()
        })
        .map(|c| c.name.clone())
        .collect()
}

/// Attempts at creating one occurrence when another handler takes the number first.
const CREATE_ATTEMPTS: usize = 3;

/// Creates the next occurrence of `package` unless one is under way or the package has moved
/// away; `true` when this call created it.
async fn create_occurrence(
    ctx: &Context,
    policy: &ClusterPolicy,
    package: &str,
    fault: &FaultEvent,
    unhealthy: &[String],
) -> Result<bool, FaultError> {
    let ns = policy.namespace().unwrap_or_default();
    let api: Api<Transition> = Api::namespaced(ctx.client.clone(), &ns);
    for _ in 0..CREATE_ATTEMPTS {
        let existing = api
            .list(&ListParams::default())
            .await
            .map_err(|source| FaultError::ListTransitions {
                namespace: ns.clone(),
                source,
            })?
            .items;
        let n = match occurrence(policy, package, &fault.cluster, &existing) {
            Occurrence::New(n) => n,
            Occurrence::InProgress { transition } => {
                info!(%transition, package, node = %fault.node, "a transition of the package is under way; no new one");
                return Ok(false);
            }
            Occurrence::MovedAway {
                transition,
                cluster,
            } => {
                info!(%transition, package, %cluster, node = %fault.node, "the package already moved away from the faulty cluster; nothing moves");
                return Ok(false);
            }
        };
        // Targets that cannot restore are skipped; with none left the Transition still goes to
        // the best healthy one, where Pending fails it with the reason before Git is touched.
        let mut excluded = unhealthy.to_vec();
        excluded.extend(cannot_restore(ctx, policy, fault));
        let t = match fault_transition(policy, package, fault, &excluded, n)
            .or_else(|_| fault_transition(policy, package, fault, unhealthy, n))
        {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "no transition");
                return Ok(false);
            }
        };
        match api.create(&PostParams::default(), &t).await {
            Ok(_) => {
                info!(transition = %t.name_any(), package, target = %t.spec.target_cluster, "transition created");
                return Ok(true);
            }
            // Another handler took this occurrence number: look again.
            Err(e) if crate::k8s::is_status(&e, 409) => {
                info!(transition = %t.name_any(), "transition already exists; looking again");
            }
            Err(source) => {
                return Err(FaultError::Create {
                    transition: format!("{ns}/{}", t.name_any()),
                    source,
                });
            }
        }
    }
    Ok(false)
}
