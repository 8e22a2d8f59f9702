//! `status [POLICY]`: one table per policy, problems first. Everything shown is what the operator
//! recorded (`status.packages[]`, `lastCheckpointTime`, conditions, Transitions, NodeHealth).

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde::Serialize;
use transition_crds::conditions;
use transition_crds::{ClusterPolicy, NodeHealth, Transition};

use crate::output::{self, Paint, Table, human};
use crate::{Error, Format, Session, api};

/// One policy, as shown.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyView {
    pub namespace: String,
    pub name: String,
    pub source: String,
    /// `True`, `False` or `Unknown` (no status yet).
    pub ready: String,
    pub reason: String,
    pub message: String,
    pub target: Option<String>,
    /// The oldest of the packages' newest checkpoints (the state a failover now would lose).
    pub last_checkpoint_time: Option<String>,
    pub packages: Vec<PackageView>,
}

/// One package, as shown.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PackageView {
    pub name: String,
    pub live_state: bool,
    /// Where it runs now: the source, or where a Transition took it.
    pub runs_on: String,
    pub target: Option<String>,
    pub newest_checkpoint: Option<String>,
    pub checkpoint_age_seconds: Option<u64>,
    pub newest_image: Option<String>,
    pub next_run: Option<String>,
    pub last_transition: Option<TransitionRef>,
    pub nodes: Vec<NodeView>,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct TransitionRef {
    pub name: String,
    pub phase: String,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct NodeView {
    pub node: String,
    /// NodeHealth's `Ready` reason (`Healthy`, `Suspect`, `AgentDown`, `NodeFailed`,
    /// `SourceUnreachable`), or `Unknown`.
    pub health: String,
}

fn age(now: Timestamp, then: Timestamp) -> Duration {
    Duration::from_millis(u64::try_from(now.as_millisecond() - then.as_millisecond()).unwrap_or(0))
}

/// The view of `policy` (pure): `transitions` of its namespace, `health` by (cluster, node).
pub fn view(
    policy: &ClusterPolicy,
    transitions: &[Transition],
    health: &BTreeMap<(String, String), String>,
    now: Timestamp,
) -> PolicyView {
    let name = policy.name_any();
    let status = policy.status.clone().unwrap_or_default();
    let source = policy.spec.cluster_selector.name.clone();
    let ready = conditions::find(&status.conditions, conditions::READY);
    let packages = status
        .packages
        .iter()
        .map(|p| {
            let last = transitions
                .iter()
                .filter(|t| t.spec.policy_ref.name == name && t.spec.package == p.name)
                .max_by_key(|t| t.metadata.creation_timestamp.clone().map(|c| c.0));
            let runs_on = p.current_cluster.clone().unwrap_or_else(|| source.clone());
            let mut nodes: Vec<String> = p
                .workloads
                .iter()
                .flat_map(|w| w.nodes.iter().cloned())
                .collect();
            nodes.sort();
            nodes.dedup();
            PackageView {
                name: p.name.clone(),
                live_state: p.live_state,
                target: p.target_cluster.clone(),
                newest_checkpoint: p.last_checkpoint_time.as_ref().map(|t| t.0.to_string()),
                checkpoint_age_seconds: p
                    .last_checkpoint_time
                    .as_ref()
                    .map(|t| age(now, t.0).as_secs()),
                newest_image: p.last_checkpoint_image.clone(),
                next_run: p
                    .schedules
                    .iter()
                    .filter_map(|s| s.next_run.as_ref().map(|t| t.0))
                    .min()
                    .map(|t| t.to_string()),
                last_transition: last.map(|t| TransitionRef {
                    name: t.name_any(),
                    phase: t
                        .status
                        .as_ref()
                        .and_then(|s| s.phase)
                        .map_or_else(|| "Pending".to_owned(), |p| format!("{p:?}")),
                }),
                nodes: nodes
                    .into_iter()
                    .map(|n| NodeView {
                        health: health
                            .get(&(runs_on.clone(), n.clone()))
                            .cloned()
                            .unwrap_or_else(|| "Unknown".into()),
                        node: n,
                    })
                    .collect(),
                runs_on,
            }
        })
        .collect();
    PolicyView {
        namespace: policy.namespace().unwrap_or_default(),
        name,
        source,
        ready: ready.map_or_else(|| "Unknown".to_owned(), |c| c.status.clone()),
        reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
        message: ready.map_or_else(
            || "the operator has not looked at this policy yet".to_owned(),
            |c| c.message.clone(),
        ),
        target: status.target_cluster.clone(),
        last_checkpoint_time: status
            .last_checkpoint_time
            .as_ref()
            .map(|t| t.0.to_string()),
        packages,
    }
}

/// The tables of `views` (pure), problems first.
pub fn render(views: &[PolicyView], now: Timestamp, paint: Paint) -> String {
    let mut sorted: Vec<&PolicyView> = views.iter().collect();
    sorted.sort_by_key(|v| (v.ready == "True", v.namespace.clone(), v.name.clone()));
    let mut text = String::new();
    for v in sorted {
        let ready = if v.ready == "True" {
            paint.good("Ready")
        } else {
            paint.bad(&format!("NOT READY ({})", v.reason))
        };
        let lose = v
            .last_checkpoint_time
            .as_ref()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map_or_else(|| "no checkpoint yet".to_owned(), |t| human(age(now, t)));
        text.push_str(&format!(
            "{}  {ready}  {} → {}  a failover now loses {lose} of state\n",
            paint.bold(&format!("{}/{}", v.namespace, v.name)),
            v.source,
            v.target.as_deref().unwrap_or("(no target)"),
        ));
        if v.ready != "True" {
            text.push_str(&format!("  {}\n", paint.bad(&v.message)));
        }
        let mut t = Table::new(&[
            "PACKAGE",
            "RUNS ON",
            "FAILS OVER TO",
            "LIVE",
            "NEWEST CHECKPOINT",
            "NEXT RUN",
            "LAST TRANSITION",
            "NODES",
        ]);
        for p in &v.packages {
            let checkpoint = match (p.live_state, p.checkpoint_age_seconds) {
                (false, _) => "-".to_owned(),
                (true, None) => paint.warn("none yet"),
                (true, Some(s)) => format!("{} ago", human(Duration::from_secs(s))),
            };
            let next = p
                .next_run
                .as_ref()
                .and_then(|t| t.parse::<Timestamp>().ok())
                .map_or_else(|| "-".to_owned(), |t| format!("in {}", human(age(t, now))));
            let last = p.last_transition.as_ref().map_or_else(
                || "-".to_owned(),
                |t| {
                    let phase = match t.phase.as_str() {
                        "Failed" => paint.bad("Failed"),
                        "Completed" => paint.good("Completed"),
                        other => paint.warn(other),
                    };
                    format!("{} {phase}", t.name)
                },
            );
            let nodes = p
                .nodes
                .iter()
                .map(|n| {
                    let h = match n.health.as_str() {
                        "Healthy" => paint.good("Healthy"),
                        "Unknown" => n.health.clone(),
                        other => paint.bad(other),
                    };
                    format!("{} {h}", n.node)
                })
                .collect::<Vec<_>>()
                .join(", ");
            let runs_on = if p.runs_on == v.source {
                p.runs_on.clone()
            } else {
                paint.warn(&format!("{} (failed over)", p.runs_on))
            };
            t.row(vec![
                p.name.clone(),
                runs_on,
                p.target.clone().unwrap_or_else(|| "-".into()),
                if p.live_state { "yes" } else { "no" }.into(),
                checkpoint,
                next,
                last,
                if nodes.is_empty() { "-".into() } else { nodes },
            ]);
        }
        text.push_str(&t.render("  "));
        text.push('\n');
    }
    if views.is_empty() {
        text.push_str("no ClusterPolicies found\n");
    }
    text
}

/// NodeHealth by (cluster, node) from the operator's namespace; unreadable → empty (the table
/// then says `Unknown`).
async fn node_health(session: &Session) -> BTreeMap<(String, String), String> {
    let api: Api<NodeHealth> = Api::namespaced(session.client.clone(), &session.operator_namespace);
    let Ok(list) = api.list(&ListParams::default()).await else {
        return BTreeMap::new();
    };
    list.items
        .iter()
        .filter_map(|h| {
            let status = h.status.as_ref()?;
            let cluster = status.cluster_name.clone().or_else(|| {
                h.labels()
                    .get("transition.dcnlab.ssu.ac.kr/cluster")
                    .cloned()
            })?;
            let reason = conditions::find(&status.conditions, conditions::READY)
                .map_or_else(|| "Healthy".to_owned(), |c| c.reason.clone());
            Some(((cluster, h.spec.node_name.clone()?), reason))
        })
        .collect()
}

pub async fn run(
    session: &Session,
    policy: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let policies: Vec<ClusterPolicy> = match policy {
        Some(name) => vec![session.policy(name).await?],
        None => {
            session
                .api::<ClusterPolicy>()
                .list(&ListParams::default())
                .await
                .map_err(api("list ClusterPolicies"))?
                .items
        }
    };
    let transitions = session
        .api::<Transition>()
        .list(&ListParams::default())
        .await
        .map_err(api("list Transitions"))?
        .items;
    let health = node_health(session).await;
    let now = Timestamp::now();
    let views: Vec<PolicyView> = policies
        .iter()
        .map(|p| view(p, &transitions, &health, now))
        .collect();
    match session.format {
        Format::Table => output::write(out, &render(&views, now, Paint::stdout())),
        f => output::structured(f, &views, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"
apiVersion: transition.dcnlab.ssu.ac.kr/v1
kind: ClusterPolicy
metadata: {name: p1, namespace: ops}
spec:
  clusterSelector: {name: cluster1-azure, repo: "http://git/c1.git", repoType: git}
  selectMode: Specific
  packageSelectors:
    - {name: counter, packagePath: catalog/counter, packageType: Stateful, liveStatePackage: true}
status:
  targetCluster: cluster2-aws
  lastCheckpointTime: "2026-12-02T10:00:00Z"
  conditions:
    - {type: Ready, status: "False", reason: NotProtected, message: "counter has no checkpoint younger than 100s", lastTransitionTime: "2026-12-02T10:00:00Z"}
  packages:
    - name: counter
      packageType: Stateful
      liveState: true
      targetCluster: cluster2-aws
      lastCheckpointTime: "2026-12-02T10:00:00Z"
      schedules: [{name: s, backupType: Schedule, schedulePeriod: "*/20 * * * * *", nextRun: "2026-12-02T10:05:20Z"}]
      workloads: [{kind: Deployment, namespace: default, name: counter, nodes: [worker-1], checkpointable: true}]
"#;

    #[test]
    fn the_table_puts_problems_first_with_age_next_run_and_node_health() {
        let p: ClusterPolicy = serde_saphyr::from_str(POLICY).unwrap();
        let now: Timestamp = "2026-12-02T10:05:00Z".parse().unwrap();
        let health = BTreeMap::from([(
            ("cluster1-azure".to_owned(), "worker-1".to_owned()),
            "Healthy".to_owned(),
        )]);
        let v = view(&p, &[], &health, now);
        assert_eq!(v.packages[0].checkpoint_age_seconds, Some(300));
        let mut ok = v.clone();
        ok.name = "fine".into();
        ok.ready = "True".into();
        let text = render(&[ok, v], now, Paint { on: false });
        let first = text.lines().next().unwrap();
        assert!(
            first.starts_with("ops/p1  NOT READY (NotProtected)"),
            "{text}"
        );
        assert!(
            first.contains("a failover now loses 5m0s of state"),
            "{first}"
        );
        assert!(
            text.contains("counter has no checkpoint younger than 100s"),
            "{text}"
        );
        let row = text.lines().find(|l| l.starts_with("  counter  ")).unwrap();
        for needle in [
            "cluster1-azure",
            "cluster2-aws",
            "5m0s ago",
            "in 20s",
            "worker-1 Healthy",
        ] {
            assert!(row.contains(needle), "{needle} in {row}");
        }
    }
}
