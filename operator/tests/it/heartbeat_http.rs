//! The heartbeat endpoint over real HTTP: the Go agent's JSON is accepted with a valid token;
//! bad requests get JSON errors 400 / 401 / 413 / 422 naming the reason; GET /nodes lists only
//! the token's cluster.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code"
)]

use transition_operator::detect::beats;
use transition_operator::detect::server::{Tokens, router};
use transition_operator::detect::tracker::TrackerConfig;

const GO_BODY: &str = r#"{"node":"worker-1","ip":"10.0.0.4","os":"linux","arch":"amd64","cpus":4,"cpu_usage_percent":12.5,
 "mem_total_bytes":8348520448,"mem_used_bytes":2147483648,"ts":"2025-09-08T14:20:56Z","cluster_name":"cluster1-azure",
 "cluster_namespace":"default","machine":"m1","owner_kind":"MachineSet","owner_name":"md-0","provided_node_ip":"10.0.0.4",
 "cri_socket":"unix:///run/containerd/containerd.sock"}"#;

#[tokio::test]
async fn heartbeats_are_authenticated_validated_and_listed_per_cluster() {
    let tokens =
        Tokens::parse("cluster1-azure=token-one-0123456789\ncluster2-aws=token-two-0123456789\n")
            .unwrap();
    let (shared, _changes) = beats(tokens, TrackerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(shared)).await.unwrap() });
    let http = reqwest::Client::new();
    let post = |token: Option<&'static str>, body: String| {
        let mut req = http
            .post(format!("{base}/heartbeat"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let ok = post(Some("token-one-0123456789"), GO_BODY.into())
        .await
        .unwrap();
    assert_eq!(ok.status(), 200, "the Go agent's payload is accepted");

    let cases: Vec<(Option<&'static str>, String, u16, &str)> = vec![
        (None, GO_BODY.into(), 401, "bearer token"),
        (
            Some("wrong-token-0123456789"),
            GO_BODY.into(),
            401,
            "bearer token",
        ),
        (
            Some("token-one-0123456789"),
            "{not json".into(),
            400,
            "JSON",
        ),
        (
            Some("token-one-0123456789"),
            r#"{"node":""}"#.into(),
            422,
            "`node`",
        ),
        (
            Some("token-two-0123456789"),
            GO_BODY.into(),
            422,
            "cluster_name",
        ),
        (
            Some("token-one-0123456789"),
            format!(r#"{{"node":"n","pad":"{}"}}"#, "x".repeat(70_000)),
            413,
            "65536 bytes",
        ),
    ];
    for (token, body, status, needle) in cases {
        let resp = post(token, body).await.unwrap();
        assert_eq!(resp.status().as_u16(), status);
        let json: serde_json::Value = resp.json().await.unwrap();
        let msg = json["error"].as_str().unwrap();
        assert!(
            msg.contains(needle),
            "{status}: {msg:?} should mention {needle}"
        );
    }

    let list: serde_json::Value = http
        .get(format!("{base}/nodes"))
        .bearer_auth("token-one-0123456789")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["node"], "worker-1");
    assert_eq!(list[0]["health"], "Healthy");
    let other: serde_json::Value = http
        .get(format!("{base}/nodes"))
        .bearer_auth("token-two-0123456789")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        other.as_array().unwrap().is_empty(),
        "a cluster's token sees only its own nodes"
    );
    assert_eq!(
        http.get(format!("{base}/nodes"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
}
