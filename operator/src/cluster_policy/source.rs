//! Reads of the source cluster: its annotated Deployments/StatefulSets and the pods of their
//! namespaces, each list bounded in time.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::discover::Workload;

/// How long one list call may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(15);

/// Why the source cluster could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Cluster(#[from] crate::k8s::clusters::ClusterError),
    #[error("failed to list workloads in cluster {cluster}: list {kind}: {source}")]
    List {
        cluster: String,
        kind: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "failed to list workloads in cluster {cluster}: list {kind}: no answer within {seconds}s"
    )]
    Timeout {
        cluster: String,
        kind: String,
        seconds: u64,
    },
}

async fn timed_list<K>(cluster: &str, api: Api<K>) -> Result<Vec<K>, SourceError>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&Default::default()).into_owned();
    match tokio::time::timeout(LIST_TIMEOUT, api.list(&ListParams::default())).await {
        Ok(Ok(list)) => Ok(list.items),
        Ok(Err(source)) => Err(SourceError::List {
            cluster: cluster.to_owned(),
            kind,
            source,
        }),
        Err(_) => Err(SourceError::Timeout {
            cluster: cluster.to_owned(),
            kind,
            seconds: LIST_TIMEOUT.as_secs(),
        }),
    }
}

/// The annotated Deployments/StatefulSets of `cluster` and the pods of their namespaces.
pub async fn list_workloads(
    cluster: &str,
    client: &kube::Client,
) -> Result<(Vec<Workload>, Vec<Pod>), SourceError> {
    let deployments = timed_list(cluster, Api::<Deployment>::all(client.clone())).await?;
    let statefulsets = timed_list(cluster, Api::<StatefulSet>::all(client.clone())).await?;
    let mut workloads: Vec<Workload> = deployments
        .iter()
        .filter_map(Workload::from_deployment)
        .chain(statefulsets.iter().filter_map(Workload::from_statefulset))
        .filter(|w| w.package().is_some())
        .collect();
    workloads.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut namespaces: Vec<&str> = workloads.iter().map(|w| w.namespace.as_str()).collect();
    namespaces.dedup();
    let mut pods = Vec::new();
    for ns in namespaces {
        pods.extend(timed_list(cluster, Api::<Pod>::namespaced(client.clone(), ns)).await?);
    }
    Ok((workloads, pods))
}
