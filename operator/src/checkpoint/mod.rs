//! The Checkpoint controller: when a cron slot or a `checkpoint-now` token is due ([`schedule`]),
//! one run ([`run`]) — kubelet checkpoint of each container through the source cluster's node
//! proxy → the agent's S3 object → a checkpoint image pushed by digest → a record in a bounded
//! history, pruning archives and images beyond the retention ([`prune`]).
//!
//! The run is persisted in `status.run` after every step, so a restarted operator resumes it: the
//! kubelet is not asked again for a container whose archive is recorded, a pushed image is never
//! pushed twice, and the wait for an upload resumes from the archive's `takenAt`. Waiting is a
//! requeue, never a sleep.

pub mod cleanup;
pub mod prune;
pub mod registry;
pub mod run;
pub mod schedule;
pub mod sign;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use tracing::{info, instrument};
use transition_crds::Checkpoint;
use transition_crds::checkpoint::{CheckpointPhase, CheckpointRun, CheckpointStatus};
use transition_crds::conditions::{self, Status};

use crate::context::Context;
use crate::k8s::{FIELD_MANAGER, id_of};
use run::{Progress, Target};
use schedule::{Due, decide};

const CONTROLLER: &str = "checkpoint";
/// On every Checkpoint: before the object goes, the archives and images it recorded are deleted
/// (S3 objects and registry manifests would leak otherwise).
pub const FINALIZER: &str = "transition.dcnlab.ssu.ac.kr/checkpoint-cleanup";
/// A run that keeps failing is given up after this many attempts (then the next trigger starts
/// a fresh one).
const MAX_RUN_ATTEMPTS: u32 = 5;

/// Errors of one Checkpoint reconcile, naming the object and the cause; the variant is the
/// metric label.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to accept Checkpoint {checkpoint}: {reason}")]
    InvalidSpec { checkpoint: String, reason: String },
    #[error("failed to run Checkpoint {checkpoint}: no S3 store configured (--s3-endpoint)")]
    NoStore { checkpoint: String },
    #[error("failed to run Checkpoint {checkpoint}: {source}")]
    Cluster {
        checkpoint: String,
        #[source]
        source: Box<crate::k8s::clusters::ClusterError>,
    },
    #[error("failed to run Checkpoint {checkpoint}: pod gone: {reason}")]
    PodGone { checkpoint: String, reason: String },
    #[error("failed to run Checkpoint {checkpoint}: failed to read pod {pod}: {source}")]
    ReadPod {
        checkpoint: String,
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to run Checkpoint {checkpoint}: {source}")]
    Kubelet {
        checkpoint: String,
        #[source]
        source: Box<crate::kubelet::KubeletError>,
    },
    #[error(
        "failed to run Checkpoint {checkpoint}: the kubelet returned no archive file: {paths:?}"
    )]
    NoArchive {
        checkpoint: String,
        paths: Vec<String>,
    },
    #[error("failed to run Checkpoint {checkpoint}: {source}")]
    ArchiveKey {
        checkpoint: String,
        #[source]
        source: Box<transition_crds::storage::KeyError>,
    },
    #[error("failed to run Checkpoint {checkpoint}: {source}")]
    Registry {
        checkpoint: String,
        #[source]
        source: Box<registry::RegistrySetupError>,
    },
    #[error(
        "failed to run Checkpoint {checkpoint}: the agent's upload did not appear within {seconds}s: {source}"
    )]
    UploadMissing {
        checkpoint: String,
        key: String,
        seconds: u64,
        #[source]
        source: Box<crate::storage::StoreError>,
    },
    #[error("failed to run Checkpoint {checkpoint}: {source}")]
    Store {
        checkpoint: String,
        #[source]
        source: Box<crate::storage::StoreError>,
    },
    #[error("failed to run Checkpoint {checkpoint}: {key} ({repo}): {source}")]
    Image {
        checkpoint: String,
        key: String,
        repo: String,
        #[source]
        source: Box<crate::image::build::ImageError>,
    },
    #[error(
        "failed to run Checkpoint {checkpoint}: image {image} was pushed but not signed, so it is not recorded (deleted): {source}"
    )]
    Sign {
        checkpoint: String,
        image: String,
        #[source]
        source: Box<crate::image::signing::SigningError>,
    },
    #[error(
        "failed to run Checkpoint {checkpoint}: failed to read its ClusterPolicy {policy} (whose target clusters the image is encrypted for): {source}"
    )]
    ReadPolicy {
        checkpoint: String,
        policy: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to write the status of Checkpoint {checkpoint}: {source}")]
    PatchStatus {
        checkpoint: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to manage the finalizer of Checkpoint {checkpoint}: {source}")]
    Finalizer {
        checkpoint: String,
        #[source]
        source: Box<kube::runtime::finalizer::Error<Error>>,
    },
    #[error(
        "failed to clean up deleted Checkpoint {checkpoint}: {left} object(s) not deleted yet, first: {first}"
    )]
    Cleanup {
        checkpoint: String,
        left: usize,
        first: String,
    },
}

impl Error {
    /// The variant's name: metric label and Event reason.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidSpec { .. } => "InvalidSpec",
            Error::NoStore { .. } => "NoStore",
            Error::Cluster { .. } => "Cluster",
            Error::PodGone { .. } => "PodGone",
            Error::ReadPod { .. } => "ReadPod",
            Error::Kubelet { .. } => "Kubelet",
            Error::NoArchive { .. } => "NoArchive",
            Error::ArchiveKey { .. } => "ArchiveKey",
            Error::Registry { .. } => "Registry",
            Error::UploadMissing { .. } => "UploadMissing",
            Error::Store { .. } => "Store",
            Error::Image { .. } => "Image",
            Error::Sign { .. } => "Sign",
            Error::ReadPolicy { .. } => "ReadPolicy",
            Error::PatchStatus { .. } => "PatchStatus",
            Error::Finalizer { .. } => "Finalizer",
            Error::Cleanup { .. } => "Cleanup",
        }
    }

    /// Whether the run cannot succeed by retrying (it ends Failed at once).
    pub fn ends_the_run(&self) -> bool {
        match self {
            Error::PodGone { .. } | Error::UploadMissing { .. } => true,
            // The key file must be fixed; S3 unreachable may pass.
            Error::Sign { source, .. } => !source.transient(),
            _ => false,
        }
    }
}

async fn write_status(
    ctx: &Context,
    c: &Checkpoint,
    status: &CheckpointStatus,
) -> Result<(), Error> {
    crate::k8s::status::apply(&ctx.client, c, status, FIELD_MANAGER)
        .await
        .map_err(|source| Error::PatchStatus {
            checkpoint: id_of(c),
            source,
        })?;
    Ok(())
}

/// Reconciles one Checkpoint.
#[instrument(skip_all, fields(checkpoint = %id_of(ckpt.as_ref())))]
pub async fn reconcile(ckpt: Arc<Checkpoint>, ctx: Arc<Context>) -> Result<Action, Error> {
    use kube::runtime::finalizer::{Error as FinalizerError, Event, finalizer};
    let key = id_of(ckpt.as_ref());
    let api: kube::Api<Checkpoint> =
        kube::Api::namespaced(ctx.client.clone(), &ckpt.namespace().unwrap_or_default());
    let work = async {
        finalizer(&api, FINALIZER, ckpt.clone(), |event| async {
            match event {
                Event::Apply(c) => step(&c, &ctx).await,
                Event::Cleanup(c) => cleanup::cleanup(&c, &ctx).await,
            }
        })
        .await
        .map_err(|e| match e {
            FinalizerError::ApplyFailed(e) | FinalizerError::CleanupFailed(e) => e,
            other => Error::Finalizer {
                checkpoint: key.clone(),
                source: Box::new(other),
            },
        })
    };
    ctx.timed(CONTROLLER, &key, work).await
}

/// Starts a run when one is due, else says when to look again.
async fn start(
    c: &Checkpoint,
    ctx: &Context,
    status: &mut CheckpointStatus,
) -> Result<Option<Action>, Error> {
    let now = Timestamp::now();
    let generation = c.meta().generation;
    let (due, wake) = match decide(c, now) {
        Ok(d) => d,
        Err(e) => {
            let reason = e.to_string();
            conditions::set(
                &mut status.conditions,
                conditions::SPEC_VALID,
                Status::False,
                "InvalidSchedule",
                &reason,
                generation,
                now,
            );
            write_status(ctx, c, status).await?;
            return Err(Error::InvalidSpec {
                checkpoint: id_of(c),
                reason,
            });
        }
    };
    let Some(due) = due else {
        if status.phase.is_none() {
            status.phase = Some(CheckpointPhase::Pending);
            conditions::set(
                &mut status.conditions,
                conditions::READY,
                Status::False,
                "Waiting",
                "no checkpoint taken yet; waiting for the schedule or a checkpoint-now token",
                generation,
                now,
            );
            write_status(ctx, c, status).await?;
        }
        let wait = wake.map_or(ctx.resync, |w| w.min(ctx.resync));
        return Ok(Some(Action::requeue(wait.max(Duration::from_secs(1)))));
    };
    match &due {
        Due::Manual(token) => status.last_manual_token = Some(token.clone()),
        Due::ForTransition(token) => status.last_transition_token = Some(token.clone()),
        Due::Scheduled(slot) => status.last_scheduled_run = Some(Time(*slot)),
    }
    status.run = Some(CheckpointRun {
        trigger: due.label(),
        started_at: Time(now),
        archives: Vec::new(),
    });
    status.phase = Some(CheckpointPhase::Running);
    status.message = Some(format!("run started ({})", due.label()));
    write_status(ctx, c, status).await?;
    info!(trigger = %due.label(), "checkpoint run started");
    Ok(None)
}

async fn step(c: &Checkpoint, ctx: &Context) -> Result<Action, Error> {
    let mut status = c.status.clone().unwrap_or_default();
    if status.run.is_none()
        && let Some(action) = start(c, ctx, &mut status).await?
    {
        return Ok(action);
    }
    match advance(c, ctx, &mut status).await {
        Ok(Progress::Pushed) => Ok(Action::requeue(Duration::from_secs(1))),
        Ok(Progress::Waiting { key, after }) => {
            tracing::debug!(%key, ?after, "waiting for the agent's upload");
            Ok(Action::requeue(after))
        }
        Err(e) => give_up_or_retry(c, ctx, &mut status, e).await,
    }
}

/// A failed step: the run ends Failed when retrying cannot help or after [`MAX_RUN_ATTEMPTS`];
/// otherwise the error goes to `error_policy` (backoff).
async fn give_up_or_retry(
    c: &Checkpoint,
    ctx: &Context,
    status: &mut CheckpointStatus,
    e: Error,
) -> Result<Action, Error> {
    let key = id_of(c);
    let attempts = ctx.failures(&key) + 1;
    let give_up = e.ends_the_run() || attempts >= MAX_RUN_ATTEMPTS;
    if !give_up {
        // The retry is visible in the status, not only in the logs. Written only when the
        // text changes: each status write wakes the controller at once, which must not turn
        // the backoff into a tight loop.
        let message = format!("retrying with backoff (up to {MAX_RUN_ATTEMPTS} attempts): {e}");
        if status.run.is_some() && status.message.as_deref() != Some(message.as_str()) {
            status.message = Some(message);
            if let Err(w) = write_status(ctx, c, status).await {
                tracing::warn!(error = %w, "could not record the failed attempt in the status");
            }
        }
        return Err(e);
    }
    let Some(run) = status.run.take() else {
        return Err(e);
    };
    // What the failed run left in S3 (and any image one of its containers got) is not orphaned.
    if let Some(store) = ctx.store.as_ref() {
        let ns = c.namespace().unwrap_or_default();
        let registry =
            registry::registry_for(&ctx.clusters.secrets, &ctx.client, &ns, &c.spec.registry)
                .await
                .ok();
        let images = registry.as_ref().map(|r| (r, &[][..]));
        for left in prune::delete_records(store, images, &run::unfinished_records(&run)).await {
            tracing::warn!(%left, "could not delete an object of a failed run");
        }
    }
    status.phase = Some(CheckpointPhase::Failed);
    status.message = Some(e.to_string());
    conditions::set(
        &mut status.conditions,
        conditions::DEGRADED,
        Status::True,
        "RunFailed",
        format!(
            "run {} given up after {attempts} attempt(s): {e}",
            run.trigger
        ),
        c.meta().generation,
        Timestamp::now(),
    );
    write_status(ctx, c, status).await?;
    ctx.publish(c, EventType::Warning, "CheckpointFailed", &e.to_string())
        .await;
    ctx.metrics
        .failures
        .get_or_create(&crate::observe::metrics::FailureLabels {
            controller: CONTROLLER.into(),
            error: e.metric_label().into(),
        })
        .inc();
    ctx.reset_backoff(&key);
    Ok(Action::requeue(Duration::from_secs(1)))
}

/// Carries the run in `status.run` forward as far as it can go now, persisting after each step.
async fn advance(
    c: &Checkpoint,
    ctx: &Context,
    status: &mut CheckpointStatus,
) -> Result<Progress, Error> {
    let target = Target::of(c, id_of(c))?;
    let store = ctx.store.as_ref().ok_or_else(|| Error::NoStore {
        checkpoint: target.id.clone(),
    })?;
    let missing = target.missing(status);
    if !missing.is_empty() {
        let ns = c.namespace().unwrap_or_default();
        let annotations = c.metadata.annotations.clone().unwrap_or_default();
        let client = ctx
            .clusters
            .client(&target.cluster, &ns, &annotations)
            .await
            .map_err(|source| Error::Cluster {
                checkpoint: target.id.clone(),
                source: Box::new(source),
            })?;
        let node = run::node_of(&client, &target).await?;
        let kubelet = crate::kubelet::Kubelet { client };
        for container in missing {
            let archive = run::take(ctx, &target, &kubelet, &node, &container).await?;
            if let Some(r) = status.run.as_mut() {
                r.archives.push(archive);
            }
            write_status(ctx, c, status).await?;
        }
    }
    let ns = c.namespace().unwrap_or_default();
    let registry =
        registry::registry_for(&ctx.clusters.secrets, &ctx.client, &ns, &c.spec.registry)
            .await
            .map_err(|source| Error::Registry {
                checkpoint: target.id.clone(),
                source: Box::new(source),
            })?;
    let pending: Vec<_> = status
        .run
        .iter()
        .flat_map(|r| &r.archives)
        .filter(|a| a.image.is_none())
        .cloned()
        .collect();
    for archive in pending {
        let now = Timestamp::now();
        let (image, size) = match run::build_image(ctx, &target, store, &registry, &archive, now)
            .await?
        {
            run::Built::Image(image, size) => (image, size),
            run::Built::NotYet { s3_unreachable } => {
                let taken = archive.taken_at.as_ref().map_or(now, |t| t.0);
                let waited = Duration::from_millis(
                    u64::try_from((now.as_millisecond() - taken.as_millisecond()).max(0))
                        .unwrap_or(0),
                );
                let message = match &s3_unreachable {
                    Some(reason) => format!(
                        "waiting for archive {}: S3 unreachable ({reason}); retrying for up to {} s after the checkpoint",
                        archive.archive_key,
                        ctx.settings.archive_wait.as_secs()
                    ),
                    None => format!(
                        "waiting for the agent to finish uploading archive {}",
                        archive.archive_key
                    ),
                };
                if status.message.as_deref() != Some(message.as_str()) {
                    status.message = Some(message);
                    write_status(ctx, c, status).await?;
                }
                return Ok(Progress::Waiting {
                    key: archive.archive_key,
                    after: run::upload_poll_delay(waited),
                });
            }
        };
        if let Some(a) = status.run.as_mut().and_then(|r| {
            r.archives
                .iter_mut()
                .find(|a| a.container == archive.container)
        }) {
            a.image = Some(image);
            a.size_bytes = i64::try_from(size).ok();
        }
        write_status(ctx, c, status).await?;
    }
    finish(c, ctx, status, &target, store, &registry).await?;
    Ok(Progress::Pushed)
}

/// Records the finished run, sets the conditions, publishes the Event and prunes.
async fn finish(
    c: &Checkpoint,
    ctx: &Context,
    status: &mut CheckpointStatus,
    target: &Target<'_>,
    store: &crate::storage::ArchiveStore,
    registry: &crate::image::registry::Registry,
) -> Result<(), Error> {
    let now = Timestamp::now();
    let generation = c.meta().generation;
    let (dropped, note) = run::record(status, target, ctx.settings.retention, now);
    status.observed_generation = generation;
    for (kind, state, reason, message) in [
        (
            conditions::READY,
            Status::True,
            "Checkpointed",
            note.as_str(),
        ),
        (
            conditions::DEGRADED,
            Status::False,
            "Healthy",
            "last run completed",
        ),
        (
            conditions::SPEC_VALID,
            Status::True,
            "Valid",
            "spec accepted",
        ),
    ] {
        conditions::set(
            &mut status.conditions,
            kind,
            state,
            reason,
            message,
            generation,
            now,
        );
    }
    write_status(ctx, c, status).await?;
    info!(%note, "checkpoint run completed");
    ctx.publish(c, EventType::Normal, "Checkpointed", &note)
        .await;
    prune::prune(&ctx.metrics, store, registry, &dropped).await;
    Ok(())
}

/// Spec errors wait for a change; everything else retries with bounded backoff.
pub fn error_policy(c: Arc<Checkpoint>, error: &Error, ctx: Arc<Context>) -> Action {
    let permanent = matches!(error, Error::InvalidSpec { .. });
    ctx.retry_after(
        CONTROLLER,
        error.metric_label(),
        &id_of(c.as_ref()),
        permanent,
        error,
    )
}

/// Runs the Checkpoint controller until `stop`.
pub async fn run(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    stop: tokio_util::sync::CancellationToken,
) {
    let api: kube::Api<Checkpoint> = ctx.api(namespace);
    let controller = Controller::new(api, watcher::Config::default());
    crate::context::run_controller(controller, reconcile, error_policy, ctx, stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster_policy::discover::MANUAL_SCHEDULE;
    use registry::{image_repository, registry_host};

    fn ckpt(schedule: &str, token: Option<&str>, status: Option<CheckpointStatus>) -> Checkpoint {
        let mut c: Checkpoint = serde_saphyr::from_str(&format!(
            r#"
apiVersion: transition.dcnlab.ssu.ac.kr/v1
kind: Checkpoint
metadata: {{name: c, namespace: ops, creationTimestamp: "2026-11-22T10:00:30Z"}}
spec:
  schedule: "{schedule}"
  clusterRef: {{name: cluster1-azure}}
  podRef: {{namespace: default, name: counter-a, nodeName: worker-1, containerRef: {{containers: [{{name: counter, image: "busybox:1.36"}}]}}}}
  resourceRef: {{apiVersion: apps/v1, kind: Deployment, namespace: default, name: counter}}
  registry: {{url: "http://127.0.0.1:5000", repository: checkpoints/lab}}
"#
        ))
        .unwrap();
        if let Some(t) = token {
            c.metadata.annotations = Some(
                [(schedule::CHECKPOINT_NOW.to_owned(), t.to_owned())]
                    .into_iter()
                    .collect(),
            );
        }
        c.status = status;
        c
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_due_slot_runs_and_a_handled_slot_waits_for_the_next() {
        let c = ckpt("*/3 * * * *", None, None);
        let (due, _) = decide(&c, at("2026-11-22T10:03:05Z")).unwrap();
        assert_eq!(due, Some(Due::Scheduled(at("2026-11-22T10:03:00Z"))));
        let done = ckpt(
            "*/3 * * * *",
            None,
            Some(CheckpointStatus {
                last_scheduled_run: Some(Time(at("2026-11-22T10:03:00Z"))),
                ..Default::default()
            }),
        );
        let (due, wake) = decide(&done, at("2026-11-22T10:04:00Z")).unwrap();
        assert_eq!(due, None);
        assert_eq!(wake, Some(Duration::from_secs(120)));
    }

    #[test]
    fn a_manual_token_triggers_once_even_on_a_manual_only_checkpoint() {
        let c = ckpt(MANUAL_SCHEDULE, Some("t1"), None);
        let (due, _) = decide(&c, at("2026-11-22T10:04:00Z")).unwrap();
        assert_eq!(due, Some(Due::Manual("t1".into())));
        let handled = ckpt(
            MANUAL_SCHEDULE,
            Some("t1"),
            Some(CheckpointStatus {
                last_manual_token: Some("t1".into()),
                ..Default::default()
            }),
        );
        assert_eq!(
            decide(&handled, at("2026-11-22T10:04:00Z")).unwrap(),
            (None, None)
        );
    }

    #[test]
    fn every_schedule_entry_fires_not_only_the_first() {
        let mut c = ckpt(
            "0 * * * *",
            None,
            Some(CheckpointStatus {
                last_scheduled_run: Some(Time(at("2026-11-22T10:00:00Z"))),
                ..Default::default()
            }),
        );
        c.spec.additional_schedules = vec!["*/3 * * * *".into()];
        let (due, _) = decide(&c, at("2026-11-22T10:03:05Z")).unwrap();
        assert_eq!(
            due,
            Some(Due::Scheduled(at("2026-11-22T10:03:00Z"))),
            "the second entry's slot"
        );
        let (due, wake) = decide(&c, at("2026-11-22T10:01:00Z")).unwrap();
        assert_eq!(due, None);
        assert_eq!(
            wake,
            Some(Duration::from_secs(120)),
            "woken by the nearest of both"
        );
        c.spec.additional_schedules = vec!["61 * * * *".into()];
        assert!(
            decide(&c, at("2026-11-22T10:01:00Z")).is_err(),
            "a bad second entry is an error"
        );
    }

    #[test]
    fn a_bad_cron_expression_is_reported_not_run() {
        let c = ckpt("61 * * * *", None, None);
        let err = decide(&c, at("2026-11-22T10:04:00Z"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("61 * * * *"), "{err}");
    }

    #[test]
    fn image_repositories_are_per_workload_and_container_and_registry_urls_say_if_plain_http() {
        let c = ckpt("*/3 * * * *", None, None);
        assert_eq!(
            image_repository(&c.spec.registry, &c, "counter"),
            "checkpoints/lab/default/counter-counter"
        );
        assert_eq!(
            registry_host("http://127.0.0.1:5000/"),
            ("127.0.0.1:5000".into(), true)
        );
        assert_eq!(registry_host("ghcr.io"), ("ghcr.io".into(), false));
    }
}
