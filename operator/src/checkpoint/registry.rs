//! Where a Checkpoint's images go: the repository per workload and container, and the registry
//! client with the credentials of the Checkpoint's Secret.

use std::time::Duration;

use transition_crds::Checkpoint;
use transition_crds::checkpoint::RegistryRef;

use crate::image::registry::{Registry, RegistryConfig, RegistryError};
use crate::k8s::secrets::{self, SecretError};
use crate::names::dns_name;

/// Why no registry client could be made.
#[derive(Debug, thiserror::Error)]
pub enum RegistrySetupError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Client(#[from] RegistryError),
}

/// The image repository of one container: `<prefix>/<namespace>/<workload>-<container>`.
pub fn image_repository(registry: &RegistryRef, c: &Checkpoint, container: &str) -> String {
    let ns = c
        .spec
        .resource_ref
        .namespace
        .as_deref()
        .or(c.spec.pod_ref.namespace.as_deref())
        .unwrap_or("default");
    let mut parts: Vec<String> = registry
        .repository
        .split('/')
        .map(|s| dns_name(s, 63))
        .filter(|s| !s.is_empty())
        .collect();
    parts.push(dns_name(ns, 63));
    parts.push(dns_name(
        &format!("{}-{container}", c.spec.resource_ref.name),
        128,
    ));
    parts.join("/")
}

/// `(host, insecure)` from a registry URL (`http://` means plain HTTP).
pub fn registry_host(url: &str) -> (String, bool) {
    let url = url.trim().trim_end_matches('/');
    if let Some(rest) = url.strip_prefix("http://") {
        (rest.to_owned(), true)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (rest.to_owned(), false)
    } else {
        (url.to_owned(), false)
    }
}

/// The registry client for a Checkpoint (credentials from its Secret, if named).
pub async fn registry_for(
    secrets: &secrets::SecretCache,
    client: &kube::Client,
    namespace: &str,
    registry: &RegistryRef,
) -> Result<Registry, RegistrySetupError> {
    let (host, insecure) = registry_host(&registry.url);
    let credentials = match &registry.secret_ref {
        None => None,
        Some(s) => {
            let ns = s.namespace.as_deref().unwrap_or(namespace);
            let secret = secrets.get(client, ns, &s.name, "registry").await?;
            crate::image::credentials_from_secret(&secret, &host).map_err(SecretError::from)?
        }
    };
    Ok(Registry::new(&RegistryConfig {
        host,
        insecure,
        credentials,
        timeout: Duration::from_secs(60),
    })?)
}
