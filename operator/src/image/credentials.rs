//! Registry credentials: from a `.dockerconfigjson` document, or from a Kubernetes Secret of
//! either shape the seed uses. Values never reach a message.

use k8s_openapi::api::core::v1::Secret;

use super::registry::Credentials;
use crate::k8s::secrets::{InvalidSecret, text};

/// A `.dockerconfigjson` document that cannot be used (what is wrong, never a credential).
#[derive(Debug, thiserror::Error)]
#[error("failed to read the docker config: {0}")]
pub struct DockerConfigError(pub String);

/// Finds credentials for `host` in a `.dockerconfigjson` document (`auths.<host>.auth` base64
/// `user:pass`, or `username`/`password`). Keys may carry a scheme or path (`https://host/v1/`).
pub fn credentials_from_docker_config(
    json: &[u8],
    host: &str,
) -> Result<Option<Credentials>, DockerConfigError> {
    use base64::Engine;
    let doc: serde_json::Value = serde_json::from_slice(json)
        .map_err(|e| DockerConfigError(format!("not valid JSON: {e}")))?;
    let Some(auths) = doc.get("auths").and_then(|a| a.as_object()) else {
        return Err(DockerConfigError("no `auths` object".into()));
    };
    let normalise = |k: &str| {
        let k = k
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        k.split('/').next().unwrap_or(k).to_owned()
    };
    let wanted = normalise(host);
    let aliases = |h: &str| {
        if h == "docker.io" || h == "index.docker.io" || h == "registry-1.docker.io" {
            "docker.io".to_owned()
        } else {
            h.to_owned()
        }
    };
    for (key, entry) in auths {
        if aliases(&normalise(key)) != aliases(&wanted) {
            continue;
        }
        if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| DockerConfigError(format!("auths.{key}.auth is not base64: {e}")))?;
            let text = String::from_utf8(raw)
                .map_err(|_| DockerConfigError(format!("auths.{key}.auth is not UTF-8")))?;
            let (username, password) = text.split_once(':').ok_or_else(|| {
                DockerConfigError(format!("auths.{key}.auth is not user:password"))
            })?;
            return Ok(Some(Credentials {
                username: username.to_owned(),
                password: password.to_owned(),
            }));
        }
        let user = entry.get("username").and_then(|u| u.as_str());
        let pass = entry.get("password").and_then(|p| p.as_str());
        if let (Some(username), Some(password)) = (user, pass) {
            return Ok(Some(Credentials {
                username: username.to_owned(),
                password: password.to_owned(),
            }));
        }
    }
    Ok(None)
}

/// Registry credentials from a Kubernetes Secret: a `kubernetes.io/dockerconfigjson` Secret
/// (`.dockerconfigjson`, matched by `host`), or the seed's Opaque Secret with `username` and
/// `password` keys (its optional `registry` key is informational).
pub fn credentials_from_secret(
    secret: &Secret,
    host: &str,
) -> Result<Option<Credentials>, InvalidSecret> {
    if let Some(config) = secret
        .data
        .as_ref()
        .and_then(|d| d.get(".dockerconfigjson"))
    {
        return credentials_from_docker_config(&config.0, host)
            .map_err(|e| InvalidSecret::of(secret, format!(".dockerconfigjson: {e}")));
    }
    match (text(secret, "username")?, text(secret, "password")?) {
        (Some(u), Some(p)) => Ok(Some(Credentials {
            username: u.trim().to_owned(),
            password: p,
        })),
        (None, None) => Err(InvalidSecret::of(
            secret,
            "it has neither .dockerconfigjson nor username/password",
        )),
        _ => Err(InvalidSecret::of(
            secret,
            "it needs both username and password",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(pairs: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("reg-credentials".into()),
                ..Default::default()
            },
            data: Some(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn the_seeds_opaque_registry_secret_and_dockerconfigjson_both_work() {
        let seed = secret(&[
            ("username", "vitu1"),
            ("password", "token"),
            ("registry", "http://docker.io"),
        ]);
        let c = credentials_from_secret(&seed, "docker.io")
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("vitu1", "token")
        );
        let dcj = secret(&[(
            ".dockerconfigjson",
            r#"{"auths":{"127.0.0.1:5000":{"username":"lab","password":"pw"}}}"#,
        )]);
        assert_eq!(
            credentials_from_secret(&dcj, "127.0.0.1:5000")
                .unwrap()
                .unwrap()
                .username,
            "lab"
        );
        let half = secret(&[("username", "x")]);
        assert!(
            credentials_from_secret(&half, "h")
                .unwrap_err()
                .to_string()
                .contains("both")
        );
    }

    #[test]
    fn docker_config_credentials_are_found_by_host_in_either_form() {
        let json = br#"{"auths":{"https://index.docker.io/v1/":{"auth":"dml0dTE6dG9rZW4="},"127.0.0.1:5000":{"username":"lab","password":"pw"}}}"#;
        let hub = credentials_from_docker_config(json, "docker.io")
            .unwrap()
            .unwrap();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("vitu1", "token")
        );
        let local = credentials_from_docker_config(json, "127.0.0.1:5000")
            .unwrap()
            .unwrap();
        assert_eq!(local.username, "lab");
        assert!(
            credentials_from_docker_config(json, "quay.io")
                .unwrap()
                .is_none()
        );
        assert!(credentials_from_docker_config(b"{}", "x").is_err());
        assert!(
            credentials_from_docker_config(br#"{"auths":{"x":{"auth":"%%%"}}}"#, "x")
                .unwrap_err()
                .to_string()
                .contains("base64")
        );
    }
}
