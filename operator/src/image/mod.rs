//! Checkpoint OCI images: archive validation, the registry client, the streaming builder.

pub mod archive;
pub mod build;
pub mod registry;

use k8s_openapi::api::core::v1::Secret;

use registry::{Credentials, credentials_from_docker_config};

use crate::k8s::secrets::{InvalidSecret, text};

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
}
