//! Standard `metav1.Condition` handling shared by every status: a condition's
//! `lastTransitionTime` changes only when its `status` changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

/// The object is doing what its spec asks.
pub const READY: &str = "Ready";
/// The spec passed validation (False = the user must fix the spec).
pub const SPEC_VALID: &str = "SpecValid";
/// Work is under way.
pub const PROGRESSING: &str = "Progressing";
/// Something failed that the operator keeps retrying.
pub const DEGRADED: &str = "Degraded";

/// `status` of a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }
}

impl From<bool> for Status {
    fn from(value: bool) -> Self {
        if value { Status::True } else { Status::False }
    }
}

/// Sets (inserts or updates) the condition `type_` in `conditions`.
///
/// `lastTransitionTime` is `now` for a new condition or a changed status and is otherwise kept,
/// so repeated reconciles do not churn the status. An empty `message` becomes `reason` (an empty
/// string helps no reader, and API server 1.20 as built in the lab rejects `""` as `null`).
pub fn set(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: Status,
    reason: &str,
    message: impl Into<String>,
    observed_generation: Option<i64>,
    now: Timestamp,
) {
    let mut message = message.into();
    if message.is_empty() {
        message = reason.to_owned();
    }
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(existing) => {
            if existing.status != status.as_str() {
                existing.last_transition_time = Time(now);
            }
            existing.status = status.as_str().to_owned();
            existing.reason = reason.to_owned();
            existing.message = message;
            existing.observed_generation = observed_generation;
        }
        None => conditions.push(Condition {
            type_: type_.to_owned(),
            status: status.as_str().to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation,
            last_transition_time: Time(now),
        }),
    }
}

/// The condition `type_`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition `type_` is present with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == Status::True.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn setting_the_same_status_again_keeps_the_last_transition_time() {
        let mut conds = Vec::new();
        set(
            &mut conds,
            READY,
            Status::True,
            "Reconciled",
            "ok",
            Some(1),
            at(100),
        );
        set(
            &mut conds,
            READY,
            Status::True,
            "Reconciled",
            "still ok",
            Some(2),
            at(200),
        );
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].last_transition_time, Time(at(100)));
        assert_eq!(conds[0].message, "still ok");
        assert_eq!(conds[0].observed_generation, Some(2));
    }

    #[test]
    fn changing_the_status_moves_the_last_transition_time() {
        let mut conds = Vec::new();
        set(
            &mut conds,
            READY,
            Status::True,
            "Reconciled",
            "ok",
            None,
            at(100),
        );
        set(
            &mut conds,
            READY,
            Status::False,
            "Broken",
            "bad",
            None,
            at(300),
        );
        assert_eq!(conds[0].last_transition_time, Time(at(300)));
        assert!(!is_true(&conds, READY));
    }

    #[test]
    fn an_empty_message_is_replaced_by_the_reason() {
        let mut conds = Vec::new();
        set(
            &mut conds,
            SPEC_VALID,
            Status::True,
            "Valid",
            "",
            None,
            at(1),
        );
        assert_eq!(conds[0].message, "Valid");
    }

    #[test]
    fn different_types_are_kept_side_by_side() {
        let mut conds = Vec::new();
        set(&mut conds, READY, Status::True, "A", "", None, at(1));
        set(&mut conds, SPEC_VALID, Status::False, "B", "", None, at(1));
        assert_eq!(conds.len(), 2);
        assert!(is_true(&conds, READY));
        assert_eq!(
            find(&conds, SPEC_VALID).map(|c| c.reason.as_str()),
            Some("B")
        );
    }
}
