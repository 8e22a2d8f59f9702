//! `Transition` (`transition.dcnlab.ssu.ac.kr/v1alpha1`): one failover or planned move of one
//! package from a source cluster to a target cluster. Its status is the durable record of the
//! move, so an operator restart resumes from the recorded phase.

use std::collections::BTreeMap;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSON, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime};
use kube::CustomResource;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Spec of a `Transition`.
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "transition.dcnlab.ssu.ac.kr",
    version = "v1alpha1",
    kind = "Transition",
    plural = "transitions",
    namespaced,
    status = "TransitionStatus",
    shortname = "tr",
    category = "transition-all",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Policy","type":"string","jsonPath":".spec.policyRef.name"}"#,
    printcolumn = r#"{"name":"Package","type":"string","jsonPath":".spec.package"}"#,
    printcolumn = r#"{"name":"Source","type":"string","jsonPath":".spec.sourceCluster"}"#,
    printcolumn = r#"{"name":"Target","type":"string","jsonPath":".spec.targetCluster"}"#,
    printcolumn = r#"{"name":"Trigger","type":"string","priority":1,"jsonPath":".spec.trigger.type"}"#,
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.trigger.node"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Took","type":"string","jsonPath":".status.took"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"Message","type":"string","jsonPath":".status.message"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct TransitionSpec {
    /// The `ClusterPolicy` that protects the package.
    pub policy_ref: PolicyRef,
    /// Package name (an entry of the policy's `packageSelectors`).
    #[schemars(length(min = 1, max = 253))]
    pub package: String,
    /// The cluster the package leaves: the policy's source cluster for a failover, or the cluster
    /// it runs on now for a failback.
    #[schemars(length(min = 1, max = 253))]
    pub source_cluster: String,
    /// The cluster the package moves to: one of the policy's `preferClusters`, or the policy's
    /// source cluster for a failback.
    #[schemars(length(min = 1, max = 253))]
    pub target_cluster: String,
    /// Why the move happens.
    #[schemars(schema_with = "trigger_schema")]
    pub trigger: Trigger,
    /// Only show what the move would change: the Git diff is recorded in `status.dryRun` and the
    /// Transition ends in phase `DryRun`; nothing is fenced, committed or synced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

/// Reference to a `ClusterPolicy` (same namespace unless given).
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRef {
    /// Name of the `ClusterPolicy` protecting the package.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the `ClusterPolicy`; defaults to the Transition's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Kind of trigger.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum TriggerType {
    /// A source worker stopped sending heartbeats; `node` names it.
    NodeFault,
    /// A person asked for a failover now.
    Manual,
    /// A planned move (the source is healthy; it is fenced first).
    Planned,
}

/// Trigger of a transition: `NodeFault{node}` | `Manual` | `Planned`.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct Trigger {
    #[serde(rename = "type")]
    pub type_: TriggerType,
    /// The faulty node (required for `NodeFault`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Free-form reason shown in events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Schema for [`Trigger`] (kube's structural rewriter cannot keep a `oneOf` that narrows a
/// property, so [`crd`] adds the `NodeFault ⇒ node` rule afterwards).
fn trigger_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "required": ["type"],
        "properties": {
            "type": {
                "type": "string",
                "enum": ["NodeFault", "Manual", "Planned"],
                "description": concat!(
                    "NodeFault (a source worker died; node names it), ",
                    "Manual (a person asked for a failover now) ",
                    "or Planned (make-before-break move, also used for failback)"
                )
            },
            "node": {
                "type": "string",
                "minLength": 1,
                "description": "The failed node (required for NodeFault)"
            },
            "reason": { "type": "string", "description": "Free-form reason shown in events" }
        }
    })
}

/// The `Transition` CRD, with `spec.trigger.node` required exactly when `type` is `NodeFault`
/// (a `oneOf`, since API server 1.20 has no CEL rules).
pub fn crd() -> CustomResourceDefinition {
    let mut crd = <Transition as kube::CustomResourceExt>::crd();
    let narrow = |types: &[&str], required: Option<Vec<String>>| JSONSchemaProps {
        required,
        properties: Some(BTreeMap::from([(
            "type".to_owned(),
            JSONSchemaProps {
                enum_: Some(types.iter().map(|t| JSON(serde_json::json!(t))).collect()),
                ..Default::default()
            },
        )])),
        ..Default::default()
    };
    for version in &mut crd.spec.versions {
        let trigger = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|root| root.properties.as_mut())
            .and_then(|p| p.get_mut("spec"))
            .and_then(|spec| spec.properties.as_mut())
            .and_then(|p| p.get_mut("trigger"));
        if let Some(trigger) = trigger {
            trigger.one_of = Some(vec![
                narrow(&["NodeFault"], Some(vec!["node".to_owned()])),
                narrow(&["Manual", "Planned"], None),
            ]);
        }
    }
    crd
}

/// Phase of a transition. The happy path is Pending → Fencing → Checkpointing → Committing →
/// Syncing → Verifying → Completed; any phase may end in Failed.
#[derive(
    Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, JsonSchema,
)]
pub enum TransitionPhase {
    Pending,
    Fencing,
    Checkpointing,
    Committing,
    Syncing,
    Verifying,
    Completed,
    Failed,
    /// A dry run ended: `status.dryRun` holds the diff; nothing was changed.
    DryRun,
}

impl TransitionPhase {
    /// The next phase on the happy path (`None` for `Completed` and `Failed`).
    pub fn next(self) -> Option<TransitionPhase> {
        use TransitionPhase::*;
        match self {
            Pending => Some(Fencing),
            Fencing => Some(Checkpointing),
            Checkpointing => Some(Committing),
            Committing => Some(Syncing),
            Syncing => Some(Verifying),
            Verifying => Some(Completed),
            Completed | Failed | DryRun => None,
        }
    }

    /// `Completed`, `Failed` or `DryRun`.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TransitionPhase::Completed | TransitionPhase::Failed | TransitionPhase::DryRun
        )
    }
}

/// Observed state of a `Transition`.
#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransitionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<TransitionPhase>,
    /// `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Human-readable summary of the last step, or the failure reason when `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the transition entered its first phase (RFC 3339, microseconds, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<MicroTime>,
    /// When the transition reached a terminal phase (`Completed`, `Failed` or `DryRun`; RFC 3339,
    /// microseconds, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<MicroTime>,
    /// One entry per phase entered, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phase_timings: Vec<PhaseTiming>,
    /// `Ready`, `Progressing`, `Fenced`, `StatelessRedeploy`, `TargetCanRestore`,
    /// `SyncRequested`, `HomeUnfenced`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Vec<Condition>,
    /// Git commits written to GitOps repositories (repository, commit, branch, cluster folder).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commits: Vec<CommitRecord>,
    /// Checkpoint images deployed on the target (container, workload, image reference, digest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageRecord>,
    /// The package's workloads when the transition started (what Verifying waits for).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<crate::cluster_policy::ProtectedWorkload>,
    /// Wall-clock time from the start to the end (e.g. `12.1s`), set when the Transition ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took: Option<String>,
    /// What a dry run would change (`spec.dryRun`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dry_run: Vec<DryRunChange>,
}

/// The change a dry run would push to one repository.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DryRunChange {
    /// URL of the Git repository the change would be pushed to.
    pub repo: String,
    /// The cluster folder the change is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Unified diff against the repository's head (empty: nothing would change).
    pub diff: String,
    /// The diff was cut to [`MAX_DRY_RUN_DIFF`] bytes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// Largest diff kept per repository in `status.dryRun`, in bytes.
pub const MAX_DRY_RUN_DIFF: usize = 32 * 1024;

/// When a phase started and ended.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhaseTiming {
    pub phase: TransitionPhase,
    /// When the phase was entered (RFC 3339, microseconds, UTC).
    pub started_at: MicroTime,
    /// When the phase was left (RFC 3339, microseconds, UTC); absent while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<MicroTime>,
    /// Milliseconds spent in the phase; absent while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
}

/// A commit pushed to a repository.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitRecord {
    /// URL of the Git repository.
    pub repo: String,
    /// The commit SHA, or `<head> (already applied)` when the repository already held the change.
    pub sha: String,
    /// Branch the commit was pushed to (e.g. `main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The cluster folder the commit changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// A checkpoint image, by digest.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    /// The workload whose pod was checkpointed: the image is pinned to exactly this workload and
    /// container on the target (never to every user of the same base image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<ImageWorkload>,
    /// Name of the checkpointed container in the workload's pod template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Repository reference (`registry/repo:tag`).
    pub image: String,
    /// `sha256:…` manifest digest.
    #[schemars(regex(pattern = r"^sha256:[0-9a-f]{64}$"))]
    pub digest: String,
    /// The image the source ran (replaced by this one on the target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<String>,
}

/// A Deployment or StatefulSet, by kind, namespace and name.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
pub struct ImageWorkload {
    /// `Deployment` or `StatefulSet`.
    pub kind: String,
    /// Namespace of the workload.
    pub namespace: String,
    /// Name of the workload.
    pub name: String,
}

impl TransitionStatus {
    /// Enters `phase` at `now`: closes the open timing entry (recording its duration) and opens a
    /// new one. Entering the phase the status is already in does nothing.
    pub fn enter_phase(&mut self, phase: TransitionPhase, now: k8s_openapi::jiff::Timestamp) {
        if self.phase == Some(phase) {
            return;
        }
        if let Some(open) = self
            .phase_timings
            .last_mut()
            .filter(|t| t.finished_at.is_none())
        {
            let ms = now.as_millisecond() - open.started_at.0.as_millisecond();
            open.finished_at = Some(MicroTime(now));
            open.duration_ms = Some(ms.max(0));
        }
        if self.started_at.is_none() {
            self.started_at = Some(MicroTime(now));
        }
        self.phase = Some(phase);
        if phase.is_terminal() {
            self.completed_at = Some(MicroTime(now));
            if let Some(start) = &self.started_at {
                let ms = (now.as_millisecond() - start.0.as_millisecond()).max(0);
                self.took = Some(format!("{}.{}s", ms / 1000, (ms % 1000) / 100));
            }
        } else {
            self.phase_timings.push(PhaseTiming {
                phase,
                started_at: MicroTime(now),
                finished_at: None,
                duration_ms: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    #[test]
    fn the_happy_path_visits_every_phase_once_and_ends_completed() {
        let mut phase = TransitionPhase::Pending;
        let mut seen = vec![phase];
        while let Some(next) = phase.next() {
            seen.push(next);
            phase = next;
        }
        assert_eq!(seen.len(), 7);
        assert_eq!(phase, TransitionPhase::Completed);
        assert!(!seen.contains(&TransitionPhase::Failed));
    }

    #[test]
    fn entering_phases_records_durations_of_the_finished_ones() {
        let mut status = TransitionStatus::default();
        let t = |s| Timestamp::from_second(s).unwrap();
        status.enter_phase(TransitionPhase::Pending, t(10));
        status.enter_phase(TransitionPhase::Fencing, t(12));
        status.enter_phase(TransitionPhase::Fencing, t(13));
        status.enter_phase(TransitionPhase::Failed, t(15));
        assert_eq!(status.phase_timings.len(), 2);
        assert_eq!(status.phase_timings[0].duration_ms, Some(2000));
        assert_eq!(status.phase_timings[1].duration_ms, Some(3000));
        assert_eq!(status.completed_at, Some(MicroTime(t(15))));
        assert_eq!(status.started_at, Some(MicroTime(t(10))));
        assert_eq!(status.took.as_deref(), Some("5.0s"), "the Took column");
    }

    #[test]
    fn the_crd_requires_a_node_only_for_node_fault_triggers() {
        let crd = crd();
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        let one_of =
            &schema["openAPIV3Schema"]["properties"]["spec"]["properties"]["trigger"]["oneOf"];
        assert_eq!(one_of[0]["required"], serde_json::json!(["node"]));
        assert_eq!(
            one_of[0]["properties"]["type"]["enum"],
            serde_json::json!(["NodeFault"])
        );
        assert!(one_of[1].get("required").is_none());
    }

    #[test]
    fn a_node_fault_trigger_parses_from_yaml() {
        let yaml = "{policyRef: {name: p}, package: video, sourceCluster: a, targetCluster: b, trigger: {type: NodeFault, node: w1}}";
        let spec: TransitionSpec = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(spec.trigger.type_, TriggerType::NodeFault);
        assert_eq!(spec.trigger.node.as_deref(), Some("w1"));
    }
}
