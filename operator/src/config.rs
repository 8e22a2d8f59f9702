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
    /// PEM certificate (chain) the heartbeat endpoint serves HTTPS with (`tls.crt` of a mounted
    /// `kubernetes.io/tls` Secret); with `--heartbeat-tls-key-file`. Re-read when it changes.
    /// Without both the endpoint speaks plain HTTP (in-cluster agents only).
    #[arg(
        long,
        env = "HEARTBEAT_TLS_CERT_FILE",
        requires = "heartbeat_tls_key_file"
    )]
    pub heartbeat_tls_cert_file: Option<PathBuf>,
    /// PEM private key of `--heartbeat-tls-cert-file` (`tls.key`).
    #[arg(
        long,
        env = "HEARTBEAT_TLS_KEY_FILE",
        requires = "heartbeat_tls_cert_file"
    )]
    pub heartbeat_tls_key_file: Option<PathBuf>,
    /// File of `cluster=token` lines (a mounted Secret), re-read every 30 s. Without it the
    /// heartbeat endpoint is off.
    #[arg(long, env = "HEARTBEAT_TOKENS_FILE")]
    pub heartbeat_tokens_file: Option<PathBuf>,
    /// Folder of `<cluster>.kubeconfig` files for the workload clusters (mounted Secrets), used to
    /// corroborate a suspected node failure with the Node's Ready condition and kubelet Lease.
    #[arg(long, env = "WORKLOAD_KUBECONFIG_DIR")]
    pub workload_kubeconfig_dir: Option<PathBuf>,
    /// Namespace of the operator's own objects (NodeHealth).
    #[arg(long, env = "POD_NAMESPACE", default_value = "transition-system")]
    pub operator_namespace: String,
    /// Registry for checkpoint images (`http://host:port` for a plain-HTTP registry).
    #[arg(long, env = "REGISTRY_URL", default_value = "")]
    pub registry_url: String,
    /// Repository prefix inside the registry.
    #[arg(long, env = "REGISTRY_REPOSITORY", default_value = "checkpoints")]
    pub registry_repository: String,
    /// Secret (in the policy's namespace) with the registry credentials (`username`/`password`,
    /// or a dockerconfigjson).
    #[arg(long, env = "REGISTRY_SECRET")]
    pub registry_secret: Option<String>,
    /// S3 endpoint of the checkpoint bucket the agents upload to.
    #[arg(long = "s3-endpoint", env = "MINIO_ENDPOINT", default_value = "")]
    pub s3_endpoint: String,
    /// S3 region (SigV4 signing; MinIO and s3s accept any).
    #[arg(long = "s3-region", env = "AWS_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// Bucket of the checkpoint archives (keys `<cluster>/<node>/<archive>`).
    #[arg(
        long = "s3-bucket",
        env = "MINIO_BUCKET",
        default_value = "checkpoints"
    )]
    pub s3_bucket: String,
    /// File holding the S3 access key (a mounted Secret).
    #[arg(long = "s3-access-key-file", env = "MINIO_ACCESS_KEY_FILE")]
    pub s3_access_key_file: Option<PathBuf>,
    /// File holding the S3 secret key (a mounted Secret).
    #[arg(long = "s3-secret-key-file", env = "MINIO_SECRET_KEY_FILE")]
    pub s3_secret_key_file: Option<PathBuf>,
    /// File of age identities (`AGE-SECRET-KEY-1…` lines, `#` comments allowed; a mounted
    /// Secret) that open the archives the agents encrypted (`encryption: age` in the object's
    /// metadata). Several identities are a rotation: an archive opens with the one it was
    /// encrypted to. Read at every build, so a rotated Secret needs no restart. Without it an
    /// encrypted archive fails to build, naming the object; plaintext archives need none.
    #[arg(long, env = "ARCHIVE_IDENTITY_FILE")]
    pub archive_identity_file: Option<PathBuf>,
    /// Folder of `<cluster>.pem` files (one Secret per target cluster, mounted together as a
    /// projected volume), each holding one or more PEM RSA PUBLIC keys (2048–8192 bits) of that
    /// cluster's nodes. When set, checkpoint layers are pushed encrypted (ocicrypt:
    /// `…tar+encrypted`, JWE-wrapped key) for every key of the clusters the checkpoint may be
    /// restored on — its ClusterPolicy's preferred targets and its source cluster, except the
    /// cluster it was taken on; every key of the folder when that set is empty. A cluster
    /// without its file, or no usable key, fails the build: nothing is pushed in plaintext.
    /// Read at every build.
    #[arg(long, env = "IMAGE_ENCRYPTION_KEYS_DIR")]
    pub image_encryption_keys_dir: Option<PathBuf>,
    /// ASCII-armored OpenPGP secret key without passphrase (`gpg --armor --export-secret-keys`;
    /// a mounted Secret) that signs every checkpoint image pushed: containers/image simple
    /// signatures of the index and platform manifest digests, kept in S3 and served at
    /// `GET /sigstore/…` on the heartbeat endpoint (a node's `registries.d` lookaside). Read at
    /// every signing, so a rotated Secret needs no restart. A key that cannot sign fails the run
    /// (no unsigned image is recorded). Without it images are not signed.
    #[arg(long, env = "IMAGE_SIGNING_KEY_FILE")]
    pub image_signing_key_file: Option<PathBuf>,
    /// Checkpoints kept per container; older archives and images are pruned.
    #[arg(long, env = "CHECKPOINT_RETENTION", default_value_t = 3)]
    pub checkpoint_retention: usize,
    /// How long to wait for the agent's upload of a fresh archive, in seconds.
    #[arg(long, env = "ARCHIVE_WAIT_SECONDS", default_value_t = 300)]
    pub archive_wait_seconds: u64,
    /// Timeout of the kubelet checkpoint call, in seconds.
    #[arg(long, env = "KUBELET_TIMEOUT_SECONDS", default_value_t = 60)]
    pub kubelet_timeout_seconds: u64,
    /// Folder of cached Git clones.
    #[arg(long, env = "GIT_CACHE_DIR", default_value = "/tmp/transition-git")]
    pub git_cache_dir: PathBuf,
    /// The branch the GitOps agents deploy from (commits are pushed there).
    #[arg(long, env = "GIT_BRANCH", default_value = "main")]
    pub git_branch: String,
    /// Folder of the per-cluster kustomizations in the repository (`<dir>/<cluster>/`), relative
    /// to the repository root.
    #[arg(long, env = "GIT_CLUSTERS_DIR", default_value = "clusters")]
    pub git_clusters_dir: PathBuf,
    /// Each package has its own kustomization folder inside each cluster's folder
    /// (`<clusters-dir>/<cluster>/<package>/`), e.g. for Argo CD app-of-apps with one
    /// Application per package and cluster; off: one kustomization per cluster lists its packages.
    #[arg(long, env = "GIT_FOLDER_PER_PACKAGE", default_value_t = false)]
    pub git_folder_per_package: bool,
    /// Secret (in the policy's namespace) with the Git credentials (`username` + `password`/`token`).
    #[arg(long, env = "GIT_SECRET")]
    pub git_secret: Option<String>,
    /// How long the Verifying phase waits for the target workload to be Ready, in seconds.
    #[arg(long, env = "VERIFY_TIMEOUT_SECONDS", default_value_t = 600)]
    pub verify_timeout_seconds: u64,
    /// Where the Argo CD Applications that deploy the cluster folders live: `management` (an
    /// Argo CD hub in the operator's cluster, as the shipped example), `target` (Argo CD in each
    /// target cluster), a cluster name (its `<name>-kubeconfig` Secret), or `off`. The Syncing
    /// phase sets `operation.sync` on the Application.
    #[arg(long, env = "ARGOCD_CLUSTER", default_value = "management")]
    pub argocd_cluster: String,
    /// Namespace of the Argo CD Applications.
    #[arg(long, env = "ARGOCD_NAMESPACE", default_value = "argocd")]
    pub argocd_namespace: String,
    /// Name of the Application serving a target cluster's folder; `{cluster}` is the target
    /// cluster and `{package}` the package (app-of-apps with one Application per package:
    /// `{package}-{cluster}`).
    #[arg(long, env = "ARGOCD_APPLICATION", default_value = "{cluster}")]
    pub argocd_application: String,
    /// Where the Flux Kustomizations that deploy the cluster folders live: `target` (Flux in each
    /// cluster), `management`, a cluster name, or `off`. The Syncing phase sets
    /// `reconcile.fluxcd.io/requestedAt` on the Kustomization and on its source.
    #[arg(long, env = "FLUX_CLUSTER", default_value = "off")]
    pub flux_cluster: String,
    /// Namespace of the Flux Kustomizations.
    #[arg(long, env = "FLUX_NAMESPACE", default_value = "flux-system")]
    pub flux_namespace: String,
    /// Name of the Flux Kustomization serving a target cluster's folder (`{cluster}`,
    /// `{package}` as for `--argocd-application`).
    #[arg(long, env = "FLUX_KUSTOMIZATION", default_value = "{cluster}")]
    pub flux_kustomization: String,
    /// Leader election through a Lease in the operator namespace (off for single-replica tests).
    #[arg(long, env = "LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,
    /// This operator's Pod (in the operator namespace): the leader labels it
    /// `transition.dcnlab.ssu.ac.kr/leader=true` so the heartbeat Service routes agents to the
    /// leader alone. Unset outside a Pod (no label).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,
    /// Test and demo aid: pause this many milliseconds after persisting each transition phase.
    #[arg(long, env = "PHASE_PAUSE_MS", default_value_t = 0, hide = true)]
    pub phase_pause_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_flag_reference_matches_the_code() {
        use clap::CommandFactory;
        let path = transition_runtime::flagdoc::repo_file(
            env!("CARGO_MANIFEST_DIR"),
            "docs/reference/transition-operator.md",
        );
        if let Err(e) = transition_runtime::flagdoc::check_reference(
            "transition-operator",
            Config::command(),
            &path,
        ) {
            panic!("{e}");
        }
    }
}
