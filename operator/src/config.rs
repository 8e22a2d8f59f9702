//! The operator's one configuration struct: flags and environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Log output format.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// transition-operator: protects stateful packages across clusters with CRIU checkpoints and GitOps.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
pub struct Config {
    /// Kubeconfig of the management cluster (default: $KUBECONFIG, then in-cluster).
    #[arg(long, env = "TRANSITION_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Install or update the CRDs at start-up (server-side apply).
    #[arg(long, env = "INSTALL_CRDS", default_value_t = false)]
    pub install_crds: bool,
    /// Address of the /healthz, /readyz and /metrics server.
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:8080")]
    pub metrics_addr: SocketAddr,
    /// Re-check every policy at least this often, in seconds.
    #[arg(long, env = "RESYNC_SECONDS", default_value_t = 300)]
    pub resync_seconds: u64,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Address of the heartbeat endpoint (`POST /heartbeat`, `GET /nodes`; the Go original used :8090).
    #[arg(long, env = "HEARTBEAT_ADDR", default_value = "0.0.0.0:8090")]
    pub heartbeat_addr: SocketAddr,
    /// File of `cluster=token` lines (a mounted Secret). Without it the heartbeat endpoint is off.
    #[arg(long, env = "HEARTBEAT_TOKENS_FILE")]
    pub heartbeat_tokens_file: Option<PathBuf>,
    /// Folder of `<cluster>.kubeconfig` files for the workload clusters (mounted Secrets), used to
    /// corroborate a suspected node failure with the Node's Ready condition and kubelet Lease.
    #[arg(long, env = "WORKLOAD_KUBECONFIG_DIR")]
    pub workload_kubeconfig_dir: Option<PathBuf>,
    /// Namespace of the operator's own objects (NodeHealth).
    #[arg(long, env = "POD_NAMESPACE", default_value = "transition-system")]
    pub operator_namespace: String,
}
