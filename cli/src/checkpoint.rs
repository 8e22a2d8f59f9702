//! `checkpoint POLICY [PACKAGE]`: asks each Checkpoint of the policy (or of one package) for a
//! fresh run with a `checkpoint-for` token, then follows each container: taken by the kubelet →
//! uploaded → image pushed, and prints the digests.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde::Serialize;
use transition_crds::Checkpoint;
use transition_crds::annotations::CHECKPOINT_FOR;
use transition_crds::checkpoint::CheckpointPhase;

use crate::output::{self, Table};
use crate::{Error, Format, Session, Wait, api};

/// How often the Checkpoints are read while waiting.
const POLL: Duration = Duration::from_millis(500);

/// The Checkpoints `policy` owns, optionally of one `package` (pure).
pub fn owned<'a>(
    checkpoints: &'a [Checkpoint],
    policy: &str,
    package: Option<&str>,
) -> Vec<&'a Checkpoint> {
    checkpoints
        .iter()
        .filter(|c| {
            c.owner_references()
                .iter()
                .any(|o| o.kind == "ClusterPolicy" && o.name == policy)
        })
        .filter(|c| {
            package.is_none_or(|p| {
                c.spec
                    .cluster_ref
                    .as_ref()
                    .and_then(|r| r.package_name.as_deref())
                    == Some(p)
            })
        })
        .collect()
}

/// Where one Checkpoint's run for `token` is (pure).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub checkpoint: String,
    /// `asked`, `kubelet`, `uploaded`, `pushed`, `done`, `failed`.
    pub stage: String,
    /// Per container: `asked` (not checkpointed yet), `kubelet` (archive written on the node),
    /// `uploaded` (in S3), `pushed` (image in the registry).
    pub containers: BTreeMap<String, String>,
    /// `container → image@digest` once pushed.
    pub images: BTreeMap<String, String>,
    pub message: Option<String>,
}

pub fn progress(c: &Checkpoint, token: &str) -> Progress {
    let status = c.status.clone().unwrap_or_default();
    let name = c.name_any();
    let ours = status.last_transition_token.as_deref() == Some(token);
    let trigger = format!("transition:{token}");
    let mut images = BTreeMap::new();
    let mut containers: BTreeMap<String, String> = c
        .spec
        .containers
        .iter()
        .map(|k| (k.name.clone(), "asked".to_owned()))
        .collect();
    let stage = match (&status.run, ours) {
        (_, false) => "asked",
        (Some(run), true) => {
            for a in &run.archives {
                if let Some(i) = &a.image {
                    images.insert(a.container.clone(), i.clone());
                }
                let at = if a.image.is_some() {
                    "pushed"
                } else if a.size_bytes.is_some() {
                    "uploaded"
                } else {
                    "kubelet"
                };
                containers.insert(a.container.clone(), at.to_owned());
            }
            // The run is as far as its least advanced container.
            let at = |stage: &str| containers.values().any(|v| v == stage);
            if at("asked") || at("kubelet") || containers.is_empty() {
                "kubelet"
            } else if at("uploaded") {
                "uploaded"
            } else {
                "pushed"
            }
        }
        (None, true) if status.phase == Some(CheckpointPhase::Failed) => "failed",
        (None, true) => {
            for r in status
                .history
                .iter()
                .filter(|r| r.trigger.as_deref() == Some(trigger.as_str()))
            {
                if let Some(i) = &r.image {
                    images.insert(r.container.clone(), i.clone());
                    containers.insert(r.container.clone(), "pushed".to_owned());
                }
            }
            "done"
        }
    };
    Progress {
        checkpoint: name,
        stage: stage.to_owned(),
        containers,
        images,
        message: status.message,
    }
}

pub async fn run(
    session: &Session,
    policy: &str,
    package: Option<&str>,
    wait: &Wait,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let p = session.policy(policy).await?;
    let ns = session.namespace.clone();
    let checkpoints: Api<Checkpoint> = Api::namespaced(session.client.clone(), &ns);
    let all = checkpoints
        .list(&ListParams::default())
        .await
        .map_err(api(format!("list the Checkpoints in {ns}")))?
        .items;
    let mine: Vec<String> = owned(&all, policy, package)
        .iter()
        .map(|c| c.name_any())
        .collect();
    if mine.is_empty() {
        if let Some(pk) = package
            && !p.spec.package_selectors.iter().any(|s| s.name == pk)
            && !p
                .status
                .iter()
                .flat_map(|s| &s.packages)
                .any(|s| s.name == pk)
        {
            return Err(Error::NoPackage {
                policy: format!("{ns}/{policy}"),
                package: pk.to_owned(),
                known: p
                    .spec
                    .package_selectors
                    .iter()
                    .map(|s| s.name.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        return Err(Error::NoCheckpoints {
            policy: format!("{ns}/{policy}"),
            package: package.map(str::to_owned),
        });
    }
    let token = format!(
        "cli-{}",
        k8s_openapi::jiff::Timestamp::now().as_millisecond()
    );
    for name in &mine {
        let patch = serde_json::json!({"metadata": {"annotations": {CHECKPOINT_FOR: token}}});
        checkpoints
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(api(format!("ask Checkpoint {ns}/{name} for a checkpoint")))?;
    }
    let table = session.format == Format::Table;
    if table {
        output::write(
            out,
            &format!(
                "asked {} Checkpoint(s) of {ns}/{policy} for a checkpoint now (token {token})\n",
                mine.len()
            ),
        )?;
    }
    if wait.no_wait {
        return Ok(());
    }
    let deadline = tokio::time::Instant::now() + wait.deadline();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let mut all_done = true;
        let mut states = Vec::new();
        for name in &mine {
            let c = checkpoints
                .get(name)
                .await
                .map_err(api(format!("read Checkpoint {ns}/{name}")))?;
            let pr = progress(&c, &token);
            if table {
                for (container, at) in &pr.containers {
                    let key = format!("{name}/{container}");
                    if seen.get(&key) != Some(at) {
                        output::write(out, &format!("  {key}: {at}\n"))?;
                        seen.insert(key, at.clone());
                    }
                }
            }
            if pr.stage == "failed" {
                return Err(Error::CheckpointFailed {
                    name: format!("{ns}/{name}"),
                    message: pr.message.unwrap_or_default(),
                });
            }
            all_done &= pr.stage == "done";
            states.push(pr);
        }
        if all_done {
            if table {
                let mut t = Table::new(&["CHECKPOINT", "CONTAINER", "IMAGE"]);
                for s in &states {
                    for (container, image) in &s.images {
                        t.row(vec![s.checkpoint.clone(), container.clone(), image.clone()]);
                    }
                }
                return output::write(out, &t.render(""));
            }
            return output::structured(session.format, &states, out);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Error::Timeout {
                seconds: wait.timeout,
                what: format!("the checkpoints of {ns}/{policy}"),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_told_per_container_from_kubelet_to_pushed() {
        let mut c: Checkpoint = serde_json::from_value(serde_json::json!({
            "apiVersion": "transition.dcnlab.ssu.ac.kr/v1", "kind": "Checkpoint",
            "metadata": {"name": "ck"},
            "spec": {"schedule": "@manual", "clusterRef": {"name": "c1", "packageName": "p"},
                     "podRef": {"namespace": "default", "name": "pod", "containerRef": {"containers": [{"name": "a"}, {"name": "b"}]}},
                     "resourceRef": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "default", "name": "d"},
                     "registry": {"url": "http://r", "repository": "c"},
                     "containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]},
            "status": {"lastTransitionToken": "t", "run": {"trigger": "transition:t", "startedAt": "2026-12-02T10:00:00Z",
                "archives": [{"container": "a", "archiveKey": "k", "sizeBytes": 10, "image": "r/a@sha256:1"},
                             {"container": "b", "archiveKey": "k2"}]}}
        }))
        .unwrap();
        let p = progress(&c, "t");
        assert_eq!(p.stage, "kubelet");
        assert_eq!(p.containers["a"], "pushed");
        assert_eq!(p.containers["b"], "kubelet");
        assert_eq!(
            progress(&c, "other").stage,
            "asked",
            "another token: not ours yet"
        );
        let status = c.status.as_mut().unwrap();
        status.run = None;
        status.history = vec![serde_json::from_value(serde_json::json!({
            "time": "2026-12-02T10:00:05Z", "container": "b", "image": "r/b@sha256:2", "trigger": "transition:t"}))
        .unwrap()];
        let done = progress(&c, "t");
        assert_eq!(done.stage, "done");
        assert_eq!(done.images["b"], "r/b@sha256:2");
    }
}
