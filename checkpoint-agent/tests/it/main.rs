//! The agent's integration tests, linked into ONE test binary, against the lab's real servers
//! (s3s-fs, kube-apiserver) and real CRIU archives.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

mod agent_process;
mod common;
mod node_meta;
mod upload_s3;
mod upload_sealed;
mod watch_dir;
