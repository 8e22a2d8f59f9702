//! The Checkpoint reconciler without the lab. Stand-ins: [`FakeApi`] replaces the management
//! and source kube-apiservers (the source's node proxy answers the kubelet's checkpoint call);
//! S3 is an endpoint where nothing listens (so "the upload is not there yet" is real: the AWS
//! SDK gets connection refused), the registry is never reached in these scenarios.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use transition_crds::Checkpoint;
use transition_crds::checkpoint::CheckpointPhase;
use transition_operator::checkpoint;
use transition_operator::context::{Context, Settings};
use transition_operator::k8s::clusters::WorkloadClusters;
use transition_operator::observe::metrics::Metrics;
use transition_operator::storage::{ArchiveStore, StoreConfig};

use super::fake_api::FakeApi;

const PATH: &str = "/apis/transition.dcnlab.ssu.ac.kr/v1/namespaces/ops/checkpoints/c1";

struct Scenario {
    mgmt: FakeApi,
    source: FakeApi,
    ctx: Arc<Context>,
}

fn scenario(node_name: Option<&str>, status: Value) -> Scenario {
    let mgmt = FakeApi::new();
    let mut pod_ref = json!({"namespace": "default", "name": "counter-a",
                             "containerRef": {"containers": [{"name": "counter"}]}});
    if let Some(n) = node_name {
        pod_ref["nodeName"] = json!(n);
    }
    mgmt.put("checkpoints", json!({
        "apiVersion": "transition.dcnlab.ssu.ac.kr/v1", "kind": "Checkpoint",
        "metadata": {"name": "c1", "namespace": "ops",
                     "finalizers": [checkpoint::FINALIZER],
                     "annotations": {"transition.dcnlab.ssu.ac.kr/checkpoint-now": "t1"}},
        "spec": {"schedule": "@manual", "clusterRef": {"name": "cluster1-azure", "packageName": "counter"},
                 "podRef": pod_ref,
                 "resourceRef": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "default", "name": "counter"},
                 "registry": {"url": "http://127.0.0.1:1", "repository": "checkpoints"},
                 "containers": [{"name": "counter", "image": "docker.io/library/busybox:1.36"}]},
        "status": status
    }));
    let source = FakeApi::new();
    let store = ArchiveStore::new(&StoreConfig {
        endpoint: "http://127.0.0.1:1".into(),
        region: "us-east-1".into(),
        bucket: "checkpoints".into(),
        access_key: "k".into(),
        secret_key: "s".into(),
        timeout: Duration::from_secs(5),
    });
    let clusters =
        WorkloadClusters::new(mgmt.client(), None).with_client("cluster1-azure", source.client());
    let ctx = Context::new(
        mgmt.client(),
        Arc::new(Metrics::default()),
        Duration::from_secs(30),
    )
    .with_settings(Settings::default())
    .with_clusters(clusters)
    .with_store(store);
    Scenario {
        mgmt,
        source,
        ctx: Arc::new(ctx),
    }
}

impl Scenario {
    fn checkpoint(&self) -> Checkpoint {
        serde_json::from_value(self.mgmt.get(PATH).unwrap()).unwrap()
    }

    async fn reconcile(&self) -> Result<kube::runtime::controller::Action, checkpoint::Error> {
        checkpoint::reconcile(Arc::new(self.checkpoint()), self.ctx.clone()).await
    }
}

#[tokio::test]
async fn a_pod_the_kubelet_no_longer_knows_ends_the_run_failed_with_its_reason() {
    let s = scenario(Some("worker-1"), json!({}));
    s.source.route(|r| {
        r.path.contains("/proxy/checkpoint/").then(|| {
            (404, json!({"kind": "Status", "code": 404, "reason": "NotFound", "message": "pod counter-a not found"}))
        })
    });
    s.reconcile().await.unwrap();
    let status = s.checkpoint().status.unwrap();
    assert_eq!(status.phase, Some(CheckpointPhase::Failed));
    assert!(status.run.is_none(), "the run is over");
    assert_eq!(
        status.last_manual_token.as_deref(),
        Some("t1"),
        "the token is handled, once"
    );
    let msg = status.message.unwrap();
    assert!(
        msg.contains("pod gone") && msg.contains("HTTP 404"),
        "{msg}"
    );
    assert_eq!(
        s.source
            .count("POST", "/proxy/checkpoint/default/counter-a/counter"),
        1
    );
}

#[tokio::test]
async fn a_pod_that_vanished_from_the_source_api_ends_the_run_failed_naming_it() {
    let s = scenario(None, json!({}));
    s.reconcile().await.unwrap();
    let status = s.checkpoint().status.unwrap();
    assert_eq!(status.phase, Some(CheckpointPhase::Failed));
    let msg = status.message.unwrap();
    assert!(
        msg.contains("pod default/counter-a does not exist"),
        "{msg}"
    );
    assert_eq!(
        s.source.count("POST", "/proxy/"),
        0,
        "no kubelet call for a pod that is gone"
    );
}

#[tokio::test]
async fn a_restart_while_waiting_for_the_upload_resumes_the_wait_without_a_second_kubelet_call() {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let s = scenario(
        Some("worker-1"),
        json!({
            "phase": "Running", "lastManualToken": "t1",
            "run": {"trigger": "manual:t1", "startedAt": now,
                    "archives": [{"container": "counter", "takenAt": now,
                                  "archiveKey": "checkpoints/v1/cluster1-azure/worker-1/checkpoint-counter-a_default-counter-2026-12-02T10:00:00Z.tar"}]}
        }),
    );
    let action = s.reconcile().await.unwrap();
    assert!(action != kube::runtime::controller::Action::await_change());
    assert_eq!(
        s.source.count("POST", "/proxy/"),
        0,
        "the archive is recorded: the kubelet is not asked again"
    );
    let status = s.checkpoint().status.unwrap();
    assert_eq!(
        status.phase,
        Some(CheckpointPhase::Running),
        "still waiting, nothing lost"
    );
    assert_eq!(status.run.unwrap().archives.len(), 1);
}

#[tokio::test]
async fn an_upload_that_never_arrives_ends_the_run_at_its_deadline() {
    let s = scenario(
        Some("worker-1"),
        json!({
            "phase": "Running", "lastManualToken": "t1",
            "run": {"trigger": "manual:t1", "startedAt": "2020-01-01T00:00:00Z",
                    "archives": [{"container": "counter", "takenAt": "2020-01-01T00:00:00Z",
                                  "archiveKey": "checkpoints/v1/cluster1-azure/worker-1/checkpoint-counter-a_default-counter-2020-01-01T00:00:00Z.tar"}]}
        }),
    );
    s.reconcile().await.unwrap();
    let status = s.checkpoint().status.unwrap();
    assert_eq!(status.phase, Some(CheckpointPhase::Failed));
    let msg = status.message.unwrap();
    assert!(
        msg.contains("the agent's upload did not appear within 300s"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_schedule_croner_cannot_parse_is_a_spec_error_in_the_status() {
    let s = scenario(Some("worker-1"), json!({}));
    let mut obj = s.mgmt.get(PATH).unwrap();
    obj["spec"]["schedule"] = json!("61 * * * *");
    obj["metadata"]["annotations"] = json!({});
    s.mgmt.set(PATH, obj);
    let err = s.reconcile().await.unwrap_err();
    assert_eq!(err.metric_label(), "InvalidSpec");
    let status = s.checkpoint().status.unwrap();
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == "SpecValid")
        .unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "InvalidSchedule")
    );
}
