//! `Kubelet`: the operator's one narrow type for asking a node's kubelet to checkpoint a
//! container, through the API server's node proxy:
//! `POST /api/v1/nodes/{node}/proxy/checkpoint/{namespace}/{pod}/{container}?timeout=S`.
//! The kubelet answers `{"items": ["/var/lib/kubelet/checkpoints/checkpoint-….tar"]}`.

use std::time::Duration;

/// Why a checkpoint request failed.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// The kubelet (or the API server) does not know the pod or container: it is gone.
    #[error(
        "failed to checkpoint {namespace}/{pod}/{container} on node {node}: HTTP 404: {message}"
    )]
    NotFound {
        node: String,
        namespace: String,
        pod: String,
        container: String,
        message: String,
    },
    #[error("failed to checkpoint {namespace}/{pod}/{container} on node {node}: {reason}")]
    Request {
        node: String,
        namespace: String,
        pod: String,
        container: String,
        reason: String,
    },
    #[error(
        "failed to checkpoint {namespace}/{pod}/{container} on node {node}: {field} {value:?} is not a DNS name"
    )]
    BadName {
        node: String,
        namespace: String,
        pod: String,
        container: String,
        field: &'static str,
        value: String,
    },
}

/// Checkpoint requests through one cluster's API server.
#[derive(Clone)]
pub struct Kubelet {
    pub client: kube::Client,
}

fn dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

impl Kubelet {
    /// Checkpoints `container` of `namespace/pod` on `node`; returns the archive paths on the node.
    pub async fn checkpoint(
        &self,
        node: &str,
        namespace: &str,
        pod: &str,
        container: &str,
        timeout: Duration,
    ) -> Result<Vec<String>, KubeletError> {
        let err = |reason: String| KubeletError::Request {
            node: node.to_owned(),
            namespace: namespace.to_owned(),
            pod: pod.to_owned(),
            container: container.to_owned(),
            reason,
        };
        for (field, value) in [
            ("node", node),
            ("namespace", namespace),
            ("pod", pod),
            ("container", container),
        ] {
            if !dns_name(value) {
                return Err(KubeletError::BadName {
                    node: node.to_owned(),
                    namespace: namespace.to_owned(),
                    pod: pod.to_owned(),
                    container: container.to_owned(),
                    field,
                    value: value.to_owned(),
                });
            }
        }
        let secs = timeout.as_secs().max(1);
        let uri = format!(
            "/api/v1/nodes/{node}/proxy/checkpoint/{namespace}/{pod}/{container}?timeout={secs}"
        );
        let req = http::Request::post(uri)
            .body(Vec::new())
            .map_err(|e| err(e.to_string()))?;
        let call = self.client.request_text(req);
        let text = match tokio::time::timeout(timeout + Duration::from_secs(5), call).await {
            Ok(Ok(t)) => t,
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => {
                return Err(KubeletError::NotFound {
                    node: node.to_owned(),
                    namespace: namespace.to_owned(),
                    pod: pod.to_owned(),
                    container: container.to_owned(),
                    message: s.message,
                });
            }
            Ok(Err(kube::Error::Api(s))) => {
                return Err(err(format!("HTTP {}: {}", s.code, s.message)));
            }
            Ok(Err(e)) => return Err(err(e.to_string())),
            Err(_) => return Err(err(format!("no answer within {}s", secs + 5))),
        };
        let body: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| err(format!("the kubelet's answer is not JSON: {e}")))?;
        let items: Vec<String> = body
            .get("items")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if items.is_empty() {
            return Err(err(format!(
                "the kubelet returned no archive: {}",
                text.chars().take(200).collect::<String>()
            )));
        }
        Ok(items)
    }
}
