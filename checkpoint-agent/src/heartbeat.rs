//! Heartbeat sender: one POST per interval, each with its own timeout, so a slow or dead operator
//! delays nothing else.

use std::time::Duration;

use tracing::{debug, warn};
use transition_crds::heartbeat::{Heartbeat, Timestamp, WireTime};

use crate::config::Config;

/// Why heartbeats could not start or be sent.
#[derive(Debug, thiserror::Error)]
pub enum HeartbeatSendError {
    #[error("failed to read the heartbeat token file {path}: {source}")]
    Token {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("failed to send heartbeat to {url}: {source}")]
    Send { url: String, source: reqwest::Error },
    #[error("failed to deliver heartbeat to {url}: the operator answered {status}")]
    Status { url: String, status: u16 },
}

/// The payload for this node now.
pub fn payload(config: &Config, now: Timestamp) -> Heartbeat {
    Heartbeat {
        node: config.node_name.clone(),
        os: std::env::consts::OS.to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        cpus: std::thread::available_parallelism()
            .map_or(0, |n| i64::try_from(n.get()).unwrap_or(i64::MAX)),
        ts: Some(WireTime::Rfc3339(now.to_string())),
        cluster_name: config.cluster_name.clone(),
        agent_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        ..Heartbeat::default()
    }
}

/// Reads the bearer token (trimmed) from `config.token_file`.
fn token(config: &Config) -> Result<Option<String>, HeartbeatSendError> {
    let Some(path) = &config.token_file else {
        return Ok(None);
    };
    std::fs::read_to_string(path)
        .map(|t| Some(t.trim().to_owned()))
        .map_err(|source| HeartbeatSendError::Token {
            path: path.display().to_string(),
            source,
        })
}

/// Sends one heartbeat.
pub async fn send(
    client: &reqwest::Client,
    config: &Config,
    token: Option<&str>,
) -> Result<(), HeartbeatSendError> {
    let body = payload(config, Timestamp::now());
    let mut req = client.post(&config.controller_url).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req
        .send()
        .await
        .map_err(|source| HeartbeatSendError::Send {
            url: config.controller_url.clone(),
            source,
        })?;
    if !resp.status().is_success() {
        return Err(HeartbeatSendError::Status {
            url: config.controller_url.clone(),
            status: resp.status().as_u16(),
        });
    }
    Ok(())
}

/// Sends heartbeats every interval until `config.count` is reached (or forever). A failed
/// heartbeat is logged and the next one goes out on time.
pub async fn run(config: &Config) -> Result<u64, HeartbeatSendError> {
    let token = token(config)?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(config.timeout_ms))
        .build()
        .map_err(HeartbeatSendError::Client)?;
    let mut ticker = tokio::time::interval(Duration::from_millis(config.interval_ms.max(10)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut delivered = 0u64;
    let mut sent = 0u64;
    loop {
        ticker.tick().await;
        sent += 1;
        match send(&client, config, token.as_deref()).await {
            Ok(()) => {
                delivered += 1;
                debug!(node = %config.node_name, "heartbeat delivered");
            }
            Err(e) => warn!(error = %e, "heartbeat not delivered"),
        }
        if config.count != 0 && sent >= config.count {
            return Ok(delivered);
        }
    }
}
