//! Committing: ONE Git change per repository — the target's kustomization pinned to the
//! checkpoint images and (for a failover) the package removed from the source. Idempotent: a
//! change already in the repository commits nothing and records the current head instead.

use transition_crds::transition::{CommitRecord, TriggerType};

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
        branch: "main".into(),
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

/// Makes the Git change(s) of `side`, recording each commit in the status.
pub async fn commit(step: &mut Step<'_>, side: Side) -> Result<(), Error> {
    let ns = kube::ResourceExt::namespace(step.transition).unwrap_or_default();
    let id = step.id();
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
        let sha = run_blocking(&url, step.ctx.settings.git_timeout, move || {
            let repo = GitRepo::open_or_clone(config)?;
            let outcome = repo.change(&message, false, &|root| match what {
                Side::Both => writer::apply(root, &fp).map(|_| ()),
                Side::Target => writer::apply_target(root, &fp).map(|_| ()),
                Side::Fence => writer::apply_fence(root, &fp).map(|_| ()),
            })?;
            match outcome.commit {
                Some(sha) => Ok(sha),
                None => repo.sync().map(|head| format!("{head} (already applied)")),
            }
        })
        .await
        .map_err(|source| Error::Git {
            transition: id.clone(),
            repo: url.clone(),
            source,
        })?;
        tracing::info!(repo = %url, %sha, ?what, "GitOps change");
        let dir = match what {
            Side::Fence => &step.plan.failover.source_dir,
            _ => &step.plan.failover.target_dir,
        };
        let path = dir.display().to_string();
        let commits = &mut step.status.commits;
        if !commits
            .iter()
            .any(|c| c.repo == url && c.path.as_deref() == Some(&path))
        {
            commits.push(CommitRecord {
                repo: url.clone(),
                sha,
                branch: Some("main".into()),
                path: Some(path),
            });
        }
    }
    Ok(())
}
