//! Which preferred targets can restore the policy's checkpoints (from the agents' reports on both
//! sides, [`crate::detect::restore`]): shown per target in `status.targets`; target choice skips
//! those that cannot, and with none left the policy is not Ready.

use k8s_openapi::jiff::Timestamp;
use transition_crds::cluster_policy::{ClusterPolicySpec, ClusterPolicyStatus, TargetStatus};
use transition_crds::conditions::{self, Status};

use super::validate::choose_target_excluding;
use crate::detect::restore::Verdict;

/// The source nodes whose checkpoints a failover would restore: where live-state pods run.
pub fn source_nodes(status: &ClusterPolicyStatus) -> Vec<String> {
    let mut nodes: Vec<String> = status
        .packages
        .iter()
        .filter(|p| p.live_state)
        .flat_map(|p| &p.workloads)
        .filter(|w| w.checkpointable)
        .flat_map(|w| w.nodes.iter().cloned())
        .collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

/// Records `verdicts` (one per preferred target, in spec order) in `status` (pure): the targets
/// list, the target choice without the clusters that cannot restore, and `Ready=False`
/// (`NoTargetCanRestore`) when a failover would have nowhere to go.
pub fn record(
    spec: &ClusterPolicySpec,
    status: &mut ClusterPolicyStatus,
    verdicts: &[(String, Verdict)],
    generation: Option<i64>,
    now: Timestamp,
) {
    status.targets = verdicts
        .iter()
        .map(|(name, v)| TargetStatus {
            name: name.clone(),
            restore: v.word().to_owned(),
            message: v.message(),
        })
        .collect();
    let Some(before) = status.target_cluster.clone() else {
        return; // transitionMode: None or an invalid spec: no target to choose.
    };
    let cannot: Vec<String> = verdicts
        .iter()
        .filter(|(_, v)| v.cannot())
        .map(|(n, _)| n.clone())
        .collect();
    let chosen = choose_target_excluding(spec, &cannot).map(str::to_owned);
    status.target_cluster = chosen.clone();
    match chosen {
        Some(now_target) if now_target != before => {
            if let Some(ready) = conditions::find(&status.conditions, conditions::READY)
                .filter(|c| c.status == "True")
                .cloned()
            {
                conditions::set(
                    &mut status.conditions,
                    conditions::READY,
                    Status::True,
                    &ready.reason,
                    ready.message.replace(
                        &format!("failover target {before}"),
                        &format!("failover target {now_target} ({before} cannot restore)"),
                    ),
                    generation,
                    now,
                );
            }
        }
        Some(_) => {}
        None => {
            let why = verdicts
                .iter()
                .filter(|(_, v)| v.cannot())
                .map(|(_, v)| v.message())
                .collect::<Vec<_>>()
                .join("; ");
            conditions::set(
                &mut status.conditions,
                conditions::READY,
                Status::False,
                "NoTargetCanRestore",
                format!("no preferred target can restore the checkpoints: {why}"),
                generation,
                now,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
clusterSelector: {name: cluster1-azure, repo: "http://git/c1.git", repoType: git}
selectMode: Specific
packageSelectors:
  - {name: counter, packagePath: catalog/counter, packageType: Stateful, liveStatePackage: true}
targetClusterPolicy:
  preferClusters:
    - {name: cluster2-aws, repoType: git, weight: 100}
    - {name: cluster3, repoType: git, weight: 50}
"#;

    fn ready(status: &ClusterPolicyStatus) -> (String, String, String) {
        let c = conditions::find(&status.conditions, conditions::READY).unwrap();
        (c.status.clone(), c.reason.clone(), c.message.clone())
    }

    #[test]
    fn a_target_that_cannot_restore_is_skipped_and_none_left_is_not_ready() {
        let spec: ClusterPolicySpec = serde_saphyr::from_str(SPEC).unwrap();
        let mut status = ClusterPolicyStatus {
            target_cluster: Some("cluster2-aws".into()),
            ..Default::default()
        };
        let now = Timestamp::UNIX_EPOCH;
        conditions::set(
            &mut status.conditions,
            conditions::READY,
            Status::True,
            "Protected",
            "1 package(s) of cluster1-azure protected; failover target cluster2-aws",
            None,
            now,
        );
        let off = Verdict::Cannot("cluster cluster2-aws cannot restore the checkpoints: node t1: restore from checkpoint images is turned off".into());
        let verdicts = vec![
            ("cluster2-aws".to_owned(), off.clone()),
            ("cluster3".to_owned(), Verdict::Unknown("no agent".into())),
        ];
        let mut s = status.clone();
        record(&spec, &mut s, &verdicts, None, now);
        assert_eq!(s.target_cluster.as_deref(), Some("cluster3"));
        assert_eq!(s.targets[0].restore, "CannotRestore");
        assert!(s.targets[0].message.contains("turned off"));
        let (state, _, message) = ready(&s);
        assert_eq!(state, "True");
        assert!(
            message.contains("failover target cluster3 (cluster2-aws cannot restore)"),
            "{message}"
        );

        let mut s = status;
        let none = vec![
            ("cluster2-aws".to_owned(), off.clone()),
            ("cluster3".to_owned(), off),
        ];
        record(&spec, &mut s, &none, None, now);
        assert_eq!(s.target_cluster, None);
        let (state, reason, message) = ready(&s);
        assert_eq!(
            (state.as_str(), reason.as_str()),
            ("False", "NoTargetCanRestore")
        );
        assert!(message.contains("turned off"), "{message}");
    }
}
