//! Committing: ONE Git change per repository — the target's kustomization pinned to the
//! checkpoint images and (for a failover) the package removed from the source. Idempotent: a
//! change already in the repository commits nothing and records the current head instead.

use transition_crds::transition::{CommitRecord, DryRunChange, MAX_DRY_RUN_DIFF, TriggerType};

use super::{Outcome, Refusal, Step};
use crate::context::Context;
use crate::gitops::repo::{GitConfig, GitRepo, run_blocking};
use crate::gitops::writer;
use crate::k8s::secrets::SecretError;
use crate::transition::Error;

/// Which Git change a commit step makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Target and fence together (one commit per repository).
    Both,
    Target,
    Fence,
}

pub async fn run(step: &mut Step<'_>) -> Result<Outcome, Error> {
    let planned = step.transition.spec.trigger.type_ == TriggerType::Planned;
    let side = if planned { Side::Target } else { Side::Both };
    if let Err(e) = commit(step, side).await {
        return layout_refusal(&e).map(Outcome::Fail).ok_or(e);
    }
    if !planned {
        fenced_by_git(step);
    }
    Ok(Outcome::Advance)
}

/// A change the repository's layout cannot take ends the Transition; anything else (network,
/// credentials, a racing push) is retried.
pub fn layout_refusal(e: &Error) -> Option<Refusal> {
    match e {
        Error::Git {
            repo,
            source: crate::gitops::repo::GitError::Edit(edit),
            ..
        } => Some(Refusal::GitLayout {
            repo: repo.clone(),
            reason: edit.to_string(),
        }),
        _ => None,
    }
}

/// After the fence commit: the source's desired state no longer has the package.
fn fenced_by_git(step: &mut Step<'_>) {
    use kube::Resource;
    use transition_crds::conditions::{self, Status};
    let generation = step.transition.meta().generation;
    let dir = step.plan.failover.source_dir.display().to_string();
    let tainted = conditions::find(&step.status.conditions, crate::transition::FENCED)
        .is_some_and(|c| c.status == "True");
    let (reason, message) = if tainted {
        let prev = conditions::find(&step.status.conditions, crate::transition::FENCED)
            .map(|c| c.message.clone())
            .unwrap_or_default();
        (
            "OutOfService",
            format!("{prev}; the package left {dir} in Git"),
        )
    } else {
        (
            "GitFence",
            format!("the package left {dir} in Git (the node could not be tainted)"),
        )
    };
    conditions::set(
        &mut step.status.conditions,
        crate::transition::FENCED,
        Status::True,
        reason,
        message,
        generation,
        step.now,
    );
}

/// Where to clone `url` from, with the credentials of the operator's Git Secret.
async fn git_config(ctx: &Context, url: &str, ns: &str) -> Result<GitConfig, SecretError> {
    let credentials = match &ctx.settings.git_secret {
        None => None,
        Some(name) => {
            let secret = ctx
                .clusters
                .secrets
                .get(&ctx.client, ns, name, "Git")
                .await?;
            Some(crate::gitops::credentials_from_secret(&secret)?)
        }
    };
    Ok(GitConfig {
        url: url.to_owned(),
        branch: ctx.settings.git_branch.clone(),
        cache_dir: ctx.settings.git_cache_dir.clone(),
        credentials,
        author_name: "transition-operator".into(),
        author_email: "transition-operator@transition.invalid".into(),
        max_attempts: 5,
    })
}

/// The `(repository, change)` pairs `side` makes (one commit per repository).
fn changes(step: &Step<'_>, side: Side) -> Vec<(String, Side)> {
    let plan = &step.plan;
    match (side, plan.source_repo == plan.target_repo) {
        (Side::Both, true) => vec![(plan.source_repo.clone(), Side::Both)],
        (Side::Both, false) => vec![
            (plan.target_repo.clone(), Side::Target),
            (plan.source_repo.clone(), Side::Fence),
        ],
        (Side::Target, _) => vec![(plan.target_repo.clone(), Side::Target)],
        (Side::Fence, _) => vec![(plan.source_repo.clone(), Side::Fence)],
    }
}

/// One repository's change, made or previewed.
struct Applied {
    url: String,
    what: Side,
    /// The commit (or `<head> (already applied)`); empty for a preview.
    sha: String,
    diff: String,
}

/// Makes (or with `dry_run` only diffs) the Git change(s) of `side`.
async fn apply_changes(step: &Step<'_>, side: Side, dry_run: bool) -> Result<Vec<Applied>, Error> {
    let ns = kube::ResourceExt::namespace(step.transition).unwrap_or_default();
    let id = step.id();
    let mut done = Vec::new();
    for (url, what) in changes(step, side) {
        let lock = step.ctx.git_lock(&url);
        let _guard = lock.lock().await;
        let config = git_config(step.ctx, &url, &ns)
            .await
            .map_err(|source| Error::GitSecret {
                transition: id.clone(),
                source,
            })?;
        let fp = step.plan.failover.clone();
        let message = if what == Side::Fence && side == Side::Fence {
            format!(
                "transition: fence {} on {} (planned move done)\n\nTransition: {id}\n",
                fp.package, step.transition.spec.source_cluster
            )
        } else {
            format!("{}Transition: {id}\n", writer::message(&fp))
        };
        let (sha, diff) = run_blocking(&url, step.ctx.settings.git_timeout, move || {
            let repo = GitRepo::open_or_clone(config)?;
            let outcome = repo.change(&message, dry_run, &|root| match what {
                Side::Both => writer::apply(root, &fp).map(|_| ()),
                Side::Target => writer::apply_target(root, &fp).map(|_| ()),
                Side::Fence => writer::apply_fence(root, &fp).map(|_| ()),
            })?;
            let sha = match outcome.commit {
                Some(sha) => sha,
                None if dry_run => String::new(),
                None => format!("{} (already applied)", repo.sync()?),
            };
            Ok((sha, outcome.diff))
        })
        .await
        .map_err(|source| Error::Git {
            transition: id.clone(),
            repo: url.clone(),
            source,
        })?;
        done.push(Applied {
            url,
            what,
            sha,
            diff,
        });
    }
    Ok(done)
}

/// The cluster folder a change of `what` is about.
fn dir_of(step: &Step<'_>, what: Side) -> String {
    match what {
        Side::Fence => &step.plan.failover.source_dir,
        _ => &step.plan.failover.target_dir,
    }
    .display()
    .to_string()
}

/// Makes the Git change(s) of `side`, recording each commit in the status.
pub async fn commit(step: &mut Step<'_>, side: Side) -> Result<(), Error> {
    for a in apply_changes(step, side, false).await? {
        tracing::info!(repo = %a.url, sha = %a.sha, what = ?a.what, "GitOps change");
        let path = dir_of(step, a.what);
        let commits = &mut step.status.commits;
        if !commits
            .iter()
            .any(|c| c.repo == a.url && c.path.as_deref() == Some(&path))
        {
            commits.push(CommitRecord {
                repo: a.url,
                sha: a.sha,
                branch: Some(step.ctx.settings.git_branch.clone()),
                path: Some(path),
            });
        }
    }
    Ok(())
}

/// The diffs every Git change of this Transition would push (nothing pushed): a failover's
/// target + fence, a planned move's target then fence.
pub async fn preview(step: &Step<'_>) -> Result<Vec<DryRunChange>, Error> {
    let sides: &[Side] = if step.transition.spec.trigger.type_ == TriggerType::Planned {
        &[Side::Target, Side::Fence]
    } else {
        &[Side::Both]
    };
    let mut out = Vec::new();
    for side in sides {
        for a in apply_changes(step, *side, true).await? {
            let truncated = a.diff.len() > MAX_DRY_RUN_DIFF;
            let mut diff = a.diff;
            if truncated {
                let mut cut = MAX_DRY_RUN_DIFF;
                while !diff.is_char_boundary(cut) {
                    cut -= 1;
                }
                diff.truncate(cut);
            }
            out.push(DryRunChange {
                repo: a.url,
                path: Some(dir_of(step, a.what)),
                diff,
                truncated,
            });
        }
    }
    Ok(out)
}
