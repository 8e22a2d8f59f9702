//! Node metadata for heartbeats: read from the Node object (Cluster API annotations, InternalIP)
//! when the API server is reachable, else from flags.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;

use crate::config::NodeArgs;

/// What the heartbeat says about this node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeMeta {
    pub cluster_name: String,
    pub cluster_namespace: String,
    pub machine: String,
    pub owner_kind: String,
    pub owner_name: String,
    pub provided_node_ip: String,
    pub cri_socket: String,
    pub ip: String,
}

/// Reads the annotations and InternalIP of `node` (pure).
pub fn from_node(node: &Node) -> NodeMeta {
    let empty = BTreeMap::new();
    let ann = node.metadata.annotations.as_ref().unwrap_or(&empty);
    let get = |k: &str| ann.get(k).cloned().unwrap_or_default();
    let ip = node
        .status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address.clone())
        .unwrap_or_default();
    NodeMeta {
        cluster_name: get("cluster.x-k8s.io/cluster-name"),
        cluster_namespace: get("cluster.x-k8s.io/cluster-namespace"),
        machine: get("cluster.x-k8s.io/machine"),
        owner_kind: get("cluster.x-k8s.io/owner-kind"),
        owner_name: get("cluster.x-k8s.io/owner-name"),
        provided_node_ip: get("alpha.kubernetes.io/provided-node-ip"),
        cri_socket: get("kubeadm.alpha.kubernetes.io/cri-socket"),
        ip,
    }
}

/// Fills blanks of `from_api` with the flags.
pub fn merge(from_api: NodeMeta, args: &NodeArgs) -> NodeMeta {
    let or = |a: String, b: &str| if a.is_empty() { b.to_owned() } else { a };
    NodeMeta {
        cluster_name: or(from_api.cluster_name, &args.cluster_name),
        ip: or(from_api.ip, &args.node_ip),
        ..from_api
    }
}

/// Node metadata from the API server (bounded by a 5 s timeout), else from the flags alone.
pub async fn resolve(args: &NodeArgs) -> NodeMeta {
    if args.no_kube {
        return merge(NodeMeta::default(), args);
    }
    let fetched = tokio::time::timeout(Duration::from_secs(5), fetch(args)).await;
    match fetched {
        Ok(Ok(node)) => merge(from_node(&node), args),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, node = %args.node_name, "failed to read the Node object; using flags");
            merge(NodeMeta::default(), args)
        }
        Err(_) => {
            tracing::warn!(node = %args.node_name, "timed out reading the Node object; using flags");
            merge(NodeMeta::default(), args)
        }
    }
}

/// Why the Node object could not be read (the agent then uses its flags).
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("failed to load the kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    #[error("failed to build a client: {0}")]
    Client(#[from] kube::Error),
    #[error("failed to find the cluster's configuration: {0}")]
    Infer(#[from] kube::config::InferConfigError),
}

async fn fetch(args: &NodeArgs) -> Result<Node, FetchError> {
    let client = match &args.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)?;
            let cfg = kube::Config::from_custom_kubeconfig(
                kc,
                &kube::config::KubeConfigOptions::default(),
            )
            .await?;
            kube::Client::try_from(cfg)?
        }
        None => kube::Client::try_from(kube::Config::infer().await?)?,
    };
    Ok(kube::Api::<Node>::all(client).get(&args.node_name).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_api_annotations_and_the_internal_ip_are_read_and_flags_fill_the_rest() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "w1", "annotations": {
                "cluster.x-k8s.io/cluster-name": "cluster1-azure",
                "cluster.x-k8s.io/machine": "cluster1-md-0-x",
                "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///run/containerd/containerd.sock"}},
            "status": {"addresses": [{"type": "Hostname", "address": "w1"}, {"type": "InternalIP", "address": "10.1.0.4"}]}
        }))
        .unwrap();
        let meta = from_node(&node);
        assert_eq!(meta.cluster_name, "cluster1-azure");
        assert_eq!(meta.machine, "cluster1-md-0-x");
        assert_eq!(meta.ip, "10.1.0.4");
        let args = NodeArgs {
            node_name: "w1".into(),
            cluster_name: "from-flag".into(),
            node_ip: "1.2.3.4".into(),
            kubeconfig: None,
            no_kube: true,
        };
        let merged = merge(meta, &args);
        assert_eq!(merged.cluster_name, "cluster1-azure", "the API wins");
        let flags_only = merge(NodeMeta::default(), &args);
        assert_eq!(
            (flags_only.cluster_name.as_str(), flags_only.ip.as_str()),
            ("from-flag", "1.2.3.4")
        );
    }
}
