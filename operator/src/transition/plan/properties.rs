//! Property tests of checking a Transition against its policy: any spec pair never panics; a
//! refusal is one printable line; an accepted plan moves the package between two different
//! clusters and only ever names folders inside the repository.

use std::path::{Component, Path};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{Value, json};

use transition_crds::ClusterPolicy;
use transition_crds::cluster_policy::ClusterPolicySpec;
use transition_crds::transition::{ImageRecord, TransitionSpec};

use super::plan_for;
use crate::cluster_policy::validate::properties::{
    any_json, name, one_of, or_any, policy_spec, re,
};

fn transition_spec() -> BoxedStrategy<Value> {
    (
        name(),
        name(),
        name(),
        one_of(&["NodeFault", "Manual", "Planned"]),
        proptest::option::of(name()),
        proptest::option::of(or_any(re(".{0,16}").prop_map(Value::String))),
    )
        .prop_map(|(package, source, target, trigger, node, reason)| {
            let mut trigger = json!({"type": trigger});
            if let (Some(t), Some(node)) = (trigger.as_object_mut(), node) {
                t.insert("node".into(), node);
            }
            if let (Some(t), Some(reason)) = (trigger.as_object_mut(), reason) {
                t.insert("reason".into(), reason);
            }
            json!({
                "policyRef": {"name": "p1"},
                "package": package,
                "sourceCluster": source,
                "targetCluster": target,
                "trigger": trigger,
            })
        })
        .boxed()
}

/// Packages discovery recorded in the policy's status (`selectMode: All` may move them).
fn discovered() -> BoxedStrategy<Value> {
    vec(
        (
            name(),
            one_of(&["Stateful", "Stateless"]),
            any::<bool>(),
            proptest::option::of(or_any(
                prop_oneof![re("[a-z./]{0,16}"), Just("../../etc".to_owned())]
                    .prop_map(Value::String),
            )),
        )
            .prop_map(|(name, kind, live, path)| {
                let mut p = json!({"name": name, "packageType": kind, "liveState": live});
                if let (Some(o), Some(path)) = (p.as_object_mut(), path) {
                    o.insert("packagePath".into(), path);
                }
                p
            }),
        0..3,
    )
    .prop_map(|packages| json!({ "packages": packages }))
    .boxed()
}

fn image() -> BoxedStrategy<Value> {
    (
        name(),
        proptest::option::of(name()),
        proptest::option::of((name(), name(), name())),
        proptest::option::of(name()),
    )
        .prop_map(|(image, original, workload, container)| {
            let mut i = json!({"image": image, "digest": format!("sha256:{}", "0".repeat(64))});
            if let Some(o) = i.as_object_mut() {
                if let Some(original) = original {
                    o.insert("original".into(), original);
                }
                if let Some((kind, namespace, name)) = workload {
                    o.insert(
                        "workload".into(),
                        json!({"kind": kind, "namespace": namespace, "name": name}),
                    );
                }
                if let Some(container) = container {
                    o.insert("container".into(), container);
                }
            }
            i
        })
        .boxed()
}

/// Whether `p` is a relative path with no `..` (a folder inside the repository).
fn inside(p: &Path) -> bool {
    p.components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

/// A transition spec made to fit the policy (its package, source and a preferred target), so
/// that many cases get past the first checks.
fn fitted(mut t: TransitionSpec, policy: &ClusterPolicySpec, picks: [Index; 2]) -> TransitionSpec {
    if let Some(p) = policy
        .package_selectors
        .get(picks[0].index(policy.package_selectors.len().max(1)))
    {
        t.package = p.name.clone();
    }
    t.source_cluster = policy.cluster_selector.name.clone();
    let prefer = policy
        .target_cluster_policy
        .as_ref()
        .map(|p| &p.prefer_clusters);
    if let Some(c) = prefer.and_then(|p| p.get(picks[1].index(p.len().max(1)))) {
        t.target_cluster = c.name.clone();
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10_000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_transitions_never_panic_and_plans_stay_inside_the_repository(
        policy in policy_spec(),
        status in prop_oneof![3 => discovered(), 1 => any_json()],
        transition in prop_oneof![9 => transition_spec(), 1 => any_json()],
        images in vec(image(), 0..3),
        fit in any::<bool>(),
        picks in any::<[Index; 2]>(),
    ) {
        let (Ok(spec), Ok(t)) = (
            serde_json::from_value::<ClusterPolicySpec>(policy),
            serde_json::from_value::<TransitionSpec>(transition),
        ) else {
            return Ok(());
        };
        let t = if fit { fitted(t, &spec, picks) } else { t };
        let mut policy = ClusterPolicy::new("p1", spec);
        policy.status = serde_json::from_value(status).ok();
        let images: Vec<ImageRecord> =
            images.into_iter().filter_map(|i| serde_json::from_value(i).ok()).collect();
        match plan_for(&t, "ops/p1", &policy, &images) {
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(!msg.is_empty() && !msg.chars().any(char::is_control), "{msg:?}");
            }
            Ok(plan) => {
                let f = &plan.failover;
                prop_assert_ne!(&f.source_cluster, &f.target_cluster);
                let avoided = policy.spec.target_cluster_policy.iter()
                    .flat_map(|p| &p.avoid_clusters)
                    .any(|a| a.name == f.target_cluster);
                prop_assert!(!avoided, "moved to an avoided cluster");
                for dir in [&f.package_path, &f.source_dir, &f.target_dir] {
                    prop_assert!(inside(dir), "{dir:?} leaves the repository: {f:?}");
                }
                let patch = crate::gitops::writer::patch_file(&f.package);
                prop_assert!(inside(Path::new(&patch)) && !patch.contains('/'), "{patch:?}");
                let per_package = plan.clone().in_clusters_dir(Path::new("clusters"), true);
                for dir in [&per_package.failover.source_dir, &per_package.failover.target_dir] {
                    prop_assert!(inside(dir), "{dir:?} leaves the repository");
                }
            }
        }
    }
}

#[test]
fn a_transition_naming_a_folder_outside_the_repository_is_refused() {
    let policy: ClusterPolicySpec = serde_json::from_value(json!({
        "clusterSelector": {"name": "c1", "repo": "r"},
        "packageSelectors": [{"name": "video", "packagePath": "catalog/video", "packageType": "Stateful"}],
        "targetClusterPolicy": {"preferClusters": [{"name": "c2", "weight": 1}]},
    }))
    .unwrap();
    for (package, target) in [("video", "/etc"), ("video", "../../x"), ("../x", "c2")] {
        let t: TransitionSpec = serde_json::from_value(json!({
            "policyRef": {"name": "p1"}, "package": package, "sourceCluster": "c1",
            "targetCluster": target, "trigger": {"type": "Manual"},
        }))
        .unwrap();
        let mut p = policy.clone();
        p.package_selectors[0].name = package.into();
        let e = plan_for(&t, "ops/p1", &ClusterPolicy::new("p1", p), &[]).unwrap_err();
        assert!(e.to_string().contains("cannot name a folder"), "{e}");
    }
}
