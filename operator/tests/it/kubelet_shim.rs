//! The kubelet checkpoint call through a REAL kube-apiserver's node proxy to `hack/kubelet-shim.py`
//! — the stand-in for a kubelet, serving HTTPS on the Node's address and answering with a REAL
//! CRIU checkpoint (runc + CRIU 4.1.1, leave-running) of a real running container.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use transition_crds::storage::ArchiveName;
use transition_operator::image::archive::{Limits, validate};
use transition_operator::kubelet::{Kubelet, KubeletError};
use transition_testlab::{Lab, repo_root};

struct Shim {
    child: Child,
    pod_dir: std::path::PathBuf,
}

impl Drop for Shim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("bash")
            .arg(repo_root().join("hack/runc-pod.sh"))
            .arg("stop")
            .arg(&self.pod_dir)
            .output();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_through_the_node_proxy_returns_a_real_criu_archive_each_time() {
    let lab = Lab::get().unwrap();
    let client = lab.kube_client("cluster1-azure").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (pods, out) = (dir.path().join("pods"), dir.path().join("checkpoints"));
    let pod = format!("counter-{}", std::process::id());
    let pod_dir = pods.join(format!("default_{pod}_counter"));
    let started = Command::new("bash")
        .arg(repo_root().join("hack/runc-pod.sh"))
        .args(["start"])
        .arg(&pod_dir)
        .args([
            "--pod",
            &pod,
            "--namespace",
            "default",
            "--container",
            "counter",
        ])
        .output()
        .unwrap();
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    let (cert, key) = (dir.path().join("shim.crt"), dir.path().join("shim.key"));
    let keygen = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=kubelet-shim",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(keygen.status.success());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .arg(repo_root().join("hack/kubelet-shim.py"))
        .args(["--port", &port.to_string()])
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key)
        .arg("--pods")
        .arg(&pods)
        .arg("--checkpoint-dir")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _shim = Shim { child, pod_dir };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    // The Node as the kubelet registers it: its address and kubelet port.
    let nodes: Api<Node> = Api::all(client.clone());
    let node = format!("shim-node-{}", std::process::id());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": node}})).unwrap(),
        )
        .await
        .unwrap();
    let status = serde_json::json!({"status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}});
    nodes
        .patch_status(&node, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();

    let kubelet = Kubelet { client };
    let first = kubelet
        .checkpoint(&node, "default", &pod, "counter", Duration::from_secs(60))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = kubelet
        .checkpoint(&node, "default", &pod, "counter", Duration::from_secs(60))
        .await
        .unwrap();
    assert_ne!(first, second, "a new archive per request");
    for path in first.iter().chain(&second) {
        let name = std::path::Path::new(path)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        let parsed = ArchiveName::parse(name).unwrap();
        assert!(
            parsed.is_for("default", &pod, "counter"),
            "{name} follows the kubelet's naming"
        );
        let info = validate(std::fs::File::open(path).unwrap(), Limits::default()).unwrap();
        assert_eq!(
            info.container_name.as_deref(),
            Some("counter"),
            "a complete, valid CRIU archive"
        );
    }

    let err = kubelet
        .checkpoint(
            &node,
            "default",
            "no-such-pod",
            "counter",
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, KubeletError::NotFound { .. }) && err.to_string().contains("no-such-pod"),
        "{err}"
    );
    assert!(
        err.to_string().contains("404") || err.to_string().contains("not running"),
        "{err}"
    );
    let err = kubelet
        .checkpoint(&node, "default", "../etc", "c", Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(
        matches!(err, KubeletError::BadName { field: "pod", .. }),
        "{err}"
    );
}

/// The stand-in's own unit tests (the Python package `hack/kubelet_shim/`), so CI runs them too.
#[test]
fn the_kubelet_shims_own_unit_tests_pass() {
    let out = Command::new("bash")
        .arg(repo_root().join("hack/test-shim.sh"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
