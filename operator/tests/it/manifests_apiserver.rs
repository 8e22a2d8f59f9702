//! The deployment manifests we ship (operator on the management cluster, agent DaemonSet on a
//! source cluster) are accepted by a REAL kube-apiserver (server-side dry run, lab kubectl).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::process::Command;

use transition_testlab::{Lab, repo_root};

fn kubectl(lab: &Lab, cluster: &str, args: &[&str]) -> (bool, String) {
    let kubeconfig = lab.cluster(cluster).unwrap().kubeconfig;
    let out = Command::new(lab.tool("kubectl").unwrap())
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn the_shipped_operator_and_agent_manifests_are_accepted_by_the_api_server() {
    let lab = Lab::get().unwrap();
    let mgmt = lab.clusters()[0].clone();
    // Namespaces must exist for a dry run of the namespaced objects, and the CRDs for the policy.
    let _ = kubectl(&lab, &mgmt, &["create", "namespace", "transition-system"]);
    let crds = repo_root().join("crds/yaml");
    for args in [
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager",
            "transition-operator",
            "-f",
        ][..],
        &[
            "wait",
            "--for",
            "condition=Established",
            "--timeout",
            "60s",
            "-f",
        ][..],
    ] {
        let mut args = args.to_vec();
        args.push(crds.to_str().unwrap());
        let (ok, out) = kubectl(&lab, &mgmt, &args);
        assert!(ok, "{out}");
    }
    for (cluster, file) in [
        (mgmt.as_str(), "clusters/management/operator.yaml"),
        (
            "cluster1-azure",
            "clusters/cluster1-azure/gitops/checkpoint-agent.yaml",
        ),
        // The sample policy for this repository's layout (CRDs installed by the test lab run).
        (mgmt.as_str(), "catalog/policies/clusterpolicy-sample.yaml"),
    ] {
        let path = repo_root().join(file);
        let (ok, out) = kubectl(
            &lab,
            cluster,
            &["apply", "--dry-run=server", "-f", path.to_str().unwrap()],
        );
        assert!(ok, "{file} rejected: {out}");
        assert!(out.contains("(server dry run)"), "{out}");
    }
}
