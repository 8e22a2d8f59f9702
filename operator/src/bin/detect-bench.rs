//! Replays synthetic heartbeat traces through our detector (phi-accrual + corroboration by a
//! simulated kubelet Lease) and through the Go original's rule (fail over after more than 12
//! consecutive 100 ms ticks without a beat), on the SAME traces. Prints detection latency
//! (p50/p99) for real deaths and false failovers for live nodes. Deterministic (seeded).
//!
//! Scenarios (10⁵ heartbeats each: 100 nodes × 1000 beats at a 1 s interval):
//! * `jitter30`: every interval uniformly 0.7–1.3 s; all nodes live.
//! * `stalls2s`: 1 s beats, and 1% of gaps stretched by a 2 s agent stall; all nodes live.
//! * `death`: 1 s beats ±10%, then each node dies (beats and Lease renewals stop) at a random
//!   point of its 10 s Lease renewal cycle.

use transition_operator::detect::phi::{PhiConfig, PhiDetector};
use transition_operator::detect::tracker::{NodeView, TrackerConfig, Verdict, decide};

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

/// One node's trace: beat times (ms) and, if it dies, the death time.
struct Trace {
    beats: Vec<u64>,
    death_ms: Option<u64>,
    /// Lease renewal phase (ms within the 10 s renew period).
    lease_phase: u64,
}

fn traces(scenario: &str, rng: &mut Rng) -> Vec<Trace> {
    (0..100)
        .map(|_| {
            let mut t = (rng.unit() * 1000.0) as u64;
            let mut beats = Vec::with_capacity(1000);
            for _ in 0..1000 {
                beats.push(t);
                let gap = match scenario {
                    "jitter30" => 700.0 + rng.unit() * 600.0,
                    "stalls2s" => 1000.0 + if rng.unit() < 0.01 { 2000.0 } else { 0.0 },
                    _ => 900.0 + rng.unit() * 200.0,
                };
                t += gap as u64;
            }
            // In `death`, the node dies right after its last beat (at a random point of its Lease cycle).
            let death_ms = (scenario == "death").then(|| beats.last().map_or(0, |l| l + 1));
            Trace {
                beats,
                death_ms,
                lease_phase: (rng.unit() * 10_000.0) as u64,
            }
        })
        .collect()
}

/// Last kubelet Lease renewal at or before `now` (renewed every 10 s until death).
fn lease_renewed(trace: &Trace, now: u64) -> Option<u64> {
    let until = trace.death_ms.map_or(now, |d| d.min(now));
    if until < trace.lease_phase {
        return None;
    }
    Some(trace.lease_phase + (until - trace.lease_phase) / 10_000 * 10_000)
}

struct Outcome {
    suspicions: Vec<u64>,
    failovers: Vec<u64>,
    false_failovers: usize,
}

/// Ours: tick every 100 ms; on suspicion probe (Lease) once per second.
fn ours(trace: &Trace, cfg: &TrackerConfig) -> Outcome {
    let mut d = PhiDetector::new(cfg.phi);
    let end = trace.beats.last().copied().unwrap_or(0) + 60_000;
    let (mut next, mut now) = (0usize, trace.beats.first().copied().unwrap_or(0));
    let (mut suspected_at, mut failed_at, mut last_probe, mut false_failovers) =
        (None, None, 0u64, 0usize);
    let mut suspicions = Vec::new();
    while now <= end {
        while next < trace.beats.len() && trace.beats[next] <= now {
            d.heartbeat(trace.beats[next]);
            next += 1;
            suspected_at = None;
        }
        if d.is_suspect(now) {
            if suspected_at.is_none() {
                suspected_at = Some(now);
                if trace.death_ms.is_some_and(|dm| now >= dm) {
                    suspicions.push(now - trace.death_ms.unwrap_or(now));
                }
            }
            if failed_at.is_none() && now.saturating_sub(last_probe) >= cfg.probe_every_ms {
                last_probe = now;
                let view = Ok(NodeView {
                    ready: None,
                    lease_renewed_ms: lease_renewed(trace, now),
                    ..NodeView::default()
                });
                if let Verdict::NodeFailed(_) =
                    decide(&view, now, None, None, cfg, &Default::default())
                {
                    failed_at = Some(now);
                    if trace.death_ms.is_none_or(|dm| now < dm) {
                        false_failovers += 1;
                    }
                }
            }
        }
        if next >= trace.beats.len() && failed_at.is_some() {
            break;
        }
        now += 100;
    }
    let failovers = match (failed_at, trace.death_ms) {
        (Some(f), Some(dm)) if f >= dm => vec![f - dm],
        _ => vec![],
    };
    Outcome {
        suspicions,
        failovers,
        false_failovers,
    }
}

/// The Go original: a 100 ms ticker counts misses; more than 12 → fail over.
fn go_rule(trace: &Trace) -> Outcome {
    let end = trace.beats.last().copied().unwrap_or(0) + 60_000;
    let (mut next, mut now, mut misses) = (0usize, trace.beats.first().copied().unwrap_or(0), 0u32);
    let mut failovers = Vec::new();
    let mut false_failovers = 0;
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
                match trace.death_ms {
                    Some(dm) if now >= dm => {
                        failovers.push(now - dm);
                        break;
                    }
                    _ => false_failovers += 1,
                }
            }
        }
        now += 100;
    }
    Outcome {
        suspicions: vec![],
        failovers,
        false_failovers,
    }
}

fn pct(v: &mut [u64], p: f64) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.sort_unstable();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    format!("{:.1} s", v[i] as f64 / 1000.0)
}

fn main() {
    let cfg = TrackerConfig {
        phi: PhiConfig::default(),
        ..TrackerConfig::default()
    };
    println!(
        "detector: phi threshold {}, window {}, min std {} ms; corroboration: Lease fresh ≤ {} ms",
        cfg.phi.threshold, cfg.phi.window, cfg.phi.min_std_dev_ms, cfg.lease_fresh_ms
    );
    println!(
        "{:<9} {:<6} {:>8} {:>10} {:>10} {:>15} {:>15} {:>6}",
        "scenario", "who", "beats", "susp p50", "susp p99", "failover p50", "failover p99", "false"
    );
    for scenario in ["jitter30", "stalls2s", "death"] {
        let mut rng = Rng(0x5EED_0000 ^ scenario.len() as u64);
        let ts = traces(scenario, &mut rng);
        let beats: usize = ts.iter().map(|t| t.beats.len()).sum();
        for who in ["ours", "go"] {
            let (mut susp, mut fo, mut false_fo) = (Vec::new(), Vec::new(), 0);
            for t in &ts {
                let o = if who == "ours" {
                    ours(t, &cfg)
                } else {
                    go_rule(t)
                };
                susp.extend(o.suspicions);
                fo.extend(o.failovers);
                false_fo += o.false_failovers;
            }
            let (s50, s99) = if who == "ours" {
                (pct(&mut susp, 0.5), pct(&mut susp, 0.99))
            } else {
                ("-".into(), "-".into())
            };
            println!(
                "{scenario:<9} {who:<6} {beats:>8} {s50:>10} {s99:>10} {:>15} {:>15} {false_fo:>6}",
                pct(&mut fo, 0.5),
                pct(&mut fo, 0.99)
            );
        }
    }
}
