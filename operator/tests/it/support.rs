//! Helpers the integration tests share.

use std::path::Path;
use std::process::Command;

/// Runs the real `git` CLI in `dir` (as a human committer) and returns its stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=Human",
            "-c",
            "user.email=human@example.invalid",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Ready Node with a fresh kubelet Lease, as a live kubelet would leave them (the lab runs no
/// kubelet; its Lease is renewed only when the test does).
pub async fn make_node(
    nodes: &kube::Api<k8s_openapi::api::core::v1::Node>,
    leases: &kube::Api<k8s_openapi::api::coordination::v1::Lease>,
    name: &str,
) {
    let node: k8s_openapi::api::core::v1::Node =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    nodes
        .create(&kube::api::PostParams::default(), &node)
        .await
        .unwrap();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = serde_json::json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
        "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}]}});
    nodes
        .patch_status(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&status),
        )
        .await
        .unwrap();
    let lease: k8s_openapi::api::coordination::v1::Lease = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now())}
    }))
    .unwrap();
    leases
        .create(&kube::api::PostParams::default(), &lease)
        .await
        .unwrap();
}
