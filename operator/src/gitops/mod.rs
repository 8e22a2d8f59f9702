//! GitOps writer: a failover as a reviewable, revertable Git change.

pub mod edit;
pub mod repo;
pub mod writer;
