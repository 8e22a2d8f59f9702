//! Partition vs whole-source outage, against the lab's REAL source kube-apiserver: the operator
//! reaches it through one TCP proxy, a vantage point on cluster2-aws through another. Cutting the
//! operator's proxy (a management↔source partition) holds the silent node in `SourceUnreachable`
//! with no fault, however long; cutting the vantage point's proxy too (the source gone from
//! everywhere) fails over after the grace. Heartbeats travel over real HTTP to our endpoint; the
//! vantage point's heartbeat loop is a stand-in for the checkpoint-agent's, but its API check is
//! the agent's own (`transition_runtime::reach::Reacher`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::api::Api;
use tokio::net::{TcpListener, TcpStream};
use transition_operator::detect::run::{Detector, KubeProbe, NodeHealthWriter, node_health_name};
use transition_operator::detect::server::{Tokens, router};
use transition_operator::detect::tracker::{Health, NodeKey, TrackerConfig};
use transition_operator::detect::{beats, phi::PhiConfig};
use transition_operator::k8s::crd_install::install_crds;
use transition_runtime::reach::Reacher;
use transition_testlab::{Lab, fresh_namespace};

use crate::support::make_node;

const SOURCE: &str = "cluster1-azure";
const VANTAGE: &str = "cluster2-aws";
const SOURCE_TOKEN: &str = "source-token-0123456789";
const VANTAGE_TOKEN: &str = "vantage-token-0123456789";

/// A TCP proxy to `upstream` that can be cut: open connections are dropped and new ones are
/// accepted but never answered (a black hole, as a broken network path looks).
struct Proxy {
    addr: SocketAddr,
    cut: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                if *watch.borrow() {
                    held.push(inbound);
                    continue;
                }
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = watch.wait_for(|cut| *cut) => {}
                    }
                });
            }
        });
        Proxy { addr, cut }
    }

    fn cut(&self) {
        self.cut.send_replace(true);
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

/// A client for the lab's source cluster whose connections go through `proxy`.
async fn client_through(lab: &Lab, proxy: &Proxy) -> kube::Client {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(&lab.cluster(SOURCE).unwrap().kubeconfig).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    config.cluster_url = proxy.url().parse().unwrap();
    config.read_timeout = Some(Duration::from_secs(2));
    kube::Client::try_from(config).unwrap()
}

async fn wait_health(
    beats: &transition_operator::detect::server::Beats,
    key: &NodeKey,
    want: Health,
    secs: u64,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let now = beats.tracker.lock().unwrap().health(key);
        if now == Some(want) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{key} is {now:?}, not {want:?}, after {secs} s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_holds_and_an_outage_seen_from_every_vantage_point_fails_over() {
    let lab = Lab::get().unwrap();
    let mgmt = lab.kube_client(&lab.clusters()[0]).await.unwrap();
    install_crds(&mgmt, Duration::from_secs(60)).await.unwrap();
    let ns = fresh_namespace(&mgmt, "partition").await.unwrap();
    let source = lab.kube_client(SOURCE).await.unwrap();
    let node = format!("w-part-{}", std::process::id());
    make_node(
        &Api::all(source.clone()),
        &Api::namespaced(source.clone(), "kube-node-lease"),
        &node,
    )
    .await;
    let upstream: SocketAddr = lab
        .cluster(SOURCE)
        .unwrap()
        .url
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let (operator_path, vantage_path) =
        (Proxy::start(upstream).await, Proxy::start(upstream).await);

    let mut tokens = Tokens::default();
    tokens.insert(SOURCE, SOURCE_TOKEN);
    tokens.insert(VANTAGE, VANTAGE_TOKEN);
    let grace_ms = 3_000;
    let config = TrackerConfig {
        phi: PhiConfig {
            first_interval_ms: 200.0,
            min_std_dev_ms: 50.0,
            ..PhiConfig::default()
        },
        warmup_ms: 0,
        unreachable_grace_ms: grace_ms,
        vantage_fresh_ms: 3_000,
        ..TrackerConfig::default()
    };
    let (shared, changes) = beats(tokens, config);
    let (faults_tx, mut faults) = tokio::sync::mpsc::channel(8);
    let mut clients = std::collections::HashMap::new();
    clients.insert(
        SOURCE.to_owned(),
        client_through(&lab, &operator_path).await,
    );
    let detector = Detector {
        beats: shared.clone(),
        probe: KubeProbe {
            clients,
            secrets: None,
        },
        writer: Some(NodeHealthWriter {
            client: mgmt.clone(),
            namespace: ns.clone(),
        }),
        faults: faults_tx,
        faults_full: Default::default(),
        changes,
        probe_timeout: Duration::from_secs(2),
        last_seen_every: Duration::from_secs(600),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(detector.run(stop.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/heartbeat", listener.local_addr().unwrap());
    let app = router(shared.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    // The source node's agent beats until the node "dies"; the vantage point beats throughout,
    // reporting what its own check of the source API through its path found.
    let source_alive = Arc::new(AtomicBool::new(true));
    let http = reqwest::Client::new();
    {
        let (http, url, node, alive) = (
            http.clone(),
            url.clone(),
            node.clone(),
            source_alive.clone(),
        );
        tokio::spawn(async move {
            while alive.load(Ordering::SeqCst) {
                let body = serde_json::json!({"node": node, "cluster_name": SOURCE});
                let _ = http
                    .post(&url)
                    .bearer_auth(SOURCE_TOKEN)
                    .json(&body)
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    {
        let (http, url, api) = (http.clone(), url.clone(), vantage_path.url());
        let reacher = Reacher::new(Duration::from_secs(1)).unwrap();
        tokio::spawn(async move {
            loop {
                let check = reacher.check(&api).await;
                let body = serde_json::json!({"node": "vantage-1", "cluster_name": VANTAGE,
                    "reach": [{"cluster": SOURCE, "reachable": check.is_ok(),
                               "error": check.err().map(|e| e.to_string()).unwrap_or_default(), "age_ms": 0}]});
                let _ = http
                    .post(&url)
                    .bearer_auth(VANTAGE_TOKEN)
                    .json(&body)
                    .send()
                    .await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
    let key = NodeKey {
        cluster: SOURCE.into(),
        node: node.clone(),
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        shared.tracker.lock().unwrap().health(&key),
        Some(Health::Healthy)
    );

    // 1. A partition: the node falls silent and the management cluster loses the source API,
    //    but the vantage point still reaches it. Held, with no fault, well past the grace.
    source_alive.store(false, Ordering::SeqCst);
    operator_path.cut();
    wait_health(&shared, &key, Health::SourceUnreachable, 20).await;
    tokio::time::sleep(Duration::from_millis(grace_ms * 3)).await;
    assert!(faults.try_recv().is_err(), "a partition must not fail over");
    assert_eq!(
        shared.tracker.lock().unwrap().health(&key),
        Some(Health::SourceUnreachable)
    );
    let health: Api<transition_crds::NodeHealth> = Api::namespaced(mgmt.clone(), &ns);
    let nh = health.get(&node_health_name(&key)).await.unwrap();
    let ready = nh
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.reason, "SourceUnreachable", "{}", ready.message);
    assert!(
        ready.message.contains("cluster2-aws/vantage-1 can") && ready.message.contains("partition"),
        "{}",
        ready.message
    );

    // 2. The vantage point loses the source too: unreachable from everywhere for the grace →
    //    a cluster outage → the fault that fails over.
    vantage_path.cut();
    let fault = tokio::time::timeout(Duration::from_secs(30), faults.recv())
        .await
        .expect("a fault within 30 s of the outage")
        .unwrap();
    assert_eq!(fault.node, node);
    assert!(
        fault.reason.contains("cluster outage") && fault.reason.contains("cluster2-aws/vantage-1"),
        "{}",
        fault.reason
    );
    stop.cancel();
}
