//! What a Transition does, derived from its spec and policy (pure): the phase order per trigger,
//! the checkpoint images to deploy, and the Git plan.

use std::collections::BTreeMap;
use std::path::PathBuf;

use k8s_openapi::jiff::Timestamp;
use transition_crds::cluster_policy::{ClusterPolicySpec, PackageSelector, SelectMode};
use transition_crds::transition::{
    ImageRecord, ImageWorkload, TransitionPhase, TransitionSpec, TriggerType,
};
use transition_crds::{Checkpoint, ClusterPolicy};

use crate::cluster_policy::validate::{is_safe_name, is_safe_relative_path};
use crate::gitops::writer::{FailoverPlan, ImageSwap, Strategy};

/// A Transition its policy does not allow.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("ClusterPolicy {policy} has no package {package:?}")]
    NoPackage { policy: String, package: String },
    #[error("sourceCluster {given:?} is not the policy's source cluster {source_cluster:?}")]
    WrongSource {
        given: String,
        source_cluster: String,
    },
    #[error("targetCluster is the source cluster")]
    TargetIsSource,
    #[error(
        "a failback (from a preferred target back to the policy's source cluster) must be trigger type Planned: a fresh checkpoint first, the old home fenced last"
    )]
    FailbackNotPlanned,
    #[error("targetCluster {target:?} is in the policy's avoidClusters")]
    AvoidedTarget { target: String },
    #[error(
        "{field} {value:?} cannot name a folder of the repository (1-253 characters, no `/`, `\\`, `..` or control characters)"
    )]
    UnsafeName { field: &'static str, value: String },
    #[error(
        "package {package:?} has packagePath {path:?}, not a relative path inside the repository"
    )]
    UnsafePath { package: String, path: String },
}

/// The phases a trigger goes through, in order.
pub fn phases(trigger: TriggerType) -> &'static [TransitionPhase] {
    use TransitionPhase::*;
    match trigger {
        TriggerType::Planned => &[
            Pending,
            Checkpointing,
            Committing,
            Syncing,
            Verifying,
            Fencing,
            Completed,
        ],
        TriggerType::NodeFault | TriggerType::Manual => {
            &[Pending, Fencing, Committing, Syncing, Verifying, Completed]
        }
    }
}

/// The phase after `current` for `trigger`.
pub fn next_phase(trigger: TriggerType, current: TransitionPhase) -> Option<TransitionPhase> {
    let order = phases(trigger);
    let i = order.iter().position(|p| *p == current)?;
    order.get(i + 1).copied()
}

/// The newest checkpoint image of each workload + container of `package` (pure). Keyed by the
/// workload the checkpointed pod belongs to, so two workloads (or a workload and a sidecar) that
/// share a base image each get their own pod's memory, never each other's.
pub fn images_for<'a>(
    package: &str,
    checkpoints: impl IntoIterator<Item = &'a Checkpoint>,
) -> Vec<ImageRecord> {
    let mut best: BTreeMap<(ImageWorkload, String), (Timestamp, ImageRecord)> = BTreeMap::new();
    for c in checkpoints {
        let ours = c
            .spec
            .cluster_ref
            .as_ref()
            .and_then(|r| r.package_name.as_deref());
        if ours != Some(package) {
            continue;
        }
        let Some(status) = &c.status else { continue };
        let r = &c.spec.resource_ref;
        let workload = ImageWorkload {
            kind: r.kind.clone(),
            namespace: r
                .namespace
                .clone()
                .or_else(|| c.spec.pod_ref.namespace.clone())
                .unwrap_or_else(|| "default".into()),
            name: r.name.clone(),
        };
        for container in &c.spec.containers {
            let Some(rec) = status.latest_image(&container.name) else {
                continue;
            };
            let Some((image, digest)) = rec.image.as_deref().and_then(|i| i.split_once('@')) else {
                continue;
            };
            let record = ImageRecord {
                workload: Some(workload.clone()),
                container: Some(container.name.clone()),
                image: image.to_owned(),
                digest: digest.to_owned(),
                original: Some(container.image.clone()),
            };
            let key = (workload.clone(), container.name.clone());
            let newer = best.get(&key).is_none_or(|(t, _)| rec.time.0 > *t);
            if newer {
                best.insert(key, (rec.time.0, record));
            }
        }
    }
    best.into_values().map(|(_, r)| r).collect()
}

/// What a transition writes, derived from its spec and policy (pure).
#[derive(Clone, Debug)]
pub struct Plan {
    pub selector: PackageSelector,
    pub source_repo: String,
    pub target_repo: String,
    pub failover: FailoverPlan,
}

/// Checks a transition against its policy and builds the Git plan (pure).
pub fn plan(
    spec: &TransitionSpec,
    policy_key: &str,
    policy: &ClusterPolicySpec,
    images: &[ImageRecord],
) -> Result<Plan, PlanError> {
    let selector = policy
        .package_selectors
        .iter()
        .find(|p| p.name == spec.package)
        .cloned()
        .ok_or_else(|| PlanError::NoPackage {
            policy: policy_key.to_owned(),
            package: spec.package.clone(),
        })?;
    plan_with(spec, policy_key, policy, selector, images)
}

/// [`plan`] for a policy as stored: in `selectMode: All` a package without a selector that
/// discovery found (its status entry names its folder) can be moved too.
pub fn plan_for(
    spec: &TransitionSpec,
    policy_key: &str,
    policy: &ClusterPolicy,
    images: &[ImageRecord],
) -> Result<Plan, PlanError> {
    let listed = policy
        .spec
        .package_selectors
        .iter()
        .any(|p| p.name == spec.package);
    let discovered = policy
        .status
        .iter()
        .flat_map(|s| &s.packages)
        .find(|p| p.name == spec.package);
    match discovered {
        Some(found) if !listed && policy.spec.select_mode == SelectMode::All => {
            let selector = PackageSelector {
                name: found.name.clone(),
                package_path: found
                    .package_path
                    .clone()
                    .unwrap_or_else(|| format!("catalog/{}", found.name)),
                package_type: found.package_type,
                selected: None,
                live_state_package: found.live_state,
                backup_information: Vec::new(),
                storage_replicated: None,
            };
            plan_with(spec, policy_key, &policy.spec, selector, images)
        }
        _ => plan(spec, policy_key, &policy.spec, images),
    }
}

fn plan_with(
    spec: &TransitionSpec,
    policy_key: &str,
    policy: &ClusterPolicySpec,
    selector: PackageSelector,
    images: &[ImageRecord],
) -> Result<Plan, PlanError> {
    // The names become folders and files of the checkout (`clusters/<target>`,
    // `transition-<package>.yaml`): none may lead out of it.
    for (field, value) in [
        ("package", &spec.package),
        ("sourceCluster", &spec.source_cluster),
        ("targetCluster", &spec.target_cluster),
    ] {
        if !is_safe_name(value) {
            return Err(PlanError::UnsafeName {
                field,
                value: value.clone(),
            });
        }
    }
    if !is_safe_relative_path(selector.package_path.trim_end_matches('/')) {
        return Err(PlanError::UnsafePath {
            package: selector.name,
            path: selector.package_path,
        });
    }
    let home = &policy.cluster_selector.name;
    let tcp = policy.target_cluster_policy.clone().unwrap_or_default();
    let failback = is_failback(spec, policy);
    if !failback && &spec.source_cluster != home {
        return Err(PlanError::WrongSource {
            given: spec.source_cluster.clone(),
            source_cluster: home.clone(),
        });
    }
    if spec.target_cluster == spec.source_cluster {
        return Err(PlanError::TargetIsSource);
    }
    if failback && spec.trigger.type_ != TriggerType::Planned {
        return Err(PlanError::FailbackNotPlanned);
    }
    if tcp
        .avoid_clusters
        .iter()
        .any(|a| a.name == spec.target_cluster)
    {
        return Err(PlanError::AvoidedTarget {
            target: spec.target_cluster.clone(),
        });
    }
    // A cluster's repository: the source's is the policy's, a preferred target's its own
    // `repo` (else the policy's).
    let repo_of = |cluster: &str| {
        tcp.prefer_clusters
            .iter()
            .find(|c| c.name == cluster && cluster != home)
            .and_then(|c| c.repo.clone())
            .unwrap_or_else(|| policy.cluster_selector.repo.clone())
    };
    let target_repo = repo_of(&spec.target_cluster);
    let source_repo = repo_of(&spec.source_cluster);
    let fault = match spec.trigger.type_ {
        TriggerType::NodeFault => format!(
            "NodeFailed{}",
            spec.trigger
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        TriggerType::Manual => "Manual".into(),
        TriggerType::Planned => "Planned".into(),
    };
    let failover = FailoverPlan {
        policy: policy_key.to_owned(),
        package: spec.package.clone(),
        package_path: PathBuf::from(selector.package_path.trim_end_matches('/')),
        source_cluster: spec.source_cluster.clone(),
        target_cluster: spec.target_cluster.clone(),
        source_dir: PathBuf::from("clusters").join(&spec.source_cluster),
        target_dir: PathBuf::from("clusters").join(&spec.target_cluster),
        images: images
            .iter()
            .filter_map(|i| {
                Some(ImageSwap {
                    original: i.original.clone()?,
                    reference: format!("{}@{}", i.image, i.digest),
                    target: i.workload.as_ref().zip(i.container.as_ref()).map(|(w, c)| {
                        (
                            crate::gitops::edit::WorkloadRef {
                                kind: w.kind.clone(),
                                name: w.name.clone(),
                                namespace: Some(w.namespace.clone()),
                            },
                            c.clone(),
                        )
                    }),
                })
            })
            .collect(),
        strategy: Strategy::WorkloadPatch,
        fence: spec.trigger.type_ != TriggerType::Planned,
        node: spec.trigger.node.clone().unwrap_or_else(|| "-".into()),
        fault,
        workloads: Vec::new(),
    };
    Ok(Plan {
        selector,
        source_repo,
        target_repo,
        failover,
    })
}

impl Plan {
    /// The plan with the cluster folders under `dir` (`--git-clusters-dir`) instead of
    /// `clusters/`, and with `per_package` (`--git-folder-per-package`) one folder per package
    /// inside each cluster's (`<dir>/<cluster>/<package>/`).
    pub fn in_clusters_dir(mut self, dir: &std::path::Path, per_package: bool) -> Plan {
        let f = &mut self.failover;
        let folder = |cluster: &str| {
            let d = dir.join(cluster);
            if per_package { d.join(&f.package) } else { d }
        };
        f.source_dir = folder(&f.source_cluster);
        f.target_dir = folder(&f.target_cluster);
        self
    }
}

/// A failback: the package goes home to the policy's source cluster from one of its preferred
/// targets (a planned, make-before-break move).
pub fn is_failback(spec: &TransitionSpec, policy: &ClusterPolicySpec) -> bool {
    spec.target_cluster == policy.cluster_selector.name
        && policy
            .target_cluster_policy
            .iter()
            .flat_map(|t| &t.prefer_clusters)
            .any(|c| c.name == spec.source_cluster)
}

#[cfg(test)]
mod properties;
