//! The Checkpoint controller: when a cron slot or a `checkpoint-now` token is due, one run —
//! kubelet checkpoint of each container through the source cluster's node proxy → wait (bounded)
//! for the agent's S3 object → stream it into a checkpoint image and push it → record digest, time
//! and size in a bounded history, pruning archives and images beyond the retention.
//!
//! The run is persisted in `status.run` before every step, so a restarted operator resumes it:
//! the kubelet is not asked again for a container whose archive key is recorded, and a pushed
//! image is never pushed twice (same digest, blobs skipped).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{info, instrument, warn};
use transition_crds::Checkpoint;
use transition_crds::checkpoint::{
    CheckpointPhase, CheckpointRecord, CheckpointRun, CheckpointStatus, RegistryRef, RunArchive,
};
use transition_crds::conditions::{self, Status};
use transition_crds::storage::ArchiveKey;

use crate::context::Context;
use crate::crd_install::FIELD_MANAGER;
use crate::discovery::MANUAL_SCHEDULE;
use crate::image::build::{ImageSpec, build_and_push, timestamp_tag};
use crate::image::registry::{Registry, RegistryConfig};
use crate::kubelet::Kubelet;
use crate::metrics::{OutcomeLabels, ReconcileLabels};
use crate::names::dns_name;
use crate::schedule;

const CONTROLLER: &str = "checkpoint";
/// A run that keeps failing is given up after this many attempts (then the next trigger starts
/// a fresh one).
const MAX_RUN_ATTEMPTS: u32 = 5;

/// Errors of one Checkpoint reconcile, naming the object and the cause.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to accept Checkpoint {checkpoint}: {reason}")]
    InvalidSpec { checkpoint: String, reason: String },
    #[error("failed to run Checkpoint {checkpoint}: {reason}")]
    Run { checkpoint: String, reason: String },
    #[error("failed to run Checkpoint {checkpoint}: pod gone: {reason}")]
    PodGone { checkpoint: String, reason: String },
    #[error("failed to write the status of Checkpoint {checkpoint}: {source}")]
    PatchStatus {
        checkpoint: String,
        source: kube::Error,
    },
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidSpec { .. } => "InvalidSpec",
            Error::Run { .. } => "Run",
            Error::PodGone { .. } => "PodGone",
            Error::PatchStatus { .. } => "PatchStatus",
        }
    }
}

fn key_of(c: &Checkpoint) -> String {
    format!(
        "checkpoint/{}/{}",
        c.namespace().unwrap_or_default(),
        c.name_any()
    )
}

/// What is due now: a trigger label, the slot (scheduled) or token (manual).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Due {
    Scheduled(Timestamp),
    Manual(String),
}

impl Due {
    pub fn label(&self) -> String {
        match self {
            Due::Scheduled(t) => format!("schedule:{t}"),
            Due::Manual(token) => format!("manual:{token}"),
        }
    }
}

/// Decides (pure) whether a run is due, and otherwise when to look again.
pub fn decide(c: &Checkpoint, now: Timestamp) -> Result<(Option<Due>, Option<Duration>), String> {
    let status = c.status.clone().unwrap_or_default();
    let token = c
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(schedule::CHECKPOINT_NOW))
        .map(String::as_str);
    if let Some(t) = schedule::manual_trigger(token, status.last_manual_token.as_deref()) {
        return Ok((Some(Due::Manual(t.to_owned())), None));
    }
    if c.spec.schedule.trim() == MANUAL_SCHEDULE {
        return Ok((None, None));
    }
    let cron = crate::policy::parse_cron(&c.spec.schedule)?;
    let since = status
        .last_scheduled_run
        .as_ref()
        .map(|t| t.0)
        .or_else(|| c.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(now);
    if let Some(slot) = schedule::due(&cron, since, now) {
        return Ok((Some(Due::Scheduled(slot)), None));
    }
    let wake = crate::policy::next_run(&cron, now).map(|n| {
        let ms = (n.as_millisecond() - now.as_millisecond()).max(0);
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    });
    Ok((None, wake))
}

/// The image repository of one container: `<prefix>/<namespace>/<workload>-<container>`.
pub fn image_repository(registry: &RegistryRef, c: &Checkpoint, container: &str) -> String {
    let ns = c
        .spec
        .resource_ref
        .namespace
        .as_deref()
        .or(c.spec.pod_ref.namespace.as_deref())
        .unwrap_or("default");
    let prefix: Vec<String> = registry
        .repository
        .split('/')
        .map(|s| dns_name(s, 63))
        .filter(|s| !s.is_empty())
        .collect();
    let mut parts = prefix;
    parts.push(dns_name(ns, 63));
    parts.push(dns_name(
        &format!("{}-{container}", c.spec.resource_ref.name),
        128,
    ));
    parts.join("/")
}

/// `(host, insecure)` from a registry URL (`http://` means plain HTTP).
pub fn registry_host(url: &str) -> (String, bool) {
    let url = url.trim().trim_end_matches('/');
    if let Some(rest) = url.strip_prefix("http://") {
        (rest.to_owned(), true)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (rest.to_owned(), false)
    } else {
        (url.to_owned(), false)
    }
}

/// The registry client for a Checkpoint (credentials from its Secret, if named).
pub async fn registry_for(
    ctx: &Context,
    namespace: &str,
    registry: &RegistryRef,
) -> Result<Registry, String> {
    let (host, insecure) = registry_host(&registry.url);
    let credentials = match &registry.secret_ref {
        None => None,
        Some(s) => {
            let ns = s.namespace.as_deref().unwrap_or(namespace);
            let api: Api<Secret> = Api::namespaced(ctx.client.clone(), ns);
            let secret = api
                .get_opt(&s.name)
                .await
                .map_err(|e| format!("failed to read registry Secret {ns}/{}: {e}", s.name))?
                .ok_or_else(|| format!("registry Secret {ns}/{} does not exist", s.name))?;
            crate::image::credentials_from_secret(&secret, &host)?
        }
    };
    Registry::new(&RegistryConfig {
        host,
        insecure,
        credentials,
        timeout: Duration::from_secs(60),
    })
    .map_err(|e| e.to_string())
}

/// Reconciles one Checkpoint.
#[instrument(skip_all, fields(checkpoint = %key_of(&ckpt)))]
pub async fn reconcile(ckpt: Arc<Checkpoint>, ctx: Arc<Context>) -> Result<Action, Error> {
    let labels = ReconcileLabels {
        controller: CONTROLLER.into(),
    };
    ctx.metrics.reconciles.get_or_create(&labels).inc();
    let started = Instant::now();
    let result = step(&ckpt, &ctx).await;
    ctx.metrics
        .reconcile_seconds
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.reset_backoff(&key_of(&ckpt));
    }
    result
}

async fn write_status(
    ctx: &Context,
    c: &Checkpoint,
    status: &CheckpointStatus,
) -> Result<(), Error> {
    let ns = c.namespace().unwrap_or_default();
    let api: Api<Checkpoint> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = json!({
        "apiVersion": "transition.dcnlab.ssu.ac.kr/v1",
        "kind": "Checkpoint",
        "status": status,
    });
    api.patch_status(
        &c.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(|source| Error::PatchStatus {
        checkpoint: format!("{ns}/{}", c.name_any()),
        source,
    })?;
    Ok(())
}

async fn publish(ctx: &Context, c: &Checkpoint, type_: EventType, reason: &str, note: &str) {
    ctx.publish(&c.object_ref(&()), type_, reason, "Checkpoint", note)
        .await;
}

async fn step(c: &Checkpoint, ctx: &Context) -> Result<Action, Error> {
    let id = format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any());
    let now = Timestamp::now();
    let mut status = c.status.clone().unwrap_or_default();
    let generation = c.meta().generation;
    if status.run.is_none() {
        let (due, wake) = match decide(c, now) {
            Ok(d) => d,
            Err(reason) => {
                conditions::set(
                    &mut status.conditions,
                    conditions::SPEC_VALID,
                    Status::False,
                    "InvalidSchedule",
                    &reason,
                    generation,
                    now,
                );
                write_status(ctx, c, &status).await?;
                return Err(Error::InvalidSpec {
                    checkpoint: id,
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
                write_status(ctx, c, &status).await?;
            }
            let wait = wake.map_or(ctx.resync, |w| w.min(ctx.resync));
            return Ok(Action::requeue(wait.max(Duration::from_secs(1))));
        };
        match &due {
            Due::Manual(token) => status.last_manual_token = Some(token.clone()),
            Due::Scheduled(slot) => status.last_scheduled_run = Some(Time(*slot)),
        }
        status.run = Some(CheckpointRun {
            trigger: due.label(),
            started_at: Time(now),
            archives: Vec::new(),
        });
        status.phase = Some(CheckpointPhase::Running);
        status.message = Some(format!("run started ({})", due.label()));
        write_status(ctx, c, &status).await?;
        info!(trigger = %due.label(), "checkpoint run started");
    }
    match run(c, ctx, &mut status).await {
        Ok(()) => Ok(Action::requeue(Duration::from_secs(1))),
        Err(e) => {
            let key = key_of(c);
            let attempts = ctx.failures(&key) + 1;
            let give_up = matches!(e, Error::PodGone { .. }) || attempts >= MAX_RUN_ATTEMPTS;
            if give_up && let Some(run) = status.run.take() {
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
                    generation,
                    Timestamp::now(),
                );
                write_status(ctx, c, &status).await?;
                publish(
                    ctx,
                    c,
                    EventType::Warning,
                    "CheckpointFailed",
                    &e.to_string(),
                )
                .await;
                ctx.reset_backoff(&key);
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            Err(e)
        }
    }
}

/// Carries the run in `status.run` forward to completion, persisting after each step.
async fn run(c: &Checkpoint, ctx: &Context, status: &mut CheckpointStatus) -> Result<(), Error> {
    let id = format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any());
    let ns = c.namespace().unwrap_or_default();
    let fail = |reason: String| Error::Run {
        checkpoint: id.clone(),
        reason,
    };
    let run_started = Instant::now();
    let cluster = c
        .spec
        .cluster_ref
        .as_ref()
        .map(|r| r.name.clone())
        .ok_or_else(|| Error::InvalidSpec {
            checkpoint: id.clone(),
            reason: "spec.clusterRef.name is required".into(),
        })?;
    let pod_ns = c
        .spec
        .pod_ref
        .namespace
        .clone()
        .unwrap_or_else(|| ns.clone());
    let pod = c.spec.pod_ref.name.clone();
    let containers: Vec<(String, String)> = c
        .spec
        .pod_ref
        .container_ref
        .containers
        .iter()
        .map(|e| {
            let image = e
                .image
                .clone()
                .or_else(|| {
                    c.spec
                        .containers
                        .iter()
                        .find(|x| x.name == e.name)
                        .map(|x| x.image.clone())
                })
                .unwrap_or_default();
            (e.name.clone(), image)
        })
        .collect();
    let store = ctx
        .store
        .as_ref()
        .ok_or_else(|| fail("no S3 store configured (--s3-endpoint)".into()))?;

    // 1. The kubelet checkpoint of each container not yet taken in this run.
    let missing: Vec<&(String, String)> = containers
        .iter()
        .filter(|(name, _)| {
            status
                .run
                .as_ref()
                .is_some_and(|r| !r.archives.iter().any(|a| &a.container == name))
        })
        .collect();
    if !missing.is_empty() {
        let annotations = c.metadata.annotations.clone().unwrap_or_default();
        let client = ctx
            .clusters
            .client(&cluster, &ns, &annotations)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let node = match c.spec.pod_ref.node_name.clone() {
            Some(n) => n,
            None => node_of(&client, &pod_ns, &pod)
                .await
                .map_err(|reason| Error::PodGone {
                    checkpoint: id.clone(),
                    reason,
                })?,
        };
        let kubelet = Kubelet { client };
        for (name, _) in missing {
            let paths = kubelet
                .checkpoint(&node, &pod_ns, &pod, name, ctx.settings.kubelet_timeout)
                .await
                .map_err(|e| {
                    let text = e.to_string();
                    if text.contains("HTTP 404") {
                        Error::PodGone {
                            checkpoint: id.clone(),
                            reason: text,
                        }
                    } else {
                        fail(text)
                    }
                })?;
            let file = paths
                .first()
                .and_then(|p| std::path::Path::new(p).file_name())
                .and_then(|f| f.to_str())
                .ok_or_else(|| fail(format!("the kubelet returned no archive file: {paths:?}")))?;
            let key = ArchiveKey::new(&cluster, &node, file).map_err(|e| fail(e.to_string()))?;
            if let Some(r) = status.run.as_mut() {
                r.archives.push(RunArchive {
                    container: name.clone(),
                    archive_key: key.to_string(),
                    image: None,
                    size_bytes: None,
                });
            }
            write_status(ctx, c, status).await?;
            ctx.metrics
                .checkpoints
                .get_or_create(&OutcomeLabels {
                    outcome: "taken".into(),
                })
                .inc();
        }
    }

    // 2. Wait for each archive in S3, build and push its image.
    let registry_ref = &c.spec.registry;
    let registry = registry_for(ctx, &ns, registry_ref).await.map_err(fail)?;
    let pending: Vec<RunArchive> = status
        .run
        .as_ref()
        .map(|r| {
            r.archives
                .iter()
                .filter(|a| a.image.is_none())
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    for archive in pending {
        let deadline = Instant::now() + ctx.settings.archive_wait;
        let mut delay = Duration::from_millis(250);
        let object = loop {
            match store.ready(&archive.archive_key).await {
                Ok(o) => break o,
                Err(e) if Instant::now() >= deadline => {
                    return Err(fail(format!(
                        "the agent's upload did not appear within {}s: {e}",
                        ctx.settings.archive_wait.as_secs()
                    )));
                }
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        };
        let reader = store
            .open(&archive.archive_key)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let created = Timestamp::now().to_string();
        let spec = ImageSpec {
            repo: image_repository(registry_ref, c, &archive.container),
            tag: timestamp_tag(&created),
            moving_tag: None,
            chunk_size: 16 << 20,
            limits: Default::default(),
            known_digest: Some(object.digest.clone()),
            created,
        };
        let pushed = build_and_push(&registry, reader, &spec)
            .await
            .map_err(|e| fail(format!("{} ({}): {e}", archive.archive_key, spec.repo)))?;
        if let Some(r) = status.run.as_mut()
            && let Some(a) = r
                .archives
                .iter_mut()
                .find(|a| a.container == archive.container)
        {
            a.image = Some(pushed.reference.clone());
            a.size_bytes = i64::try_from(object.size).ok();
        }
        write_status(ctx, c, status).await?;
        ctx.metrics
            .checkpoints
            .get_or_create(&OutcomeLabels {
                outcome: "pushed".into(),
            })
            .inc();
    }

    // 3. Record, prune beyond retention, finish.
    let Some(done) = status.run.take() else {
        return Ok(());
    };
    let now = Timestamp::now();
    let mut dropped = Vec::new();
    for a in &done.archives {
        dropped.extend(status.record(
            CheckpointRecord {
                time: Time(now),
                container: a.container.clone(),
                archive_key: Some(a.archive_key.clone()),
                image: a.image.clone(),
                size_bytes: a.size_bytes,
                trigger: Some(done.trigger.clone()),
            },
            ctx.settings.retention,
        ));
    }
    let first = done.archives.first();
    status.phase = Some(CheckpointPhase::Completed);
    status.last_checkpoint_time = Some(Time(now));
    status.last_checkpoint_image = first.and_then(|a| a.image.clone());
    status.original_image = first.and_then(|a| {
        containers
            .iter()
            .find(|(n, _)| *n == a.container)
            .map(|(_, i)| i.clone())
    });
    status.observed_generation = c.meta().generation;
    let took = now.as_millisecond() - done.started_at.0.as_millisecond();
    let note = format!(
        "{} container(s) checkpointed in {} ms ({}): {}",
        done.archives.len(),
        took.max(0),
        done.trigger,
        done.archives
            .iter()
            .map(|a| format!("{} -> {}", a.container, a.image.as_deref().unwrap_or("?")))
            .collect::<Vec<_>>()
            .join(", ")
    );
    status.message = Some(note.clone());
    conditions::set(
        &mut status.conditions,
        conditions::READY,
        Status::True,
        "Checkpointed",
        &note,
        c.meta().generation,
        now,
    );
    conditions::set(
        &mut status.conditions,
        conditions::DEGRADED,
        Status::False,
        "Healthy",
        "last run completed",
        c.meta().generation,
        now,
    );
    conditions::set(
        &mut status.conditions,
        conditions::SPEC_VALID,
        Status::True,
        "Valid",
        "spec accepted",
        c.meta().generation,
        now,
    );
    write_status(ctx, c, status).await?;
    info!(elapsed_ms = run_started.elapsed().as_millis() as u64, %note, "checkpoint run completed");
    publish(ctx, c, EventType::Normal, "Checkpointed", &note).await;
    prune(ctx, store, &registry, &dropped).await;
    Ok(())
}

/// Deletes the archives and images of records beyond the retention (failures are logged: a
/// leftover object costs space, never correctness).
async fn prune(
    ctx: &Context,
    store: &crate::storage::ArchiveStore,
    registry: &Registry,
    dropped: &[CheckpointRecord],
) {
    for r in dropped {
        if let Some(key) = &r.archive_key
            && let Err(e) = store.delete(key).await
        {
            warn!(error = %e, "failed to prune an old archive");
        }
        if let Some((repo, digest)) = r
            .image
            .as_deref()
            .and_then(|i| i.split_once('@'))
            .and_then(|(name, d)| name.split_once('/').map(|(_, repo)| (repo, d)))
            && let Err(e) = registry.delete_manifest(repo, digest).await
        {
            warn!(error = %e, "failed to prune an old checkpoint image");
        }
    }
    if !dropped.is_empty() {
        ctx.metrics
            .checkpoints
            .get_or_create(&OutcomeLabels {
                outcome: "pruned".into(),
            })
            .inc_by(dropped.len() as u64);
    }
}

async fn node_of(client: &kube::Client, ns: &str, pod: &str) -> Result<String, String> {
    let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let p = api
        .get_opt(pod)
        .await
        .map_err(|e| format!("failed to read pod {ns}/{pod}: {e}"))?
        .ok_or_else(|| format!("pod {ns}/{pod} does not exist"))?;
    p.spec
        .and_then(|s| s.node_name)
        .ok_or_else(|| format!("pod {ns}/{pod} is not scheduled on a node"))
}

/// Spec errors wait for a change; everything else retries with bounded backoff.
pub fn error_policy(c: Arc<Checkpoint>, error: &Error, ctx: Arc<Context>) -> Action {
    let permanent = matches!(error, Error::InvalidSpec { .. });
    ctx.retry_after(
        CONTROLLER,
        error.metric_label(),
        &key_of(&c),
        permanent,
        error,
    )
}

/// Runs the Checkpoint controller until shutdown.
pub async fn run_controller(
    ctx: Arc<Context>,
    namespace: Option<&str>,
    stop: tokio_util::sync::CancellationToken,
) {
    let api: Api<Checkpoint> = ctx.api(namespace);
    let results = Controller::new(api, watcher::Config::default())
        .graceful_shutdown_on(stop.cancelled_owned())
        .run(reconcile, error_policy, ctx);
    crate::context::drain(results).await;
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_bad_cron_expression_is_reported_not_run() {
        let c = ckpt("61 * * * *", None, None);
        let err = decide(&c, at("2026-11-22T10:04:00Z")).unwrap_err();
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
