//! The agent's one configuration struct.

use std::path::PathBuf;

use clap::Parser;

/// checkpoint-agent: ships kubelet checkpoint archives to S3 and heartbeats to the operator.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
pub struct Config {
    /// This node's name.
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    /// Cluster name (CAPI cluster); read from Node annotations when reachable in later versions.
    #[arg(long, env = "CLUSTER_NAME", default_value = "")]
    pub cluster_name: String,
    /// Operator heartbeat endpoint, e.g. http://operator:8090/heartbeat (Go agent: CONTROLLER_URL).
    #[arg(long, env = "CONTROLLER_URL")]
    pub controller_url: String,
    /// File holding the bearer token sent with each heartbeat (never logged).
    #[arg(long, env = "HEARTBEAT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Milliseconds between heartbeats.
    #[arg(long, env = "HEARTBEAT_INTERVAL_MS", default_value_t = 1000)]
    pub interval_ms: u64,
    /// Per-request timeout in milliseconds.
    #[arg(long, env = "HEARTBEAT_TIMEOUT_MS", default_value_t = 800)]
    pub timeout_ms: u64,
    /// Stop after this many heartbeats (0 = run until stopped; used by tests).
    #[arg(long, env = "HEARTBEAT_COUNT", default_value_t = 0)]
    pub count: u64,
}
