//! When a checkpoint is due (pure): cron parsing, schedules and manual triggers — every cron
//! helper of the operator lives here.
//!
//! * Missed runs are not replayed in a storm: after an outage, only the latest missed slot runs
//!   (once), then the schedule continues.
//! * A manual trigger is the annotation `transition.dcnlab.ssu.ac.kr/checkpoint-now: <token>`;
//!   each distinct token triggers exactly once (the handled token is recorded in status).

use std::str::FromStr;

use croner::Cron;
use k8s_openapi::jiff::{Timestamp, tz::TimeZone};
use transition_crds::Checkpoint;

use crate::cluster_policy::discover::MANUAL_SCHEDULE;

/// A schedule that is not a cron expression croner accepts.
#[derive(Debug, thiserror::Error)]
#[error("invalid cron expression {expr:?}: {source}")]
pub struct CronError {
    pub expr: String,
    #[source]
    pub source: croner::errors::CronError,
}

/// Parses a cron expression (5 fields, 6 with seconds, or `@hourly`-style).
pub fn parse_cron(expr: &str) -> Result<Cron, CronError> {
    Cron::from_str(expr.trim()).map_err(|source| CronError {
        expr: expr.to_owned(),
        source,
    })
}

/// The next firing of `cron` strictly after `now` (UTC).
pub fn next_run(cron: &Cron, now: Timestamp) -> Option<Timestamp> {
    let zoned = now.to_zoned(TimeZone::UTC);
    cron.find_next_occurrence(&zoned, false)
        .ok()
        .map(|z| z.timestamp())
}

/// Annotation a Transition (or the CLI) puts on a Checkpoint for a fresh checkpoint (each token
/// once; the policy never copies it, so its own `checkpoint-now` cannot overwrite it).
pub use transition_crds::annotations::CHECKPOINT_FOR;
/// Annotation that asks for a checkpoint now; its value is a token, handled once.
pub use transition_crds::annotations::CHECKPOINT_NOW;

/// The scheduled slot to run now, if any: the latest slot at or before `now` that is after
/// `since` (the last run, or the object's creation). Older missed slots are skipped.
pub fn due(cron: &Cron, since: Timestamp, now: Timestamp) -> Option<Timestamp> {
    let now_z = now.to_zoned(TimeZone::UTC);
    let slot = cron
        .find_previous_occurrence(&now_z, true)
        .ok()?
        .timestamp();
    (slot > since).then_some(slot)
}

/// The manual trigger token to handle now: the annotation's value when it differs from the last
/// handled token (empty values are ignored).
pub fn manual_trigger<'a>(annotation: Option<&'a str>, handled: Option<&str>) -> Option<&'a str> {
    let token = annotation?.trim();
    (!token.is_empty() && Some(token) != handled.map(str::trim)).then_some(token)
}

/// The time between two firings of `cron` after `now` (its period there).
pub fn period(cron: &Cron, now: Timestamp) -> Option<std::time::Duration> {
    let first = next_run(cron, now)?;
    let second = next_run(cron, first)?;
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
    fn each_manual_token_triggers_exactly_once() {
        assert_eq!(manual_trigger(Some("t1"), None), Some("t1"));
        assert_eq!(manual_trigger(Some("t1"), Some("t1")), None);
        assert_eq!(manual_trigger(Some("t2"), Some("t1")), Some("t2"));
        assert_eq!(manual_trigger(Some("  "), None), None);
        assert_eq!(manual_trigger(None, Some("t1")), None);
    }
}
