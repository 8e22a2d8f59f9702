//! What `/readyz` reports: the management API answered recently, and — on the leader — the
//! caches the controllers read hold their initial list. A standby replica is Ready too (it is
//! healthy and will take over within the Lease duration), so a Deployment of two replicas becomes
//! Available and a rolling update with `maxUnavailable: 0` goes through; the heartbeat Service
//! selects the leader by its Pod label instead (see [`crate::k8s::leader::PodLabel`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::observe::locks::lock;

/// How long an API answer keeps the operator Ready (three missed probes).
pub const API_FRESH: Duration = Duration::from_secs(15);
/// How often the background probe asks the API server for its version.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);

/// This replica's role, as `/readyz` explains it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Waiting for the Lease (or leader election is off and the controllers are starting).
    Standby,
    /// Runs the controllers.
    Leading,
}

#[derive(Debug)]
struct State {
    api_answered: Option<Instant>,
    role: Role,
    caches_synced: bool,
    /// The leader label of a previous run of this Pod was removed (or there is no Pod).
    label_cleared: bool,
}

/// Shared readiness state (cheap to clone).
#[derive(Clone, Debug)]
pub struct Readiness {
    state: Arc<std::sync::Mutex<State>>,
    /// Counts the times the management API answered again after a failed probe.
    returns: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Default for Readiness {
    fn default() -> Readiness {
        Readiness {
            state: Arc::new(std::sync::Mutex::new(State {
                api_answered: None,
                role: Role::Standby,
                caches_synced: false,
                label_cleared: true,
            })),
            returns: Arc::new(tokio::sync::watch::channel(0).0),
        }
    }
}

impl Readiness {
    /// The management API answered a request just now.
    pub fn api_answered(&self) {
        lock(&self.state, "readiness").api_answered = Some(Instant::now());
    }

    pub fn set_role(&self, role: Role) {
        lock(&self.state, "readiness").role = role;
    }

    pub fn set_caches_synced(&self, synced: bool) {
        lock(&self.state, "readiness").caches_synced = synced;
    }

    pub fn set_label_cleared(&self, cleared: bool) {
        lock(&self.state, "readiness").label_cleared = cleared;
    }

    /// `Ok` when ready at `now`, else why not.
    pub fn check_at(&self, now: Instant) -> Result<(), &'static str> {
        let s = lock(&self.state, "readiness");
        match s.api_answered {
            None => return Err("the management API server has not answered yet"),
            Some(at) if now.saturating_duration_since(at) > API_FRESH => {
                return Err("the management API server did not answer in the last 15 s");
            }
            Some(_) => {}
        }
        if !s.label_cleared {
            return Err("the leader label of a previous run is still on this Pod");
        }
        if s.role == Role::Leading && !s.caches_synced {
            return Err("leading, but the ClusterPolicy and Checkpoint caches are not synced yet");
        }
        Ok(())
    }

    pub fn check(&self) -> Result<(), &'static str> {
        self.check_at(Instant::now())
    }

    /// The management API answered again after a failed probe (an outage or a restart ended).
    pub fn api_returned(&self) {
        self.returns.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Yields once each time the management API comes back after a failed probe. Controllers
    /// reconcile everything then: retries of failures the outage caused were backed off (up to
    /// minutes) and nothing else wakes them, since the watches see no change.
    pub fn api_returns(&self) -> impl futures::Stream<Item = ()> + Send + 'static {
        let rx = self.returns.subscribe();
        futures::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok()?;
            Some(((), rx))
        })
    }

    /// Asks the API server for its version every [`PROBE_EVERY`] (each ask bounded by the same)
    /// until `stop`, marking each answer.
    pub fn probe_api(&self, client: kube::Client, stop: tokio_util::sync::CancellationToken) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut failed = false;
            loop {
                match tokio::time::timeout(PROBE_EVERY, client.apiserver_version()).await {
                    Ok(Ok(_)) => {
                        me.api_answered();
                        if std::mem::take(&mut failed) {
                            tracing::info!("the management API server answers again");
                            me.api_returned();
                        }
                    }
                    Ok(Err(e)) => {
                        failed = true;
                        tracing::debug!(error = %e, "readiness: API server version request failed")
                    }
                    Err(_) => {
                        failed = true;
                        tracing::debug!("readiness: API server version request timed out")
                    }
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(PROBE_EVERY) => {}
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standby_replica_is_ready_once_the_api_answered() {
        let r = Readiness::default();
        let now = Instant::now();
        assert!(r.check_at(now).is_err(), "no answer yet");
        r.api_answered();
        assert_eq!(r.check_at(Instant::now()), Ok(()));
    }

    #[test]
    fn the_leader_is_ready_only_with_synced_caches() {
        let r = Readiness::default();
        r.api_answered();
        r.set_role(Role::Leading);
        assert!(r.check().unwrap_err().contains("caches"));
        r.set_caches_synced(true);
        assert_eq!(r.check(), Ok(()));
    }

    #[test]
    fn a_silent_api_server_makes_the_replica_unready() {
        let r = Readiness::default();
        r.api_answered();
        let later = Instant::now() + API_FRESH + Duration::from_secs(1);
        assert!(r.check_at(later).unwrap_err().contains("did not answer"));
    }

    #[tokio::test]
    async fn each_return_of_the_api_wakes_the_controllers_once() {
        use futures::StreamExt;
        let r = Readiness::default();
        let mut returns = Box::pin(r.api_returns());
        r.api_returned();
        let woke = tokio::time::timeout(Duration::from_secs(1), returns.next()).await;
        assert_eq!(woke, Ok(Some(())));
        let idle = tokio::time::timeout(Duration::from_millis(50), returns.next()).await;
        assert!(idle.is_err(), "no second wake without a second return");
    }

    #[test]
    fn a_leftover_leader_label_keeps_the_pod_out_of_the_heartbeat_service() {
        let r = Readiness::default();
        r.api_answered();
        r.set_label_cleared(false);
        assert!(r.check().unwrap_err().contains("leader label"));
    }
}
