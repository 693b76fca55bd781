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
//! serves TLS with a certificate from its own CA; this sink verifies it instead, against
//! `ca-file` (the CA in Argo's `eventbus-<name>-js-server` Secret, key `ca-cert`) and the system
//! roots. With TLS on it ignores the servers the cluster advertises (see `build`). It connects
//! in the background and keeps reconnecting, so the gateway starts while the EventBus is down;
//! until connected, deliveries are retryable and readiness says why.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::context::{GetStreamErrorKind, PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, ErrorCode};
use async_nats::{ConnectOptions, Event, ServerAddr, Subject};
use bytes::Bytes;

use super::{read_secret, show_duration, ArgoRouting, DeliveryOutcome, EventbusConfig, SinkError};
use crate::redact::redact_url;
use crate::telemetry::ErrorChain;

/// The name the gateway's connection shows in the server's monitoring (`connz`).
const CONNECTION_NAME: &str = "tenant-gateway";

/// One connection attempt is quick or broken; the client then tries again (with backoff).
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
    /// Why the last connection attempt failed (e.g. `authorization violation`), until one
    /// succeeds: what readiness and deliveries report while not connected.
    last_error: Arc<Mutex<Option<String>>>,
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
        let shown_url = redact_url(&config.url);
        validate_server_urls(&config.url, &shown_url)?;
        validate_name("stream", &config.stream)?;
        validate_name("event-source-name", &config.event_source_name)?;
        validate_name("event-name", &config.event_name)?;
        if config.ack_timeout.is_zero() {
            return Err(SinkError::Config(
                "eventbus ack-timeout must be more than zero".to_owned(),
            ));
        }

        let tls = config.ca_file.is_some() || uses_tls(&config.url);
        let (connected_tx, mut connected) = tokio::sync::watch::channel(false);
        let last_error = Arc::new(Mutex::new(None));
        let mut options = ConnectOptions::new()
            .name(CONNECTION_NAME)
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(Some(config.ack_timeout))
            // Serve starts and journals while the EventBus is down: the client connects in the
            // background (async-nats `connect_with_options`: with this set, the first
            // `connector.connect()` runs in the connection task) and keeps trying forever.
            .retry_on_initial_connect()
            .max_reconnects(None)
            .event_callback({
                let last_error = last_error.clone();
                move |event| {
                    match &event {
                        Event::Connected => {
                            connected_tx.send_replace(true);
                            *lock(&last_error) = None;
                        }
                        Event::ClientError(error) => *lock(&last_error) = Some(error.to_string()),
                        _ => {}
                    }
                    log_connection_event(event)
                }
            });
        if tls {
            // A three-node EventBus advertises its peers by pod IP (INFO `connect_urls`), while
            // Argo's server certificate names only the Service
            // (`pkg/reconciler/eventbus/installer/jetstream.go` `createSecrets`: hosts
            // `<service>.<namespace>.svc[.cluster.local]`). async-nats adds advertised servers to
            // its pool (`connector.rs`, unless `ignore_discovered_servers`) and would then fail
            // TLS verification against them on every reconnect that picks one.
            options = options.ignore_discovered_servers().require_tls(true);
        }
        if let Some(path) = &config.ca_file {
            // Checked here so a missing mount fails startup, not every connection attempt.
            tokio::fs::metadata(path)
                .await
                .map_err(|e| SinkError::Secret {
                    what: "eventbus CA certificate",
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            options = options.add_root_certificates(path.clone());
        }
        let credentials = (
            &config.user,
            &config.password_file,
            &config.client_auth_file,
            &config.token_file,
        );
        options = match credentials {
            (None, None, None, None) => options,
            (Some(user), Some(path), None, None) => {
                let password = read_secret("eventbus password", path)?;
                options.user_and_password(user.clone(), password)
            }
            (None, None, Some(path), None) => {
                let (user, password) =
                    parse_client_auth(&read_secret("eventbus client-auth", path)?).ok_or_else(
                        || SinkError::Secret {
                            what: "eventbus client-auth",
                            path: path.clone(),
                            reason: "expected `username: ...` and `password: ...` lines, as in \
                                     Argo's eventbus-<name>-js-client-auth Secret"
                                .to_owned(),
                        },
                    )?;
                options.user_and_password(user, password)
            }
            (None, None, None, Some(path)) => options.token(read_secret("eventbus token", path)?),
            (Some(_), None, None, None) => {
                return Err(SinkError::Config(
                    "eventbus: user is set but password-file is not".to_owned(),
                ))
            }
            (None, Some(_), None, None) => {
                return Err(SinkError::Config(
                    "eventbus: password-file is set but user is not".to_owned(),
                ))
            }
            _ => return Err(SinkError::Config(
                "eventbus: set one of user and password-file, client-auth-file, or token-file, \
                     not several (not both)"
                    .to_owned(),
            )),
        };

        // With `retry_on_initial_connect` this returns at once; it fails only on options.
        let client =
            options
                .connect(config.url.as_str())
                .await
                .map_err(|e| SinkError::Connect {
                    url: shown_url.clone(),
                    reason: ErrorChain(&e).to_string(),
                })?;
        // A reachable EventBus is connected before the first delivery; an unreachable one does
        // not hold up startup longer than one connection attempt.
        let first_connection =
            tokio::time::timeout(CONNECT_TIMEOUT, connected.wait_for(|&connected| connected)).await;
        if !matches!(first_connection, Ok(Ok(_))) {
            tracing::warn!(
                url = %shown_url,
                "the NATS EventBus is not reachable yet; connecting in the background while \
                 ingest journals events"
            );
        }
        let mut context = jetstream::new(client.clone());
        context.set_timeout(config.ack_timeout);
        let subject = format!(
            "{}.{}.{}",
            config.stream, config.event_source_name, config.event_name
        );
        tracing::info!(url = %shown_url, %subject, tls, "connecting to the NATS EventBus in the background");
        Ok(EventbusSink {
            inner: Arc::new(Inner {
                client,
                jetstream: context,
                subject: Subject::from(subject),
                stream: config.stream.clone(),
                shown_url,
                last_error,
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
        if inner.client.connection_state() != State::Connected {
            // Not queued in the client: a publish buffered until the connection comes would
            // outlive its ack timeout and be sent again by the retry anyway.
            return DeliveryOutcome::Retryable {
                status: None,
                error: inner.not_connected(),
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
                    ErrorChain(e)
                ),
            },
            _ if is_jetstream_error(e, ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM) => {
                DeliveryOutcome::Permanent {
                    status: None,
                    error: format!(
                        "the event ({size} bytes) is larger than stream `{}` accepts: {}",
                        inner.stream,
                        ErrorChain(e)
                    ),
                }
            }
            _ => retryable(format!(
                "publish to {} on {} failed: {}",
                inner.subject,
                inner.shown_url,
                ErrorChain(e)
            )),
        }
    }

    pub(super) async fn check_ready(&self) -> Result<(), SinkError> {
        let inner = &*self.inner;
        if inner.client.connection_state() != State::Connected {
            return Err(SinkError::Unavailable(inner.not_connected()));
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
                        ErrorChain(&e)
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

impl Inner {
    /// Why the sink is not delivering while the client has no connection.
    fn not_connected(&self) -> String {
        let last = match lock(&self.last_error).as_deref() {
            Some(error) => format!("; last attempt: {error}"),
            None => String::new(),
        };
        format!(
            "not connected to NATS at {}: connecting in the background (events are journaled \
             and wait){last}",
            self.shown_url
        )
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether any of the comma-separated server URLs asks for TLS.
fn uses_tls(urls: &str) -> bool {
    urls.split(',')
        .any(|url| url.trim().to_ascii_lowercase().starts_with("tls://"))
}

/// The user and password of Argo's client-auth Secret value, written by
/// `pkg/reconciler/eventbus/installer/jetstream.go` `createSecrets` as
/// `fmt.Sprintf("username: %s\npassword: %s", jsUser, jsPass)` (random alphanumerics).
fn parse_client_auth(text: &str) -> Option<(String, String)> {
    let (mut user, mut password) = (None, None);
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_owned();
        match key.trim() {
            "username" if !value.is_empty() => user = Some(value),
            "password" if !value.is_empty() => password = Some(value),
            _ => {}
        }
    }
    Some((user?, password?))
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
    fn argo_client_auth_secret_is_read() {
        // The exact format of argo-events `createSecrets`.
        assert_eq!(
            parse_client_auth("username: aB3dE6gH\npassword: q1w2e3r4t5y6u7i8"),
            Some(("aB3dE6gH".to_owned(), "q1w2e3r4t5y6u7i8".to_owned()))
        );
        assert_eq!(parse_client_auth("username: a\n"), None);
        assert_eq!(parse_client_auth("password: b"), None);
        assert_eq!(parse_client_auth("s3cret"), None);
    }

    #[test]
    fn tls_is_on_for_tls_urls() {
        assert!(uses_tls(
            "tls://eventbus-default-js-svc.argo-events.svc:4222"
        ));
        assert!(uses_tls("nats://a:4222, TLS://b:4222"));
        assert!(!uses_tls("nats://a:4222"));
    }

    #[tokio::test]
    async fn client_auth_file_gives_user_and_password_and_excludes_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let auth = dir.path().join("client-auth");
        std::fs::write(&auth, "no credentials here").unwrap();
        let mut bad = config("nats://127.0.0.1:1");
        bad.client_auth_file = Some(auth.clone());
        let err = EventbusSink::build(&bad).await.unwrap_err().to_string();
        assert!(err.contains("expected `username: ...`"), "{err}");
        assert!(!err.contains("no credentials here"), "{err}");

        let mut both = config("nats://127.0.0.1:1");
        both.client_auth_file = Some(auth);
        both.user = Some("argo".to_owned());
        both.password_file = Some("/nonexistent".into());
        let err = EventbusSink::build(&both).await.unwrap_err().to_string();
        assert!(err.contains("not several"), "{err}");

        let mut missing_ca = config("tls://127.0.0.1:1");
        missing_ca.ca_file = Some(dir.path().join("ca-cert"));
        let err = EventbusSink::build(&missing_ca)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("eventbus CA certificate"), "{err}");
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
            client_auth_file: None,
            token_file: None,
            ca_file: None,
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
