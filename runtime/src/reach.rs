//! Whether a Kubernetes API server answers from here: the vantage-point check agents on other
//! clusters run against a source cluster's API, so the operator can tell a management↔source
//! partition from a whole-source outage.
//!
//! Reachability only: no credentials are sent and nothing in the answer is trusted, so the
//! server's certificate is not verified (any HTTP answer to `GET /readyz`, even 401 or 403,
//! means an API server is up at that address).

use std::time::Duration;

/// Why the check could not even start.
#[derive(Debug, thiserror::Error)]
#[error("failed to build the HTTP client for API reachability checks: {0}")]
pub struct ReachError(#[source] reqwest::Error);

/// Why an API server did not answer.
#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    #[error("no answer in time")]
    Timeout,
    #[error("connection failed")]
    Connect,
    #[error("request failed: {0}")]
    Request(#[source] reqwest::Error),
}

/// Checks API servers, each call bounded by the timeout.
#[derive(Clone, Debug)]
pub struct Reacher {
    http: reqwest::Client,
}

impl Reacher {
    pub fn new(timeout: Duration) -> Result<Reacher, ReachError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .danger_accept_invalid_certs(true)
            .build()
            .map_err(ReachError)?;
        Ok(Reacher { http })
    }

    /// `Ok(status)` when an HTTP server answered at `url` (`<url>/readyz`), else why not.
    pub async fn check(&self, url: &str) -> Result<u16, Unreachable> {
        let url = format!("{}/readyz", url.trim_end_matches('/'));
        match self.http.get(&url).send().await {
            Ok(resp) => Ok(resp.status().as_u16()),
            Err(e) if e.is_timeout() => Err(Unreachable::Timeout),
            Err(e) if e.is_connect() => Err(Unreachable::Connect),
            Err(e) => Err(Unreachable::Request(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_unreachable_and_an_answering_server_is_reachable() {
        let r = Reacher::new(Duration::from_secs(2)).unwrap();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let err = r
            .check(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "connection failed");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route(
            "/readyz",
            axum::routing::get(|| async { (axum::http::StatusCode::FORBIDDEN, "forbidden") }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        assert_eq!(
            r.check(&format!("http://{addr}/")).await.ok(),
            Some(403),
            "403 is an answer"
        );
    }
}
