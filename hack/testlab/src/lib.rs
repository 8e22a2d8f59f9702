//! Test support: reaches the lab of real servers that `hack/lab.sh` starts on 127.0.0.1 (etcd +
//! kube-apiserver per simulated cluster, s3s-fs, docker-registry, git http-backend, CRIU + runc),
//! starting it when it is not up.
//!
//! The lab writes its endpoints and credentials to `$TRANSITION_LAB_DIR/env` (default
//! `/tmp/transition-lab/env`) as `export KEY='value'` lines; [`Lab::get`] reads that file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

/// Why the lab could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("failed to start the lab with {script}: {reason}")]
    Start { script: String, reason: String },
    #[error("failed to read the lab environment {path}: {source}")]
    ReadEnv {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to find {0} in the lab environment (is the lab up? `hack/lab.sh up`)")]
    Missing(String),
    #[error("failed to build a Kubernetes client for lab cluster {cluster}: {reason}")]
    Kube { cluster: String, reason: String },
    /// The first start in this process failed; later callers get that error.
    #[error("failed to start the lab (first attempt in this test process): {0}")]
    Earlier(#[source] Arc<LabError>),
}

/// The running lab.
#[derive(Clone, Debug)]
pub struct Lab {
    pub dir: PathBuf,
    vars: BTreeMap<String, String>,
}

/// An S3 endpoint with credentials.
#[derive(Clone, Debug)]
pub struct S3Endpoint {
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
    /// Folder where s3s-fs keeps objects as plain files (`<root>/<bucket>/<key>`).
    pub root: PathBuf,
}

/// A Git smart-HTTP server with basic auth.
#[derive(Clone, Debug)]
pub struct GitEndpoint {
    /// Base URL; repositories are `<base>/<name>.git`.
    pub base_url: String,
    pub user: String,
    pub password: String,
    /// Folder of the bare repositories (for creating new ones).
    pub root: PathBuf,
}

/// An OCI registry.
#[derive(Clone, Debug)]
pub struct RegistryEndpoint {
    /// `127.0.0.1:PORT` (plain HTTP).
    pub host: String,
    pub user: String,
    pub password: String,
}

/// One simulated cluster's API server.
#[derive(Clone, Debug)]
pub struct ClusterEndpoint {
    pub name: String,
    pub url: String,
    pub token: String,
    pub kubeconfig: PathBuf,
}

/// The checkout the tests run from: `$TRANSITION_REPO_ROOT`, else the nearest ancestor of the
/// working directory holding `hack/lab.sh`. Found at run time on purpose: a compile-time path
/// would point into whichever clone first built this crate in a shared target folder.
pub fn repo_root() -> PathBuf {
    if let Some(root) = std::env::var_os("TRANSITION_REPO_ROOT") {
        return PathBuf::from(root);
    }
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    cwd.ancestors()
        .find(|d| d.join("hack/lab.sh").is_file())
        .map_or(cwd.clone(), Path::to_path_buf)
}

/// `mgmt` → `MGMT`, `cluster-2` → `CLUSTER_2`.
pub fn env_name(cluster: &str) -> String {
    cluster.to_ascii_uppercase().replace('-', "_")
}

/// Parses `export KEY='value'` lines (values may not contain `'`).
fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim().strip_prefix("export ")?;
            let (k, v) = line.split_once('=')?;
            let v = v
                .strip_prefix('\'')
                .and_then(|v| v.strip_suffix('\''))
                .unwrap_or(v);
            Some((k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// Runs `bash <script> args…` with extra `envs`; a failure to start or a non-zero exit becomes
/// [`LabError::Start`] carrying the last 20 lines of its stderr, in order.
fn run_hack<I, A>(
    script: &Path,
    args: I,
    envs: &[(&str, String)],
) -> Result<std::process::Output, LabError>
where
    I: IntoIterator<Item = A>,
    A: AsRef<std::ffi::OsStr>,
{
    let fail = |reason: String| LabError::Start {
        script: script.display().to_string(),
        reason,
    };
    let mut cmd = Command::new("bash");
    cmd.arg(script).args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        return Err(fail(lines[lines.len().saturating_sub(20)..].join("\n")));
    }
    Ok(out)
}

static LAB: OnceLock<Result<Lab, Arc<LabError>>> = OnceLock::new();

impl Lab {
    /// The lab, started with `hack/lab.sh up` unless it is already up (`up` is idempotent and
    /// serialised with a lock, so parallel test processes share one lab).
    pub fn get() -> Result<Lab, LabError> {
        LAB.get_or_init(|| Lab::start().map_err(Arc::new))
            .clone()
            .map_err(LabError::Earlier)
    }

    fn start() -> Result<Lab, LabError> {
        let script = repo_root().join("hack/lab.sh");
        // The source cluster runs kube-controller-manager (node lifecycle) with a short grace, as
        // hack/test.sh asks, so tests also work when run with plain `cargo nextest run`.
        let controllers =
            std::env::var("LAB_CONTROLLERS").unwrap_or_else(|_| "cluster1-azure".into());
        let grace = std::env::var("LAB_NODE_MONITOR_GRACE").unwrap_or_else(|_| "15s".into());
        run_hack(
            &script,
            ["up"],
            &[
                ("LAB_CONTROLLERS", controllers),
                ("LAB_NODE_MONITOR_GRACE", grace),
            ],
        )?;
        Lab::from_env_file(&Lab::env_file())
    }

    /// Where the lab writes its environment.
    pub fn env_file() -> PathBuf {
        let dir = std::env::var_os("TRANSITION_LAB_DIR")
            .map_or_else(|| PathBuf::from("/tmp/transition-lab"), PathBuf::from);
        dir.join("env")
    }

    /// Reads a lab environment file.
    pub fn from_env_file(path: &Path) -> Result<Lab, LabError> {
        let text = std::fs::read_to_string(path).map_err(|source| LabError::ReadEnv {
            path: path.display().to_string(),
            source,
        })?;
        let vars = parse_env(&text);
        let dir = vars.get("TRANSITION_LAB_DIR").map_or_else(
            || path.parent().unwrap_or(path).to_path_buf(),
            PathBuf::from,
        );
        Ok(Lab { dir, vars })
    }

    /// A variable of the lab environment.
    pub fn var(&self, name: &str) -> Result<&str, LabError> {
        self.vars
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| LabError::Missing(name.to_owned()))
    }

    /// Names of the simulated clusters (the first is the management cluster).
    pub fn clusters(&self) -> Vec<String> {
        self.var("LAB_CLUSTERS")
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// One cluster's API server.
    pub fn cluster(&self, name: &str) -> Result<ClusterEndpoint, LabError> {
        let e = env_name(name);
        Ok(ClusterEndpoint {
            name: name.to_owned(),
            url: self.var(&format!("LAB_{e}_URL"))?.to_owned(),
            token: self.var(&format!("LAB_{e}_TOKEN"))?.to_owned(),
            kubeconfig: PathBuf::from(self.var(&format!("LAB_{e}_KUBECONFIG"))?),
        })
    }

    /// A Kubernetes client for cluster `name` (admin token, verified TLS to the lab CA).
    pub async fn kube_client(&self, name: &str) -> Result<kube::Client, LabError> {
        let cluster = self.cluster(name)?;
        let fail = |reason: String| LabError::Kube {
            cluster: name.to_owned(),
            reason,
        };
        let kubeconfig = kube::config::Kubeconfig::read_from(&cluster.kubeconfig)
            .map_err(|e| fail(e.to_string()))?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .map_err(|e| fail(e.to_string()))?;
        kube::Client::try_from(config).map_err(|e| fail(e.to_string()))
    }

    pub fn s3(&self) -> Result<S3Endpoint, LabError> {
        Ok(S3Endpoint {
            endpoint: self.var("LAB_S3_ENDPOINT")?.to_owned(),
            region: self.var("LAB_S3_REGION")?.to_owned(),
            access_key: self.var("LAB_S3_ACCESS_KEY")?.to_owned(),
            secret_key: self.var("LAB_S3_SECRET_KEY")?.to_owned(),
            bucket: self.var("LAB_S3_BUCKET")?.to_owned(),
            root: PathBuf::from(self.var("LAB_S3_ROOT")?),
        })
    }

    pub fn git(&self) -> Result<GitEndpoint, LabError> {
        Ok(GitEndpoint {
            base_url: self.var("LAB_GIT_URL")?.to_owned(),
            user: self.var("LAB_GIT_USER")?.to_owned(),
            password: self.var("LAB_GIT_PASSWORD")?.to_owned(),
            root: PathBuf::from(self.var("LAB_GIT_ROOT")?),
        })
    }

    pub fn registry(&self) -> Result<RegistryEndpoint, LabError> {
        Ok(RegistryEndpoint {
            host: self.var("LAB_REGISTRY")?.to_owned(),
            user: self.var("LAB_REGISTRY_USER")?.to_owned(),
            password: self.var("LAB_REGISTRY_PASSWORD")?.to_owned(),
        })
    }

    /// Path of a lab tool (`criu`, `runc`, `kubectl`).
    pub fn tool(&self, name: &str) -> Result<PathBuf, LabError> {
        self.var(&format!("LAB_{}", env_name(name)))
            .map(PathBuf::from)
    }
}

/// Creates a namespace with a unique name (`<prefix>-<pid>-<n>`) so tests can run in parallel.
pub async fn fresh_namespace(client: &kube::Client, prefix: &str) -> Result<String, kube::Error> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst),
        nanos % 10_000
    );
    let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
    let ns = k8s_openapi::api::core::v1::Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&kube::api::PostParams::default(), &ns).await?;
    Ok(name)
}

/// A private s3s-fs server (a real S3 with SigV4 and multipart) on a free loopback port, for tests
/// that stop, restart or misconfigure S3 without disturbing the shared lab.
pub struct S3Server {
    pub port: u16,
    pub root: PathBuf,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
    child: Option<std::process::Child>,
}

fn cache_dir() -> PathBuf {
    std::env::var_os("TRANSITION_CACHE").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/transition"),
        PathBuf::from,
    )
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl S3Server {
    /// Starts s3s-fs with fresh credentials and an empty `checkpoints` bucket.
    pub fn start() -> Result<S3Server, LabError> {
        let fail = |reason: String| LabError::Start {
            script: "s3s-fs".into(),
            reason,
        };
        let port = free_port().map_err(|e| fail(e.to_string()))?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let root = std::env::temp_dir().join(format!("s3s-{}-{nanos}", std::process::id()));
        let bucket = "checkpoints".to_owned();
        std::fs::create_dir_all(root.join(&bucket)).map_err(|e| fail(e.to_string()))?;
        let mut server = S3Server {
            port,
            root,
            access_key: format!("test{}", nanos % 1_000_000),
            secret_key: format!("secret{nanos}"),
            bucket,
            child: None,
        };
        server.restart()?;
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the server (data stays on disk).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts (again) on the same port and folder; waits until it accepts connections.
    pub fn restart(&mut self) -> Result<(), LabError> {
        self.stop();
        let bin = cache_dir().join("bin/s3s-fs");
        let child = Command::new(&bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--access-key",
                &self.access_key,
                "--secret-key",
                &self.secret_key,
            ])
            .arg(&self.root)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| LabError::Start {
                script: bin.display().to_string(),
                reason: e.to_string(),
            })?;
        self.child = Some(child);
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        Err(LabError::Start {
            script: bin.display().to_string(),
            reason: "not accepting connections after 5 s".into(),
        })
    }

    /// Path of an object's bytes on disk (s3s-fs keeps objects as plain files).
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.root.join(&self.bucket).join(key)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A real kubelet-format checkpoint archive made by `hack/make-checkpoint.sh` (runc + CRIU),
/// generated once per lab and cached under `$TRANSITION_LAB_DIR/fixtures/<name>.tar`.
/// `state_mib` > 0 makes the container hold that much state (a large archive).
pub fn checkpoint_fixture(name: &str, state_mib: u32) -> Result<PathBuf, LabError> {
    let dir = Lab::env_file()
        .parent()
        .map_or_else(|| PathBuf::from("/tmp"), Path::to_path_buf)
        .join("fixtures");
    let path = dir.join(format!("{name}.tar"));
    if path.exists() {
        return Ok(path);
    }
    // One generator at a time across test processes; the others wait and reuse its archive.
    let lock_err = |e: std::io::Error| LabError::ReadEnv {
        path: dir.display().to_string(),
        source: e,
    };
    std::fs::create_dir_all(&dir).map_err(lock_err)?;
    let lock = std::fs::File::create(dir.join(format!(".{name}.lock"))).map_err(lock_err)?;
    lock.lock().map_err(lock_err)?;
    if path.exists() {
        return Ok(path);
    }
    let script = repo_root().join("hack/make-checkpoint.sh");
    let tmp_dir = dir.join(format!(".gen-{}-{name}", std::process::id()));
    let tar_name = format!("{name}.tar");
    let state = state_mib.to_string();
    let args: [&std::ffi::OsStr; 5] = [
        tmp_dir.as_os_str(),
        "--state-mib".as_ref(),
        state.as_ref(),
        "--name".as_ref(),
        tar_name.as_ref(),
    ];
    run_hack(&script, args, &[])?;
    std::fs::rename(tmp_dir.join(format!("{name}.tar")), &path).map_err(|e| LabError::ReadEnv {
        path: path.display().to_string(),
        source: e,
    })?;
    let _ = std::fs::remove_dir_all(&tmp_dir);
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_lines_are_parsed_with_quotes_removed_and_other_lines_ignored() {
        let vars = parse_env("# comment\nexport A='x y'\nexport B=plain\nnot an export\n");
        assert_eq!(vars.get("A").map(String::as_str), Some("x y"));
        assert_eq!(vars.get("B").map(String::as_str), Some("plain"));
        assert_eq!(vars.len(), 2);
    }

    #[test]
    fn cluster_names_map_to_upper_snake_case_variable_names() {
        assert_eq!(env_name("cluster-2"), "CLUSTER_2");
    }
}
