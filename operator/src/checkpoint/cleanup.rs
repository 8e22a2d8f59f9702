//! The cleanup behind [`super::FINALIZER`]: a deleted Checkpoint takes its archives (S3) and
//! images (registry) with it, except images a Transition deployed.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::info;
use transition_crds::Checkpoint;

use super::{Error, prune, registry, run};
use crate::context::Context;
use crate::k8s::id_of;

/// How long a deleted Checkpoint waits for S3 and the registry to allow the cleanup before it
/// goes anyway, naming what it left in a Warning Event (a finalizer must not hold a namespace
/// deletion forever).
const CLEANUP_DEADLINE: Duration = Duration::from_secs(600);

/// A deleted Checkpoint: deletes the archives and images of its history and of an unfinished
/// run — except images a Transition in the namespace deployed (Git may pin them) — then lets the
/// object go. Retried with backoff while S3 or the registry fail, for [`CLEANUP_DEADLINE`].
pub async fn cleanup(c: &Checkpoint, ctx: &Context) -> Result<Action, Error> {
    let id = id_of(c);
    let status = c.status.clone().unwrap_or_default();
    let mut records = status.history.clone();
    if let Some(run) = &status.run {
        records.extend(run::unfinished_records(run));
    }
    if records.is_empty() {
        return Ok(Action::await_change());
    }
    let ns = c.namespace().unwrap_or_default();
    let mut left = Vec::new();
    let pinned = match pinned_images(ctx, &ns).await {
        Ok(p) => Some(p),
        Err(e) => {
            left.push(format!(
                "could not list the Transitions of namespace {ns} (images kept until it can): {e}"
            ));
            None
        }
    };
    match ctx.store.as_ref() {
        Some(store) => {
            let registry =
                registry::registry_for(&ctx.clusters.secrets, &ctx.client, &ns, &c.spec.registry)
                    .await;
            let images = match (&registry, &pinned) {
                (Ok(r), Some(p)) => Some((r, p.as_slice())),
                _ => None,
            };
            left.extend(prune::delete_records(store, images, &records).await);
            if let Err(e) = &registry
                && records.iter().any(|r| r.image.is_some())
            {
                left.push(format!("registry: {e}"));
            }
        }
        None => left.push("no S3 store configured (--s3-endpoint)".into()),
    }
    if left.is_empty() {
        info!(checkpoint = %id, records = records.len(), "deleted the archives and images of a deleted Checkpoint");
        return Ok(Action::await_change());
    }
    let deleting_for = c
        .meta()
        .deletion_timestamp
        .as_ref()
        .map_or(Duration::ZERO, |t| {
            Duration::from_millis(
                u64::try_from((Timestamp::now().as_millisecond() - t.0.as_millisecond()).max(0))
                    .unwrap_or(0),
            )
        });
    if deleting_for >= CLEANUP_DEADLINE {
        let note = format!(
            "gave up cleaning up after {} s; left {} object(s): {}",
            CLEANUP_DEADLINE.as_secs(),
            left.len(),
            left.join("; ")
        );
        ctx.publish(c, EventType::Warning, "CleanupAbandoned", &note)
            .await;
        tracing::warn!(checkpoint = %id, %note, "letting a deleted Checkpoint go");
        return Ok(Action::await_change());
    }
    Err(Error::Cleanup {
        checkpoint: id,
        left: left.len(),
        first: left.first().cloned().unwrap_or_default(),
    })
}

/// Digests (`sha256:…`) of the images the Transitions in `namespace` recorded: deployed (or
/// about to be) from Git, so never deleted with a Checkpoint.
async fn pinned_images(ctx: &Context, namespace: &str) -> Result<Vec<String>, kube::Error> {
    let api: kube::Api<transition_crds::Transition> =
        kube::Api::namespaced(ctx.client.clone(), namespace);
    Ok(api
        .list(&Default::default())
        .await?
        .items
        .iter()
        .filter_map(|t| t.status.as_ref())
        .flat_map(|s| s.images.iter().map(|i| i.digest.clone()))
        .collect())
}
