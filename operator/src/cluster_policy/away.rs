//! Packages a Transition moved away from the source: their protection follows them. Discovery
//! lists them in the cluster they run on now and keeps their Checkpoints there (so a failback has
//! a fresh state to bring home), the source's listing no longer checkpoints them, and the status
//! says plainly where they are and what that means.

use std::collections::BTreeMap;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use transition_crds::cluster_policy::ClusterPolicyStatus;
use transition_crds::conditions::{self, Status};
use transition_crds::{ClusterPolicy, Transition};

use crate::context::Context;
use crate::transition::{Occurrence, occurrence};

/// Condition: some packages run away from the source cluster.
pub const AWAY: &str = "PackagesAway";

/// A package living elsewhere: the cluster and the Transition that took it there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Away {
    pub cluster: String,
    pub transition: String,
}

/// The packages of `status` whose newest completed Transition took them away (pure).
pub fn away(
    policy: &ClusterPolicy,
    status: &ClusterPolicyStatus,
    transitions: &[Transition],
) -> BTreeMap<String, Away> {
    let source = &policy.spec.cluster_selector.name;
    let policy_name = policy.name_any();
    // A failback under way: the package still runs where it comes back from.
    let returning = |package: &str| {
        transitions.iter().find(|t| {
            t.spec.policy_ref.name == policy_name
                && t.spec.package == package
                && &t.spec.source_cluster != source
                && !t
                    .status
                    .as_ref()
                    .and_then(|s| s.phase)
                    .is_some_and(|p| p.is_terminal())
        })
    };
    status
        .packages
        .iter()
        .filter_map(|p| {
            if let Some(t) = returning(&p.name) {
                return Some((
                    p.name.clone(),
                    Away {
                        cluster: t.spec.source_cluster.clone(),
                        transition: t.name_any(),
                    },
                ));
            }
            match occurrence(policy, &p.name, source, transitions) {
                Occurrence::MovedAway {
                    transition,
                    cluster,
                } => Some((
                    p.name.clone(),
                    Away {
                        cluster,
                        transition,
                    },
                )),
                _ => None,
            }
        })
        .collect()
}

/// [`away`] from the Transitions in the policy's namespace; a failed LIST is logged and
/// treated as "nothing moved" (the previous behaviour), never as a move.
pub async fn list_away(
    policy: &ClusterPolicy,
    ns: &str,
    ctx: &Context,
    status: &ClusterPolicyStatus,
) -> BTreeMap<String, Away> {
    let api: Api<Transition> = Api::namespaced(ctx.client.clone(), ns);
    match api.list(&ListParams::default()).await {
        Ok(list) => away(policy, status, &list.items),
        Err(e) => {
            tracing::warn!(policy = %policy.name_any(), error = %e, "failed to list Transitions: packages taken as at home");
            BTreeMap::new()
        }
    }
}

/// Records where moved packages run (`packages[].currentCluster`) and the [`AWAY`] condition
/// (pure).
pub fn report(
    policy: &ClusterPolicy,
    status: &mut ClusterPolicyStatus,
    away: &BTreeMap<String, Away>,
    generation: Option<i64>,
    now: Timestamp,
) {
    for p in &mut status.packages {
        p.current_cluster = away.get(&p.name).map(|a| a.cluster.clone());
    }
    let source = &policy.spec.cluster_selector.name;
    let (state, reason, message) = if away.is_empty() {
        (
            Status::False,
            "AllHome",
            format!("every package runs on {source}"),
        )
    } else {
        let list: Vec<String> = away
            .iter()
            .map(|(p, a)| format!("{p} runs on {} (Transition {})", a.cluster, a.transition))
            .collect();
        (
            Status::True,
            "FailedOver",
            format!(
                "{}: checkpointed there on the same schedules, but a fault there is not failed over automatically; a Planned Transition back to {source} fails it back",
                list.join("; ")
            ),
        )
    };
    conditions::set(
        &mut status.conditions,
        AWAY,
        state,
        reason,
        message,
        generation,
        now,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_moved_by_a_completed_transition_is_away_and_said_so() {
        let policy: ClusterPolicy = serde_saphyr::from_str(
            r#"
apiVersion: transition.dcnlab.ssu.ac.kr/v1
kind: ClusterPolicy
metadata: {name: p1, namespace: ops}
spec:
  clusterSelector: {name: cluster1-azure, repo: "http://git/c1.git", repoType: git}
  selectMode: Specific
  packageSelectors:
    - {name: counter, packagePath: catalog/counter, packageType: Stateful, liveStatePackage: true}
  targetClusterPolicy: {preferClusters: [{name: cluster2-aws, repoType: git, weight: 100}]}
status:
  packages: [{name: counter, packageType: Stateful, liveState: true}]
"#,
        )
        .unwrap();
        let moved: Transition = serde_json::from_value(serde_json::json!({
            "apiVersion": "transition.dcnlab.ssu.ac.kr/v1alpha1", "kind": "Transition",
            "metadata": {"name": "p1-counter-1", "namespace": "ops"},
            "spec": {"policyRef": {"name": "p1"}, "package": "counter", "sourceCluster": "cluster1-azure",
                     "targetCluster": "cluster2-aws", "trigger": {"type": "NodeFault", "node": "w1"}},
            "status": {"phase": "Completed", "completedAt": "2026-12-02T10:00:00.000000Z"}
        }))
        .unwrap();
        let mut status = policy.status.clone().unwrap();
        let found = away(&policy, &status, std::slice::from_ref(&moved));
        assert_eq!(found["counter"].cluster, "cluster2-aws");
        report(&policy, &mut status, &found, None, Timestamp::UNIX_EPOCH);
        assert_eq!(
            status.packages[0].current_cluster.as_deref(),
            Some("cluster2-aws")
        );
        let c = conditions::find(&status.conditions, AWAY).unwrap();
        assert_eq!(c.status, "True");
        assert!(
            c.message
                .contains("counter runs on cluster2-aws (Transition p1-counter-1)")
                && c.message.contains("not failed over automatically"),
            "{}",
            c.message
        );
        // A failback under way: still away until it completes.
        let mut back = moved.clone();
        back.metadata.name = Some("p1-counter-failback".into());
        back.spec.source_cluster = "cluster2-aws".into();
        back.spec.target_cluster = "cluster1-azure".into();
        back.status = None;
        let returning = away(&policy, &status, &[moved.clone(), back]);
        assert_eq!(returning["counter"].cluster, "cluster2-aws");
        assert_eq!(returning["counter"].transition, "p1-counter-failback");
        let home = away(&policy, &status, &[]);
        report(&policy, &mut status, &home, None, Timestamp::UNIX_EPOCH);
        assert_eq!(status.packages[0].current_cluster, None);
    }
}
