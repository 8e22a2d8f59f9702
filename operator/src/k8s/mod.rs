//! Kubernetes plumbing every controller shares: status writes by server-side apply (generic over
//! the resource type), Secret reads, workload-cluster clients, CRD installation and leader
//! election. No domain logic lives here.

pub mod clusters;
pub mod crd_install;
pub mod leader;
pub mod secrets;
pub mod status;

/// The field manager of every status the operator writes (one per status owner).
pub use crd_install::FIELD_MANAGER;

/// `namespace/name` of an object, for messages and logs.
pub fn id_of<K: kube::Resource>(object: &K) -> String {
    use kube::ResourceExt;
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// Whether a Kubernetes API error is an HTTP `code` answer (e.g. 404, 409).
pub fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == code)
}
