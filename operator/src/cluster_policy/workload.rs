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
}

fn workload(
    kind: &str,
    meta: &ObjectMeta,
    selector: &LabelSelector,
    pod_spec: Option<&PodSpec>,
) -> Option<Workload> {
    Some(Workload {
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
        )
    }

    pub fn from_statefulset(s: &StatefulSet) -> Option<Workload> {
        let spec = s.spec.as_ref()?;
        workload(
            "StatefulSet",
            &s.metadata,
            &spec.selector,
            spec.template.spec.as_ref(),
        )
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
