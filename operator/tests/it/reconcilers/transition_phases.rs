//! The Transition reconciler driven phase by phase without the lab. Stand-ins: [`FakeApi`]
//! replaces the management, source and target kube-apiservers; a local bare Git repository
//! (`file://`, real libgit2 and the real `git` CLI to count commits) replaces the Git server.
//! Every step re-reads the Transition from the fake, so each step is what a restarted operator
//! would do from the recorded status alone.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use transition_crds::Transition;
use transition_crds::transition::TransitionPhase;
use transition_operator::context::{Context, Settings};
use transition_operator::k8s::clusters::WorkloadClusters;
use transition_operator::observe::metrics::Metrics;
use transition_operator::transition::driver;

use super::fake_api::FakeApi;
use crate::support::git;

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const IMAGE: &str = "127.0.0.1:5000/checkpoints/default/counter-counter";
const TRANSITIONS: &str = "/apis/transition.dcnlab.ssu.ac.kr/v1alpha1/namespaces/ops/transitions";
const POLICY: &str = "/apis/transition.dcnlab.ssu.ac.kr/v1/namespaces/ops/clusterpolicies/p1";

/// A bare repository seeded with this checkout's catalog/ and clusters/; returns its URL.
fn seeded_repo(root: &Path) -> String {
    let bare = root.join("repo.git");
    git(
        root,
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    let work = root.join("seed");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q", "-b", "main"]);
    let repo = transition_testlab::repo_root();
    for d in ["catalog", "clusters"] {
        let ok = Command::new("cp")
            .arg("-r")
            .arg(repo.join(d))
            .arg(&work)
            .status()
            .unwrap();
        assert!(ok.success());
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "seed"]);
    git(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    format!("file://{}", bare.display())
}

/// Commits on `main` of the bare repository at `url` whose message starts with `prefix`.
fn commits(url: &str, prefix: &str) -> usize {
    let dir = url.trim_start_matches("file://");
    git(Path::new(dir), &["log", "--format=%s", "main"])
        .lines()
        .filter(|l| l.starts_with(prefix))
        .count()
}

struct Scenario {
    mgmt: FakeApi,
    source: FakeApi,
    target: FakeApi,
    ctx: Arc<Context>,
    repo: String,
    _dir: tempfile::TempDir,
}

fn scenario(trigger: Value, settings: impl FnOnce(&mut Settings)) -> Scenario {
    build(trigger, settings, None)
}

fn build(
    trigger: Value,
    settings: impl FnOnce(&mut Settings),
    beats: Option<Arc<transition_operator::detect::server::Beats>>,
) -> Scenario {
    let dir = tempfile::tempdir().unwrap();
    let repo = seeded_repo(dir.path());
    let mgmt = FakeApi::new();
    mgmt.put("clusterpolicies", json!({
        "apiVersion": "transition.dcnlab.ssu.ac.kr/v1", "kind": "ClusterPolicy",
        "metadata": {"name": "p1", "namespace": "ops"},
        "spec": {
            "clusterSelector": {"name": "cluster1-azure", "repo": repo, "repoType": "git"},
            "selectMode": "Specific",
            "packageSelectors": [{"name": "counter", "packagePath": "catalog/counter",
                                  "packageType": "Stateful", "liveStatePackage": true}],
            "targetClusterPolicy": {"preferClusters": [{"name": "cluster2-aws", "repoType": "git", "weight": 100}]}
        },
        "status": {"packages": [{"name": "counter", "packageType": "Stateful", "liveState": true,
            "workloads": [{"kind": "Deployment", "namespace": "default", "name": "counter",
                           "nodes": ["worker-1"], "checkpointable": true}]}]}
    }));
    mgmt.put("checkpoints", json!({
        "apiVersion": "transition.dcnlab.ssu.ac.kr/v1", "kind": "Checkpoint",
        "metadata": {"name": "checkpoint-p1-counter-a-counter", "namespace": "ops",
                     "labels": {"transition.dcnlab.ssu.ac.kr/policy": "p1",
                                "transition.dcnlab.ssu.ac.kr/package": "counter",
                                "transition.dcnlab.ssu.ac.kr/cluster": "cluster1-azure"}},
        "spec": {"schedule": "@manual", "clusterRef": {"name": "cluster1-azure", "packageName": "counter"},
                 "podRef": {"namespace": "default", "name": "counter-a", "containerRef": {"containers": [{"name": "counter"}]}},
                 "resourceRef": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "default", "name": "counter"},
                 "registry": {"url": "http://127.0.0.1:5000", "repository": "checkpoints"},
                 "containers": [{"name": "counter", "image": "docker.io/library/busybox:1.36"}]},
        "status": {"history": [{"time": "2026-12-01T10:00:00Z", "container": "counter",
                                "image": format!("{IMAGE}@{DIGEST}")}]}
    }));
    mgmt.put("transitions", json!({
        "apiVersion": "transition.dcnlab.ssu.ac.kr/v1alpha1", "kind": "Transition",
        "metadata": {"name": "move", "namespace": "ops"},
        "spec": {"policyRef": {"name": "p1"}, "package": "counter",
                 "sourceCluster": "cluster1-azure", "targetCluster": "cluster2-aws", "trigger": trigger}
    }));
    let source = FakeApi::new();
    source.put(
        "nodes",
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker-1"},
                               "spec": {"taints": [{"key": "other", "effect": "NoSchedule"}]}}),
    );
    let target = FakeApi::new();
    let mut s = Settings {
        git_cache_dir: dir.path().join("cache"),
        git_timeout: Duration::from_secs(30),
        ..Settings::default()
    };
    settings(&mut s);
    let clusters = WorkloadClusters::new(mgmt.client(), None)
        .with_client("cluster1-azure", source.client())
        .with_client("cluster2-aws", target.client());
    let ctx = Context::new(
        mgmt.client(),
        Arc::new(Metrics::default()),
        Duration::from_secs(30),
    )
    .with_settings(s)
    .with_clusters(clusters);
    let ctx = match beats {
        Some(b) => ctx.with_beats(b),
        None => ctx,
    };
    Scenario {
        mgmt,
        source,
        target,
        ctx: Arc::new(ctx),
        repo,
        _dir: dir,
    }
}

impl Scenario {
    fn transition(&self) -> Transition {
        serde_json::from_value(self.mgmt.get(&format!("{TRANSITIONS}/move")).unwrap()).unwrap()
    }

    fn phase(&self) -> Option<TransitionPhase> {
        self.transition().status.and_then(|s| s.phase)
    }

    /// One reconcile, from what the fake has stored (as a restarted operator would).
    async fn step(&self) -> kube::runtime::controller::Action {
        driver::step(&self.transition(), &self.ctx).await.unwrap()
    }

    /// Steps until `phase` is recorded (at most `n` steps).
    async fn until(&self, phase: TransitionPhase, n: usize) {
        for _ in 0..n {
            if self.phase() == Some(phase) {
                return;
            }
            self.step().await;
        }
        assert_eq!(
            self.phase(),
            Some(phase),
            "status: {:?}",
            self.transition().status
        );
    }

    /// The target cluster's Deployment, as its GitOps agent and controllers would leave it.
    fn target_deployment(&self, image: &str, ready: i64) {
        self.target.put("deployments", json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "counter", "namespace": "default", "generation": 1},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "counter"}},
                     "template": {"metadata": {"labels": {"app": "counter"}},
                                  "spec": {"containers": [{"name": "counter", "image": image}]}}},
            "status": {"observedGeneration": 1, "updatedReplicas": ready, "readyReplicas": ready}
        }));
    }

    fn condition(&self, kind: &str) -> (String, String) {
        let t = self.transition();
        let c = t
            .status
            .unwrap()
            .conditions
            .into_iter()
            .find(|c| c.type_ == kind)
            .unwrap();
        (c.status, c.reason)
    }
}

#[tokio::test]
async fn a_node_fault_goes_through_every_phase_with_one_commit_a_guarded_taint_and_the_history() {
    let s = scenario(
        json!({"type": "NodeFault", "node": "worker-1", "reason": "Lease stale"}),
        |_| {},
    );
    s.until(TransitionPhase::Verifying, 12).await;
    let timings = s.transition().status.unwrap().phase_timings;
    let phases: Vec<TransitionPhase> = timings.iter().map(|p| p.phase).collect();
    use TransitionPhase::*;
    assert_eq!(
        phases,
        vec![Pending, Fencing, Committing, Syncing, Verifying]
    );
    assert!(
        timings[..4].iter().all(|p| p.finished_at.is_some()),
        "each phase closed with its timing"
    );

    // Verifying waits (a requeue, no sleep) while the target has nothing, saying for what.
    let action = s.step().await;
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Duration::from_secs(2))
    );
    let msg = s.transition().status.unwrap().message.unwrap();
    assert!(
        msg.contains("waiting for Deployment default/counter in cluster2-aws"),
        "{msg}"
    );
    s.target_deployment("docker.io/library/busybox:1.36", 1);
    s.step().await;
    let msg = s.transition().status.unwrap().message.unwrap();
    assert!(
        msg.contains("does not run its checkpoint image yet: container counter"),
        "{msg}"
    );
    s.target_deployment(&format!("{IMAGE}@{DIGEST}"), 1);
    s.until(Completed, 3).await;

    assert_eq!(
        commits(&s.repo, "transition:"),
        1,
        "exactly one failover commit"
    );
    let status = s.transition().status.unwrap();
    assert_eq!(status.commits.len(), 1);
    assert_eq!(status.images[0].digest, DIGEST);
    assert_eq!(
        s.condition("Fenced"),
        ("True".into(), "OutOfService".into())
    );
    assert_eq!(
        s.condition("SyncRequested"),
        ("False".into(), "NoSyncTrigger".into())
    );
    // The taint was added next to the existing one, guarded by the Node's resourceVersion.
    let node = s.source.get("/api/v1/nodes/worker-1").unwrap();
    let taints: Vec<&str> = node["spec"]["taints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["key"].as_str().unwrap())
        .collect();
    assert_eq!(taints, vec!["other", "node.kubernetes.io/out-of-service"]);
    let patch = s
        .source
        .seen()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .unwrap();
    assert!(
        patch.body["metadata"]["resourceVersion"].is_string(),
        "{:?}",
        patch.body
    );
    // The policy's history: one entry for this Transition, Completed, written with a precondition.
    let policy = s.mgmt.get(POLICY).unwrap();
    let history = policy["status"]["transitionedPackages"].as_array().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["packageTransitionCondition"], "Completed");
    assert!(s.mgmt.seen().iter().any(|r| r.method == "PATCH"
        && r.path.ends_with("p1/status")
        && r.body["metadata"]["resourceVersion"].is_string()));
}

#[tokio::test]
async fn a_restart_inside_committing_repeats_the_step_without_a_second_commit() {
    let s = scenario(json!({"type": "NodeFault", "node": "worker-1"}), |_| {});
    s.until(TransitionPhase::Committing, 6).await;
    let before = s.mgmt.get(&format!("{TRANSITIONS}/move")).unwrap();
    s.step().await;
    assert_eq!(s.phase(), Some(TransitionPhase::Syncing));
    assert_eq!(commits(&s.repo, "transition:"), 1);
    // The operator died after pushing but before its status write landed: the status is back at
    // Committing with no commit recorded.
    s.mgmt.set(&format!("{TRANSITIONS}/move"), before);
    s.step().await;
    assert_eq!(s.phase(), Some(TransitionPhase::Syncing));
    assert_eq!(
        commits(&s.repo, "transition:"),
        1,
        "the repeat committed nothing"
    );
    let sha = &s.transition().status.unwrap().commits[0].sha;
    assert!(sha.ends_with("(already applied)"), "{sha}");
}

#[tokio::test]
async fn a_target_that_never_becomes_ready_ends_failed_at_the_deadline_with_the_reason() {
    let s = scenario(json!({"type": "Manual"}), |s| {
        s.verify_timeout = Duration::ZERO
    });
    s.until(TransitionPhase::Verifying, 8).await;
    s.until(TransitionPhase::Failed, 2).await;
    let status = s.transition().status.unwrap();
    let msg = status.message.unwrap();
    assert!(
        msg.contains("the target did not become Ready within 0s"),
        "{msg}"
    );
    assert!(
        msg.contains("waiting for Deployment default/counter in cluster2-aws"),
        "{msg}"
    );
    assert_eq!(s.condition("Ready"), ("False".into(), "TimedOut".into()));
    let policy = s.mgmt.get(POLICY).unwrap();
    assert_eq!(
        policy["status"]["transitionedPackages"][0]["packageTransitionCondition"],
        "Failed"
    );
}

#[tokio::test]
async fn an_unreachable_target_is_waited_for_not_retried_blindly() {
    let s = scenario(json!({"type": "Manual"}), |_| {});
    s.until(TransitionPhase::Verifying, 8).await;
    s.target.route(|r| {
        r.path.contains("/deployments/").then(|| {
            (
                503,
                json!({"kind": "Status", "code": 503, "message": "down"}),
            )
        })
    });
    let action = s.step().await;
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Duration::from_secs(2))
    );
    let msg = s.transition().status.unwrap().message.unwrap();
    assert!(
        msg.contains("failed to read Deployment default/counter in cluster2-aws"),
        "{msg}"
    );
    assert_eq!(s.phase(), Some(TransitionPhase::Verifying));
}

#[tokio::test]
async fn a_planned_move_checkpoints_first_and_fences_last_in_a_second_commit() {
    let s = scenario(json!({"type": "Planned"}), |_| {});
    s.until(TransitionPhase::Checkpointing, 4).await;
    let action = s.step().await;
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Duration::from_secs(1)),
        "waits for the fresh checkpoint"
    );
    let ck_path = "/apis/transition.dcnlab.ssu.ac.kr/v1/namespaces/ops/checkpoints/checkpoint-p1-counter-a-counter";
    let mut ck = s.mgmt.get(ck_path).unwrap();
    let token = ck["metadata"]["annotations"]["transition.dcnlab.ssu.ac.kr/checkpoint-for"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(token.starts_with("planned-"), "{token}");
    // The Checkpoint controller's answer: the token handled and a newer image.
    let fresh = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
    ck["status"]["lastTransitionToken"] = json!(token);
    ck["status"]["history"] = json!([{"time": "2026-12-02T10:00:00Z", "container": "counter", "image": format!("{IMAGE}@{fresh}")}]);
    s.mgmt.set(ck_path, ck);
    s.until(TransitionPhase::Verifying, 6).await;
    assert_eq!(
        commits(&s.repo, "transition:"),
        1,
        "the target first; the source keeps running"
    );
    s.target_deployment(&format!("{IMAGE}@{fresh}"), 1);
    s.until(TransitionPhase::Completed, 6).await;
    assert_eq!(
        commits(&s.repo, "transition: fence"),
        1,
        "the fence commit comes last"
    );
    assert_eq!(s.transition().status.unwrap().images[0].digest, fresh);
    assert_eq!(
        s.condition("Fenced"),
        ("True".into(), "GitFence".into()),
        "no node to taint: Git alone fences"
    );
    assert_eq!(
        s.source.count("PATCH", "/nodes/"),
        0,
        "a planned move taints no node"
    );
}

#[tokio::test]
async fn a_transition_whose_policy_is_gone_ends_failed_naming_it() {
    let s = scenario(json!({"type": "Manual"}), |_| {});
    s.mgmt.route(|r| r.path.ends_with("/clusterpolicies/p1").then(|| (404, json!({"kind": "Status", "code": 404, "reason": "NotFound", "message": "not found"}))));
    s.step().await;
    let status = s.transition().status.unwrap();
    assert_eq!(status.phase, Some(TransitionPhase::Failed));
    assert!(
        status
            .message
            .unwrap()
            .contains("ClusterPolicy ops/p1 does not exist")
    );
}

#[tokio::test]
async fn the_phase_pause_is_a_requeue_measured_from_the_recorded_start() {
    let s = scenario(json!({"type": "Manual"}), |s| {
        s.phase_pause = Duration::from_secs(60)
    });
    let action = s.step().await;
    assert_eq!(s.phase(), Some(TransitionPhase::Pending));
    assert_eq!(
        action,
        kube::runtime::controller::Action::requeue(Duration::from_secs(60))
    );
    let again = s.step().await;
    assert_eq!(
        s.phase(),
        Some(TransitionPhase::Pending),
        "still pausing: nothing done"
    );
    assert!(again != kube::runtime::controller::Action::await_change());
}

#[tokio::test]
async fn two_workloads_sharing_a_base_image_are_each_pinned_to_their_own_pods_checkpoint() {
    let s = scenario(json!({"type": "NodeFault", "node": "worker-1"}), |_| {});
    // A second workload of the package, same base image, its own checkpoint.
    let other = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
    let mut ck = s.mgmt.get("/apis/transition.dcnlab.ssu.ac.kr/v1/namespaces/ops/checkpoints/checkpoint-p1-counter-a-counter").unwrap();
    ck["metadata"]["name"] = json!("checkpoint-p1-twin-a-counter");
    ck["spec"]["podRef"]["name"] = json!("twin-a");
    ck["spec"]["resourceRef"]["name"] = json!("twin");
    ck["status"]["history"][0]["image"] = json!(format!(
        "127.0.0.1:5000/checkpoints/default/twin-counter@{other}"
    ));
    s.mgmt.put("checkpoints", ck);
    let mut policy = s.mgmt.get(POLICY).unwrap();
    policy["status"]["packages"][0]["workloads"].as_array_mut().unwrap().push(json!(
        {"kind": "Deployment", "namespace": "default", "name": "twin", "nodes": ["worker-1"], "checkpointable": true}));
    s.mgmt.set(POLICY, policy);

    s.until(TransitionPhase::Syncing, 8).await;
    let images = s.transition().status.unwrap().images;
    assert_eq!(
        images.len(),
        2,
        "one image per workload + container: {images:?}"
    );
    let dir = s.repo.trim_start_matches("file://").to_owned();
    let patch = git(
        Path::new(&dir),
        &["show", "main:clusters/cluster2-aws/transition-counter.yaml"],
    );
    let docs: Vec<&str> = patch.split("---\n").collect();
    let of = |name: &str| {
        *docs
            .iter()
            .find(|d| d.contains(&format!("name: {name}\n")))
            .unwrap()
    };
    assert!(
        of("counter").contains(DIGEST) && !of("counter").contains(other),
        "{patch}"
    );
    assert!(
        of("twin").contains(other) && !of("twin").contains(DIGEST),
        "{patch}"
    );
    let kustomization = git(
        Path::new(&dir),
        &["show", "main:clusters/cluster2-aws/kustomization.yaml"],
    );
    assert!(
        kustomization.contains("transition-counter.yaml"),
        "{kustomization}"
    );
    assert!(
        !kustomization.contains("images:"),
        "nothing pinned by image name: {kustomization}"
    );

    // Verifying wants each workload on its own digest: the twin on the counter's is not restored.
    s.target_deployment(&format!("{IMAGE}@{DIGEST}"), 1);
    let mut twin = s
        .target
        .get("/apis/apps/v1/namespaces/default/deployments/counter")
        .unwrap();
    twin["metadata"]["name"] = json!("twin");
    s.target.put("deployments", twin.clone());
    s.until(TransitionPhase::Verifying, 3).await;
    s.step().await;
    let msg = s.transition().status.unwrap().message.unwrap();
    assert!(
        msg.contains("Deployment default/twin") && msg.contains(other),
        "{msg}"
    );
    twin["spec"]["template"]["spec"]["containers"][0]["image"] =
        json!(format!("x/twin-counter@{other}"));
    s.target.put("deployments", twin);
    s.until(TransitionPhase::Completed, 3).await;
}

#[tokio::test]
async fn in_all_mode_a_package_nobody_listed_fails_over_to_its_discovered_folder() {
    let s = scenario(json!({"type": "NodeFault", "node": "worker-1"}), |_| {});
    let mut policy = s.mgmt.get(POLICY).unwrap();
    policy["spec"]["selectMode"] = json!("All");
    policy["spec"]["packageSelectors"] = json!([]);
    policy["status"]["packages"][0]["packagePath"] = json!("catalog/counter");
    s.mgmt.set(POLICY, policy);
    s.until(TransitionPhase::Verifying, 10).await;
    assert_eq!(commits(&s.repo, "transition:"), 1);
    let dir = s.repo.trim_start_matches("file://").to_owned();
    let k = git(
        Path::new(&dir),
        &["show", "main:clusters/cluster2-aws/kustomization.yaml"],
    );
    assert!(k.contains("../../catalog/counter"), "{k}");
    s.target_deployment(&format!("{IMAGE}@{DIGEST}"), 1);
    s.until(TransitionPhase::Completed, 3).await;
}

#[tokio::test]
async fn a_repository_without_the_package_ends_the_transition_failed_not_retried_forever() {
    let s = scenario(json!({"type": "Manual"}), |_| {});
    let mut policy = s.mgmt.get(POLICY).unwrap();
    policy["spec"]["packageSelectors"][0]["packagePath"] = json!("catalog/nope");
    s.mgmt.set(POLICY, policy);
    s.until(TransitionPhase::Failed, 8).await;
    let status = s.transition().status.unwrap();
    let msg = status.message.unwrap();
    assert!(
        msg.contains("cannot take the change") && msg.contains("catalog/nope"),
        "{msg}"
    );
    assert_eq!(s.condition("Ready"), ("False".into(), "GitLayout".into()));
    assert_eq!(commits(&s.repo, "transition:"), 0);
}

#[tokio::test]
async fn a_step_that_keeps_failing_ends_failed_after_bounded_attempts() {
    use transition_operator::transition::{MAX_STEP_ATTEMPTS, error_policy, reconcile};
    let s = scenario(json!({"type": "Manual"}), |_| {});
    let mut policy = s.mgmt.get(POLICY).unwrap();
    policy["spec"]["clusterSelector"]["repo"] = json!("file:///nonexistent/transition-test.git");
    s.mgmt.set(POLICY, policy);
    s.until(TransitionPhase::Committing, 6).await;
    let mut attempts = 0;
    while s.phase() == Some(TransitionPhase::Committing) && attempts < MAX_STEP_ATTEMPTS + 2 {
        let t = Arc::new(s.transition());
        if let Err(e) = reconcile(t.clone(), s.ctx.clone()).await {
            // What the controller does with a failed reconcile: count it, back off.
            let _ = error_policy(t, &e, s.ctx.clone());
        }
        attempts += 1;
    }
    assert_eq!(s.phase(), Some(TransitionPhase::Failed), "bounded");
    assert_eq!(attempts, MAX_STEP_ATTEMPTS);
    let msg = s.transition().status.unwrap().message.unwrap();
    assert!(
        msg.contains("gave up in phase Committing") && msg.contains("nonexistent"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_node_that_cannot_be_tainted_is_not_called_fenced_until_the_git_fence_lands() {
    let s = scenario(json!({"type": "NodeFault", "node": "worker-9"}), |_| {});
    s.until(TransitionPhase::Committing, 6).await;
    let (state, reason) = s.condition("Fenced");
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("False", "TaintFailed"),
        "nothing fenced yet"
    );
    s.until(TransitionPhase::Syncing, 2).await;
    assert_eq!(s.condition("Fenced"), ("True".into(), "GitFence".into()));
}

/// The operator's heartbeat endpoint (the real router over HTTP) fed the agents' reports:
/// `(cluster, node, restore capability)`.
async fn heartbeats(
    reports: &[(&str, &str, Value)],
) -> Arc<transition_operator::detect::server::Beats> {
    use transition_operator::detect::server::{Tokens, router};
    let mut tokens = Tokens::default();
    for (cluster, _, _) in reports {
        tokens.insert(cluster, &format!("{cluster}-token-0123456789"));
    }
    let (beats, _changes) = transition_operator::detect::beats(tokens, Default::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/heartbeat", listener.local_addr().unwrap());
    let app = router(beats.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();
    for (cluster, node, restore) in reports {
        let body =
            json!({"node": node, "arch": "x86_64", "cluster_name": cluster, "restore": restore});
        let resp = http
            .post(&url)
            .bearer_auth(format!("{cluster}-token-0123456789"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    }
    beats
}

#[tokio::test]
async fn a_target_that_cannot_restore_fails_the_transition_in_pending_before_fencing_or_git() {
    let beats = heartbeats(&[
        (
            "cluster1-azure",
            "worker-1",
            json!({"runtime": "runc", "restore_enabled": true, "criu_version": "4.1.1"}),
        ),
        (
            "cluster2-aws",
            "t-1",
            json!({"runtime": "containerd", "runtime_version": "2.2.0", "restore_enabled": false,
                   "restore_source": "/etc/containerd/config.toml: enable_experimental_restore_via_create not set (off by default since containerd 2.2; this is 2.2.0)",
                   "criu_version": "4.1.1"}),
        ),
    ])
    .await;
    let s = build(
        json!({"type": "NodeFault", "node": "worker-1"}),
        |_| {},
        Some(beats),
    );
    s.until(TransitionPhase::Failed, 4).await;
    let status = s.transition().status.unwrap();
    let failed = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Failed" || c.reason == "TargetCannotRestore")
        .unwrap();
    assert_eq!(failed.reason, "TargetCannotRestore");
    assert!(
        failed.message.contains("node t-1")
            && failed
                .message
                .contains("enable_experimental_restore_via_create"),
        "{}",
        failed.message
    );
    assert_eq!(commits(&s.repo, "transition:"), 0, "Git was not touched");
    let node = s.source.get("/api/v1/nodes/worker-1").unwrap();
    assert!(
        !node.to_string().contains("out-of-service"),
        "the source was not fenced: {node}"
    );
}

#[tokio::test]
async fn a_target_whose_agent_can_restore_says_so_and_the_move_goes_on() {
    let beats = heartbeats(&[
        (
            "cluster1-azure",
            "worker-1",
            json!({"criu_version": "4.1.1", "restore_enabled": true}),
        ),
        (
            "cluster2-aws",
            "t-1",
            json!({"criu_version": "4.1.1", "restore_enabled": true}),
        ),
    ])
    .await;
    let s = build(
        json!({"type": "NodeFault", "node": "worker-1"}),
        |_| {},
        Some(beats),
    );
    s.until(TransitionPhase::Fencing, 3).await;
    assert_eq!(
        s.condition("TargetCanRestore"),
        ("True".to_owned(), "Capable".to_owned())
    );
}

#[tokio::test]
async fn a_dry_run_records_the_diff_real_git_would_apply_and_changes_nothing() {
    let s = scenario(json!({"type": "NodeFault", "node": "worker-1"}), |_| {});
    let mut t = s.mgmt.get(&format!("{TRANSITIONS}/move")).unwrap();
    t["spec"]["dryRun"] = json!(true);
    s.mgmt.set(&format!("{TRANSITIONS}/move"), t);
    s.step().await;
    assert_eq!(s.phase(), Some(TransitionPhase::DryRun));
    let status = s.transition().status.unwrap();
    assert_eq!(status.dry_run.len(), 1, "one repository, one change");
    let diff = &status.dry_run[0].diff;
    assert!(
        diff.contains("clusters/cluster2-aws") && diff.contains(DIGEST),
        "the target pinned to the checkpoint digest: {diff}"
    );
    assert!(
        status
            .message
            .as_deref()
            .unwrap()
            .contains("nothing was changed"),
        "{:?}",
        status.message
    );
    assert_eq!(commits(&s.repo, "transition:"), 0, "nothing pushed");
    assert!(
        !s.source
            .get("/api/v1/nodes/worker-1")
            .unwrap()
            .to_string()
            .contains("out-of-service"),
        "nothing fenced"
    );
    // Real git applies the recorded diff cleanly to a fresh clone of the repository.
    let dir = tempfile::tempdir().unwrap();
    let clone = dir.path().join("c");
    git(
        dir.path(),
        &[
            "clone",
            "-q",
            s.repo.trim_start_matches("file://"),
            clone.to_str().unwrap(),
        ],
    );
    std::fs::write(dir.path().join("change.diff"), diff).unwrap();
    git(
        &clone,
        &[
            "apply",
            "--check",
            dir.path().join("change.diff").to_str().unwrap(),
        ],
    );
    // A second reconcile does nothing more.
    s.step().await;
    assert_eq!(s.phase(), Some(TransitionPhase::DryRun));
}

#[tokio::test]
async fn the_failover_commit_goes_to_the_configured_branch_and_cluster_folder() {
    let s = scenario(
        json!({"type": "NodeFault", "node": "worker-1"}),
        |settings| {
            settings.git_branch = "production".into();
            settings.git_clusters_dir = "deploy/envs".into();
        },
    );
    // The repository's `production` branch keeps its cluster folders under deploy/envs/.
    let bare = s.repo.trim_start_matches("file://").to_owned();
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("w");
    git(dir.path(), &["clone", "-q", &bare, work.to_str().unwrap()]);
    git(&work, &["checkout", "-q", "-b", "production"]);
    std::fs::create_dir_all(work.join("deploy")).unwrap();
    git(&work, &["mv", "clusters", "deploy/envs"]);
    let k = work.join("deploy/envs/cluster1-azure/kustomization.yaml");
    let text = std::fs::read_to_string(&k)
        .unwrap()
        .replace("../../catalog", "../../../catalog");
    std::fs::write(&k, text).unwrap();
    git(
        &work,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qam",
            "layout",
        ],
    );
    git(&work, &["push", "-q", "origin", "production"]);
    s.until(TransitionPhase::Syncing, 6).await;
    let log = git(Path::new(&bare), &["log", "--format=%s", "production"]);
    assert!(
        log.lines().next().unwrap().starts_with("transition:"),
        "{log}"
    );
    assert_eq!(commits(&s.repo, "transition:"), 0, "main is untouched");
    let status = s.transition().status.unwrap();
    assert_eq!(status.commits[0].branch.as_deref(), Some("production"));
    assert_eq!(
        status.commits[0].path.as_deref(),
        Some("deploy/envs/cluster2-aws")
    );
    let show = |path: &str| git(Path::new(&bare), &["show", &format!("production:{path}")]);
    let target = show("deploy/envs/cluster2-aws/kustomization.yaml");
    assert!(target.contains("../../../catalog/counter"), "{target}");
    let source = show("deploy/envs/cluster1-azure/kustomization.yaml");
    assert!(!source.contains("catalog/counter"), "fenced: {source}");
}
