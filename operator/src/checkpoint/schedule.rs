//! When a checkpoint is due (pure): cron parsing, schedules and manual triggers — every cron
//! helper of the operator lives here.
//!
//! * A schedule is a cron expression or a fixed interval, `@every <n>s` (what a policy's
//!   `intervalSeconds` becomes in its Checkpoints: sub-minute protection; robfig/cron, which the
//!   Go original uses, reads the same form). An interval's slots are the multiples of it since the
//!   Unix epoch, so every operator replica and restart agrees on them without state.
//! * Missed runs are not replayed in a storm: after an outage, or a run slower than the interval,
//!   only the latest missed slot runs (once), then the schedule continues — no backlog.
//! * A manual trigger is the annotation `transition.dcnlab.ssu.ac.kr/checkpoint-now: <token>`;
//!   each distinct token triggers exactly once (the handled token is recorded in status).

use std::str::FromStr;
use std::time::Duration;

use croner::Cron;
use k8s_openapi::jiff::{Timestamp, tz::TimeZone};
use transition_crds::Checkpoint;

use crate::cluster_policy::discover::MANUAL_SCHEDULE;

/// The interval form of a schedule: `@every <seconds>s`.
pub const EVERY: &str = "@every";
/// Shortest interval accepted (the pipeline cannot usefully checkpoint more often).
pub const MIN_INTERVAL_SECONDS: u64 = 1;
/// Longest interval accepted (a day; longer periods are cron's job).
pub const MAX_INTERVAL_SECONDS: u64 = 86_400;

/// A schedule that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CronError {
    #[error("invalid cron expression {expr:?}: {source}")]
    Cron {
        expr: String,
        #[source]
        source: croner::errors::CronError,
    },
    #[error(
        "invalid interval {expr:?}: expected \"@every <seconds>s\" with {MIN_INTERVAL_SECONDS} to {MAX_INTERVAL_SECONDS} seconds"
    )]
    Interval { expr: String },
}

/// A parsed schedule.
#[derive(Clone, Debug)]
pub enum Schedule {
    Cron(Box<Cron>),
    /// A fixed interval; slots at multiples of it since the Unix epoch.
    Every(Duration),
}

/// Parses a schedule: a cron expression (5 fields, 6 with seconds, or `@hourly`-style) or an
/// interval `@every <n>s`.
pub fn parse_cron(expr: &str) -> Result<Schedule, CronError> {
    let t = expr.trim();
    if let Some(rest) = t.strip_prefix(EVERY) {
        let secs = rest
            .trim()
            .strip_suffix('s')
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| (MIN_INTERVAL_SECONDS..=MAX_INTERVAL_SECONDS).contains(n))
            .ok_or_else(|| CronError::Interval {
                expr: expr.to_owned(),
            })?;
        return Ok(Schedule::Every(Duration::from_secs(secs)));
    }
    Cron::from_str(t)
        .map(|c| Schedule::Cron(Box::new(c)))
        .map_err(|source| CronError::Cron {
            expr: expr.to_owned(),
            source,
        })
}

/// The latest interval slot at or before `now`.
fn interval_slot(every: Duration, now: Timestamp) -> Option<Timestamp> {
    let step = i64::try_from(every.as_millis()).ok().filter(|s| *s > 0)?;
    let ms = now.as_millisecond();
    Timestamp::from_millisecond(ms - ms.rem_euclid(step)).ok()
}

/// The next firing of `schedule` strictly after `now` (UTC).
pub fn next_run(schedule: &Schedule, now: Timestamp) -> Option<Timestamp> {
    match schedule {
        Schedule::Cron(cron) => {
            let zoned = now.to_zoned(TimeZone::UTC);
            cron.find_next_occurrence(&zoned, false)
                .ok()
                .map(|z| z.timestamp())
        }
        Schedule::Every(every) => {
            let slot = interval_slot(*every, now)?;
            let step = i64::try_from(every.as_millis()).ok()?;
            Timestamp::from_millisecond(slot.as_millisecond() + step).ok()
        }
    }
}

/// Annotation a Transition (or the CLI) puts on a Checkpoint for a fresh checkpoint (each token
/// once; the policy never copies it, so its own `checkpoint-now` cannot overwrite it).
pub use transition_crds::annotations::CHECKPOINT_FOR;
/// Annotation that asks for a checkpoint now; its value is a token, handled once.
pub use transition_crds::annotations::CHECKPOINT_NOW;

/// The scheduled slot to run now, if any: the latest slot at or before `now` that is after
/// `since` (the last run, or the object's creation). Older missed slots are skipped.
pub fn due(schedule: &Schedule, since: Timestamp, now: Timestamp) -> Option<Timestamp> {
    let slot = match schedule {
        Schedule::Cron(cron) => {
            let now_z = now.to_zoned(TimeZone::UTC);
            cron.find_previous_occurrence(&now_z, true)
                .ok()?
                .timestamp()
        }
        Schedule::Every(every) => interval_slot(*every, now)?,
    };
    (slot > since).then_some(slot)
}

/// The manual trigger token to handle now: the annotation's value when it differs from the last
/// handled token (empty values are ignored).
pub fn manual_trigger<'a>(annotation: Option<&'a str>, handled: Option<&str>) -> Option<&'a str> {
    let token = annotation?.trim();
    (!token.is_empty() && Some(token) != handled.map(str::trim)).then_some(token)
}

/// The time between two firings of `schedule` after `now` (its period there).
pub fn period(schedule: &Schedule, now: Timestamp) -> Option<std::time::Duration> {
    if let Schedule::Every(every) = schedule {
        return Some(*every);
    }
    let first = next_run(schedule, now)?;
    let second = next_run(schedule, first)?;
    let ms = second.as_millisecond() - first.as_millisecond();
    u64::try_from(ms).ok().map(std::time::Duration::from_millis)
}

/// What is due now: a trigger label, the slot (scheduled) or token (manual).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Due {
    Scheduled(Timestamp),
    Manual(String),
    /// A Transition's `checkpoint-for` token.
    ForTransition(String),
}

impl Due {
    pub fn label(&self) -> String {
        match self {
            Due::Scheduled(t) => format!("schedule:{t}"),
            Due::Manual(token) => format!("manual:{token}"),
            Due::ForTransition(token) => format!("transition:{token}"),
        }
    }
}

/// Decides whether a run of `c` is due at `now`, and otherwise when to look again.
pub fn decide(
    c: &Checkpoint,
    now: Timestamp,
) -> Result<(Option<Due>, Option<std::time::Duration>), CronError> {
    let status = c.status.clone().unwrap_or_default();
    let annotation = |key: &str| {
        c.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .map(String::as_str)
    };
    if let Some(t) = manual_trigger(
        annotation(CHECKPOINT_FOR),
        status.last_transition_token.as_deref(),
    ) {
        return Ok((Some(Due::ForTransition(t.to_owned())), None));
    }
    if let Some(t) = manual_trigger(
        annotation(CHECKPOINT_NOW),
        status.last_manual_token.as_deref(),
    ) {
        return Ok((Some(Due::Manual(t.to_owned())), None));
    }
    let exprs: Vec<&str> = std::iter::once(c.spec.schedule.as_str())
        .chain(c.spec.additional_schedules.iter().map(String::as_str))
        .filter(|e| e.trim() != MANUAL_SCHEDULE)
        .collect();
    if exprs.is_empty() {
        return Ok((None, None));
    }
    let crons = exprs
        .into_iter()
        .map(parse_cron)
        .collect::<Result<Vec<_>, _>>()?;
    let since = status
        .last_scheduled_run
        .as_ref()
        .map(|t| t.0)
        .or_else(|| c.metadata.creation_timestamp.as_ref().map(|t| t.0))
        .unwrap_or(now);
    // The latest slot of any schedule since the last run (missed ones are not replayed).
    if let Some(slot) = crons.iter().filter_map(|cron| due(cron, since, now)).max() {
        return Ok((Some(Due::Scheduled(slot)), None));
    }
    let wake = crons
        .iter()
        .filter_map(|cron| next_run(cron, now))
        .min()
        .map(|n| {
            let ms = (n.as_millisecond() - now.as_millisecond()).max(0);
            std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
        });
    Ok((None, wake))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_slot_runs_once() {
        let cron = parse_cron("*/3 * * * *").unwrap();
        let run = due(
            &cron,
            at("2026-11-22T10:00:30Z"),
            at("2026-11-22T10:03:10Z"),
        )
        .unwrap();
        assert_eq!(run, at("2026-11-22T10:03:00Z"));
        assert_eq!(
            due(&cron, run, at("2026-11-22T10:04:00Z")),
            None,
            "same slot: not again"
        );
        assert_eq!(
            due(&cron, run, at("2026-11-22T10:06:00Z")),
            Some(at("2026-11-22T10:06:00Z"))
        );
    }

    #[test]
    fn an_hour_of_missed_slots_becomes_one_run_not_a_storm() {
        let cron = parse_cron("*/3 * * * *").unwrap();
        let last = at("2026-11-22T09:00:00Z");
        let now = at("2026-11-22T10:01:30Z");
        let mut runs = Vec::new();
        let mut since = last;
        while let Some(slot) = due(&cron, since, now) {
            runs.push(slot);
            since = slot;
        }
        assert_eq!(
            runs,
            vec![at("2026-11-22T10:00:00Z")],
            "twenty missed slots collapse into the latest"
        );
    }

    #[test]
    fn nothing_is_due_before_the_first_slot_after_creation() {
        let cron = parse_cron("0 * * * *").unwrap();
        assert_eq!(
            due(
                &cron,
                at("2026-11-22T10:05:00Z"),
                at("2026-11-22T10:59:59Z")
            ),
            None
        );
    }

    #[test]
    fn an_interval_fires_on_multiples_of_itself_since_the_epoch() {
        let every = parse_cron("@every 10s").unwrap();
        assert!(matches!(every, Schedule::Every(d) if d == Duration::from_secs(10)));
        assert_eq!(
            next_run(&every, at("2026-11-22T10:00:03Z")),
            Some(at("2026-11-22T10:00:10Z"))
        );
        assert_eq!(
            next_run(&every, at("2026-11-22T10:00:10Z")),
            Some(at("2026-11-22T10:00:20Z")),
            "strictly after"
        );
        assert_eq!(
            period(&every, at("2026-11-22T10:00:03Z")),
            Some(Duration::from_secs(10))
        );
        let run = due(
            &every,
            at("2026-11-22T10:00:00Z"),
            at("2026-11-22T10:00:13Z"),
        );
        assert_eq!(run, Some(at("2026-11-22T10:00:10Z")));
        assert_eq!(
            due(
                &every,
                at("2026-11-22T10:00:10Z"),
                at("2026-11-22T10:00:19.999Z")
            ),
            None,
            "the same slot runs once"
        );
    }

    #[test]
    fn a_run_slower_than_its_interval_is_followed_by_the_latest_slot_only() {
        // A 10 s interval whose run took 35 s: three slots passed meanwhile; one run follows.
        let every = parse_cron("@every 10s").unwrap();
        let mut since = at("2026-11-22T10:00:00Z");
        let now = at("2026-11-22T10:00:35Z");
        let mut runs = Vec::new();
        while let Some(slot) = due(&every, since, now) {
            runs.push(slot);
            since = slot;
        }
        assert_eq!(runs, vec![at("2026-11-22T10:00:30Z")], "no backlog");
    }

    #[test]
    fn a_malformed_interval_is_refused_with_the_accepted_form() {
        for bad in [
            "@every",
            "@every 0s",
            "@every 10",
            "@every 10m",
            "@every -5s",
            "@every 86401s",
            "@every 1e3s",
        ] {
            let e = parse_cron(bad).unwrap_err().to_string();
            assert!(e.contains("@every <seconds>s"), "{bad}: {e}");
        }
        assert!(parse_cron("@every 1s").is_ok());
        assert!(parse_cron(" @every 86400s ").is_ok());
    }

    #[test]
    fn each_manual_token_triggers_exactly_once() {
        assert_eq!(manual_trigger(Some("t1"), None), Some("t1"));
        assert_eq!(manual_trigger(Some("t1"), Some("t1")), None);
        assert_eq!(manual_trigger(Some("t2"), Some("t1")), Some("t2"));
        assert_eq!(manual_trigger(Some("  "), None), None);
        assert_eq!(manual_trigger(None, Some("t1")), None);
    }
}
