//! The `webhook` sink: POSTs each emission to an Argo Events webhook EventSource.
//!
//! What Argo's webhook EventSource does with the request (argoproj/argo-events,
//! `pkg/eventsources/common/webhook/webhook.go` and `pkg/eventsources/sources/webhook/start.go`):
//! it checks `Authorization: Bearer <token>` when the EventSource has an `authSecret` (401
//! otherwise), checks the method (400), reads the body up to its payload limit (400 beyond it),
//! wraps it as `{"header": ..., "body": <the JSON body>}` (400 when the body is not JSON), and
//! answers only after publishing that to its EventBus: 200 `success`, or 500 `failed to record
//! event` when the publish failed after its retries. So 2xx means the event is on the bus, 5xx
//! is worth retrying, and other 4xx will not change by retrying, except the 400 `endpoint is
//! inactive` of a route not registered yet (see [`ROUTE_INACTIVE`]).
//!
//! The request is structured-mode CloudEvents (`application/cloudevents+json`); Argo does not
//! look at the content type (anything but a form is read as JSON), and Sensors find the event
//! under `body`. Redirects are not followed: a POST redirected by a misconfigured URL would turn
//! into a GET, so a 3xx is reported (permanent) instead.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use reqwest::{StatusCode, Url};

use super::WebhookConfig;
use super::{read_secret, show_duration, DeliveryOutcome, SinkError};
use crate::redact::redact_url;
use crate::telemetry::ErrorChain;

/// The structured-mode media type, with the charset the JSON is written in.
const CLOUDEVENTS_JSON: &str = "application/cloudevents+json; charset=utf-8";

/// Connecting is quick or broken; a slow answer (Argo publishing to its bus) is what the
/// whole-request timeout is for.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest excerpt of an answer kept in an error message.
const EXCERPT_CHARS: usize = 256;

/// How much of an error answer is read: enough for the excerpt, and enough for small answers
/// to be read whole so the connection can be reused.
const DRAIN_LIMIT: usize = 64 * 1024;

/// POSTs emissions to one webhook URL. Cheap to clone.
#[derive(Clone)]
pub struct WebhookSink {
    /// Shared by clones: one HTTP client (one connection pool) per sink.
    inner: Arc<Inner>,
}

struct Inner {
    /// Built once: connection pool, TLS roots and timeouts.
    client: reqwest::Client,
    /// The endpoint, validated at build.
    url: Url,
    /// The endpoint as shown in messages, user information masked.
    shown_url: String,
    /// For timeout messages.
    timeout: Duration,
}

impl fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl WebhookSink {
    pub(super) async fn build(config: &WebhookConfig) -> Result<WebhookSink, SinkError> {
        let shown_url = redact_url(&config.url);
        let url = Url::parse(&config.url).map_err(|e| {
            SinkError::Config(format!("webhook url `{shown_url}` is not a valid URL: {e}"))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SinkError::Config(format!(
                "webhook url `{shown_url}` must use http or https, not `{}`",
                url.scheme()
            )));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(SinkError::Config(format!(
                "webhook url `{shown_url}` has no host"
            )));
        }
        if config.timeout.is_zero() {
            return Err(SinkError::Config(
                "webhook timeout must be more than zero".to_owned(),
            ));
        }
        if config.timeout < Duration::from_secs(15) {
            tracing::warn!(
                timeout = %show_duration(config.timeout),
                "webhook timeout is under 15s: Argo's webhook EventSource answers after its EventBus \
                 publish, whose retries can take 5 to 10s, so slow publishes will be retried needlessly"
            );
        }

        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(CLOUDEVENTS_JSON));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("tenant-gateway/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(path) = &config.token_file {
            let token = read_secret("webhook token", path)?;
            let mut value = HeaderValue::try_from(format!("Bearer {token}")).map_err(|_| {
                SinkError::Config(format!(
                    "the webhook token in {} contains characters not allowed in an HTTP header",
                    path.display()
                ))
            })?;
            // Keeps the token out of debug output of requests.
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }

        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(config.timeout))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| SinkError::HttpClient(ErrorChain(&e.without_url()).to_string()))?;

        Ok(WebhookSink {
            inner: Arc::new(Inner {
                client,
                url,
                shown_url,
                timeout: config.timeout,
            }),
        })
    }

    pub(super) fn describe(&self) -> String {
        format!("webhook {}", self.inner.shown_url)
    }

    pub(super) async fn deliver(&self, body: &Bytes) -> DeliveryOutcome {
        let inner = &*self.inner;
        let sent = inner
            .client
            .post(inner.url.clone())
            .body(body.clone())
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return self.request_failed(e),
        };
        let status = response.status();
        if status.is_success() {
            // Reading the (short) answer lets the connection go back to the pool.
            let _ = read_excerpt(response).await;
            return DeliveryOutcome::Delivered {
                status: Some(status.as_u16()),
            };
        }
        let excerpt = read_excerpt(response).await;
        let error = if excerpt.is_empty() {
            format!("HTTP {status} from {}", inner.shown_url)
        } else {
            format!("HTTP {status} from {}: {excerpt}", inner.shown_url)
        };
        let retryable = is_retryable(status) || is_route_inactive(status, &excerpt);
        let status = Some(status.as_u16());
        if retryable {
            DeliveryOutcome::Retryable { status, error }
        } else {
            DeliveryOutcome::Permanent { status, error }
        }
    }

    fn request_failed(&self, e: reqwest::Error) -> DeliveryOutcome {
        let inner = &*self.inner;
        let (builder, timeout, connect) = (e.is_builder(), e.is_timeout(), e.is_connect());
        // The URL is already in the message (masked); the error's own copy is not.
        let cause = ErrorChain(&e.without_url()).to_string();
        if builder {
            return DeliveryOutcome::Permanent {
                status: None,
                error: format!("cannot build the request to {}: {cause}", inner.shown_url),
            };
        }
        let error = if connect {
            // Includes connect timeouts (CONNECT_TIMEOUT), which are not about Argo being slow.
            format!("cannot connect to {}: {cause}", inner.shown_url)
        } else if timeout {
            format!(
                "timed out after {} waiting for {} (Argo answers after its EventBus publish): {cause}",
                show_duration(inner.timeout),
                inner.shown_url
            )
        } else {
            format!("request to {} failed: {cause}", inner.shown_url)
        };
        DeliveryOutcome::Retryable {
            status: None,
            error,
        }
    }
}

/// 429 and 5xx are worth retrying (`docs/dispatch.md`, "Retries"); any other non-2xx is not.
fn is_retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// What Argo's webhook EventSource answers while its route is not active yet, as on every
/// EventSource restart or rollout: `pkg/eventsources/sources/webhook/start.go` checks
/// `route.Active` first and calls `sharedutil.SendErrorResponse(writer, "endpoint is inactive")`,
/// which (`pkg/shared/util/util.go`) writes status 400 and exactly that text. The route comes
/// back by itself, so this 400 is retried; every other 400 is about the request and stays
/// permanent.
const ROUTE_INACTIVE: &str = "endpoint is inactive";

fn is_route_inactive(status: StatusCode, excerpt: &str) -> bool {
    status == StatusCode::BAD_REQUEST && excerpt == ROUTE_INACTIVE
}

/// The start of the answer, on one line and at most [`EXCERPT_CHARS`] characters; reading stops
/// quietly at an error, since the status already tells what happened. Also what the notifier
/// records of a refused completion event.
pub(crate) async fn read_excerpt(mut response: reqwest::Response) -> String {
    let mut head = Vec::new();
    let mut read = 0usize;
    while read < DRAIN_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                read += chunk.len();
                // Four bytes per character at most.
                let room = (EXCERPT_CHARS * 4).saturating_sub(head.len());
                head.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    excerpt(&head)
}

fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let printable: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    // Whitespace runs, line breaks included, become one space.
    let one_line = printable.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(EXCERPT_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_follows_the_design() {
        for code in [429, 500, 502, 503, 504] {
            assert!(is_retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [300, 301, 400, 401, 403, 404, 408, 409, 413, 415, 422] {
            assert!(!is_retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }

    #[test]
    fn only_the_inactive_route_400_is_retried() {
        assert!(is_route_inactive(
            StatusCode::BAD_REQUEST,
            "endpoint is inactive"
        ));
        for (code, body) in [
            (400, "http method does not match"),
            (400, "endpoint is inactive, really"),
            (404, "endpoint is inactive"),
            (400, ""),
        ] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(!is_route_inactive(status, body), "{code} {body}");
        }
    }

    #[test]
    fn excerpts_are_one_short_line() {
        assert_eq!(excerpt(b"failed to record event"), "failed to record event");
        assert_eq!(excerpt(b"  a\r\n\tb \x07 c\n"), "a b c");
        let long = "x".repeat(1000);
        assert_eq!(excerpt(long.as_bytes()).chars().count(), EXCERPT_CHARS);
        let accents = "é".repeat(1000);
        assert_eq!(excerpt(accents.as_bytes()).chars().count(), EXCERPT_CHARS);
        assert_eq!(excerpt(b""), "");
    }

    #[tokio::test]
    async fn invalid_urls_fail_at_build() {
        for (url, expected) in [
            ("ftp://host/x", "must use http or https, not `ftp`"),
            ("not a url", "is not a valid URL"),
            ("http://", "is not a valid URL"),
        ] {
            let config = WebhookConfig {
                url: url.to_owned(),
                token_file: None,
                timeout: Duration::from_secs(30),
            };
            let err = WebhookSink::build(&config).await.unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
        }
    }

    #[tokio::test]
    async fn credentials_in_the_url_are_masked() {
        let config = WebhookConfig {
            url: "ftp://user:hunter2@host/x".to_owned(),
            token_file: None,
            timeout: Duration::from_secs(30),
        };
        let err = WebhookSink::build(&config).await.unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }
}
