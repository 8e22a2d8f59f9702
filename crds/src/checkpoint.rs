//! `Checkpoint` (`transition.dcnlab.ssu.ac.kr/v1`): periodic CRIU checkpoints of one pod's
//! containers, turned into checkpoint images. Field-for-field compatible with the Go original.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Most entries kept in `status.history`.
pub const MAX_CHECKPOINT_HISTORY: usize = 10;

/// Spec of a `Checkpoint`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "transition.dcnlab.ssu.ac.kr",
    version = "v1",
    kind = "Checkpoint",
    plural = "checkpoints",
    namespaced,
    status = "CheckpointStatus",
    shortname = "ckpt",
    category = "transition-all",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Package","type":"string","jsonPath":".spec.clusterRef.packageName"}"#,
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.podRef.nodeName"}"#,
    printcolumn = r#"{"name":"Pod","type":"string","priority":1,"jsonPath":".spec.podRef.name"}"#,
    printcolumn = r#"{"name":"Schedule","type":"string","priority":1,"jsonPath":".spec.schedule"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Last Run","type":"date","jsonPath":".status.lastCheckpointTime"}"#,
    printcolumn = r#"{"name":"Image","type":"string","jsonPath":".status.lastCheckpointImage"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointSpec {
    /// Cron expression (5 fields, 6 with seconds, or `@hourly`-style macros), or an interval
    /// `@every <n>s` (a policy's `intervalSeconds`).
    #[schemars(regex(pattern = r"^(@every [1-9][0-9]*s|@[a-z]+|\S+(\s+\S+){4,5})$"))]
    pub schedule: String,
    /// The package's further `Schedule` entries (cron expressions or intervals): a run is due when any of
    /// `schedule` and these fires. Empty for a package with one schedule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_schedules: Vec<String>,
    /// The source cluster and package.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_ref: Option<ClusterRef>,
    /// The target cluster, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cluster_ref: Option<ClusterRef>,
    /// The pod to checkpoint.
    pub pod_ref: PodRef,
    /// The workload (Deployment/StatefulSet) owning the pod.
    pub resource_ref: ResourceRef,
    /// Where checkpoint images are pushed.
    pub registry: RegistryRef,
    /// Container name → original image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerImage>,
}

/// A cluster (and optionally its repository and the package concerned).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    /// Cluster name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// URL of the cluster's GitOps repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    /// Name of the package (in the repository) concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_name: Option<String>,
}

/// A pod and the containers to checkpoint.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodRef {
    /// Namespace of the pod. Defaults to the Checkpoint's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the pod.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The node the pod runs on (where the kubelet is asked to checkpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The containers of the pod to checkpoint.
    pub container_ref: ContainerRef,
}

/// The containers of a pod (the Go original stores whole `corev1.Container` objects; every field
/// is kept, only `name` is required).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRef {
    /// The containers to checkpoint, one archive each: `name` is required, `image` (the image
    /// it runs) optional; any other `corev1.Container` field is kept as is.
    #[schemars(schema_with = "crate::schema::named_open_object_list")]
    pub containers: Vec<ContainerEntry>,
}

/// One container: `name`, `image` and whatever else the writer put there.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct ContainerEntry {
    /// Container name, as in the pod spec.
    pub name: String,
    /// The image the container runs. Defaults to the matching entry of `spec.containers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// A Kubernetes object reference.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    /// API version of the object, e.g. `apps/v1`.
    #[schemars(length(min = 1))]
    pub api_version: String,
    /// Kind of the object, e.g. `Deployment` or `StatefulSet`.
    #[schemars(length(min = 1))]
    pub kind: String,
    /// Namespace of the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the object.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Annotations of the object that concern the operator (its policy and package
    /// annotations).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "crate::schema::string_map")]
    pub annotations: BTreeMap<String, String>,
}

/// Registry for checkpoint images.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RegistryRef {
    /// Registry URL, e.g. `http://registry:5000` or `docker.io`.
    #[schemars(length(min = 1))]
    pub url: String,
    /// Repository (namespace) inside the registry.
    #[schemars(length(min = 1))]
    pub repository: String,
    /// Secret with `username`/`password` (and optionally `registry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

/// A Secret reference.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Secret. Defaults to the Checkpoint's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A container's name and image.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerImage {
    /// Container name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The image the container runs (its original image).
    #[schemars(length(min = 1))]
    pub image: String,
}

/// Phase of the last checkpoint run.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CheckpointPhase {
    Pending,
    Running,
    Completed,
    Failed,
}

/// Observed state of a `Checkpoint`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointStatus {
    /// Phase of the last run: `Pending`, `Running`, `Completed` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<CheckpointPhase>,
    /// When the last checkpoint was completed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint_time: Option<Time>,
    /// Human-readable note on the last run (what was checkpointed) or on why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Immutable reference (`repo@sha256:…`) of the newest checkpoint image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint_image: Option<String>,
    /// The image the container of `lastCheckpointImage` ran before it was checkpointed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_image: Option<String>,
    /// Standard conditions: `Ready` (a checkpoint was taken), `SpecValid` (the spec, e.g. the
    /// schedule, is accepted) and `Degraded` (the last run failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Vec<Condition>,
    /// The last checkpoints (at most [`MAX_CHECKPOINT_HISTORY`], newest last).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<CheckpointRecord>,
    /// The cron slot of the last scheduled run (the next run is the next slot after it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scheduled_run: Option<Time>,
    /// The last `checkpoint-now` token handled (each token triggers once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_manual_token: Option<String>,
    /// The last `checkpoint-for` token handled (a Transition asking for a fresh checkpoint; kept
    /// apart from `checkpoint-now`, so a person's token and a Transition's never undo each other).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_token: Option<String>,
    /// The run in progress, persisted before each step so a restarted operator resumes it
    /// instead of starting another one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<CheckpointRun>,
}

/// A checkpoint run in progress.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointRun {
    /// `schedule:<slot>` or `manual:<token>`.
    pub trigger: String,
    /// When the run started (RFC 3339).
    pub started_at: Time,
    /// One entry per container whose kubelet checkpoint was taken.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub archives: Vec<RunArchive>,
}

/// A container's archive in a run, and its image once pushed.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunArchive {
    /// Name of the checkpointed container.
    pub container: String,
    /// Object key of the container's checkpoint archive in S3.
    pub archive_key: String,
    /// When the kubelet wrote the archive: the agent's upload is waited for from here (a
    /// restarted operator resumes the same wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_at: Option<Time>,
    /// Reference with digest (`repo@sha256:…`) of the checkpoint image, once pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Size of the archive, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
}

/// One completed checkpoint.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointRecord {
    /// When the checkpoint was taken (RFC 3339).
    pub time: Time,
    /// Name of the checkpointed container.
    pub container: String,
    /// Object key of the archive in S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_key: Option<String>,
    /// Reference with digest (`repo@sha256:…`) of the checkpoint image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Size of the archive, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    /// `schedule:<slot>` or `manual:<token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
}

impl CheckpointStatus {
    /// Appends `record`, keeping the newest `keep_per_container` records of each container (and
    /// at most [`MAX_CHECKPOINT_HISTORY`] in all); returns the dropped ones, oldest first, so
    /// their archives and images can be pruned.
    pub fn record(
        &mut self,
        record: CheckpointRecord,
        keep_per_container: usize,
    ) -> Vec<CheckpointRecord> {
        self.history.push(record);
        let keep = keep_per_container.max(1);
        let mut dropped = Vec::new();
        let mut kept = Vec::new();
        for (i, r) in self.history.iter().enumerate() {
            let newer = self.history[i + 1..]
                .iter()
                .filter(|n| n.container == r.container)
                .count();
            if newer >= keep {
                dropped.push(r.clone());
            } else {
                kept.push(r.clone());
            }
        }
        let excess = kept.len().saturating_sub(MAX_CHECKPOINT_HISTORY);
        dropped.extend(kept.drain(..excess));
        self.history = kept;
        dropped
    }

    /// The newest recorded image of `container`.
    pub fn latest_image(&self, container: &str) -> Option<&CheckpointRecord> {
        self.history
            .iter()
            .rev()
            .find(|r| r.container == container && r.image.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_go_style_checkpoint_with_full_container_objects_round_trips() {
        let yaml = r#"
schedule: "*/3 * * * *"
clusterRef: {name: cluster1-azure, repository: http://git/c1.git, packageName: video}
podRef:
  namespace: default
  name: video-7d9f
  containerRef:
    containers:
      - name: video
        image: vitu1/video:1.0
        ports: [{containerPort: 8080}]
resourceRef: {apiVersion: apps/v1, kind: Deployment, namespace: default, name: video}
registry: {url: docker.io, repository: vitu1, secretRef: {name: reg-credentials}}
"#;
        let spec: CheckpointSpec = serde_saphyr::from_str(yaml).unwrap();
        let c = &spec.pod_ref.container_ref.containers[0];
        assert_eq!(c.name, "video");
        assert!(
            c.other.contains_key("ports"),
            "unknown container fields are kept"
        );
        let back = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            back["podRef"]["containerRef"]["containers"][0]["ports"][0]["containerPort"],
            8080
        );
    }

    fn rec(container: &str, second: i64) -> CheckpointRecord {
        CheckpointRecord {
            time: Time(k8s_openapi::jiff::Timestamp::from_second(second).unwrap()),
            container: container.into(),
            archive_key: Some(format!("k-{container}-{second}")),
            image: Some(format!("r/{container}@sha256:{second}")),
            size_bytes: None,
            trigger: None,
        }
    }

    #[test]
    fn history_keeps_the_newest_records_per_container_and_returns_the_rest() {
        let mut status = CheckpointStatus::default();
        let mut dropped = Vec::new();
        for s in 1..=4 {
            dropped.extend(status.record(rec("a", s), 2));
            dropped.extend(status.record(rec("b", s), 2));
        }
        let kept: Vec<_> = status
            .history
            .iter()
            .map(|r| (r.container.as_str(), r.time.0.as_second()))
            .collect();
        assert_eq!(kept, vec![("a", 3), ("b", 3), ("a", 4), ("b", 4)]);
        let gone: Vec<_> = dropped
            .iter()
            .map(|r| (r.container.as_str(), r.time.0.as_second()))
            .collect();
        assert_eq!(gone, vec![("a", 1), ("b", 1), ("a", 2), ("b", 2)]);
        assert_eq!(
            status.latest_image("a").unwrap().image.as_deref(),
            Some("r/a@sha256:4")
        );
    }
}
