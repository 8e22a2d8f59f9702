//! A Deployment or StatefulSet as discovery sees it: its package, selector and runtime class.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::discover::{ANNOTATION_PACKAGE, ANNOTATION_POLICY};

/// A Deployment or StatefulSet, reduced to what discovery needs.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub annotations: BTreeMap<String, String>,
    pub selector: BTreeMap<String, String>,
    pub runtime_class: Option<String>,
    /// Desired replicas (1 when unset).
    pub replicas: i32,
    /// Whether its pods mount PersistentVolumeClaims (volumeClaimTemplates or claim volumes).
    pub claims_volumes: bool,
}

fn workload(
    kind: &str,
    meta: &ObjectMeta,
    selector: &LabelSelector,
    pod_spec: Option<&PodSpec>,
    replicas: Option<i32>,
    claim_templates: bool,
) -> Option<Workload> {
    let claim_volumes = pod_spec
        .and_then(|s| s.volumes.as_ref())
        .is_some_and(|v| v.iter().any(|v| v.persistent_volume_claim.is_some()));
    Some(Workload {
        replicas: replicas.unwrap_or(1),
        claims_volumes: claim_templates || claim_volumes,
        kind: kind.to_owned(),
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
        annotations: meta.annotations.clone().unwrap_or_default(),
        selector: selector.match_labels.clone().unwrap_or_default(),
        runtime_class: pod_spec.and_then(|s| s.runtime_class_name.clone()),
    })
}

impl Workload {
    pub fn from_deployment(d: &Deployment) -> Option<Workload> {
        let spec = d.spec.as_ref()?;
        workload(
            "Deployment",
            &d.metadata,
            &spec.selector,
            spec.template.spec.as_ref(),
            spec.replicas,
            false,
        )
    }

    pub fn from_statefulset(s: &StatefulSet) -> Option<Workload> {
        let spec = s.spec.as_ref()?;
        workload(
            "StatefulSet",
            &s.metadata,
            &spec.selector,
            spec.template.spec.as_ref(),
            spec.replicas,
            spec.volume_claim_templates
                .as_ref()
                .is_some_and(|t| !t.is_empty()),
        )
    }

    /// Why a live-state restore of this workload would be wrong (pure): several replicas would
    /// all get one pod's memory; volume claims would come up without their data.
    pub fn restore_refusal(&self, storage_replicated: bool) -> Option<String> {
        if self.replicas > 1 {
            return Some(format!(
                "{} {}/{} has {} replicas: a checkpoint holds one pod's memory, and restoring it \
                 into {} pods would clone it; scale it to 1 replica or mark the package \
                 liveStatePackage: false",
                self.kind, self.namespace, self.name, self.replicas, self.replicas
            ));
        }
        if self.claims_volumes && !storage_replicated {
            return Some(format!(
                "{} {}/{} mounts PersistentVolumeClaims: its memory restored on another cluster \
                 would not find its disk; set storageReplicated: true on the package when the \
                 volumes are replicated to the targets",
                self.kind, self.namespace, self.name
            ));
        }
        None
    }

    /// The package this workload opted into, if it did.
    pub fn package(&self) -> Option<&str> {
        let opted = self
            .annotations
            .get(ANNOTATION_POLICY)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
        let package = self.annotations.get(ANNOTATION_PACKAGE)?.trim();
        (opted && !package.is_empty()).then_some(package)
    }

    pub fn matches(&self, pod: &Pod) -> bool {
        if pod.metadata.namespace.as_deref() != Some(self.namespace.as_str())
            || self.selector.is_empty()
        {
            return false;
        }
        let labels = pod.metadata.labels.as_ref();
        self.selector
            .iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    }
}

/// Runtime classes that run pods in VMs (seed 003): CRIU cannot checkpoint their containers.
pub fn is_vm_runtime(class: &str) -> bool {
    let c = class.to_ascii_lowercase();
    [
        "kata",
        "firecracker",
        "fc-",
        "gvisor",
        "runsc",
        "cloud-hypervisor",
        "qemu",
    ]
    .iter()
    .any(|k| c.contains(k))
}
