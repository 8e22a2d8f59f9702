//! Node metadata read from a Node object on the lab's REAL kube-apiserver (source cluster).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use checkpoint_agent::config::NodeArgs;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};
use transition_testlab::Lab;

#[tokio::test]
async fn cluster_api_annotations_of_the_node_name_the_cluster_in_heartbeats() {
    let lab = Lab::get().unwrap();
    let cluster = &lab.clusters()[1];
    let client = lab.kube_client(cluster).await.unwrap();
    let name = format!("worker-meta-{}", std::process::id());
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "annotations": {
            "cluster.x-k8s.io/cluster-name": "cluster1-azure",
            "cluster.x-k8s.io/cluster-namespace": "default",
            "cluster.x-k8s.io/machine": "cluster1-md-0-abc",
            "cluster.x-k8s.io/owner-kind": "MachineSet",
            "cluster.x-k8s.io/owner-name": "cluster1-md-0"}}
    }))
    .unwrap();
    Api::<Node>::all(client)
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
    let args = NodeArgs {
        node_name: name.clone(),
        cluster_name: "flag-cluster".into(),
        node_ip: "192.0.2.10".into(),
        kubeconfig: Some(lab.cluster(cluster).unwrap().kubeconfig),
        no_kube: false,
    };
    let meta = checkpoint_agent::node::resolve(&args).await;
    assert_eq!(
        meta.cluster_name, "cluster1-azure",
        "the annotation wins over the flag"
    );
    assert_eq!(meta.machine, "cluster1-md-0-abc");
    assert_eq!(meta.owner_kind, "MachineSet");
    assert_eq!(
        meta.ip, "192.0.2.10",
        "no InternalIP on the Node: the flag fills in"
    );

    let missing = NodeArgs {
        node_name: "no-such-node".into(),
        ..args
    };
    let fallback = checkpoint_agent::node::resolve(&missing).await;
    assert_eq!(
        fallback.cluster_name, "flag-cluster",
        "an unreadable Node falls back to flags"
    );
}
