//! Replays synthetic heartbeat traces through the REAL tracker (`detect::tracker::Tracker`:
//! phi-accrual, probe scheduling, kubelet evidence, `decide`) with a simulated probe, twice on the
//! SAME traces — the Lease rule alone (`kubelet_probe: false`, as before issue 18) and the fast
//! path (the kubelet through the API server's node proxy) — and, for the original scenarios, the Go
//! original's rule (fail over after more than 12 consecutive 100 ms ticks without a beat).
//! Prints confirmation latency after the LAST heartbeat (p50/p95/p99) for real deaths, and false
//! failovers (a NodeFailed while the node is alive). Deterministic (seeded).
//!
//! Every trace is one node (100 per scenario, 1000 beats each at a 1 s interval) plus a peer of the
//! same cluster beating steadily (the fast path needs a healthy peer whose kubelet answers). The
//! simulated probe answers as a real API server would, with the detector loop's timing: probes
//! start on a 100 ms tick, Node/Lease GETs take 5 ms, a kubelet that refuses answers in 5 ms, a
//! dead host's kubelet dial hangs until our deadline, an unreachable API until the 3 s probe
//! timeout; beats arriving meanwhile are applied first. Kubelets renew their Lease every 10 s (a
//! random phase per node), not while they are down.
//!
//! Scenarios:
//! * `jitter30`: intervals uniformly 0.7–1.3 s; all nodes live.
//! * `stalls2s`: 1 s beats, 1% of gaps stretched by a 2 s agent stall; all nodes live.
//! * `death`: 1 s ±10% beats, then the node dies right after its last beat (beats, Lease and
//!   kubelet stop); its host is gone, so the API server's dial of the kubelet hangs (our deadline).
//! * `death-refused`: the same, but the host's address refuses the connection (kubelet process
//!   dead, host up at the IP level): the API server's error comes back at once.
//! * `agent-death`: the agent dies after its last beat; node, kubelet and Lease live on.
//! * `kubelet-restart`: 1 s ±10% beats; 10 kubelet restarts per node, each 5 s unreachable
//!   (connection refused, no Lease renewal); the agent keeps beating.
//! * `stall+kubelet-restart`: the `stalls2s` traces where EVERY 2 s agent stall coincides with a
//!   5 s kubelet restart starting with it (the residual risk, as a worst case).
//! * `partition`: 1 s ±10% beats; a 60 s management↔source partition at 70% of the trace (the
//!   node's and its peer's beats lost, the source API unreachable from the management cluster, a
//!   vantage point on another cluster still reaching it); then it heals.

use transition_operator::detect::kubelet_reach::{KubeletCheck, KubeletReach, Peer};
use transition_operator::detect::phi::PhiConfig;
use transition_operator::detect::tracker::{
    Health, NodeKey, NodeView, ProbeError, Tracker, TrackerConfig, Vantage,
};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// How the API server's dial of a kubelet that is not there fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dial {
    /// Connection refused (or no route to host): its error comes back at once.
    Refused,
    /// No answer at all (a host that is gone): our deadline ends the wait.
    Silent,
}

/// One node's trace.
struct Trace {
    /// Heartbeat arrivals at the operator (ms).
    beats: Vec<u64>,
    /// The node dies (beats, Lease renewals and kubelet stop) at this time, failing dials so.
    death: Option<(u64, Dial)>,
    /// Lease renewal phase (ms within the 10 s renew period).
    lease_phase: u64,
    /// When the kubelet is down while the node lives (restarts): [from, to).
    kubelet_down: Vec<(u64, u64)>,
    /// When the management cluster cannot reach the source cluster (beats lost, API
    /// unreachable; a vantage point still reaches it): [from, to).
    partition: Vec<(u64, u64)>,
    /// Injected events (stalls, restarts, deaths, partitions), for the report.
    events: usize,
    /// Followed for 60 s after the last beat (a death, an agent death); other traces just end.
    silent_tail: bool,
}

fn within(spans: &[(u64, u64)], t: u64) -> bool {
    spans.iter().any(|&(a, b)| t >= a && t < b)
}

fn traces(scenario: &str, rng: &mut Rng) -> Vec<Trace> {
    (0..100)
        .map(|_| {
            // Each kubelet has been renewing its Lease for a while when a trace starts.
            let mut t = 20_000 + (rng.unit() * 1000.0) as u64;
            let mut beats = Vec::with_capacity(1000);
            let mut stalls = Vec::new();
            for _ in 0..1000 {
                beats.push(t);
                let gap = match scenario {
                    "jitter30" => 700.0 + rng.unit() * 600.0,
                    "stalls2s" | "stall+kubelet-restart" => {
                        if rng.unit() < 0.01 {
                            stalls.push(t);
                            3000.0
                        } else {
                            1000.0
                        }
                    }
                    _ => 900.0 + rng.unit() * 200.0,
                };
                t += gap as u64;
            }
            let last = beats.last().copied().unwrap_or(0);
            let first = beats.first().copied().unwrap_or(0);
            let death = match scenario {
                "death" => Some((last + 1, Dial::Silent)),
                "death-refused" => Some((last + 1, Dial::Refused)),
                _ => None,
            };
            let mut kubelet_down = Vec::new();
            let mut partition = Vec::new();
            let mut events = usize::from(death.is_some() || scenario == "agent-death");
            match scenario {
                "kubelet-restart" => {
                    for _ in 0..10 {
                        let at = first + (rng.unit() * (last - first) as f64) as u64;
                        kubelet_down.push((at, at + 5000));
                    }
                    events = 10;
                }
                "stall+kubelet-restart" => {
                    kubelet_down = stalls.iter().map(|&s| (s, s + 5000)).collect();
                    events = stalls.len();
                }
                "stalls2s" => events = stalls.len(),
                "partition" => {
                    let at = first + (last - first) * 7 / 10;
                    partition.push((at, at + 60_000));
                    beats.retain(|&b| !within(&partition, b));
                    events = 1;
                }
                _ => {}
            }
            Trace {
                beats,
                death,
                lease_phase: (rng.unit() * 10_000.0) as u64,
                kubelet_down,
                partition,
                events,
                silent_tail: death.is_some() || scenario == "agent-death",
            }
        })
        .collect()
}

/// Last kubelet Lease renewal at or before `now`: every 10 s while the kubelet is up, and at once
/// when a restarted kubelet is back.
fn lease_renewed(trace: &Trace, now: u64) -> Option<u64> {
    let until = trace.death.map_or(now, |(d, _)| d.min(now));
    let mut slot = until.checked_sub((until + 10_000 - trace.lease_phase) % 10_000)?;
    while within(&trace.kubelet_down, slot) {
        slot = slot.checked_sub(10_000)?;
    }
    let restarted = trace
        .kubelet_down
        .iter()
        .map(|&(_, back)| back)
        .filter(|back| *back <= until)
        .max();
    Some(restarted.map_or(slot, |r| r.max(slot)))
}

/// The probe of `trace`'s node launched at `at`: what it sees, and when it ends.
fn probe(
    trace: &Trace,
    at: u64,
    check: Option<&KubeletCheck>,
) -> (Result<NodeView, ProbeError>, u64) {
    if within(&trace.partition, at) {
        let e = ProbeError::TimedOut("w".into());
        return (Err(e), at + 3000);
    }
    let dead = trace.death.filter(|(d, _)| at >= *d).map(|(_, dial)| dial);
    let restarting = within(&trace.kubelet_down, at).then_some(Dial::Refused);
    let (kubelet, kubelet_at, peer) = match check {
        None => (KubeletReach::NotAsked, None, None),
        Some(c) => match dead.or(restarting) {
            None => (KubeletReach::Reachable, Some(at + 5), None),
            Some(dial) => {
                let (why, took) = match dial {
                    Dial::Refused => (
                        "HTTP 500: error trying to reach service: dial tcp: connect: connection refused"
                            .to_owned(),
                        5,
                    ),
                    Dial::Silent => (
                        format!(
                            "no answer through the API server within {} ms",
                            c.timeout_ms
                        ),
                        c.timeout_ms,
                    ),
                };
                let peer = c.peer.clone().map(|node| Peer {
                    node,
                    kubelet: KubeletReach::Reachable,
                });
                (KubeletReach::Unreachable(why), Some(at + took), peer)
            }
        },
    };
    let end = kubelet_at.unwrap_or(at + 5) + if peer.is_some() { 5 } else { 0 };
    let view = NodeView {
        ready: Some(true),
        lease_renewed_ms: lease_renewed(trace, at),
        kubelet,
        kubelet_at_ms: kubelet_at,
        peer,
    };
    (Ok(view), end.max(at + 5))
}

#[derive(Default)]
struct Outcome {
    /// Suspicion after the last heartbeat (deaths).
    suspicions: Vec<u64>,
    /// Confirmation after the last heartbeat (deaths).
    confirmations: Vec<u64>,
    false_failovers: usize,
}

/// The real tracker, ticking every 100 ms, probing through [`probe`].
fn ours(trace: &Trace, cfg: TrackerConfig) -> Outcome {
    let key = NodeKey {
        cluster: "c".into(),
        node: "w".into(),
    };
    let peer = NodeKey {
        cluster: "c".into(),
        node: "peer".into(),
    };
    let first = trace.beats.first().copied().unwrap_or(0);
    let last = trace.beats.last().copied().unwrap_or(0);
    let end = if trace.silent_tail {
        last + 60_000
    } else {
        last + 500
    };
    let peer_beats: Vec<u64> = (0..=end / 1000)
        .map(|i| i * 1000)
        .filter(|b| !within(&trace.partition, *b))
        .collect();
    let vantage = if trace.partition.is_empty() {
        Vantage::default()
    } else {
        Vantage {
            reached_by: vec!["other/vantage-1".into()],
            unreached_by: vec![],
        }
    };
    let mut t = Tracker::new(cfg, 0);
    let (mut next, mut next_peer) = (0usize, 0usize);
    let mut out = Outcome::default();
    let deliver = |t: &mut Tracker, upto: u64, next: &mut usize, next_peer: &mut usize| {
        loop {
            let a = trace.beats.get(*next).copied().filter(|b| *b <= upto);
            let b = peer_beats.get(*next_peer).copied().filter(|b| *b <= upto);
            match (a, b) {
                (Some(x), Some(y)) if x <= y => {
                    t.beat(&key, x);
                    *next += 1;
                }
                (_, Some(y)) => {
                    t.beat(&peer, y);
                    *next_peer += 1;
                }
                (Some(x), None) => {
                    t.beat(&key, x);
                    *next += 1;
                }
                (None, None) => break,
            }
        }
    };
    let alive = |at: u64| trace.death.is_none_or(|(d, _)| at < d);
    let mut now = first;
    let mut suspected = false;
    while now <= end {
        deliver(&mut t, now, &mut next, &mut next_peer);
        let (changes, to_probe) = t.tick(now);
        for c in changes.iter().filter(|c| c.key == key) {
            if !alive(c.at_ms) && !suspected {
                suspected = true;
                out.suspicions.push(c.at_ms - last);
            }
        }
        if to_probe.contains(&key) {
            let check = t.kubelet_check(&key);
            let (view, done) = probe(trace, now, check.as_ref());
            deliver(&mut t, done, &mut next, &mut next_peer);
            if let Some(c) = t.probed(&key, &view, done, &vantage)
                && c.to == Health::NodeFailed
            {
                if alive(done) {
                    out.false_failovers += 1;
                } else {
                    out.confirmations.push(done - last);
                    break;
                }
            }
            now = (done / 100 + 1) * 100;
        } else {
            now += 100;
        }
    }
    out
}

/// The Go original: a 100 ms ticker counts misses; more than 12 → fail over.
fn go_rule(trace: &Trace) -> Outcome {
    let last = trace.beats.last().copied().unwrap_or(0);
    let end = last + 60_000;
    let (mut next, mut now, mut misses) = (0usize, trace.beats.first().copied().unwrap_or(0), 0u32);
    let mut out = Outcome::default();
    while now <= end {
        let mut beat = false;
        while next < trace.beats.len() && trace.beats[next] <= now {
            next += 1;
            beat = true;
        }
        if beat {
            misses = 0;
        } else {
            misses += 1;
            if misses == 13 {
                match trace.death {
                    Some((d, _)) if now >= d => {
                        out.confirmations.push(now - last);
                        break;
                    }
                    _ => out.false_failovers += 1,
                }
            }
        }
        now += 100;
    }
    out
}

fn pct(v: &mut [u64], p: f64) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    Some(v[i])
}

fn secs(v: Option<u64>) -> String {
    v.map_or("-".into(), |ms| format!("{:.2} s", ms as f64 / 1000.0))
}

const SCENARIOS: [&str; 8] = [
    "jitter30",
    "stalls2s",
    "death",
    "death-refused",
    "agent-death",
    "kubelet-restart",
    "stall+kubelet-restart",
    "partition",
];

/// The one scenario where the fast path may fail over a live node (reported, not hidden).
const RESIDUAL_RISK: &str = "stall+kubelet-restart";

fn main() {
    let fast = TrackerConfig {
        phi: PhiConfig::default(),
        warmup_ms: 0,
        ..TrackerConfig::default()
    };
    let lease_only = TrackerConfig {
        kubelet_probe: false,
        ..fast
    };
    println!(
        "detector: phi threshold {}, window {}, min std {} ms; probe every {} ms; Lease fresh ≤ {} ms; \
         kubelet deadline {} ms, down ≥ {} ms over ≥ 2 probes (fast path only)",
        fast.phi.threshold,
        fast.phi.window,
        fast.phi.min_std_dev_ms,
        fast.probe_every_ms,
        fast.lease_fresh_ms,
        fast.kubelet_timeout_ms,
        fast.kubelet_down_ms
    );
    println!(
        "latencies are measured from the LAST heartbeat; \"false\" = NodeFailed while the node lives"
    );
    println!(
        "{:<22} {:<10} {:>6} {:>6} {:>9} {:>11} {:>9} {:>9} {:>6}",
        "scenario", "path", "beats", "events", "susp p50", "confirm p50", "p95", "p99", "false"
    );
    let mut goals = Vec::new();
    for scenario in SCENARIOS {
        let mut rng =
            Rng(0x5EED_0000 ^ scenario.len() as u64 ^ (scenario.as_bytes()[0] as u64) << 8);
        let ts = traces(scenario, &mut rng);
        let beats: usize = ts.iter().map(|t| t.beats.len()).sum();
        let events: usize = ts.iter().map(|t| t.events).sum();
        let mut p50s = Vec::new();
        let mut falses = Vec::new();
        let paths: &[&str] = if matches!(scenario, "jitter30" | "stalls2s" | "death") {
            &["lease-only", "fast", "go-rule"]
        } else {
            &["lease-only", "fast"]
        };
        for (i, &path) in paths.iter().enumerate() {
            let mut all = Outcome::default();
            for t in &ts {
                let o = match path {
                    "lease-only" => ours(t, lease_only),
                    "fast" => ours(t, fast),
                    _ => go_rule(t),
                };
                all.suspicions.extend(o.suspicions);
                all.confirmations.extend(o.confirmations);
                all.false_failovers += o.false_failovers;
            }
            let p50 = pct(&mut all.confirmations, 0.5);
            p50s.push(p50);
            falses.push(all.false_failovers);
            println!(
                "{:<22} {path:<10} {:>6} {:>6} {:>9} {:>11} {:>9} {:>9} {:>6}",
                if i == 0 { scenario } else { "" },
                if i == 0 {
                    beats.to_string()
                } else {
                    String::new()
                },
                if i == 0 {
                    events.to_string()
                } else {
                    String::new()
                },
                if path == "go-rule" {
                    "-".into()
                } else {
                    secs(pct(&mut all.suspicions, 0.5))
                },
                secs(p50),
                secs(pct(&mut all.confirmations, 0.95)),
                secs(pct(&mut all.confirmations, 0.99)),
                all.false_failovers
            );
        }
        if let (Some(lease), Some(fast_p50)) = (p50s[0], p50s[1]) {
            println!(
                "{:<22} ratio      confirm p50 lease-only / fast = {:.1}×",
                "",
                lease as f64 / fast_p50.max(1) as f64
            );
            goals.push(format!(
                "goal fast-path confirm p50 ≤ 3 s after the last heartbeat, {scenario}: {} {}",
                secs(Some(fast_p50)),
                if fast_p50 <= 3000 { "MET" } else { "MISSED" }
            ));
        }
        if scenario == RESIDUAL_RISK {
            goals.push(format!(
                "residual risk, {scenario}: the fast path failed over {} live nodes in {events} coinciding stall+restart events ({:.0}%); lease-only {}",
                falses[1],
                100.0 * falses[1] as f64 / events.max(1) as f64,
                falses[0]
            ));
        } else {
            goals.push(format!(
                "goal 0 false failovers, {scenario}: lease-only {}, fast {} {}",
                falses[0],
                falses[1],
                if falses[0] == 0 && falses[1] == 0 {
                    "MET"
                } else {
                    "MISSED"
                }
            ));
        }
    }
    println!();
    for g in goals {
        println!("{g}");
    }
}
