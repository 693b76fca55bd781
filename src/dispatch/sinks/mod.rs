//! Sinks: where the dispatcher's emissions go (see `docs/dispatch.md`, "Sinks").
//!
//! An emission is one canonical lifecycle CloudEvent in structured JSON
//! (`application/cloudevents+json`), identified by its emission id (the CloudEvent `id`). The
//! dispatcher hands it to [`Sink::deliver`] and records the [`DeliveryOutcome`]:
//!
//! | sink | what it does | Delivered | Retryable | Permanent |
//! | --- | --- | --- | --- | --- |
//! | `log` | one JSON line on stdout (the embedded default) | written | stdout write failed | never |
//! | `webhook` | POST to an Argo Events webhook EventSource | 2xx | timeout, connection error, 429, 5xx, 400 `endpoint is inactive` (an EventSource restarting) | other statuses (4xx, 3xx: redirects are not followed) |
//! | `eventbus` | JetStream publish to the Argo Events EventBus, as an EventSource does | publish ack (a duplicate ack included) | no ack in time, connection lost, no stream for the subject | a message the server can never take (over `max_payload`) |
//!
//! Retryable outcomes are retried by the dispatcher with backoff; permanent ones make the event
//! `dead` and park its tenant. Every failure is classified, never a panic, and error strings
//! carry the HTTP status and a short excerpt of the answer (webhook) or the reason (eventbus),
//! never a credential.
//!
//! A [`Sink`] is built once from its [`SinkConfig`] (the `[sink]` TOML table, or the `serve`
//! flags) with [`SinkConfig::build`]: credentials are read then, the webhook URL is validated,
//! and the eventbus connects, so a wrong configuration fails at startup with a clear message.
//! Sinks are cheap to clone and safe to share across the dispatcher's tenant workers.
//!
//! ```toml
//! [sink]
//! kind = "webhook"
//! url = "http://tenant-gateway-eventsource-svc.argo-events:12000/lifecycle"
//! token-file = "/var/run/secrets/webhook/token"
//! timeout = "30s"
//! ```

mod eventbus;
mod log;
mod webhook;

pub(crate) use webhook::read_excerpt;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Deserializer};

use crate::secret_file::SecretFileError;

pub use self::eventbus::EventbusSink;
pub use self::log::LogSink;
pub use self::webhook::WebhookSink;

/// Sink configuration, deserialized from the `[sink]` TOML table: `kind` picks the sink, the
/// other keys (kebab-case) configure it; unknown keys and kinds are errors.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(from = "SinkTable")]
pub enum SinkConfig {
    /// One JSON line per emission on stdout.
    #[default]
    Log,
    /// POST to an Argo Events webhook EventSource.
    Webhook(WebhookConfig),
    /// Publish to the Argo Events JetStream EventBus.
    Eventbus(EventbusConfig),
}

/// The `[sink]` table as written. It differs from [`SinkConfig`] only in `Log` being a struct
/// variant: serde ignores extra keys next to the tag of a unit variant, and `kind = "log"` with
/// a stray `url` must be an error like any other unknown key.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
enum SinkTable {
    Log {},
    Webhook(WebhookConfig),
    Eventbus(EventbusConfig),
}

impl From<SinkTable> for SinkConfig {
    fn from(table: SinkTable) -> SinkConfig {
        match table {
            SinkTable::Log {} => SinkConfig::Log,
            SinkTable::Webhook(config) => SinkConfig::Webhook(config),
            SinkTable::Eventbus(config) => SinkConfig::Eventbus(config),
        }
    }
}

/// The `webhook` sink's settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct WebhookConfig {
    /// http(s) URL of the Argo webhook EventSource endpoint (its `port` and `endpoint`).
    pub url: String,
    /// File holding the bearer token the EventSource's `authSecret` expects (a mounted
    /// Kubernetes Secret); read once at build; one trailing newline is dropped, an empty file refused.
    pub token_file: Option<PathBuf>,
    /// Whole-request timeout. Argo's webhook EventSource answers only after its own EventBus
    /// publish, whose retries take 5 to 10 s when the bus is slow, so the default (30 s) leaves
    /// room for that instead of retrying a request that is about to succeed (`docs/dispatch.md`,
    /// "Sinks": above 15 s).
    #[serde(
        default = "default_webhook_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub timeout: Duration,
}

/// The `eventbus` sink's settings: where Argo's JetStream EventBus is and which EventSource the
/// gateway publishes as.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct EventbusConfig {
    /// NATS server URL(s), comma-separated (`nats://`, or `tls://` to require TLS).
    #[serde(default = "default_nats_url")]
    pub url: String,
    /// JetStream stream of the EventBus; Argo's is always `default`, and it is also the first
    /// token of the subject, as Argo's EventSources publish to `default.<source>.<event>`.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// The EventSource name Sensors depend on (`dependencies[].eventSourceName`).
    pub event_source_name: String,
    /// The event name Sensors depend on (`dependencies[].eventName`).
    pub event_name: String,
    /// User of the EventBus `accessSecret` (basic auth); needs `password-file`.
    pub user: Option<String>,
    /// File holding the password for `user`; read once at build like `token_file`.
    pub password_file: Option<PathBuf>,
    /// The `client-auth` key of the Secret Argo generates for a JetStream EventBus
    /// (`eventbus-<name>-js-client-auth`), mounted as a file: `username: ..` and `password: ..`
    /// lines, read once at build. Argo picks both at random, so this is how a deployment uses
    /// them without copying the user name into the configuration.
    pub client_auth_file: Option<PathBuf>,
    /// File holding a token, for an EventBus that authenticates clients by token instead.
    pub token_file: Option<PathBuf>,
    /// PEM file of the CA that signed the EventBus's server certificate (the `ca-cert` key of
    /// Argo's `eventbus-<name>-js-server` Secret), trusted besides the system roots. Setting it
    /// requires TLS.
    pub ca_file: Option<PathBuf>,
    /// How long one publish waits for its JetStream ack before it counts as retryable; also
    /// bounds the stream check of [`Sink::check_ready`].
    #[serde(
        default = "default_ack_timeout",
        deserialize_with = "deserialize_duration"
    )]
    pub ack_timeout: Duration,
}

impl WebhookConfig {
    /// A webhook sink posting to `url`, without a token, with the default timeout (what the
    /// `serve --sink webhook` flags start from).
    pub fn new(url: String) -> Self {
        WebhookConfig {
            url,
            token_file: None,
            timeout: default_webhook_timeout(),
        }
    }
}

impl EventbusConfig {
    /// An eventbus sink publishing as `event_source_name`/`event_name` to the default NATS URL
    /// and stream, without credentials (what the `serve --sink eventbus` flags start from).
    pub fn new(event_source_name: String, event_name: String) -> Self {
        EventbusConfig {
            url: default_nats_url(),
            stream: default_stream(),
            event_source_name,
            event_name,
            user: None,
            password_file: None,
            client_auth_file: None,
            token_file: None,
            ca_file: None,
            ack_timeout: default_ack_timeout(),
        }
    }
}

fn default_webhook_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_nats_url() -> String {
    "nats://127.0.0.1:4222".to_owned()
}

fn default_stream() -> String {
    "default".to_owned()
}

fn default_ack_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Durations are written the human way (`"30s"`, `"1m 30s"`, `"500ms"`).
fn deserialize_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text).map_err(|e| {
        serde::de::Error::custom(format!(
            "invalid duration `{text}` ({e}): write a number with a unit, like \"30s\" or \"2m\""
        ))
    })
}

impl SinkConfig {
    /// Builds the sink: validates the settings, reads credential files, and for `eventbus`
    /// connects to NATS (failing clearly when the server is unreachable or refuses the
    /// credentials). Whether the stream exists is [`Sink::check_ready`]'s question, so the
    /// gateway can start before the EventBus does.
    pub async fn build(&self) -> Result<Sink, SinkError> {
        Ok(match self {
            SinkConfig::Log => Sink::Log(LogSink::stdout()),
            SinkConfig::Webhook(config) => Sink::Webhook(WebhookSink::build(config).await?),
            SinkConfig::Eventbus(config) => Sink::Eventbus(EventbusSink::build(config).await?),
        })
    }
}

/// The EventSource and event names an Argo JetStream Sensor matches a dependency by. It reads
/// them from the CloudEvent's `source` and `subject`, so events published straight onto the
/// EventBus must carry them there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgoRouting {
    /// Becomes the emitted event's `source`.
    pub event_source_name: String,
    /// Becomes the emitted event's `subject`.
    pub event_name: String,
}

/// A built sink; cheap to clone (shared connection and client inside).
#[derive(Clone, Debug)]
pub enum Sink {
    /// See [`LogSink`].
    Log(LogSink),
    /// See [`WebhookSink`].
    Webhook(WebhookSink),
    /// See [`EventbusSink`].
    Eventbus(EventbusSink),
}

impl Sink {
    /// `"log"`, `"webhook"` or `"eventbus"`: the metrics label.
    pub fn kind(&self) -> &'static str {
        match self {
            Sink::Log(_) => "log",
            Sink::Webhook(_) => "webhook",
            Sink::Eventbus(_) => "eventbus",
        }
    }

    /// For the `eventbus` sink, the `source` and `subject` its events must carry for Argo's
    /// Sensors to see them; `None` for sinks that keep the canonical attributes.
    pub fn argo_routing(&self) -> Option<&ArgoRouting> {
        match self {
            Sink::Eventbus(sink) => Some(sink.routing()),
            Sink::Log(_) | Sink::Webhook(_) => None,
        }
    }

    /// Where emissions go, for logs (credentials in URLs are masked).
    pub fn describe(&self) -> String {
        match self {
            Sink::Log(sink) => sink.describe(),
            Sink::Webhook(sink) => sink.describe(),
            Sink::Eventbus(sink) => sink.describe(),
        }
    }

    /// Delivers one emission. `emission_id` is the canonical CloudEvent's id; `body` is its
    /// structured-mode JSON (application/cloudevents+json). Never panics; classifies every
    /// failure.
    pub async fn deliver(&self, emission_id: &str, body: &Bytes) -> DeliveryOutcome {
        match self {
            Sink::Log(sink) => sink.deliver(body),
            Sink::Webhook(sink) => sink.deliver(body).await,
            Sink::Eventbus(sink) => sink.deliver(emission_id, body).await,
        }
    }

    /// Ok when the sink can take deliveries right now. For `eventbus` the connection must be up
    /// and the stream must exist and take the sink's subject. `log` and `webhook` are always
    /// ready: a webhook can only be probed by posting an event, and its failures are
    /// classified per delivery instead.
    pub async fn check_ready(&self) -> Result<(), SinkError> {
        match self {
            Sink::Log(_) | Sink::Webhook(_) => Ok(()),
            Sink::Eventbus(sink) => sink.check_ready().await,
        }
    }
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The sink took the emission: a 2xx, a JetStream publish ack, or the line was written.
    Delivered {
        /// The HTTP status, for the webhook sink.
        status: Option<u16>,
    },
    /// A transient failure worth retrying: timeout, connection error, 429, 5xx, no ack.
    Retryable {
        /// The HTTP status, when there was an answer.
        status: Option<u16>,
        /// What went wrong, for the attempt record and logs.
        error: String,
    },
    /// A failure that retrying cannot fix: another 4xx, or a body the sink can never take.
    Permanent {
        /// The HTTP status, when there was an answer.
        status: Option<u16>,
        /// What went wrong, for the attempt record and logs.
        error: String,
    },
}

impl DeliveryOutcome {
    /// The HTTP status of the answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            DeliveryOutcome::Delivered { status }
            | DeliveryOutcome::Retryable { status, .. }
            | DeliveryOutcome::Permanent { status, .. } => *status,
        }
    }

    /// The error text of a failed attempt.
    pub fn error(&self) -> Option<&str> {
        match self {
            DeliveryOutcome::Delivered { .. } => None,
            DeliveryOutcome::Retryable { error, .. } | DeliveryOutcome::Permanent { error, .. } => {
                Some(error)
            }
        }
    }

    /// `"delivered"`, `"retryable"` or `"permanent"`: a metrics label.
    pub fn label(&self) -> &'static str {
        match self {
            DeliveryOutcome::Delivered { .. } => "delivered",
            DeliveryOutcome::Retryable { .. } => "retryable",
            DeliveryOutcome::Permanent { .. } => "permanent",
        }
    }
}

/// Why a sink could not be built or is not ready. Messages name files, URLs (credentials
/// masked) and streams, never a secret's content.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// A setting is invalid; the message names it.
    #[error("invalid sink configuration: {0}")]
    Config(String),
    /// A credential file could not be read.
    #[error("cannot read the {what} file {}: {reason}", path.display())]
    Secret {
        /// Which credential (e.g. "webhook token").
        what: &'static str,
        /// The file, so the operator can check the mount.
        path: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// The webhook HTTP client could not be set up (e.g. TLS roots).
    #[error("cannot build the webhook HTTP client: {0}")]
    HttpClient(String),
    /// The NATS server refused or did not answer the connection.
    #[error("cannot connect to NATS at {url}: {reason}")]
    Connect {
        /// The server URL(s), credentials masked.
        url: String,
        /// What the client reported.
        reason: String,
    },
    /// The EventBus stream does not exist (yet).
    #[error("JetStream stream `{stream}` not found on {url}: create the Argo EventBus first")]
    StreamMissing {
        /// The stream name.
        stream: String,
        /// The server URL(s), credentials masked.
        url: String,
    },
    /// The stream exists but publishing to the sink's subject would find no stream.
    #[error(
        "JetStream stream `{stream}` on {url} does not take subject `{subject}` (its subjects: {subjects}): \
         check the stream and the event source and event names"
    )]
    SubjectNotCovered {
        /// The stream name.
        stream: String,
        /// The server URL(s), credentials masked.
        url: String,
        /// The subject the sink publishes to.
        subject: String,
        /// The stream's subjects, comma-separated.
        subjects: String,
    },
    /// The sink cannot take deliveries right now (connection down, JetStream not answering).
    #[error("{0}")]
    Unavailable(String),
}

/// Reads a credential file once with the crate's one secret-file rule (one trailing newline
/// dropped, an empty file refused: an empty token would silently disable authentication).
fn read_secret(what: &'static str, path: &Path) -> Result<String, SinkError> {
    crate::secret_file::read_secret_file(path).map_err(|e| SinkError::Secret {
        what,
        path: path.to_owned(),
        reason: match e {
            SecretFileError::Read { source, .. } => source.to_string(),
            SecretFileError::Empty { .. } => "the file is empty".to_owned(),
        },
    })
}

/// A duration for messages, e.g. `30s` or `1s 500ms`.
fn show_duration(duration: Duration) -> impl fmt::Display {
    humantime::format_duration(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct File {
        sink: SinkConfig,
    }

    fn parse(toml_text: &str) -> Result<SinkConfig, String> {
        toml::from_str::<File>(toml_text)
            .map(|file| file.sink)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn log_is_the_default_and_parses_by_kind() {
        assert_eq!(SinkConfig::default(), SinkConfig::Log);
        assert_eq!(parse("[sink]\nkind = \"log\"\n").unwrap(), SinkConfig::Log);
    }

    #[test]
    fn webhook_table_parses_with_defaults() {
        let sink =
            parse("[sink]\nkind = \"webhook\"\nurl = \"http://es.argo-events:12000/lifecycle\"\n")
                .unwrap();
        assert_eq!(
            sink,
            SinkConfig::Webhook(WebhookConfig {
                url: "http://es.argo-events:12000/lifecycle".to_owned(),
                token_file: None,
                timeout: Duration::from_secs(30),
            })
        );
    }

    #[test]
    fn webhook_table_parses_every_key() {
        let sink = parse(
            "[sink]\nkind = \"webhook\"\nurl = \"https://es.example/lifecycle\"\n\
             token-file = \"/run/secrets/token\"\ntimeout = \"45s\"\n",
        )
        .unwrap();
        assert_eq!(
            sink,
            SinkConfig::Webhook(WebhookConfig {
                url: "https://es.example/lifecycle".to_owned(),
                token_file: Some(PathBuf::from("/run/secrets/token")),
                timeout: Duration::from_secs(45),
            })
        );
    }

    #[test]
    fn eventbus_table_parses_with_defaults() {
        let sink = parse(
            "[sink]\nkind = \"eventbus\"\nevent-source-name = \"tenant-gateway\"\nevent-name = \"lifecycle\"\n",
        )
        .unwrap();
        assert_eq!(
            sink,
            SinkConfig::Eventbus(EventbusConfig {
                url: "nats://127.0.0.1:4222".to_owned(),
                stream: "default".to_owned(),
                event_source_name: "tenant-gateway".to_owned(),
                event_name: "lifecycle".to_owned(),
                user: None,
                password_file: None,
                client_auth_file: None,
                token_file: None,
                ca_file: None,
                ack_timeout: Duration::from_secs(10),
            })
        );
    }

    #[test]
    fn eventbus_table_parses_every_key() {
        let sink = parse(
            "[sink]\nkind = \"eventbus\"\nurl = \"nats://eventbus-default-stan-svc:4222\"\n\
             stream = \"default\"\nevent-source-name = \"gw\"\nevent-name = \"ev\"\n\
             user = \"argo\"\npassword-file = \"/run/pw\"\ntoken-file = \"/run/tk\"\nack-timeout = \"2s 500ms\"\n\
             client-auth-file = \"/run/client-auth\"\nca-file = \"/run/ca-cert\"\n",
        )
        .unwrap();
        let SinkConfig::Eventbus(config) = sink else {
            panic!("not an eventbus config: {sink:?}");
        };
        assert_eq!(config.user.as_deref(), Some("argo"));
        assert_eq!(config.password_file, Some(PathBuf::from("/run/pw")));
        assert_eq!(config.token_file, Some(PathBuf::from("/run/tk")));
        assert_eq!(config.ack_timeout, Duration::from_millis(2500));
        assert_eq!(
            config.client_auth_file,
            Some(PathBuf::from("/run/client-auth"))
        );
        assert_eq!(config.ca_file, Some(PathBuf::from("/run/ca-cert")));
    }

    #[test]
    fn eventbus_names_are_required() {
        let err = parse("[sink]\nkind = \"eventbus\"\nevent-name = \"lifecycle\"\n").unwrap_err();
        assert!(err.contains("missing field `event-source-name`"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected_for_every_kind() {
        let err =
            parse("[sink]\nkind = \"webhook\"\nurl = \"http://x\"\ntimout = \"5s\"\n").unwrap_err();
        assert!(err.contains("unknown field `timout`"), "{err}");
        let err = parse(
            "[sink]\nkind = \"eventbus\"\nevent-source-name = \"a\"\nevent-name = \"b\"\nsubject = \"x\"\n",
        )
        .unwrap_err();
        assert!(err.contains("unknown field `subject`"), "{err}");
        let err = parse("[sink]\nkind = \"log\"\nurl = \"http://x\"\n").unwrap_err();
        assert!(err.contains("unknown field `url`"), "{err}");
        // snake_case spellings are not the file's convention.
        let err = parse("[sink]\nkind = \"webhook\"\nurl = \"http://x\"\ntoken_file = \"/t\"\n")
            .unwrap_err();
        assert!(err.contains("unknown field `token_file`"), "{err}");
    }

    #[test]
    fn unknown_or_missing_kind_is_rejected() {
        let err = parse("[sink]\nkind = \"kafka\"\n").unwrap_err();
        assert!(err.contains("unknown variant `kafka`"), "{err}");
        assert!(err.contains("`log`, `webhook`, `eventbus`"), "{err}");
        let err = parse("[sink]\nurl = \"http://x\"\n").unwrap_err();
        assert!(err.contains("missing field `kind`"), "{err}");
    }

    #[test]
    fn bad_durations_are_rejected_clearly() {
        let err = parse("[sink]\nkind = \"webhook\"\nurl = \"http://x\"\ntimeout = \"30\"\n")
            .unwrap_err();
        assert!(err.contains("invalid duration `30`"), "{err}");
        let err =
            parse("[sink]\nkind = \"webhook\"\nurl = \"http://x\"\ntimeout = 30\n").unwrap_err();
        assert!(err.contains("expected a string"), "{err}");
    }

    #[test]
    fn secret_errors_name_the_credential() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        assert_eq!(read_secret("test token", &path).unwrap(), "s3cret");
        std::fs::write(&path, " \n").unwrap();
        let err = read_secret("test token", &path).unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
        let err = read_secret("test token", &dir.path().join("missing"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot read the test token file"), "{err}");
    }
}
