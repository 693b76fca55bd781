//! Typed configuration for `serve`: flags > `TENANT_GATEWAY_*` environment > TOML file >
//! built-in defaults. The command line (`cli`) resolves flags over environment into
//! [`FlagsAndEnvironment`]; this module layers the file and the defaults beneath them and
//! produces [`Settings`], the one value `Application::build` takes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::dispatch::sinks::{EventbusConfig, SinkConfig, WebhookConfig};
use crate::dispatch::{DispatchSettings, RetryPolicy};
use crate::journal::JournalOptions;
use crate::normalize::DEFAULT_ACTIONS;
use crate::notify::{NotifyError, NotifySettings};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The admin listener (metrics now, the operator API later): loopback unless configured.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:8081";
/// Where Workflows run unless configured (the discovery sidecar's default too).
pub const DEFAULT_WORKFLOW_NAMESPACE: &str = "argo";
/// `source` of emitted CloudEvents unless `instance-uri` says otherwise.
pub const DEFAULT_INSTANCE_URI: &str = "urn:tenant-gateway";
pub const DEFAULT_STORE: &str = "sqlite://./data/tenant-gateway.db";
/// The Argo Events payload limit: a bigger event could not be emitted anyway.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;
/// A client that has sent its headers has had ample time to send 1 MiB by then.
/// The Standard Webhooks recommendation.
pub const DEFAULT_SIGNATURE_TOLERANCE: Duration = Duration::from_secs(5 * 60);
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

/// What the flags and the environment set for `serve` (flags already won over the
/// environment); `None` or empty means "not given", so the file or the default applies.
#[derive(Debug, Clone, Default)]
pub struct FlagsAndEnvironment {
    /// The TOML file to layer beneath these.
    pub config: Option<PathBuf>,
    /// Ingest listener.
    pub listen: Option<SocketAddr>,
    /// Journal URL.
    pub store: Option<String>,
    /// Ingest token files; when given they replace the file's `token-file` list.
    pub token_files: Vec<PathBuf>,
    /// Consent to a non-loopback listener without credentials.
    pub insecure_no_auth: Option<bool>,
    /// Request body limit.
    pub max_body: Option<ByteSize>,
    /// Log line format.
    pub log_format: Option<LogFormat>,
    /// Readiness-503 time before the listener stops.
    pub shutdown_grace: Option<Duration>,
    /// HTTP worker threads.
    pub workers: Option<usize>,
    /// Journal busy timeout.
    pub store_busy_timeout: Option<Duration>,
    /// Admin listener.
    pub admin_listen: Option<SocketAddr>,
    /// Admin token files; when given they replace the file's `admin-token-file` list.
    pub admin_token_files: Vec<PathBuf>,
    /// Argo Workflows UI base URL.
    pub argo_ui_url: Option<String>,
    /// Namespace of the Workflows.
    pub workflow_namespace: Option<String>,
    /// Watch the Workflows of the emissions.
    pub watch_workflows: Option<bool>,
    /// Normalization rules file.
    pub rules: Option<PathBuf>,
    /// `source` of emitted CloudEvents.
    pub instance_uri: Option<String>,
    /// Serve the storage-free benchmark endpoint (a flag only, never in the file).
    pub bench_null_endpoint: bool,
    /// The sink, without a `[sink]` table (12-factor deployments).
    pub sink: SinkFlags,
    /// Standard Webhooks signing secret files; when given they replace the file's list.
    pub signing_secret_files: Vec<PathBuf>,
    /// Refuse requests without a valid signature.
    pub require_signature: Option<bool>,
    /// How far a signature's timestamp may be from the clock.
    pub signature_tolerance: Option<Duration>,
    /// Global ingest rate limit, events per second.
    pub rate_limit: Option<f64>,
    /// Burst of the global rate limit.
    pub rate_limit_burst: Option<f64>,
    /// Most events in one batch.
    pub max_batch_events: Option<usize>,
    /// Most extensions on one event.
    pub max_extensions: Option<usize>,
    /// Longest `id`, `source`, `type`, `subject` or extension value.
    pub max_attribute_length: Option<ByteSize>,
    /// How long a request body may take to arrive after its headers.
    pub body_read_timeout: Option<Duration>,
    /// TLS of the ingest listener and of the admin listener.
    pub tls: TlsFlags,
    /// File holding the PostgreSQL store's password.
    pub store_password_file: Option<PathBuf>,
    /// Size of the journal's read connection pool.
    pub store_read_connections: Option<u32>,
}

/// TLS files given by flags or environment; each `None` leaves the file's key in place.
#[derive(Debug, Clone, Default)]
pub struct TlsFlags {
    /// Ingest certificate chain (PEM).
    pub cert: Option<PathBuf>,
    /// Ingest private key (PEM).
    pub key: Option<PathBuf>,
    /// CA that ingest clients' certificates must be signed by.
    pub client_ca: Option<PathBuf>,
    /// Admin certificate chain (PEM).
    pub admin_cert: Option<PathBuf>,
    /// Admin private key (PEM).
    pub admin_key: Option<PathBuf>,
}

/// Which sink emissions go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkKind {
    /// One JSON line per emission on stdout.
    Log,
    /// POST to an Argo Events webhook EventSource.
    Webhook,
    /// Publish to the Argo Events JetStream EventBus.
    Eventbus,
}

impl SinkKind {
    fn of(config: &SinkConfig) -> SinkKind {
        match config {
            SinkConfig::Log => SinkKind::Log,
            SinkConfig::Webhook(_) => SinkKind::Webhook,
            SinkConfig::Eventbus(_) => SinkKind::Eventbus,
        }
    }
}

/// The sink as flags and environment give it. Each value overrides the same key of the
/// `[sink]` table when the table is of the same kind; a `kind` other than the table's replaces
/// the table (its keys belong to another sink).
#[derive(Debug, Clone, Default)]
pub struct SinkFlags {
    /// The sink kind (`--sink`).
    pub kind: Option<SinkKind>,
    /// The webhook EventSource URL (`url` of a webhook table).
    pub webhook_url: Option<String>,
    /// The webhook bearer token file (`token-file` of a webhook table).
    pub webhook_token_file: Option<PathBuf>,
    /// The EventBus NATS URL(s) (`url` of an eventbus table).
    pub nats_url: Option<String>,
    /// The EventSource name to publish as (`event-source-name` of an eventbus table).
    pub event_source_name: Option<String>,
    /// The event name to publish as (`event-name` of an eventbus table).
    pub event_name: Option<String>,
}

/// A size in bytes, written as a plain number or with a KiB/MiB/KB/MB suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: usize = digits
            .parse()
            .map_err(|_| format!("{s:?} is not a size (e.g. 1048576, 512KiB, 1MiB)"))?;
        let factor = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1024,
            "MiB" => 1024 * 1024,
            "KB" | "kB" => 1000,
            "MB" => 1000 * 1000,
            other => {
                return Err(format!(
                    "unknown size unit {other:?} (use B, KiB, MiB, KB, MB)"
                ))
            }
        };
        n.checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("{s:?} is too large"))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(usize),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// One ingest credential as written in the TOML file.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Shown in logs (never the token itself) and, later, in audit records.
    pub name: String,
    /// File with the token (a mounted Kubernetes Secret); one trailing newline is dropped.
    pub file: PathBuf,
    /// CloudEvent `source` glob patterns this token may post; empty means any source.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Tenant glob patterns this token may post for; empty means any tenant.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Lifecycle actions (`upsert`, `delete`, ...) this token may post; empty means any.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Sustained events per second this token may post; none means no per-token limit.
    pub rate: Option<f64>,
    /// Events this token may post at once above `rate` [default: `rate`, at least 1].
    pub burst: Option<f64>,
}

/// One Standard Webhooks signing secret as written in the TOML file (`[[signing-secrets]]`).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningSecretConfig {
    /// Shown in logs (never the secret).
    pub name: String,
    /// File with the secret, `whsec_<base64>`; surrounding whitespace is ignored.
    pub file: PathBuf,
    /// CloudEvent `source` glob patterns this secret may sign; empty means any source.
    #[serde(default)]
    pub sources: Vec<String>,
    /// Tenant glob patterns; empty means any tenant.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Lifecycle actions; empty means any.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Sustained events per second; none means no per-secret limit.
    pub rate: Option<f64>,
    /// Events at once above `rate` [default: `rate`, at least 1].
    pub burst: Option<f64>,
}

/// One admin API credential as written in the TOML file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminTokenConfig {
    /// Recorded as the actor of every operator action taken with the token.
    pub name: String,
    /// File with the token; one trailing newline is dropped.
    pub file: PathBuf,
}

/// The TOML file: every key optional, same words as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<SocketAddr>,
    pub store: Option<String>,
    pub token_file: Option<Vec<PathBuf>>,
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    pub insecure_no_auth: Option<bool>,
    pub signing_secret_file: Option<Vec<PathBuf>>,
    /// `[[signing-secrets]]` tables: named Standard Webhooks secrets with scopes and rates.
    #[serde(default)]
    pub signing_secrets: Vec<SigningSecretConfig>,
    pub require_signature: Option<bool>,
    pub signature_tolerance: Option<String>,
    pub rate_limit: Option<f64>,
    pub rate_limit_burst: Option<f64>,
    pub max_body: Option<ByteSize>,
    pub max_batch_events: Option<usize>,
    pub max_extensions: Option<usize>,
    pub max_attribute_length: Option<ByteSize>,
    pub body_read_timeout: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub tls_client_ca: Option<PathBuf>,
    pub admin_tls_cert: Option<PathBuf>,
    pub admin_tls_key: Option<PathBuf>,
    pub tls_reload_interval: Option<String>,
    pub log_format: Option<LogFormat>,
    pub shutdown_grace: Option<String>,
    pub workers: Option<usize>,
    pub store_busy_timeout: Option<String>,
    pub store_password_file: Option<PathBuf>,
    pub store_read_connections: Option<u32>,
    pub actions: Option<Vec<String>>,
    pub admin_listen: Option<SocketAddr>,
    pub admin_token_file: Option<Vec<PathBuf>>,
    /// `[[admin-tokens]]` tables: named admin API tokens.
    #[serde(default)]
    pub admin_tokens: Vec<AdminTokenConfig>,
    pub argo_ui_url: Option<String>,
    pub workflow_namespace: Option<String>,
    pub watch_workflows: Option<bool>,
    pub rules: Option<PathBuf>,
    pub instance_uri: Option<String>,
    /// The `[sink]` table: where emissions go (`kind = "log" | "webhook" | "eventbus"`).
    pub sink: Option<SinkConfig>,
    /// The `[dispatch]` table.
    #[serde(default)]
    pub dispatch: DispatchFileConfig,
    /// The `[notify]` table: completion events to upstream; absent means none are sent.
    pub notify: Option<NotifyFileConfig>,
}

/// The `[notify]` table as written: where completion events go and how they are authenticated.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NotifyFileConfig {
    /// The receiver's URL (http or https).
    pub url: String,
    /// File with the bearer token sent as `Authorization: Bearer`.
    pub token_file: Option<PathBuf>,
    /// File with a Standard Webhooks secret (`whsec_<base64>`) that signs every request.
    pub signing_secret_file: Option<PathBuf>,
    /// Whole-request timeout of one attempt (humantime, e.g. `10s`).
    pub timeout: Option<String>,
}

/// The `[dispatch]` table: concurrency, buffer and retries of the dispatcher.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct DispatchFileConfig {
    pub concurrency: Option<usize>,
    pub buffer: Option<usize>,
    pub retry_limit: Option<String>,
    pub initial_backoff: Option<String>,
    pub max_backoff: Option<String>,
    /// Deliver a tenant's next emission only after the previous one's Workflow finished.
    pub await_workflow: Option<bool>,
    /// How long after a delivery its Workflow may stay unseen before the tenant is parked.
    pub await_timeout: Option<String>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }
}

/// Everything `serve` needs, resolved and validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Ingest listener; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Journal URL; decides the backend once.
    pub store: String,
    /// Ingest credentials; empty means no authentication (loopback or --insecure-no-auth only).
    pub tokens: Vec<TokenConfig>,
    /// Explicit consent to run without credentials on a non-loopback address.
    pub insecure_no_auth: bool,
    /// Standard Webhooks secrets; a valid signature authenticates a request like a token.
    pub signing_secrets: Vec<SigningSecretConfig>,
    /// A valid signature is required on every post (a bearer token alone is not enough).
    pub require_signature: bool,
    /// How far `webhook-timestamp` may be from now, either way; also how long a `webhook-id`
    /// is remembered as seen.
    pub signature_tolerance: Duration,
    /// Global ingest rate (events/s) and burst over all credentials; `None` is unlimited.
    pub global_rate: Option<(f64, f64)>,
    /// Request body limit in bytes (413 above it).
    pub max_body: usize,
    /// Events per batch, extensions per event, attribute value length (413 above them).
    pub decode_limits: crate::cloudevents::DecodeLimits,
    /// How long a request body may take after its headers (408 after it).
    pub body_read_timeout: Duration,
    /// TLS on the ingest listener (plain HTTP when `None`).
    pub tls: Option<crate::tls::TlsSettings>,
    /// TLS on the admin listener (plain HTTP when `None`).
    pub admin_tls: Option<crate::tls::TlsSettings>,
    /// How often the certificate files are read again (rotated Secrets are served without a
    /// restart).
    pub tls_reload_interval: Duration,
    pub log_format: LogFormat,
    /// Time between "draining" (readiness 503) and closing the listener, so load balancers
    /// stop sending before connections are refused.
    pub shutdown_grace: Duration,
    /// actix worker threads.
    pub workers: usize,
    /// Journal tuning (busy timeout, group size, queue bound).
    pub journal: JournalOptions,
    /// Short action names the default rule accepts.
    pub actions: Vec<String>,
    /// Serve the storage-free baseline endpoint for benchmarks.
    pub bench_null_endpoint: bool,
    /// Admin listener: the admin API, `/metrics`, `/healthz`, `/readyz`.
    pub admin_listen: SocketAddr,
    /// Admin API credentials (same form as ingest tokens, without source limits); required
    /// when `admin_listen` is not loopback (unless `insecure_no_auth`).
    pub admin_tokens: Vec<TokenConfig>,
    /// Argo Workflows UI base URL, for links from event details to Workflows.
    pub argo_ui_url: Option<String>,
    /// Namespace of the Workflows, for those links and for the Workflow watch.
    pub workflow_namespace: String,
    /// Watch the Argo Workflows of the emissions (`workflows`) and record their phases.
    pub watch_workflows: bool,
    /// YAML normalization rules; `None` means the default rule only.
    pub rules: Option<PathBuf>,
    /// Where emissions go; chosen once at start.
    pub sink: SinkConfig,
    /// Dispatcher tuning, including the instance URI used as emitted `source`.
    pub dispatch: DispatchSettings,
    /// Completion events to upstream (`[notify]`); `None` sends none.
    pub notify: Option<NotifySettings>,
}

impl Settings {
    /// Defaults for a local run; tests start from here and change what they need.
    pub fn local() -> Self {
        Settings {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("valid default listen address"),
            store: DEFAULT_STORE.to_owned(),
            tokens: Vec::new(),
            insecure_no_auth: false,
            signing_secrets: Vec::new(),
            require_signature: false,
            signature_tolerance: DEFAULT_SIGNATURE_TOLERANCE,
            global_rate: None,
            max_body: DEFAULT_MAX_BODY,
            decode_limits: crate::cloudevents::DecodeLimits::default(),
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            tls: None,
            admin_tls: None,
            tls_reload_interval: crate::tls::DEFAULT_RELOAD_INTERVAL,
            log_format: LogFormat::Human,
            shutdown_grace: Duration::from_secs(5),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            journal: JournalOptions::default(),
            actions: DEFAULT_ACTIONS.iter().map(|a| a.to_string()).collect(),
            bench_null_endpoint: false,
            admin_listen: DEFAULT_ADMIN_LISTEN
                .parse()
                .expect("valid default admin address"),
            admin_tokens: Vec::new(),
            argo_ui_url: None,
            workflow_namespace: DEFAULT_WORKFLOW_NAMESPACE.to_owned(),
            watch_workflows: false,
            rules: None,
            sink: SinkConfig::default(),
            dispatch: DispatchSettings {
                instance_source: DEFAULT_INSTANCE_URI.to_owned(),
                ..DispatchSettings::default()
            },
            notify: None,
        }
    }

    /// Layer flags/environment over the file (`args.config`) over the defaults.
    pub fn load(args: FlagsAndEnvironment) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        Self::resolve(args, file)
    }

    pub fn resolve(args: FlagsAndEnvironment, file: FileConfig) -> Result<Self, ConfigError> {
        let mut s = Settings::local();
        if let Some(v) = args.listen.or(file.listen) {
            s.listen = v;
        }
        if let Some(v) = args.store.or(file.store) {
            s.store = v;
        }
        // Flag/env token files replace the file's list; the file's tables always add.
        s.tokens = token_files(args.token_files, file.token_file)
            .chain(file.tokens)
            .collect();
        s.admin_tokens = token_files(args.admin_token_files, file.admin_token_file)
            .chain(file.admin_tokens.into_iter().map(|t| TokenConfig {
                name: t.name,
                file: t.file,
                ..TokenConfig::default()
            }))
            .collect();
        if let Some(url) = args.argo_ui_url.or(file.argo_ui_url) {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid {
                    key: "argo-ui-url",
                    reason: format!("{url:?} is not an http:// or https:// URL"),
                });
            }
            s.argo_ui_url = Some(url.trim_end_matches('/').to_owned());
        }
        if let Some(namespace) = args.workflow_namespace.or(file.workflow_namespace) {
            s.workflow_namespace = namespace;
        }
        if let Some(v) = args.watch_workflows.or(file.watch_workflows) {
            s.watch_workflows = v;
        }
        let secret_files = if args.signing_secret_files.is_empty() {
            file.signing_secret_file.unwrap_or_default()
        } else {
            args.signing_secret_files
        };
        s.signing_secrets = secret_files
            .into_iter()
            .map(|path| SigningSecretConfig {
                name: path
                    .file_stem()
                    .map_or_else(|| "secret".into(), |n| n.to_string_lossy().into_owned()),
                file: path,
                ..SigningSecretConfig::default()
            })
            .chain(file.signing_secrets)
            .collect();
        for (name, rate, burst) in s
            .tokens
            .iter()
            .map(|t| (&t.name, t.rate, t.burst))
            .chain(s.signing_secrets.iter().map(|t| (&t.name, t.rate, t.burst)))
        {
            check_rate(rate, burst).map_err(|reason| ConfigError::Invalid {
                key: "rate",
                reason: format!("credential {name:?}: {reason}"),
            })?;
        }
        if let Some(v) = args.require_signature.or(file.require_signature) {
            s.require_signature = v;
        }
        if let Some(v) = duration(
            "signature-tolerance",
            args.signature_tolerance,
            file.signature_tolerance,
        )? {
            s.signature_tolerance = v;
        }
        if let Some(rate) = args.rate_limit.or(file.rate_limit) {
            let burst = args.rate_limit_burst.or(file.rate_limit_burst);
            check_rate(Some(rate), burst).map_err(|reason| ConfigError::Invalid {
                key: "rate-limit",
                reason,
            })?;
            s.global_rate = Some((rate, burst.unwrap_or(rate.max(1.0))));
        }
        if let Some(v) = args.insecure_no_auth.or(file.insecure_no_auth) {
            s.insecure_no_auth = v;
        }
        if let Some(v) = args.max_body.or(file.max_body) {
            if v.0 == 0 {
                return Err(ConfigError::Invalid {
                    key: "max-body",
                    reason: "must be greater than 0".into(),
                });
            }
            s.max_body = v.0;
        }
        let positive = |key: &'static str, value: Option<usize>| match value {
            Some(0) => Err(ConfigError::Invalid {
                key,
                reason: "must be greater than 0".into(),
            }),
            other => Ok(other),
        };
        if let Some(v) = positive(
            "max-batch-events",
            args.max_batch_events.or(file.max_batch_events),
        )? {
            s.decode_limits.max_batch_events = v;
        }
        if let Some(v) = args.max_extensions.or(file.max_extensions) {
            s.decode_limits.max_extensions = v;
        }
        if let Some(v) = positive(
            "max-attribute-length",
            args.max_attribute_length
                .or(file.max_attribute_length)
                .map(|b| b.0),
        )? {
            s.decode_limits.max_attribute_length = v;
        }
        if let Some(v) = duration(
            "body-read-timeout",
            args.body_read_timeout,
            file.body_read_timeout,
        )? {
            if v.is_zero() {
                return Err(ConfigError::Invalid {
                    key: "body-read-timeout",
                    reason: "must be greater than 0".into(),
                });
            }
            s.body_read_timeout = v;
        }
        let tls = args.tls;
        s.tls = tls_pair(
            ("tls-cert", tls.cert.or(file.tls_cert)),
            ("tls-key", tls.key.or(file.tls_key)),
            tls.client_ca.or(file.tls_client_ca),
            "tls-client-ca",
        )?;
        s.admin_tls = tls_pair(
            ("admin-tls-cert", tls.admin_cert.or(file.admin_tls_cert)),
            ("admin-tls-key", tls.admin_key.or(file.admin_tls_key)),
            None,
            "",
        )?;
        if let Some(v) = duration("tls-reload-interval", None, file.tls_reload_interval)? {
            if v.is_zero() {
                return Err(ConfigError::Invalid {
                    key: "tls-reload-interval",
                    reason: "must be greater than 0".into(),
                });
            }
            s.tls_reload_interval = v;
        }
        if let Some(v) = args.log_format.or(file.log_format) {
            s.log_format = v;
        }
        if let Some(v) = duration("shutdown-grace", args.shutdown_grace, file.shutdown_grace)? {
            s.shutdown_grace = v;
        }
        if let Some(v) = duration(
            "store-busy-timeout",
            args.store_busy_timeout,
            file.store_busy_timeout,
        )? {
            s.journal.busy_timeout = v;
        }
        if let Some(v) = args.store_password_file.or(file.store_password_file) {
            s.journal.password_file = Some(v);
        }
        if let Some(v) = args.store_read_connections.or(file.store_read_connections) {
            s.journal.read_connections = v;
        }
        if let Some(v) = args.workers.or(file.workers) {
            if v == 0 {
                return Err(ConfigError::Invalid {
                    key: "workers",
                    reason: "must be at least 1".into(),
                });
            }
            s.workers = v;
        }
        if let Some(actions) = file.actions {
            s.actions = actions;
        }
        s.bench_null_endpoint = args.bench_null_endpoint;
        if let Some(v) = args.admin_listen.or(file.admin_listen) {
            s.admin_listen = v;
        }
        s.rules = args.rules.or(file.rules);
        if let Some(v) = args.instance_uri.or(file.instance_uri) {
            if !v.contains(':') {
                return Err(ConfigError::Invalid {
                    key: "instance-uri",
                    reason: format!("{v:?} is not a URI (e.g. urn:tenant-gateway:prod-eu)"),
                });
            }
            s.dispatch.instance_source = v;
        }
        s.sink = resolve_sink(args.sink, file.sink)?;
        resolve_dispatch(&mut s.dispatch, file.dispatch)?;
        // The gate waits for Workflow records only the watcher writes: without it every
        // delivery would stay unseen and park its tenant once await-timeout passed.
        if s.dispatch.await_workflow.is_some() && !s.watch_workflows {
            return Err(ConfigError::Invalid {
                key: "dispatch.await-workflow",
                reason: "needs watch-workflows: without the Workflow watcher no Workflow is ever \
                         seen and every tenant would park after await-timeout"
                    .into(),
            });
        }
        s.notify = file.notify.map(resolve_notify).transpose()?;
        Ok(s)
    }
}

/// Rates are events per second between one per day and a million; a burst is at least 1.
fn check_rate(rate: Option<f64>, burst: Option<f64>) -> Result<(), String> {
    if let Some(rate) = rate {
        if !(1.0 / 86_400.0..=1e6).contains(&rate) {
            return Err(format!("rate {rate} is outside 1/86400 ..= 1e6 events/s"));
        }
    }
    if let Some(burst) = burst {
        if !(1.0..=1e9).contains(&burst) {
            return Err(format!("burst {burst} is outside 1 ..= 1e9 events"));
        }
    }
    Ok(())
}

/// The sink: flags/environment over the `[sink]` table (when of the same kind) over defaults.
/// Flags for another kind of sink than the resolved one are refused rather than ignored, so a
/// stray `TENANT_GATEWAY_WEBHOOK_URL` beside an eventbus sink is noticed at start.
fn resolve_sink(flags: SinkFlags, file: Option<SinkConfig>) -> Result<SinkConfig, ConfigError> {
    let kind = flags
        .kind
        .or(file.as_ref().map(SinkKind::of))
        .unwrap_or(SinkKind::Log);
    let file = file.filter(|table| SinkKind::of(table) == kind);
    let webhook_flags = [
        ("webhook-url", flags.webhook_url.is_some()),
        ("webhook-token-file", flags.webhook_token_file.is_some()),
    ];
    let eventbus_flags = [
        ("nats-url", flags.nats_url.is_some()),
        ("event-source-name", flags.event_source_name.is_some()),
        ("event-name", flags.event_name.is_some()),
    ];
    let refuse =
        |given: &[(&'static str, bool)], sink: &str| match given.iter().find(|(_, set)| *set) {
            Some((key, _)) => Err(ConfigError::Invalid {
                key,
                reason: format!("does not apply to the {sink} sink (set sink to choose another)"),
            }),
            None => Ok(()),
        };
    let missing = |key: &'static str, sink: &str| ConfigError::Invalid {
        key,
        reason: format!("the {sink} sink needs it (flag, environment or [sink] table)"),
    };
    match kind {
        SinkKind::Log => {
            refuse(&webhook_flags, "log")?;
            refuse(&eventbus_flags, "log")?;
            Ok(SinkConfig::Log)
        }
        SinkKind::Webhook => {
            refuse(&eventbus_flags, "webhook")?;
            let table = match file {
                Some(SinkConfig::Webhook(table)) => Some(table),
                _ => None,
            };
            let mut config = match (flags.webhook_url, table) {
                (Some(url), Some(table)) => WebhookConfig { url, ..table },
                (Some(url), None) => WebhookConfig::new(url),
                (None, Some(table)) => table,
                (None, None) => return Err(missing("webhook-url", "webhook")),
            };
            if let Some(token_file) = flags.webhook_token_file {
                config.token_file = Some(token_file);
            }
            Ok(SinkConfig::Webhook(config))
        }
        SinkKind::Eventbus => {
            refuse(&webhook_flags, "eventbus")?;
            let mut config = match file {
                Some(SinkConfig::Eventbus(table)) => table,
                _ => EventbusConfig::new(
                    flags
                        .event_source_name
                        .clone()
                        .ok_or_else(|| missing("event-source-name", "eventbus"))?,
                    flags
                        .event_name
                        .clone()
                        .ok_or_else(|| missing("event-name", "eventbus"))?,
                ),
            };
            if let Some(url) = flags.nats_url {
                config.url = url;
            }
            if let Some(name) = flags.event_source_name {
                config.event_source_name = name;
            }
            if let Some(name) = flags.event_name {
                config.event_name = name;
            }
            Ok(SinkConfig::Eventbus(config))
        }
    }
}

/// Token files from the flag/environment, else from the file's key; each named after its file
/// (`/run/secrets/alice` is `alice`).
fn token_files(
    flags: Vec<PathBuf>,
    file: Option<Vec<PathBuf>>,
) -> impl Iterator<Item = TokenConfig> {
    let paths = if flags.is_empty() {
        file.unwrap_or_default()
    } else {
        flags
    };
    paths.into_iter().map(|path| TokenConfig {
        name: path
            .file_stem()
            .map_or_else(|| "token".into(), |n| n.to_string_lossy().into_owned()),
        file: path,
        ..TokenConfig::default()
    })
}

/// Applies the `[dispatch]` table over the defaults.
fn resolve_dispatch(
    settings: &mut DispatchSettings,
    file: DispatchFileConfig,
) -> Result<(), ConfigError> {
    let at_least_one = |key: &'static str, value: usize| {
        if value == 0 {
            Err(ConfigError::Invalid {
                key,
                reason: "must be at least 1".into(),
            })
        } else {
            Ok(value)
        }
    };
    if let Some(v) = file.concurrency {
        settings.concurrency = at_least_one("dispatch.concurrency", v)?;
    }
    if let Some(v) = file.buffer {
        settings.buffer = at_least_one("dispatch.buffer", v)?;
    }
    let RetryPolicy {
        initial_backoff,
        max_backoff,
        retry_limit,
    } = &mut settings.retry;
    for (key, text, target) in [
        ("dispatch.retry-limit", file.retry_limit, retry_limit),
        (
            "dispatch.initial-backoff",
            file.initial_backoff,
            initial_backoff,
        ),
        ("dispatch.max-backoff", file.max_backoff, max_backoff),
    ] {
        if let Some(v) = duration(key, None, text)? {
            *target = v;
        }
    }
    if settings.retry.initial_backoff > settings.retry.max_backoff {
        return Err(ConfigError::Invalid {
            key: "dispatch.initial-backoff",
            reason: "must not exceed dispatch.max-backoff".into(),
        });
    }
    let timeout = duration("dispatch.await-timeout", None, file.await_timeout)?
        .unwrap_or(crate::dispatch::DEFAULT_AWAIT_TIMEOUT);
    if timeout.is_zero() {
        return Err(ConfigError::Invalid {
            key: "dispatch.await-timeout",
            reason: "must be longer than zero".into(),
        });
    }
    settings.await_workflow = file.await_workflow.unwrap_or(false).then_some(timeout);
    Ok(())
}

/// The `[notify]` table over its defaults, checked (URL, timeout, files readable, secret
/// decodable) so a mistake fails at load, naming the key.
fn resolve_notify(file: NotifyFileConfig) -> Result<NotifySettings, ConfigError> {
    let mut settings = NotifySettings::new(file.url);
    settings.token_file = file.token_file;
    settings.signing_secret_file = file.signing_secret_file;
    if let Some(timeout) = duration("notify.timeout", None, file.timeout)? {
        settings.timeout = timeout;
    }
    settings.validate().map_err(|error| match error {
        NotifyError::Invalid { key, reason } => ConfigError::Invalid { key, reason },
        other => ConfigError::Invalid {
            key: "notify",
            reason: other.to_string(),
        },
    })?;
    Ok(settings)
}

/// A certificate and its key, both or neither; a client CA needs them.
fn tls_pair(
    (cert_key, cert): (&'static str, Option<PathBuf>),
    (key_key, key): (&'static str, Option<PathBuf>),
    client_ca: Option<PathBuf>,
    client_ca_key: &'static str,
) -> Result<Option<crate::tls::TlsSettings>, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(crate::tls::TlsSettings {
            cert,
            key,
            client_ca,
        })),
        (None, None) if client_ca.is_some() => Err(ConfigError::Invalid {
            key: client_ca_key,
            reason: format!("client certificates need TLS: set {cert_key} and {key_key}"),
        }),
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::Invalid {
            key: key_key,
            reason: format!("{cert_key} is set: give its private key too"),
        }),
        (None, Some(_)) => Err(ConfigError::Invalid {
            key: cert_key,
            reason: format!("{key_key} is set: give its certificate too"),
        }),
    }
}

fn duration(
    key: &'static str,
    flag: Option<Duration>,
    file: Option<String>,
) -> Result<Option<Duration>, ConfigError> {
    if let Some(d) = flag {
        return Ok(Some(d));
    }
    file.map(|text| {
        humantime::parse_duration(&text).map_err(|e| ConfigError::Invalid {
            key,
            reason: format!("{text:?}: {e}"),
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests;
