//! `history [POLICY]`: Transitions, oldest first, with phase timings, commits and images.

use std::io::Write;

use kube::ResourceExt;
use kube::api::ListParams;
use transition_crds::Transition;

use crate::output::{self, Table, seconds};
use crate::{Error, Format, Session, api};

/// The rows of `transitions` of `policy` (all when `None`), oldest first (pure).
pub fn table(transitions: &[Transition], policy: Option<&str>) -> Table {
    let mut list: Vec<&Transition> = transitions
        .iter()
        .filter(|t| policy.is_none_or(|p| t.spec.policy_ref.name == p))
        .collect();
    list.sort_by_key(|t| t.metadata.creation_timestamp.clone().map(|c| c.0));
    let mut table = Table::new(&[
        "TRANSITION",
        "PACKAGE",
        "FROM → TO",
        "TRIGGER",
        "PHASE",
        "TOOK",
        "PHASES",
        "COMMITS",
        "IMAGES",
    ]);
    for t in list {
        let status = t.status.clone().unwrap_or_default();
        let took = match (&status.started_at, &status.completed_at) {
            (Some(s), Some(c)) => seconds(c.0.as_millisecond() - s.0.as_millisecond()),
            _ => "-".into(),
        };
        let phases = status
            .phase_timings
            .iter()
            .map(|p| {
                format!(
                    "{:?} {}",
                    p.phase,
                    p.duration_ms.map_or_else(|| "…".into(), seconds)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let commits = status
            .commits
            .iter()
            .map(|c| c.sha.chars().take(8).collect::<String>())
            .collect::<Vec<_>>()
            .join(" ");
        let images = status
            .images
            .iter()
            .map(|i| {
                i.digest
                    .trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join(" ");
        let dash = |s: String| if s.is_empty() { "-".to_owned() } else { s };
        table.row(vec![
            format!("{}/{}", t.namespace().unwrap_or_default(), t.name_any()),
            t.spec.package.clone(),
            format!("{} → {}", t.spec.source_cluster, t.spec.target_cluster),
            format!("{:?}", t.spec.trigger.type_),
            status
                .phase
                .map_or_else(|| "Pending".to_owned(), |p| format!("{p:?}")),
            took,
            dash(phases),
            dash(commits),
            dash(images),
        ]);
    }
    table
}

pub async fn run(
    session: &Session,
    policy: Option<&str>,
    out: &mut dyn Write,
) -> Result<(), Error> {
    if let Some(p) = policy {
        session.policy(p).await?;
    }
    let transitions = session
        .api::<Transition>()
        .list(&ListParams::default())
        .await
        .map_err(api("list Transitions"))?
        .items;
    match session.format {
        Format::Table => {
            let t = table(&transitions, policy);
            if t.rows.is_empty() {
                return output::write(out, "no Transitions yet\n");
            }
            output::write(out, &t.render(""))
        }
        f => {
            let mine: Vec<&Transition> = transitions
                .iter()
                .filter(|t| policy.is_none_or(|p| t.spec.policy_ref.name == p))
                .collect();
            output::structured(f, &mine, out)
        }
    }
}
