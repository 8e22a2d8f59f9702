//! Whether a node's kubelet answers through its cluster's API server (pure).
//!
//! The probe of a suspected node also asks `GET /api/v1/nodes/{node}/proxy/healthz` with a short
//! deadline. The API server dials the kubelet for us, so the answer tells "the kubelet answered"
//! from "the API server could not reach it" — while the same API server answering the Node and
//! Lease GETs proves that a management↔source partition is not the reason. Only a network-level
//! failure reported by the API server itself, or our deadline passing while its other answers
//! came, counts as unreachable; everything else is unknown and never speeds a failover up.

/// What the API server's node proxy says about a node's kubelet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum KubeletReach {
    /// The kubelet was not asked (the kubelet probe is off for its cluster).
    #[default]
    NotAsked,
    /// An HTTP answer came from the kubelet itself (any status: 200, 401, 403, 404, 500…).
    Reachable,
    /// The API server could not reach it (its own proxy error, or no answer before our
    /// deadline while the API server answered everything else): why.
    Unreachable(String),
    /// The answer says nothing about the kubelet (RBAC refused the proxy, the Node has no
    /// address, a TLS problem, the API server failing): why.
    Unknown(String),
}

impl KubeletReach {
    pub fn is_unreachable(&self) -> bool {
        matches!(self, KubeletReach::Unreachable(_))
    }
}

/// What the tracker asks the probe to check besides the Node and its Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeletCheck {
    /// Our deadline for the proxied `/healthz`.
    pub timeout_ms: u64,
    /// A healthy node of the same cluster whose kubelet is asked when this one is unreachable:
    /// its answer shows the API server → kubelet path works (no peer: no fast confirmation).
    pub peer: Option<String>,
}

/// A peer's kubelet, asked through the same API server in the same probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub node: String,
    pub kubelet: KubeletReach,
}

/// Messages of an API server's proxy that say its dial of the kubelet failed at the network
/// level (Go's net errors, as a v1.20 kube-apiserver words them, e.g. `error trying to reach
/// service: dial tcp 10.0.0.4:10250: connect: connection refused`).
const NETWORK_FAILURES: [&str; 7] = [
    "connection refused",
    "no route to host",
    "i/o timeout",
    "network is unreachable",
    "host is down",
    "connection reset by peer",
    "tls handshake timeout",
];

/// Classifies the answer to `GET /api/v1/nodes/{node}/proxy/healthz` (pure): its HTTP status
/// and body.
///
/// * A body that is not a `v1` `Status` object came from the kubelet (the API server passes the
///   kubelet's answer through untouched, whatever its status): reachable.
/// * A 2xx: reachable.
/// * A `Status` with a 5xx code whose message is the proxy's failure to dial (`error trying to
///   reach service` / `dial tcp` with a network error): unreachable.
/// * Any other `Status` (403 from RBAC on `nodes/proxy`, `no preferred addresses found`, an x509
///   error, 429 from priority and fairness, 404 for an unknown Node): unknown.
pub fn classify_proxy_answer(status: u16, body: &str) -> KubeletReach {
    if (200..300).contains(&status) {
        return KubeletReach::Reachable;
    }
    let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let is_status = parsed.as_ref().is_some_and(|v| {
        v.get("kind").and_then(|k| k.as_str()) == Some("Status")
            && v.get("apiVersion").and_then(|k| k.as_str()) == Some("v1")
    });
    if !is_status {
        return KubeletReach::Reachable;
    }
    let message = parsed
        .as_ref()
        .and_then(|v| v.get("message"))
        .and_then(|m| m.as_str())
        .unwrap_or("")
        .to_owned();
    let lower = message.to_ascii_lowercase();
    let proxy_dial = lower.contains("error trying to reach service") || lower.contains("dial tcp");
    if (500..600).contains(&status)
        && proxy_dial
        && NETWORK_FAILURES.iter().any(|m| lower.contains(m))
    {
        return KubeletReach::Unreachable(format!("HTTP {status}: {message}"));
    }
    KubeletReach::Unknown(format!("HTTP {status}: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16, message: &str) -> String {
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "code": code})
        .to_string()
    }

    #[test]
    fn any_answer_of_the_kubelet_itself_means_reachable() {
        assert_eq!(classify_proxy_answer(200, "ok"), KubeletReach::Reachable);
        // The kubelet's own authorization and errors are plain text, passed through as they are.
        for (code, body) in [
            (401, "Unauthorized"),
            (
                403,
                "Forbidden (user=kube-apiserver, verb=get, resource=nodes, subresource=proxy)",
            ),
            (404, "404 page not found"),
            (
                500,
                "[+]ping ok\n[-]syncloop failed: reason withheld\nhealthz check failed",
            ),
        ] {
            assert_eq!(
                classify_proxy_answer(code, body),
                KubeletReach::Reachable,
                "{code} {body}"
            );
        }
    }

    #[test]
    fn the_api_servers_failure_to_dial_the_kubelet_means_unreachable() {
        // What the lab's v1.20.2 kube-apiserver answers for a closed kubelet port.
        for message in [
            "error trying to reach service: dial tcp 127.0.0.1:1: connect: connection refused",
            "error trying to reach service: dial tcp 10.0.0.4:10250: connect: no route to host",
            "error trying to reach service: dial tcp 10.0.0.4:10250: i/o timeout",
            "error trying to reach service: net/http: TLS handshake timeout",
        ] {
            let reach = classify_proxy_answer(500, &status(500, message));
            assert!(reach.is_unreachable(), "{message}: {reach:?}");
        }
        assert!(
            classify_proxy_answer(
                503,
                &status(
                    503,
                    "dial tcp 10.0.0.4:10250: connect: network is unreachable"
                )
            )
            .is_unreachable()
        );
    }

    #[test]
    fn answers_that_say_nothing_about_the_kubelet_are_unknown_never_unreachable() {
        for (code, message) in [
            // RBAC: the operator may not use nodes/proxy.
            (
                403,
                "nodes \"w1\" is forbidden: User \"system:serviceaccount:transition-system:transition-operator\" cannot get resource \"nodes/proxy\" in API group \"\" at the cluster scope",
            ),
            // A Node object without addresses (the lab's v1.20.2 answer).
            (500, "no preferred addresses found; known addresses: []"),
            // The kubelet is reached but its certificate is not trusted: a configuration error.
            (
                500,
                "error trying to reach service: x509: certificate signed by unknown authority",
            ),
            (500, "error trying to reach service: EOF"),
            (404, "nodes \"w1\" not found"),
            (429, "Too many requests, please try again later."),
            (503, "the server is currently unable to handle the request"),
        ] {
            let reach = classify_proxy_answer(code, &status(code, message));
            assert!(
                matches!(reach, KubeletReach::Unknown(ref m) if m.contains(message)),
                "{code} {message}: {reach:?}"
            );
        }
    }
}
