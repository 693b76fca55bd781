//! One completion event on the wire: the structured-mode CloudEvent built from an outbox row,
//! the request that carries it (bearer token, Standard Webhooks signature) and what its answer
//! means (`docs/lifecycle-outcomes.md`, "Completion events").

use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use reqwest::{StatusCode, Url};
use uuid::Uuid;

use super::{NotifyError, NotifySettings};
use crate::dispatch::sinks::read_excerpt;
use crate::ingest::signature::{self, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use crate::journal::PendingNotification;
use crate::redact::redact_url;
use crate::secret_file::{read_secret_file, SecretFileError};
use crate::telemetry::ErrorChain;

/// The structured-mode media type (CloudEvents JSON format, "Envelope").
const CLOUDEVENTS_JSON: &str = "application/cloudevents+json";

/// Connecting is quick or broken; the whole-request timeout covers a slow receiver.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the `[notify]` files hold, read and checked.
pub(super) struct NotifySecrets {
    /// The `Authorization` header value, when `token-file` is set.
    pub(super) authorization: Option<HeaderValue>,
    /// The decoded Standard Webhooks key, when `signing-secret-file` is set.
    pub(super) signing_key: Option<Vec<u8>>,
}

/// The receiver URL, parsed and checked: http or https with a host.
pub(super) fn parse_url(text: &str) -> Result<Url, NotifyError> {
    let shown = redact_url(text);
    let invalid = |reason: String| NotifyError::Invalid {
        key: "notify.url",
        reason,
    };
    let url = Url::parse(text).map_err(|e| invalid(format!("`{shown}` is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "`{shown}` must use http or https, not `{}`",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid(format!("`{shown}` has no host")));
    }
    Ok(url)
}

/// A zero timeout would fail every attempt at once.
pub(super) fn check_timeout(timeout: Duration) -> Result<(), NotifyError> {
    if timeout.is_zero() {
        return Err(NotifyError::Invalid {
            key: "notify.timeout",
            reason: "must be more than zero".to_owned(),
        });
    }
    Ok(())
}

/// Reads the token and signing secret files (through [`read_secret_file`]) and checks them.
pub(super) fn read_secrets(settings: &NotifySettings) -> Result<NotifySecrets, NotifyError> {
    fn unreadable(key: &'static str, error: SecretFileError) -> NotifyError {
        NotifyError::Invalid {
            key,
            reason: error.to_string(),
        }
    }
    let authorization = match &settings.token_file {
        Some(path) => {
            let token = read_secret_file(path).map_err(|e| unreadable("notify.token-file", e))?;
            let mut value = HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
                NotifyError::Invalid {
                    key: "notify.token-file",
                    reason: format!(
                        "the token in {} has characters not allowed in an HTTP header",
                        path.display()
                    ),
                }
            })?;
            // Keeps the token out of debug output of requests.
            value.set_sensitive(true);
            Some(value)
        }
        None => None,
    };
    let signing_key = match &settings.signing_secret_file {
        Some(path) => {
            let text =
                read_secret_file(path).map_err(|e| unreadable("notify.signing-secret-file", e))?;
            // The verifier's own parsing: what ingest accepts as a secret, we sign with.
            Some(
                signature::parse_secret(&text).map_err(|reason| NotifyError::Invalid {
                    key: "notify.signing-secret-file",
                    reason: format!("{}: {reason}", path.display()),
                })?,
            )
        }
        None => None,
    };
    Ok(NotifySecrets {
        authorization,
        signing_key,
    })
}

/// The structured-mode CloudEvent of a completion: every attribute from the outbox row, so each
/// attempt (and each replica) sends the same event.
pub fn completion_event(notification: &PendingNotification, source: &str) -> serde_json::Value {
    serde_json::json!({
        "specversion": "1.0",
        "id": notification.notification_id.to_string(),
        "source": source,
        "type": notification.event_type,
        "subject": notification.tenant,
        "time": notification.created_at,
        "datacontenttype": "application/json",
        "data": notification.data,
    })
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AttemptResult {
    /// 2xx: the receiver has it.
    Delivered,
    /// Timeout, connection error, 408, 429 or 5xx: worth trying again.
    Retryable(String),
    /// Any other answer: trying again would get the same one.
    Refused(String),
}

/// The upstream receiver: one HTTP client (one connection pool) and what every request carries.
pub(super) struct UpstreamReceiver {
    /// Built once: default headers, timeouts, no redirects.
    client: reqwest::Client,
    /// The receiver URL.
    url: Url,
    /// The URL as messages show it (user information and query masked).
    shown_url: String,
    /// Signs each attempt when set.
    signing_key: Option<Vec<u8>>,
    /// For timeout messages.
    timeout: Duration,
}

impl UpstreamReceiver {
    /// Checks the settings, reads the secrets and builds the client.
    pub(super) fn build(settings: &NotifySettings) -> Result<Self, NotifyError> {
        let url = parse_url(&settings.url)?;
        check_timeout(settings.timeout)?;
        let secrets = read_secrets(settings)?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(CLOUDEVENTS_JSON));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("tenant-gateway/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(value) = secrets.authorization {
            headers.insert(AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(settings.timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(settings.timeout))
            // A redirected POST would turn into a GET: a 3xx is reported as a refusal instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| NotifyError::HttpClient(ErrorChain(&e.without_url()).to_string()))?;
        Ok(UpstreamReceiver {
            client,
            shown_url: redact_url(&settings.url),
            url,
            signing_key: secrets.signing_key,
            timeout: settings.timeout,
        })
    }

    /// The URL as logs show it.
    pub(super) fn shown_url(&self) -> &str {
        &self.shown_url
    }

    /// POSTs `body` once; `timestamp` (Unix seconds, the attempt's own time) is what the
    /// signature covers, so a retry is signed anew while its `webhook-id` stays `id`.
    pub(super) async fn post(&self, id: Uuid, body: &Bytes, timestamp: i64) -> AttemptResult {
        let mut request = self.client.post(self.url.clone()).body(body.clone());
        if let Some(key) = &self.signing_key {
            let id = id.to_string();
            request = request
                .header(HEADER_SIGNATURE, signature::sign(key, &id, timestamp, body))
                .header(HEADER_TIMESTAMP, timestamp.to_string())
                .header(HEADER_ID, id);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return self.request_failed(error),
        };
        let status = response.status();
        let excerpt = read_excerpt(response).await;
        if status.is_success() {
            return AttemptResult::Delivered;
        }
        let error = if excerpt.is_empty() {
            format!("HTTP {status} from {}", self.shown_url)
        } else {
            format!("HTTP {status} from {}: {excerpt}", self.shown_url)
        };
        if is_retryable(status) {
            AttemptResult::Retryable(error)
        } else {
            AttemptResult::Refused(error)
        }
    }

    fn request_failed(&self, error: reqwest::Error) -> AttemptResult {
        let (builder, connect, timeout) =
            (error.is_builder(), error.is_connect(), error.is_timeout());
        // The URL is in the message already (masked); the error's own copy is not.
        let cause = ErrorChain(&error.without_url()).to_string();
        if builder {
            return AttemptResult::Refused(format!(
                "cannot build the request to {}: {cause}",
                self.shown_url
            ));
        }
        AttemptResult::Retryable(if connect {
            format!("cannot connect to {}: {cause}", self.shown_url)
        } else if timeout {
            format!(
                "no answer from {} within {}: {cause}",
                self.shown_url,
                humantime::format_duration(self.timeout)
            )
        } else {
            format!("request to {} failed: {cause}", self.shown_url)
        })
    }
}

/// 408 (the receiver gave up waiting), 429 and 5xx are worth retrying; any other non-2xx is not.
fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_statuses() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [300, 301, 400, 401, 403, 404, 409, 410, 413, 422] {
            assert!(!is_retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }

    #[test]
    fn urls_must_be_http_with_a_host() {
        for (url, expected) in [
            ("ftp://host/x", "must use http or https, not `ftp`"),
            ("not a url", "is not a URL"),
            ("http://", "is not a URL"),
        ] {
            let err = parse_url(url).unwrap_err().to_string();
            assert!(err.starts_with("invalid notify.url: "), "{url}: {err}");
            assert!(err.contains(expected), "{url}: {err}");
        }
        let err = parse_url("ftp://user:hunter2@host/x")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(parse_url("https://upstream.example/hooks").is_ok());
    }
}
