//! Phi-accrual failure detector (Hayashibara et al.; the variant used by Akka and Cassandra):
//! instead of "N missed beats", it turns the time since the last heartbeat into a suspicion level
//! φ = -log10(P(a beat this late | the observed inter-arrival distribution)). Jitter widens the
//! distribution, so a node with noisy beats is not suspected for noise; a steady node is suspected
//! quickly. Pure: times are milliseconds supplied by the caller (tests use a simulated clock).

use std::collections::VecDeque;

/// Detector settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PhiConfig {
    /// φ at or above which a node is suspected (8 ≈ a one-in-10⁸ chance of a false suspicion).
    pub threshold: f64,
    /// Inter-arrival samples kept.
    pub window: usize,
    /// Floor for the standard deviation (ms), so perfectly regular beats do not make φ explode.
    pub min_std_dev_ms: f64,
    /// Extra time (ms) added to the mean: pauses shorter than this are never suspicious.
    pub acceptable_pause_ms: f64,
    /// Interval assumed (ms) before enough samples exist (the agent's configured beat interval).
    pub first_interval_ms: f64,
}

impl Default for PhiConfig {
    fn default() -> Self {
        PhiConfig {
            threshold: 8.0,
            window: 100,
            min_std_dev_ms: 100.0,
            acceptable_pause_ms: 0.0,
            first_interval_ms: 1000.0,
        }
    }
}

/// One node's detector.
#[derive(Clone, Debug)]
pub struct PhiDetector {
    config: PhiConfig,
    intervals: VecDeque<f64>,
    sum: f64,
    sum_sq: f64,
    last_ms: Option<u64>,
}

impl PhiDetector {
    pub fn new(config: PhiConfig) -> PhiDetector {
        let mut d = PhiDetector {
            config,
            intervals: VecDeque::with_capacity(config.window),
            sum: 0.0,
            sum_sq: 0.0,
            last_ms: None,
        };
        // Seed with the expected interval (±25%) so the first beats are judged sensibly.
        let first = config.first_interval_ms;
        d.push(first - first / 4.0);
        d.push(first + first / 4.0);
        d
    }

    fn push(&mut self, interval: f64) {
        if self.intervals.len() == self.config.window.max(2)
            && let Some(old) = self.intervals.pop_front()
        {
            self.sum -= old;
            self.sum_sq -= old * old;
        }
        self.intervals.push_back(interval);
        self.sum += interval;
        self.sum_sq += interval * interval;
    }

    /// Records a heartbeat at `now_ms`. Beats that arrive out of order (a clock step backwards)
    /// only move the reference point; they add no sample.
    pub fn heartbeat(&mut self, now_ms: u64) {
        if let Some(last) = self.last_ms
            && now_ms > last
        {
            self.push((now_ms - last) as f64);
        }
        self.last_ms = Some(self.last_ms.map_or(now_ms, |l| l.max(now_ms)));
    }

    /// Replaces the settings, keeping the samples (a changed ClusterPolicy applies at once).
    pub fn set_config(&mut self, config: PhiConfig) {
        self.config = config;
    }

    /// Time of the last heartbeat.
    pub fn last_ms(&self) -> Option<u64> {
        self.last_ms
    }

    /// Mean and standard deviation of the inter-arrival times (ms).
    pub fn stats(&self) -> (f64, f64) {
        let n = self.intervals.len().max(1) as f64;
        let mean = self.sum / n;
        let var = (self.sum_sq / n - mean * mean).max(0.0);
        (mean, var.sqrt())
    }

    /// The suspicion level at `now_ms` (0 before the first beat).
    pub fn phi(&self, now_ms: u64) -> f64 {
        let Some(last) = self.last_ms else { return 0.0 };
        let elapsed = now_ms.saturating_sub(last) as f64;
        let (mean, std) = self.stats();
        phi(
            elapsed,
            mean + self.config.acceptable_pause_ms,
            std.max(self.config.min_std_dev_ms),
        )
    }

    /// Whether φ is at or above the threshold.
    pub fn is_suspect(&self, now_ms: u64) -> bool {
        self.phi(now_ms) >= self.config.threshold
    }
}

/// φ for `elapsed` given a normal distribution (logistic approximation of its CDF, as Akka does).
pub fn phi(elapsed: f64, mean: f64, std: f64) -> f64 {
    let y = (elapsed - mean) / std;
    let e = (-y * (1.5976 + 0.070_566 * y * y)).exp();
    let p_later = if elapsed > mean {
        e / (1.0 + e)
    } else {
        1.0 - 1.0 / (1.0 + e)
    };
    if p_later <= 0.0 {
        f64::MAX
    } else {
        -p_later.log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beats(d: &mut PhiDetector, start: u64, every: u64, n: u64) -> u64 {
        let mut t = start;
        for _ in 0..n {
            d.heartbeat(t);
            t += every;
        }
        t - every
    }

    #[test]
    fn regular_beats_are_not_suspected_and_silence_soon_is() {
        let mut d = PhiDetector::new(PhiConfig::default());
        let last = beats(&mut d, 0, 1000, 50);
        assert!(
            !d.is_suspect(last + 1100),
            "a slightly late beat is fine (phi {})",
            d.phi(last + 1100)
        );
        assert!(
            d.is_suspect(last + 2000),
            "2 s of silence after steady 1 s beats is suspicious (phi {})",
            d.phi(last + 2000)
        );
    }

    #[test]
    fn jittery_beats_widen_the_tolerance() {
        let mut steady = PhiDetector::new(PhiConfig::default());
        let mut noisy = PhiDetector::new(PhiConfig::default());
        let mut t = 0;
        for i in 0..100u64 {
            steady.heartbeat(i * 1000);
            noisy.heartbeat(t);
            t += if i % 2 == 0 { 700 } else { 1300 };
        }
        let (ls, ln) = (99 * 1000, t - 700);
        assert!(
            noisy.phi(ln + 1600) < steady.phi(ls + 1600),
            "noise lowers suspicion at the same silence"
        );
        assert!(
            !noisy.is_suspect(ln + 1500),
            "a 1.5 s gap is normal for a ±30% node"
        );
    }

    #[test]
    fn an_acceptable_pause_absorbs_stalls_of_that_length() {
        let cfg = PhiConfig {
            acceptable_pause_ms: 2000.0,
            ..PhiConfig::default()
        };
        let mut d = PhiDetector::new(cfg);
        let last = beats(&mut d, 0, 1000, 50);
        assert!(!d.is_suspect(last + 2900));
        assert!(d.is_suspect(last + 4000));
    }

    #[test]
    fn a_clock_step_backwards_adds_no_sample_and_does_not_reset_the_reference() {
        let mut d = PhiDetector::new(PhiConfig::default());
        let last = beats(&mut d, 10_000, 1000, 20);
        let before = d.stats();
        d.heartbeat(last - 5000);
        assert_eq!(d.stats(), before);
        assert_eq!(d.last_ms(), Some(last));
    }

    #[test]
    fn phi_grows_monotonically_with_silence() {
        let mut d = PhiDetector::new(PhiConfig::default());
        let last = beats(&mut d, 0, 1000, 30);
        let mut prev = 0.0;
        for gap in (0..5000).step_by(100) {
            let p = d.phi(last + gap);
            assert!(p >= prev, "phi fell from {prev} to {p} at {gap} ms");
            prev = p;
        }
    }
}
