//! Protected-workload discovery (pure): from the source cluster's annotated Deployments and
//! StatefulSets and their pods to the `Checkpoint` objects a ClusterPolicy wants — one per
//! pod + package, deterministic names, labelled and owned by the policy. Pods on VM runtimes
//! (Kata, Firecracker, gVisor: no CRIU) get no Checkpoint; their package is handled as stateless.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use transition_crds::checkpoint::{
    CheckpointSpec, ClusterRef, ContainerEntry, ContainerImage, ContainerRef, PodRef, RegistryRef,
    ResourceRef,
};
use transition_crds::cluster_policy::{
    BackupType, ClusterPolicySpec, PackageType, ProtectedWorkload, SelectMode,
};
use transition_crds::{Checkpoint, ClusterPolicy};

use crate::names::{dns_name, unique_name};

/// Opt-in annotation on a Deployment/StatefulSet (value `"true"`).
pub const ANNOTATION_POLICY: &str = "transition.dcnlab.ssu.ac.kr/cluster-policy";
/// The package a workload belongs to.
pub const ANNOTATION_PACKAGE: &str = "transition.dcnlab.ssu.ac.kr/packageName";
/// Labels on the Checkpoints a policy owns.
pub const LABEL_POLICY: &str = "transition.dcnlab.ssu.ac.kr/policy";
pub const LABEL_PACKAGE: &str = "transition.dcnlab.ssu.ac.kr/package";
pub const LABEL_NODE: &str = "transition.dcnlab.ssu.ac.kr/node";
pub const LABEL_CLUSTER: &str = "transition.dcnlab.ssu.ac.kr/cluster";
pub const LABEL_WORKLOAD: &str = "transition.dcnlab.ssu.ac.kr/workload";
/// Where a package found by `selectMode: All` (no selector) lives in the repository.
pub const ANNOTATION_PACKAGE_PATH: &str = "transition.dcnlab.ssu.ac.kr/packagePath";
/// Schedule of a Checkpoint whose package only has `Manual` backups: it runs on triggers only.
pub const MANUAL_SCHEDULE: &str = "@manual";

pub use super::workload::{Workload, is_vm_runtime};

/// Operator-wide settings discovery needs.
#[derive(Clone, Debug)]
pub struct Defaults {
    pub registry: RegistryRef,
}

/// What a policy wants in the management cluster.
#[derive(Clone, Debug, Default)]
pub struct Discovered {
    pub checkpoints: Vec<Checkpoint>,
    /// Package → its workloads (for the policy's status and for finding the packages on a node).
    pub workloads: BTreeMap<String, Vec<ProtectedWorkload>>,
    /// Live-state workloads whose restore would be wrong, with the reason (no Checkpoint).
    pub refused: Vec<String>,
    /// Packages found only by `selectMode: All` (no selector) → their folder in the repository.
    pub unlisted: BTreeMap<String, String>,
}

impl Discovered {
    /// Keeps only the packages `keep` says yes to.
    pub fn retain_packages(&mut self, keep: impl Fn(&str) -> bool) {
        self.checkpoints.retain(|c| {
            c.spec
                .cluster_ref
                .as_ref()
                .and_then(|r| r.package_name.as_deref())
                .is_none_or(&keep)
        });
        self.workloads.retain(|p, _| keep(p));
        self.unlisted.retain(|p, _| keep(p));
    }

    /// Adds what `other` found (another cluster's listing).
    pub fn merge(&mut self, other: Discovered) {
        self.checkpoints.extend(other.checkpoints);
        self.checkpoints
            .sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        self.workloads.extend(other.workloads);
        self.refused.extend(other.refused);
        self.unlisted.extend(other.unlisted);
    }
}

/// The name of the Checkpoint of `pod` for `package` (the Go original's convention).
pub fn checkpoint_name(policy: &str, pod: &str, package: &str) -> String {
    unique_name(&format!("checkpoint-{policy}-{pod}-{package}"), 253)
}

/// Builds the desired Checkpoints of `policy` from the source cluster's `workloads` and `pods`.
pub fn discover(
    policy: &ClusterPolicy,
    workloads: &[Workload],
    pods: &[Pod],
    defaults: &Defaults,
) -> Discovered {
    discover_in(
        policy,
        &policy.spec.cluster_selector.name,
        workloads,
        pods,
        defaults,
    )
}

/// [`discover`] from the listing of `cluster`: the policy's source, or a cluster a package moved
/// to (its Checkpoints then carry that cluster, point home as their target, and have the
/// cluster in their name so a StatefulSet's `x-0` on both sides never clash).
pub fn discover_in(
    policy: &ClusterPolicy,
    cluster: &str,
    workloads: &[Workload],
    pods: &[Pod],
    defaults: &Defaults,
) -> Discovered {
    let spec = &policy.spec;
    let mut out = Discovered::default();
    for w in workloads {
        let Some(package) = w.package() else {
            continue;
        };
        let selector = spec.package_selectors.iter().find(|p| p.name == package);
        let wanted = match selector {
            Some(p) => spec.select_mode == SelectMode::All || p.selected != Some(false),
            None => spec.select_mode == SelectMode::All,
        };
        if !wanted {
            continue;
        }
        if selector.is_none() {
            let path = w
                .annotations
                .get(ANNOTATION_PACKAGE_PATH)
                .map(|p| p.trim().trim_end_matches('/').to_owned())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| format!("catalog/{package}"));
            out.unlisted.entry(package.to_owned()).or_insert(path);
        }
        // In `All` mode an annotated package nobody listed is treated as live-state stateful,
        // checkpointed on manual triggers only (it has no schedule).
        let live = selector.is_none_or(|p| p.live_state_package);
        let stateful = selector.is_none_or(|p| p.package_type == PackageType::Stateful);
        // Every `Schedule` entry fires: the first is the Checkpoint's `schedule` (the Go
        // original's field), the others its `additionalSchedules`.
        let mut schedules: Vec<String> = selector
            .iter()
            .flat_map(|p| &p.backup_information)
            .filter(|b| b.backup_type == BackupType::Schedule)
            .filter_map(|b| b.schedule())
            .collect();
        if schedules.is_empty() {
            schedules.push(MANUAL_SCHEDULE.to_owned());
        }
        let vm = w.runtime_class.as_deref().filter(|c| is_vm_runtime(c));
        let my_pods: Vec<&Pod> = pods
            .iter()
            .filter(|p| w.matches(p) && p.metadata.deletion_timestamp.is_none())
            .collect();
        let mut nodes: Vec<String> = my_pods
            .iter()
            .filter_map(|p| p.spec.as_ref().and_then(|s| s.node_name.clone()))
            .collect();
        nodes.sort();
        nodes.dedup();
        let (checkpointable, reason) = match (live && stateful, vm) {
            (false, _) => (
                false,
                Some("not a live-state package: redeployed without state".to_owned()),
            ),
            (true, Some(class)) => (
                false,
                Some(format!(
                    "runtimeClass {class} runs pods in VMs, which CRIU cannot checkpoint: handled as stateless"
                )),
            ),
            (true, None) => match w
                .restore_refusal(selector.is_some_and(|p| p.storage_replicated == Some(true)))
            {
                Some(why) => {
                    out.refused.push(why.clone());
                    (false, Some(why))
                }
                None => (true, None),
            },
        };
        out.workloads
            .entry(package.to_owned())
            .or_default()
            .push(ProtectedWorkload {
                kind: w.kind.clone(),
                namespace: w.namespace.clone(),
                name: w.name.clone(),
                nodes,
                checkpointable,
                reason,
            });
        if !checkpointable {
            continue;
        }
        for pod in my_pods {
            if let Some(c) =
                build_checkpoint(policy, cluster, package, &schedules, w, pod, defaults)
            {
                out.checkpoints.push(c);
            }
        }
    }
    out.checkpoints
        .sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    out
}

fn build_checkpoint(
    policy: &ClusterPolicy,
    cluster: &str,
    package: &str,
    schedules: &[String],
    w: &Workload,
    pod: &Pod,
    defaults: &Defaults,
) -> Option<Checkpoint> {
    let spec = &policy.spec;
    let pod_name = pod.metadata.name.clone()?;
    let pod_spec = pod.spec.as_ref()?;
    let node = pod_spec.node_name.clone()?;
    let containers: Vec<ContainerImage> = pod_spec
        .containers
        .iter()
        .map(|c| ContainerImage {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
        })
        .filter(|c| !c.image.is_empty())
        .collect();
    let policy_name = policy.metadata.name.clone().unwrap_or_default();
    let home = &spec.cluster_selector;
    let at_home = cluster == home.name;
    // From home a failover goes to the chosen target; from elsewhere the way is home.
    let target = if at_home {
        super::validate::choose_target(spec).map(|t| ClusterRef {
            name: t.to_owned(),
            repository: target_repo(spec, t),
            package_name: Some(package.to_owned()),
        })
    } else {
        Some(ClusterRef {
            name: home.name.clone(),
            repository: Some(home.repo.clone()),
            package_name: Some(package.to_owned()),
        })
    };
    let repository = if at_home {
        Some(home.repo.clone())
    } else {
        target_repo(spec, cluster)
    };
    let labels = checkpoint_labels(&policy_name, package, &node, cluster, w);
    let name = if at_home {
        checkpoint_name(&policy_name, &pod_name, package)
    } else {
        checkpoint_name(&policy_name, &format!("{cluster}-{pod_name}"), package)
    };
    let mut c = Checkpoint::new(
        &name,
        CheckpointSpec {
            schedule: schedules.first().cloned().unwrap_or_default(),
            additional_schedules: schedules.iter().skip(1).cloned().collect(),
            cluster_ref: Some(ClusterRef {
                name: cluster.to_owned(),
                repository,
                package_name: Some(package.to_owned()),
            }),
            target_cluster_ref: target,
            pod_ref: pod_ref(w, pod_name.clone(), node, &containers),
            resource_ref: resource_ref(w),
            registry: defaults.registry.clone(),
            containers,
        },
    );
    let annotations = inherited_annotations(policy);
    c.metadata.namespace = policy.metadata.namespace.clone();
    c.metadata.labels = Some(labels);
    c.metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    c.metadata.owner_references = Some(vec![owner_ref(policy, &policy_name)]);
    Some(c)
}

/// The labels of a Checkpoint (what the controllers select on).
fn checkpoint_labels(
    policy_name: &str,
    package: &str,
    node: &str,
    cluster: &str,
    w: &Workload,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_POLICY.to_owned(), unique_name(policy_name, 63)),
        (LABEL_PACKAGE.to_owned(), unique_name(package, 63)),
        (LABEL_NODE.to_owned(), unique_name(node, 63)),
        (LABEL_CLUSTER.to_owned(), unique_name(cluster, 63)),
        (
            LABEL_WORKLOAD.to_owned(),
            unique_name(&format!("{}-{}", w.kind.to_ascii_lowercase(), w.name), 63),
        ),
    ])
}

/// Manual triggers and kubeconfig overrides on the policy reach its Checkpoints.
fn inherited_annotations(policy: &ClusterPolicy) -> BTreeMap<String, String> {
    policy
        .metadata
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| {
            k.as_str() == crate::checkpoint::schedule::CHECKPOINT_NOW
                || k.starts_with(crate::k8s::clusters::KUBECONFIG_ANNOTATION_PREFIX)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn owner_ref(policy: &ClusterPolicy, policy_name: &str) -> OwnerReference {
    OwnerReference {
        api_version: "transition.dcnlab.ssu.ac.kr/v1".into(),
        kind: "ClusterPolicy".into(),
        name: policy_name.to_owned(),
        uid: policy.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    }
}

fn resource_ref(w: &Workload) -> ResourceRef {
    let annotations = w
        .annotations
        .iter()
        .filter(|(k, _)| k.as_str() == ANNOTATION_POLICY || k.as_str() == ANNOTATION_PACKAGE)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    ResourceRef {
        api_version: "apps/v1".into(),
        kind: w.kind.clone(),
        namespace: Some(w.namespace.clone()),
        name: w.name.clone(),
        annotations,
    }
}

fn pod_ref(w: &Workload, name: String, node: String, containers: &[ContainerImage]) -> PodRef {
    PodRef {
        namespace: Some(w.namespace.clone()),
        name,
        node_name: Some(node),
        container_ref: ContainerRef {
            containers: containers
                .iter()
                .map(|c| ContainerEntry {
                    name: c.name.clone(),
                    image: Some(c.image.clone()),
                    other: BTreeMap::new(),
                })
                .collect(),
        },
    }
}

/// The repository of target cluster `name` (its `repo`, else the source's).
pub fn target_repo(spec: &ClusterPolicySpec, name: &str) -> Option<String> {
    spec.target_cluster_policy
        .as_ref()
        .and_then(|t| t.prefer_clusters.iter().find(|c| c.name == name))
        .and_then(|c| c.repo.clone())
        .or_else(|| Some(spec.cluster_selector.repo.clone()))
}

/// Whether `existing` already carries everything `desired` sets (same name and spec, and its
/// labels, annotations and owner present), so applying it again would change nothing.
pub fn up_to_date(existing: &Checkpoint, desired: &Checkpoint) -> bool {
    let contains = |have: &Option<BTreeMap<String, String>>,
                    want: &Option<BTreeMap<String, String>>| {
        want.iter()
            .flatten()
            .all(|(k, v)| have.as_ref().and_then(|h| h.get(k)) == Some(v))
    };
    existing.metadata.name == desired.metadata.name
        && existing.spec == desired.spec
        && contains(&existing.metadata.labels, &desired.metadata.labels)
        && contains(
            &existing.metadata.annotations,
            &desired.metadata.annotations,
        )
        && desired.metadata.owner_references.iter().flatten().all(|o| {
            existing
                .metadata
                .owner_references
                .iter()
                .flatten()
                .any(|e| e.uid == o.uid)
        })
}

/// The label value used for `policy` on its Checkpoints.
pub fn policy_label(policy: &str) -> String {
    unique_name(policy, 63)
}

/// The label value used for `node`.
pub fn node_label(node: &str) -> String {
    dns_name(node, 63)
}

/// Existing Checkpoints of the policy that should go: not desired any more, unless they still
/// hold the only checkpoint image of a workload that exists (a pod on a dead node vanishes, but
/// its last checkpoint is exactly what a failover needs).
pub fn garbage(existing: &[Checkpoint], desired: &Discovered) -> Vec<String> {
    let desired_names: Vec<&str> = desired
        .checkpoints
        .iter()
        .filter_map(|c| c.metadata.name.as_deref())
        .collect();
    let workload_exists = |c: &Checkpoint| {
        let r = &c.spec.resource_ref;
        desired.workloads.values().flatten().any(|w| {
            w.kind == r.kind
                && Some(w.namespace.as_str()) == r.namespace.as_deref()
                && w.name == r.name
        })
    };
    let has_image = |c: &Checkpoint| {
        c.status
            .as_ref()
            .is_some_and(|s| s.last_checkpoint_image.is_some())
    };
    existing
        .iter()
        .filter(|c| {
            c.metadata
                .name
                .as_deref()
                .is_some_and(|n| !desired_names.contains(&n))
        })
        .filter(|c| {
            if !workload_exists(c) {
                return true;
            }
            // Superseded only once a desired Checkpoint of the same workload has an image.
            let same_workload = |d: &Checkpoint| d.spec.resource_ref == c.spec.resource_ref;
            let replaced = existing.iter().any(|d| {
                d.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| desired_names.contains(&n))
                    && same_workload(d)
                    && has_image(d)
            });
            !has_image(c) || replaced
        })
        .filter_map(|c| c.metadata.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> ClusterPolicy {
        serde_saphyr::from_str(yaml).unwrap()
    }

    const POLICY: &str = r#"
apiVersion: transition.dcnlab.ssu.ac.kr/v1
kind: ClusterPolicy
metadata: {name: p1, namespace: ops, uid: u-1, annotations: {"transition.dcnlab.ssu.ac.kr/checkpoint-now": "t1", unrelated: x}}
spec:
  clusterSelector: {name: cluster1-azure, repo: "http://git/c1.git", repoType: git}
  selectMode: Specific
  packageSelectors:
    - name: counter
      packagePath: catalog/counter
      packageType: Stateful
      liveStatePackage: true
      backupInformation: [{name: b, backupType: Schedule, schedulePeriod: "*/3 * * * *"}]
    - name: web
      packagePath: catalog/web
      packageType: Stateless
  targetClusterPolicy:
    preferClusters: [{name: cluster2-aws, repoType: git, weight: 100, repo: "http://git/c2.git"}]
"#;

    fn deployment(name: &str, package: &str, runtime: Option<&str>) -> Workload {
        Workload {
            kind: "Deployment".into(),
            namespace: "default".into(),
            name: name.into(),
            annotations: BTreeMap::from([
                (ANNOTATION_POLICY.into(), "true".into()),
                (ANNOTATION_PACKAGE.into(), package.into()),
            ]),
            selector: BTreeMap::from([("app".into(), name.into())]),
            runtime_class: runtime.map(str::to_owned),
            replicas: 1,
            claims_volumes: false,
        }
    }

    /// What [`POLICY`] with the backup entry `entry` added to its package discovers of one
    /// `counter` Deployment and its pod.
    fn discover_with_backup_entry(entry: serde_json::Value) -> Discovered {
        let mut p = policy(POLICY);
        p.spec.package_selectors[0]
            .backup_information
            .push(serde_json::from_value(entry).unwrap());
        discover(
            &p,
            &[deployment("counter", "counter", None)],
            &[pod("counter-a", "counter", "worker-1")],
            &defaults(),
        )
    }

    #[test]
    fn each_schedule_entry_of_a_package_reaches_its_checkpoints() {
        let d = discover_with_backup_entry(serde_json::json!(
            {"name": "fast", "backupType": "Schedule", "schedulePeriod": "*/1 * * * *"}
        ));
        assert_eq!(d.checkpoints[0].spec.schedule, "*/3 * * * *");
        assert_eq!(
            d.checkpoints[0].spec.additional_schedules,
            vec!["*/1 * * * *"]
        );
    }

    #[test]
    fn an_interval_entry_reaches_its_checkpoints_as_an_every_schedule() {
        let d = discover_with_backup_entry(serde_json::json!(
            {"name": "sub-minute", "backupType": "Schedule", "intervalSeconds": 10}
        ));
        assert_eq!(d.checkpoints[0].spec.schedule, "*/3 * * * *");
        assert_eq!(
            d.checkpoints[0].spec.additional_schedules,
            vec!["@every 10s"]
        );
    }

    #[test]
    fn a_live_state_workload_with_several_replicas_or_unreplicated_volumes_is_refused_not_cloned() {
        let p = policy(POLICY);
        let mut two = deployment("counter", "counter", None);
        two.replicas = 2;
        let pods = [
            pod("counter-a", "counter", "worker-1"),
            pod("counter-b", "counter", "worker-2"),
        ];
        let d = discover(&p, &[two], &pods, &defaults());
        assert!(
            d.checkpoints.is_empty(),
            "no Checkpoint: its restore would clone one pod"
        );
        let w = &d.workloads["counter"][0];
        assert!(!w.checkpointable);
        assert!(
            w.reason.as_deref().unwrap().contains("2 replicas"),
            "{:?}",
            w.reason
        );
        assert_eq!(d.refused.len(), 1);
        assert!(
            d.refused[0].contains("Deployment default/counter"),
            "{}",
            d.refused[0]
        );

        let mut disk = deployment("counter", "counter", None);
        disk.claims_volumes = true;
        let d = discover(&p, &[disk.clone()], &pods[..1], &defaults());
        assert!(d.checkpoints.is_empty());
        assert!(
            d.refused[0].contains("PersistentVolumeClaims"),
            "{}",
            d.refused[0]
        );
        let mut opted = p.clone();
        opted.spec.package_selectors[0].storage_replicated = Some(true);
        let d = discover(&opted, &[disk], &pods[..1], &defaults());
        assert_eq!(
            d.checkpoints.len(),
            1,
            "replicated storage: the opt-in allows it"
        );
        assert!(d.refused.is_empty());
    }

    fn pod(name: &str, app: &str, node: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
            "spec": {"nodeName": node, "containers": [
                {"name": "counter", "image": "busybox:1.36"},
                {"name": "sidecar", "image": "nginx:1"}]}
        }))
        .unwrap()
    }

    fn defaults() -> Defaults {
        Defaults {
            registry: RegistryRef {
                url: "http://127.0.0.1:5000".into(),
                repository: "checkpoints".into(),
                secret_ref: None,
            },
        }
    }

    #[test]
    fn each_pod_of_an_annotated_live_state_workload_gets_one_owned_checkpoint() {
        let p = policy(POLICY);
        let found = discover(
            &p,
            &[
                deployment("counter", "counter", None),
                deployment("web", "web", None),
            ],
            &[
                pod("counter-a", "counter", "worker-1"),
                pod("counter-b", "counter", "worker-2"),
                pod("web-a", "web", "worker-1"),
                pod("other", "other", "worker-1"),
            ],
            &defaults(),
        );
        let names: Vec<_> = found
            .checkpoints
            .iter()
            .map(|c| c.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            vec![
                "checkpoint-p1-counter-a-counter",
                "checkpoint-p1-counter-b-counter"
            ]
        );
        let c = &found.checkpoints[0];
        assert_eq!(c.spec.schedule, "*/3 * * * *");
        assert_eq!(c.spec.pod_ref.node_name.as_deref(), Some("worker-1"));
        assert_eq!(c.spec.containers.len(), 2);
        assert_eq!(
            c.spec
                .target_cluster_ref
                .as_ref()
                .unwrap()
                .repository
                .as_deref(),
            Some("http://git/c2.git")
        );
        assert_eq!(c.metadata.namespace.as_deref(), Some("ops"));
        assert_eq!(c.metadata.owner_references.as_ref().unwrap()[0].uid, "u-1");
        let ann = c.metadata.annotations.as_ref().unwrap();
        assert_eq!(
            ann.get(crate::checkpoint::schedule::CHECKPOINT_NOW)
                .map(String::as_str),
            Some("t1")
        );
        assert!(!ann.contains_key("unrelated"));
        assert_eq!(c.metadata.labels.as_ref().unwrap()[LABEL_NODE], "worker-1");
        let web = &found.workloads["web"][0];
        assert!(
            !web.checkpointable,
            "stateless packages are not checkpointed"
        );
        assert_eq!(web.nodes, vec!["worker-1"]);
        assert_eq!(
            found.workloads["counter"][0].nodes,
            vec!["worker-1", "worker-2"]
        );
    }

    #[test]
    fn an_applied_checkpoint_is_up_to_date_until_its_spec_or_token_changes() {
        let p = policy(POLICY);
        let found = discover(
            &p,
            &[deployment("counter", "counter", None)],
            &[pod("counter-a", "counter", "w1")],
            &defaults(),
        );
        let desired = &found.checkpoints[0];
        let mut live = desired.clone();
        live.metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("extra".into(), "kept".into());
        assert!(up_to_date(&live, desired));
        live.metadata.annotations = None;
        assert!(
            !up_to_date(&live, desired),
            "a new checkpoint-now token must be applied"
        );
        let mut moved = desired.clone();
        moved.spec.pod_ref.node_name = Some("w2".into());
        assert!(!up_to_date(&moved, desired));
    }

    #[test]
    fn a_vm_runtime_workload_is_reported_as_stateless_with_the_reason() {
        let p = policy(POLICY);
        let found = discover(
            &p,
            &[deployment("counter", "counter", Some("kata-qemu"))],
            &[pod("counter-a", "counter", "worker-1")],
            &defaults(),
        );
        assert!(found.checkpoints.is_empty());
        let w = &found.workloads["counter"][0];
        assert!(!w.checkpointable);
        assert!(w.reason.as_deref().unwrap().contains("kata-qemu"), "{w:?}");
    }

    #[test]
    fn unlisted_packages_count_only_in_all_mode_and_then_run_on_manual_triggers() {
        let found = discover(
            &policy(POLICY),
            &[deployment("redis", "redis", None)],
            &[pod("redis-0", "redis", "w")],
            &defaults(),
        );
        assert!(found.checkpoints.is_empty() && found.workloads.is_empty());
        let all = POLICY.replace("selectMode: Specific", "selectMode: All");
        let found = discover(
            &policy(&all),
            &[deployment("redis", "redis", None)],
            &[pod("redis-0", "redis", "w")],
            &defaults(),
        );
        assert_eq!(found.checkpoints[0].spec.schedule, MANUAL_SCHEDULE);
        assert_eq!(
            found.unlisted.get("redis").map(String::as_str),
            Some("catalog/redis"),
            "an unlisted package is found with its folder (default catalog/<package>)"
        );
        let mut annotated = deployment("redis", "redis", None);
        annotated
            .annotations
            .insert(ANNOTATION_PACKAGE_PATH.into(), "apps/redis/".into());
        let found = discover(&policy(&all), &[annotated], &[], &defaults());
        assert_eq!(found.unlisted["redis"], "apps/redis");
    }

    #[test]
    fn a_workload_without_the_opt_in_annotation_is_ignored() {
        let mut w = deployment("counter", "counter", None);
        w.annotations
            .insert(ANNOTATION_POLICY.into(), "false".into());
        let found = discover(
            &policy(POLICY),
            &[w],
            &[pod("counter-a", "counter", "n")],
            &defaults(),
        );
        assert!(found.checkpoints.is_empty() && found.workloads.is_empty());
    }

    #[test]
    fn the_last_checkpoint_of_a_vanished_pod_is_kept_until_a_successor_has_an_image() {
        let p = policy(POLICY);
        let d = deployment("counter", "counter", None);
        let old = discover(
            &p,
            std::slice::from_ref(&d),
            &[pod("counter-a", "counter", "w1")],
            &defaults(),
        );
        let mut old_ckpt = old.checkpoints[0].clone();
        old_ckpt.status = Some(transition_crds::checkpoint::CheckpointStatus {
            last_checkpoint_image: Some("r@sha256:1".into()),
            ..Default::default()
        });
        let now = discover(
            &p,
            std::slice::from_ref(&d),
            &[pod("counter-b", "counter", "w2")],
            &defaults(),
        );
        let mut new_ckpt = now.checkpoints[0].clone();
        assert!(garbage(&[old_ckpt.clone(), new_ckpt.clone()], &now).is_empty());
        new_ckpt.status = old_ckpt.status.clone();
        assert_eq!(
            garbage(&[old_ckpt.clone(), new_ckpt], &now),
            vec!["checkpoint-p1-counter-a-counter"]
        );
        let gone = discover(&p, &[], &[], &defaults());
        assert_eq!(
            garbage(&[old_ckpt], &gone).len(),
            1,
            "workload deleted: collected"
        );
    }
}
