//! `ClusterPolicy` (`transition.dcnlab.ssu.ac.kr/v1`): which packages of which source cluster are
//! protected, how they are checkpointed, and where they may move. Field-for-field compatible with
//! the Go original, so its manifests (seed 004, including `selectMode`) apply unchanged.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most entries kept in `status.transitionedPackages` (the Go original grew it forever).
pub const MAX_TRANSITION_HISTORY: usize = 20;

/// Spec of a `ClusterPolicy`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "transition.dcnlab.ssu.ac.kr",
    version = "v1",
    kind = "ClusterPolicy",
    plural = "clusterpolicies",
    namespaced,
    status = "ClusterPolicyStatus",
    shortname = "tpol",
    category = "transition-all",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Source","type":"string","jsonPath":".spec.clusterSelector.name"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".status.targetCluster"}"#,
    printcolumn = r#"{"name":"Transition","type":"string","jsonPath":".spec.transitionMode"}"#,
    printcolumn = r#"{"name":"Select","type":"string","priority":1,"jsonPath":".spec.selectMode"}"#,
    printcolumn = r#"{"name":"Packages","type":"integer","jsonPath":".status.protectedPackages"}"#,
    printcolumn = r#"{"name":"Checkpointed","type":"date","jsonPath":".status.lastCheckpointTime"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPolicySpec {
    /// The source cluster whose packages are protected.
    pub cluster_selector: ClusterSelector,
    /// `Specific`: only the packages listed in `packageSelectors`; `All`: every annotated package of
    /// the source cluster (listed selectors still set per-package options). Default `All`, as in the
    /// Go original.
    #[serde(default)]
    pub select_mode: SelectMode,
    /// `Automatic`: fail over on a detected fault; `Manual`: only on a `Transition` created by a
    /// person; `None`: never move (checkpoints are still taken). Default `Automatic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "Automatic"))]
    pub transition_mode: Option<TransitionMode>,
    /// The packages to protect.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub package_selectors: Vec<PackageSelector>,
    /// What happens to the source copy after a transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_retention_policy: Option<PackageRetentionPolicy>,
    /// Where packages may go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cluster_policy: Option<TargetClusterPolicy>,
    /// Fault-detection thresholds for the source cluster's nodes (defaults in docs/detection.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_detection: Option<FaultDetection>,
}

/// Fault-detection thresholds; every field is optional and falls back to its default.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FaultDetection {
    /// The agents' heartbeat interval in ms (default 1000): seeds the detector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 100, max = 60000))]
    pub heartbeat_interval_ms: Option<u32>,
    /// Phi-accrual suspicion threshold (default 8; higher = slower, fewer suspicions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub phi_threshold: Option<u32>,
    /// Heartbeat gaps up to this long (ms) are never suspicious (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 600000))]
    pub acceptable_pause_ms: Option<u32>,
    /// A kubelet Lease renewed within this many seconds proves the node alive (default 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 5, max = 600))]
    pub lease_fresh_seconds: Option<u32>,
    /// The cluster's API unreachable this long corroborates a failure (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 5, max = 3600))]
    pub unreachable_grace_seconds: Option<u32>,
    /// Good heartbeats in a row that end a suspicion (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub recovery_beats: Option<u32>,
    /// Whether a whole-source outage fails over (default true): the source's API unreachable
    /// from the management cluster and from every vantage point (agents on other clusters with
    /// `--watch-api`) for `unreachableGraceSeconds`. With `false`, such nodes are held in
    /// `SourceUnreachable` and nothing moves. A partition (a vantage point still reaches the
    /// API) never fails over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_outage_failover: Option<bool>,
    /// Whether a suspected node's kubelet is also asked through the API server's node proxy
    /// (default true; needs `get` on `nodes/proxy`): a kubelet unreachable in consecutive probes
    /// for 1 s, while the cluster's API and another node's kubelet answer, confirms a failure in
    /// about 3 s instead of waiting for the Lease to go stale. `false`: the Lease rule alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet_probe: Option<bool>,
}

/// The source cluster and the Git repository holding its packages.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSelector {
    /// Cluster name (the Cluster API cluster name where CAPI is used).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// URL of the repository where the cluster's workloads are defined.
    #[schemars(length(min = 1))]
    pub repo: String,
    /// Kind of repository: `git` (default; the operator commits there). `helm` is refused: a
    /// failover is a Git commit.
    #[serde(default)]
    pub repo_type: RepoType,
    /// Infrastructure provider (e.g. `azure`, `aws`). Informational only: the operator never reads
    /// it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

/// Package selection mode.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum SelectMode {
    /// Only the packages listed in `packageSelectors`.
    Specific,
    /// Every annotated package of the source cluster.
    #[default]
    All,
}

/// When a policy may move packages: `Automatic` (default) fails over on a detected fault;
/// `Manual` only on a `Transition` a person creates; `None` never (checkpoints are still taken).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum TransitionMode {
    /// Fail over automatically on a detected fault.
    #[default]
    Automatic,
    /// Move only when a person asks (a `Transition` with a `Manual` or `Planned` trigger).
    Manual,
    /// Never move.
    None,
}

/// Kind of package repository.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RepoType {
    /// A Git repository (the only kind the operator writes to).
    #[default]
    Git,
    /// A Helm chart repository (accepted for compatibility; not written to).
    Helm,
}

/// Stateful packages keep data; stateless ones are simply redeployed.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PackageType {
    Stateful,
    Stateless,
}

/// One protected package.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackageSelector {
    /// Package name: matches the workloads' `transition.dcnlab.ssu.ac.kr/packageName` annotation.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Folder of the package inside the source repository.
    #[schemars(length(min = 1))]
    pub package_path: String,
    /// `Stateful` or `Stateless`.
    pub package_type: PackageType,
    /// In `Specific` mode, `false` excludes the package without deleting its entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected: Option<bool>,
    /// Checkpoint the package's containers with CRIU (in-memory state survives the move).
    #[serde(default)]
    pub live_state_package: bool,
    /// Checkpoint schedules (`Schedule`) and on-demand entries (`Manual`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub backup_information: Vec<BackupInformation>,
    /// The package's volumes (PVCs) are replicated to the target clusters by other means, so a
    /// memory restore there finds its disk. Without it, a live-state workload with volume claims
    /// is refused (a memory restore without its disk is not a restore). Default `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_replicated: Option<bool>,
}

/// How a package's checkpoints are taken: `Schedule` (on `schedulePeriod`) or `Manual` (only
/// when asked, e.g. `kubectl transition checkpoint`).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum BackupType {
    /// On `schedulePeriod`.
    Schedule,
    /// Only when triggered.
    Manual,
}

/// One checkpoint schedule or manual backup entry.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupInformation {
    /// Schedule name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// `Schedule` or `Manual`.
    pub backup_type: BackupType,
    /// Cron expression (5 fields, 6 with seconds, or `@hourly`-style macros); required for
    /// `Schedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(@[a-z]+|\S+(\s+\S+){4,5})$"))]
    pub schedule_period: Option<String>,
    /// Instead of `schedulePeriod`: checkpoint every this many seconds (1–86400), for
    /// protection below cron's one-minute resolution. Slots are multiples of the interval since
    /// the Unix epoch; a run that outlasts the interval is never overlapped and missed slots are
    /// not replayed (the next one runs). Set one of the two, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub interval_seconds: Option<u32>,
}

impl BackupInformation {
    /// The entry's schedule as the Checkpoint carries it: the cron expression, or
    /// `@every <n>s` for `intervalSeconds`.
    pub fn schedule(&self) -> Option<String> {
        match self.interval_seconds {
            Some(n) => Some(format!("@every {n}s")),
            None => self.schedule_period.clone(),
        }
    }
}

/// Rules for the source copy after a transition.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackageRetentionPolicy {
    /// Keep the package deployed (scaled to zero) on the source.
    #[serde(default)]
    pub retain_on_source: bool,
    /// Remove the package from the source repository once the target is healthy.
    #[serde(default)]
    pub delete_after_transition: bool,
}

/// Where packages may go.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetClusterPolicy {
    /// Candidate targets; the highest `weight` wins, ties go to the alphabetically first name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub prefer_clusters: Vec<ClusterPreference>,
    /// Clusters never chosen, even when preferred.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub avoid_clusters: Vec<ClusterPreference>,
}

/// A target cluster candidate.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPreference {
    /// Cluster name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Kind of the cluster's repository: `git` (default) or `helm` (refused on a preferred target:
    /// the operator can only commit to Git).
    #[serde(default)]
    pub repo_type: RepoType,
    /// URL of the cluster's GitOps repository, when it differs from the operator's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// Preference, 0–100; higher is preferred.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub weight: i32,
}

/// Outcome of a package transition (Go-compatible history entry).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PackageTransitionCondition {
    InProgress,
    Completed,
    Failed,
}

/// Observed state of a `ClusterPolicy`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterPolicyStatus {
    /// `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `SpecValid`, `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Vec<Condition>,
    /// The source cluster, as resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_cluster: Option<String>,
    /// The target a failover would choose now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cluster: Option<String>,
    /// Each preferred target and whether it can restore the checkpoints, from its agents' reports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<TargetStatus>,
    /// The oldest of the live-state packages' newest checkpoints: a failover now loses the state
    /// since then (`kubectl get` shows its age; absent while a package has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint_time: Option<Time>,
    /// Number of packages this policy protects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_packages: Option<i32>,
    /// Per-package view.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<PackageStatus>,
    /// The last transitions (at most [`MAX_TRANSITION_HISTORY`], newest last).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitioned_packages: Vec<TransitionedPackage>,
}

/// A preferred target cluster and whether it can restore the checkpoints.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetStatus {
    /// Cluster name (an entry of `spec.targetClusterPolicy.preferClusters`).
    pub name: String,
    /// `Capable`, `Unknown` (no agent report says it cannot, but not all is known) or
    /// `CannotRestore` (skipped by target choice).
    pub restore: String,
    /// Why the cluster cannot restore, or what is not yet known (empty when `Capable`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Per-package status.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PackageStatus {
    /// Package name (its selector's `name`, or the workloads' `packageName` annotation).
    pub name: String,
    pub package_type: PackageType,
    /// Whether the package is checkpointed with CRIU (its selector's `liveStatePackage`).
    pub live_state: bool,
    /// Folder of the package in the repository: its selector's `packagePath`, or for a package
    /// found by `selectMode: All` without a selector, its workloads' annotation
    /// `transition.dcnlab.ssu.ac.kr/packagePath` (default `catalog/<package>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_path: Option<String>,
    /// Schedules and when each next fires.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleStatus>,
    /// When the package's newest checkpoint was taken (RFC 3339, UTC); absent while it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint_time: Option<Time>,
    /// Immutable reference (`repo@sha256:…`) of the package's newest checkpoint image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint_image: Option<String>,
    /// The annotated workloads found in the source cluster (or where the package runs now).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<ProtectedWorkload>,
    /// Where the package runs now when a Transition moved it away from the source: its
    /// Checkpoints are taken there, and a Planned Transition back to the source fails it back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_cluster: Option<String>,
    /// Where a failover of this package would go now (none while it runs away from the source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cluster: Option<String>,
}

/// A workload of a protected package, as discovered in the source cluster.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProtectedWorkload {
    /// `Deployment` or `StatefulSet`.
    pub kind: String,
    /// Namespace of the workload.
    pub namespace: String,
    /// Name of the workload.
    pub name: String,
    /// Nodes its pods run on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    /// Whether its containers can be CRIU-checkpointed (false on VM runtimes such as Kata or
    /// Firecracker: the package is then handled as stateless).
    pub checkpointable: bool,
    /// Why the workload is not checkpointable (e.g. not a live-state package, a VM runtime class,
    /// unreplicated volumes); absent when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A schedule and its next firing.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    /// Schedule name (its `backupInformation` entry's `name`).
    pub name: String,
    pub backup_type: BackupType,
    /// The entry's cron expression, or `@every <n>s` for `intervalSeconds`; absent for `Manual`
    /// entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_period: Option<String>,
    /// When the schedule next fires (RFC 3339, UTC); absent for `Manual` entries or an invalid
    /// cron expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<Time>,
}

/// One transition in the policy's history (same shape as the Go original's entries).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransitionedPackage {
    /// The policy's selector of the package that moved, as it was at the time (empty for a
    /// package found by `selectMode: All` without a selector).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub package_selectors: Vec<PackageSelector>,
    /// When the transition ended (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_transition_condition: Option<PackageTransitionCondition>,
    /// The Transition's final message: a summary, or the failure reason (at most 1000 chars).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_transition_message: Option<String>,
    /// Name of the `Transition` object that carried it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transition_ref: Option<String>,
}

impl ClusterPolicyStatus {
    /// Appends `entry`, dropping the oldest entries beyond [`MAX_TRANSITION_HISTORY`].
    pub fn record_transition(&mut self, entry: TransitionedPackage) {
        self.transitioned_packages.push(entry);
        let excess = self
            .transitioned_packages
            .len()
            .saturating_sub(MAX_TRANSITION_HISTORY);
        self.transitioned_packages.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The manifest from seed 004's guide, "ClusterPolicy configuration", byte for byte.
    pub(crate) const SEED_POLICY: &str =
        include_str!("../../catalog/policies/seed/clusterpolicy-sample.yaml");

    #[test]
    fn the_seed_manifest_parses_with_every_field() {
        let policy: ClusterPolicy = serde_saphyr::from_str(SEED_POLICY).unwrap();
        let spec = &policy.spec;
        assert_eq!(spec.cluster_selector.name, "cluster1-azure");
        assert_eq!(spec.cluster_selector.repo_type, RepoType::Git);
        assert_eq!(spec.select_mode, SelectMode::Specific);
        let pkg = &spec.package_selectors[0];
        assert_eq!(
            (pkg.name.as_str(), pkg.package_path.as_str()),
            ("video", "video")
        );
        assert_eq!(pkg.package_type, PackageType::Stateful);
        assert!(pkg.live_state_package);
        assert_eq!(pkg.backup_information[0].backup_type, BackupType::Schedule);
        assert_eq!(
            pkg.backup_information[0].schedule_period.as_deref(),
            Some("*/3 * * * *")
        );
        let target = spec.target_cluster_policy.as_ref().unwrap();
        assert_eq!(target.prefer_clusters[0].name, "cluster2-aws");
        assert_eq!(target.prefer_clusters[0].weight, 100);
    }

    #[test]
    fn a_minimal_policy_gets_the_go_defaults() {
        let yaml = "clusterSelector: {name: c1, repo: http://git/c1.git}\n";
        let spec: ClusterPolicySpec = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(spec.select_mode, SelectMode::All);
        assert_eq!(spec.cluster_selector.repo_type, RepoType::Git);
        assert!(spec.package_selectors.is_empty());
    }

    #[test]
    fn transition_history_keeps_only_the_newest_entries() {
        let mut status = ClusterPolicyStatus::default();
        for i in 0..(MAX_TRANSITION_HISTORY + 5) {
            status.record_transition(TransitionedPackage {
                package_selectors: vec![],
                last_transition_time: None,
                package_transition_condition: Some(PackageTransitionCondition::Completed),
                package_transition_message: Some(format!("t{i}")),
                transition_ref: None,
            });
        }
        assert_eq!(status.transitioned_packages.len(), MAX_TRANSITION_HISTORY);
        assert_eq!(
            status.transitioned_packages[0]
                .package_transition_message
                .as_deref(),
            Some("t5")
        );
        let last = status.transitioned_packages.last().unwrap();
        assert_eq!(
            last.package_transition_message.as_deref(),
            Some(format!("t{}", MAX_TRANSITION_HISTORY + 4).as_str())
        );
    }
}
