//! The agent's one configuration struct: flags and environment variables. Environment names
//! follow the Go agent's where it had one (`CHECKPOINT_DIR`, `MINIO_*`, `CONTROLLER_URL`), so its
//! DaemonSet manifests keep working. Secrets come from files or the environment and are never
//! printed (see [`Secret`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser};

/// A credential: `Debug`/`Display` print `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }
    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// checkpoint-agent: ships kubelet checkpoint archives to S3 and heartbeats to the operator.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
pub struct Config {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub s3: S3Args,
    #[command(flatten)]
    pub upload: UploadArgs,
    #[command(flatten)]
    pub heartbeat: HeartbeatArgs,
    /// Address of /healthz and /metrics.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,
    /// Upload every complete archive present now, then exit (no watching, no heartbeats).
    #[arg(long, env = "AGENT_ONCE", default_value_t = false)]
    pub once: bool,
    /// Seconds to let an in-flight upload finish on SIGTERM before aborting it.
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u64,
}

/// Who this agent is.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// This node's name (Downward API `spec.nodeName`).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    /// Cluster name as the ClusterPolicy names it; the Node's `cluster.x-k8s.io/cluster-name`
    /// annotation wins when readable. Required: without either the agent refuses to start.
    #[arg(long, env = "CLUSTER_NAME", default_value = "")]
    pub cluster_name: String,
    /// This node's IP; the Node's InternalIP wins when readable.
    #[arg(long, env = "NODE_IP", default_value = "")]
    pub node_ip: String,
    /// Kubeconfig for reading the Node object (default: in-cluster / $KUBECONFIG).
    #[arg(long, env = "AGENT_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Do not read the Node object; use the flags only.
    #[arg(long, env = "NO_KUBE", default_value_t = false)]
    pub no_kube: bool,
}

/// Object store.
#[derive(Args, Debug, Clone)]
pub struct S3Args {
    /// S3 endpoint, `http(s)://host:port` or the Go agent's bare `host:port` (then http).
    #[arg(long = "s3-endpoint", env = "MINIO_ENDPOINT")]
    pub endpoint: String,
    /// S3 region (SigV4 signing; MinIO and s3s accept any).
    #[arg(long = "s3-region", env = "AWS_REGION", default_value = "us-east-1")]
    pub region: String,
    /// Bucket of the checkpoint archives (keys `<cluster>/<node>/<archive>`).
    #[arg(
        long = "s3-bucket",
        env = "MINIO_BUCKET",
        default_value = "checkpoints"
    )]
    pub bucket: String,
    /// Access key (or `--s3-access-key-file`).
    #[arg(
        long = "s3-access-key",
        env = "MINIO_ACCESS_KEY",
        hide_env_values = true
    )]
    pub access_key: Option<Secret>,
    /// File holding the access key (a mounted Secret; wins over `--s3-access-key`).
    #[arg(long = "s3-access-key-file", env = "MINIO_ACCESS_KEY_FILE")]
    pub access_key_file: Option<PathBuf>,
    /// Secret key (or `--s3-secret-key-file`).
    #[arg(
        long = "s3-secret-key",
        env = "MINIO_SECRET_KEY",
        hide_env_values = true
    )]
    pub secret_key: Option<Secret>,
    /// File holding the secret key (a mounted Secret; wins over `--s3-secret-key`).
    #[arg(long = "s3-secret-key-file", env = "MINIO_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    /// Timeout of one S3 request attempt, in seconds.
    #[arg(
        long = "s3-timeout-seconds",
        env = "S3_TIMEOUT_SECONDS",
        default_value_t = 120
    )]
    pub timeout_seconds: u64,
}

/// Archive watching and upload.
#[derive(Args, Debug, Clone)]
pub struct UploadArgs {
    /// Folder the kubelet writes archives to.
    #[arg(
        long,
        env = "CHECKPOINT_DIR",
        default_value = "/var/lib/kubelet/checkpoints"
    )]
    pub checkpoint_dir: PathBuf,
    /// Folder for in-progress upload records (resume after a restart).
    #[arg(
        long,
        env = "AGENT_STATE_DIR",
        default_value = "/var/lib/checkpoint-agent"
    )]
    pub state_dir: PathBuf,
    /// Multipart part size in MiB (archives up to this size go in one PUT).
    #[arg(long, env = "PART_SIZE_MIB", default_value_t = 16)]
    pub part_size_mib: u64,
    /// Parts uploaded at once.
    #[arg(long, env = "UPLOAD_PARALLELISM", default_value_t = 4)]
    pub parallelism: usize,
    /// An archive must keep size and mtime this long (ms) before it counts as complete.
    #[arg(long, env = "SETTLE_MS", default_value_t = 2000)]
    pub settle_ms: u64,
    /// Full rescan of the folder every this many seconds (inotify events can be missed).
    #[arg(long, env = "RESCAN_SECONDS", default_value_t = 30)]
    pub rescan_seconds: u64,
    /// Tries per S3 request before an archive is put back for a later round.
    #[arg(long, env = "UPLOAD_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: u32,
    /// Delete the local archive once the upload is verified (the kubelet never removes them).
    #[arg(long, env = "DELETE_AFTER_UPLOAD", default_value_t = false)]
    pub delete_after_upload: bool,
    /// File of age X25519 recipients (`age1…`, one per line, `#` comments; a mounted Secret):
    /// every archive is encrypted on the node to all of them before it leaves (any one identity
    /// decrypts). Re-read for every archive, so rotation needs no restart; a line that does not
    /// parse, a secret key or no recipient at all stops uploads. Unset: archives go up
    /// unencrypted.
    #[arg(long, env = "ENCRYPTION_RECIPIENTS_FILE")]
    pub encryption_recipients_file: Option<PathBuf>,
    /// Skip the /proc scan for processes still writing an archive.
    #[arg(long, env = "NO_WRITER_CHECK", default_value_t = false)]
    pub no_writer_check: bool,
}

/// Heartbeats to the operator.
#[derive(Args, Debug, Clone)]
pub struct HeartbeatArgs {
    /// Operator heartbeat endpoint, e.g. http://operator:8090/heartbeat (empty: no heartbeats).
    #[arg(long, env = "CONTROLLER_URL", default_value = "")]
    pub controller_url: String,
    /// File holding the bearer token sent with each heartbeat; re-read when it changes.
    #[arg(long = "heartbeat-token-file", env = "HEARTBEAT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM CA bundle an `https://` controller URL is verified with, in place of the system's
    /// roots (the CA of the operator's heartbeat certificate; see docs/install.md).
    #[arg(long = "controller-ca-file", env = "CONTROLLER_CA_FILE")]
    pub controller_ca_file: Option<PathBuf>,
    /// Milliseconds between heartbeats.
    #[arg(
        long = "heartbeat-interval-ms",
        env = "HEARTBEAT_INTERVAL_MS",
        default_value_t = 1000
    )]
    pub interval_ms: u64,
    /// Per-request timeout in milliseconds.
    #[arg(
        long = "heartbeat-timeout-ms",
        env = "HEARTBEAT_TIMEOUT_MS",
        default_value_t = 800
    )]
    pub timeout_ms: u64,
    #[command(flatten)]
    pub capability: CapabilityArgs,
    #[command(flatten)]
    pub vantage: VantageArgs,
}

/// Other clusters' API servers this node checks (it is then a vantage point: the operator tells
/// a management↔source partition from a whole-source outage by what vantage points see).
#[derive(Args, Debug, Clone, Default)]
pub struct VantageArgs {
    /// `cluster=https://api:6443`, repeatable or comma-separated: the API servers to check.
    #[arg(long = "watch-api", env = "WATCH_APIS", value_delimiter = ',')]
    pub watch_api: Vec<String>,
    /// Milliseconds between two checks of each API server.
    #[arg(
        long = "watch-every-ms",
        env = "WATCH_EVERY_MS",
        default_value_t = 2000
    )]
    pub watch_every_ms: u64,
    /// Deadline of one check in milliseconds.
    #[arg(
        long = "watch-timeout-ms",
        env = "WATCH_TIMEOUT_MS",
        default_value_t = 2000
    )]
    pub watch_timeout_ms: u64,
}

/// What the agent reports about restoring checkpoints on this node (sent with the heartbeats;
/// agents on target clusters' workers report it too).
#[derive(Args, Debug, Clone, Default)]
pub struct CapabilityArgs {
    /// Runtime name when the Node's CRI socket does not tell (`containerd`, `cri-o`, `runc`).
    #[arg(long = "runtime", env = "RUNTIME_NAME")]
    pub runtime: Option<String>,
    /// The runtime's configuration file (default `/etc/containerd/config.toml` or
    /// `/etc/crio/crio.conf` + `crio.conf.d/`), read to tell whether restore is turned on.
    #[arg(long = "runtime-config", env = "RUNTIME_CONFIG")]
    pub runtime_config: Option<PathBuf>,
    /// Says whether this node restores from checkpoint images, instead of reading the runtime's
    /// configuration (for runtimes the agent cannot read).
    #[arg(long = "restore-enabled", env = "RESTORE_ENABLED")]
    pub restore_enabled: Option<bool>,
    /// CRIU binary whose `--version` is reported.
    #[arg(long = "criu-bin", env = "CRIU_BIN", default_value = "criu")]
    pub criu_bin: String,
    /// runc binary whose `--version` is reported.
    #[arg(long = "runc-bin", env = "RUNC_BIN", default_value = "runc")]
    pub runc_bin: String,
}

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read {what} from {path}: {source}")]
    ReadFile {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("failed to configure S3: {0} is not set (flag, env or *_FILE)")]
    Missing(&'static str),
    #[error("failed to read --watch-api {value:?}: {reason}")]
    WatchApi { value: String, reason: &'static str },
}

impl VantageArgs {
    /// The `(cluster, url)` pairs to check.
    pub fn targets(&self) -> Result<Vec<(String, String)>, ConfigError> {
        self.watch_api
            .iter()
            .filter(|v| !v.trim().is_empty())
            .map(|v| {
                let bad = |reason| ConfigError::WatchApi {
                    value: v.clone(),
                    reason,
                };
                let (cluster, url) = v
                    .split_once('=')
                    .ok_or_else(|| bad("expected cluster=url"))?;
                let (cluster, url) = (cluster.trim(), url.trim());
                if cluster.is_empty() {
                    return Err(bad("the cluster name is empty"));
                }
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(bad("the URL must start with https:// or http://"));
                }
                Ok((cluster.to_owned(), url.to_owned()))
            })
            .collect()
    }
}

/// Reads a secret from its flag/env value or its file (file wins; trailing newline trimmed).
pub fn resolve_secret(
    what: &'static str,
    value: Option<&Secret>,
    file: Option<&PathBuf>,
) -> Result<Secret, ConfigError> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
            what,
            path: path.display().to_string(),
            source,
        })?;
        return Ok(Secret::new(text.trim_end_matches(['\n', '\r'])));
    }
    value
        .filter(|v| !v.is_empty())
        .cloned()
        .ok_or(ConfigError::Missing(what))
}

impl S3Args {
    /// The endpoint with a scheme (the Go agent's `host:port` means http).
    pub fn endpoint_url(&self) -> String {
        if self.endpoint.contains("://") {
            self.endpoint.clone()
        } else {
            format!("http://{}", self.endpoint)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_flag_reference_matches_the_code() {
        use clap::CommandFactory;
        let path = transition_runtime::flagdoc::repo_file(
            env!("CARGO_MANIFEST_DIR"),
            "docs/reference/checkpoint-agent.md",
        );
        if let Err(e) = transition_runtime::flagdoc::check_reference(
            "checkpoint-agent",
            Config::command(),
            &path,
        ) {
            panic!("{e}");
        }
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let cfg = Config::parse_from([
            "agent",
            "--node-name",
            "n1",
            "--s3-endpoint",
            "127.0.0.1:9000",
            "--s3-secret-key",
            "hunter2",
            "--s3-access-key",
            "AKIA",
        ]);
        let text = format!("{cfg:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("AKIA"),
            "{text}"
        );
    }

    #[test]
    fn a_bare_go_style_endpoint_gets_http() {
        let cfg = Config::parse_from([
            "agent",
            "--node-name",
            "n",
            "--s3-endpoint",
            "10.0.0.1:31092",
        ]);
        assert_eq!(cfg.s3.endpoint_url(), "http://10.0.0.1:31092");
    }

    #[test]
    fn a_secret_file_wins_over_the_value_and_loses_its_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sk");
        std::fs::write(&path, "from-file\n").unwrap();
        let s = resolve_secret("secret key", Some(&Secret::new("from-env")), Some(&path)).unwrap();
        assert_eq!(s.expose(), "from-file");
        assert!(matches!(
            resolve_secret("secret key", None, None),
            Err(ConfigError::Missing("secret key"))
        ));
    }
}
