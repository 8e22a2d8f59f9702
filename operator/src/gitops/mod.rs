//! GitOps writer: a failover as a reviewable, revertable Git change.

pub mod agents;
pub mod edit;
pub mod kustomization;
pub mod repo;
pub mod writer;

use k8s_openapi::api::core::v1::Secret;

use crate::k8s::secrets::{InvalidSecret, text};

/// Git credentials from a Secret with `username` and `password` (or `token`) keys — the seed's
/// `git-user-secret` shape.
pub fn credentials_from_secret(secret: &Secret) -> Result<repo::GitCredentials, InvalidSecret> {
    let username = text(secret, "username")?
        .ok_or_else(|| InvalidSecret::of(secret, "it has no `username` key"))?;
    let password = match text(secret, "password")? {
        Some(p) => p,
        None => text(secret, "token")?
            .ok_or_else(|| InvalidSecret::of(secret, "it has no `password` or `token` key"))?,
    };
    Ok(repo::GitCredentials { username, password })
}
