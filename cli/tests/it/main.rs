//! The `kubectl-transition` BINARY against the lab's REAL management kube-apiserver: table and
//! JSON contents, exit codes, and `move`/`checkpoint` following real objects. The operator is not
//! running here: a stand-in task writes the statuses the transition-operator would (its own
//! behaviour is tested in the operator crate); the CLI only reads and waits.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::process::Output;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use transition_crds::{Checkpoint, ClusterPolicy, Transition};
use transition_testlab::{Lab, fresh_namespace};

struct Env {
    client: kube::Client,
    ns: String,
    kubeconfig: std::path::PathBuf,
}

async fn env() -> Env {
    let lab = Lab::get().unwrap();
    let mgmt = lab.clusters()[0].clone();
    let client = lab.kube_client(&mgmt).await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in transition_crds::all_crds() {
        crds.patch(
            &crd.name_any(),
            &PatchParams::apply("kubectl-transition-test").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
    }
    let ns = fresh_namespace(&client, "cli").await.unwrap();
    // Established takes a moment after a fresh install.
    let policies: Api<ClusterPolicy> = Api::namespaced(client.clone(), &ns);
    for _ in 0..50 {
        if policies.list(&ListParams::default()).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Env {
        client,
        ns,
        kubeconfig: lab.cluster(&mgmt).unwrap().kubeconfig,
    }
}

impl Env {
    async fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-transition"));
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["-n", &self.ns])
            .args(args)
            .env("NO_COLOR", "1");
        tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .unwrap()
            .unwrap()
    }

    /// A policy with the status the operator would have written.
    async fn policy(&self, name: &str, current_cluster: Option<&str>) -> ClusterPolicy {
        let api: Api<ClusterPolicy> = Api::namespaced(self.client.clone(), &self.ns);
        let p: ClusterPolicy = serde_json::from_value(json!({
            "apiVersion": "transition.dcnlab.ssu.ac.kr/v1", "kind": "ClusterPolicy",
            "metadata": {"name": name},
            "spec": {"clusterSelector": {"name": "cluster1-azure", "repo": "http://g/r.git", "repoType": "git"},
                     "selectMode": "Specific",
                     "packageSelectors": [{"name": "counter", "packagePath": "catalog/counter",
                                           "packageType": "Stateful", "liveStatePackage": true}],
                     "targetClusterPolicy": {"preferClusters": [{"name": "cluster2-aws", "repoType": "git", "weight": 100}]}}
        }))
        .unwrap();
        let created = api.create(&PostParams::default(), &p).await.unwrap();
        let ten_s_ago =
            k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(10);
        let mut package = json!({"name": "counter", "packageType": "Stateful", "liveState": true,
            "lastCheckpointTime": ten_s_ago.to_string(),
            "lastCheckpointImage": "r/c@sha256:aa",
            "workloads": [{"kind": "Deployment", "namespace": "default", "name": "counter",
                           "nodes": ["worker-1"], "checkpointable": true}]});
        match current_cluster {
            Some(c) => package["currentCluster"] = json!(c),
            None => package["targetCluster"] = json!("cluster2-aws"),
        }
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {
                "targetCluster": "cluster2-aws", "lastCheckpointTime": ten_s_ago.to_string(),
                "conditions": [{"type": "Ready", "status": "True", "reason": "Protected",
                                "message": "1 package(s) protected", "lastTransitionTime": ten_s_ago.to_string()}],
                "packages": [package]}})),
        )
        .await
        .unwrap();
        created
    }

    /// Plays the operator for the first Transition that appears: walks it through `phases`,
    /// then ends it in `end` (with `extra` merged into the final status).
    fn operator_stand_in(&self, phases: &'static [&'static str], end: &'static str, extra: Value) {
        let api: Api<Transition> = Api::namespaced(self.client.clone(), &self.ns);
        tokio::spawn(async move {
            let t = loop {
                if let Some(t) = api.list(&ListParams::default()).await.unwrap().items.pop() {
                    break t;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let name = t.name_any();
            let mut status = transition_crds::transition::TransitionStatus::default();
            for p in phases {
                let phase = serde_json::from_value(json!(p)).unwrap();
                status.enter_phase(phase, k8s_openapi::jiff::Timestamp::now());
                api.patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": status})),
                )
                .await
                .unwrap();
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            status.enter_phase(
                serde_json::from_value(json!(end)).unwrap(),
                k8s_openapi::jiff::Timestamp::now(),
            );
            let mut body = serde_json::to_value(&status).unwrap();
            json_merge(&mut body, extra);
            api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": body})),
            )
            .await
            .unwrap();
        });
    }
}

fn json_merge(a: &mut Value, b: Value) {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        for (k, v) in b {
            a.insert(k, v);
        }
    }
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_each_package_in_a_table_and_as_json_and_a_missing_policy_exits_2() {
    let e = env().await;
    e.policy("counter-policy", None).await;
    let out = e.cli(&["status"]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("counter-policy  Ready  cluster1-azure → cluster2-aws"),
        "{stdout}"
    );
    let row = stdout
        .lines()
        .find(|l| l.starts_with("  counter  "))
        .unwrap();
    assert!(
        row.contains("cluster2-aws") && row.contains("s ago"),
        "{row}"
    );

    let out = e.cli(&["status", "counter-policy", "-o", "json"]).await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["packages"][0]["name"], "counter");
    assert_eq!(v[0]["packages"][0]["target"], "cluster2-aws");
    let age = v[0]["packages"][0]["checkpointAgeSeconds"]
        .as_u64()
        .unwrap();
    assert!((9..120).contains(&age), "{age}");

    let out = e.cli(&["status", "nope"]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("ClusterPolicy") && stderr.contains("nope") && stderr.contains("not found"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_follows_the_real_transition_phase_by_phase_and_a_failure_exits_1() {
    let e = env().await;
    e.policy("p", None).await;
    e.operator_stand_in(
        &["Pending", "Checkpointing", "Committing", "Syncing", "Verifying", "Fencing"],
        "Completed",
        json!({"message": "counter moved", "commits": [{"repo": "http://g/r.git", "sha": "0123456789abcdef", "path": "clusters/cluster2-aws"}]}),
    );
    let out = e
        .cli(&["move", "p", "counter", "--to", "cluster2-aws"])
        .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    for needle in [
        "→ Checkpointing",
        "✓ Committing",
        "Completed: counter moved",
        "commit 0123456789ab",
    ] {
        assert!(stdout.contains(needle), "{needle} in:\n{stdout}");
    }
    let list = Api::<Transition>::namespaced(e.client.clone(), &e.ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let t = &list.items[0];
    assert_eq!(
        t.spec.trigger.type_,
        transition_crds::transition::TriggerType::Planned
    );
    assert_eq!(t.spec.target_cluster, "cluster2-aws");

    // A failback of a package at home: nothing to do, exit 2.
    let out = e.cli(&["failback", "p", "counter"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("nothing to fail back"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_failback_exits_1_with_the_operators_reason_and_a_dry_run_prints_the_diff() {
    let e = env().await;
    e.policy("away", Some("cluster2-aws")).await;
    e.operator_stand_in(
        &["Pending"],
        "Failed",
        json!({"message": "target cluster cluster1-azure cannot restore the checkpoints: restore is turned off"}),
    );
    let out = e.cli(&["failback", "away", "counter"]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("counter cluster2-aws → cluster1-azure"),
        "{stdout}"
    );
    assert!(stderr.contains("cannot restore"), "{stderr}");

    let e = env().await;
    e.policy("dry", None).await;
    e.operator_stand_in(
        &["Pending"],
        "DryRun",
        json!({"message": "dry run: nothing was changed", "dryRun": [{"repo": "http://g/r.git",
               "path": "clusters/cluster2-aws", "diff": "+++ b/clusters/cluster2-aws/kustomization.yaml\n+  - ../../catalog/counter\n"}]}),
    );
    let out = e
        .cli(&[
            "move",
            "dry",
            "counter",
            "--to",
            "cluster2-aws",
            "--dry-run",
        ])
        .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("nothing was changed") && stdout.contains("+  - ../../catalog/counter"),
        "{stdout}"
    );
    let t = Api::<Transition>::namespaced(e.client.clone(), &e.ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .remove(0);
    assert_eq!(t.spec.dry_run, Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_asks_each_checkpoint_waits_for_the_image_and_times_out_with_exit_3() {
    let e = env().await;
    let p = e.policy("ck", None).await;
    let api: Api<Checkpoint> = Api::namespaced(e.client.clone(), &e.ns);
    let c: Checkpoint = serde_json::from_value(json!({
        "apiVersion": "transition.dcnlab.ssu.ac.kr/v1", "kind": "Checkpoint",
        "metadata": {"name": "checkpoint-ck-counter-a-counter",
                     "ownerReferences": [{"apiVersion": "transition.dcnlab.ssu.ac.kr/v1", "kind": "ClusterPolicy",
                                          "name": "ck", "uid": p.uid().unwrap()}]},
        "spec": {"schedule": "@manual", "clusterRef": {"name": "cluster1-azure", "packageName": "counter"},
                 "podRef": {"namespace": "default", "name": "counter-a", "containerRef": {"containers": [{"name": "counter"}]}},
                 "resourceRef": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "default", "name": "counter"},
                 "registry": {"url": "http://r", "repository": "c"},
                 "containers": [{"name": "counter", "image": "busybox:1.36"}]}
    }))
    .unwrap();
    api.create(&PostParams::default(), &c).await.unwrap();
    // Nobody answers: exit 3 after the timeout, naming what it waited for.
    let out = e.cli(&["checkpoint", "ck", "--timeout", "2"]).await;
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    assert!(text(&out).1.contains("timed out after 2s"));
    // The stand-in answers the next token the CLI puts on the Checkpoint.
    let (api2, name) = (api.clone(), c.name_any());
    let key = "transition.dcnlab.ssu.ac.kr/checkpoint-for";
    let old = api
        .get(&name)
        .await
        .unwrap()
        .annotations()
        .get(key)
        .cloned();
    assert!(
        old.as_deref().is_some_and(|t| t.starts_with("cli-")),
        "the first call asked too"
    );
    tokio::spawn(async move {
        loop {
            let c = api2.get(&name).await.unwrap();
            let token = c.annotations().get(key).cloned();
            if let Some(t) = token.filter(|t| Some(t) != old.as_ref()) {
                let status = json!({"status": {"lastTransitionToken": t, "phase": "Completed",
                    "history": [{"time": "2026-12-02T10:00:00Z", "container": "counter",
                                 "image": "r/c@sha256:bb", "trigger": format!("transition:{t}")}]}});
                api2.patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                    .await
                    .unwrap();
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let out = e.cli(&["checkpoint", "ck", "counter"]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("counter") && stdout.contains("r/c@sha256:bb"),
        "{stdout}"
    );
    let out = e.cli(&["checkpoint", "ck", "redis"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("no package redis"),
        "{:?}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_lists_transitions_and_completion_scripts_are_generated() {
    let e = env().await;
    e.policy("h", None).await;
    e.operator_stand_in(&["Pending", "Committing"], "Completed", json!({}));
    let out = e
        .cli(&["move", "h", "counter", "--to", "cluster2-aws"])
        .await;
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let out = e.cli(&["history"]).await;
    let (stdout, _) = text(&out);
    assert!(
        stdout.contains("TRANSITION")
            && stdout.contains("cluster1-azure → cluster2-aws")
            && stdout.contains("Completed"),
        "{stdout}"
    );
    let out = e.cli(&["history", "h", "-o", "json"]).await;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    let out = e.cli(&["completion", "bash"]).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("kubectl-transition"));
}

/// Whether a tmux server can be used here.
fn tmux() -> Option<std::path::PathBuf> {
    let ok = std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then(|| "tmux".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_terminal_status_is_coloured_and_a_move_shows_its_phases_as_they_happen() {
    // A real terminal (tmux, screen captured with its escape codes), as a person sees it.
    let tmux = tmux().expect("tmux is installed by hack/install.sh");
    let e = env().await;
    e.policy("tty", None).await;
    e.operator_stand_in(
        &["Pending", "Checkpointing", "Committing"],
        "Completed",
        json!({"message": "counter moved"}),
    );
    let bin = env!("CARGO_BIN_EXE_kubectl-transition");
    let kt = format!("{bin} --kubeconfig {} -n {}", e.kubeconfig.display(), e.ns);
    let script =
        format!("{kt} status; {kt} move tty counter --to cluster2-aws; echo EXIT=$?; sleep 60");
    let session = format!("kt-{}-{}", std::process::id(), e.ns);
    let run = |args: &[&str]| {
        std::process::Command::new(&tmux)
            .args(args)
            .env_remove("NO_COLOR")
            .env_remove("TMUX")
            .output()
            .unwrap()
    };
    let started = run(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "200",
        "-y",
        "60",
        &script,
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let screen = loop {
        let shot = run(&["capture-pane", "-p", "-e", "-t", &session]);
        let text = String::from_utf8_lossy(&shot.stdout).into_owned();
        if text.contains("EXIT=") || tokio::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    run(&["kill-session", "-t", &session]);
    assert!(screen.contains("EXIT=0"), "{screen}");
    assert!(
        screen.contains("\u{1b}[32mReady"),
        "Ready in green on a terminal:\n{screen}"
    );
    for needle in [
        "PACKAGE",
        "→ Checkpointing",
        "✓ Committing",
        "Completed: counter moved",
    ] {
        assert!(screen.contains(needle), "{needle} on the screen:\n{screen}");
    }
}
