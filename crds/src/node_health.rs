//! `NodeHealth` (`transition.dcnlab.ssu.ac.kr/v1`): the operator's view of one source worker,
//! from its agent's heartbeats. Field names (including the snake_case ones) match the Go original.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Spec of a `NodeHealth`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "transition.dcnlab.ssu.ac.kr",
    version = "v1",
    kind = "NodeHealth",
    plural = "nodehealths",
    namespaced,
    status = "NodeHealthStatus",
    shortname = "nh",
    category = "transition-all",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.nodeName"}"#,
    printcolumn = r#"{"name":"Cluster","type":"string","jsonPath":".status.cluster_name"}"#,
    printcolumn = r#"{"name":"Condition","type":"string","jsonPath":".status.condition"}"#,
    printcolumn = r#"{"name":"Last-Seen","type":"date","jsonPath":".status.lastSeen"}"#,
    printcolumn = r#"{"name":"IP","type":"string","priority":1,"jsonPath":".status.ip"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct NodeHealthSpec {
    /// Name of the worker node (the Kubernetes Node in its cluster) this object describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
}

/// `Healthy` / `Unhealthy`, as in the Go original.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum NodeCondition {
    Healthy,
    Unhealthy,
}

/// Observed state of a node (from heartbeats).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct NodeHealthStatus {
    /// Standard conditions: `Ready`, true only while the node is healthy; its reason is the
    /// health: `Healthy`, `Suspect`, `AgentDown`, `NodeFailed` or `SourceUnreachable`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Vec<Condition>,
    /// The node's IP address (its `InternalIP`), as the agent reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Operating system, as the agent reports it, e.g. `linux`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// CPU architecture, as the agent reports it, e.g. `x86_64` or `amd64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// Number of CPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<i64>,
    /// CPU usage in percent, as text with one decimal, e.g. `12.5`.
    #[serde(default, rename = "cpuUsage", skip_serializing_if = "Option::is_none")]
    pub cpu_usage: Option<String>,
    /// Total memory, in bytes.
    #[serde(default, rename = "memTotal", skip_serializing_if = "Option::is_none")]
    pub mem_total: Option<u64>,
    /// Memory in use, in bytes.
    #[serde(default, rename = "memUsed", skip_serializing_if = "Option::is_none")]
    pub mem_used: Option<u64>,
    /// When the operator received the node's last heartbeat (RFC 3339).
    #[serde(default, rename = "lastSeen", skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<NodeCondition>,
    /// Name of the cluster the node belongs to (its `cluster.x-k8s.io/cluster-name`
    /// annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// Namespace of the cluster's Cluster API objects (the node's
    /// `cluster.x-k8s.io/cluster-namespace` annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_namespace: Option<String>,
    /// Name of the node's Cluster API Machine (its `cluster.x-k8s.io/machine` annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    /// Kind of the Machine's owner, e.g. `MachineSet` (the node's `cluster.x-k8s.io/owner-kind`
    /// annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_kind: Option<String>,
    /// Name of the Machine's owner (the node's `cluster.x-k8s.io/owner-name` annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_name: Option<String>,
    /// The node IP given to the kubelet (the node's `alpha.kubernetes.io/provided-node-ip`
    /// annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provided_node_ip: Option<String>,
    /// The node's CRI socket, e.g. `unix:///run/containerd/containerd.sock` (its
    /// `kubeadm.alpha.kubernetes.io/cri-socket` annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cri_socket: Option<String>,
    /// Version of the agent that sent the last heartbeat.
    #[serde(
        default,
        rename = "agentVersion",
        skip_serializing_if = "Option::is_none"
    )]
    pub agent_version: Option<String>,
}
