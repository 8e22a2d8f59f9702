//! GitOps writer: a failover as a reviewable, revertable Git change.

pub mod edit;
pub mod repo;
pub mod writer;

use k8s_openapi::api::core::v1::Secret;

/// Git credentials from a Secret with `username` and `password` (or `token`) keys — the seed's
/// `git-user-secret` shape.
pub fn credentials_from_secret(secret: &Secret) -> Result<repo::GitCredentials, String> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let data = secret.data.clone().unwrap_or_default();
    let text = |k: &str| {
        data.get(k)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .map(|s| s.trim_end_matches('\n').to_owned())
    };
    let username =
        text("username").ok_or_else(|| format!("Secret {name} has no `username` key"))?;
    let password = text("password")
        .or_else(|| text("token"))
        .ok_or_else(|| format!("Secret {name} has no `password` or `token` key"))?;
    Ok(repo::GitCredentials { username, password })
}
