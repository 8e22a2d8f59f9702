//! The detector loop: every 100 ms it asks the tracker which nodes became suspicious, probes the
//! workload clusters about them, writes NodeHealth on health changes only, and hands confirmed
//! node failures to the transition orchestrator through a channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use transition_crds::NodeHealthStatus;
use transition_crds::conditions::{self, Status};
use transition_crds::node_health::NodeCondition;

use super::kubelet_reach::{KubeletCheck, KubeletReach, Peer, classify_proxy_answer};
use super::server::{Beats, LastBeat, now_ms};
use super::tracker::{Change, Health, NodeKey, NodeView, ProbeError, Vantage};
use crate::k8s::FIELD_MANAGER;

/// A confirmed node failure, for the transition orchestrator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultEvent {
    pub cluster: String,
    pub node: String,
    pub reason: String,
    pub at_ms: u64,
}

/// Asks a workload cluster about one of its nodes (and, with `kubelet`, about its kubelet
/// through the API server's node proxy).
pub trait ClusterProbe: Send + Sync {
    fn view(
        &self,
        key: &NodeKey,
        kubelet: Option<&KubeletCheck>,
    ) -> impl std::future::Future<Output = Result<NodeView, ProbeError>> + Send;
}

/// The real probe: the Node's Ready condition, its Lease in `kube-node-lease`, and its kubelet's
/// `/healthz` through the API server's node proxy (concurrently with the two GETs).
#[derive(Clone, Default)]
pub struct KubeProbe {
    /// Fixed clients by cluster (tests; used only when no [`SecretClients`] is set).
    pub clients: HashMap<String, kube::Client>,
    /// The controllers' way to a cluster: the kubeconfig Secret of a ClusterPolicy that names
    /// it as its source (then `--workload-kubeconfig-dir`).
    pub secrets: Option<SecretClients>,
}

/// Workload-cluster clients from the same kubeconfig Secrets the controllers use: the probe asks
/// the source cluster with exactly the credentials discovery and fencing use.
#[derive(Clone)]
pub struct SecretClients {
    pub clusters: Arc<crate::k8s::clusters::WorkloadClusters>,
    pub management: kube::Client,
    pub caches: crate::context::Caches,
}

impl SecretClients {
    /// A client for `cluster`, through the first ClusterPolicy (by namespace/name) whose source
    /// it is.
    pub async fn client(&self, cluster: &str) -> Result<kube::Client, ProbeError> {
        use kube::ResourceExt;
        let mut policies: Vec<Arc<transition_crds::ClusterPolicy>> =
            if crate::context::Caches::ready(&self.caches.policies) {
                self.caches.policies.state()
            } else {
                let api: Api<transition_crds::ClusterPolicy> = Api::all(self.management.clone());
                api.list(&Default::default())
                    .await
                    .map_err(|e| ProbeError::Read {
                        what: "ClusterPolicies naming the cluster",
                        node: cluster.to_owned(),
                        reason: e.to_string(),
                    })?
                    .items
                    .into_iter()
                    .map(Arc::new)
                    .collect()
            };
        policies.retain(|p| p.spec.cluster_selector.name == cluster);
        policies.sort_by_key(|p| (p.namespace(), p.name_any()));
        let policy = policies
            .first()
            .ok_or_else(|| ProbeError::NoClient(cluster.to_owned()))?;
        let ns = policy.namespace().unwrap_or_default();
        let annotations = policy.metadata.annotations.clone().unwrap_or_default();
        self.clusters
            .client(cluster, &ns, &annotations)
            .await
            .map_err(|e| ProbeError::Cluster(e.to_string()))
    }
}

/// Asks `node`'s kubelet `GET /healthz` through the API server's node proxy, with our deadline;
/// returns the classified answer and when it came (ms). A deadline passing is `Unreachable` —
/// callers count it only when the same API server answered their other requests in time.
pub async fn kubelet_reach(
    client: &kube::Client,
    node: &str,
    timeout_ms: u64,
) -> (KubeletReach, u64) {
    let ask = async {
        let req = http::Request::get(format!("/api/v1/nodes/{node}/proxy/healthz"))
            .body(kube::client::Body::from(Vec::new()))
            .map_err(|e| e.to_string())?;
        let res = client.send(req).await.map_err(|e| e.to_string())?;
        let status = res.status().as_u16();
        let body = res
            .into_body()
            .collect_bytes()
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>((status, body))
    };
    let reach = match tokio::time::timeout(Duration::from_millis(timeout_ms), ask).await {
        Ok(Ok((status, body))) => classify_proxy_answer(status, &String::from_utf8_lossy(&body)),
        Ok(Err(e)) => KubeletReach::Unknown(format!("failed to ask the API server: {e}")),
        Err(_) => KubeletReach::Unreachable(format!(
            "no answer through the API server within {timeout_ms} ms"
        )),
    };
    (reach, now_ms())
}

impl ClusterProbe for KubeProbe {
    async fn view(
        &self,
        key: &NodeKey,
        kubelet: Option<&KubeletCheck>,
    ) -> Result<NodeView, ProbeError> {
        let client = match &self.secrets {
            Some(s) => s.client(&key.cluster).await?,
            None => self
                .clients
                .get(&key.cluster)
                .cloned()
                .ok_or_else(|| ProbeError::NoClient(key.cluster.clone()))?,
        };
        let client = &client;
        let read = |what: &'static str| {
            move |e: kube::Error| ProbeError::Read {
                what,
                node: key.node.clone(),
                reason: e.to_string(),
            }
        };
        let ask_kubelet = async {
            match kubelet {
                Some(check) => {
                    let (reach, at) = kubelet_reach(client, &key.node, check.timeout_ms).await;
                    (reach, Some(at))
                }
                None => (KubeletReach::NotAsked, None),
            }
        };
        let read_node_and_lease = async {
            let node = Api::<Node>::all(client.clone())
                .get_opt(&key.node)
                .await
                .map_err(read("Node"))?;
            let lease = Api::<Lease>::namespaced(client.clone(), "kube-node-lease")
                .get_opt(&key.node)
                .await
                .map_err(read("Lease"))?;
            Ok::<_, ProbeError>((node, lease))
        };
        let (read, (kubelet_reach_now, kubelet_at_ms)) =
            futures::future::join(read_node_and_lease, ask_kubelet).await;
        let (node, lease) = read?;
        let ready = node
            .as_ref()
            .and_then(|n| n.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| match c.status.as_str() {
                "True" => Some(true),
                "False" | "Unknown" => Some(false),
                _ => None,
            });
        let ready = if node.is_none() { Some(false) } else { ready };
        let lease_renewed_ms = lease
            .and_then(|l| l.spec)
            .and_then(|s| s.renew_time)
            .and_then(|t| u64::try_from(t.0.as_millisecond()).ok());
        // Unreachable: is the API server's path to kubelets working? Ask a healthy peer's.
        let peer = match kubelet.and_then(|c| c.peer.as_ref().map(|p| (p, c.timeout_ms))) {
            Some((peer, timeout_ms)) if kubelet_reach_now.is_unreachable() => Some(Peer {
                node: peer.clone(),
                kubelet: kubelet_reach(client, peer, timeout_ms).await.0,
            }),
            _ => None,
        };
        Ok(NodeView {
            ready,
            lease_renewed_ms,
            kubelet: kubelet_reach_now,
            kubelet_at_ms,
            peer,
        })
    }
}

/// What the vantage points say about `cluster`'s API (pure): the `reach` reports of agents on
/// other clusters whose check ran at most `fresh_ms` before `now_ms`.
pub fn vantage_of(
    cluster: &str,
    last: &HashMap<NodeKey, LastBeat>,
    now_ms: u64,
    fresh_ms: u64,
) -> Vantage {
    let mut v = Vantage::default();
    for (reporter, beat) in last {
        if reporter.cluster == cluster {
            continue;
        }
        for r in beat.payload.reach.iter().filter(|r| r.cluster == cluster) {
            let age = now_ms
                .saturating_sub(beat.received_ms)
                .saturating_add(r.age_ms);
            if age > fresh_ms {
                continue;
            }
            if r.reachable {
                v.reached_by.push(reporter.to_string());
            } else {
                v.unreached_by.push(reporter.to_string());
            }
        }
    }
    v.reached_by.sort();
    v.unreached_by.sort();
    v
}

/// Writes NodeHealth objects (named `<cluster>-<node>`) in one namespace.
#[derive(Clone)]
pub struct NodeHealthWriter {
    pub client: kube::Client,
    pub namespace: String,
}

/// A DNS-1123 name for a node of a cluster.
pub fn node_health_name(key: &NodeKey) -> String {
    crate::names::dns_name(&format!("{}-{}", key.cluster, key.node), 253)
}

impl NodeHealthWriter {
    /// Records a health change, or with `change: None` just the last beat's data and `lastSeen`
    /// (one spec apply + one status apply).
    pub async fn write(
        &self,
        key: &NodeKey,
        change: Option<&Change>,
        last: Option<&LastBeat>,
    ) -> Result<(), kube::Error> {
        let api: Api<transition_crds::NodeHealth> =
            Api::namespaced(self.client.clone(), &self.namespace);
        let name = node_health_name(key);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let object = json!({
            "apiVersion": "transition.dcnlab.ssu.ac.kr/v1", "kind": "NodeHealth",
            "metadata": {"name": name, "labels": {"transition.dcnlab.ssu.ac.kr/cluster": crate::names::dns_name(&key.cluster, 63)}},
            "spec": {"nodeName": key.node},
        });
        let current = api.patch(&name, &params, &Patch::Apply(&object)).await?;
        let mut status = current.status.unwrap_or_default();
        if let Some(change) = change {
            let at = k8s_openapi::jiff::Timestamp::from_millisecond(
                i64::try_from(change.at_ms).unwrap_or(0),
            )
            .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now());
            let healthy = change.to == Health::Healthy;
            status.condition = Some(if healthy {
                NodeCondition::Healthy
            } else {
                NodeCondition::Unhealthy
            });
            let reason = format!("{:?}", change.to);
            conditions::set(
                &mut status.conditions,
                conditions::READY,
                Status::from(healthy),
                &reason,
                &change.reason,
                None,
                at,
            );
        } else if status.condition.is_none() {
            status.condition = Some(NodeCondition::Healthy);
        }
        if let Some(b) = last {
            let p = &b.payload;
            let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
            status = NodeHealthStatus {
                ip: opt(&p.ip),
                os: opt(&p.os),
                arch: opt(&p.arch),
                cpus: Some(p.cpus),
                cpu_usage: Some(format!("{:.1}", p.cpu_usage_percent)),
                mem_total: Some(p.mem_total_bytes),
                mem_used: Some(p.mem_used_bytes),
                last_seen: k8s_openapi::jiff::Timestamp::from_millisecond(
                    i64::try_from(b.received_ms).unwrap_or(0),
                )
                .ok()
                .map(Time),
                cluster_name: opt(&p.cluster_name),
                cluster_namespace: opt(&p.cluster_namespace),
                machine: opt(&p.machine),
                owner_kind: opt(&p.owner_kind),
                owner_name: opt(&p.owner_name),
                provided_node_ip: opt(&p.provided_node_ip),
                cri_socket: opt(&p.cri_socket),
                agent_version: p.agent_version.clone(),
                ..status
            };
        }
        let patch = json!({"apiVersion": "transition.dcnlab.ssu.ac.kr/v1", "kind": "NodeHealth", "status": status});
        api.patch_status(&name, &params, &Patch::Apply(&patch))
            .await?;
        Ok(())
    }
}

/// The detector loop.
pub struct Detector<P> {
    pub beats: Arc<Beats>,
    pub probe: P,
    pub writer: Option<NodeHealthWriter>,
    pub faults: tokio::sync::mpsc::Sender<FaultEvent>,
    pub changes: tokio::sync::mpsc::Receiver<Change>,
    /// Counts fault sends that found the orchestrator's queue full (the detector then waits).
    pub faults_full: prometheus_client::metrics::counter::Counter,
    pub probe_timeout: Duration,
    /// How often a beating node's NodeHealth `lastSeen` is refreshed (throttled; health changes
    /// are written at once regardless).
    pub last_seen_every: Duration,
}

impl<P: ClusterProbe> Detector<P> {
    async fn handle(&self, change: Change) {
        if change.from == change.to {
            info!(node = %change.key, health = ?change.to, reason = %change.reason, "node seen");
        } else {
            info!(node = %change.key, from = ?change.from, to = ?change.to, reason = %change.reason, "node health changed");
        }
        if let Some(w) = &self.writer {
            let last = crate::observe::locks::lock(&self.beats.last, "last heartbeats")
                .get(&change.key)
                .cloned();
            if let Err(e) = w.write(&change.key, Some(&change), last.as_ref()).await {
                warn!(node = %change.key, error = %e, "failed to write NodeHealth");
            }
        }
        if change.to == Health::NodeFailed {
            let event = FaultEvent {
                cluster: change.key.cluster.clone(),
                node: change.key.node.clone(),
                reason: change.reason.clone(),
                at_ms: change.at_ms,
            };
            let event = match self.faults.try_send(event) {
                Ok(()) => return,
                Err(tokio::sync::mpsc::error::TrySendError::Full(event)) => {
                    self.faults_full.inc();
                    warn!(node = %change.key, "fault queue full: waiting for the orchestrator");
                    event
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                    warn!(node = %change.key, "no orchestrator is listening for faults");
                    return;
                }
            };
            if self.faults.send(event).await.is_err() {
                warn!(node = %change.key, "no orchestrator is listening for faults");
            }
        }
    }

    /// Refreshes `lastSeen` of nodes not written for `last_seen_every` (a few per round).
    async fn refresh_last_seen(&self, written: &mut HashMap<NodeKey, u64>, now: u64) {
        let Some(w) = &self.writer else { return };
        let every = u64::try_from(self.last_seen_every.as_millis()).unwrap_or(u64::MAX);
        let due: Vec<(NodeKey, LastBeat)> =
            crate::observe::locks::lock(&self.beats.last, "last heartbeats")
                .iter()
                .filter(|(k, b)| {
                    let since = written.get(*k).copied().unwrap_or(0);
                    b.received_ms > since && now.saturating_sub(since) >= every
                })
                .take(50)
                .map(|(k, b)| (k.clone(), b.clone()))
                .collect();
        for (key, beat) in due {
            written.insert(key.clone(), now);
            if let Err(e) = w.write(&key, None, Some(&beat)).await {
                warn!(node = %key, error = %e, "failed to refresh NodeHealth lastSeen");
            }
        }
    }

    /// Runs until `stop`.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let started = now_ms();
        // First refresh one period after start: a restart writes nothing at once.
        let mut written: HashMap<NodeKey, u64> = HashMap::new();
        let mut last_refresh = started;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stop.cancelled() => return,
            }
            while let Ok(c) = self.changes.try_recv() {
                self.handle(c).await;
            }
            let now = now_ms();
            let (changes, to_probe) =
                crate::observe::locks::lock(&self.beats.tracker, "detector tracker").tick(now);
            for c in changes {
                self.handle(c).await;
            }
            let checks: Vec<Option<KubeletCheck>> = {
                let t = crate::observe::locks::lock(&self.beats.tracker, "detector tracker");
                to_probe.iter().map(|k| t.kubelet_check(k)).collect()
            };
            let views =
                futures::future::join_all(to_probe.iter().zip(&checks).map(|(k, c)| async {
                    match tokio::time::timeout(self.probe_timeout, self.probe.view(k, c.as_ref()))
                        .await
                    {
                        Ok(v) => v,
                        Err(_) => Err(ProbeError::TimedOut(k.node.clone())),
                    }
                }))
                .await;
            let now = now_ms();
            let vantages: Vec<Vantage> = {
                let t = crate::observe::locks::lock(&self.beats.tracker, "detector tracker");
                let last = crate::observe::locks::lock(&self.beats.last, "last heartbeats");
                to_probe
                    .iter()
                    .map(|k| {
                        let fresh = t.config_for(&k.cluster).vantage_fresh_ms;
                        vantage_of(&k.cluster, &last, now, fresh)
                    })
                    .collect()
            };
            let outcomes: Vec<Change> = {
                let mut t = crate::observe::locks::lock(&self.beats.tracker, "detector tracker");
                to_probe
                    .iter()
                    .zip(&views)
                    .zip(&vantages)
                    .filter_map(|((k, v), vantage)| t.probed(k, v, now, vantage))
                    .collect()
            };
            for c in outcomes {
                self.handle(c).await;
            }
            if now.saturating_sub(last_refresh) >= 1000 {
                last_refresh = now;
                if written.is_empty()
                    && now.saturating_sub(started)
                        < u64::try_from(self.last_seen_every.as_millis()).unwrap_or(u64::MAX)
                {
                    continue;
                }
                self.refresh_last_seen(&mut written, now).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vantage_points_are_other_clusters_agents_with_fresh_reports() {
        use transition_crds::heartbeat::{Heartbeat, Reach};
        let beat = |cluster: &str, node: &str, received_ms, reach: Vec<Reach>| {
            (
                NodeKey {
                    cluster: cluster.into(),
                    node: node.into(),
                },
                LastBeat {
                    received_ms,
                    payload: Heartbeat {
                        node: node.into(),
                        reach,
                        ..Default::default()
                    },
                },
            )
        };
        let reach = |reachable, age_ms| {
            vec![Reach {
                cluster: "c1".into(),
                reachable,
                error: String::new(),
                age_ms,
            }]
        };
        let last: HashMap<NodeKey, LastBeat> = [
            beat("c2", "a", 10_000, reach(true, 500)),
            beat("c3", "b", 10_000, reach(false, 0)),
            beat("c3", "stale", 1_000, reach(true, 0)),
            beat("c2", "old-check", 10_000, reach(true, 9_000)),
            beat("c1", "self", 10_000, reach(true, 0)),
        ]
        .into_iter()
        .collect();
        let v = vantage_of("c1", &last, 11_000, 5_000);
        assert_eq!(v.reached_by, vec!["c2/a"]);
        assert_eq!(v.unreached_by, vec!["c3/b"]);
    }

    #[test]
    fn node_health_names_are_dns_safe() {
        let k = NodeKey {
            cluster: "Cluster1_Azure".into(),
            node: "ip-10-0-0-4.ec2.internal".into(),
        };
        assert_eq!(
            node_health_name(&k),
            "cluster1-azure-ip-10-0-0-4.ec2.internal"
        );
    }
}
