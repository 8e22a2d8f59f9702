//! Leader election with a `coordination.k8s.io/v1` Lease: only the holder runs the controllers.
//! Acquire = create the Lease, or take it over once its holder let it expire (optimistic
//! concurrency on `resourceVersion`, so two candidates never both win); the leader renews every
//! `duration / 3` and gives up — stopping its controllers — when it could not renew within the
//! lease duration.
//!
//! Every replica is Ready (see [`crate::observe::readiness`]); the leader labels its own Pod with
//! [`LEADER_LABEL`] so the heartbeat Service, which selects on it, routes agents to the leader
//! alone (only the leader serves heartbeats).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Lease settings.
#[derive(Clone, Debug)]
pub struct Election {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration: Duration,
}

/// Whether a lease held by someone else has expired at `now` (pure).
pub fn expired(spec: &LeaseSpec, now: Timestamp) -> bool {
    let Some(renewed) = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()) else {
        return true;
    };
    let secs = i64::from(spec.lease_duration_seconds.unwrap_or(15));
    now.as_millisecond() - renewed.0.as_millisecond() > secs * 1000
}

impl Election {
    fn spec(&self, now: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.duration.as_secs()).unwrap_or(15)),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One attempt: `Ok(true)` when we hold the lease afterwards.
    pub async fn try_acquire_or_renew(&self, api: &Api<Lease>) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let Some(mut lease) = api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(now, 0)),
            };
            return match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        if !ours && !expired(&spec, now) {
            return Ok(false);
        }
        let mut next = self.spec(now, spec.lease_transitions.unwrap_or(0) + i32::from(!ours));
        if ours {
            next.acquire_time = spec.acquire_time.clone();
        }
        lease.spec = Some(next);
        // `replace` carries the resourceVersion we read: a concurrent taker makes this a 409.
        match api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Waits until this instance leads, then keeps renewing in the background; the returned
    /// token is cancelled when leadership is lost (or `stop` is cancelled).
    pub async fn lead(self, client: kube::Client, stop: CancellationToken) -> CancellationToken {
        let api: Api<Lease> = Api::namespaced(client, &self.namespace);
        let retry = (self.duration / 3).max(Duration::from_secs(1));
        loop {
            match self.try_acquire_or_renew(&api).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => warn!(error = %e, lease = %self.name, "leader election attempt failed"),
            }
            tokio::select! {
                () = stop.cancelled() => return stop,
                () = tokio::time::sleep(retry) => {}
            }
        }
        info!(identity = %self.identity, lease = %self.name, "became the leader");
        let lost = stop.child_token();
        let token = lost.clone();
        tokio::spawn(async move {
            let mut last_ok = tokio::time::Instant::now();
            loop {
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(retry) => {}
                }
                match tokio::time::timeout(retry, self.try_acquire_or_renew(&api)).await {
                    Ok(Ok(true)) => last_ok = tokio::time::Instant::now(),
                    Ok(Ok(false)) => {
                        warn!(lease = %self.name, "another instance took the lease: stopping");
                        token.cancel();
                        return;
                    }
                    Ok(Err(e)) => warn!(error = %e, "lease renewal failed"),
                    Err(_) => warn!("lease renewal timed out"),
                }
                if last_ok.elapsed() > self.duration {
                    warn!(lease = %self.name, "could not renew the lease in time: stopping");
                    token.cancel();
                    return;
                }
            }
        });
        lost
    }
}

/// Label the leader puts on its own Pod (`"true"`); the heartbeat Service selects on it.
pub const LEADER_LABEL: &str = "transition.dcnlab.ssu.ac.kr/leader";
/// Deadline of one label patch.
const LABEL_TIMEOUT: Duration = Duration::from_secs(5);

/// The operator's own Pod (`--pod-name`), whose [`LEADER_LABEL`] says who leads.
#[derive(Clone)]
pub struct PodLabel {
    pub api: Api<k8s_openapi::api::core::v1::Pod>,
    pub pod: String,
}

/// Why a label patch failed.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("failed to patch the leader label of Pod {pod}: {source}")]
    Patch {
        pod: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to patch the leader label of Pod {pod}: no answer within {LABEL_TIMEOUT:?}")]
    Timeout { pod: String },
}

impl PodLabel {
    /// Sets (`leading`) or removes the label (one merge patch, bounded by a deadline).
    pub async fn set(&self, leading: bool) -> Result<(), LabelError> {
        let value = if leading {
            serde_json::Value::from("true")
        } else {
            serde_json::Value::Null
        };
        let patch = serde_json::json!({"metadata": {"labels": {LEADER_LABEL: value}}});
        let (params, patch) = (
            kube::api::PatchParams::default(),
            kube::api::Patch::Merge(&patch),
        );
        let call = self.api.patch(&self.pod, &params, &patch);
        match tokio::time::timeout(LABEL_TIMEOUT, call).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(source)) => Err(LabelError::Patch {
                pod: self.pod.clone(),
                source,
            }),
            Err(_) => Err(LabelError::Timeout {
                pod: self.pod.clone(),
            }),
        }
    }

    /// Retries [`PodLabel::set`] with backoff (1 s doubling to 16 s) until it succeeds or `stop`
    /// is cancelled; `true` when it succeeded.
    pub async fn set_until(&self, leading: bool, stop: &CancellationToken) -> bool {
        let mut delay = Duration::from_secs(1);
        loop {
            match self.set(leading).await {
                Ok(()) => {
                    info!(pod = %self.pod, leading, "leader label of this Pod updated");
                    return true;
                }
                Err(e) => warn!(error = %e, retry_in = ?delay, "could not update the leader label"),
            }
            tokio::select! {
                () = stop.cancelled() => return false,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(16));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_only_after_its_duration_without_renewal() {
        let t = |s| Timestamp::from_second(s).unwrap();
        let spec = LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(t(100))),
            ..Default::default()
        };
        assert!(!expired(&spec, t(110)));
        assert!(expired(&spec, t(116)));
        assert!(expired(&LeaseSpec::default(), t(0)), "never renewed: free");
    }
}
