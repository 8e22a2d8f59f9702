//! `/healthz`, `/readyz`, `/metrics` of the operator (the shared server of `transition-runtime`).

use std::net::SocketAddr;
use std::sync::Arc;

pub use transition_runtime::serve::ServerError;
use transition_runtime::serve::{Ready, Render};

use crate::observe::metrics::Metrics;
use crate::observe::readiness::Readiness;

/// Serves until `shutdown` resolves; `/readyz` reports `readiness`.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let render: Render = Arc::new(move || metrics.render());
    let ready: Ready = Arc::new(move || readiness.check());
    transition_runtime::serve::serve(addr, render, ready, shutdown).await
}
