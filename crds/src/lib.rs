//! Kubernetes API types of `transition` and the wire types shared by the operator and the
//! checkpoint agent. This crate does no I/O.
//!
//! * [`ClusterPolicy`], [`Checkpoint`], [`NodeHealth`] — `transition.dcnlab.ssu.ac.kr/v1`, field-for-field
//!   compatible with the Go original so its manifests apply unchanged; our status adds conditions,
//!   `observedGeneration` and bounded history.
//! * [`Transition`] — `transition.dcnlab.ssu.ac.kr/v1alpha1`, one failover or planned move of one package.
//! * [`heartbeat`] — the agent → operator heartbeat payload (accepts every field of the Go agent).
//! * [`storage`] — the S3 object-key layout for checkpoint archives.

pub mod annotations;
pub mod checkpoint;
pub mod cluster_policy;
pub mod conditions;
pub mod heartbeat;
pub mod node_health;
pub mod schema;
pub mod storage;
pub mod transition;

pub use checkpoint::{Checkpoint, CheckpointSpec, CheckpointStatus};
pub use cluster_policy::{ClusterPolicy, ClusterPolicySpec, ClusterPolicyStatus};
pub use node_health::{NodeHealth, NodeHealthSpec, NodeHealthStatus};
pub use transition::{Transition, TransitionSpec, TransitionStatus};

/// API group of every kind defined here.
pub const GROUP: &str = "transition.dcnlab.ssu.ac.kr";

/// Annotation on a Deployment/StatefulSet that opts its pods into protection (value `"true"`).
pub const ANNOTATION_CLUSTER_POLICY: &str = "transition.dcnlab.ssu.ac.kr/cluster-policy";
/// Annotation on a Deployment/StatefulSet naming the package it belongs to.
pub const ANNOTATION_PACKAGE_NAME: &str = "transition.dcnlab.ssu.ac.kr/packageName";

/// Every CustomResourceDefinition of this crate, in install order, normalised for the API
/// servers we support (use this, not `CustomResourceExt::crd()`).
pub fn all_crds()
-> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use kube::CustomResourceExt;
    [
        ClusterPolicy::crd(),
        Checkpoint::crd(),
        NodeHealth::crd(),
        transition::crd(),
    ]
    .into_iter()
    .map(schema::normalize)
    .collect()
}
