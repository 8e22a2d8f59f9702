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
    category = "transition",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Pod","type":"string","jsonPath":".spec.podRef.name"}"#,
    printcolumn = r#"{"name":"Schedule","type":"string","jsonPath":".spec.schedule"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Last","type":"date","jsonPath":".status.lastCheckpointTime"}"#,
    printcolumn = r#"{"name":"Image","type":"string","priority":1,"jsonPath":".status.lastCheckpointImage"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointSpec {
    /// Cron expression (5 fields, 6 with seconds, or `@hourly`-style macros).
    #[schemars(regex(pattern = r"^(@[a-z]+|\S+(\s+\S+){4,5})$"))]
    pub schedule: String,
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
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_name: Option<String>,
}

/// A pod and the containers to checkpoint.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    pub container_ref: ContainerRef,
}

/// The containers of a pod (the Go original stores whole `corev1.Container` objects; every field
/// is kept, only `name` is required).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRef {
    #[schemars(schema_with = "crate::schema::named_open_object_list")]
    pub containers: Vec<ContainerEntry>,
}

/// One container: `name`, `image` and whatever else the writer put there.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct ContainerEntry {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// A Kubernetes object reference.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    #[schemars(length(min = 1))]
    pub api_version: String,
    #[schemars(length(min = 1))]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
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
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A container's name and image.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContainerImage {
    #[schemars(length(min = 1))]
    pub name: String,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<CheckpointPhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Immutable reference (`repo@sha256:…`) of the newest checkpoint image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_image: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Vec<Condition>,
    /// The last checkpoints (at most [`MAX_CHECKPOINT_HISTORY`], newest last).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<CheckpointRecord>,
}

/// One completed checkpoint.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckpointRecord {
    pub time: Time,
    pub container: String,
    /// Object key of the archive in S3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_key: Option<String>,
    /// Image reference with digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl CheckpointStatus {
    /// Appends `record`, dropping the oldest beyond [`MAX_CHECKPOINT_HISTORY`].
    pub fn record(&mut self, record: CheckpointRecord) {
        self.history.push(record);
        let excess = self.history.len().saturating_sub(MAX_CHECKPOINT_HISTORY);
        self.history.drain(..excess);
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
}
