//! Heartbeats and fault detection: a phi-accrual detector per node ([`phi`]), per-node health with
//! corroboration by the workload cluster's API ([`tracker`]).

pub mod phi;
pub mod tracker;
