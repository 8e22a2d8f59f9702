//! The heartbeat endpoint: `POST /heartbeat` (the Go agent's JSON and ours, bearer token per
//! cluster) and `GET /nodes`. Errors are JSON `{"error": "..."}` with 400 (not JSON), 401 (no or
//! unknown token), 413 (body over 64 KiB), 422 (a field is invalid). A heartbeat costs one map
//! update under a mutex: no API-server write (NodeHealth is written on health changes only).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use sha2::{Digest, Sha256};
use transition_crds::heartbeat::{Heartbeat, HeartbeatError, MAX_HEARTBEAT_BYTES};

use super::tracker::{Change, NodeKey, Tracker};

/// Wall-clock milliseconds (lease times are wall-clock too).
pub fn now_ms() -> u64 {
    u64::try_from(k8s_openapi::jiff::Timestamp::now().as_millisecond()).unwrap_or(0)
}

/// What the last heartbeat of a node said.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LastBeat {
    pub received_ms: u64,
    pub payload: Heartbeat,
}

/// Tokens by cluster, stored as sha256 so the table holds no secret and lookups are uniform.
#[derive(Clone, Default)]
pub struct Tokens(HashMap<[u8; 32], String>);

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} clusters)", self.0.len())
    }
}

/// A tokens file line that cannot be used (the token itself is never shown).
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct TokensError {
    pub line: usize,
    pub reason: &'static str,
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Parses `cluster=token` lines (blank lines and `#` comments skipped), e.g. a mounted Secret.
    pub fn parse(text: &str) -> Result<Tokens, TokensError> {
        let mut map = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (cluster, token) = line.split_once('=').ok_or(TokensError {
                line: i + 1,
                reason: "expected cluster=token",
            })?;
            let (cluster, token) = (cluster.trim(), token.trim());
            if cluster.is_empty() || token.len() < 16 {
                return Err(TokensError {
                    line: i + 1,
                    reason: "empty cluster or token shorter than 16 characters",
                });
            }
            map.insert(hash(token), cluster.to_owned());
        }
        Ok(Tokens(map))
    }

    /// How many tokens the table holds.
    pub fn clusters(&self) -> usize {
        self.0.len()
    }

    pub fn insert(&mut self, cluster: &str, token: &str) {
        self.0.insert(hash(token), cluster.to_owned());
    }

    /// The cluster a bearer token belongs to.
    pub fn cluster_of(&self, headers: &HeaderMap) -> Option<&str> {
        let value = headers
            .get(axum::http::header::AUTHORIZATION)?
            .to_str()
            .ok()?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))?
            .trim();
        self.0.get(&hash(token)).map(String::as_str)
    }
}

/// Shared state of the endpoint and the detector loop.
pub struct Beats {
    /// Replaced when the tokens file changes ([`super::tokens_file`]).
    pub tokens: Mutex<Tokens>,
    pub tracker: Mutex<Tracker>,
    pub last: Mutex<HashMap<NodeKey, LastBeat>>,
    /// Health changes found while recording beats (recoveries), for the detector loop.
    pub changes: tokio::sync::mpsc::Sender<Change>,
    /// Health changes dropped because the detector loop's queue was full.
    pub changes_dropped: prometheus_client::metrics::counter::Counter,
    pub accepted: prometheus_client::metrics::counter::Counter,
    pub rejected: prometheus_client::metrics::counter::Counter,
}

impl Beats {
    /// The cluster whose token the request bears, in the table in use now.
    pub fn cluster_of(&self, headers: &HeaderMap) -> Option<String> {
        crate::observe::locks::lock(&self.tokens, "heartbeat tokens")
            .cluster_of(headers)
            .map(str::to_owned)
    }

    /// Replaces the tokens (a reloaded tokens file); requests from now on use them.
    pub fn set_tokens(&self, tokens: Tokens) {
        *crate::observe::locks::lock(&self.tokens, "heartbeat tokens") = tokens;
    }
}

/// Why a heartbeat body was refused; [`BodyError::status`] is the HTTP status it gets.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BodyError {
    #[error(transparent)]
    Heartbeat(#[from] HeartbeatError),
    #[error(
        "failed to accept heartbeat: field `cluster_name` is {claimed:?} but the token belongs to cluster {cluster:?}"
    )]
    OtherCluster { claimed: String, cluster: String },
}

impl BodyError {
    /// 413 (too large), 400 (not JSON), 422 (a field is invalid or names another cluster).
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::Heartbeat(HeartbeatError::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::Heartbeat(HeartbeatError::Json(_)) => StatusCode::BAD_REQUEST,
            BodyError::Heartbeat(HeartbeatError::Field { .. }) | BodyError::OtherCluster { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
        }
    }
}

/// The heartbeat in `body`, sent with a token of `cluster`, parsed and validated: what
/// `POST /heartbeat` accepts (pure). A body naming another cluster than its token's is refused.
pub fn accept_body(cluster: &str, body: &[u8]) -> Result<Heartbeat, BodyError> {
    let hb = Heartbeat::from_json(body)?;
    if !hb.cluster_name.is_empty() && hb.cluster_name != cluster {
        return Err(BodyError::OtherCluster {
            claimed: hb.cluster_name,
            cluster: cluster.to_owned(),
        });
    }
    Ok(hb)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

async fn heartbeat(State(beats): State<Arc<Beats>>, headers: HeaderMap, body: Body) -> Response {
    let Some(cluster) = beats.cluster_of(&headers) else {
        beats.rejected.inc();
        return error(StatusCode::UNAUTHORIZED, "missing or unknown bearer token");
    };
    let bytes = match axum::body::to_bytes(body, MAX_HEARTBEAT_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            beats.rejected.inc();
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("heartbeat body over {MAX_HEARTBEAT_BYTES} bytes"),
            );
        }
    };
    let hb = match accept_body(&cluster, &bytes) {
        Ok(hb) => hb,
        Err(e) => {
            beats.rejected.inc();
            return error(e.status(), e.to_string());
        }
    };
    let key = NodeKey {
        cluster,
        node: hb.node.clone(),
    };
    let now = now_ms();
    let change = {
        let mut tracker = crate::observe::locks::lock(&beats.tracker, "detector tracker");
        // A node never seen (nor restored from NodeHealth) gets its NodeHealth at once, so its
        // health is visible from the first heartbeat (`kubectl transition status`).
        let first = tracker.health(&key).is_none();
        let recovery = tracker.beat(&key, now);
        recovery.or_else(|| {
            first.then(|| Change {
                key: key.clone(),
                from: super::tracker::Health::Healthy,
                to: super::tracker::Health::Healthy,
                at_ms: now,
                reason: "first heartbeat".into(),
            })
        })
    };
    crate::observe::locks::lock(&beats.last, "last heartbeats").insert(
        key,
        LastBeat {
            received_ms: now,
            payload: hb,
        },
    );
    if let Some(c) = change
        && let Err(tokio::sync::mpsc::error::TrySendError::Full(c)) = beats.changes.try_send(c)
    {
        beats.changes_dropped.inc();
        tracing::warn!(node = %c.key, "detector queue full: health change dropped (counted)");
    }
    beats.accepted.inc();
    StatusCode::OK.into_response()
}

async fn nodes(State(beats): State<Arc<Beats>>, headers: HeaderMap) -> Response {
    let Some(cluster) = beats.cluster_of(&headers) else {
        return error(StatusCode::UNAUTHORIZED, "missing or unknown bearer token");
    };
    let now = now_ms();
    let snapshot = crate::observe::locks::lock(&beats.tracker, "detector tracker").snapshot(now);
    let last = crate::observe::locks::lock(&beats.last, "last heartbeats").clone();
    let list: Vec<_> = snapshot
        .into_iter()
        .filter(|(k, ..)| k.cluster == cluster)
        .map(|(k, health, phi, last_ms)| {
            let beat = last.get(&k);
            json!({
                "cluster": k.cluster, "node": k.node, "health": format!("{health:?}"),
                "phi": if phi.is_finite() { phi } else { f64::MAX },
                "lastSeenMsAgo": last_ms.map(|l| now.saturating_sub(l)),
                "ip": beat.map(|b| b.payload.ip.clone()),
                "agentVersion": beat.and_then(|b| b.payload.agent_version.clone()),
                "lastUpload": beat.and_then(|b| b.payload.last_upload.as_ref().map(|u| u.key.clone())),
                "restore": beat.and_then(|b| b.payload.restore.clone()),
            })
        })
        .collect();
    axum::Json(list).into_response()
}

/// `POST /heartbeat`, `GET /nodes`.
pub fn router(beats: Arc<Beats>) -> Router {
    Router::new()
        .route("/heartbeat", post(heartbeat))
        .route("/nodes", get(nodes))
        .with_state(beats)
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_map_tokens_to_clusters_and_reject_weak_lines() {
        let t = Tokens::parse("# comment\ncluster1-azure = 0123456789abcdef0123\n\ncluster2-aws=fedcba9876543210fedc\n").unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            "Bearer 0123456789abcdef0123".parse().unwrap(),
        );
        assert_eq!(t.cluster_of(&h), Some("cluster1-azure"));
        h.insert(
            "authorization",
            "Bearer nope-nope-nope-nope".parse().unwrap(),
        );
        assert_eq!(t.cluster_of(&h), None);
        assert!(
            Tokens::parse("c=short")
                .unwrap_err()
                .to_string()
                .contains("16")
        );
        assert!(
            Tokens::parse("no separator")
                .unwrap_err()
                .to_string()
                .contains("line 1")
        );
        assert!(
            !format!("{t:?}").contains("0123456789"),
            "Debug prints no token"
        );
    }
}
