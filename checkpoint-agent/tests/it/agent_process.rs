//! The `checkpoint-agent` BINARY against a REAL s3s-fs with REAL CRIU-made archives: killed
//! mid-upload it resumes to exactly one complete object; heartbeats carry the bearer token; a dead
//! operator does not stall uploads; SIGTERM aborts an in-flight multipart upload cleanly.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use transition_crds::heartbeat::Heartbeat;
use transition_crds::storage::{DIGEST_SUFFIX, DigestRecord};
use transition_testlab::S3Server;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Agent {
    child: Child,
    metrics_port: u16,
}

impl Agent {
    fn start(s3: &S3Server, dir: &Path, state: &Path, extra: &[&str]) -> Agent {
        let metrics_port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_checkpoint-agent"))
            .args([
                "--node-name",
                "worker-1",
                "--cluster-name",
                "cluster1-azure",
                "--no-kube",
            ])
            .args([
                "--s3-endpoint",
                &s3.endpoint(),
                "--s3-access-key",
                &s3.access_key,
            ])
            .env("MINIO_SECRET_KEY", &s3.secret_key)
            .arg("--checkpoint-dir")
            .arg(dir)
            .arg("--state-dir")
            .arg(state)
            .args([
                "--settle-ms",
                "200",
                "--part-size-mib",
                "5",
                "--parallelism",
                "1",
            ])
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Agent {
            child,
            metrics_port,
        }
    }

    async fn metric(&self, name: &str) -> u64 {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        let Ok(resp) = reqwest::get(&url).await else {
            return 0;
        };
        let text = resp.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum()
    }

    fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

fn upload_records(state: &Path) -> usize {
    std::fs::read_dir(state)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("upload-"))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_upload_the_agent_resumes_to_exactly_one_complete_object() {
    let s3 = S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("ckpt");
    let state = dir.path().join("state");
    std::fs::create_dir(&watched).unwrap();
    let path = archive_in(&watched, LARGE, "killed");
    let key = "checkpoints/v1/cluster1-azure/worker-1/checkpoint-killed_default-counter-2026-11-21T10:00:00Z.tar";

    let mut first = Agent::start(&s3, &watched, &state, &[]);
    eventually(30, "the multipart upload to start", || {
        upload_records(&state) == 1
    })
    .await;
    let mut sent = 0;
    for _ in 0..100 {
        sent = first.metric("checkpoint_agent_uploaded_bytes_total").await;
        if sent >= 10 << 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        sent >= 10 << 20,
        "some parts were sent before the kill ({sent} bytes)"
    );
    first.kill_hard();
    let s3_store = store(&s3, &s3.secret_key);
    assert!(
        s3_store.head(key).await.unwrap().is_none(),
        "no partial object is visible after the kill"
    );
    assert!(!s3.object_path(key).exists());

    let second = Agent::start(&s3, &watched, &state, &[]);
    eventually(60, "the completed object with its sha256", || {
        s3.object_path(key).exists()
    })
    .await;
    let local = sha256_file(&path);
    let record_file = s3.object_path(&format!("{key}{DIGEST_SUFFIX}"));
    eventually(10, "the digest record of the resumed upload", || {
        record_file.exists()
    })
    .await;
    let record = DigestRecord::parse("record", &std::fs::read(&record_file).unwrap()).unwrap();
    assert_eq!(record.sha256, local);
    let head = s3_store.head(key).await.unwrap().unwrap();
    assert_eq!(head.size, record.size);
    assert_eq!(
        sha256_file(&s3.object_path(key)),
        local,
        "the object is the whole archive"
    );
    assert_eq!(
        s3_store.list("checkpoints/").await.unwrap(),
        vec![key.to_owned(), format!("{key}{DIGEST_SUFFIX}")],
        "exactly one archive object, with its digest record"
    );
    let resumed = second.metric("checkpoint_agent_resumed_parts_total").await;
    assert!(
        resumed >= 1,
        "parts sent before the kill were reused, not re-sent ({resumed})"
    );
    assert_eq!(upload_records(&state), 0, "the progress record is cleared");
}

/// A heartbeat receiver standing in for the operator: records the Authorization header and body.
async fn operator_stub() -> (String, Arc<Mutex<Vec<(Option<String>, Heartbeat)>>>) {
    use axum::extract::State;
    use axum::http::HeaderMap;
    type Seen = Arc<Mutex<Vec<(Option<String>, Heartbeat)>>>;
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route(
            "/heartbeat",
            axum::routing::post(
                |State(seen): State<Seen>, headers: HeaderMap, body: axum::body::Bytes| async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let hb = Heartbeat::from_json(&body).unwrap();
                    seen.lock().unwrap().push((auth, hb));
                    "ok"
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/heartbeat", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_carry_the_bearer_token_from_its_file() {
    let s3 = S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cr3t-token\n").unwrap();
    let (url, seen) = operator_stub().await;
    let _agent = Agent::start(
        &s3,
        dir.path(),
        &dir.path().join("state"),
        &[
            "--controller-url",
            &url,
            "--heartbeat-interval-ms",
            "100",
            "--heartbeat-token-file",
            token_file.to_str().unwrap(),
        ],
    );
    eventually(15, "three heartbeats", || seen.lock().unwrap().len() >= 3).await;
    let got = seen.lock().unwrap().clone();
    for (auth, hb) in &got {
        assert_eq!(auth.as_deref(), Some("Bearer s3cr3t-token"));
        assert_eq!(hb.node, "worker-1");
        assert_eq!(hb.cluster_name, "cluster1-azure");
        assert!(hb.agent_version.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_operator_does_not_stall_uploads() {
    let s3 = S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("ckpt");
    std::fs::create_dir(&watched).unwrap();
    let path = archive_in(&watched, SMALL, "busy");
    // An "operator" that accepts connections and never answers.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/heartbeat", blackhole.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let h = held.clone();
    std::thread::spawn(move || {
        for conn in blackhole.incoming().flatten() {
            h.lock().unwrap().push(conn);
        }
    });
    let agent = Agent::start(
        &s3,
        &watched,
        &dir.path().join("state"),
        &["--controller-url", &url, "--heartbeat-interval-ms", "100"],
    );
    let key = "checkpoints/v1/cluster1-azure/worker-1/checkpoint-busy_default-counter-2026-11-21T10:00:00Z.tar";
    eventually(10, "the upload despite a hung operator", || {
        s3.object_path(key).exists()
    })
    .await;
    assert_eq!(sha256_file(&s3.object_path(key)), sha256_file(&path));
    eventually(10, "heartbeats to reach the hung operator", || {
        !held.lock().unwrap().is_empty()
    })
    .await;
    let mut failed = 0;
    for _ in 0..50 {
        failed = agent
            .metric("checkpoint_agent_heartbeats_total{label=\"failed\"}")
            .await;
        if failed >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(failed >= 1, "heartbeats time out and are counted as failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_after_the_grace_period_aborts_the_multipart_upload_cleanly() {
    let s3 = S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let watched = dir.path().join("ckpt");
    let state = dir.path().join("state");
    std::fs::create_dir(&watched).unwrap();
    archive_in(&watched, LARGE, "term");
    let mut agent = Agent::start(&s3, &watched, &state, &["--shutdown-grace-seconds", "0"]);
    eventually(30, "the multipart upload to start", || {
        upload_records(&state) == 1
    })
    .await;
    let status = agent.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    assert_eq!(
        upload_records(&state),
        0,
        "the aborted upload leaves no progress record"
    );
    let key = "checkpoints/v1/cluster1-azure/worker-1/checkpoint-term_default-counter-2026-11-21T10:00:00Z.tar";
    assert!(
        store(&s3, &s3.secret_key)
            .head(key)
            .await
            .unwrap()
            .is_none(),
        "no partial object"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_say_what_the_node_can_restore_read_from_the_runtime_config_and_real_tools() {
    // The lab's REAL CRIU 4.1.1 and runc report their versions; the containerd config file is
    // the one a containerd 2.2 node would have (restore not opted in).
    let lab = transition_testlab::Lab::get().unwrap();
    let (criu, runc) = (lab.tool("criu").unwrap(), lab.tool("runc").unwrap());
    let s3 = S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "# containerd 2.2\nversion = 3\n[plugins.\"io.containerd.cri.v1.runtime\"]\n  enable_experimental_restore_via_create = false\n",
    )
    .unwrap();
    let (url, seen) = operator_stub().await;
    let _agent = Agent::start(
        &s3,
        dir.path(),
        &dir.path().join("state"),
        &[
            "--controller-url",
            &url,
            "--heartbeat-interval-ms",
            "100",
            "--runtime",
            "containerd",
            "--runtime-config",
            config.to_str().unwrap(),
            "--criu-bin",
            criu.to_str().unwrap(),
            "--runc-bin",
            runc.to_str().unwrap(),
        ],
    );
    eventually(15, "a heartbeat", || !seen.lock().unwrap().is_empty()).await;
    let (_, hb) = seen.lock().unwrap()[0].clone();
    let r = hb.restore.expect("the restore capability is reported");
    assert_eq!(r.runtime, "containerd");
    assert_eq!(r.restore_enabled, Some(false));
    assert!(
        r.restore_source
            .contains("enable_experimental_restore_via_create = false"),
        "{}",
        r.restore_source
    );
    assert_eq!(r.criu_version, "4.1.1", "from the real criu --version");
    assert!(
        r.runc_version.split('.').count() >= 2,
        "from the real runc --version: {:?}",
        r.runc_version
    );
    assert!(!r.kernel.is_empty(), "the kernel release is read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn as_a_vantage_point_the_agent_reports_which_api_servers_answer() {
    // The lab's REAL source kube-apiserver answers; nothing listens on port 1.
    let lab = transition_testlab::Lab::get().unwrap();
    let api = lab.cluster("cluster1-azure").unwrap().url;
    let s3 = S3Server::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (url, seen) = operator_stub().await;
    let watch = format!("cluster1-azure={api},gone=https://127.0.0.1:1");
    let _agent = Agent::start(
        &s3,
        dir.path(),
        &dir.path().join("state"),
        &[
            "--controller-url",
            &url,
            "--heartbeat-interval-ms",
            "100",
            "--watch-api",
            &watch,
            "--watch-every-ms",
            "200",
        ],
    );
    eventually(20, "a heartbeat with both checks", || {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(_, hb)| hb.reach.len() == 2)
    })
    .await;
    let got = seen.lock().unwrap().clone();
    let (_, hb) = got
        .iter()
        .rev()
        .find(|(_, hb)| hb.reach.len() == 2)
        .unwrap();
    let of = |c: &str| hb.reach.iter().find(|r| r.cluster == c).unwrap().clone();
    assert!(of("cluster1-azure").reachable, "{:?}", hb.reach);
    let gone = of("gone");
    assert!(
        !gone.reachable && gone.error == "connection failed",
        "{gone:?}"
    );
    assert!(of("cluster1-azure").age_ms < 10_000);
}

/// Without a cluster name the agent used to upload under `default/`, a prefix the operator never
/// reads: now it refuses to start and says why (real binary, no S3 needed to get there).
#[test]
fn without_a_cluster_name_the_agent_refuses_to_start_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_checkpoint-agent"))
        .args(["--node-name", "worker-9", "--no-kube", "--once"])
        .args([
            "--s3-endpoint",
            "http://127.0.0.1:1",
            "--s3-access-key",
            "a",
        ])
        .env("MINIO_SECRET_KEY", "b")
        .env_remove("CLUSTER_NAME")
        .arg("--checkpoint-dir")
        .arg(dir.path())
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cluster name is unknown") && stderr.contains("worker-9"),
        "{stderr}"
    );
}
