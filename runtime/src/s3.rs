//! The S3 client both binaries use (aws-sdk-s3: path-style addressing for MinIO and s3s, static
//! credentials, connect and per-attempt timeouts) and the classification of its failures.

use std::time::Duration;

use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, retry::RetryConfig,
    timeout::TimeoutConfig,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// How to reach the bucket's endpoint.
pub struct ClientSettings<'a> {
    pub endpoint: &'a str,
    pub region: &'a str,
    pub access_key: &'a str,
    pub secret_key: &'a str,
    /// Per-attempt timeout (connecting has its own 5 s).
    pub timeout: Duration,
    /// Whether the SDK retries on its own (off when the caller retries with its own backoff).
    pub sdk_retries: bool,
    /// Who is calling (the credentials provider's name).
    pub provider: &'static str,
}

/// An S3 client for `settings`.
pub fn client(settings: &ClientSettings<'_>) -> aws_sdk_s3::Client {
    let creds = Credentials::new(
        settings.access_key,
        settings.secret_key,
        None,
        None,
        settings.provider,
    );
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(settings.timeout)
        .build();
    let retries = if settings.sdk_retries {
        RetryConfig::standard()
    } else {
        RetryConfig::disabled()
    };
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(settings.region.to_owned()))
        .endpoint_url(settings.endpoint)
        .credentials_provider(creds)
        .force_path_style(true)
        .timeout_config(timeouts)
        .retry_config(retries)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Reads the small object `key` (a record, not an archive): `Ok(None)` when it does not exist;
/// at most `limit` + 1 bytes are read, so a caller can refuse an oversized one without holding
/// it. The error is `(kind, message)` as [`classify`] gives it.
pub async fn read_small(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    limit: usize,
) -> Result<Option<Vec<u8>>, (ErrorKind, String)> {
    let out = match client.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => out,
        Err(e) => {
            let (kind, message) = classify(&e);
            return if kind == ErrorKind::NotFound {
                Ok(None)
            } else {
                Err((kind, message))
            };
        }
    };
    let mut body = out.body;
    let mut bytes = Vec::new();
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| (ErrorKind::Transient, e.to_string()))?
    {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > limit {
            break;
        }
    }
    Ok(Some(bytes))
}

/// What kind of failure an S3 call hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Wrong or missing credentials / no permission: retrying cannot help.
    Auth,
    /// The object or bucket does not exist.
    NotFound,
    /// The multipart upload is gone (aborted, or expired by the server).
    NoSuchUpload,
    /// Network, timeout, throttling or a 5xx: worth retrying.
    Transient,
    /// Anything else (a 4xx the request caused).
    Other,
}

/// The kind of `err` and a message for people (never a credential).
pub fn classify<E>(err: &SdkError<E>) -> (ErrorKind, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    match err {
        SdkError::TimeoutError(_) => (ErrorKind::Transient, "request timed out".into()),
        SdkError::DispatchFailure(e) => {
            let why = if e.is_timeout() {
                "connect timed out"
            } else if e.is_io() {
                "connection failed"
            } else {
                "request could not be sent"
            };
            (
                ErrorKind::Transient,
                format!("could not reach the endpoint: {why}"),
            )
        }
        SdkError::ResponseError(_) => (
            ErrorKind::Transient,
            "the response could not be read".into(),
        ),
        SdkError::ServiceError(service) => {
            let e = service.err();
            let code = e.code().unwrap_or("");
            let message = match (e.message(), code, status) {
                (Some(m), c, _) if !c.is_empty() => format!("{m} ({c})"),
                (Some(m), _, _) => m.to_owned(),
                (None, c, Some(s)) if !c.is_empty() => format!("{c} (HTTP {s})"),
                (None, c, None) if !c.is_empty() => c.to_owned(),
                (None, _, Some(s)) => format!("HTTP {s}"),
                (None, _, None) => "no error details".to_owned(),
            };
            let kind = kind_of(code, status);
            let message = if kind == ErrorKind::Auth {
                format!(
                    "S3 rejected the credentials: {message}; check the access key, secret key and bucket permissions"
                )
            } else {
                message
            };
            (kind, message)
        }
        other => (ErrorKind::Other, other.to_string()),
    }
}

/// The kind of a service error from its code and HTTP status (pure).
pub fn kind_of(code: &str, status: Option<u16>) -> ErrorKind {
    match (code, status) {
        (
            "AccessDenied"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "InvalidToken"
            | "ExpiredToken",
            _,
        )
        | (_, Some(401 | 403)) => ErrorKind::Auth,
        ("NoSuchUpload", _) => ErrorKind::NoSuchUpload,
        ("NoSuchKey" | "NotFound" | "NoSuchBucket", _) | (_, Some(404)) => ErrorKind::NotFound,
        ("SlowDown" | "InternalError" | "ServiceUnavailable" | "RequestTimeout", _) => {
            ErrorKind::Transient
        }
        (_, Some(s)) if s >= 500 || s == 429 => ErrorKind::Transient,
        _ => ErrorKind::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_are_classified_by_code_then_status() {
        assert_eq!(kind_of("SignatureDoesNotMatch", Some(403)), ErrorKind::Auth);
        assert_eq!(kind_of("", Some(401)), ErrorKind::Auth);
        assert_eq!(kind_of("NoSuchUpload", Some(404)), ErrorKind::NoSuchUpload);
        assert_eq!(kind_of("NoSuchKey", Some(404)), ErrorKind::NotFound);
        assert_eq!(kind_of("", Some(404)), ErrorKind::NotFound);
        assert_eq!(kind_of("SlowDown", Some(503)), ErrorKind::Transient);
        assert_eq!(kind_of("", Some(429)), ErrorKind::Transient);
        assert_eq!(kind_of("InvalidArgument", Some(400)), ErrorKind::Other);
    }

    #[test]
    fn a_client_is_built_without_touching_the_network() {
        let c = client(&ClientSettings {
            endpoint: "http://127.0.0.1:1",
            region: "us-east-1",
            access_key: "k",
            secret_key: "s",
            timeout: Duration::from_secs(1),
            sdk_retries: false,
            provider: "test",
        });
        assert_eq!(
            c.config().region().map(|r| r.as_ref().to_owned()),
            Some("us-east-1".to_owned())
        );
    }
}
