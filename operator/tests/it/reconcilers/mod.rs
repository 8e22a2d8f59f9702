//! Reconcilers without the lab: each scenario has its own in-process API server stand-in.

mod checkpoint_run;
mod fake_api;
mod transition_phases;
