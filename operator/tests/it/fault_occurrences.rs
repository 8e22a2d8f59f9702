//! Node faults become Transitions per package *occurrence*, checked against the lab's REAL
//! kube-apiserver (the management cluster): faults on two nodes of one package while it moves
//! create one Transition, concurrent handlers create one, faults of a package that already moved
//! away create none, and after a failback the same node failing again is a new occurrence; a
//! target whose agents report that it cannot restore is skipped.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::sync::Arc;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use transition_crds::{ClusterPolicy, Transition};
use transition_operator::context::Context;
use transition_operator::detect::run::FaultEvent;
use transition_operator::k8s::crd_install::install_crds;
use transition_operator::observe::metrics::Metrics;
use transition_operator::transition::on_fault;
use transition_testlab::{Lab, fresh_namespace};

const POLICY: &str = r#"
apiVersion: transition.dcnlab.ssu.ac.kr/v1
kind: ClusterPolicy
metadata: {name: occ}
spec:
  clusterSelector: {name: cluster1-azure, repo: "http://127.0.0.1:1/none.git", repoType: git}
  selectMode: Specific
  transitionMode: Automatic
  packageSelectors:
    - {name: counter, packagePath: catalog/counter, packageType: Stateful, liveStatePackage: true}
  targetClusterPolicy:
    preferClusters: [{name: cluster2-aws, repoType: git, weight: 100}]
"#;

fn fault(node: &str) -> FaultEvent {
    FaultEvent {
        cluster: "cluster1-azure".into(),
        node: node.into(),
        reason: "Lease stale".into(),
        at_ms: 0,
    }
}

/// Creates the policy of `yaml` with the status discovery would write: package `counter` with
/// `workloads`.
async fn create_discovered(
    policies: &Api<ClusterPolicy>,
    yaml: &str,
    workloads: serde_json::Value,
) {
    let policy: ClusterPolicy = serde_saphyr::from_str(yaml).unwrap();
    policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let status = json!({"status": {"packages": [{
        "name": "counter", "packageType": "Stateful", "liveState": true, "workloads": workloads}]}});
    policies
        .patch_status(
            &policy.name_any(),
            &PatchParams::default(),
            &Patch::Merge(status),
        )
        .await
        .unwrap();
}

async fn names(api: &Api<Transition>) -> Vec<String> {
    let mut n: Vec<String> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|t| t.name_any())
        .collect();
    n.sort();
    n
}

async fn complete(api: &Api<Transition>, name: &str, at: &str) {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Completed", "completedAt": at}})),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_become_one_transition_per_package_occurrence_with_unique_names() {
    let lab = Lab::get().unwrap();
    let client = lab.kube_client(&lab.clusters()[0]).await.unwrap();
    install_crds(&client, Duration::from_secs(60))
        .await
        .unwrap();
    let ns = fresh_namespace(&client, "occurrences").await.unwrap();
    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(Metrics::default()),
        Duration::from_secs(2),
    ));
    let policies: Api<ClusterPolicy> = Api::namespaced(client.clone(), &ns);
    // The status discovery would write: the live-state pods on occ-w1 and occ-w2, a
    // stateless part on occ-w3 (node names no other test uses: faults look at every policy).
    create_discovered(
        &policies,
        POLICY,
        json!([
            {"kind": "StatefulSet", "namespace": "default", "name": "counter",
             "nodes": ["occ-w1", "occ-w2"], "checkpointable": true},
            {"kind": "Deployment", "namespace": "default", "name": "web",
             "nodes": ["occ-w3"], "checkpointable": false}]),
    )
    .await;
    let tr: Api<Transition> = Api::namespaced(client.clone(), &ns);

    // Both live-state nodes die at once: two handlers race; one Transition.
    let (w1, w2) = (fault("occ-w1"), fault("occ-w2"));
    let (a, b) = tokio::join!(on_fault(&ctx, &w1, &[]), on_fault(&ctx, &w2, &[]));
    assert_eq!(a.unwrap() + b.unwrap(), 1, "one occurrence, one Transition");
    assert_eq!(names(&tr).await, vec!["occ-counter-1"]);
    // The same fault reported again while it runs: nothing new.
    assert_eq!(on_fault(&ctx, &fault("occ-w1"), &[]).await.unwrap(), 0);
    // The node with only the stateless part: nothing moves.
    assert_eq!(on_fault(&ctx, &fault("occ-w3"), &[]).await.unwrap(), 0);

    // Completed: the package lives on cluster2-aws; its old home's faults move nothing.
    complete(&tr, "occ-counter-1", "2026-12-02T10:00:00Z").await;
    assert_eq!(on_fault(&ctx, &fault("occ-w1"), &[]).await.unwrap(), 0);
    assert_eq!(names(&tr).await, vec!["occ-counter-1"]);

    // Failback (a Planned move home), completed: occ-w1 failing again is a new occurrence.
    let back: Transition = serde_json::from_value(json!({
        "apiVersion": "transition.dcnlab.ssu.ac.kr/v1alpha1", "kind": "Transition",
        "metadata": {"name": "occ-counter-failback",
                     "labels": {"transition.dcnlab.ssu.ac.kr/occurrence": "2"}},
        "spec": {"policyRef": {"name": "occ"}, "package": "counter",
                 "sourceCluster": "cluster2-aws", "targetCluster": "cluster1-azure",
                 "trigger": {"type": "Planned"}}
    }))
    .unwrap();
    tr.create(&PostParams::default(), &back).await.unwrap();
    complete(&tr, "occ-counter-failback", "2026-12-02T11:00:00Z").await;
    assert_eq!(on_fault(&ctx, &fault("occ-w1"), &[]).await.unwrap(), 1);
    assert_eq!(
        names(&tr).await,
        vec!["occ-counter-1", "occ-counter-3", "occ-counter-failback"]
    );
    let third = tr.get("occ-counter-3").await.unwrap();
    assert_eq!(third.spec.trigger.node.as_deref(), Some("occ-w1"));
    assert_eq!(third.spec.target_cluster, "cluster2-aws");
}

const TWO_TARGETS: &str = r#"
apiVersion: transition.dcnlab.ssu.ac.kr/v1
kind: ClusterPolicy
metadata: {name: skip}
spec:
  clusterSelector: {name: cluster1-azure, repo: "http://127.0.0.1:1/none.git", repoType: git}
  selectMode: Specific
  packageSelectors:
    - {name: counter, packagePath: catalog/counter, packageType: Stateful, liveStatePackage: true}
  targetClusterPolicy:
    preferClusters:
      - {name: cluster2-aws, repoType: git, weight: 100}
      - {name: cluster3, repoType: git, weight: 50}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_whose_agents_report_restore_turned_off_is_skipped() {
    use transition_operator::detect::server::{Tokens, router};
    let lab = Lab::get().unwrap();
    let client = lab.kube_client(&lab.clusters()[0]).await.unwrap();
    install_crds(&client, Duration::from_secs(60))
        .await
        .unwrap();
    let ns = fresh_namespace(&client, "skip-target").await.unwrap();
    // The operator's heartbeat endpoint over real HTTP, fed what the agents on each side report.
    let tokens = Tokens::parse(
        "cluster1-azure=c1-token-0123456789\ncluster2-aws=c2-token-0123456789\ncluster3=c3-token-0123456789\n",
    )
    .unwrap();
    let (beats, _changes) = transition_operator::detect::beats(tokens, Default::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/heartbeat", listener.local_addr().unwrap());
    let app = router(beats.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();
    for (token, body) in [
        (
            "c1-token-0123456789",
            json!({"node": "skip-w1", "arch": "x86_64",
            "restore": {"runtime": "runc", "restore_enabled": true, "criu_version": "4.1.1"}}),
        ),
        (
            "c2-token-0123456789",
            json!({"node": "skip-t2", "arch": "x86_64",
            "restore": {"runtime": "containerd", "runtime_version": "2.2.0", "restore_enabled": false,
                        "restore_source": "/etc/containerd/config.toml: enable_experimental_restore_via_create = false"}}),
        ),
        (
            "c3-token-0123456789",
            json!({"node": "skip-t3", "arch": "x86_64",
            "restore": {"runtime": "cri-o", "restore_enabled": true, "criu_version": "4.1.1"}}),
        ),
    ] {
        let resp = http
            .post(&url)
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            Arc::new(Metrics::default()),
            Duration::from_secs(2),
        )
        .with_beats(beats),
    );
    let policies: Api<ClusterPolicy> = Api::namespaced(client.clone(), &ns);
    create_discovered(
        &policies,
        TWO_TARGETS,
        json!([{"kind": "Deployment", "namespace": "default", "name": "counter",
                "nodes": ["skip-w1"], "checkpointable": true}]),
    )
    .await;
    assert_eq!(on_fault(&ctx, &fault("skip-w1"), &[]).await.unwrap(), 1);
    let tr: Api<Transition> = Api::namespaced(client.clone(), &ns);
    let t = tr.get("skip-counter-1").await.unwrap();
    assert_eq!(
        t.spec.target_cluster, "cluster3",
        "cluster2-aws (weight 100) cannot restore: skipped"
    );
}
