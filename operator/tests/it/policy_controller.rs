//! The ClusterPolicy controller against the lab's REAL kube-apiserver v1.20.2: it reports the seed
//! policy in its status, and turns a spec the schema cannot catch (a bad cron) into SpecValid=False
//! with the field named plus a Warning Event.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use transition_crds::ClusterPolicy;
use transition_crds::conditions::{self, READY, SPEC_VALID};
use transition_operator::cluster_policy::{self as controller, Context};
use transition_operator::k8s::crd_install::install_crds;
use transition_operator::observe::metrics::Metrics;
use transition_testlab::{Lab, fresh_namespace};

const SEED: &str = include_str!("../../../catalog/policies/seed/clusterpolicy-sample.yaml");

/// Polls `api.get(name)` until `check` holds (at most 30 s).
async fn eventually(
    api: &Api<ClusterPolicy>,
    name: &str,
    what: &str,
    check: impl Fn(&ClusterPolicy) -> bool,
) -> ClusterPolicy {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let policy = api.get(name).await.unwrap();
        if check(&policy) {
            return policy;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; status: {:?}",
            policy.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_controller_reports_the_seed_policy_and_flags_a_bad_schedule() {
    let lab = Lab::get().unwrap();
    let client = lab.kube_client(&lab.clusters()[0]).await.unwrap();
    install_crds(&client, Duration::from_secs(60))
        .await
        .unwrap();
    let ns = fresh_namespace(&client, "ctl").await.unwrap();

    let ctx = Arc::new(Context::new(
        client.clone(),
        Arc::new(Metrics::default()),
        Duration::from_secs(300),
    ));
    let ns_for_controller = ns.clone();
    let controller = tokio::spawn(async move {
        controller::run(ctx, Some(&ns_for_controller), Default::default()).await
    });

    // The source cluster's real kubeconfig (Cluster API convention): Ready needs a discovery that
    // succeeded (issue 13: a policy that cannot see its source protects nothing).
    let source = lab.cluster("cluster1-azure").unwrap();
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "cluster1-azure-kubeconfig"},
        "stringData": {"value": std::fs::read_to_string(&source.kubeconfig).unwrap()}
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let api: Api<ClusterPolicy> = Api::namespaced(client.clone(), &ns);
    let seed: ClusterPolicy = serde_saphyr::from_str(SEED).unwrap();
    api.create(&PostParams::default(), &seed).await.unwrap();

    let ready = eventually(&api, "clusterpolicy-sample", "Ready=True", |p| {
        p.status
            .as_ref()
            .is_some_and(|s| conditions::is_true(&s.conditions, READY))
    })
    .await;
    let status = ready.status.unwrap();
    assert_eq!(status.target_cluster.as_deref(), Some("cluster2-aws"));
    assert_eq!(status.source_cluster.as_deref(), Some("cluster1-azure"));
    assert_eq!(status.protected_packages, Some(1));
    assert_eq!(status.observed_generation, ready.metadata.generation);
    assert!(
        status.packages[0].schedules[0].next_run.is_some(),
        "the next checkpoint time is shown"
    );

    // A cron the schema's shape check lets through but croner refuses: minute 61.
    let patch = serde_json::json!({"spec": {"packageSelectors": [{
        "name": "video", "packagePath": "video", "packageType": "Stateful", "liveStatePackage": true,
        "backupInformation": [{"name": "my-test-backup", "backupType": "Schedule", "schedulePeriod": "61 * * * *"}]}]}});
    api.patch(
        "clusterpolicy-sample",
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .unwrap();
    let invalid = eventually(&api, "clusterpolicy-sample", "SpecValid=False", |p| {
        p.status
            .as_ref()
            .and_then(|s| conditions::find(&s.conditions, SPEC_VALID))
            .is_some_and(|c| c.status == "False")
    })
    .await;
    let status = invalid.status.unwrap();
    let cond = conditions::find(&status.conditions, SPEC_VALID).unwrap();
    assert!(
        cond.message
            .contains("spec.packageSelectors[0].backupInformation[0].schedulePeriod"),
        "{}",
        cond.message
    );
    assert_eq!(status.observed_generation, invalid.metadata.generation);
    assert!(!conditions::is_true(&status.conditions, READY));

    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let list = events.list(&ListParams::default()).await.unwrap();
        if list
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("InvalidSpec"))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no InvalidSpec event; events: {:?}",
            list.items.iter().map(|e| &e.reason).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    controller.abort();
}
