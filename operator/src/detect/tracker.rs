//! Per-node health from heartbeats (pure; the caller supplies milliseconds).
//!
//! ```text
//! Healthy --φ ≥ threshold--> Suspect --probe: kubelet answers / lease fresh--> AgentDown (alert only)
//!                               |  \--probe: kubelet unreachable ≥ kubelet_down_ms, API answers--> NodeFailed (fast)
//!                               |  \--probe: lease stale / NotReady--> NodeFailed (fail over)
//!                               |--API unreachable, a vantage point reaches it--> SourceUnreachable (hold)
//!                               \--API unreachable from every vantage point > grace--> NodeFailed (outage)
//!  any state --`recovery_beats` good beats in a row--> Healthy
//! ```
//!
//! A management↔source partition and a whole-source outage look the same from the management
//! cluster; agents on other clusters that check the source's API (`--watch-api`) tell them apart.
//! Suspicion alone never fails over: only a corroborating probe of the workload cluster's API
//! (the Node's Ready condition, its kubelet Lease, and its kubelet reached through the API
//! server's node proxy) turns Suspect into NodeFailed. No node is suspected during the warm-up
//! after an operator start, so a restart never causes a storm.

use std::collections::HashMap;

use super::kubelet_reach::{KubeletCheck, KubeletReach, Peer};
use super::phi::{PhiConfig, PhiDetector};

/// Thresholds (per ClusterPolicy; see docs/detection.md for the defaults' reasoning).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrackerConfig {
    pub phi: PhiConfig,
    /// Good beats in a row that end a suspicion.
    pub recovery_beats: u32,
    /// No suspicion this long after the operator starts.
    pub warmup_ms: u64,
    /// A kubelet Lease renewed within this is fresh (kubelets renew every 10 s).
    pub lease_fresh_ms: u64,
    /// The workload cluster's API unreachable this long counts as corroboration.
    pub unreachable_grace_ms: u64,
    /// Minimum time between two probes of the same node.
    pub probe_every_ms: u64,
    /// Whether a whole-cluster outage (API unreachable from every vantage point for the grace)
    /// fails over; `false` holds in `SourceUnreachable` instead.
    pub outage_failover: bool,
    /// A vantage point's report counts when its check ran at most this long ago.
    pub vantage_fresh_ms: u64,
    /// Whether a probe also asks the node's kubelet through the API server's node proxy (the
    /// fast confirmation; `false`: the Lease rule alone, as before).
    pub kubelet_probe: bool,
    /// Our deadline for that proxied `/healthz` (a live kubelet answers in milliseconds).
    pub kubelet_timeout_ms: u64,
    /// Consecutive probes (at least two) that found the kubelet unreachable, while the cluster's
    /// API and a peer's kubelet answered, must span this long to confirm a failure.
    pub kubelet_down_ms: u64,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            phi: PhiConfig::default(),
            recovery_beats: 3,
            warmup_ms: 10_000,
            lease_fresh_ms: 15_000,
            unreachable_grace_ms: 30_000,
            probe_every_ms: 1_000,
            outage_failover: true,
            vantage_fresh_ms: 10_000,
            kubelet_probe: true,
            kubelet_timeout_ms: 500,
            kubelet_down_ms: 1_000,
        }
    }
}

/// A node, by cluster.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeKey {
    pub cluster: String,
    pub node: String,
}

impl std::fmt::Display for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.cluster, self.node)
    }
}

/// Health of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// Heartbeats are late; the workload cluster is being asked.
    Suspect,
    /// Heartbeats stopped but the node's kubelet is alive: the agent is down. No failover.
    AgentDown,
    /// Heartbeats stopped and the workload cluster confirms the node is gone: fail over.
    NodeFailed,
    /// Heartbeats stopped and the management cluster cannot reach the cluster's API, but a vantage
    /// point on another cluster can (a partition), or cluster-outage failover is off: hold.
    SourceUnreachable,
}

/// What the vantage points (agents on other clusters checking this cluster's API) say now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Vantage {
    /// Fresh reports that reached the API (`cluster/node` of the reporter).
    pub reached_by: Vec<String>,
    /// Fresh reports that did not.
    pub unreached_by: Vec<String>,
}

/// What the workload cluster's API says about a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeView {
    /// The Node's Ready condition (`None`: unknown / no such condition).
    pub ready: Option<bool>,
    /// When its kubelet Lease was last renewed (ms).
    pub lease_renewed_ms: Option<u64>,
    /// Its kubelet through the API server's node proxy.
    pub kubelet: KubeletReach,
    /// When that answer came, or our deadline passed (ms; `None` when not asked).
    pub kubelet_at_ms: Option<u64>,
    /// A healthy peer's kubelet, asked only when this one was unreachable.
    pub peer: Option<Peer>,
}

impl NodeView {
    /// The kubelet is unreachable through an API server whose path to kubelets demonstrably
    /// works (a peer's kubelet answered in the same probe): evidence of a dead node.
    pub fn kubelet_down(&self) -> bool {
        self.kubelet.is_unreachable()
            && self
                .peer
                .as_ref()
                .is_some_and(|p| p.kubelet == KubeletReach::Reachable)
    }
}

/// Consecutive probes that found a node's kubelet down ([`NodeView::kubelet_down`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KubeletDown {
    /// When the first of them started (ms).
    pub since_ms: u64,
    /// When the latest one's answer came, or its deadline passed (ms).
    pub until_ms: u64,
    /// How many probes in a row.
    pub probes: u32,
}

impl KubeletDown {
    pub fn span_ms(&self) -> u64 {
        self.until_ms.saturating_sub(self.since_ms)
    }
}

/// The probe's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    AgentDown,
    NodeFailed(String),
    /// The management cluster cannot reach the API but must not fail over (why).
    Hold(String),
    /// Not enough evidence yet (API unreachable for less than the grace); ask again later.
    Wait,
}

/// Why a workload cluster could not say how one of its nodes is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "failed to probe cluster {0}: no API access configured for it (no ClusterPolicy names it as its source)"
    )]
    NoClient(String),
    #[error("failed to probe: {0}")]
    Cluster(String),
    #[error("failed to read the {what} of node {node}: {reason}")]
    Read {
        what: &'static str,
        node: String,
        reason: String,
    },
    #[error("failed to probe node {0}: no answer in time")]
    TimedOut(String),
}

/// Decides from a probe result, the kubelet evidence so far (this probe included) and what the
/// vantage points see (pure).
pub fn decide(
    view: &Result<NodeView, ProbeError>,
    now_ms: u64,
    unreachable_since_ms: Option<u64>,
    kubelet_down: Option<&KubeletDown>,
    cfg: &TrackerConfig,
    vantage: &Vantage,
) -> Verdict {
    match view {
        Ok(v) => {
            let lease_fresh = v
                .lease_renewed_ms
                .is_some_and(|r| now_ms.saturating_sub(r) <= cfg.lease_fresh_ms);
            let down = (cfg.kubelet_probe && v.kubelet_down())
                .then_some(kubelet_down)
                .flatten();
            if v.ready == Some(false) {
                Verdict::NodeFailed("the Node is NotReady in its cluster".into())
            } else if let Some(d) =
                down.filter(|d| d.probes >= 2 && d.span_ms() >= cfg.kubelet_down_ms)
            {
                let why = match &v.kubelet {
                    KubeletReach::Unreachable(why) => why.as_str(),
                    _ => "",
                };
                let peer = v.peer.as_ref().map_or("", |p| p.node.as_str());
                Verdict::NodeFailed(format!(
                    "heartbeats stopped and its kubelet has been unreachable through the API server for {} ms ({} probes; {why}) while its cluster's API answers and node {peer}'s kubelet does",
                    d.span_ms(),
                    d.probes
                ))
            } else if down.is_some() && lease_fresh {
                // Unreachable once, or not for long enough yet: ask again soon.
                Verdict::Wait
            } else if lease_fresh {
                Verdict::AgentDown
            } else if v.lease_renewed_ms.is_none() {
                Verdict::NodeFailed("the node has no kubelet Lease".into())
            } else {
                Verdict::NodeFailed(format!(
                    "its kubelet Lease is older than {} ms",
                    cfg.lease_fresh_ms
                ))
            }
        }
        Err(e) => {
            if !vantage.reached_by.is_empty() {
                return Verdict::Hold(format!(
                    "the management cluster cannot reach its cluster's API ({e}) but {} can: a partition, not an outage; holding",
                    vantage.reached_by.join(", ")
                ));
            }
            let since = match unreachable_since_ms {
                Some(since) if now_ms.saturating_sub(since) >= cfg.unreachable_grace_ms => since,
                _ => return Verdict::Wait,
            };
            let seen_by = if vantage.unreached_by.is_empty() {
                "the management cluster (no vantage point reports on it)".to_owned()
            } else {
                format!(
                    "the management cluster and {}",
                    vantage.unreached_by.join(", ")
                )
            };
            let what = format!(
                "its cluster's API has been unreachable for {} ms from {seen_by}: a cluster outage ({e})",
                now_ms - since
            );
            if cfg.outage_failover {
                Verdict::NodeFailed(what)
            } else {
                Verdict::Hold(format!("{what}; cluster-outage failover is off"))
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Record {
    detector: PhiDetector,
    health: Health,
    since_ms: u64,
    good_beats: u32,
    last_probe_ms: Option<u64>,
    unreachable_since_ms: Option<u64>,
    kubelet_down: Option<KubeletDown>,
}

/// A health change to act on (write NodeHealth, raise a fault, emit an Event).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub key: NodeKey,
    pub from: Health,
    pub to: Health,
    pub at_ms: u64,
    pub reason: String,
}

/// All nodes' health.
#[derive(Clone, Debug)]
pub struct Tracker {
    config: TrackerConfig,
    /// Per-cluster settings from ClusterPolicies.
    clusters: HashMap<String, TrackerConfig>,
    started_ms: u64,
    nodes: HashMap<NodeKey, Record>,
}

impl Tracker {
    pub fn new(config: TrackerConfig, started_ms: u64) -> Tracker {
        Tracker {
            config,
            clusters: HashMap::new(),
            started_ms,
            nodes: HashMap::new(),
        }
    }

    /// The settings for `cluster` (its ClusterPolicy's, else the defaults).
    pub fn config_for(&self, cluster: &str) -> TrackerConfig {
        self.clusters.get(cluster).copied().unwrap_or(self.config)
    }

    /// Sets `cluster`'s settings (from its ClusterPolicy); known nodes keep their samples.
    pub fn set_cluster_config(&mut self, cluster: &str, config: TrackerConfig) {
        if self.clusters.get(cluster) == Some(&config) {
            return;
        }
        self.clusters.insert(cluster.to_owned(), config);
        for (k, r) in &mut self.nodes {
            if k.cluster == cluster {
                r.detector.set_config(config.phi);
            }
        }
    }

    fn record(&mut self, key: &NodeKey, now_ms: u64) -> &mut Record {
        let phi = self.config_for(&key.cluster).phi;
        self.nodes.entry(key.clone()).or_insert_with(|| Record {
            detector: PhiDetector::new(phi),
            health: Health::Healthy,
            since_ms: now_ms,
            good_beats: 0,
            last_probe_ms: None,
            unreachable_since_ms: None,
            kubelet_down: None,
        })
    }

    /// A node known from before a restart (NodeHealth): silent since the restart at worst, so it
    /// is judged from the end of the warm-up if it never beats again.
    pub fn restore(&mut self, key: &NodeKey, health: Health) {
        let start = self.started_ms;
        let r = self.record(key, start);
        r.detector.heartbeat(start);
        r.health = health;
    }

    /// Records a heartbeat; returns a recovery when this beat ends a suspicion.
    pub fn beat(&mut self, key: &NodeKey, now_ms: u64) -> Option<Change> {
        let recovery = self.config_for(&key.cluster).recovery_beats.max(1);
        let r = self.record(key, now_ms);
        r.detector.heartbeat(now_ms);
        // A beat proves the node alive: kubelet evidence must start over.
        r.kubelet_down = None;
        if r.health == Health::Healthy {
            return None;
        }
        r.good_beats += 1;
        if r.good_beats < recovery {
            return None;
        }
        let from = r.health;
        r.health = Health::Healthy;
        r.since_ms = now_ms;
        r.good_beats = 0;
        r.unreachable_since_ms = None;
        Some(Change {
            key: key.clone(),
            from,
            to: Health::Healthy,
            at_ms: now_ms,
            reason: format!("{recovery} heartbeats in a row"),
        })
    }

    /// Nodes whose heartbeats have gone suspicious: Healthy → Suspect changes, and the list of
    /// nodes to probe now (Suspect or AgentDown, at most once per `probe_every_ms`).
    pub fn tick(&mut self, now_ms: u64) -> (Vec<Change>, Vec<NodeKey>) {
        let mut changes = Vec::new();
        let mut probe = Vec::new();
        if now_ms < self.started_ms.saturating_add(self.config.warmup_ms) {
            return (changes, probe);
        }
        for (key, r) in &mut self.nodes {
            let cfg = self
                .clusters
                .get(&key.cluster)
                .copied()
                .unwrap_or(self.config);
            let suspect = r.detector.is_suspect(now_ms);
            if suspect {
                r.good_beats = 0;
            }
            if r.health == Health::Healthy && suspect {
                changes.push(Change {
                    key: key.clone(),
                    from: Health::Healthy,
                    to: Health::Suspect,
                    at_ms: now_ms,
                    reason: format!("phi {:.1} ≥ {}", r.detector.phi(now_ms), cfg.phi.threshold),
                });
                r.health = Health::Suspect;
                r.since_ms = now_ms;
            }
            // A kubelet found down once is asked again sooner, so that a dead host (whose
            // dial only ends at our deadline) is confirmed within `kubelet_down_ms` + a deadline.
            let every = if r.kubelet_down.is_some() {
                cfg.probe_every_ms.min(cfg.kubelet_down_ms / 2)
            } else {
                cfg.probe_every_ms
            };
            let due = r
                .last_probe_ms
                .is_none_or(|p| now_ms.saturating_sub(p) >= every);
            if matches!(
                r.health,
                Health::Suspect | Health::AgentDown | Health::SourceUnreachable
            ) && suspect
                && due
            {
                r.last_probe_ms = Some(now_ms);
                probe.push(key.clone());
            }
        }
        probe.sort();
        (changes, probe)
    }

    /// Applies a probe result for a Suspect, AgentDown or SourceUnreachable node.
    pub fn probed(
        &mut self,
        key: &NodeKey,
        view: &Result<NodeView, ProbeError>,
        now_ms: u64,
        vantage: &Vantage,
    ) -> Option<Change> {
        let cfg = self.config_for(&key.cluster);
        let r = self.nodes.get_mut(key)?;
        if !matches!(
            r.health,
            Health::Suspect | Health::AgentDown | Health::SourceUnreachable
        ) {
            return None;
        }
        // "Unreachable since" counts from when no vantage point reached the API any more.
        match view {
            Ok(_) => r.unreachable_since_ms = None,
            Err(_) if !vantage.reached_by.is_empty() => r.unreachable_since_ms = None,
            Err(_) => {
                r.unreachable_since_ms.get_or_insert(now_ms);
            }
        }
        // Kubelet evidence: probes in a row (from this one's start, the tick that launched it)
        // that found it down; any other answer, or the API failing, starts over.
        match view {
            Ok(v) if cfg.kubelet_probe && v.kubelet_down() => {
                let until = v.kubelet_at_ms.unwrap_or(now_ms);
                let since = r.last_probe_ms.unwrap_or(until).min(until);
                let d = r.kubelet_down.get_or_insert(KubeletDown {
                    since_ms: since,
                    until_ms: until,
                    probes: 0,
                });
                d.until_ms = d.until_ms.max(until);
                d.probes += 1;
            }
            _ => r.kubelet_down = None,
        }
        let verdict = decide(
            view,
            now_ms,
            r.unreachable_since_ms,
            r.kubelet_down.as_ref(),
            &cfg,
            vantage,
        );
        let (to, reason) = match verdict {
            Verdict::AgentDown => (
                Health::AgentDown,
                match view {
                    Ok(v) if v.kubelet == KubeletReach::Reachable => "its kubelet answers through the API server and its Lease is fresh: the agent is down, the node is not".to_owned(),
                    _ => "its kubelet Lease is fresh: the agent is down, the node is not".to_owned(),
                },
            ),
            Verdict::NodeFailed(why) => (Health::NodeFailed, why),
            Verdict::Hold(why) => (Health::SourceUnreachable, why),
            Verdict::Wait => return None,
        };
        if to == r.health {
            return None;
        }
        let from = r.health;
        r.health = to;
        r.since_ms = now_ms;
        Some(Change {
            key: key.clone(),
            from,
            to,
            at_ms: now_ms,
            reason,
        })
    }

    pub fn health(&self, key: &NodeKey) -> Option<Health> {
        self.nodes.get(key).map(|r| r.health)
    }

    /// What a probe of `key` should ask its kubelet (`None`: the kubelet probe is off for its
    /// cluster): the deadline, and the peer whose kubelet shows the API server's path to kubelets
    /// works — the Healthy node of the same cluster that beat last.
    pub fn kubelet_check(&self, key: &NodeKey) -> Option<KubeletCheck> {
        let cfg = self.config_for(&key.cluster);
        if !cfg.kubelet_probe {
            return None;
        }
        let peer = self
            .nodes
            .iter()
            .filter(|(k, r)| k.cluster == key.cluster && *k != key && r.health == Health::Healthy)
            .max_by(|(ka, a), (kb, b)| {
                (a.detector.last_ms(), &kb.node).cmp(&(b.detector.last_ms(), &ka.node))
            })
            .map(|(k, _)| k.node.clone());
        Some(KubeletCheck {
            timeout_ms: cfg.kubelet_timeout_ms,
            peer,
        })
    }

    /// (key, health, φ, last beat ms) of every node, sorted.
    pub fn snapshot(&self, now_ms: u64) -> Vec<(NodeKey, Health, f64, Option<u64>)> {
        let mut v: Vec<_> = self
            .nodes
            .iter()
            .map(|(k, r)| {
                (
                    k.clone(),
                    r.health,
                    r.detector.phi(now_ms),
                    r.detector.last_ms(),
                )
            })
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: &str) -> NodeKey {
        NodeKey {
            cluster: "cluster1-azure".into(),
            node: n.into(),
        }
    }

    fn cfg() -> TrackerConfig {
        TrackerConfig {
            warmup_ms: 0,
            ..TrackerConfig::default()
        }
    }

    /// Drives beats every `every` ms (with `jitter(i)` added) from `from` for `n` beats, ticking
    /// every 100 ms; returns the changes seen.
    fn run(
        t: &mut Tracker,
        k: &NodeKey,
        from: u64,
        n: u64,
        every: u64,
        jitter: impl Fn(u64) -> i64,
    ) -> (u64, Vec<Change>) {
        let mut changes = Vec::new();
        let mut now = from;
        let mut next_beat = from;
        let mut sent = 0;
        while sent < n {
            if now >= next_beat {
                changes.extend(t.beat(k, now));
                sent += 1;
                next_beat = (now as i64 + every as i64 + jitter(sent)).max(now as i64 + 1) as u64;
            }
            changes.extend(t.tick(now).0);
            now += 100;
        }
        (now, changes)
    }

    #[test]
    fn thirty_percent_jitter_raises_no_suspicion() {
        let mut t = Tracker::new(cfg(), 0);
        let k = key("w1");
        let (_, changes) = run(&mut t, &k, 0, 500, 1000, |i| {
            if i % 3 == 0 {
                300
            } else if i % 3 == 1 {
                -300
            } else {
                0
            }
        });
        assert!(changes.is_empty(), "{changes:?}");
    }

    #[test]
    fn a_burst_of_beats_after_a_hiccup_is_not_a_failure() {
        let mut t = Tracker::new(cfg(), 0);
        let k = key("w1");
        let (end, _) = run(&mut t, &k, 0, 100, 1000, |_| 0);
        for i in 0..5 {
            assert!(t.beat(&k, end + i).is_none());
        }
        assert!(t.tick(end + 10).0.is_empty());
        assert_eq!(t.health(&k), Some(Health::Healthy));
    }

    #[test]
    fn a_long_stall_is_suspected_but_a_fresh_lease_means_agent_down_not_failover() {
        let mut t = Tracker::new(cfg(), 0);
        let k = key("w1");
        let (end, _) = run(&mut t, &k, 0, 100, 1000, |_| 0);
        let (changes, probe) = t.tick(end + 2500);
        assert_eq!(changes[0].to, Health::Suspect);
        assert_eq!(probe, vec![k.clone()]);
        let fresh = Ok(NodeView {
            ready: Some(true),
            lease_renewed_ms: Some(end + 2000),
            ..NodeView::default()
        });
        let change = t
            .probed(&k, &fresh, end + 2500, &Vantage::default())
            .unwrap();
        assert_eq!(change.to, Health::AgentDown);
        // The agent comes back: three good beats end it.
        assert!(t.beat(&k, end + 3000).is_none());
        assert!(t.beat(&k, end + 4000).is_none());
        assert_eq!(t.beat(&k, end + 5000).map(|c| c.to), Some(Health::Healthy));
    }

    #[test]
    fn a_dead_node_is_confirmed_by_a_stale_lease_or_not_ready() {
        let mut t = Tracker::new(cfg(), 0);
        let (a, b) = (key("a"), key("b"));
        run(&mut t, &a, 0, 50, 1000, |_| 0);
        let (end, _) = run(&mut t, &b, 0, 50, 1000, |_| 0);
        let now = end + 20_000;
        let (_, probe) = t.tick(now);
        assert_eq!(probe.len(), 2);
        let stale = Ok(NodeView {
            ready: None,
            lease_renewed_ms: Some(now - 16_000),
            ..NodeView::default()
        });
        assert_eq!(
            t.probed(&a, &stale, now, &Vantage::default()).map(|c| c.to),
            Some(Health::NodeFailed)
        );
        let not_ready = Ok(NodeView {
            ready: Some(false),
            lease_renewed_ms: Some(now - 1000),
            ..NodeView::default()
        });
        let c = t.probed(&b, &not_ready, now, &Vantage::default()).unwrap();
        assert_eq!(c.to, Health::NodeFailed);
        assert!(c.reason.contains("NotReady"), "{}", c.reason);
    }

    #[test]
    fn an_unreachable_cluster_counts_only_after_the_grace_period() {
        let mut t = Tracker::new(cfg(), 0);
        let k = key("w1");
        let (end, _) = run(&mut t, &k, 0, 50, 1000, |_| 0);
        let down: Result<NodeView, ProbeError> = Err(ProbeError::Read {
            what: "Node",
            node: "w".into(),
            reason: "connection refused".into(),
        });
        t.tick(end + 3000);
        assert_eq!(
            t.probed(&k, &down, end + 3000, &Vantage::default()),
            None,
            "wait: the API may be briefly down"
        );
        assert_eq!(t.probed(&k, &down, end + 20_000, &Vantage::default()), None);
        let c = t
            .probed(&k, &down, end + 33_000, &Vantage::default())
            .unwrap();
        assert_eq!(c.to, Health::NodeFailed);
        assert!(c.reason.contains("unreachable"));
    }

    fn unreachable() -> Result<NodeView, ProbeError> {
        Err(ProbeError::Read {
            what: "Node",
            node: "w".into(),
            reason: "connection refused".into(),
        })
    }

    #[test]
    fn a_partition_holds_when_a_vantage_point_still_reaches_the_source_api() {
        let mut t = Tracker::new(cfg(), 0);
        let k = key("w1");
        let (end, _) = run(&mut t, &k, 0, 50, 1000, |_| 0);
        t.tick(end + 3000);
        let partition = Vantage {
            reached_by: vec!["cluster2-aws/worker-2".into()],
            unreached_by: vec![],
        };
        let c = t
            .probed(&k, &unreachable(), end + 3000, &partition)
            .unwrap();
        assert_eq!(c.to, Health::SourceUnreachable, "held at once");
        assert!(
            c.reason.contains("cluster2-aws/worker-2 can"),
            "{}",
            c.reason
        );
        assert_eq!(
            t.probed(&k, &unreachable(), end + 60_000, &partition),
            None,
            "a partition never fails over, however long"
        );
        // The vantage point loses the source too: an outage once that has lasted the grace.
        let outage = Vantage {
            reached_by: vec![],
            unreached_by: vec!["cluster2-aws/worker-2".into()],
        };
        assert_eq!(
            t.probed(&k, &unreachable(), end + 61_000, &outage),
            None,
            "unreachable from everywhere only just now"
        );
        let c = t.probed(&k, &unreachable(), end + 91_000, &outage).unwrap();
        assert_eq!(c.to, Health::NodeFailed);
        assert!(
            c.reason.contains(
                "from the management cluster and cluster2-aws/worker-2: a cluster outage"
            ),
            "{}",
            c.reason
        );
    }

    #[test]
    fn with_cluster_outage_failover_off_an_outage_holds() {
        let mut t = Tracker::new(cfg(), 0);
        t.set_cluster_config(
            "cluster1-azure",
            TrackerConfig {
                outage_failover: false,
                ..cfg()
            },
        );
        let k = key("w1");
        let (end, _) = run(&mut t, &k, 0, 50, 1000, |_| 0);
        t.tick(end + 3000);
        let none = Vantage::default();
        assert_eq!(t.probed(&k, &unreachable(), end + 3000, &none), None);
        let c = t.probed(&k, &unreachable(), end + 40_000, &none).unwrap();
        assert_eq!(c.to, Health::SourceUnreachable);
        assert!(
            c.reason.contains("cluster-outage failover is off"),
            "{}",
            c.reason
        );
    }

    #[test]
    fn no_suspicion_during_warm_up_after_a_restart() {
        let mut t = Tracker::new(TrackerConfig::default(), 100_000);
        let k = key("w1");
        t.restore(&k, Health::Healthy);
        assert!(
            t.tick(105_000).0.is_empty(),
            "silent node, but still warming up"
        );
        let (changes, _) = t.tick(112_000);
        assert_eq!(
            changes.len(),
            1,
            "after warm-up the silent node is suspected"
        );
    }

    #[test]
    fn a_cluster_policy_can_make_its_cluster_more_patient() {
        let mut t = Tracker::new(cfg(), 0);
        let (k, other) = (
            key("w1"),
            NodeKey {
                cluster: "cluster2-aws".into(),
                node: "w1".into(),
            },
        );
        run(&mut t, &k, 0, 50, 1000, |_| 0);
        let (end, _) = run(&mut t, &other, 0, 50, 1000, |_| 0);
        let patient = TrackerConfig {
            phi: PhiConfig {
                acceptable_pause_ms: 5000.0,
                ..PhiConfig::default()
            },
            ..cfg()
        };
        t.set_cluster_config("cluster1-azure", patient);
        let (changes, _) = t.tick(end + 3000);
        assert_eq!(
            changes.len(),
            1,
            "only the default-configured cluster's node is suspected"
        );
        assert_eq!(changes[0].key, other);
    }

    /// Ticks at `now` after a beat of the peer `p`, which stays healthy; returns the nodes to probe.
    fn tick_at(t: &mut Tracker, now: u64) -> Vec<NodeKey> {
        t.beat(&key("p"), now);
        t.tick(now).1
    }

    /// What a probe sees of a node whose Lease was renewed at `lease` and whose kubelet answered
    /// `kubelet` at `at`, with peer `p`'s kubelet answering `peer`.
    fn seen(
        lease: u64,
        kubelet: KubeletReach,
        at: u64,
        peer: Option<KubeletReach>,
    ) -> Result<NodeView, ProbeError> {
        Ok(NodeView {
            ready: Some(true),
            lease_renewed_ms: Some(lease),
            kubelet,
            kubelet_at_ms: Some(at),
            peer: peer.map(|kubelet| Peer {
                node: "p".into(),
                kubelet,
            }),
        })
    }

    /// Reports to `t` a probe of `k` at `at` that saw what [`seen`] describes, from no vantage point.
    fn probe(
        t: &mut Tracker,
        k: &NodeKey,
        lease: u64,
        kubelet: KubeletReach,
        at: u64,
        peer: Option<KubeletReach>,
    ) -> Option<Change> {
        t.probed(k, &seen(lease, kubelet, at, peer), at, &Vantage::default())
    }

    fn refused() -> KubeletReach {
        KubeletReach::Unreachable(
            "HTTP 500: error trying to reach service: dial tcp 10.0.0.4:10250: connect: connection refused".into(),
        )
    }

    /// A tracker with `w1` silent since `end` (suspected, first probe launched at `end + 1600`)
    /// and a beating peer `p`.
    fn silent_w1() -> (Tracker, NodeKey, u64) {
        let mut t = Tracker::new(cfg(), 0);
        let k = key("w1");
        run(&mut t, &key("p"), 0, 50, 1000, |_| 0);
        let (end, _) = run(&mut t, &k, 0, 50, 1000, |_| 0);
        t.beat(&key("p"), end + 1000);
        let (changes, probe) = t.tick(end + 1600);
        assert_eq!(changes.len(), 1);
        assert_eq!(probe, vec![k.clone()]);
        (t, k, end)
    }

    #[test]
    fn a_kubelet_unreachable_for_a_second_of_consecutive_probes_confirms_a_dead_node_before_its_lease_goes_stale()
     {
        let (mut t, k, end) = silent_w1();
        let lease = end - 500;
        let reachable = Some(KubeletReach::Reachable);
        assert_eq!(
            probe(&mut t, &k, lease, refused(), end + 1610, reachable.clone()),
            None,
            "one failed kubelet probe is not enough"
        );
        // Asked again after kubelet_down_ms / 2, not a whole probe period.
        assert_eq!(tick_at(&mut t, end + 2100), vec![k.clone()]);
        assert_eq!(
            probe(&mut t, &k, lease, refused(), end + 2110, reachable.clone()),
            None,
            "two probes, but only 510 ms apart"
        );
        assert_eq!(tick_at(&mut t, end + 2600), vec![k.clone()]);
        let c = probe(&mut t, &k, lease, refused(), end + 2610, reachable).unwrap();
        assert_eq!(c.to, Health::NodeFailed);
        assert!(
            c.reason.contains(
                "kubelet has been unreachable through the API server for 1010 ms (3 probes"
            ) && c.reason.contains("connection refused")
                && c.reason.contains("node p's kubelet does"),
            "{}",
            c.reason
        );
    }

    #[test]
    fn a_dead_hosts_kubelet_is_confirmed_at_the_second_probes_deadline() {
        // The API server's dial of a powered-off host hangs: our 500 ms deadline ends each probe.
        let (mut t, k, end) = silent_w1();
        let silent =
            || KubeletReach::Unreachable("no answer through the API server within 500 ms".into());
        let reachable = Some(KubeletReach::Reachable);
        assert_eq!(
            probe(&mut t, &k, end, silent(), end + 2100, reachable.clone()),
            None
        );
        assert_eq!(tick_at(&mut t, end + 2200), vec![k.clone()]);
        let c = probe(&mut t, &k, end, silent(), end + 2700, reachable).unwrap();
        assert_eq!(
            c.to,
            Health::NodeFailed,
            "unreachable from 1600 (first dial) to 2700 (second deadline)"
        );
        assert!(c.reason.contains("for 1100 ms (2 probes"), "{}", c.reason);
    }

    #[test]
    fn a_kubelet_that_answers_means_agent_down_and_starts_the_evidence_over() {
        let (mut t, k, end) = silent_w1();
        let reachable = Some(KubeletReach::Reachable);
        assert_eq!(
            probe(&mut t, &k, end, refused(), end + 1610, reachable.clone()),
            None
        );
        tick_at(&mut t, end + 2100);
        let c = probe(&mut t, &k, end, KubeletReach::Reachable, end + 2110, None).unwrap();
        assert_eq!(c.to, Health::AgentDown);
        assert!(
            c.reason
                .contains("its kubelet answers through the API server"),
            "{}",
            c.reason
        );
        // Unreachable again: a new chain, which needs its own second of probes.
        tick_at(&mut t, end + 3200);
        assert_eq!(
            probe(&mut t, &k, end, refused(), end + 3210, reachable.clone()),
            None
        );
        tick_at(&mut t, end + 3700);
        assert_eq!(
            probe(&mut t, &k, end, refused(), end + 3710, reachable.clone()),
            None
        );
        tick_at(&mut t, end + 4200);
        let c = probe(&mut t, &k, end, refused(), end + 4210, reachable).unwrap();
        assert_eq!((c.from, c.to), (Health::AgentDown, Health::NodeFailed));
    }

    #[test]
    fn an_unreachable_kubelet_counts_only_when_a_peers_kubelet_answers_through_the_same_api_server()
    {
        // No peer, or a peer unreachable too (the API server cannot reach any kubelet: a firewall
        // on 10250, a broken konnectivity tunnel): the Lease rule decides, as before.
        for peer in [
            None,
            Some(refused()),
            Some(KubeletReach::Unknown("HTTP 403: forbidden".into())),
        ] {
            let (mut t, k, end) = silent_w1();
            let mut last = None;
            for i in 0..6 {
                let at = end + 1610 + i * 500;
                tick_at(&mut t, at - 10);
                last = probe(&mut t, &k, end, refused(), at, peer.clone()).or(last);
            }
            assert_eq!(last.map(|c| c.to), Some(Health::AgentDown), "peer {peer:?}");
        }
    }

    #[test]
    fn an_unknown_kubelet_answer_falls_back_to_the_lease_rule() {
        let (mut t, k, end) = silent_w1();
        let forbidden =
            || KubeletReach::Unknown("HTTP 403: cannot get resource \"nodes/proxy\"".into());
        let c = probe(&mut t, &k, end, forbidden(), end + 1610, None).unwrap();
        assert_eq!(c.to, Health::AgentDown, "Lease fresh");
        tick_at(&mut t, end + 16_000);
        let c = probe(&mut t, &k, end, forbidden(), end + 16_010, None).unwrap();
        assert_eq!(c.to, Health::NodeFailed);
        assert!(c.reason.contains("Lease is older than"), "{}", c.reason);
    }

    #[test]
    fn a_heartbeat_between_probes_starts_the_kubelet_evidence_over() {
        // A kubelet restarting while the agent stalls twice, briefly: each beat proves the node
        // alive, so two failed probes around it are not "in a row".
        let (mut t, k, end) = silent_w1();
        let reachable = Some(KubeletReach::Reachable);
        assert_eq!(
            probe(&mut t, &k, end, refused(), end + 1610, reachable.clone()),
            None
        );
        t.beat(&k, end + 1900);
        assert_eq!(tick_at(&mut t, end + 4500), vec![k.clone()], "silent again");
        assert_eq!(
            probe(&mut t, &k, end, refused(), end + 4510, reachable),
            None,
            "the first probe of a new chain"
        );
        assert_eq!(t.health(&k), Some(Health::Suspect));
    }

    #[test]
    fn a_partition_is_never_kubelet_evidence() {
        let (mut t, k, end) = silent_w1();
        let reachable = Some(KubeletReach::Reachable);
        assert_eq!(
            probe(&mut t, &k, end, refused(), end + 1610, reachable.clone()),
            None
        );
        let partition = Vantage {
            reached_by: vec!["cluster2-aws/worker-2".into()],
            unreached_by: vec![],
        };
        tick_at(&mut t, end + 2100);
        let c = t
            .probed(&k, &unreachable(), end + 2110, &partition)
            .unwrap();
        assert_eq!(c.to, Health::SourceUnreachable);
        // The API answers again with the kubelet unreachable: a chain of one, not two.
        tick_at(&mut t, end + 3200);
        assert_eq!(
            probe(&mut t, &k, end, refused(), end + 3210, reachable),
            None
        );
    }

    #[test]
    fn with_the_kubelet_probe_off_only_the_lease_or_not_ready_confirms() {
        let (mut t, k, end) = silent_w1();
        t.set_cluster_config(
            "cluster1-azure",
            TrackerConfig {
                kubelet_probe: false,
                ..cfg()
            },
        );
        assert_eq!(t.kubelet_check(&k), None);
        let c = probe(
            &mut t,
            &k,
            end,
            refused(),
            end + 1610,
            Some(KubeletReach::Reachable),
        )
        .unwrap();
        assert_eq!(c.to, Health::AgentDown);
        for i in 1..5 {
            tick_at(&mut t, end + 1600 + i * 1000);
            let at = end + 1610 + i * 1000;
            assert_eq!(
                probe(
                    &mut t,
                    &k,
                    end,
                    refused(),
                    at,
                    Some(KubeletReach::Reachable)
                ),
                None
            );
        }
    }

    #[test]
    fn the_kubelet_peer_is_the_healthy_node_of_the_same_cluster_that_beat_last() {
        let mut t = Tracker::new(cfg(), 0);
        let other_cluster = NodeKey {
            cluster: "cluster2-aws".into(),
            node: "z".into(),
        };
        t.beat(&key("w1"), 1000);
        t.beat(&key("b"), 5000);
        t.beat(&key("a"), 5000);
        t.beat(&key("c"), 3000);
        t.beat(&other_cluster, 9000);
        let check = t.kubelet_check(&key("w1")).unwrap();
        assert_eq!(check.timeout_ms, 500);
        assert_eq!(
            check.peer.as_deref(),
            Some("a"),
            "latest beat, then by name"
        );
        assert_eq!(
            t.kubelet_check(&other_cluster).unwrap().peer,
            None,
            "alone in its cluster"
        );
    }

    #[test]
    fn decide_needs_two_probes_even_when_one_spans_kubelet_down_ms() {
        let c = cfg();
        let view = seen(1000, refused(), 5000, Some(KubeletReach::Reachable));
        let one = KubeletDown {
            since_ms: 2000,
            until_ms: 5000,
            probes: 1,
        };
        let none = Vantage::default();
        assert_eq!(
            decide(&view, 5000, None, Some(&one), &c, &none),
            Verdict::Wait
        );
        let two = KubeletDown { probes: 2, ..one };
        assert!(matches!(
            decide(&view, 5000, None, Some(&two), &c, &none),
            Verdict::NodeFailed(_)
        ));
        // NotReady and a stale Lease still confirm on their own, kubelet evidence or not.
        let stale = seen(0, KubeletReach::Reachable, 20_000, None);
        assert!(
            matches!(decide(&stale, 20_000, None, None, &c, &none), Verdict::NodeFailed(ref m) if m.contains("Lease"))
        );
    }

    #[test]
    fn a_skewed_or_stepping_clock_does_not_fabricate_failures() {
        let mut t = Tracker::new(cfg(), 0);
        let k = key("w1");
        let (end, _) = run(&mut t, &k, 0, 50, 1000, |_| 0);
        // Beats arriving with a clock that stepped back 30 s: judged from the newest beat seen.
        t.beat(&k, end - 30_000);
        assert!(t.tick(end + 500).0.is_empty());
    }
}
