//! `Registry`: the operator's one narrow type over an OCI registry (distribution spec v1.1 push,
//! plus the reads needed to verify). Anonymous, basic and bearer-token auth (the token flow of
//! Docker Hub / distribution's token server: on a 401 with `WWW-Authenticate: Bearer realm=..`
//! a token is fetched — with the basic credentials when present — and the request retried once).
//! TLS is verified unless `insecure` is set (meant for local plain-HTTP registries).

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{
    AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, HeaderValue, LOCATION,
    WWW_AUTHENTICATE,
};
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};

/// Registry credentials.
#[derive(Clone, Default)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, password: *** }}",
            self.username
        )
    }
}

/// How to reach a registry.
#[derive(Clone, Debug)]
pub struct RegistryConfig {
    /// `host[:port]` (as in image references).
    pub host: String,
    /// Plain HTTP and unverified TLS (local registries only).
    pub insecure: bool,
    pub credentials: Option<Credentials>,
    pub timeout: Duration,
}

/// A failed registry call, naming the operation and the object.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("failed to {op} {what}: {reason}")]
    Http {
        op: &'static str,
        what: String,
        reason: String,
    },
    #[error("failed to {op} {what}: registry answered {status}: {body}")]
    Status {
        op: &'static str,
        what: String,
        status: u16,
        body: String,
    },
    #[error("failed to authenticate to registry {host}: {reason}")]
    Auth { host: String, reason: String },
    #[error("failed to build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// An OCI registry.
pub struct Registry {
    http: reqwest::Client,
    base: String,
    host: String,
    credentials: Option<Credentials>,
    /// Bearer token for the last scope that needed one.
    token: Mutex<Option<(String, String)>>,
}

/// `sha256:<hex>` of `bytes`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Parses `Bearer realm="..",service="..",scope=".."` (or `Basic realm=..`).
pub fn parse_challenge(header: &str) -> Option<(String, Vec<(String, String)>)> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    let mut params = Vec::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            after.split_once(',').map_or((after, ""), |(v, t)| (v, t))
        };
        params.push((key.trim().to_ascii_lowercase(), value.to_owned()));
        rest = tail.trim_start_matches([',', ' ']);
    }
    Some((scheme.to_ascii_lowercase(), params))
}

impl Registry {
    pub fn new(config: &RegistryConfig) -> Result<Registry, RegistryError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(Duration::from_secs(10))
            .danger_accept_invalid_certs(config.insecure)
            .build()
            .map_err(RegistryError::Client)?;
        let scheme = if config.insecure { "http" } else { "https" };
        Ok(Registry {
            http,
            base: format!("{scheme}://{}", config.host),
            host: config.host.clone(),
            credentials: config.credentials.clone(),
            token: Mutex::new(None),
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_owned()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }

    fn basic_header(&self) -> Option<String> {
        use base64::Engine;
        self.credentials.as_ref().map(|c| {
            let raw = format!("{}:{}", c.username, c.password);
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            )
        })
    }

    /// Sends a request (rebuilt by `make` on the retry); handles 401 challenges once.
    async fn send(
        &self,
        op: &'static str,
        what: &str,
        scope: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        let cached = crate::observe::locks::lock(&self.token, "registry token")
            .clone()
            .filter(|(s, _)| s == scope)
            .map(|(_, t)| t);
        let auth = cached
            .map(|t| format!("Bearer {t}"))
            .or_else(|| self.basic_header());
        let mut req = make();
        if let Some(a) = &auth {
            req = req.header(AUTHORIZATION, a);
        }
        let resp = req.send().await.map_err(|e| http_err(op, what, &e))?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let Some((scheme, params)) = parse_challenge(&challenge) else {
            return Err(RegistryError::Auth {
                host: self.host.clone(),
                reason: "401 without a usable WWW-Authenticate challenge".into(),
            });
        };
        let retry_auth = match scheme.as_str() {
            "basic" => match self.basic_header() {
                Some(b) if auth.as_deref() != Some(b.as_str()) => b,
                _ => {
                    return Err(RegistryError::Auth {
                        host: self.host.clone(),
                        reason: "the registry rejected the credentials (basic auth)".into(),
                    });
                }
            },
            "bearer" => format!("Bearer {}", self.fetch_token(&params, scope).await?),
            other => {
                return Err(RegistryError::Auth {
                    host: self.host.clone(),
                    reason: format!("unsupported auth scheme {other:?}"),
                });
            }
        };
        let resp = make()
            .header(AUTHORIZATION, retry_auth)
            .send()
            .await
            .map_err(|e| http_err(op, what, &e))?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(RegistryError::Auth {
                host: self.host.clone(),
                reason: "the registry rejected the credentials".into(),
            });
        }
        Ok(resp)
    }

    async fn fetch_token(
        &self,
        params: &[(String, String)],
        scope: &str,
    ) -> Result<String, RegistryError> {
        let get = |k: &str| {
            params
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let realm = get("realm").ok_or_else(|| RegistryError::Auth {
            host: self.host.clone(),
            reason: "bearer challenge without realm".into(),
        })?;
        let mut query = vec![("scope", get("scope").unwrap_or_else(|| scope.to_owned()))];
        if let Some(service) = get("service") {
            query.push(("service", service));
        }
        let mut url = reqwest::Url::parse(&realm).map_err(|e| RegistryError::Auth {
            host: self.host.clone(),
            reason: format!("bad token realm {realm:?}: {e}"),
        })?;
        for (k, v) in &query {
            url.query_pairs_mut().append_pair(k, v);
        }
        let mut req = self.http.get(url);
        if let Some(b) = self.basic_header() {
            req = req.header(AUTHORIZATION, b);
        }
        let resp = req.send().await.map_err(|e| RegistryError::Auth {
            host: self.host.clone(),
            reason: format!("token request failed: {e}"),
        })?;
        if !resp.status().is_success() {
            return Err(RegistryError::Auth {
                host: self.host.clone(),
                reason: format!("token service answered {}", resp.status()),
            });
        }
        let body: serde_json::Value = resp.json().await.map_err(|e| RegistryError::Auth {
            host: self.host.clone(),
            reason: format!("token response unreadable: {e}"),
        })?;
        let token = body
            .get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| RegistryError::Auth {
                host: self.host.clone(),
                reason: "token response has no token".into(),
            })?
            .to_owned();
        *crate::observe::locks::lock(&self.token, "registry token") =
            Some((scope.to_owned(), token.clone()));
        Ok(token)
    }

    fn push_scope(repo: &str) -> String {
        format!("repository:{repo}:pull,push")
    }

    async fn expect(
        resp: reqwest::Response,
        op: &'static str,
        what: &str,
        ok: &[StatusCode],
    ) -> Result<reqwest::Response, RegistryError> {
        if ok.contains(&resp.status()) {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body: String = resp
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        Err(RegistryError::Status {
            op,
            what: what.to_owned(),
            status,
            body,
        })
    }

    /// Whether the registry already has blob `digest` in `repo`.
    pub async fn blob_exists(&self, repo: &str, digest: &str) -> Result<bool, RegistryError> {
        let what = format!("blob {digest} in {repo}");
        let url = self.url(&format!("/v2/{repo}/blobs/{digest}"));
        let resp = self
            .send("check", &what, &Self::push_scope(repo), || {
                self.http.head(&url)
            })
            .await?;
        match resp.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Self::expect(resp, "check", &what, &[]).await.map(|_| false),
        }
    }

    /// Opens a blob upload session; returns its location.
    pub async fn start_upload(&self, repo: &str) -> Result<String, RegistryError> {
        let what = format!("a blob upload to {repo}");
        let url = self.url(&format!("/v2/{repo}/blobs/uploads/"));
        let resp = self
            .send("start", &what, &Self::push_scope(repo), || {
                self.http.post(&url).header(CONTENT_LENGTH, "0")
            })
            .await?;
        let resp = Self::expect(resp, "start", &what, &[StatusCode::ACCEPTED]).await?;
        location(&resp).ok_or_else(|| RegistryError::Http {
            op: "start",
            what,
            reason: "no Location header".into(),
        })
    }

    /// Appends `chunk` at `offset` to an upload session (chunked upload); returns the next location.
    pub async fn patch_chunk(
        &self,
        repo: &str,
        location_url: &str,
        offset: u64,
        chunk: Bytes,
    ) -> Result<String, RegistryError> {
        let what = format!("a chunk at offset {offset} of a blob upload to {repo}");
        let url = self.url(location_url);
        let end = offset + chunk.len() as u64 - 1;
        let resp = self
            .send("upload", &what, &Self::push_scope(repo), || {
                self.http
                    .request(Method::PATCH, &url)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_RANGE, format!("{offset}-{end}"))
                    .header(CONTENT_LENGTH, chunk.len())
                    .body(chunk.clone())
            })
            .await?;
        let resp = Self::expect(
            resp,
            "upload",
            &what,
            &[StatusCode::ACCEPTED, StatusCode::NO_CONTENT],
        )
        .await?;
        Ok(location(&resp).unwrap_or_else(|| location_url.to_owned()))
    }

    /// Closes an upload session, declaring the blob's digest.
    pub async fn finish_upload(
        &self,
        repo: &str,
        location_url: &str,
        digest: &str,
    ) -> Result<(), RegistryError> {
        let what = format!("blob {digest} in {repo}");
        let url = with_query(&self.url(location_url), "digest", digest);
        let resp = self
            .send("commit", &what, &Self::push_scope(repo), || {
                self.http.put(&url).header(CONTENT_LENGTH, "0")
            })
            .await?;
        Self::expect(
            resp,
            "commit",
            &what,
            &[StatusCode::CREATED, StatusCode::NO_CONTENT],
        )
        .await
        .map(|_| ())
    }

    /// Abandons an upload session (best effort).
    pub async fn cancel_upload(&self, repo: &str, location_url: &str) {
        let url = self.url(location_url);
        let _ = self
            .send("cancel", "a blob upload", &Self::push_scope(repo), || {
                self.http.delete(&url)
            })
            .await;
    }

    /// Uploads a small blob in one request (POST + PUT); skips it when present. Returns its digest.
    pub async fn put_blob(&self, repo: &str, bytes: Bytes) -> Result<String, RegistryError> {
        let digest = digest_of(&bytes);
        if self.blob_exists(repo, &digest).await? {
            return Ok(digest);
        }
        let loc = self.start_upload(repo).await?;
        let what = format!("blob {digest} in {repo}");
        let url = with_query(&self.url(&loc), "digest", &digest);
        let resp = self
            .send("upload", &what, &Self::push_scope(repo), || {
                self.http
                    .put(&url)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(CONTENT_LENGTH, bytes.len())
                    .body(bytes.clone())
            })
            .await?;
        Self::expect(
            resp,
            "upload",
            &what,
            &[StatusCode::CREATED, StatusCode::NO_CONTENT],
        )
        .await?;
        Ok(digest)
    }

    /// Stores a manifest (or index) under `reference` (a tag or digest); returns its digest.
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<String, RegistryError> {
        let digest = digest_of(&bytes);
        let what = format!("manifest {repo}:{reference}");
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let resp = self
            .send("store", &what, &Self::push_scope(repo), || {
                self.http
                    .put(&url)
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.clone())
            })
            .await?;
        Self::expect(resp, "store", &what, &[StatusCode::CREATED, StatusCode::OK]).await?;
        Ok(digest)
    }

    /// Deletes a manifest by digest (its tags go with it); a missing manifest is not an error.
    pub async fn delete_manifest(&self, repo: &str, digest: &str) -> Result<(), RegistryError> {
        let what = format!("manifest {repo}@{digest}");
        let url = self.url(&format!("/v2/{repo}/manifests/{digest}"));
        let scope = format!("repository:{repo}:delete");
        let resp = self
            .send("delete", &what, &scope, || self.http.delete(&url))
            .await?;
        Self::expect(
            resp,
            "delete",
            &what,
            &[StatusCode::ACCEPTED, StatusCode::OK, StatusCode::NOT_FOUND],
        )
        .await?;
        Ok(())
    }

    /// Reads a manifest (or index) by tag or digest: (bytes, media type).
    pub async fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<(Bytes, String), RegistryError> {
        let what = format!("manifest {repo}:{reference}");
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        let accept =
            "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json";
        let scope = format!("repository:{repo}:pull");
        let resp = self
            .send("read", &what, &scope, || {
                self.http.get(&url).header("Accept", accept)
            })
            .await?;
        let resp = Self::expect(resp, "read", &what, &[StatusCode::OK]).await?;
        let media = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = resp
            .bytes()
            .await
            .map_err(|e| http_err("read", &what, &e))?;
        Ok((body, media))
    }
}

fn location(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get(LOCATION)
        .and_then(|v: &HeaderValue| v.to_str().ok())
        .map(str::to_owned)
}

fn with_query(url: &str, key: &str, value: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={}", value.replace(':', "%3A"))
}

fn http_err(op: &'static str, what: &str, e: &reqwest::Error) -> RegistryError {
    let reason = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else {
        e.to_string()
    };
    RegistryError::Http {
        op,
        what: what.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_challenge_is_split_into_realm_service_and_scope() {
        let (scheme, params) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(scheme, "bearer");
        assert_eq!(
            params[0],
            ("realm".into(), "https://auth.docker.io/token".into())
        );
        assert_eq!(params[1], ("service".into(), "registry.docker.io".into()));
        assert_eq!(
            params[2],
            ("scope".into(), "repository:library/busybox:pull".into())
        );
        let (scheme, params) = parse_challenge(r#"Basic realm="transition-lab""#).unwrap();
        assert_eq!((scheme.as_str(), params.len()), ("basic", 1));
    }

    #[test]
    fn credentials_never_print_the_password() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
