//! Fault detection against the lab's REAL kube-apiserver + kube-controller-manager (source
//! cluster): two nodes' agents go silent; the node whose kubelet Lease keeps renewing is
//! AgentDown (no failover); the one whose Lease stopped is confirmed failed (one fault event), and
//! node-lifecycle marks it NotReady. Heartbeats travel over real HTTP to our endpoint. The
//! kubelet evidence (docs/detection.md, "Fast confirmation") is checked against kubelet shims
//! (`hack/kubelet-shim.py --node`) behind the same API server's node proxy.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, Patch, PatchParams, PostParams};
use transition_operator::detect::run::{
    Detector, FaultEvent, KubeProbe, NodeHealthWriter, node_health_name,
};
use transition_operator::detect::server::{Tokens, router};
use transition_operator::detect::tracker::{Health, NodeKey, TrackerConfig};
use transition_operator::detect::{beats, phi::PhiConfig};
use transition_operator::k8s::crd_install::install_crds;
use transition_testlab::{Lab, fresh_namespace};

use crate::support::make_node;

const CLUSTER: &str = "cluster1-azure";
const TOKEN: &str = "cluster1-token-0123456789";

async fn renew(leases: &Api<Lease>, name: &str) {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let patch = serde_json::json!({"spec": {"renewTime": now}});
    leases
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

fn ready(node: &Node) -> Option<String> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.clone())
}

/// A probe of the source cluster through `source`, the lab's client of it.
fn source_probe(source: &kube::Client) -> KubeProbe {
    let mut clients = std::collections::HashMap::new();
    clients.insert(CLUSTER.to_owned(), source.clone());
    KubeProbe {
        clients,
        secrets: None,
    }
}

/// The detector of the source cluster (`config`, probing through `source`, NodeHealth written by
/// `writer`) and its heartbeat endpoint on a free port, until the token is cancelled: the faults
/// it reports, the token, the endpoint's URL.
async fn spawn_detector(
    config: TrackerConfig,
    source: &kube::Client,
    writer: Option<NodeHealthWriter>,
) -> (
    tokio::sync::mpsc::Receiver<FaultEvent>,
    tokio_util::sync::CancellationToken,
    String,
) {
    let mut tokens = Tokens::default();
    tokens.insert(CLUSTER, TOKEN);
    let (shared, changes) = beats(tokens, config);
    let (faults_tx, faults) = tokio::sync::mpsc::channel(8);
    let detector = Detector {
        beats: shared.clone(),
        probe: source_probe(source),
        writer,
        faults: faults_tx,
        faults_full: Default::default(),
        changes,
        probe_timeout: Duration::from_secs(3),
        last_seen_every: Duration::from_secs(600),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(detector.run(stop.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/heartbeat", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(shared.clone())).await.unwrap() });
    (faults, stop, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_agent_on_a_live_node_is_agent_down_and_a_dead_node_is_confirmed_and_not_ready() {
    let lab = Lab::get().unwrap();
    assert!(
        lab.var("LAB_CONTROLLERS").unwrap_or("").contains(CLUSTER),
        "the lab must run kube-controller-manager for {CLUSTER}"
    );
    let mgmt = lab.kube_client(&lab.clusters()[0]).await.unwrap();
    install_crds(&mgmt, Duration::from_secs(60)).await.unwrap();
    let ns = fresh_namespace(&mgmt, "detect").await.unwrap();
    let source = lab.kube_client(CLUSTER).await.unwrap();
    let nodes: Api<Node> = Api::all(source.clone());
    let leases: Api<Lease> = Api::namespaced(source.clone(), "kube-node-lease");
    let (alive, dead) = (
        format!("w-alive-{}", std::process::id()),
        format!("w-dead-{}", std::process::id()),
    );
    make_node(&nodes, &leases, &alive).await;
    make_node(&nodes, &leases, &dead).await;

    // The live node's kubelet keeps renewing its Lease; the dead one's never does again.
    let renewer = {
        let (leases, alive) = (leases.clone(), alive.clone());
        tokio::spawn(async move {
            loop {
                renew(&leases, &alive).await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };

    let config = TrackerConfig {
        phi: PhiConfig {
            first_interval_ms: 200.0,
            min_std_dev_ms: 50.0,
            ..PhiConfig::default()
        },
        warmup_ms: 0,
        lease_fresh_ms: 6_000,
        ..TrackerConfig::default()
    };
    let writer = NodeHealthWriter {
        client: mgmt.clone(),
        namespace: ns.clone(),
    };
    let (mut faults, stop, url) = spawn_detector(config, &source, Some(writer)).await;

    // Both agents beat every 200 ms for 3 s, then fall silent.
    let http = reqwest::Client::new();
    let health: Api<transition_crds::NodeHealth> = Api::namespaced(mgmt.clone(), &ns);
    let alive_health = node_health_name(&NodeKey {
        cluster: CLUSTER.into(),
        node: alive.clone(),
    });
    for i in 0..15 {
        if i == 8 {
            // A node's NodeHealth exists from its first heartbeat on (not only after a change).
            let nh = health.get(&alive_health).await.unwrap();
            let ready = nh
                .status
                .unwrap()
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")
                .unwrap();
            assert_eq!(
                (ready.status.as_str(), ready.reason.as_str()),
                ("True", "Healthy")
            );
        }
        for node in [&alive, &dead] {
            let body = serde_json::json!({"node": node, "cluster_name": CLUSTER, "ip": "10.0.0.9"});
            let resp = http
                .post(&url)
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fault = tokio::time::timeout(Duration::from_secs(30), faults.recv())
        .await
        .expect("a fault within 30 s")
        .unwrap();
    assert_eq!(
        fault.node, dead,
        "only the node whose lease stopped fails over"
    );
    assert!(
        fault.reason.contains("Lease") || fault.reason.contains("NotReady"),
        "{}",
        fault.reason
    );

    let key_alive = NodeKey {
        cluster: CLUSTER.into(),
        node: alive.clone(),
    };
    let nh_alive = health.get(&node_health_name(&key_alive)).await.unwrap();
    let ready_alive = nh_alive
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(
        ready_alive.reason,
        format!("{:?}", Health::AgentDown),
        "{}",
        ready_alive.message
    );
    let key_dead = NodeKey {
        cluster: CLUSTER.into(),
        node: dead.clone(),
    };
    let nh_dead = health.get(&node_health_name(&key_dead)).await.unwrap();
    assert_eq!(nh_dead.status.unwrap().ip.as_deref(), Some("10.0.0.9"));

    // node-lifecycle (grace 15 s in the test lab) marks the dead node NotReady; the live one stays Ready.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let d = nodes.get(&dead).await.unwrap();
        if ready(&d).as_deref() != Some("True") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the dead node never turned NotReady"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(
        ready(&nodes.get(&alive).await.unwrap()).as_deref(),
        Some("True"),
        "the live node stays Ready"
    );
    assert!(
        faults.try_recv().is_err(),
        "no second fault (the live node never fails over)"
    );
    stop.cancel();
    renewer.abort();
}

/// The corroborating probe reaches the source cluster with the controllers' credentials — the
/// policy's `<cluster>-kubeconfig` Secret in the REAL management apiserver — not a mounted folder;
/// without a Secret (and no folder) it says so instead of reporting the node's API unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_reads_the_source_cluster_through_the_policys_kubeconfig_secret() {
    use std::sync::Arc;
    use transition_operator::detect::run::{ClusterProbe, SecretClients};
    use transition_operator::detect::tracker::ProbeError;
    let lab = Lab::get().unwrap();
    let mgmt = lab.kube_client(&lab.clusters()[0]).await.unwrap();
    install_crds(&mgmt, Duration::from_secs(60)).await.unwrap();
    let ns = fresh_namespace(&mgmt, "probe").await.unwrap();
    let source = lab.kube_client(CLUSTER).await.unwrap();
    let nodes: Api<Node> = Api::all(source.clone());
    let leases: Api<Lease> = Api::namespaced(source.clone(), "kube-node-lease");
    let node = format!("w-probe-{}", std::process::id());
    make_node(&nodes, &leases, &node).await;

    let cluster = format!("probe-{}", std::process::id());
    let policy: transition_crds::ClusterPolicy = serde_json::from_value(serde_json::json!({
        "apiVersion": "transition.dcnlab.ssu.ac.kr/v1", "kind": "ClusterPolicy",
        "metadata": {"name": "p", "namespace": ns},
        "spec": {"clusterSelector": {"name": cluster, "repo": "http://127.0.0.1:1/x.git", "repoType": "git"},
                 "selectMode": "All", "packageSelectors": [],
                 "targetClusterPolicy": {"preferClusters": [{"name": "cluster2-aws", "repoType": "git", "weight": 1}]}}
    }))
    .unwrap();
    Api::<transition_crds::ClusterPolicy>::namespaced(mgmt.clone(), &ns)
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let probe = KubeProbe {
        clients: Default::default(),
        secrets: Some(SecretClients {
            clusters: Arc::new(transition_operator::k8s::clusters::WorkloadClusters::new(
                mgmt.clone(),
                None,
            )),
            management: mgmt.clone(),
            caches: transition_operator::context::Caches::new().0,
        }),
    };
    let key = NodeKey {
        cluster: cluster.clone(),
        node: node.clone(),
    };
    let err = probe.view(&key, None).await.unwrap_err();
    assert!(
        matches!(err, ProbeError::Cluster(ref m) if m.contains(&format!("{cluster}-kubeconfig"))),
        "names the missing Secret: {err}"
    );

    let kubeconfig = std::fs::read_to_string(lab.cluster(CLUSTER).unwrap().kubeconfig).unwrap();
    let secret: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("{cluster}-kubeconfig")},
        "stringData": {"value": kubeconfig}
    }))
    .unwrap();
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(mgmt.clone(), &ns)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let view = probe.view(&key, None).await.unwrap();
    assert_eq!(
        view.ready,
        Some(true),
        "the Node's Ready condition, read with the Secret"
    );
    assert!(view.lease_renewed_ms.is_some(), "and its Lease");
}

/// A `hack/kubelet-shim.py` in node mode: registers its Node (InternalIP 127.0.0.1, its HTTPS
/// port), renews its Lease every 2 s and serves the kubelet's `/healthz` behind the REAL API
/// server's node proxy. Killed (and its Node deleted by the test) on drop.
struct NodeShim {
    child: std::process::Child,
    name: String,
    _dir: tempfile::TempDir,
}

impl NodeShim {
    async fn start(lab: &Lab, nodes: &Api<Node>, name: &str) -> NodeShim {
        let dir = tempfile::tempdir().unwrap();
        let child = std::process::Command::new("python3")
            .arg(transition_testlab::repo_root().join("hack/kubelet-shim.py"))
            .args(["--node", name, "--lease-interval", "2", "--kubeconfig"])
            .arg(lab.cluster(CLUSTER).unwrap().kubeconfig)
            .arg("--kubectl")
            .arg(lab.var("LAB_KUBECTL").unwrap())
            .arg("--state-dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let shim = NodeShim {
            child,
            name: name.to_owned(),
            _dir: dir,
        };
        // Registered: the Node carries its kubelet port.
        for _ in 0..200 {
            let port = nodes
                .get_opt(name)
                .await
                .unwrap()
                .and_then(|n| Some(n.status?.daemon_endpoints?.kubelet_endpoint?.port));
            let leases: Api<Lease> =
                Api::namespaced(nodes.clone().into_client(), "kube-node-lease");
            if port.is_some_and(|p| p > 0) && leases.get_opt(name).await.unwrap().is_some() {
                return shim;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("kubelet-shim never registered Node {name}");
    }

    fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }
}

/// The lab's client of the source cluster and two nodes of it run by kubelet shims, named
/// `<a>-<pid>` and `<b>-<pid>`.
async fn two_shims(lab: &Lab, a: &str, b: &str) -> (kube::Client, NodeShim, NodeShim) {
    let source = lab.kube_client(CLUSTER).await.unwrap();
    let nodes: Api<Node> = Api::all(source.clone());
    let (name, peer_name) = (
        format!("{a}-{}", std::process::id()),
        format!("{b}-{}", std::process::id()),
    );
    let (shim, peer) = tokio::join!(
        NodeShim::start(lab, &nodes, &name),
        NodeShim::start(lab, &nodes, &peer_name)
    );
    (source, shim, peer)
}

impl Drop for NodeShim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::process::Command::new(
            transition_testlab::Lab::get()
                .ok()
                .and_then(|l| l.var("LAB_KUBECTL").ok().map(str::to_owned))
                .unwrap_or_else(|| "kubectl".into()),
        )
        .args(["--kubeconfig"])
        .arg(
            transition_testlab::Lab::get()
                .ok()
                .and_then(|l| l.cluster(CLUSTER).ok())
                .map(|c| c.kubeconfig)
                .unwrap_or_default(),
        )
        .args(["delete", "node", &self.name, "--wait=false"])
        .output();
    }
}

/// The real probe asks the kubelet through the REAL kube-apiserver's node proxy: a live shim
/// answers (reachable); killed, the API server's own dial error comes back at once (unreachable,
/// classified from its v1.20 wording) while the Node and Lease GETs of the same probe still
/// answer and a peer's kubelet still does; frozen (SIGSTOP: the kernel accepts the connection,
/// nobody answers TLS), our deadline ends the wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_sees_a_kubelet_through_the_node_proxy_and_a_dead_one_as_unreachable_at_once() {
    use transition_operator::detect::kubelet_reach::{KubeletCheck, KubeletReach};
    use transition_operator::detect::run::ClusterProbe;
    let lab = Lab::get().unwrap();
    let (source, shim, peer) = two_shims(&lab, "k-probe", "k-peer").await;
    let (name, peer_name) = (shim.name.clone(), peer.name.clone());
    let probe = source_probe(&source);
    let key = |n: &str| NodeKey {
        cluster: CLUSTER.into(),
        node: n.into(),
    };
    let check = KubeletCheck {
        timeout_ms: 500,
        peer: Some(peer_name.clone()),
    };

    let live = probe.view(&key(&name), Some(&check)).await.unwrap();
    assert_eq!(live.kubelet, KubeletReach::Reachable, "{live:?}");
    assert_eq!(
        live.peer, None,
        "a peer is asked only for an unreachable kubelet"
    );
    assert!(live.lease_renewed_ms.is_some());

    shim.signal("-KILL");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let dead = probe.view(&key(&name), Some(&check)).await.unwrap();
    let took = started.elapsed();
    assert!(
        matches!(&dead.kubelet, KubeletReach::Unreachable(m) if m.contains("connection refused") && m.contains("error trying to reach service")),
        "{dead:?}"
    );
    assert!(
        took < Duration::from_millis(400),
        "the API server's own answer, not our deadline: {took:?}"
    );
    assert!(dead.kubelet_down(), "a peer's kubelet answers: {dead:?}");
    assert_eq!(dead.ready, Some(true), "the Node still reads as it was");
    let renewed = dead.lease_renewed_ms.unwrap();
    let age = transition_operator::detect::server::now_ms().saturating_sub(renewed);
    assert!(
        age < 15_000,
        "the Lease is fresh: only the kubelet evidence can confirm this early ({age} ms)"
    );

    // A frozen node: connected at the TCP level, no answer; our 500 ms deadline says unreachable.
    peer.signal("-STOP");
    let started = std::time::Instant::now();
    let frozen = probe
        .view(
            &key(&peer_name),
            Some(&KubeletCheck {
                timeout_ms: 500,
                peer: None,
            }),
        )
        .await
        .unwrap();
    let took = started.elapsed();
    peer.signal("-CONT");
    assert!(
        matches!(&frozen.kubelet, KubeletReach::Unreachable(m) if m.contains("within 500 ms")),
        "{frozen:?}"
    );
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    assert!(
        !frozen.kubelet_down(),
        "no peer asked: not evidence on its own"
    );

    // Not asked: the probe is the Lease rule's alone.
    let off = probe.view(&key(&name), None).await.unwrap();
    assert_eq!(off.kubelet, KubeletReach::NotAsked);
}

/// End to end with the default thresholds: heartbeats over real HTTP every second from two
/// nodes run by kubelet shims; one node dies (its shim is killed, its agent falls silent). The
/// detector, probing through the REAL API server, confirms it from the kubelet evidence within
/// 3 s of the last heartbeat — while its Lease is still fresh — and never touches the live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_confirmed_within_three_seconds_of_its_last_heartbeat_through_the_kubelet() {
    let lab = Lab::get().unwrap();
    let (source, shim, peer) = two_shims(&lab, "k-dies", "k-lives").await;
    let (name, peer_name) = (shim.name.clone(), peer.name.clone());
    let config = TrackerConfig {
        warmup_ms: 0,
        ..TrackerConfig::default()
    };
    let (mut faults, stop, url) = spawn_detector(config, &source, None).await;

    let http = reqwest::Client::new();
    let beat = move |node: String| {
        let (http, url) = (http.clone(), url.clone());
        async move {
            let body = serde_json::json!({"node": node, "cluster_name": CLUSTER});
            let resp = http
                .post(&url)
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
        }
    };
    // The live node's agent beats every second throughout.
    let peer_beats = tokio::spawn({
        let beat = beat.clone();
        let peer_name = peer_name.clone();
        async move {
            loop {
                beat(peer_name.clone()).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    });
    for _ in 0..8 {
        beat(name.clone()).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The last heartbeat of the node that dies, then its kubelet dies with it.
    beat(name.clone()).await;
    let last_beat = tokio::time::Instant::now();
    shim.signal("-KILL");
    let fault = tokio::time::timeout(Duration::from_secs(20), faults.recv())
        .await
        .expect("a fault within 20 s")
        .unwrap();
    let after = last_beat.elapsed();
    eprintln!(
        "confirmed {after:?} after the last heartbeat: {}",
        fault.reason
    );
    assert_eq!(fault.node, name, "only the dead node fails over");
    assert!(
        fault
            .reason
            .contains("kubelet has been unreachable through the API server"),
        "{}",
        fault.reason
    );
    assert!(
        after <= Duration::from_secs(3),
        "confirmed {after:?} after the last heartbeat"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(faults.try_recv().is_err(), "the live node never fails over");
    peer_beats.abort();
    stop.cancel();
}
