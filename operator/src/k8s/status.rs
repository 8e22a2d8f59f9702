//! Status writes: server-side apply of the `status` subresource under one field manager, with the
//! apiVersion and kind taken from the Rust type (so they can never disagree with the CRD).

use std::fmt::Debug;

use kube::api::{Api, Patch, PatchParams};
use kube::core::NamespaceResourceScope;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

/// Applies `status` to `object`'s status subresource as `manager`; returns the stored object.
pub async fn apply<K, S>(
    client: &kube::Client,
    object: &K,
    status: &S,
    manager: &str,
) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
    S: Serialize + ?Sized,
{
    apply_guarded(client, object, None, status, manager).await
}

/// Like [`apply`], but only succeeds if `object` is unchanged since `resource_version` was read
/// (an optimistic lock: a concurrent writer makes this fail with HTTP 409, never lose its update).
pub async fn apply_if_unchanged<K, S>(
    client: &kube::Client,
    object: &K,
    resource_version: &str,
    status: &S,
    manager: &str,
) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
    S: Serialize + ?Sized,
{
    apply_guarded(client, object, Some(resource_version), status, manager).await
}

async fn apply_guarded<K, S>(
    client: &kube::Client,
    object: &K,
    resource_version: Option<&str>,
    status: &S,
    manager: &str,
) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
    S: Serialize + ?Sized,
{
    let api: Api<K> = Api::namespaced(client.clone(), &object.namespace().unwrap_or_default());
    let mut patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    if let Some(v) = resource_version {
        patch["metadata"] = json!({"resourceVersion": v});
    }
    api.patch_status(
        &object.name_any(),
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&patch),
    )
    .await
}
