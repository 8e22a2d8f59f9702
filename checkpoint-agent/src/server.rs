//! `/healthz` (process alive), `/readyz` (503 while S3 rejects our credentials), `/metrics` — the
//! shared server of `transition-runtime`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use transition_runtime::serve::ServerError;
use transition_runtime::serve::{Ready, Render};

use crate::metrics::Metrics;
use crate::watch::Health;

/// Serves until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let render: Render = Arc::new(move || metrics.render());
    let ready: Ready = Arc::new(move || {
        if health.s3_auth_failed.load(Ordering::Relaxed) {
            Err("S3 rejected the credentials; uploads paused")
        } else {
            Ok(())
        }
    });
    transition_runtime::serve::serve(addr, render, ready, shutdown).await
}
