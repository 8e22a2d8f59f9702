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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<i64>,
    #[serde(default, rename = "cpuUsage", skip_serializing_if = "Option::is_none")]
    pub cpu_usage: Option<String>,
    #[serde(default, rename = "memTotal", skip_serializing_if = "Option::is_none")]
    pub mem_total: Option<u64>,
    #[serde(default, rename = "memUsed", skip_serializing_if = "Option::is_none")]
    pub mem_used: Option<u64>,
    #[serde(default, rename = "lastSeen", skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<NodeCondition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provided_node_ip: Option<String>,
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
