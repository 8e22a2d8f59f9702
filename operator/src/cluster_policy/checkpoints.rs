//! The policy's Checkpoints in the management cluster: apply the desired ones that differ, delete
//! the ones no longer wanted, and report each package's newest checkpoint image.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use transition_crds::Checkpoint;
use transition_crds::cluster_policy::ClusterPolicyStatus;

use super::discover::{self, Discovered};
use crate::context::Context;
use crate::k8s::FIELD_MANAGER;

/// A Checkpoint the policy could not apply, list or delete.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("failed to list Checkpoints in {namespace}: {source}")]
    List {
        namespace: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to apply Checkpoint {namespace}/{name}: {source}")]
    Apply {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to delete Checkpoint {namespace}/{name}: {source}")]
    Delete {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The policy's existing Checkpoints (from the cache once it is filled).
pub async fn existing(
    ctx: &Context,
    namespace: &str,
    policy: &str,
) -> Result<Vec<Arc<Checkpoint>>, ApplyError> {
    let label = discover::policy_label(policy);
    ctx.checkpoints(namespace, &[(discover::LABEL_POLICY, label.as_str())])
        .await
        .map_err(|source| ApplyError::List {
            namespace: namespace.to_owned(),
            source,
        })
}

/// Applies the desired Checkpoints that differ from `existing` and deletes the unwanted ones;
/// returns how many are desired and every problem met (the others still go ahead).
pub async fn apply(
    ctx: &Context,
    namespace: &str,
    desired: &Discovered,
    existing: &[Arc<Checkpoint>],
) -> Vec<ApplyError> {
    let api: Api<Checkpoint> = Api::namespaced(ctx.client.clone(), namespace);
    let mut problems = Vec::new();
    let stale = desired
        .checkpoints
        .iter()
        .filter(|c| !existing.iter().any(|e| discover::up_to_date(e, c)));
    for c in stale {
        let name = c.name_any();
        let mut body = serde_json::to_value(c).unwrap_or_default();
        if let Some(o) = body.as_object_mut() {
            o.remove("status");
        }
        if let Err(source) = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
        {
            problems.push(ApplyError::Apply {
                namespace: namespace.to_owned(),
                name,
                source,
            });
        }
    }
    let owned: Vec<Checkpoint> = existing.iter().map(|c| (**c).clone()).collect();
    for name in discover::garbage(&owned, desired) {
        match api.delete(&name, &Default::default()).await {
            Ok(_) => tracing::info!(checkpoint = %name, "checkpoint no longer wanted: deleted"),
            Err(source) => problems.push(ApplyError::Delete {
                namespace: namespace.to_owned(),
                name,
                source,
            }),
        }
    }
    problems
}

/// How much older than its schedule's period a package's newest checkpoint may be before the
/// policy stops claiming it is protected (one period late plus the pipeline's time).
pub const STALE_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// Why the policy does not protect every live-state package as its schedules promise (pure):
/// a package with checkpointable workloads and a schedule must have a checkpoint image younger
/// than twice its shortest schedule period plus [`STALE_GRACE`]. `None`: all are protected.
pub fn unprotected(status: &ClusterPolicyStatus, now: Timestamp) -> Option<String> {
    use crate::checkpoint::schedule::{parse_cron, period};
    let mut problems = Vec::new();
    for p in &status.packages {
        if !p.live_state || !p.workloads.iter().any(|w| w.checkpointable) {
            continue;
        }
        let shortest = p
            .schedules
            .iter()
            .filter_map(|s| s.schedule_period.as_deref())
            .filter_map(|e| parse_cron(e).ok())
            .filter_map(|c| period(&c, now))
            .min();
        let Some(shortest) = shortest else {
            continue; // manual triggers only: no age is promised
        };
        let allowed = shortest * 2 + STALE_GRACE;
        match &p.last_checkpoint_time {
            None => problems.push(format!("package {} has no checkpoint image yet", p.name)),
            Some(t) => {
                let age_ms = (now.as_millisecond() - t.0.as_millisecond()).max(0);
                let age = std::time::Duration::from_millis(u64::try_from(age_ms).unwrap_or(0));
                if age > allowed {
                    problems.push(format!(
                        "package {}'s newest checkpoint is {}s old (its schedule allows {}s): a failover now loses that much state",
                        p.name,
                        age.as_secs(),
                        allowed.as_secs()
                    ));
                }
            }
        }
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// Sets each package's newest checkpoint time and image from the policy's Checkpoints (pure).
pub fn report_newest(status: &mut ClusterPolicyStatus, checkpoints: &[Arc<Checkpoint>]) {
    for p in &mut status.packages {
        let newest = checkpoints
            .iter()
            .filter(|c| {
                c.spec
                    .cluster_ref
                    .as_ref()
                    .and_then(|r| r.package_name.as_deref())
                    == Some(p.name.as_str())
            })
            .filter_map(|c| c.status.as_ref())
            .filter(|s| s.last_checkpoint_image.is_some())
            .max_by_key(|s| s.last_checkpoint_time.as_ref().map(|t| t.0));
        if let Some(s) = newest {
            p.last_checkpoint_time = s.last_checkpoint_time.clone();
            p.last_checkpoint_image = s.last_checkpoint_image.clone();
        }
        p.target_cluster = if p.current_cluster.is_some() {
            None
        } else {
            status.target_cluster.clone()
        };
    }
    status.last_checkpoint_time = stalest(status);
}

/// The oldest newest-checkpoint among the live-state packages with checkpointable workloads
/// (`None` while one has none): the state a failover now would lose (pure).
pub fn stalest(status: &ClusterPolicyStatus) -> Option<Time> {
    let mut times = status
        .packages
        .iter()
        .filter(|p| p.live_state && p.workloads.iter().any(|w| w.checkpointable))
        .map(|p| p.last_checkpoint_time.as_ref().map(|t| t.0))
        .peekable();
    times.peek()?;
    let all: Option<Vec<_>> = times.collect();
    all?.into_iter().min().map(Time)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(last: Option<&str>) -> ClusterPolicyStatus {
        let mut s: ClusterPolicyStatus = serde_json::from_value(serde_json::json!({
            "packages": [{
                "name": "counter", "packageType": "Stateful", "liveState": true,
                "schedules": [{"name": "b", "backupType": "Schedule", "schedulePeriod": "*/3 * * * *"}],
                "workloads": [{"kind": "Deployment", "namespace": "default", "name": "counter",
                               "nodes": ["w"], "checkpointable": true}]
            }]
        }))
        .unwrap();
        s.packages[0].last_checkpoint_time =
            last.map(|t| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t.parse().unwrap()));
        s
    }

    #[test]
    fn the_policy_shows_the_state_a_failover_now_would_lose_and_each_packages_target() {
        let mut s = status(Some("2026-12-02T10:00:00Z"));
        s.target_cluster = Some("cluster2-aws".into());
        let mut other = s.packages[0].clone();
        other.name = "redis".into();
        other.last_checkpoint_time = Some(Time("2026-12-02T09:00:00Z".parse().unwrap()));
        s.packages.push(other);
        report_newest(&mut s, &[]);
        assert_eq!(
            s.last_checkpoint_time.as_ref().map(|t| t.0.to_string()),
            Some("2026-12-02T09:00:00Z".to_owned()),
            "the least recently checkpointed package counts"
        );
        assert_eq!(
            s.packages[0].target_cluster.as_deref(),
            Some("cluster2-aws")
        );
        s.packages[1].last_checkpoint_time = None;
        s.packages[1].current_cluster = Some("cluster2-aws".into());
        report_newest(&mut s, &[]);
        assert_eq!(
            s.last_checkpoint_time, None,
            "a package without a checkpoint: none"
        );
        assert_eq!(
            s.packages[1].target_cluster, None,
            "away: no failover target"
        );
    }

    #[test]
    fn a_package_is_protected_only_with_a_checkpoint_younger_than_its_schedule_allows() {
        let now: Timestamp = "2026-12-02T10:00:00Z".parse().unwrap();
        let none = unprotected(&status(None), now).unwrap();
        assert!(none.contains("no checkpoint image yet"), "{none}");
        assert_eq!(
            unprotected(&status(Some("2026-12-02T09:56:00Z")), now),
            None,
            "4 min < 2 × 3 min + 1 min"
        );
        let stale = unprotected(&status(Some("2026-12-02T09:50:00Z")), now).unwrap();
        assert!(
            stale.contains("600s old") && stale.contains("allows 420s"),
            "{stale}"
        );
        let mut manual = status(None);
        manual.packages[0].schedules.clear();
        assert_eq!(
            unprotected(&manual, now),
            None,
            "manual-only: no age promised"
        );
    }
}
