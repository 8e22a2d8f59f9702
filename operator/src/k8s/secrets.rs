//! Secret reads: a bounded GET naming the Secret and what it is for, through a short-lived cache
//! ([`SecretCache`]); the values never reach a message or a log line.
//!
//! Why not a reflector like ClusterPolicies and Checkpoints: a watch needs `list`/`watch` on
//! every Secret of a namespace (and would hold them all in memory), where the operator needs
//! `get` on the few Secrets its policies name. A cache of what was read, for [`CACHE_TTL`],
//! gives a burst of reconciles one read per Secret, and a rotated Secret is seen within the TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

/// How long one Secret read may take.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A Secret whose content cannot be used (a key missing, not UTF-8, …).
#[derive(Debug, thiserror::Error)]
#[error("failed to use Secret {secret}: {reason}")]
pub struct InvalidSecret {
    /// `namespace/name` (or the name alone when the namespace is unknown).
    pub secret: String,
    pub reason: String,
}

impl InvalidSecret {
    /// An error about `secret` (its own metadata names it).
    pub fn of(secret: &Secret, reason: impl Into<String>) -> InvalidSecret {
        let name = secret.metadata.name.clone().unwrap_or_default();
        InvalidSecret {
            secret: match &secret.metadata.namespace {
                Some(ns) => format!("{ns}/{name}"),
                None => name,
            },
            reason: reason.into(),
        }
    }
}

/// Why a Secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("failed to read {purpose} Secret {namespace}/{name}: {source}")]
    Read {
        purpose: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to read {purpose} Secret {namespace}/{name}: no answer within {seconds} s")]
    Timeout {
        purpose: &'static str,
        namespace: String,
        name: String,
        seconds: u64,
    },
    #[error("failed to read {purpose} Secret {namespace}/{name}: it does not exist")]
    Missing {
        purpose: &'static str,
        namespace: String,
        name: String,
    },
    #[error(transparent)]
    Invalid(#[from] InvalidSecret),
}

impl SecretError {
    /// A user must create or fix the Secret (a retry soon will not help).
    pub fn needs_user(&self) -> bool {
        matches!(self, SecretError::Missing { .. } | SecretError::Invalid(_))
    }
}

/// Reads Secret `namespace/name`, used as `purpose` (e.g. "Git", "registry").
pub async fn get(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    purpose: &'static str,
) -> Result<Secret, SecretError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match tokio::time::timeout(READ_TIMEOUT, api.get_opt(name)).await {
        Ok(Ok(Some(secret))) => Ok(secret),
        Ok(Ok(None)) => Err(SecretError::Missing {
            purpose,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }),
        Ok(Err(source)) => Err(SecretError::Read {
            purpose,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            source,
        }),
        Err(_) => Err(SecretError::Timeout {
            purpose,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            seconds: READ_TIMEOUT.as_secs(),
        }),
    }
}

/// How long a Secret read is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(10);

/// Secrets read recently, by `(namespace, name)` (a missing Secret is not remembered: creating
/// it takes effect at once).
#[derive(Default)]
pub struct SecretCache {
    entries: Mutex<HashMap<(String, String), (Instant, Secret)>>,
}

impl SecretCache {
    /// Secret `namespace/name`, from the cache when read within [`CACHE_TTL`]; `None`: missing.
    pub async fn get_opt(
        &self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
        purpose: &'static str,
    ) -> Result<Option<Secret>, SecretError> {
        let key = (namespace.to_owned(), name.to_owned());
        if let Some((at, s)) = crate::observe::locks::lock(&self.entries, "secret cache").get(&key)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(Some(s.clone()));
        }
        match get(client, namespace, name, purpose).await {
            Ok(s) => {
                crate::observe::locks::lock(&self.entries, "secret cache")
                    .insert(key, (Instant::now(), s.clone()));
                Ok(Some(s))
            }
            Err(SecretError::Missing { .. }) => {
                crate::observe::locks::lock(&self.entries, "secret cache").remove(&key);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Like [`SecretCache::get_opt`], a missing Secret being an error.
    pub async fn get(
        &self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
        purpose: &'static str,
    ) -> Result<Secret, SecretError> {
        self.get_opt(client, namespace, name, purpose)
            .await?
            .ok_or_else(|| SecretError::Missing {
                purpose,
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            })
    }
}

/// The text of `key` in `secret` (trailing newlines dropped), if present and UTF-8.
pub fn text(secret: &Secret, key: &str) -> Result<Option<String>, InvalidSecret> {
    let Some(bytes) = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|s| s.clone().into_bytes())
        })
    else {
        return Ok(None);
    };
    String::from_utf8(bytes)
        .map(|s| Some(s.trim_end_matches('\n').to_owned()))
        .map_err(|_| InvalidSecret::of(secret, format!("key `{key}` is not UTF-8")))
}
