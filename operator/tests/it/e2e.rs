//! The whole mission with real parts (`hack/e2e.sh`): three real kube-apiservers, s3s-fs, the
//! registry, git http-backend, kubelet shims running the counter as runc containers (standing in
//! for the kubelets and CRI runtime of worker-1 and worker-2), the agent and the operator. A node
//! dies; the operator — killed with SIGKILL in every transition phase and restarted — fails the
//! counter over through ONE Git commit; cluster2's shim restores the checkpoint image with CRIU.
//! The script writes its measurements to `summary.json`; this test checks them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::process::Command;

use transition_testlab::repo_root;

#[test]
fn a_dead_node_s_counter_comes_back_on_cluster2_with_its_state_despite_operator_kills_in_every_phase()
 {
    let lab_dir = std::env::var("TRANSITION_E2E_LAB_DIR")
        .unwrap_or_else(|_| "/tmp/transition-lab-e2e-test".into());
    let out = Command::new("bash")
        .arg(repo_root().join("hack/e2e.sh"))
        .arg("--kill-operator-in-each-phase")
        .env("TRANSITION_LAB_DIR", &lab_dir)
        .env("E2E_SKIP_BUILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: String = stderr
        .lines()
        .rev()
        .take(60)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    assert!(out.status.success(), "hack/e2e.sh failed:\n{tail}");
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{lab_dir}/e2e/summary.json")).unwrap(),
    )
    .unwrap();
    let n = |k: &str| summary[k].as_f64().unwrap_or(-1.0);
    assert_eq!(summary["phase"], "Completed", "{summary}");
    assert!(
        n("counter_at_checkpoint") > 0.0 && n("counter_after") > n("counter_at_checkpoint"),
        "the counter continues from its checkpoint: {summary}"
    );
    assert!(
        n("counter_at_checkpoint") <= n("counter_at_kill") && n("state_lost_seconds") <= 25.0,
        "the restored state is close to the moment of the loss: {summary}"
    );
    assert_eq!(n("failover_commits"), 1.0, "{summary}");
    assert_eq!(n("manual_runs_for_token"), 1.0, "{summary}");
    assert!(
        summary["digest_in_git"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:")),
        "{summary}"
    );
    assert_eq!(summary["digest_in_git"], summary["digest_in_registry"]);
    assert_eq!(
        summary["operator_kills"],
        serde_json::json!(["Fencing", "Committing", "Syncing", "Verifying"])
    );
    assert_eq!(summary["source_deployment_left"], "", "fenced: {summary}");
    assert_eq!(summary["out_of_service_taint"], "NoExecute");
}
