//! `/healthz` (the process answers), `/readyz` (the caller's readiness check), `/metrics` (the
//! caller's Prometheus text), served until a shutdown future resolves.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

/// Renders the Prometheus text exposition.
pub type Render = Arc<dyn Fn() -> Result<String, std::fmt::Error> + Send + Sync>;
/// `Ok` when ready, else why not (shown with HTTP 503).
pub type Ready = Arc<dyn Fn() -> Result<(), &'static str> + Send + Sync>;

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("failed to bind the metrics server to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to serve HTTP: {0}")]
    Serve(#[source] std::io::Error),
}

#[derive(Clone)]
struct Probes {
    render: Render,
    ready: Ready,
}

async fn ready(State(p): State<Probes>) -> (StatusCode, &'static str) {
    match (p.ready)() {
        Ok(()) => (StatusCode::OK, "ok"),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

async fn metrics(State(p): State<Probes>) -> (StatusCode, String) {
    match (p.render)() {
        Ok(text) => (StatusCode::OK, text),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to encode metrics: {e}"),
        ),
    }
}

/// The router (separate for tests).
pub fn router(render: Render, ready_check: Ready) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .with_state(Probes {
            render,
            ready: ready_check,
        })
}

/// Serves on `addr` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    render: Render,
    ready_check: Ready,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    tracing::info!(%addr, "serving /healthz /readyz /metrics");
    axum::serve(listener, router(render, ready_check))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServerError::Serve)
}
