//! Prometheus metrics of the agent.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A single `kind`/`outcome`/`reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Label {
    pub label: String,
}

impl Label {
    pub fn of(value: &str) -> Label {
        Label {
            label: value.to_owned(),
        }
    }
}

/// All metrics of the agent.
#[derive(Debug)]
pub struct Metrics {
    /// Archives handled, by outcome (`uploaded`, `already_present`, `metadata_completed`).
    pub uploads: Family<Label, Counter>,
    /// Upload failures, by kind (`auth`, `transient`, `local`, `changed`, `cancelled`, `other`).
    pub failures: Family<Label, Counter>,
    /// Archives uploaded encrypted (age), a subset of `uploads{label="uploaded"}`.
    pub encrypted_uploads: Counter,
    /// Bytes sent to S3 as object data (ciphertext for encrypted archives).
    pub uploaded_bytes: Counter,
    /// Bytes of archives read from local disk (one pass per upload is the goal).
    pub read_bytes: Counter,
    /// S3 requests attempted (including retries).
    pub s3_requests: Counter,
    /// Parts found already uploaded after a restart.
    pub resumed_parts: Counter,
    /// Files in the checkpoint folder that are never uploaded, by reason.
    pub skipped_files: Family<Label, Counter>,
    /// Heartbeats, by result (`delivered`, `failed`).
    pub heartbeats: Family<Label, Counter>,
    pub heartbeat_seconds: Histogram,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("checkpoint_agent");
        let m = Metrics {
            uploads: Family::default(),
            failures: Family::default(),
            encrypted_uploads: Counter::default(),
            uploaded_bytes: Counter::default(),
            read_bytes: Counter::default(),
            s3_requests: Counter::default(),
            resumed_parts: Counter::default(),
            skipped_files: Family::default(),
            heartbeats: Family::default(),
            heartbeat_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            registry: Registry::default(),
        };
        registry.register("uploads", "Archives handled, by outcome", m.uploads.clone());
        registry.register(
            "upload_failures",
            "Upload failures, by kind",
            m.failures.clone(),
        );
        registry.register(
            "encrypted_uploads",
            "Archives uploaded encrypted with age",
            m.encrypted_uploads.clone(),
        );
        registry.register(
            "uploaded_bytes",
            "Bytes uploaded as object data",
            m.uploaded_bytes.clone(),
        );
        registry.register(
            "read_bytes",
            "Archive bytes read from local disk",
            m.read_bytes.clone(),
        );
        registry.register(
            "s3_requests",
            "S3 requests attempted",
            m.s3_requests.clone(),
        );
        registry.register(
            "resumed_parts",
            "Parts reused from an earlier run",
            m.resumed_parts.clone(),
        );
        registry.register(
            "skipped_files",
            "Files never uploaded, by reason",
            m.skipped_files.clone(),
        );
        registry.register("heartbeats", "Heartbeats, by result", m.heartbeats.clone());
        registry.register(
            "heartbeat_latency_seconds",
            "Heartbeat round trip",
            m.heartbeat_seconds.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Text exposition.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// Value of a labelled counter (for tests and logs).
    pub fn count(family: &Family<Label, Counter>, label: &str) -> u64 {
        family.get_or_create(&Label::of(label)).get()
    }
}
