//! Bounded retries of S3 requests with exponential backoff and jitter.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::warn;

use crate::metrics::Metrics;
use crate::store::StoreError;

/// Runs `op` up to `max_attempts` times while it fails transiently, sleeping 200 ms, 400 ms, …
/// (capped at 10 s, with jitter) in between.
pub async fn with_retry<T, F, Fut>(
    metrics: &Metrics,
    max_attempts: u32,
    mut op: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        metrics.s3_requests.inc();
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && attempt < max_attempts.max(1) => {
                let spread = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos() % 1000);
                let jitter = delay.mul_f64(f64::from(spread) / 2000.0);
                warn!(error = %e, attempt, retry_in = ?(delay + jitter), "S3 request failed; retrying");
                tokio::time::sleep(delay + jitter).await;
                delay = (delay * 2).min(Duration::from_secs(10));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}
