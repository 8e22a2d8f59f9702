//! The heartbeat an agent sends to the operator (`POST /heartbeat`, JSON).
//!
//! Accepts every field the Go agent sends (`node, ip, os, arch, cpus, cpu_usage_percent,
//! mem_total_bytes, mem_used_bytes, ts, cluster_name, cluster_namespace, machine, owner_kind,
//! owner_name, provided_node_ip, cri_socket`) plus ours (`agent_version`, `last_upload`,
//! `restore`); unknown fields are kept in [`Heartbeat::other`], never rejected.

use std::collections::BTreeMap;

pub use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Largest heartbeat body accepted, in bytes.
pub const MAX_HEARTBEAT_BYTES: usize = 64 * 1024;

/// One heartbeat.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct Heartbeat {
    /// Node name (required, non-empty).
    pub node: String,
    #[serde(default)]
    pub ip: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub arch: String,
    #[serde(default)]
    pub cpus: i64,
    #[serde(default)]
    pub cpu_usage_percent: f64,
    #[serde(default)]
    pub mem_total_bytes: u64,
    #[serde(default)]
    pub mem_used_bytes: u64,
    /// Send time: RFC 3339 string (Go `time.Time`) or Unix seconds/milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<WireTime>,
    #[serde(default)]
    pub cluster_name: String,
    #[serde(default)]
    pub cluster_namespace: String,
    #[serde(default)]
    pub machine: String,
    #[serde(default)]
    pub owner_kind: String,
    #[serde(default)]
    pub owner_name: String,
    #[serde(default)]
    pub provided_node_ip: String,
    #[serde(default)]
    pub cri_socket: String,
    /// Agent version (ours; absent from Go agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// The agent's most recent completed upload (ours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_upload: Option<LastUpload>,
    /// What this node can restore (ours): runtime, whether restore from checkpoint images is on,
    /// CRIU/runc/kernel versions. Agents on target clusters' workers send it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<RestoreCapability>,
    /// Whether this node reaches other clusters' API servers (ours): the vantage points that
    /// tell a management↔source partition from a whole-source outage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reach: Vec<Reach>,
    /// Fields this version does not know; kept so nothing is lost.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_json::Value>,
}

/// The agent's most recent completed upload.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct LastUpload {
    /// S3 object key.
    pub key: String,
    #[serde(default)]
    pub bytes: u64,
    /// Hex sha256 of the archive.
    #[serde(default)]
    pub sha256: String,
    /// RFC 3339 completion time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

/// What a node reports about restoring checkpoints (every field may be empty: unknown).
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct RestoreCapability {
    /// Container runtime: `containerd`, `cri-o`, `runc` (a kubelet driving runc directly), ….
    #[serde(default)]
    pub runtime: String,
    #[serde(default)]
    pub runtime_version: String,
    /// Whether the runtime creates containers from checkpoint images (`None`: not known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_enabled: Option<bool>,
    /// Where `restore_enabled` was read, e.g. `/etc/containerd/config.toml:
    /// enable_experimental_restore_via_create = false`.
    #[serde(default)]
    pub restore_source: String,
    #[serde(default)]
    pub criu_version: String,
    #[serde(default)]
    pub runc_version: String,
    /// Kernel release (`uname -r`).
    #[serde(default)]
    pub kernel: String,
}

/// Whether a cluster's API server answered this node's last check.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq)]
pub struct Reach {
    /// The cluster whose API was checked.
    pub cluster: String,
    pub reachable: bool,
    /// Why not, when unreachable.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// How long before this heartbeat the check ran, in ms.
    #[serde(default)]
    pub age_ms: u64,
}

/// Most `reach` entries a heartbeat may carry.
pub const MAX_REACH: usize = 64;

/// A timestamp as the Go agent (RFC 3339 string) or other senders (Unix number) encode it.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum WireTime {
    Rfc3339(String),
    Unix(f64),
}

impl WireTime {
    /// The instant; numbers above 10^11 are read as milliseconds, others as seconds.
    pub fn to_timestamp(&self) -> Result<Timestamp, HeartbeatError> {
        match self {
            WireTime::Rfc3339(s) => s.parse::<Timestamp>().map_err(|e| HeartbeatError::Field {
                field: "ts",
                reason: format!("not an RFC 3339 time ({e})"),
            }),
            WireTime::Unix(n) => {
                if !n.is_finite() || *n < 0.0 {
                    return Err(HeartbeatError::Field {
                        field: "ts",
                        reason: "not a finite, non-negative number".into(),
                    });
                }
                let millis = if *n > 1e11 { *n } else { *n * 1000.0 };
                // Finite and non-negative; `as` saturates, and jiff range-checks below.
                let ms = millis as i64;
                Timestamp::from_millisecond(ms).map_err(|e| HeartbeatError::Field {
                    field: "ts",
                    reason: format!("out of range ({e})"),
                })
            }
        }
    }
}

/// Why a heartbeat body was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HeartbeatError {
    #[error(
        "failed to accept heartbeat: body is {0} bytes, more than the {MAX_HEARTBEAT_BYTES} allowed"
    )]
    TooLarge(usize),
    #[error("failed to parse heartbeat JSON: {0}")]
    Json(String),
    #[error("failed to accept heartbeat: field `{field}` {reason}")]
    Field { field: &'static str, reason: String },
}

impl Heartbeat {
    /// Parses and validates a heartbeat body.
    pub fn from_json(body: &[u8]) -> Result<Heartbeat, HeartbeatError> {
        if body.len() > MAX_HEARTBEAT_BYTES {
            return Err(HeartbeatError::TooLarge(body.len()));
        }
        let hb: Heartbeat =
            serde_json::from_slice(body).map_err(|e| HeartbeatError::Json(e.to_string()))?;
        hb.validate()?;
        Ok(hb)
    }

    /// Checks the fields a receiver relies on.
    pub fn validate(&self) -> Result<(), HeartbeatError> {
        let field = |field, reason: &str| {
            Err(HeartbeatError::Field {
                field,
                reason: reason.to_owned(),
            })
        };
        if self.node.is_empty() {
            return field("node", "is empty");
        }
        if self.node.len() > 253
            || !self
                .node
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            return field("node", "is not a valid node name (1-253 of [A-Za-z0-9-._])");
        }
        if !self.cpu_usage_percent.is_finite() || self.cpu_usage_percent < 0.0 {
            return field("cpu_usage_percent", "is not a finite, non-negative number");
        }
        if self.cpus < 0 {
            return field("cpus", "is negative");
        }
        if let Some(ts) = &self.ts {
            ts.to_timestamp()?;
        }
        if self.reach.len() > MAX_REACH {
            return field("reach", "has more than 64 entries");
        }
        if self
            .reach
            .iter()
            .any(|r| r.cluster.is_empty() || r.cluster.len() > 253 || r.error.len() > 1024)
        {
            return field(
                "reach",
                "has an entry with an empty or over-long cluster or error",
            );
        }
        if let Some(r) = &self.restore {
            let fields = [
                ("restore.runtime", &r.runtime),
                ("restore.runtime_version", &r.runtime_version),
                ("restore.restore_source", &r.restore_source),
                ("restore.criu_version", &r.criu_version),
                ("restore.runc_version", &r.runc_version),
                ("restore.kernel", &r.kernel),
            ];
            for (name, value) in fields {
                if value.len() > 512 || value.chars().any(char::is_control) {
                    return field(
                        name,
                        "is longer than 512 characters or holds control characters",
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body shaped exactly like the Go agent's heartbeat.
    const GO_BODY: &str = r#"{"node":"worker-1","ip":"10.0.0.4","os":"linux","arch":"amd64","cpus":4,
        "cpu_usage_percent":12.5,"mem_total_bytes":8348520448,"mem_used_bytes":2147483648,
        "ts":"2025-09-08T14:20:56.123456789Z","cluster_name":"cluster1-azure","cluster_namespace":"default",
        "machine":"cluster1-md-0-abc","owner_kind":"MachineSet","owner_name":"cluster1-md-0",
        "provided_node_ip":"10.0.0.4","cri_socket":"unix:///run/containerd/containerd.sock"}"#;

    #[test]
    fn every_field_of_the_go_agent_is_read() {
        let hb = Heartbeat::from_json(GO_BODY.as_bytes()).unwrap();
        assert_eq!(hb.node, "worker-1");
        assert_eq!(hb.cpus, 4);
        assert_eq!(hb.mem_total_bytes, 8_348_520_448);
        assert_eq!(hb.cluster_name, "cluster1-azure");
        assert_eq!(hb.machine, "cluster1-md-0-abc");
        assert_eq!(hb.cri_socket, "unix:///run/containerd/containerd.sock");
        assert!(
            hb.other.is_empty(),
            "no Go field fell through to `other`: {:?}",
            hb.other
        );
        let ts = hb.ts.unwrap().to_timestamp().unwrap();
        assert_eq!(ts.as_second(), 1_757_341_256);
    }

    #[test]
    fn unknown_fields_are_kept_not_rejected() {
        let hb = Heartbeat::from_json(br#"{"node":"n1","gpu":"a100"}"#).unwrap();
        assert_eq!(hb.other.get("gpu"), Some(&serde_json::json!("a100")));
        let back = serde_json::to_value(&hb).unwrap();
        assert_eq!(back["gpu"], "a100");
    }

    #[test]
    fn unix_seconds_and_milliseconds_give_the_same_instant() {
        let s = WireTime::Unix(1_757_341_256.0).to_timestamp().unwrap();
        let ms = WireTime::Unix(1_757_341_256_000.0).to_timestamp().unwrap();
        assert_eq!(s, ms);
    }

    #[test]
    fn a_missing_or_odd_node_name_is_refused_with_the_field_named() {
        let err = Heartbeat::from_json(br#"{"ip":"1.2.3.4"}"#).unwrap_err();
        assert!(
            matches!(err, HeartbeatError::Json(ref m) if m.contains("node")),
            "{err}"
        );
        let err = Heartbeat::from_json(br#"{"node":"../etc"}"#).unwrap_err();
        assert!(err.to_string().contains("`node`"), "{err}");
        let err = Heartbeat::from_json(br#"{"node":""}"#).unwrap_err();
        assert!(err.to_string().contains("`node` is empty"), "{err}");
    }

    #[test]
    fn a_restore_capability_is_read_and_an_odd_one_refused_with_the_field_named() {
        let hb = Heartbeat::from_json(
            br#"{"node":"n","restore":{"runtime":"containerd","runtime_version":"2.2.0",
                "restore_enabled":false,"criu_version":"4.1.1","kernel":"6.1.0"}}"#,
        )
        .unwrap();
        let r = hb.restore.unwrap();
        assert_eq!(r.restore_enabled, Some(false));
        assert_eq!(r.runc_version, "", "missing: unknown");
        let err =
            Heartbeat::from_json(br#"{"node":"n","restore":{"kernel":"6.1\n0"}}"#).unwrap_err();
        assert!(err.to_string().contains("`restore.kernel`"), "{err}");
    }

    #[test]
    fn a_bad_timestamp_or_oversized_body_is_refused() {
        let err = Heartbeat::from_json(br#"{"node":"n","ts":"yesterday"}"#).unwrap_err();
        assert!(err.to_string().contains("`ts`"), "{err}");
        let big = vec![b' '; MAX_HEARTBEAT_BYTES + 1];
        assert_eq!(
            Heartbeat::from_json(&big),
            Err(HeartbeatError::TooLarge(MAX_HEARTBEAT_BYTES + 1))
        );
    }
}
