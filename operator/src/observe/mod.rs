//! Observability in one place: Prometheus metrics, the `/healthz` `/readyz` `/metrics` server and
//! the tracing set-up.

pub mod locks;
pub mod metrics;
pub mod readiness;
pub mod server;
pub mod telemetry;
