//! Watches the checkpoint folder (inotify + an initial scan + periodic rescans, since events can
//! be missed) and uploads each archive once it is complete. Uploads run one archive at a time.
//!
//! Failures lose nothing: a transient failure puts the archive back with exponential backoff
//! (2 s → 5 min); rejected credentials pause ALL uploads for [`AUTH_PAUSE`] after ONE error log,
//! so a wrong secret does not cause a retry storm.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use notify::Watcher;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};
use transition_crds::heartbeat::LastUpload;
use transition_crds::storage::ArchiveKey;

use crate::archive::{self, Candidate, Skip};
use crate::heartbeat::LastUploadCell;
use crate::metrics::{Label, Metrics};
use crate::upload::{Outcome, UploadError, Uploader, outcome_label};

/// How long uploads pause after S3 rejected the credentials.
pub const AUTH_PAUSE: Duration = Duration::from_secs(300);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Watcher settings.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    pub dir: PathBuf,
    pub cluster: String,
    pub node: String,
    pub settle: Duration,
    pub rescan: Duration,
    pub delete_after_upload: bool,
    pub writer_check: bool,
}

/// Health the HTTP server reports.
#[derive(Debug, Default)]
pub struct Health {
    /// S3 rejected our credentials and uploads are paused.
    pub s3_auth_failed: AtomicBool,
}

#[derive(Debug)]
enum State {
    /// Waiting for size/mtime to stay put for the settle time.
    Settling { since: Instant },
    /// Failed; try again at `at`.
    Retry { at: Instant, failures: u32 },
    /// Uploaded (or already present).
    Done,
}

#[derive(Debug)]
struct Tracked {
    candidate: Candidate,
    state: State,
}

/// Why the watcher stopped.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("failed to watch {dir}: {source}")]
    Notify { dir: String, source: notify::Error },
}

/// The archive watcher.
pub struct ArchiveWatcher {
    config: WatchConfig,
    uploader: Uploader,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    last_upload: LastUploadCell,
    tracked: HashMap<PathBuf, Tracked>,
    warned: HashMap<PathBuf, Skip>,
    paused_until: Option<Instant>,
}

fn backoff(failures: u32) -> Duration {
    let factor = 1u32
        .checked_shl(failures.saturating_sub(1))
        .unwrap_or(u32::MAX);
    Duration::from_secs(2)
        .saturating_mul(factor)
        .min(MAX_BACKOFF)
}

impl ArchiveWatcher {
    pub fn new(
        config: WatchConfig,
        uploader: Uploader,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        last_upload: LastUploadCell,
    ) -> Self {
        ArchiveWatcher {
            config,
            uploader,
            metrics,
            health,
            last_upload,
            tracked: HashMap::new(),
            warned: HashMap::new(),
            paused_until: None,
        }
    }

    /// Lists the folder and updates the tracked set (new files settle; changed files re-settle;
    /// vanished files are forgotten).
    fn scan(&mut self) {
        let entries = match std::fs::read_dir(&self.config.dir) {
            Ok(e) => e,
            Err(e) => {
                warn!(dir = %self.config.dir.display(), error = %e, "failed to list the checkpoint folder");
                return;
            }
        };
        let now = Instant::now();
        let mut seen = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            match archive::classify(&path) {
                Ok(Ok(c)) => {
                    seen.push(path.clone());
                    match self.tracked.get_mut(&path) {
                        Some(t) if t.candidate == c => {}
                        Some(t) => {
                            t.candidate = c;
                            t.state = State::Settling { since: now };
                        }
                        None => {
                            self.tracked.insert(
                                path,
                                Tracked {
                                    candidate: c,
                                    state: State::Settling { since: now },
                                },
                            );
                        }
                    }
                }
                Ok(Err(Skip::NotAnArchive)) => {}
                Ok(Err(skip)) => {
                    if self.warned.get(&path) != Some(&skip) {
                        let reason = match &skip {
                            Skip::NotRegular => "not_regular",
                            Skip::UnsafeName(_) => "unsafe_name",
                            Skip::NotAnArchive => "not_archive",
                        };
                        self.metrics
                            .skipped_files
                            .get_or_create(&Label::of(reason))
                            .inc();
                        warn!(path = %path.display(), reason, "not uploading this file");
                        self.warned.insert(path, skip);
                    }
                }
                Err(e) => warn!(path = %path.display(), error = %e, "failed to inspect a file"),
            }
        }
        self.tracked.retain(|p, _| seen.contains(p));
    }

    /// Archives whose turn has come: settled long enough (size/mtime unchanged) or due a retry.
    fn due(&self, now: Instant) -> Vec<PathBuf> {
        let mut due: Vec<&Tracked> = self
            .tracked
            .values()
            .filter(|t| match t.state {
                State::Settling { since } => now.duration_since(since) >= self.config.settle,
                State::Retry { at, .. } => now >= at,
                State::Done => false,
            })
            .collect();
        due.sort_by_key(|t| t.candidate.mtime);
        due.into_iter().map(|t| t.candidate.path.clone()).collect()
    }

    /// Whether the archive is finished: tar end present and no writer.
    fn complete(&self, c: &Candidate) -> bool {
        match archive::has_tar_end(&c.path) {
            Ok(true) => {}
            Ok(false) => return false,
            Err(e) => {
                warn!(path = %c.path.display(), error = %e, "failed to read the archive end");
                return false;
            }
        }
        !(self.config.writer_check && archive::open_for_writing(&c.path))
    }

    fn key_for(&self, c: &Candidate) -> Option<ArchiveKey> {
        match ArchiveKey::new(&self.config.cluster, &self.config.node, &c.name) {
            Ok(k) => Some(k),
            Err(e) => {
                warn!(error = %e, "cannot build an object key");
                None
            }
        }
    }

    /// Uploads one tracked archive and records the result.
    async fn process(&mut self, path: &Path, cancel: &CancellationToken) {
        let Some(t) = self.tracked.get(path) else {
            return;
        };
        let candidate = t.candidate.clone();
        let failures = match t.state {
            State::Retry { failures, .. } => failures,
            _ => 0,
        };
        // Re-check: still the same bytes as when it settled, and finished?
        match archive::classify(path) {
            Ok(Ok(now)) if now == candidate => {}
            _ => {
                if let Some(t) = self.tracked.get_mut(path) {
                    t.state = State::Settling {
                        since: Instant::now(),
                    };
                }
                return;
            }
        }
        if !self.complete(&candidate) {
            if let Some(t) = self.tracked.get_mut(path) {
                t.state = State::Settling {
                    since: Instant::now(),
                };
            }
            return;
        }
        let Some(key) = self.key_for(&candidate) else {
            return;
        };
        let result = self.uploader.upload(&candidate, &key, cancel).await;
        let next = self.record(&candidate, &key, result, failures).await;
        if let Some(t) = self.tracked.get_mut(path) {
            t.state = next;
        }
    }

    async fn record(
        &mut self,
        c: &Candidate,
        key: &ArchiveKey,
        result: Result<Outcome, UploadError>,
        failures: u32,
    ) -> State {
        match result {
            Ok(outcome) => {
                self.metrics
                    .uploads
                    .get_or_create(&outcome_label(&outcome))
                    .inc();
                self.health.s3_auth_failed.store(false, Ordering::Relaxed);
                self.paused_until = None;
                info!(key = %key, outcome = outcome.label(), bytes = c.size, sha256 = outcome.sha256(), "archive in S3");
                if let Ok(mut cell) = self.last_upload.lock() {
                    *cell = Some(LastUpload {
                        key: key.to_string(),
                        bytes: c.size,
                        sha256: outcome.sha256().to_owned(),
                        at: Some(k8s_openapi::jiff::Timestamp::now().to_string()),
                    });
                }
                if self.config.delete_after_upload {
                    self.delete_verified(c, key, outcome.sha256()).await;
                }
                State::Done
            }
            Err(e) => {
                self.metrics
                    .failures
                    .get_or_create(&Label::of(e.kind()))
                    .inc();
                let failures = failures.saturating_add(1);
                if e.is_auth() {
                    if !self.health.s3_auth_failed.swap(true, Ordering::Relaxed) {
                        error!(error = %e, pause = ?AUTH_PAUSE, "S3 rejected the credentials; pausing all uploads");
                    }
                    self.paused_until = Some(Instant::now() + AUTH_PAUSE);
                    return State::Retry {
                        at: Instant::now() + AUTH_PAUSE,
                        failures,
                    };
                }
                if matches!(e, UploadError::Changed { .. }) {
                    info!(path = %c.path.display(), "archive changed during upload; waiting for it to settle");
                    return State::Settling {
                        since: Instant::now(),
                    };
                }
                let delay = backoff(failures);
                warn!(error = %e, failures, retry_in = ?delay, "upload failed; will retry");
                State::Retry {
                    at: Instant::now() + delay,
                    failures,
                }
            }
        }
    }

    /// Deletes the local archive only after HEAD shows the same archive size in S3 (its
    /// `plaintext-size` when encrypted) and the recorded sha256 (metadata or digest record, always
    /// the plaintext's) is the one computed while uploading.
    async fn delete_verified(&self, c: &Candidate, key: &ArchiveKey, sha256: &str) {
        let key_s = key.to_string();
        let head = self.uploader.store().head(&key_s).await;
        let recorded = match &head {
            Ok(Some(info)) if crate::upload::archive_size(info) == Some(c.size) => self
                .uploader
                .recorded_sha256(&key_s, info)
                .await
                .ok()
                .flatten(),
            _ => None,
        };
        match head {
            Ok(Some(_)) if recorded.as_deref() == Some(sha256) => {
                match std::fs::remove_file(&c.path) {
                    Ok(()) => {
                        info!(path = %c.path.display(), "deleted the local archive after a verified upload")
                    }
                    Err(e) => {
                        warn!(path = %c.path.display(), error = %e, "failed to delete the uploaded archive")
                    }
                }
            }
            other => {
                warn!(key = %key, result = ?other.map(|o| o.map(|i| i.size)), "upload not verified; keeping the local archive")
            }
        }
    }

    /// Uploads every complete archive present now (no settle wait); returns (handled, failed).
    pub async fn run_once(&mut self, cancel: &CancellationToken) -> (usize, usize) {
        self.scan();
        let long_ago = Instant::now()
            .checked_sub(self.config.settle)
            .unwrap_or_else(Instant::now);
        for t in self.tracked.values_mut() {
            t.state = State::Settling { since: long_ago };
        }
        let paths = self.due(Instant::now());
        let mut failed = 0;
        for path in &paths {
            self.process(path, cancel).await;
            if !matches!(self.tracked.get(path).map(|t| &t.state), Some(State::Done)) {
                failed += 1;
            }
        }
        (paths.len(), failed)
    }

    /// Runs until `stop` (finishing the upload in progress) or `abort` (cancelling it).
    pub async fn run(
        mut self,
        stop: CancellationToken,
        abort: CancellationToken,
    ) -> Result<(), WatchError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok_and(|event| wakes(&event.kind)) {
                let _ = tx.try_send(());
            }
        })
        .map_err(|source| WatchError::Notify {
            dir: self.config.dir.display().to_string(),
            source,
        })?;
        let mut watching = false;
        let tick =
            (self.config.settle / 2).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let mut ticker = tokio::time::interval(tick);
        let mut last_scan = Instant::now()
            .checked_sub(self.config.rescan)
            .unwrap_or_else(Instant::now);
        let mut dirty = true;
        info!(dir = %self.config.dir.display(), cluster = %self.config.cluster, node = %self.config.node, "watching for checkpoint archives");
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                Some(()) = rx.recv() => { dirty = true; }
                () = stop.cancelled() => return Ok(()),
            }
            if !watching {
                match watcher.watch(&self.config.dir, notify::RecursiveMode::NonRecursive) {
                    Ok(()) => watching = true,
                    Err(e) => {
                        if last_scan.elapsed() >= self.config.rescan {
                            warn!(dir = %self.config.dir.display(), error = %e, "cannot watch the checkpoint folder yet");
                        }
                    }
                }
            }
            if dirty || last_scan.elapsed() >= self.config.rescan {
                self.scan();
                last_scan = Instant::now();
                dirty = false;
            }
            if self.paused_until.is_some_and(|t| Instant::now() < t) {
                continue;
            }
            for path in self.due(Instant::now()) {
                if stop.is_cancelled() {
                    return Ok(());
                }
                self.process(&path, &abort).await;
                if self.paused_until.is_some() {
                    break;
                }
            }
        }
    }
}

/// Whether an inotify event can mean a new or finished archive. Reads do not: the scan itself
/// opens and lists the folder, and inotify reports that as events on the folder, so waking on
/// them made every scan trigger the next one (a busy loop that kept a CPU core busy).
fn wakes(kind: &notify::EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode, EventKind};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_the_folder_does_not_wake_the_watcher_but_writing_does() {
        use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind};
        assert!(!wakes(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!wakes(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(!wakes(&EventKind::Access(AccessKind::Read)));
        assert!(wakes(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(wakes(&EventKind::Create(CreateKind::File)));
        assert!(wakes(&EventKind::Modify(ModifyKind::Any)));
        assert!(wakes(&EventKind::Any));
    }

    #[test]
    fn retry_backoff_doubles_from_two_seconds_and_stops_at_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
