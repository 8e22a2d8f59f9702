//! `GitRepo`: the operator's one narrow type over Git (git2 / libgit2). One cached clone per URL,
//! fetched and hard-reset before every change; commits as a bot identity; never force-pushes; on a
//! non-fast-forward it fetches, re-applies the change on the new head and retries (bounded);
//! empty commits are skipped. The credentials callback answers once: wrong credentials give one
//! clear error instead of libgit2's "too many redirects or authentication replays".
//!
//! libgit2 calls block; callers run them on a blocking thread under a timeout
//! ([`run_blocking`]) since git2's own network timeouts are only settable through `unsafe` APIs.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::{Cred, FetchOptions, PushOptions, RemoteCallbacks, Repository, ResetType, Signature};
use sha2::{Digest, Sha256};

use super::edit::EditError;

/// Git credentials (basic auth: user + password or token).
#[derive(Clone)]
pub struct GitCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GitCredentials {{ username: {:?}, password: *** }}",
            self.username
        )
    }
}

/// Where and how to write.
#[derive(Clone, Debug)]
pub struct GitConfig {
    pub url: String,
    pub branch: String,
    /// Clones live under this folder, one per URL.
    pub cache_dir: PathBuf,
    pub credentials: Option<GitCredentials>,
    pub author_name: String,
    pub author_email: String,
    /// Push attempts (each after a fetch and a re-applied change).
    pub max_attempts: u32,
}

/// A failed Git operation.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("failed to authenticate to {url}: the server rejected the credentials")]
    Auth { url: String },
    #[error("failed to {op} {url}: {reason}")]
    Remote {
        op: &'static str,
        url: String,
        reason: String,
    },
    #[error("failed to {op} in the clone of {url}: {reason}")]
    Local {
        op: &'static str,
        url: String,
        reason: String,
    },
    #[error(
        "failed to push to {url}: still behind after {attempts} attempts (others keep pushing)"
    )]
    Conflict { url: String, attempts: u32 },
    #[error("failed to finish the Git operation on {url} within {seconds} s")]
    Timeout { url: String, seconds: u64 },
    #[error(transparent)]
    Edit(#[from] EditError),
}

/// What a change did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeOutcome {
    /// The pushed commit (`None`: nothing to change, or a dry run).
    pub commit: Option<String>,
    /// Unified diff of the change.
    pub diff: String,
    pub attempts: u32,
}

/// A cached clone.
pub struct GitRepo {
    repo: Repository,
    config: GitConfig,
}

enum PushError {
    NonFastForward(String),
    Other(GitError),
}

impl GitRepo {
    fn callbacks<'a>(
        &'a self,
        tried: &'a Cell<bool>,
        rejected: Option<&'a Cell<Option<String>>>,
    ) -> RemoteCallbacks<'a> {
        let mut cb = RemoteCallbacks::new();
        cb.credentials(move |_url, _user, _allowed| {
            if tried.replace(true) {
                return Err(git2::Error::from_str("credentials rejected"));
            }
            match &self.config.credentials {
                Some(c) => Cred::userpass_plaintext(&c.username, &c.password),
                None => Err(git2::Error::from_str(
                    "the server wants credentials and none are configured",
                )),
            }
        });
        if let Some(rejected) = rejected {
            cb.push_update_reference(move |_refname, status| {
                if let Some(msg) = status {
                    rejected.set(Some(msg.to_owned()));
                }
                Ok(())
            });
        }
        cb
    }

    fn remote_error(&self, op: &'static str, e: &git2::Error, tried: &Cell<bool>) -> GitError {
        let msg = e.message().to_owned();
        if (tried.get()
            && (msg.contains("credentials")
                || msg.contains("authentication")
                || e.code() == git2::ErrorCode::Auth))
            || msg.contains("401")
        {
            GitError::Auth {
                url: self.config.url.clone(),
            }
        } else {
            GitError::Remote {
                op,
                url: self.config.url.clone(),
                reason: msg,
            }
        }
    }

    fn local(&self, op: &'static str) -> impl Fn(git2::Error) -> GitError + '_ {
        move |e| GitError::Local {
            op,
            url: self.config.url.clone(),
            reason: e.message().to_owned(),
        }
    }

    /// Opens the cached clone of `config.url`, cloning it the first time.
    pub fn open_or_clone(config: GitConfig) -> Result<GitRepo, GitError> {
        let digest = hex::encode(Sha256::digest(config.url.as_bytes()));
        let dir = config.cache_dir.join(&digest[..16]);
        let repo = if dir.join(".git").exists() {
            Repository::open(&dir).map_err(|e| GitError::Local {
                op: "open",
                url: config.url.clone(),
                reason: e.message().to_owned(),
            })?
        } else {
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&config.cache_dir).map_err(|e| GitError::Local {
                op: "create the cache",
                url: config.url.clone(),
                reason: e.to_string(),
            })?;
            Repository::init(&dir).map_err(|e| GitError::Local {
                op: "init",
                url: config.url.clone(),
                reason: e.message().to_owned(),
            })?
        };
        if repo.find_remote("origin").is_err() {
            repo.remote("origin", &config.url)
                .map_err(|e| GitError::Local {
                    op: "add the remote",
                    url: config.url.clone(),
                    reason: e.message().to_owned(),
                })?;
        }
        let git = GitRepo { repo, config };
        git.sync()?;
        Ok(git)
    }

    pub fn workdir(&self) -> &Path {
        self.repo.workdir().unwrap_or_else(|| self.repo.path())
    }

    /// Fetches the branch and makes the work tree exactly the remote head (dropping any local
    /// commit or edit). Returns the head commit id.
    pub fn sync(&self) -> Result<String, GitError> {
        let tried = Cell::new(false);
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(self.callbacks(&tried, None));
        let b = &self.config.branch;
        let mut remote = self
            .repo
            .find_remote("origin")
            .map_err(self.local("find the remote"))?;
        remote
            .fetch(
                &[format!("+refs/heads/{b}:refs/remotes/origin/{b}")],
                Some(&mut fo),
                None,
            )
            .map_err(|e| self.remote_error("fetch", &e, &tried))?;
        let oid = self
            .repo
            .refname_to_id(&format!("refs/remotes/origin/{b}"))
            .map_err(|e| GitError::Remote {
                op: "find branch in",
                url: self.config.url.clone(),
                reason: e.message().to_owned(),
            })?;
        self.repo
            .reference(&format!("refs/heads/{b}"), oid, true, "transition: sync")
            .map_err(self.local("move the branch"))?;
        self.reset_local()?;
        Ok(oid.to_string())
    }

    /// Makes the work tree exactly the local branch head (no network): drops edits and files a
    /// failed attempt created.
    fn reset_local(&self) -> Result<(), GitError> {
        let b = &self.config.branch;
        self.repo
            .set_head(&format!("refs/heads/{b}"))
            .map_err(self.local("set HEAD"))?;
        let commit = self
            .repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .map_err(self.local("read HEAD"))?;
        self.repo
            .reset(commit.as_object(), ResetType::Hard, None)
            .map_err(self.local("reset"))?;
        for path in self.changed_paths()? {
            let _ = std::fs::remove_file(self.workdir().join(path));
        }
        Ok(())
    }

    /// Paths of the work tree that differ from HEAD (modified, new or deleted).
    fn changed_paths(&self) -> Result<Vec<String>, GitError> {
        let mut opts = git2::StatusOptions::new();
        opts.include_untracked(true).recurse_untracked_dirs(true);
        let statuses = self
            .repo
            .statuses(Some(&mut opts))
            .map_err(self.local("read the status"))?;
        Ok(statuses
            .iter()
            .filter(|s| s.status() != git2::Status::CURRENT)
            .filter_map(|s| s.path().ok().map(str::to_owned))
            .collect())
    }

    /// Unified diff of the work tree (including new files) against HEAD.
    pub fn diff(&self) -> Result<String, GitError> {
        self.diff_paths(&self.changed_paths()?)
    }

    /// Unified diff of `paths` (work tree against HEAD).
    fn diff_paths(&self, paths: &[String]) -> Result<String, GitError> {
        if paths.is_empty() {
            return Ok(String::new());
        }
        let head = self
            .repo
            .head()
            .and_then(|h| h.peel_to_tree())
            .map_err(self.local("read HEAD"))?;
        let mut opts = git2::DiffOptions::new();
        opts.include_untracked(true)
            .recurse_untracked_dirs(true)
            .show_untracked_content(true);
        for p in paths {
            opts.pathspec(p);
        }
        let diff = self
            .repo
            .diff_tree_to_workdir_with_index(Some(&head), Some(&mut opts))
            .map_err(self.local("diff"))?;
        let mut out = String::new();
        diff.print(git2::DiffFormat::Patch, |_, _, line| {
            if matches!(line.origin(), '+' | '-' | ' ') {
                out.push(line.origin());
            }
            out.push_str(&String::from_utf8_lossy(line.content()));
            true
        })
        .map_err(self.local("print the diff"))?;
        Ok(out)
    }

    /// Commits every change of the work tree; `None` when there is nothing to commit.
    /// Commits the changed `paths` (only they are staged: no scan of the whole tree); `None`
    /// when the tree would not change.
    fn commit(&self, message: &str, paths: &[String]) -> Result<Option<String>, GitError> {
        let mut index = self.repo.index().map_err(self.local("open the index"))?;
        for p in paths {
            if self.workdir().join(p).exists() {
                index.add_path(Path::new(p)).map_err(self.local("stage"))?;
            } else {
                index
                    .remove_path(Path::new(p))
                    .map_err(self.local("stage a deletion"))?;
            }
        }
        index.write().map_err(self.local("write the index"))?;
        let tree_id = index.write_tree().map_err(self.local("write the tree"))?;
        let parent = self
            .repo
            .head()
            .and_then(|h| h.peel_to_commit())
            .map_err(self.local("read HEAD"))?;
        if parent.tree_id() == tree_id {
            return Ok(None);
        }
        let tree = self
            .repo
            .find_tree(tree_id)
            .map_err(self.local("read the tree"))?;
        let sig = Signature::now(&self.config.author_name, &self.config.author_email)
            .map_err(self.local("sign"))?;
        let oid = self
            .repo
            .commit(Some("HEAD"), &sig, &sig, message, &tree, &[&parent])
            .map_err(self.local("commit"))?;
        Ok(Some(oid.to_string()))
    }

    fn push(&self) -> Result<(), PushError> {
        let tried = Cell::new(false);
        let rejected = Cell::new(None);
        let mut po = PushOptions::new();
        po.remote_callbacks(self.callbacks(&tried, Some(&rejected)));
        let b = &self.config.branch;
        let mut remote = self
            .repo
            .find_remote("origin")
            .map_err(|e| PushError::Other(self.local("find the remote")(e)))?;
        match remote.push(&[format!("refs/heads/{b}:refs/heads/{b}")], Some(&mut po)) {
            Ok(()) => match rejected.take() {
                None => Ok(()),
                Some(msg) => Err(PushError::NonFastForward(msg)),
            },
            Err(e) => {
                let msg = e.message().to_owned();
                if msg.contains("fast-forward")
                    || msg.contains("fetch first")
                    || e.code() == git2::ErrorCode::NotFastForward
                {
                    Err(PushError::NonFastForward(msg))
                } else {
                    Err(PushError::Other(self.remote_error("push to", &e, &tried)))
                }
            }
        }
    }

    /// Applies `edit` to the remote head and pushes it as one commit. Optimistic: the first
    /// attempt builds on the cached head without fetching (after our own last push it IS the remote
    /// head); a non-fast-forward — or finding nothing to change — fetches and re-applies, up to
    /// `max_attempts`. With `dry_run` the diff against the fetched head is returned, nothing pushed.
    pub fn change(
        &self,
        message: &str,
        dry_run: bool,
        edit: &dyn Fn(&Path) -> Result<(), EditError>,
    ) -> Result<ChangeOutcome, GitError> {
        let max = self.config.max_attempts.max(1);
        let mut fetch = dry_run;
        let mut attempt = 0;
        while attempt < max {
            attempt += 1;
            if fetch {
                self.sync()?;
            } else {
                self.reset_local()?;
            }
            edit(self.workdir())?;
            let paths = self.changed_paths()?;
            let diff = self.diff_paths(&paths)?;
            if diff.is_empty() && !fetch {
                // Maybe the remote moved under our cache: look again at the real head.
                fetch = true;
                attempt -= 1;
                continue;
            }
            if diff.is_empty() || dry_run {
                self.reset_local()?;
                return Ok(ChangeOutcome {
                    commit: None,
                    diff,
                    attempts: attempt,
                });
            }
            let Some(commit) = self.commit(message, &paths)? else {
                return Ok(ChangeOutcome {
                    commit: None,
                    diff,
                    attempts: attempt,
                });
            };
            match self.push() {
                Ok(()) => {
                    return Ok(ChangeOutcome {
                        commit: Some(commit),
                        diff,
                        attempts: attempt,
                    });
                }
                Err(PushError::NonFastForward(why)) => {
                    tracing::info!(url = %self.config.url, attempt, reason = %why, "remote moved; re-applying on the new head");
                    fetch = true;
                    std::thread::sleep(Duration::from_millis(50 * u64::from(attempt)));
                }
                Err(PushError::Other(e)) => return Err(e),
            }
        }
        Err(GitError::Conflict {
            url: self.config.url.clone(),
            attempts: max,
        })
    }

    /// Failback: a commit reverting `sha` on the current head (pushed, retried like `change`).
    pub fn revert(&self, sha: &str, message: &str) -> Result<ChangeOutcome, GitError> {
        let oid = git2::Oid::from_str(sha).map_err(self.local("parse the commit id"))?;
        let revert = |_: &Path| -> Result<(), EditError> {
            let commit = self.repo.find_commit(oid).map_err(|e| EditError::Read {
                path: sha.to_owned(),
                reason: e.message().to_owned(),
            })?;
            self.repo
                .revert(&commit, None)
                .map_err(|e| EditError::Write {
                    path: sha.to_owned(),
                    reason: e.message().to_owned(),
                })?;
            let _ = self.repo.cleanup_state();
            Ok(())
        };
        self.change(message, false, &revert)
    }
}

/// Runs a blocking Git operation on the blocking pool, bounded by `timeout`.
pub async fn run_blocking<T: Send + 'static>(
    url: &str,
    timeout: Duration,
    f: impl FnOnce() -> Result<T, GitError> + Send + 'static,
) -> Result<T, GitError> {
    match tokio::time::timeout(timeout, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(r)) => r,
        Ok(Err(join)) => Err(GitError::Local {
            op: "run",
            url: url.to_owned(),
            reason: join.to_string(),
        }),
        Err(_) => Err(GitError::Timeout {
            url: url.to_owned(),
            seconds: timeout.as_secs(),
        }),
    }
}
