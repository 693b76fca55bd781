//! The `eventbus` sink: publishes each emission to the Argo Events JetStream EventBus exactly as
//! an Argo EventSource does, so Sensors consume it like any other event.
//!
//! Argo's conventions, as read in argoproj/argo-events:
//! - `pkg/eventbus/jetstream/eventsource/source_conn.go`: an EventSource publishes with
//!   `JSContext.Publish(subject, body, nats.MsgId(msg.ID))` to
//!   `subject := fmt.Sprintf("default.%s.%s", EventSourceName, EventName)`; the message id is the
//!   CloudEvent id, so JetStream deduplicates a re-publish of one event.
//! - `pkg/eventsources/eventing.go`: the body is `json.Marshal(event)` of a CloudEvents SDK
//!   event, i.e. the structured-mode JSON of a CloudEvent 1.0, and `msg.ID` is `event.ID()`.
//! - `pkg/eventbus/jetstream/base/jetstream.go` (`CreateStream`) and
//!   `pkg/apis/events/v1alpha1` (`JetStreamStreamName = "default"`): the EventBus stream is named
//!   `default`, takes subjects `default.*.*`, file storage; retention, limits and the duplicates
//!   window come from the EventBus `streamConfig` (controller defaults: limits retention, discard
//!   old, `duplicates: 300s`).
//! - `pkg/eventbus/jetstream/sensor/trigger_conn.go`: a Sensor pull-subscribes to
//!   `default.<eventSourceName>.<eventName>` per dependency, unmarshals the body as a CloudEvent,
//!   and then looks the dependency up by the event's `source` and `subject`
//!   (`getDependencyNames(event.Source(), event.Subject())`), discarding events whose
//!   `source`/`subject` are not an `eventSourceName`/`eventName` pair it depends on.
//!
//! So the sink sends the body unchanged to `<stream>.<event-source-name>.<event-name>` with
//! `Nats-Msg-Id` = the emission id, and waits for the publish ack. A redelivery of the same
//! emission within the duplicates window is acknowledged as a duplicate and stored once.
//!
//! Argo's own clients connect with `nats.Secure(InsecureSkipVerify)` to a managed EventBus that
//! serves TLS with a self-signed certificate; this sink uses `nats://` (plain) or `tls://`
//! (system roots) URLs.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::context::{GetStreamErrorKind, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, ErrorCode};
use async_nats::{ConnectOptions, Event, ServerAddr, Subject};
use bytes::Bytes;

use super::{
    error_chain, read_secret, redact_urls, show_duration, ArgoRouting, DeliveryOutcome,
    EventbusConfig, SinkError,
};

/// The name the gateway's connection shows in the server's monitoring (`connz`).
const CONNECTION_NAME: &str = "tenant-gateway";

/// Connecting is quick or broken; an unreachable server must fail startup promptly.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Publishes emissions to one subject of the EventBus. Cheap to clone.
#[derive(Clone)]
pub struct EventbusSink {
    /// Shared by clones: one NATS connection per sink.
    inner: Arc<Inner>,
}

struct Inner {
    /// Kept for the connection state (readiness without a round trip).
    client: async_nats::Client,
    /// Publishes and stream lookups, with `ack_timeout` as its request timeout.
    jetstream: jetstream::Context,
    /// `<stream>.<event-source-name>.<event-name>`, validated at build.
    subject: Subject,
    /// The stream the subject must land in.
    stream: String,
    /// The server URL(s) as shown in messages, credentials masked.
    shown_url: String,
    /// Upper bound of one whole publish (send and ack).
    ack_timeout: Duration,
    /// What Argo's Sensors route by: the event's `source` must be the EventSource name and its
    /// `subject` the event name (argo-events `pkg/eventbus/jetstream/sensor/trigger_conn.go`).
    routing: ArgoRouting,
}

impl fmt::Debug for EventbusSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl EventbusSink {
    pub(super) async fn build(config: &EventbusConfig) -> Result<EventbusSink, SinkError> {
        let shown_url = redact_urls(&config.url);
        validate_server_urls(&config.url, &shown_url)?;
        validate_name("stream", &config.stream)?;
        validate_name("event-source-name", &config.event_source_name)?;
        validate_name("event-name", &config.event_name)?;
        if config.ack_timeout.is_zero() {
            return Err(SinkError::Config(
                "eventbus ack-timeout must be more than zero".to_owned(),
            ));
        }

        let mut options = ConnectOptions::new()
            .name(CONNECTION_NAME)
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(Some(config.ack_timeout))
            .event_callback(log_connection_event);
        options = match (&config.user, &config.password_file, &config.token_file) {
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                return Err(SinkError::Config(
                    "eventbus: set either user and password-file or token-file, not both"
                        .to_owned(),
                ))
            }
            (Some(user), Some(path), None) => {
                let password = read_secret("eventbus password", path).await?;
                options.user_and_password(user.clone(), password)
            }
            (Some(_), None, None) => {
                return Err(SinkError::Config(
                    "eventbus: user is set but password-file is not".to_owned(),
                ))
            }
            (None, Some(_), None) => {
                return Err(SinkError::Config(
                    "eventbus: password-file is set but user is not".to_owned(),
                ))
            }
            (None, None, Some(path)) => options.token(read_secret("eventbus token", path).await?),
            (None, None, None) => options,
        };

        let client =
            options
                .connect(config.url.as_str())
                .await
                .map_err(|e| SinkError::Connect {
                    url: shown_url.clone(),
                    reason: error_chain(&e),
                })?;
        let mut context = jetstream::new(client.clone());
        context.set_timeout(config.ack_timeout);
        let subject = format!(
            "{}.{}.{}",
            config.stream, config.event_source_name, config.event_name
        );
        tracing::info!(url = %shown_url, %subject, "connected to the NATS EventBus");
        Ok(EventbusSink {
            inner: Arc::new(Inner {
                client,
                jetstream: context,
                subject: Subject::from(subject),
                stream: config.stream.clone(),
                shown_url,
                ack_timeout: config.ack_timeout,
                routing: ArgoRouting {
                    event_source_name: config.event_source_name.clone(),
                    event_name: config.event_name.clone(),
                },
            }),
        })
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "eventbus {} subject {}",
            self.inner.shown_url, self.inner.subject
        )
    }

    /// The subject emissions are published to (`<stream>.<event-source-name>.<event-name>`).
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// The names the published events must carry as `source` and `subject`.
    pub fn routing(&self) -> &ArgoRouting {
        &self.inner.routing
    }

    pub(super) async fn deliver(&self, emission_id: &str, body: &Bytes) -> DeliveryOutcome {
        let inner = &*self.inner;
        if emission_id.is_empty() || emission_id.chars().any(char::is_control) {
            return DeliveryOutcome::Permanent {
                status: None,
                error: format!(
                    "emission id {emission_id:?} cannot be a Nats-Msg-Id header (empty or control characters)"
                ),
            };
        }
        let publish = PublishMessage::build()
            .payload(body.clone())
            .message_id(emission_id);
        let attempt = async {
            inner
                .jetstream
                .send_publish(inner.subject.clone(), publish)
                .await?
                .await
        };
        // Sending and the ack each wait up to the context timeout; this bounds them together.
        match tokio::time::timeout(inner.ack_timeout, attempt).await {
            Ok(Ok(ack)) => {
                if ack.duplicate {
                    tracing::debug!(
                        emission_id,
                        stream = %ack.stream,
                        sequence = ack.sequence,
                        "JetStream acknowledged a duplicate: the emission was already stored"
                    );
                }
                DeliveryOutcome::Delivered { status: None }
            }
            Ok(Err(e)) => self.publish_failed(&e, body.len()),
            Err(_) => DeliveryOutcome::Retryable {
                status: None,
                error: format!(
                    "no publish ack from {} within {} (subject {})",
                    inner.shown_url,
                    show_duration(inner.ack_timeout),
                    inner.subject
                ),
            },
        }
    }

    fn publish_failed(&self, e: &PublishError, size: usize) -> DeliveryOutcome {
        let inner = &*self.inner;
        let retryable = |error: String| DeliveryOutcome::Retryable {
            status: None,
            error,
        };
        match e.kind() {
            PublishErrorKind::StreamNotFound => retryable(format!(
                "no JetStream stream takes subject `{}` on {} (no responders): is stream `{}` missing? \
                 Create the Argo EventBus first",
                inner.subject, inner.shown_url, inner.stream
            )),
            PublishErrorKind::TimedOut => retryable(format!(
                "no publish ack from {} within {} (subject {})",
                inner.shown_url,
                show_duration(inner.ack_timeout),
                inner.subject
            )),
            PublishErrorKind::BrokenPipe => retryable(format!(
                "the connection to {} was lost before the publish ack",
                inner.shown_url
            )),
            PublishErrorKind::MaxPayloadExceeded => DeliveryOutcome::Permanent {
                status: None,
                error: format!(
                    "the event ({size} bytes) is larger than the NATS server accepts: {}",
                    error_chain(e)
                ),
            },
            _ if is_jetstream_error(e, ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM) => {
                DeliveryOutcome::Permanent {
                    status: None,
                    error: format!(
                        "the event ({size} bytes) is larger than stream `{}` accepts: {}",
                        inner.stream,
                        error_chain(e)
                    ),
                }
            }
            _ => retryable(format!(
                "publish to {} on {} failed: {}",
                inner.subject,
                inner.shown_url,
                error_chain(e)
            )),
        }
    }

    pub(super) async fn check_ready(&self) -> Result<(), SinkError> {
        let inner = &*self.inner;
        if inner.client.connection_state() != State::Connected {
            return Err(SinkError::Unavailable(format!(
                "not connected to NATS at {} (reconnecting)",
                inner.shown_url
            )));
        }
        let stream = match inner.jetstream.get_stream(&inner.stream).await {
            Ok(stream) => stream,
            Err(e) => {
                return Err(match e.kind() {
                    GetStreamErrorKind::JetStream(api)
                        if api.error_code() == ErrorCode::STREAM_NOT_FOUND =>
                    {
                        SinkError::StreamMissing {
                            stream: inner.stream.clone(),
                            url: inner.shown_url.clone(),
                        }
                    }
                    _ => SinkError::Unavailable(format!(
                        "cannot look up JetStream stream `{}` on {} (is JetStream enabled?): {}",
                        inner.stream,
                        inner.shown_url,
                        error_chain(&e)
                    )),
                })
            }
        };
        let subjects = &stream.cached_info().config.subjects;
        if !subjects
            .iter()
            .any(|filter| subject_matches(filter, &inner.subject))
        {
            return Err(SinkError::SubjectNotCovered {
                stream: inner.stream.clone(),
                url: inner.shown_url.clone(),
                subject: inner.subject.to_string(),
                subjects: subjects.join(", "),
            });
        }
        Ok(())
    }
}

/// Connection changes are what an operator needs to see when deliveries start failing.
async fn log_connection_event(event: Event) {
    match event {
        Event::Connected => tracing::info!("NATS EventBus connection established"),
        Event::Disconnected => tracing::warn!("NATS EventBus connection lost; reconnecting"),
        Event::Closed => tracing::warn!("NATS EventBus connection closed"),
        Event::LameDuckMode => {
            tracing::warn!("NATS server entered lame duck mode; it will close the connection")
        }
        other => tracing::warn!(event = %other, "NATS EventBus connection event"),
    }
}

fn is_jetstream_error(e: &PublishError, code: ErrorCode) -> bool {
    std::error::Error::source(e)
        .and_then(|source| source.downcast_ref::<jetstream::Error>())
        .is_some_and(|api| api.error_code() == code)
}

/// Checks each URL parses, and refuses credentials in them: the NATS client ignores a URL's user
/// information, so they would silently not be sent.
fn validate_server_urls(urls: &str, shown: &str) -> Result<(), SinkError> {
    for url in urls.split(',') {
        let addr = url.trim().parse::<ServerAddr>().map_err(|e| {
            SinkError::Config(format!(
                "eventbus url `{shown}` is not a NATS server URL: {e}"
            ))
        })?;
        if addr.username().is_some() || addr.password().is_some() {
            return Err(SinkError::Config(format!(
                "eventbus url `{shown}` carries credentials, which the NATS client does not use: \
                 set user and password-file, or token-file, instead"
            )));
        }
    }
    Ok(())
}

/// A stream name or one subject token: NATS forbids separators and wildcards in both, and an
/// invalid one would only show up as publishes that never land.
fn validate_name(key: &str, value: &str) -> Result<(), SinkError> {
    if value.is_empty() {
        return Err(SinkError::Config(format!(
            "eventbus {key} must not be empty"
        )));
    }
    if let Some(bad) = value
        .chars()
        .find(|&c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err(SinkError::Config(format!(
            "eventbus {key} `{value}` contains {bad:?}, which NATS does not allow in a stream name or subject token"
        )));
    }
    Ok(())
}

/// Whether `subject` matches a stream's subject filter (`*` one token, `>` the rest).
fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut filter_tokens = filter.split('.');
    let mut subject_tokens = subject.split('.');
    loop {
        match (filter_tokens.next(), subject_tokens.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(f), Some(s)) if f == s => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_filters_match_like_nats() {
        assert!(subject_matches(
            "default.*.*",
            "default.tenant-gateway.lifecycle"
        ));
        assert!(subject_matches("default.>", "default.a.b"));
        assert!(subject_matches("default.a.b", "default.a.b"));
        assert!(!subject_matches("default.*", "default.a.b"));
        assert!(!subject_matches("default.*.*.*", "default.a.b"));
        assert!(!subject_matches("other.*.*", "default.a.b"));
    }

    #[test]
    fn names_are_validated() {
        assert!(validate_name("event-name", "lifecycle").is_ok());
        assert!(validate_name("event-name", "tenant_gateway-1").is_ok());
        for bad in ["", "a.b", "a b", "*", ">", "a\n"] {
            assert!(validate_name("event-name", bad).is_err(), "{bad:?}");
        }
    }

    fn config(url: &str) -> EventbusConfig {
        EventbusConfig {
            url: url.to_owned(),
            stream: "default".to_owned(),
            event_source_name: "tenant-gateway".to_owned(),
            event_name: "lifecycle".to_owned(),
            user: None,
            password_file: None,
            token_file: None,
            ack_timeout: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn invalid_settings_fail_before_connecting() {
        let mut bad_name = config("nats://127.0.0.1:1");
        bad_name.event_name = "life.cycle".to_owned();
        let err = EventbusSink::build(&bad_name)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("event-name `life.cycle` contains '.'"),
            "{err}"
        );

        let mut both = config("nats://127.0.0.1:1");
        both.user = Some("argo".to_owned());
        both.token_file = Some("/nonexistent".into());
        let err = EventbusSink::build(&both).await.unwrap_err().to_string();
        assert!(err.contains("not both"), "{err}");

        let mut no_password = config("nats://127.0.0.1:1");
        no_password.user = Some("argo".to_owned());
        let err = EventbusSink::build(&no_password)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("password-file is not"), "{err}");

        let err = EventbusSink::build(&config("nats://user:hunter2@host:notaport"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not a NATS server URL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");

        let err = EventbusSink::build(&config(
            "nats://127.0.0.1:1,nats://argo:hunter2@127.0.0.1:2",
        ))
        .await
        .unwrap_err()
        .to_string();
        assert!(err.contains("carries credentials"), "{err}");
        assert!(err.contains("nats://***@127.0.0.1:2"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
