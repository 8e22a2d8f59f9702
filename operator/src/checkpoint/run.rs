//! One checkpoint run, carried forward from what `status.run` records: (1) the kubelet checkpoint
//! of each container not yet taken, (2) each archive's image once the agent's upload is in S3,
//! (3) the record in the history, pruning beyond the retention. The caller persists the status
//! after every step; nothing here waits: an upload not there yet is a [`Progress::Waiting`].
//!
//! Step 2 decrypts an archive the agent encrypted (age, `--archive-identity-file`) and, with
//! `--image-encryption-keys-dir`, pushes the layer encrypted for the clusters that may restore it
//! ([`restore_clusters`]).

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use transition_crds::checkpoint::{CheckpointRecord, CheckpointRun, CheckpointStatus, RunArchive};
use transition_crds::cluster_policy::ClusterPolicySpec;
use transition_crds::storage::ArchiveKey;
use transition_crds::{Checkpoint, ClusterPolicy};

use super::Error;
use super::registry::image_repository;
use crate::context::Context;
use crate::image::age_archive::Unseal;
use crate::image::build::{ImageError, ImageSpec, LayerEncryption, build_and_push, timestamp_tag};
use crate::image::ocicrypt;
use crate::image::registry::Registry;
use crate::kubelet::{Kubelet, KubeletError};
use crate::observe::metrics::OutcomeLabels;
use crate::storage::ArchiveStore;

/// Where a run stands after one step.
#[derive(Debug, PartialEq, Eq)]
pub enum Progress {
    /// Every image is pushed: the run can be recorded.
    Pushed,
    /// Waiting for the agent's upload of `key`; look again after the delay.
    Waiting { key: String, after: Duration },
}

/// What one run works on, from the Checkpoint's spec.
pub struct Target<'a> {
    pub checkpoint: &'a Checkpoint,
    /// `namespace/name` of the Checkpoint.
    pub id: String,
    pub cluster: String,
    pub pod_namespace: String,
    pub pod: String,
    /// `(container, original image)`.
    pub containers: Vec<(String, String)>,
}

impl<'a> Target<'a> {
    /// Reads the run's target from `c`'s spec.
    pub fn of(c: &'a Checkpoint, id: String) -> Result<Target<'a>, Error> {
        let ns = kube::ResourceExt::namespace(c).unwrap_or_default();
        let cluster = c
            .spec
            .cluster_ref
            .as_ref()
            .map(|r| r.name.clone())
            .ok_or_else(|| Error::InvalidSpec {
                checkpoint: id.clone(),
                reason: "spec.clusterRef.name is required".into(),
            })?;
        let containers = c
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
        Ok(Target {
            checkpoint: c,
            cluster,
            pod_namespace: c.spec.pod_ref.namespace.clone().unwrap_or(ns),
            pod: c.spec.pod_ref.name.clone(),
            containers,
            id,
        })
    }

    /// Containers of the target with no archive in the run yet.
    pub fn missing(&self, status: &CheckpointStatus) -> Vec<String> {
        self.containers
            .iter()
            .map(|(name, _)| name)
            .filter(|name| {
                status
                    .run
                    .as_ref()
                    .is_some_and(|r| !r.archives.iter().any(|a| &a.container == *name))
            })
            .cloned()
            .collect()
    }
}

/// Step 1 for one container: the kubelet checkpoint through the source cluster's node proxy.
/// Returns the run archive to record.
pub async fn take(
    ctx: &Context,
    target: &Target<'_>,
    kubelet: &Kubelet,
    node: &str,
    container: &str,
) -> Result<RunArchive, Error> {
    let paths = kubelet
        .checkpoint(
            node,
            &target.pod_namespace,
            &target.pod,
            container,
            ctx.settings.kubelet_timeout,
        )
        .await
        .map_err(|source| match source {
            KubeletError::NotFound { .. } => Error::PodGone {
                checkpoint: target.id.clone(),
                reason: source.to_string(),
            },
            _ => Error::Kubelet {
                checkpoint: target.id.clone(),
                source: Box::new(source),
            },
        })?;
    let file = paths
        .first()
        .and_then(|p| std::path::Path::new(p).file_name())
        .and_then(|f| f.to_str())
        .ok_or_else(|| Error::NoArchive {
            checkpoint: target.id.clone(),
            paths: paths.clone(),
        })?;
    let key = ArchiveKey::new(&target.cluster, node, file).map_err(|source| Error::ArchiveKey {
        checkpoint: target.id.clone(),
        source: Box::new(source),
    })?;
    ctx.metrics
        .checkpoints
        .get_or_create(&OutcomeLabels {
            outcome: "taken".into(),
        })
        .inc();
    Ok(RunArchive {
        container: container.to_owned(),
        archive_key: key.to_string(),
        taken_at: Some(Time(Timestamp::now())),
        image: None,
        size_bytes: None,
    })
}

/// The node the pod runs on (from the spec, else the source cluster's API).
pub async fn node_of(client: &kube::Client, target: &Target<'_>) -> Result<String, Error> {
    if let Some(n) = target.checkpoint.spec.pod_ref.node_name.clone() {
        return Ok(n);
    }
    let (ns, pod) = (&target.pod_namespace, &target.pod);
    let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), ns);
    let gone = |reason: String| Error::PodGone {
        checkpoint: target.id.clone(),
        reason,
    };
    let p = api
        .get_opt(pod)
        .await
        .map_err(|source| Error::ReadPod {
            checkpoint: target.id.clone(),
            pod: format!("{ns}/{pod}"),
            source,
        })?
        .ok_or_else(|| gone(format!("pod {ns}/{pod} does not exist")))?;
    p.spec
        .and_then(|s| s.node_name)
        .ok_or_else(|| gone(format!("pod {ns}/{pod} is not scheduled on a node")))
}

/// How long to wait before looking for an upload again, `waited` after the archive was taken:
/// quick at first, then every 5 s at most.
pub fn upload_poll_delay(waited: Duration) -> Duration {
    (waited / 4).clamp(Duration::from_millis(250), Duration::from_secs(5))
}

/// The archives (and any images) of a run that will not finish, as records to delete.
pub fn unfinished_records(run: &CheckpointRun) -> Vec<CheckpointRecord> {
    run.archives
        .iter()
        .map(|a| CheckpointRecord {
            time: a.taken_at.clone().unwrap_or_else(|| Time(Timestamp::now())),
            container: a.container.clone(),
            archive_key: Some(a.archive_key.clone()),
            image: a.image.clone(),
            size_bytes: a.size_bytes,
            trigger: Some(run.trigger.clone()),
        })
        .collect()
}

/// What step 2 came to for one archive.
#[derive(Debug, PartialEq, Eq)]
pub enum Built {
    /// The image reference and the archive's size.
    Image(String, u64),
    /// Not there yet, still within the wait; `s3_unreachable` says why S3 could not answer.
    NotYet { s3_unreachable: Option<String> },
}

/// Step 2 for one archive: its image once the agent's upload is complete.
pub async fn build_image(
    ctx: &Context,
    target: &Target<'_>,
    store: &ArchiveStore,
    registry: &Registry,
    archive: &RunArchive,
    now: Timestamp,
) -> Result<Built, Error> {
    let object = match store.ready(&archive.archive_key).await {
        Ok(o) => o,
        Err(source) => {
            let taken = archive.taken_at.as_ref().map_or(now, |t| t.0);
            let waited = Duration::from_millis(
                u64::try_from((now.as_millisecond() - taken.as_millisecond()).max(0)).unwrap_or(0),
            );
            // Not there yet, or S3 unreachable: both may change within the wait.
            if waited < ctx.settings.archive_wait {
                let s3_unreachable = source.unreachable().map(str::to_owned);
                if s3_unreachable.is_some() {
                    ctx.metrics.archive_read_retries.inc();
                }
                return Ok(Built::NotYet { s3_unreachable });
            }
            return Err(Error::UploadMissing {
                checkpoint: target.id.clone(),
                key: archive.archive_key.clone(),
                seconds: ctx.settings.archive_wait.as_secs(),
                source: Box::new(source),
            });
        }
    };
    let store_error = |source| Error::Store {
        checkpoint: target.id.clone(),
        source: Box::new(source),
    };
    let repo = image_repository(
        &target.checkpoint.spec.registry,
        target.checkpoint,
        &archive.container,
    );
    let image_error = |source: ImageError| Error::Image {
        checkpoint: target.id.clone(),
        key: archive.archive_key.clone(),
        repo: repo.clone(),
        source: Box::new(source),
    };
    // Both key sets are read at every build: a rotated Secret needs no restart.
    let unseal = Unseal::for_object(
        &object.url,
        object.encrypted,
        ctx.settings.archive_identity_file.as_deref(),
    )
    .map_err(|e| image_error(e.into()))?;
    let encryption = match &ctx.settings.image_encryption_keys_dir {
        None => None,
        Some(dir) => {
            let clusters = restore_clusters_of(ctx, target).await?;
            let recipients =
                ocicrypt::keys_for_clusters(dir, &clusters).map_err(|e| image_error(e.into()))?;
            Some(LayerEncryption { recipients })
        }
    };
    let reader = store
        .open(&archive.archive_key)
        .await
        .map_err(store_error)?;
    let created = Timestamp::now().to_string();
    let spec = ImageSpec {
        repo: repo.clone(),
        tag: timestamp_tag(&created),
        moving_tag: None,
        chunk_size: 16 << 20,
        limits: Default::default(),
        known_digest: Some(object.digest.clone()),
        created,
        arch: node_arch(ctx, &archive.archive_key),
        unseal,
        encryption,
    };
    let pushed = build_and_push(registry, reader, &spec)
        .await
        .map_err(image_error)?;
    ctx.metrics
        .checkpoints
        .get_or_create(&OutcomeLabels {
            outcome: "pushed".into(),
        })
        .inc();
    if let Some(key_file) = &ctx.settings.image_signing_key_file {
        super::sign::sign(ctx, target, store, registry, &pushed, &repo, key_file).await?;
    }
    Ok(Built::Image(pushed.reference, object.plaintext_size))
}

/// The clusters a checkpoint image may be restored on, from the Checkpoint's owning
/// ClusterPolicy (cache, else one GET): see [`restore_clusters`]. No owning policy (a Checkpoint
/// made by hand) or a policy that is gone: empty (every key of the folder).
async fn restore_clusters_of(ctx: &Context, target: &Target<'_>) -> Result<Vec<String>, Error> {
    let owner = target
        .checkpoint
        .metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.kind == "ClusterPolicy");
    let (Some(owner), Some(ns)) = (owner, kube::ResourceExt::namespace(target.checkpoint)) else {
        return Ok(Vec::new());
    };
    let policy: Option<std::sync::Arc<ClusterPolicy>> = ctx
        .policy(&ns, &owner.name)
        .await
        .map_err(|source| Error::ReadPolicy {
            checkpoint: target.id.clone(),
            policy: format!("{ns}/{}", owner.name),
            source,
        })?;
    Ok(policy
        .map(|p| restore_clusters(&p.spec, &target.cluster))
        .unwrap_or_default())
}

/// The clusters a checkpoint taken on `taken_on` may be restored on (pure): the policy's
/// preferred targets that are not avoided, and its source cluster (a failback after a move),
/// except `taken_on` itself. Sorted, without duplicates.
pub fn restore_clusters(spec: &ClusterPolicySpec, taken_on: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let targets = spec.target_cluster_policy.as_ref();
    let avoided =
        |name: &str| targets.is_some_and(|t| t.avoid_clusters.iter().any(|a| a.name == name));
    for c in targets.iter().flat_map(|t| t.prefer_clusters.iter()) {
        out.push(c.name.clone());
    }
    out.push(spec.cluster_selector.name.clone());
    out.retain(|c| !c.is_empty() && c != taken_on && !avoided(c));
    out.sort();
    out.dedup();
    out
}

/// The architecture the agent of the archive's node reports in its heartbeats (`None`: no beat
/// known, e.g. heartbeats off — the image then carries the operator's).
fn node_arch(ctx: &Context, archive_key: &str) -> Option<String> {
    let key = ArchiveKey::parse(archive_key).ok()?;
    let beats = ctx.beats.as_ref()?;
    let last = crate::observe::locks::lock(&beats.last, "last heartbeats");
    let node = crate::detect::tracker::NodeKey {
        cluster: key.cluster,
        node: key.node,
    };
    last.get(&node)
        .map(|b| b.payload.arch.clone())
        .filter(|a| !a.trim().is_empty())
}

/// Step 3: records the finished run in the history and the status; returns the records beyond
/// the retention (to prune) and the note for the Event.
pub fn record(
    status: &mut CheckpointStatus,
    target: &Target<'_>,
    retention: usize,
    now: Timestamp,
) -> (Vec<CheckpointRecord>, String) {
    let Some(done) = status.run.take() else {
        return (Vec::new(), String::new());
    };
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
            retention,
        ));
    }
    let first = done.archives.first();
    status.phase = Some(transition_crds::checkpoint::CheckpointPhase::Completed);
    status.last_checkpoint_time = Some(Time(now));
    status.last_checkpoint_image = first.and_then(|a| a.image.clone());
    status.original_image = first.and_then(|a| {
        target
            .containers
            .iter()
            .find(|(n, _)| *n == a.container)
            .map(|(_, i)| i.clone())
    });
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
    (dropped, note)
}

#[cfg(test)]
mod tests {
    use super::*;
    use transition_crds::checkpoint::CheckpointRun;

    fn checkpoint() -> Checkpoint {
        serde_saphyr::from_str(
            r#"
apiVersion: transition.dcnlab.ssu.ac.kr/v1
kind: Checkpoint
metadata: {name: c, namespace: ops}
spec:
  schedule: "@manual"
  clusterRef: {name: cluster1-azure}
  podRef: {namespace: default, name: counter-a, nodeName: worker-1, containerRef: {containers: [{name: counter}]}}
  resourceRef: {apiVersion: apps/v1, kind: Deployment, namespace: default, name: counter}
  registry: {url: "http://127.0.0.1:5000", repository: checkpoints}
  containers: [{name: counter, image: "busybox:1.36"}]
"#,
        )
        .unwrap()
    }

    fn run_with(image: &str, second: i64) -> CheckpointRun {
        CheckpointRun {
            trigger: format!("manual:{second}"),
            started_at: Time(Timestamp::from_second(second).unwrap()),
            archives: vec![RunArchive {
                container: "counter".into(),
                archive_key: format!("checkpoints/v1/c/n/{second}.tar"),
                taken_at: None,
                image: Some(image.into()),
                size_bytes: Some(10),
            }],
        }
    }

    #[test]
    fn a_finished_run_is_recorded_and_what_falls_beyond_the_retention_is_returned_for_pruning() {
        let c = checkpoint();
        let target = Target::of(&c, "ops/c".into()).unwrap();
        let mut status = CheckpointStatus::default();
        let mut pruned = Vec::new();
        for (i, second) in [10, 20, 30].into_iter().enumerate() {
            status.run = Some(run_with(&format!("r/c@sha256:{i}"), second));
            let now = Timestamp::from_second(second + 1).unwrap();
            let (dropped, note) = record(&mut status, &target, 2, now);
            assert!(note.contains("1 container(s) checkpointed"), "{note}");
            pruned.extend(dropped);
        }
        assert!(status.run.is_none());
        assert_eq!(
            status.last_checkpoint_image.as_deref(),
            Some("r/c@sha256:2")
        );
        assert_eq!(status.original_image.as_deref(), Some("busybox:1.36"));
        assert_eq!(status.history.len(), 2, "retention 2");
        assert_eq!(pruned.len(), 1, "the oldest goes");
        assert_eq!(pruned[0].image.as_deref(), Some("r/c@sha256:0"));
        assert_eq!(
            pruned[0].archive_key.as_deref(),
            Some("checkpoints/v1/c/n/10.tar")
        );
    }

    /// A checkpoint is encrypted for where it can go: the preferred targets (not the avoided)
    /// and, for a failback, the source; never for the cluster it was taken on.
    #[test]
    fn an_image_is_encrypted_for_the_targets_and_the_source_but_not_where_it_was_taken() {
        let policy: ClusterPolicy = serde_saphyr::from_str(
            r#"
apiVersion: transition.dcnlab.ssu.ac.kr/v1
kind: ClusterPolicy
metadata: {name: p, namespace: ops}
spec:
  clusterSelector: {name: cluster1-azure, repo: "http://git/r"}
  targetClusterPolicy:
    preferClusters: [{name: cluster2-aws, weight: 100}, {name: cluster3-gcp, weight: 50}, {name: cluster4, weight: 1}]
    avoidClusters: [{name: cluster4}]
"#,
        )
        .unwrap();
        assert_eq!(
            restore_clusters(&policy.spec, "cluster1-azure"),
            ["cluster2-aws", "cluster3-gcp"]
        );
        assert_eq!(
            restore_clusters(&policy.spec, "cluster2-aws"),
            ["cluster1-azure", "cluster3-gcp"],
            "after a move, the source is a failback target"
        );
    }

    #[test]
    fn an_upload_is_looked_for_quickly_at_first_then_every_five_seconds() {
        assert_eq!(
            upload_poll_delay(Duration::ZERO),
            Duration::from_millis(250)
        );
        assert_eq!(
            upload_poll_delay(Duration::from_secs(4)),
            Duration::from_secs(1)
        );
        assert_eq!(
            upload_poll_delay(Duration::from_secs(600)),
            Duration::from_secs(5)
        );
    }
}
