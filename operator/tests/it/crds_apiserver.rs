//! Against the lab's REAL kube-apiserver v1.20.2 (management cluster): the CRDs install, the seed's
//! ClusterPolicy applies unchanged and round-trips through the Rust type, and malformed manifests
//! are rejected by the API server with messages naming the bad field.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::Value;
use transition_crds::{ClusterPolicy, Transition};
use transition_operator::k8s::crd_install::install_crds;
use transition_testlab::{Lab, fresh_namespace};

const SEED: &str = include_str!("../../../catalog/policies/seed/clusterpolicy-sample.yaml");

async fn mgmt() -> kube::Client {
    let lab = Lab::get().unwrap();
    let client = lab.kube_client(&lab.clusters()[0]).await.unwrap();
    install_crds(&client, Duration::from_secs(60))
        .await
        .unwrap();
    client
}

fn dynamic_api(
    client: &kube::Client,
    ns: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("transition.dcnlab.ssu.ac.kr", version, kind);
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

fn seed_value() -> Value {
    serde_saphyr::from_str(SEED).unwrap()
}

async fn create(api: &Api<DynamicObject>, manifest: Value) -> Result<DynamicObject, kube::Error> {
    let obj: DynamicObject = serde_json::from_value(manifest).unwrap();
    api.create(&PostParams::default(), &obj).await
}

#[tokio::test]
async fn the_seed_cluster_policy_applies_unchanged_and_round_trips_through_the_rust_type() {
    let client = mgmt().await;
    let ns = fresh_namespace(&client, "crd-seed").await.unwrap();
    let api = dynamic_api(&client, &ns, "v1", "ClusterPolicy", "clusterpolicies");
    let created = create(&api, seed_value())
        .await
        .expect("the seed manifest is accepted as is");

    let typed: ClusterPolicy = Api::namespaced(client.clone(), &ns)
        .get("clusterpolicy-sample")
        .await
        .unwrap();
    let mut local: ClusterPolicy = serde_saphyr::from_str(SEED).unwrap();
    assert_eq!(local.spec.transition_mode, None, "the seed leaves it out");
    assert_eq!(
        typed.spec.transition_mode,
        Some(transition_crds::cluster_policy::TransitionMode::Automatic),
        "the schema's default is filled in (the Transition column shows it)"
    );
    local.spec.transition_mode = typed.spec.transition_mode;
    assert_eq!(
        typed.spec, local.spec,
        "server copy reads back into the same Rust spec"
    );
    assert_eq!(
        serde_json::to_value(&typed.spec).unwrap(),
        created.data["spec"],
        "Rust type writes back what the server stores"
    );
    let seed_spec = &seed_value()["spec"];
    for field in [
        "clusterSelector",
        "selectMode",
        "packageSelectors",
        "targetClusterPolicy",
    ] {
        assert!(
            created.data["spec"].get(field).is_some(),
            "server kept spec.{field}"
        );
    }
    assert_eq!(created.data["spec"]["selectMode"], seed_spec["selectMode"]);
    assert_eq!(
        created.data["spec"]["packageSelectors"][0]["backupInformation"],
        seed_spec["packageSelectors"][0]["backupInformation"]
    );
}

/// Each case: (what is wrong, how to break the seed, the field path the API server must name).
/// API server 1.20 names schema violations without list indices (`spec.packageSelectors.packageType`).
type Mutation = fn(&mut Value);

#[tokio::test]
async fn malformed_cluster_policies_are_rejected_with_the_bad_field_named() {
    let client = mgmt().await;
    let ns = fresh_namespace(&client, "crd-bad").await.unwrap();
    let api = dynamic_api(&client, &ns, "v1", "ClusterPolicy", "clusterpolicies");
    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "unknown selectMode",
            |v| v["spec"]["selectMode"] = "Sometimes".into(),
            "spec.selectMode",
        ),
        (
            "missing packageType",
            |v| {
                v["spec"]["packageSelectors"][0]
                    .as_object_mut()
                    .unwrap()
                    .remove("packageType");
            },
            "spec.packageSelectors.packageType",
        ),
        (
            "weight above 100",
            |v| v["spec"]["targetClusterPolicy"]["preferClusters"][0]["weight"] = 101.into(),
            "spec.targetClusterPolicy.preferClusters.weight",
        ),
        (
            "empty cluster name",
            |v| v["spec"]["clusterSelector"]["name"] = "".into(),
            "spec.clusterSelector.name",
        ),
        (
            "schedule that is not cron",
            |v| {
                v["spec"]["packageSelectors"][0]["backupInformation"][0]["schedulePeriod"] =
                    "every three minutes".into()
            },
            "spec.packageSelectors.backupInformation.schedulePeriod",
        ),
        (
            "unknown backupType",
            |v| {
                v["spec"]["packageSelectors"][0]["backupInformation"][0]["backupType"] =
                    "Hourly".into()
            },
            "spec.packageSelectors.backupInformation.backupType",
        ),
        (
            "missing clusterSelector",
            |v| {
                v["spec"].as_object_mut().unwrap().remove("clusterSelector");
            },
            "spec.clusterSelector",
        ),
        (
            "duplicate package names",
            |v| {
                let first = v["spec"]["packageSelectors"][0].clone();
                v["spec"]["packageSelectors"]
                    .as_array_mut()
                    .unwrap()
                    .push(first);
            },
            "spec.packageSelectors[1]",
        ),
    ];
    for (i, (what, mutate, field)) in cases.into_iter().enumerate() {
        let mut manifest = seed_value();
        manifest["metadata"]["name"] = format!("bad-{i}").into();
        mutate(&mut manifest);
        match create(&api, manifest).await {
            Err(kube::Error::Api(status)) => {
                eprintln!("{what}: {}", status.message);
                assert_eq!(status.code, 422, "{what}: {}", status.message);
                assert!(
                    status.message.contains(field),
                    "{what}: message {:?} does not name {field}",
                    status.message
                );
            }
            other => panic!("{what}: expected a 422 rejection, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_node_fault_transition_without_a_node_is_rejected_and_a_complete_one_is_accepted() {
    let client = mgmt().await;
    let ns = fresh_namespace(&client, "crd-tr").await.unwrap();
    let api = dynamic_api(&client, &ns, "v1alpha1", "Transition", "transitions");
    let manifest = |name: &str, trigger: Value| {
        serde_json::json!({
            "apiVersion": "transition.dcnlab.ssu.ac.kr/v1alpha1", "kind": "Transition",
            "metadata": {"name": name},
            "spec": {"policyRef": {"name": "clusterpolicy-sample"}, "package": "video",
                     "sourceCluster": "cluster1-azure", "targetCluster": "cluster2-aws", "trigger": trigger}
        })
    };
    let err = create(
        &api,
        manifest("no-node", serde_json::json!({"type": "NodeFault"})),
    )
    .await
    .unwrap_err();
    match err {
        kube::Error::Api(status) => assert!(
            status.message.contains("spec.trigger"),
            "{}",
            status.message
        ),
        other => panic!("expected an API rejection, got {other:?}"),
    }
    create(
        &api,
        manifest(
            "fault",
            serde_json::json!({"type": "NodeFault", "node": "worker-1"}),
        ),
    )
    .await
    .unwrap();
    create(
        &api,
        manifest("manual", serde_json::json!({"type": "Manual"})),
    )
    .await
    .unwrap();
    let typed: Transition = Api::namespaced(client, &ns).get("fault").await.unwrap();
    assert_eq!(typed.spec.trigger.node.as_deref(), Some("worker-1"));
}

/// `kubectl get transition NAME` is the Transition, not the category (it used to be both: kubectl
/// 1.20 refused with "only one resource"), and the short names do not collide with Kyverno's
/// `cpol`: checked with the lab's real kubectl against the real apiserver.
#[tokio::test]
async fn kubectl_resolves_the_kind_names_and_short_names_and_the_category_lists_all_kinds() {
    let client = mgmt().await;
    let lab = Lab::get().unwrap();
    let ns = fresh_namespace(&client, "names").await.unwrap();
    let t: Transition = serde_json::from_value(serde_json::json!({
        "apiVersion": "transition.dcnlab.ssu.ac.kr/v1alpha1", "kind": "Transition",
        "metadata": {"name": "x", "namespace": ns},
        "spec": {"policyRef": {"name": "p"}, "package": "counter", "sourceCluster": "a",
                 "targetCluster": "b", "trigger": {"type": "Manual"}}
    }))
    .unwrap();
    Api::<Transition>::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &t)
        .await
        .unwrap();
    let kubeconfig = lab.cluster(&lab.clusters()[0]).unwrap().kubeconfig;
    let kubectl = |args: &[&str]| {
        let out = std::process::Command::new(lab.tool("kubectl").unwrap())
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["-n", &ns])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (ok, out) = kubectl(&["get", "transition", "x", "-o", "name"]);
    assert!(
        ok && out.trim() == "transition.transition.dcnlab.ssu.ac.kr/x",
        "{out}"
    );
    let (ok, out) = kubectl(&["get", "tr", "x", "-o", "name"]);
    assert!(ok && out.contains("/x"), "{out}");
    let (ok, out) = kubectl(&["get", "tr", "x", "-o", "wide"]);
    let header = out.lines().next().unwrap_or_default();
    for column in ["POLICY", "PACKAGE", "NODE", "PHASE", "TOOK", "MESSAGE"] {
        assert!(ok && header.contains(column), "{column} in {out}");
    }
    let (ok, out) = kubectl(&["get", "tpol"]);
    assert!(ok, "the ClusterPolicy short name resolves: {out}");
    // The printer columns: target and the age of the state a failover now would lose.
    let policy: transition_crds::ClusterPolicy = serde_saphyr::from_str(
        "apiVersion: transition.dcnlab.ssu.ac.kr/v1\nkind: ClusterPolicy\nmetadata: {name: cols}\nspec:\n  clusterSelector: {name: c1, repo: \"http://g/r.git\", repoType: git}\n  selectMode: Specific\n  packageSelectors: [{name: counter, packagePath: catalog/counter, packageType: Stateful}]\n",
    )
    .unwrap();
    let policies = Api::<transition_crds::ClusterPolicy>::namespaced(client.clone(), &ns);
    policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let ten_minutes_ago =
        k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(600);
    policies
        .patch_status(
            "cols",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"status": {
                "targetCluster": "c2", "lastCheckpointTime": ten_minutes_ago.to_string()}})),
        )
        .await
        .unwrap();
    let (ok, out) = kubectl(&["get", "tpol", "cols"]);
    let header = out.lines().next().unwrap_or_default();
    for column in [
        "SOURCE",
        "TARGET",
        "TRANSITION",
        "PACKAGES",
        "CHECKPOINTED",
        "READY",
    ] {
        assert!(ok && header.contains(column), "{column} in {out}");
    }
    assert!(
        out.contains("Automatic"),
        "the defaulted transition mode: {out}"
    );
    assert!(
        out.contains("c2") && out.contains("10m"),
        "the age of the newest state: {out}"
    );
    let (ok, out) = kubectl(&["get", "transition-all", "-o", "name"]);
    assert!(
        ok && out.contains("transition.transition.dcnlab.ssu.ac.kr/x"),
        "{out}"
    );
}

/// `kubectl explain` is the first doc users read: on the lab's real kube-apiserver (v1.20, which
/// publishes OpenAPI v2 and drops the type of nullable fields) every spec field of the kinds
/// people write shows its type, and the recursion reaches every nested object.
#[tokio::test]
async fn kubectl_explain_shows_every_spec_field_people_write_with_its_type() {
    let _client = mgmt().await;
    let lab = Lab::get().unwrap();
    let kubeconfig = lab.cluster(&lab.clusters()[0]).unwrap().kubeconfig;
    for kind in ["clusterpolicy.spec", "transition.spec"] {
        let explain = || {
            let out = std::process::Command::new(lab.tool("kubectl").unwrap())
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["explain", kind, "--recursive"])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        // The API server republishes its OpenAPI a moment after a CRD changes.
        let mut text = explain();
        for _ in 0..20 {
            if text.contains("FIELDS:") && !text.contains("<>") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            text = explain();
        }
        let untyped: Vec<&str> = text.lines().filter(|l| l.contains("<>")).collect();
        assert!(
            text.contains("FIELDS:") && untyped.is_empty(),
            "{kind}: fields without a type: {untyped:?}\n{text}"
        );
    }
}
