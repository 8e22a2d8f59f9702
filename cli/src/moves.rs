//! `move` and `failback`: create a Planned Transition (or a dry run of one) and follow its phases
//! live until it ends; a failure exits non-zero with the operator's reason.

use std::io::Write;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, PostParams};
use transition_crds::Transition;
use transition_crds::transition::{
    PolicyRef, TransitionPhase, TransitionSpec, TransitionStatus, Trigger, TriggerType,
};

use crate::output::{self, Paint, seconds};
use crate::{Error, Format, Session, Wait, api};

/// How often the Transition is read while following it.
const POLL: Duration = Duration::from_millis(300);

/// What to move: `to: None` is a failback (to the policy's source cluster).
#[derive(Clone, Debug)]
pub struct Request {
    pub policy: String,
    pub package: String,
    pub to: Option<String>,
    pub dry_run: bool,
}

/// The Transition `request` asks for (pure): from where the package runs now, Planned.
pub fn transition(
    policy: &transition_crds::ClusterPolicy,
    request: &Request,
) -> Result<Transition, Error> {
    let policy_name = policy.name_any();
    let ns = policy.namespace().unwrap_or_default();
    let status = policy.status.clone().unwrap_or_default();
    let home = policy.spec.cluster_selector.name.clone();
    let package = status.packages.iter().find(|p| p.name == request.package);
    let listed = policy
        .spec
        .package_selectors
        .iter()
        .any(|p| p.name == request.package);
    if package.is_none() && !listed {
        let mut known: Vec<String> = policy
            .spec
            .package_selectors
            .iter()
            .map(|p| p.name.clone())
            .collect();
        known.extend(status.packages.iter().map(|p| p.name.clone()));
        known.sort();
        known.dedup();
        return Err(Error::NoPackage {
            policy: format!("{ns}/{policy_name}"),
            package: request.package.clone(),
            known: known.join(", "),
        });
    }
    let runs_on = package
        .and_then(|p| p.current_cluster.clone())
        .unwrap_or_else(|| home.clone());
    let (target, what) = match &request.to {
        Some(to) => (to.clone(), "move"),
        None if runs_on == home => {
            return Err(Error::NotAway {
                package: request.package.clone(),
                cluster: home,
            });
        }
        None => (home.clone(), "failback"),
    };
    let mut t = Transition::new(
        "",
        TransitionSpec {
            policy_ref: PolicyRef {
                name: policy_name.clone(),
                namespace: None,
            },
            package: request.package.clone(),
            source_cluster: runs_on,
            target_cluster: target,
            trigger: Trigger {
                type_: TriggerType::Planned,
                node: None,
                reason: Some(format!("kubectl transition {what}")),
            },
            dry_run: request.dry_run.then_some(true),
        },
    );
    t.metadata.name = None;
    t.metadata.generate_name = Some(format!(
        "{policy_name}-{}-{what}-",
        request.package.to_ascii_lowercase()
    ));
    t.metadata.namespace = Some(ns);
    Ok(t)
}

/// What has been printed of a Transition's phases.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Printed {
    /// Phases whose end (with their time) is printed.
    pub closed: usize,
    /// Phases whose start is printed.
    pub opened: usize,
}

/// The new lines for `status` (pure): `→ Phase` when one is entered, `✓ Phase 1.2s` when it
/// ends.
pub fn phase_lines(status: &TransitionStatus, printed: &mut Printed) -> Vec<String> {
    let mut lines = Vec::new();
    for (i, p) in status.phase_timings.iter().enumerate() {
        let phase = format!("{:?}", p.phase);
        if i >= printed.opened {
            lines.push(format!("  → {phase}"));
            printed.opened = i + 1;
        }
        if i >= printed.closed
            && let Some(ms) = p.duration_ms
        {
            lines.push(format!("  ✓ {phase:<14} {}", seconds(ms)));
            printed.closed = i + 1;
        }
    }
    lines
}

pub async fn run(
    session: &Session,
    request: Request,
    wait: &Wait,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let policy = session.policy(&request.policy).await?;
    let t = transition(&policy, &request)?;
    let ns = session.namespace.clone();
    let transitions: Api<Transition> = Api::namespaced(session.client.clone(), &ns);
    let created = transitions
        .create(&PostParams::default(), &t)
        .await
        .map_err(api(format!("create a Transition in {ns}")))?;
    let name = created.name_any();
    let table = session.format == Format::Table;
    if table {
        output::write(
            out,
            &format!(
                "Transition {ns}/{name}: {} {} → {}{}\n",
                request.package,
                created.spec.source_cluster,
                created.spec.target_cluster,
                if request.dry_run { " (dry run)" } else { "" }
            ),
        )?;
    }
    if wait.no_wait {
        if !table {
            output::structured(session.format, &created, out)?;
        }
        return Ok(());
    }
    follow(session, &transitions, &name, wait, out).await
}

/// Follows Transition `name` until it ends, printing each phase as it is entered.
async fn follow(
    session: &Session,
    transitions: &Api<Transition>,
    name: &str,
    wait: &Wait,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let table = session.format == Format::Table;
    let paint = Paint::stdout();
    let deadline = tokio::time::Instant::now() + wait.deadline();
    let mut printed = Printed::default();
    loop {
        let t = transitions
            .get(name)
            .await
            .map_err(api(format!("read Transition {name}")))?;
        let status = t.status.clone().unwrap_or_default();
        if table {
            for line in phase_lines(&status, &mut printed) {
                output::write(out, &format!("{line}\n"))?;
            }
        }
        match status.phase {
            Some(TransitionPhase::Completed) => {
                if table {
                    let mut text = paint.good(&format!(
                        "Completed: {}\n",
                        status.message.clone().unwrap_or_default()
                    ));
                    for c in &status.commits {
                        text.push_str(&format!(
                            "  commit {} in {} ({})\n",
                            c.sha.chars().take(12).collect::<String>(),
                            c.repo,
                            c.path.clone().unwrap_or_default()
                        ));
                    }
                    for i in &status.images {
                        text.push_str(&format!("  image {}@{}\n", i.image, i.digest));
                    }
                    return output::write(out, &text);
                }
                return output::structured(session.format, &t, out);
            }
            Some(TransitionPhase::DryRun) => {
                if table {
                    let mut text = format!("{}\n", status.message.clone().unwrap_or_default());
                    for c in &status.dry_run {
                        text.push_str(&format!(
                            "--- {} ({}){}\n{}",
                            c.repo,
                            c.path.clone().unwrap_or_default(),
                            if c.truncated { ", cut at 32 KiB" } else { "" },
                            c.diff
                        ));
                    }
                    return output::write(out, &text);
                }
                return output::structured(session.format, &status.dry_run, out);
            }
            Some(TransitionPhase::Failed) => {
                return Err(Error::TransitionFailed {
                    name: name.to_owned(),
                    message: status.message.unwrap_or_default(),
                });
            }
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                seconds: wait.timeout,
                what: format!(
                    "Transition {name} (in phase {:?})",
                    status.phase.unwrap_or(TransitionPhase::Pending)
                ),
            });
        }
        tokio::time::sleep(POLL).await;
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
  packages: [{name: counter, packageType: Stateful, liveState: true}]
"#;

    #[test]
    fn each_phase_is_announced_once_and_its_time_printed_when_it_ends() {
        let mut status = TransitionStatus::default();
        let t0 = k8s_openapi::jiff::Timestamp::from_second(100).unwrap();
        status.enter_phase(TransitionPhase::Pending, t0);
        let mut printed = Printed::default();
        assert_eq!(phase_lines(&status, &mut printed), vec!["  → Pending"]);
        assert!(phase_lines(&status, &mut printed).is_empty(), "nothing new");
        status.enter_phase(
            TransitionPhase::Checkpointing,
            k8s_openapi::jiff::Timestamp::from_millisecond(101_500).unwrap(),
        );
        assert_eq!(
            phase_lines(&status, &mut printed),
            vec!["  ✓ Pending        1.5s", "  → Checkpointing"]
        );
    }

    #[test]
    fn a_move_starts_where_the_package_runs_and_a_failback_only_when_it_is_away() {
        let mut p: transition_crds::ClusterPolicy = serde_saphyr::from_str(POLICY).unwrap();
        let req = |to: Option<&str>| Request {
            policy: "p1".into(),
            package: "counter".into(),
            to: to.map(str::to_owned),
            dry_run: true,
        };
        let t = transition(&p, &req(Some("cluster2-aws"))).unwrap();
        assert_eq!(t.spec.source_cluster, "cluster1-azure");
        assert_eq!(t.spec.trigger.type_, TriggerType::Planned);
        assert_eq!(t.spec.dry_run, Some(true));
        assert_eq!(
            t.metadata.generate_name.as_deref(),
            Some("p1-counter-move-")
        );
        let err = transition(&p, &req(None)).unwrap_err();
        assert!(matches!(err, Error::NotAway { .. }), "{err}");
        assert_eq!(err.exit_code(), 2);
        p.status.as_mut().unwrap().packages[0].current_cluster = Some("cluster2-aws".into());
        let back = transition(&p, &req(None)).unwrap();
        assert_eq!(
            (
                back.spec.source_cluster.as_str(),
                back.spec.target_cluster.as_str()
            ),
            ("cluster2-aws", "cluster1-azure")
        );
        let mut wrong = req(Some("x"));
        wrong.package = "nope".into();
        let err = transition(&p, &wrong).unwrap_err().to_string();
        assert!(
            err.contains("no package nope") && err.contains("counter"),
            "{err}"
        );
    }
}
