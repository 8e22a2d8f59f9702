//! Two `transition-operator` processes (the real binary) behind one Lease on the lab's REAL
//! management kube-apiserver v1.20.2: both report Ready on `/readyz` (readiness does not wait for
//! leadership), exactly one labels its Pod as the leader, and when the leader is SIGKILLed the
//! other takes the Lease and the label within the Lease duration. The two Pod objects stand in for
//! the Deployment's replicas: the lab has no kubelet or scheduler for the management cluster, so
//! they stay Pending and the processes run on the host, as `hack/e2e.sh` runs the operator.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use transition_operator::k8s::crd_install::install_crds;
use transition_operator::k8s::leader::LEADER_LABEL;
use transition_testlab::{Lab, fresh_namespace};

struct Replica {
    port: u16,
    child: Child,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(lab: &Lab, ns: &str, pod: &str, log: &std::path::Path) -> Replica {
    let port = free_port();
    let kubeconfig = lab.cluster(&lab.clusters()[0]).unwrap().kubeconfig;
    let out = std::fs::File::create(log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_transition-operator"))
        .args(["--kubeconfig", kubeconfig.to_str().unwrap()])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        .args(["--namespace", ns, "--operator-namespace", ns])
        .args(["--leader-election", "--pod-name", pod])
        .env("HOSTNAME", pod)
        .env("RUST_LOG", "info")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    Replica { port, child }
}

async fn ready(http: &reqwest::Client, r: &Replica) -> bool {
    match http
        .get(format!("http://127.0.0.1:{}/readyz", r.port))
        .timeout(Duration::from_secs(2))
        .send()
        .await
    {
        Ok(resp) => resp.status() == 200,
        Err(_) => false,
    }
}

async fn labelled(pods: &Api<Pod>, names: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for name in names {
        let pod = pods.get(name).await.unwrap();
        let labels = pod.metadata.labels.unwrap_or_default();
        if labels.get(LEADER_LABEL).map(String::as_str) == Some("true") {
            out.push((*name).to_owned());
        }
    }
    out
}

async fn until<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn both_replicas_are_ready_one_leads_and_the_standby_takes_over_when_the_leader_is_killed() {
    let lab = Lab::get().unwrap();
    let client = lab.kube_client(&lab.clusters()[0]).await.unwrap();
    install_crds(&client, Duration::from_secs(60))
        .await
        .unwrap();
    let ns = fresh_namespace(&client, "ha").await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    // No controller-manager runs for the management cluster in every lab: the ServiceAccount
    // admission plugin wants `default` to exist before a Pod is admitted.
    let sa: k8s_openapi::api::core::v1::ServiceAccount =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}})).unwrap();
    match Api::namespaced(client.clone(), &ns)
        .create(&PostParams::default(), &sa)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => panic!("creating the default ServiceAccount: {e}"),
    }
    let names = ["operator-a", "operator-b"];
    for name in names {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"app": "transition-operator"}},
            "spec": {"automountServiceAccountToken": false, "containers": [{"name": "operator", "image": "transition-operator:test"}]}
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    // A label left by an earlier run of operator-b (as a SIGKILLed leader leaves it): b must
    // remove it before it reports Ready, or the heartbeat Service would route agents to a standby.
    let stale = serde_json::json!({"metadata": {"labels": {LEADER_LABEL: "true"}}});
    pods.patch(
        "operator-b",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&stale),
    )
    .await
    .unwrap();

    let logs = tempfile::tempdir().unwrap();
    let a = start(&lab, &ns, "operator-a", &logs.path().join("a.log"));
    // a leads first (b starts once a holds the label), so the takeover below is b's.
    until(
        "operator-a labels its Pod as the leader",
        Duration::from_secs(30),
        || async { labelled(&pods, &["operator-a"]).await == ["operator-a"] },
    )
    .await;
    let mut b = start(&lab, &ns, "operator-b", &logs.path().join("b.log"));
    let http = reqwest::Client::new();
    until(
        "both replicas answer 200 on /readyz",
        Duration::from_secs(30),
        || async { ready(&http, &a).await && ready(&http, &b).await },
    )
    .await;
    assert_eq!(
        labelled(&pods, &names).await,
        ["operator-a"],
        "exactly one replica carries the leader label (b removed its stale one)"
    );

    // SIGKILL the leader: no chance to remove its label or release the Lease.
    let killed_at = Instant::now();
    drop(a);
    until(
        "operator-b takes the Lease and labels its Pod within the Lease duration (15 s) + renew period",
        Duration::from_secs(30),
        || async { labelled(&pods, &["operator-b"]).await == ["operator-b"] },
    )
    .await;
    let took = killed_at.elapsed();
    assert!(
        took <= Duration::from_secs(25),
        "the standby took over in {took:?}, more than the 15 s Lease + 5 s retry + margin"
    );
    until(
        "the new leader is Ready",
        Duration::from_secs(15),
        || async { ready(&http, &b).await },
    )
    .await;
    let log = std::fs::read_to_string(logs.path().join("b.log")).unwrap();
    assert!(log.contains("became the leader"), "b's log: {log}");
    let _ = b.child.kill();
}
