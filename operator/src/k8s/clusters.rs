//! `WorkloadClusters`: the operator's one way to reach a workload cluster's API server.
//!
//! A cluster's kubeconfig is read from a Secret following the Cluster API convention
//! `<cluster>-kubeconfig` (key `value`) in the namespace of the object that names the cluster.
//! A ClusterPolicy may point a cluster elsewhere with the annotation
//! `kubeconfig.transition.dcnlab.ssu.ac.kr/<cluster>: <secret>[/<key>]`. When no Secret exists,
//! the operator's `--workload-kubeconfig-dir` (`<cluster>.kubeconfig` files) is the fallback.
//! Clients are cached per Secret `resourceVersion`, so a rotated kubeconfig is picked up.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// Annotation prefix for per-cluster kubeconfig Secret overrides.
pub const KUBECONFIG_ANNOTATION_PREFIX: &str = "kubeconfig.transition.dcnlab.ssu.ac.kr/";
/// Key of the kubeconfig in a Cluster API kubeconfig Secret.
pub const KUBECONFIG_KEY: &str = "value";

/// Why a workload cluster cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "failed to reach cluster {cluster}: Secret {namespace}/{secret} (key `{key}`) does not exist and no kubeconfig file is configured"
    )]
    MissingSecret {
        cluster: String,
        namespace: String,
        secret: String,
        key: String,
    },
    #[error("failed to reach cluster {cluster}: Secret {namespace}/{secret} has no key `{key}`")]
    MissingKey {
        cluster: String,
        namespace: String,
        secret: String,
        key: String,
    },
    #[error(
        "failed to reach cluster {cluster}: the kubeconfig in {source_name} is unusable: {reason}"
    )]
    BadKubeconfig {
        cluster: String,
        source_name: String,
        reason: String,
    },
    #[error("failed to read Secret {namespace}/{secret} for cluster {cluster}: {reason}")]
    ReadSecret {
        cluster: String,
        namespace: String,
        secret: String,
        reason: String,
    },
}

impl ClusterError {
    /// A user must create or fix a Secret (retrying soon will not help, a change will).
    pub fn needs_user(&self) -> bool {
        !matches!(self, ClusterError::ReadSecret { .. })
    }
}

/// Where a cluster's kubeconfig lives: `(secret name, key)`.
pub fn secret_for(cluster: &str, annotations: &BTreeMap<String, String>) -> (String, String) {
    let key = format!("{KUBECONFIG_ANNOTATION_PREFIX}{cluster}");
    match annotations.get(&key).map(|v| v.trim()) {
        Some(v) if !v.is_empty() => match v.split_once('/') {
            Some((name, key)) if !key.is_empty() => (name.to_owned(), key.to_owned()),
            _ => (
                v.trim_end_matches('/').to_owned(),
                KUBECONFIG_KEY.to_owned(),
            ),
        },
        _ => (format!("{cluster}-kubeconfig"), KUBECONFIG_KEY.to_owned()),
    }
}

/// Clients for workload clusters, cached.
pub struct WorkloadClusters {
    management: kube::Client,
    fallback_dir: Option<PathBuf>,
    /// (namespace, secret, resourceVersion or file) → client.
    cache: Mutex<HashMap<(String, String), (String, kube::Client)>>,
    /// Clients given up front, by cluster name (they win over Secrets; tests hand in stand-ins).
    fixed: HashMap<String, kube::Client>,
    /// Secrets read recently (kubeconfigs here; the controllers' registry and Git Secrets too).
    pub secrets: std::sync::Arc<crate::k8s::secrets::SecretCache>,
}

impl WorkloadClusters {
    pub fn new(management: kube::Client, fallback_dir: Option<PathBuf>) -> WorkloadClusters {
        WorkloadClusters {
            management,
            fallback_dir,
            cache: Mutex::new(HashMap::new()),
            fixed: HashMap::new(),
            secrets: Default::default(),
        }
    }

    /// Uses `client` for `cluster` whatever the Secrets say.
    pub fn with_client(mut self, cluster: &str, client: kube::Client) -> WorkloadClusters {
        self.fixed.insert(cluster.to_owned(), client);
        self
    }

    /// A client for `cluster`, from the Secret in `namespace` (see the module docs).
    pub async fn client(
        &self,
        cluster: &str,
        namespace: &str,
        annotations: &BTreeMap<String, String>,
    ) -> Result<kube::Client, ClusterError> {
        if let Some(client) = self.fixed.get(cluster) {
            return Ok(client.clone());
        }
        let (secret, key) = secret_for(cluster, annotations);
        let found = self
            .secrets
            .get_opt(&self.management, namespace, &secret, "kubeconfig")
            .await
            .map_err(|e| ClusterError::ReadSecret {
                cluster: cluster.to_owned(),
                namespace: namespace.to_owned(),
                secret: secret.clone(),
                reason: e.to_string(),
            })?;
        let cache_key = (namespace.to_owned(), secret.clone());
        let Some(found) = found else {
            return self.client_from_file(cluster).await.unwrap_or(Err(
                ClusterError::MissingSecret {
                    cluster: cluster.to_owned(),
                    namespace: namespace.to_owned(),
                    secret,
                    key,
                },
            ));
        };
        let version = found.metadata.resource_version.clone().unwrap_or_default();
        if let Some((v, c)) =
            crate::observe::locks::lock(&self.cache, "cluster clients").get(&cache_key)
            && *v == version
        {
            return Ok(c.clone());
        }
        let bytes = found
            .data
            .as_ref()
            .and_then(|d| d.get(&key))
            .map(|b| b.0.clone())
            .or_else(|| {
                found
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(&key))
                    .map(|s| s.clone().into_bytes())
            })
            .ok_or_else(|| ClusterError::MissingKey {
                cluster: cluster.to_owned(),
                namespace: namespace.to_owned(),
                secret: secret.clone(),
                key: key.clone(),
            })?;
        let source_name = format!("Secret {namespace}/{secret}");
        let client = client_from_yaml(cluster, &source_name, &bytes).await?;
        crate::observe::locks::lock(&self.cache, "cluster clients")
            .insert(cache_key, (version, client.clone()));
        Ok(client)
    }

    async fn client_from_file(&self, cluster: &str) -> Option<Result<kube::Client, ClusterError>> {
        let path = self
            .fallback_dir
            .as_ref()?
            .join(format!("{cluster}.kubeconfig"));
        let bytes = std::fs::read(&path).ok()?;
        Some(client_from_yaml(cluster, &path.display().to_string(), &bytes).await)
    }
}

/// A client from kubeconfig bytes.
pub async fn client_from_yaml(
    cluster: &str,
    source_name: &str,
    bytes: &[u8],
) -> Result<kube::Client, ClusterError> {
    let fail = |reason: String| ClusterError::BadKubeconfig {
        cluster: cluster.to_owned(),
        source_name: source_name.to_owned(),
        reason,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| fail("not UTF-8".into()))?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(text).map_err(|e| fail(e.to_string()))?;
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| fail(e.to_string()))?;
    config.connect_timeout = Some(Duration::from_secs(5));
    config.read_timeout = Some(Duration::from_secs(60));
    kube::Client::try_from(config).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_api_secret_name_is_the_default_and_an_annotation_overrides_it() {
        let none = BTreeMap::new();
        assert_eq!(
            secret_for("cluster1-azure", &none),
            ("cluster1-azure-kubeconfig".into(), "value".into())
        );
        let mut ann = BTreeMap::new();
        ann.insert(
            format!("{KUBECONFIG_ANNOTATION_PREFIX}cluster1-azure"),
            "c1-admin/kubeconfig".into(),
        );
        ann.insert(
            format!("{KUBECONFIG_ANNOTATION_PREFIX}cluster2-aws"),
            "c2".into(),
        );
        assert_eq!(
            secret_for("cluster1-azure", &ann),
            ("c1-admin".into(), "kubeconfig".into())
        );
        assert_eq!(
            secret_for("cluster2-aws", &ann),
            ("c2".into(), "value".into())
        );
    }

    #[tokio::test]
    async fn a_malformed_kubeconfig_is_named_in_the_error() {
        let Err(err) = client_from_yaml("c1", "Secret ns/c1-kubeconfig", b"clusters: [oops").await
        else {
            panic!("a malformed kubeconfig was accepted");
        };
        let text = err.to_string();
        assert!(
            text.contains("c1") && text.contains("Secret ns/c1-kubeconfig"),
            "{text}"
        );
        assert!(err.needs_user());
    }
}
