//! Heartbeat sender: one POST per interval with its own timeout, on its own task, so a slow or
//! dead operator delays no upload (and uploads delay no heartbeat).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use transition_crds::heartbeat::{Heartbeat, LastUpload, RestoreCapability, Timestamp, WireTime};

use crate::config::{HeartbeatArgs, Secret};
use crate::metrics::{Label, Metrics};
use crate::node::NodeMeta;

/// Why heartbeats could not start or one was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    #[error("failed to read the heartbeat token file {path}: {source}")]
    Token {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("failed to read the controller CA bundle {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error(transparent)]
    Vantage(crate::config::ConfigError),
    #[error(transparent)]
    Reach(#[from] transition_runtime::reach::ReachError),
    #[error("failed to send heartbeat to {url}: {reason}")]
    Send { url: String, reason: String },
    #[error("failed to deliver heartbeat to {url}: the operator answered {status}")]
    Status { url: String, status: u16 },
}

/// Shared view of the most recent upload (written by the watcher).
pub type LastUploadCell = Arc<Mutex<Option<LastUpload>>>;

/// Load figures for the payload.
#[derive(Clone, Copy, Debug, Default)]
pub struct Load {
    pub cpus: i64,
    pub cpu_usage_percent: f64,
    pub mem_total_bytes: u64,
    pub mem_used_bytes: u64,
}

/// The payload (pure): the Go agent's fields plus agent version, last upload and what this node
/// can restore.
pub fn payload(
    node_name: &str,
    meta: &NodeMeta,
    load: Load,
    last: Option<LastUpload>,
    restore: Option<RestoreCapability>,
    now: Timestamp,
) -> Heartbeat {
    Heartbeat {
        node: node_name.to_owned(),
        ip: meta.ip.clone(),
        os: std::env::consts::OS.to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        cpus: load.cpus,
        cpu_usage_percent: load.cpu_usage_percent,
        mem_total_bytes: load.mem_total_bytes,
        mem_used_bytes: load.mem_used_bytes,
        ts: Some(WireTime::Rfc3339(now.to_string())),
        cluster_name: meta.cluster_name.clone(),
        cluster_namespace: meta.cluster_namespace.clone(),
        machine: meta.machine.clone(),
        owner_kind: meta.owner_kind.clone(),
        owner_name: meta.owner_name.clone(),
        provided_node_ip: meta.provided_node_ip.clone(),
        cri_socket: meta.cri_socket.clone(),
        agent_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        last_upload: last,
        restore,
        reach: Vec::new(),
        other: Default::default(),
    }
}

/// The bearer token (trimmed) of the token file, re-read when the file changes: a rotated Secret
/// (the kubelet swaps the mounted file) is used from the next heartbeat, without a restart.
pub struct TokenFile {
    path: Option<std::path::PathBuf>,
    token: Option<Secret>,
    /// Inode, modification time and size of the file read last.
    seen: Option<(u64, std::time::SystemTime, u64)>,
}

impl TokenFile {
    /// Reads the token file, if one is configured; an unreadable file stops the start.
    pub fn open(args: &HeartbeatArgs) -> Result<TokenFile, HeartbeatError> {
        let mut t = TokenFile {
            path: args.token_file.clone(),
            token: None,
            seen: None,
        };
        t.refresh()?;
        Ok(t)
    }

    /// The token to send now.
    pub fn token(&self) -> Option<&Secret> {
        self.token.as_ref()
    }

    /// Re-reads the file when its inode, modification time or size changed; `Ok(true)` when the
    /// token was re-read. On an error the token in use stays.
    pub fn refresh(&mut self) -> Result<bool, HeartbeatError> {
        use std::os::unix::fs::MetadataExt;
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let fail = |source| HeartbeatError::Token {
            path: path.display().to_string(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(fail)?;
        let stamp = (meta.ino(), meta.modified().map_err(fail)?, meta.len());
        if self.seen == Some(stamp) {
            return Ok(false);
        }
        let text = std::fs::read_to_string(path).map_err(fail)?;
        self.token = Some(Secret::new(text.trim()));
        self.seen = Some(stamp);
        Ok(true)
    }
}

/// Sends one heartbeat.
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    token: Option<&Secret>,
    body: &Heartbeat,
) -> Result<(), HeartbeatError> {
    let mut req = client.post(url).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t.expose());
    }
    let resp = req.send().await.map_err(|e| HeartbeatError::Send {
        url: url.to_owned(),
        reason: if e.is_timeout() {
            "timed out".into()
        } else if e.is_connect() {
            // The innermost cause says why: refused, or the certificate not trusted.
            let mut cause: &dyn std::error::Error = &e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            format!("connection failed: {cause}")
        } else {
            e.to_string()
        },
    })?;
    if !resp.status().is_success() {
        return Err(HeartbeatError::Status {
            url: url.to_owned(),
            status: resp.status().as_u16(),
        });
    }
    Ok(())
}

/// The heartbeat client: per-request timeout, and with `--controller-ca-file` only that CA
/// bundle trusted for the operator's certificate.
pub fn client(args: &HeartbeatArgs) -> Result<reqwest::Client, HeartbeatError> {
    let mut builder = reqwest::Client::builder().timeout(Duration::from_millis(args.timeout_ms));
    if let Some(path) = &args.controller_ca_file {
        let fail = |reason: String| HeartbeatError::Ca {
            path: path.display().to_string(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| fail(e.to_string()))?;
        if certs.is_empty() {
            return Err(fail("no PEM certificate in it".into()));
        }
        builder = builder.tls_certs_only(certs);
    }
    builder.build().map_err(HeartbeatError::Client)
}

/// How often the restore capability is probed again.
const CAPABILITY_REFRESH: Duration = Duration::from_secs(300);

/// Sends heartbeats every interval until `stop`. A failed heartbeat is counted and logged (at
/// most once per minute while failures continue) and the next one goes out on time.
pub async fn run(
    args: HeartbeatArgs,
    node_name: String,
    meta: NodeMeta,
    last_upload: LastUploadCell,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) -> Result<(), HeartbeatError> {
    let mut token = TokenFile::open(&args)?;
    let targets = args.vantage.targets().map_err(HeartbeatError::Vantage)?;
    let reach = crate::vantage::spawn(targets, &args.vantage, stop.clone())?;
    let client = client(&args)?;
    // Load figures are best effort: without /proc access they stay zero.
    let mut sys = sysinfo::System::new().ok();
    let mut ticker = tokio::time::interval(Duration::from_millis(args.interval_ms.max(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_warn: Option<Instant> = None;
    let mut restore: Option<(Instant, RestoreCapability)> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return Ok(()),
        }
        let load = sys.as_mut().map_or_else(Load::default, |sys| {
            sys.refresh_cpu_usage();
            sys.refresh_memory();
            Load {
                cpus: i64::try_from(sys.cpus().len()).unwrap_or(0),
                cpu_usage_percent: f64::from(sys.global_cpu_usage()),
                mem_total_bytes: sys.total_memory(),
                mem_used_bytes: sys.used_memory(),
            }
        });
        let last = last_upload.lock().ok().and_then(|g| g.clone());
        // Probed at start and every few minutes (a runtime reconfigured later is seen).
        if restore
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() > CAPABILITY_REFRESH)
        {
            let found = crate::capability::probe(&args.capability, &meta.cri_socket).await;
            debug!(?found, "restore capability probed");
            restore = Some((Instant::now(), found));
        }
        let mut body = payload(
            &node_name,
            &meta,
            load,
            last,
            restore.as_ref().map(|(_, r)| r.clone()),
            Timestamp::now(),
        );
        body.reach = crate::vantage::current(&reach);
        match token.refresh() {
            Ok(true) => debug!("heartbeat token (re)read"),
            Ok(false) => {}
            Err(e) => {
                if last_warn.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    warn!(error = %e, "kept the heartbeat token in use");
                    last_warn = Some(Instant::now());
                }
            }
        }
        let started = Instant::now();
        match send(&client, &args.controller_url, token.token(), &body).await {
            Ok(()) => {
                metrics
                    .heartbeat_seconds
                    .observe(started.elapsed().as_secs_f64());
                metrics
                    .heartbeats
                    .get_or_create(&Label::of("delivered"))
                    .inc();
                debug!("heartbeat delivered");
                last_warn = None;
            }
            Err(e) => {
                metrics.heartbeats.get_or_create(&Label::of("failed")).inc();
                if last_warn.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
                    warn!(error = %e, "heartbeat not delivered");
                    last_warn = Some(Instant::now());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotated_token_file_is_read_again_and_a_vanished_one_keeps_the_token_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first-token\n").unwrap();
        let cfg = <crate::config::Config as clap::Parser>::parse_from([
            "agent",
            "--node-name",
            "n1",
            "--s3-endpoint",
            "127.0.0.1:9000",
            "--heartbeat-token-file",
            path.to_str().unwrap(),
        ]);
        let mut t = TokenFile::open(&cfg.heartbeat).unwrap();
        assert_eq!(t.token().map(Secret::expose), Some("first-token"));
        assert!(!t.refresh().unwrap(), "unchanged file, not read again");
        // The kubelet's atomic update: a new file renamed over the old name.
        let next = dir.path().join("token.new");
        std::fs::write(&next, "second-token").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert!(t.refresh().unwrap());
        assert_eq!(t.token().map(Secret::expose), Some("second-token"));
        std::fs::remove_file(&path).unwrap();
        assert!(t.refresh().is_err());
        assert_eq!(t.token().map(Secret::expose), Some("second-token"));
    }

    #[test]
    fn the_payload_carries_every_go_field_and_our_additions() {
        let meta = NodeMeta {
            cluster_name: "c1".into(),
            machine: "m1".into(),
            ip: "10.0.0.4".into(),
            ..Default::default()
        };
        let last = LastUpload {
            key: "checkpoints/v1/c1/w1/a.tar".into(),
            bytes: 10,
            sha256: "ab".into(),
            at: None,
        };
        let hb = payload(
            "w1",
            &meta,
            Load {
                cpus: 2,
                ..Default::default()
            },
            Some(last),
            Some(RestoreCapability {
                runtime: "containerd".into(),
                restore_enabled: Some(false),
                ..Default::default()
            }),
            Timestamp::UNIX_EPOCH,
        );
        let json = serde_json::to_value(&hb).unwrap();
        for field in [
            "node",
            "ip",
            "os",
            "arch",
            "cpus",
            "cpu_usage_percent",
            "mem_total_bytes",
            "mem_used_bytes",
            "ts",
            "cluster_name",
            "cluster_namespace",
            "machine",
            "owner_kind",
            "owner_name",
            "provided_node_ip",
            "cri_socket",
            "agent_version",
            "last_upload",
            "restore",
        ] {
            assert!(json.get(field).is_some(), "missing {field}");
        }
        let back = Heartbeat::from_json(&serde_json::to_vec(&hb).unwrap()).unwrap();
        assert_eq!(back, hb, "the operator's parser reads what the agent sends");
    }
}
