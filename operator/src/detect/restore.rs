//! Can a target cluster restore a checkpoint taken on the source? Read from what the agents on
//! both sides report in their heartbeats (runtime, restore turned on, CRIU, runc, kernel,
//! architecture). Pure rules first; [`verdict`] reads the detector's view.
//!
//! A node can restore when its runtime has restore from checkpoint images turned on, its CPU
//! architecture is the source's, and its CRIU, runc and kernel are not older (major.minor) than the
//! source node's: CRIU restores images of its own or older releases, and a restore may need
//! kernel features the source used. A cluster can restore when one of its live nodes can. What no
//! agent reports is `Unknown`, which allows the move but is said in the status.

use transition_crds::heartbeat::{Heartbeat, RestoreCapability};

use super::server::Beats;
use super::tracker::Health;

/// Whether a cluster (or node) can restore the checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `node` can.
    Capable { node: String },
    /// Nothing says it cannot, but not everything is known (why).
    Unknown(String),
    /// It cannot (why, naming nodes and what is wrong).
    Cannot(String),
}

impl Verdict {
    pub fn cannot(&self) -> bool {
        matches!(self, Verdict::Cannot(_))
    }

    /// Short word for status fields: `Capable`, `Unknown`, `CannotRestore`.
    pub fn word(&self) -> &'static str {
        match self {
            Verdict::Capable { .. } => "Capable",
            Verdict::Unknown(_) => "Unknown",
            Verdict::Cannot(_) => "CannotRestore",
        }
    }

    pub fn message(&self) -> String {
        match self {
            Verdict::Capable { node } => format!("node {node} can restore the checkpoints"),
            Verdict::Unknown(why) | Verdict::Cannot(why) => why.clone(),
        }
    }
}

fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version
        .trim()
        .trim_start_matches('v')
        .split(['.', '-', '+']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// `what` of the target is older than the source's (both known).
fn older(what: &str, target: &str, source: &str) -> Option<String> {
    let (t, s) = (major_minor(target)?, major_minor(source)?);
    (t < s).then(|| format!("{what} {target} is older than the source's {source}"))
}

/// Whether the node of `target` can restore what the node of `source` checkpointed (pure).
pub fn node_verdict(source: Option<&Heartbeat>, target: &Heartbeat) -> Verdict {
    let node = &target.node;
    let Some(r) = &target.restore else {
        return Verdict::Unknown(format!(
            "node {node}: its agent does not report restore capability"
        ));
    };
    let mut wrong = Vec::new();
    if r.restore_enabled == Some(false) {
        wrong.push(format!(
            "restore from checkpoint images is turned off ({})",
            r.restore_source
        ));
    }
    if let Some(s) = source {
        let arch = crate::image::build::oci_arch_of;
        if !s.arch.is_empty() && !target.arch.is_empty() && arch(&s.arch) != arch(&target.arch) {
            wrong.push(format!(
                "architecture {} is not the source's {}",
                target.arch, s.arch
            ));
        }
        let empty = RestoreCapability::default();
        let sr = s.restore.as_ref().unwrap_or(&empty);
        wrong.extend(older("CRIU", &r.criu_version, &sr.criu_version));
        wrong.extend(older("runc", &r.runc_version, &sr.runc_version));
        wrong.extend(older("kernel", &r.kernel, &sr.kernel));
    }
    if !wrong.is_empty() {
        return Verdict::Cannot(format!("node {node}: {}", wrong.join("; ")));
    }
    match r.restore_enabled {
        Some(true) => Verdict::Capable { node: node.clone() },
        _ => Verdict::Unknown(format!(
            "node {node}: whether restore is turned on is not known ({})",
            r.restore_source
        )),
    }
}

/// Whether `cluster` can restore, from its live nodes' last heartbeats (pure): one capable node
/// is enough; otherwise unknown if any node is, else cannot.
pub fn cluster_verdict(cluster: &str, source: Option<&Heartbeat>, nodes: &[&Heartbeat]) -> Verdict {
    let verdicts: Vec<Verdict> = nodes.iter().map(|n| node_verdict(source, n)).collect();
    if let Some(capable) = verdicts
        .iter()
        .find(|v| matches!(v, Verdict::Capable { .. }))
    {
        return capable.clone();
    }
    let reasons = |pick: fn(&Verdict) -> Option<&String>| {
        verdicts
            .iter()
            .filter_map(pick)
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    };
    if verdicts.is_empty() {
        return Verdict::Unknown(format!(
            "no agent on a live node of cluster {cluster} reports whether it can restore"
        ));
    }
    if verdicts.iter().any(|v| matches!(v, Verdict::Unknown(_))) {
        return Verdict::Unknown(format!(
            "cluster {cluster}: {}",
            reasons(|v| match v {
                Verdict::Unknown(w) => Some(w),
                _ => None,
            })
        ));
    }
    Verdict::Cannot(format!(
        "cluster {cluster} cannot restore the checkpoints: {}",
        reasons(|v| match v {
            Verdict::Cannot(w) => Some(w),
            _ => None,
        })
    ))
}

/// The last heartbeat of every node of `cluster` that is alive (healthy, late, or with only its
/// agent down) in the detector's view.
pub fn live_beats(beats: &Beats, cluster: &str) -> Vec<Heartbeat> {
    use crate::observe::locks::lock;
    let alive: Vec<_> = lock(&beats.tracker, "detector tracker")
        .snapshot(super::server::now_ms())
        .into_iter()
        .filter(|(k, h, _, _)| k.cluster == cluster && *h != Health::NodeFailed)
        .map(|(k, _, _, _)| k)
        .collect();
    let last = lock(&beats.last, "last heartbeats");
    alive
        .iter()
        .filter_map(|k| last.get(k).map(|b| b.payload.clone()))
        .collect()
}

/// The last heartbeat of the first of `nodes` of `cluster` that has sent one (dead or alive).
pub fn source_beat(beats: &Beats, cluster: &str, nodes: &[String]) -> Option<Heartbeat> {
    let last = crate::observe::locks::lock(&beats.last, "last heartbeats");
    nodes.iter().find_map(|n| {
        last.get(&super::tracker::NodeKey {
            cluster: cluster.to_owned(),
            node: n.clone(),
        })
        .map(|b| b.payload.clone())
    })
}

/// Whether `target` can restore checkpoints of `source_nodes` of `source` (`Unknown` without a
/// heartbeat endpoint).
pub fn verdict(
    beats: Option<&Beats>,
    source: &str,
    source_nodes: &[String],
    target: &str,
) -> Verdict {
    let Some(beats) = beats else {
        return Verdict::Unknown("this operator receives no heartbeats".into());
    };
    let from = source_beat(beats, source, source_nodes);
    let nodes = live_beats(beats, target);
    cluster_verdict(target, from.as_ref(), &nodes.iter().collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(node: &str, arch: &str, restore: Option<RestoreCapability>) -> Heartbeat {
        Heartbeat {
            node: node.into(),
            arch: arch.into(),
            restore,
            ..Default::default()
        }
    }

    fn cap(on: Option<bool>, criu: &str, kernel: &str) -> Option<RestoreCapability> {
        Some(RestoreCapability {
            runtime: "containerd".into(),
            restore_enabled: on,
            restore_source:
                "/etc/containerd/config.toml: enable_experimental_restore_via_create = false".into(),
            criu_version: criu.into(),
            runc_version: "1.1.12".into(),
            kernel: kernel.into(),
            ..Default::default()
        })
    }

    #[test]
    fn a_node_with_restore_turned_off_cannot_and_says_where_that_was_read() {
        let src = beat("w1", "x86_64", cap(Some(true), "4.1.1", "6.1.0"));
        let v = node_verdict(
            Some(&src),
            &beat("t1", "x86_64", cap(Some(false), "4.1.1", "6.1.0")),
        );
        assert!(v.cannot(), "{v:?}");
        assert!(
            v.message().contains("turned off") && v.message().contains("config.toml"),
            "{}",
            v.message()
        );
        let ok = node_verdict(
            Some(&src),
            &beat("t1", "x86_64", cap(Some(true), "4.2", "6.6.1")),
        );
        assert_eq!(ok, Verdict::Capable { node: "t1".into() }, "newer is fine");
    }

    #[test]
    fn another_architecture_or_an_older_criu_or_kernel_cannot_restore() {
        let src = beat("w1", "x86_64", cap(Some(true), "4.1.1", "6.1.0"));
        let arm = node_verdict(
            Some(&src),
            &beat("t1", "aarch64", cap(Some(true), "4.1.1", "6.1.0")),
        );
        assert!(arm.message().contains("architecture aarch64"), "{arm:?}");
        let go_names = node_verdict(
            Some(&src),
            &beat("t1", "amd64", cap(Some(true), "4.1.1", "6.1.0")),
        );
        assert!(!go_names.cannot(), "amd64 is x86_64: {go_names:?}");
        let old = node_verdict(
            Some(&src),
            &beat("t1", "x86_64", cap(Some(true), "3.19", "5.10.0")),
        );
        let m = old.message();
        assert!(
            m.contains("CRIU 3.19 is older than the source's 4.1.1") && m.contains("kernel 5.10.0"),
            "{m}"
        );
    }

    #[test]
    fn one_capable_node_is_enough_and_silence_is_unknown_not_cannot() {
        let off = beat("t1", "x86_64", cap(Some(false), "", ""));
        let on = beat("t2", "x86_64", cap(Some(true), "", ""));
        assert_eq!(
            cluster_verdict("c2", None, &[&off, &on]),
            Verdict::Capable { node: "t2".into() }
        );
        let v = cluster_verdict("c2", None, &[&off]);
        assert!(
            v.cannot() && v.message().starts_with("cluster c2 cannot restore"),
            "{v:?}"
        );
        assert!(matches!(
            cluster_verdict("c2", None, &[]),
            Verdict::Unknown(_)
        ));
        let go_agent = beat("t3", "amd64", None);
        assert!(matches!(
            cluster_verdict("c2", None, &[&off, &go_agent]),
            Verdict::Unknown(_)
        ));
    }
}
