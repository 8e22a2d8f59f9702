//! The controllers against the lab's REAL kube-apiservers when the world is broken: a source
//! cluster without its kubeconfig Secret, a kubeconfig pointing at a dead API server, a Transition
//! naming a policy that does not exist. Each becomes a condition naming the cause; nothing crashes
//! and the controllers keep serving.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use transition_crds::conditions;
use transition_crds::transition::TransitionPhase;
use transition_crds::{ClusterPolicy, Transition};
use transition_operator::cluster_policy::{self as controller, DISCOVERED};
use transition_operator::context::{Context, Settings};
use transition_operator::k8s::crd_install::install_crds;
use transition_operator::observe::metrics::Metrics;
use transition_operator::transition as transitions;
use transition_testlab::{Lab, fresh_namespace};

const POLICY: &str = r#"
apiVersion: transition.dcnlab.ssu.ac.kr/v1
kind: ClusterPolicy
metadata: {name: broken-source}
spec:
  clusterSelector: {name: cluster1-azure, repo: "http://127.0.0.1:1/none.git", repoType: git}
  selectMode: Specific
  packageSelectors:
    - name: counter
      packagePath: catalog/counter
      packageType: Stateful
      liveStatePackage: true
      backupInformation: [{name: b, backupType: Schedule, schedulePeriod: "*/3 * * * *"}]
  targetClusterPolicy:
    preferClusters: [{name: cluster2-aws, repoType: git, weight: 100}]
"#;

async fn discovered_message(api: &Api<ClusterPolicy>, name: &str, needle: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let p = api.get(name).await.unwrap();
        let msg = p
            .status
            .as_ref()
            .and_then(|s| conditions::find(&s.conditions, DISCOVERED))
            .filter(|c| c.status == "False")
            .map(|c| c.message.clone());
        if let Some(m) = msg.filter(|m| m.contains(needle)) {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {DISCOVERED}=False mentioning {needle:?}; status: {:?}",
            p.status
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_secrets_dead_clusters_and_missing_policies_become_conditions_naming_the_cause() {
    let lab = Lab::get().unwrap();
    let client = lab.kube_client(&lab.clusters()[0]).await.unwrap();
    install_crds(&client, Duration::from_secs(60))
        .await
        .unwrap();
    let ns = fresh_namespace(&client, "faults").await.unwrap();
    let settings = Settings {
        registry: Some(transition_crds::checkpoint::RegistryRef {
            url: "http://127.0.0.1:1".into(),
            repository: "checkpoints".into(),
            secret_ref: None,
        }),
        ..Settings::default()
    };
    let ctx = Arc::new(
        Context::new(
            client.clone(),
            Arc::new(Metrics::default()),
            Duration::from_secs(2),
        )
        .with_settings(settings),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let (c1, c2, n1, n2) = (ctx.clone(), ctx.clone(), ns.clone(), ns.clone());
    let s1 = stop.clone();
    let s2 = stop.clone();
    let policies = tokio::spawn(async move { controller::run(c1, Some(&n1), s1).await });
    let trans = tokio::spawn(async move { transitions::run(c2, Some(&n2), s2).await });

    // 1. No `cluster1-azure-kubeconfig` Secret (Cluster API convention).
    let api: Api<ClusterPolicy> = Api::namespaced(client.clone(), &ns);
    let policy: ClusterPolicy = serde_saphyr::from_str(POLICY).unwrap();
    api.create(&PostParams::default(), &policy).await.unwrap();
    let m = discovered_message(&api, "broken-source", "cluster1-azure-kubeconfig").await;
    assert!(m.contains(&ns) && m.contains("does not exist"), "{m}");
    let p = api.get("broken-source").await.unwrap();
    let ready = p
        .status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, conditions::READY))
        .cloned()
        .unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "DiscoveryFailed"),
        "a policy that cannot see its source is not Ready: {}",
        ready.message
    );

    // 2. A kubeconfig whose API server is not there.
    let dead = "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\", insecure-skip-tls-verify: true}}]\nusers: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n";
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "cluster1-azure-kubeconfig"},
        "stringData": {"value": dead}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let m = discovered_message(
        &api,
        "broken-source",
        "failed to list workloads in cluster cluster1-azure",
    )
    .await;
    assert!(!m.contains("token: x"), "no credentials in conditions: {m}");

    // 3. A Transition naming a policy that does not exist ends Failed, saying so.
    let tr: Transition = serde_saphyr::from_str(
        "apiVersion: transition.dcnlab.ssu.ac.kr/v1alpha1\nkind: Transition\nmetadata: {name: orphan}\nspec: {policyRef: {name: nope}, package: counter, sourceCluster: cluster1-azure, targetCluster: cluster2-aws, trigger: {type: Manual}}\n",
    )
    .unwrap();
    let tapi: Api<Transition> = Api::namespaced(client.clone(), &ns);
    tapi.create(&PostParams::default(), &tr).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let t = tapi.get("orphan").await.unwrap();
        let s = t.status.unwrap_or_default();
        if s.phase == Some(TransitionPhase::Failed) {
            let msg = s.message.unwrap_or_default();
            assert!(
                msg.contains("nope") && msg.contains("does not exist"),
                "{msg}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not Failed: {s:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        !policies.is_finished() && !trans.is_finished(),
        "the controllers keep running"
    );
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), policies).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), trans).await;
}
