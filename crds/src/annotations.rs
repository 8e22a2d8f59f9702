//! Annotations the operator reads, shared with the tools that set them (the CLI).

/// On a ClusterPolicy or Checkpoint: a person's request for a checkpoint now (each token once;
/// the policy copies it onto its Checkpoints).
pub const CHECKPOINT_NOW: &str = "transition.dcnlab.ssu.ac.kr/checkpoint-now";
/// On a Checkpoint: a Transition's or a tool's request for a fresh checkpoint (each token once,
/// recorded in `status.lastTransitionToken`; the policy never copies or overwrites it).
pub const CHECKPOINT_FOR: &str = "transition.dcnlab.ssu.ac.kr/checkpoint-for";
