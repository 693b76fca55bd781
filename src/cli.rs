//! Command-line interface: clap definitions, and their conversion into the plain settings and
//! inputs the library takes. Each subcommand's work lives in library code that the tests call
//! too; no library module depends on this one.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use uuid::Uuid;

use crate::admin::api::TenantFilter;
use crate::admin::client::commands::{
    parse_rate, AdminCommand, EventSelection, Invocation, ListEvents, ListTenants, Output, Replay,
    ShowEvent, ShowTenant, Skip, TimeSpec, WorkflowPhases,
};
use crate::admin::client::{ClientSettings, TOKEN_ENV};
use crate::config::{ByteSize, FlagsAndEnvironment, LogFormat, SinkFlags, SinkKind, TlsFlags};
use crate::discovery::offline::OutputFormat;
use crate::discovery::{self, DiscoverSettings};
use crate::ingest::send::{SendMode, SendSettings};
use crate::journal::{EventStatus, Lifecycle, LifecycleOutcome};
use crate::normalize::DEFAULT_ACTIONS;

#[derive(Debug, Parser)]
#[command(
    name = "tenant-gateway",
    version,
    about = "Receives tenant lifecycle CloudEvents, journals them durably and drives Argo with them"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway: the CloudEvents ingest API on --listen, backed by the journal at --store.
    #[command(
        after_help = "Example:\n  tenant-gateway serve --config /etc/tenant-gateway/config.toml\n  TENANT_GATEWAY_SINK=webhook TENANT_GATEWAY_WEBHOOK_URL=http://eventsource-svc:12000/lifecycle tenant-gateway serve"
    )]
    Serve(Box<ServeArgs>),
    /// Post one CloudEvent to a gateway, the way an upstream system would.
    #[command(
        after_help = "Example:\n  tenant-gateway send --type com.acme.tenant.lifecycle.upsert --tenant acme --data '{\"plan\":\"gold\"}'"
    )]
    Send(SendArgs),
    /// Generate Argo WorkflowTemplates from suspended, annotated Jobs (the discovery sidecar).
    #[command(
        after_help = "Example:\n  tenant-gateway discover --from-dir examples/jobs --once --dry-run -o yaml"
    )]
    Discover(DiscoverArgs),
    /// Work with normalization rules files (validate them, try them on an event).
    #[command(after_help = "Example:\n  tenant-gateway rules check rules.yaml --event event.json")]
    Rules(RulesArgs),
    /// Work with a journal offline (the gateway stopped): copy a SQLite journal to PostgreSQL.
    #[command(
        after_help = "Example:\n  tenant-gateway journal copy --from sqlite://./data/tenant-gateway.db --to postgres://gateway@db:5432/tenant_gateway"
    )]
    Journal(JournalArgs),
    /// Search journaled events and show one with its deliveries (admin API).
    #[command(
        after_help = "Example:\n  tenant-gateway events list --tenant acme --status dead\n  tenant-gateway events show 0190a2b4-0000-7000-8000-000000000001"
    )]
    Events(EventsArgs),
    /// Replay events by id, or in bulk by filter as a rate-limited job (admin API).
    #[command(
        after_help = "Example:\n  tenant-gateway replay 0190a2b4-0000-7000-8000-000000000001 --reason \"fixed the Job\" --yes\n  tenant-gateway replay --status dead --since 2h --rate 5 --dry-run\n  tenant-gateway replay --workflow-phase Failed,Error --action migrate-in --since 24h --dry-run"
    )]
    Replay(ReplayArgs),
    /// Mark a dead event skipped, so its tenant's later events can flow (admin API).
    #[command(
        after_help = "Example:\n  tenant-gateway skip 0190a2b4-0000-7000-8000-000000000001 --reason \"tenant deleted by hand\""
    )]
    Skip(SkipArgs),
    /// List tenants with their lifecycle state, or show one: its state, whether it is parked,
    /// its counts and its timeline (admin API).
    #[command(
        after_help = "Example:\n  tenant-gateway tenants list --outcome failed\n  tenant-gateway tenants show acme --limit 20"
    )]
    Tenants(TenantsArgs),
}

/// `serve` flags. Every flag also reads `TENANT_GATEWAY_<FLAG>` and the TOML key of the same
/// name; flags win over the environment, which wins over the file (see `config`).
#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "TENANT_GATEWAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Ingest listener address [default: 127.0.0.1:8080].
    #[arg(long, env = "TENANT_GATEWAY_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Journal URL, sqlite://PATH or postgres://USER@HOST:PORT/DB
    /// [default: sqlite://./data/tenant-gateway.db].
    #[arg(long, env = "TENANT_GATEWAY_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// File holding one ingest bearer token (repeatable; comma-separated in the environment).
    #[arg(
        long = "token-file",
        env = "TENANT_GATEWAY_TOKEN_FILE",
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub token_files: Vec<PathBuf>,
    /// File holding one Standard Webhooks signing secret, whsec_<base64> (repeatable;
    /// comma-separated in the environment).
    #[arg(
        long = "signing-secret-file",
        env = "TENANT_GATEWAY_SIGNING_SECRET_FILE",
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub signing_secret_files: Vec<PathBuf>,
    /// Require a valid Standard Webhooks signature on every post.
    #[arg(long, env = "TENANT_GATEWAY_REQUIRE_SIGNATURE", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub require_signature: Option<bool>,
    /// How far webhook-timestamp may be from now [default: 5m].
    #[arg(
        long,
        env = "TENANT_GATEWAY_SIGNATURE_TOLERANCE",
        value_name = "DURATION"
    )]
    pub signature_tolerance: Option<humantime::Duration>,
    /// Global ingest rate limit in events per second [default: none].
    #[arg(long, env = "TENANT_GATEWAY_RATE_LIMIT", value_name = "EVENTS_PER_S")]
    pub rate_limit: Option<f64>,
    /// Events the global limit lets through at once [default: the rate, at least 1].
    #[arg(long, env = "TENANT_GATEWAY_RATE_LIMIT_BURST", value_name = "EVENTS")]
    pub rate_limit_burst: Option<f64>,
    /// Allow a non-loopback listener without credentials.
    #[arg(long, env = "TENANT_GATEWAY_INSECURE_NO_AUTH", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub insecure_no_auth: Option<bool>,
    /// Largest accepted request body, e.g. 1048576, 512KiB, 1MiB [default: 1MiB].
    #[arg(long, env = "TENANT_GATEWAY_MAX_BODY", value_name = "BYTES")]
    pub max_body: Option<ByteSize>,
    /// Most events in one batch request [default: 1000].
    #[arg(long, env = "TENANT_GATEWAY_MAX_BATCH_EVENTS", value_name = "N")]
    pub max_batch_events: Option<usize>,
    /// Most extension attributes of one event [default: 50].
    #[arg(long, env = "TENANT_GATEWAY_MAX_EXTENSIONS", value_name = "N")]
    pub max_extensions: Option<usize>,
    /// Longest id, source, type, subject or extension value [default: 1KiB].
    #[arg(
        long,
        env = "TENANT_GATEWAY_MAX_ATTRIBUTE_LENGTH",
        value_name = "BYTES"
    )]
    pub max_attribute_length: Option<ByteSize>,
    /// How long a request body may take to arrive after its headers (408 after) [default: 10s].
    #[arg(
        long,
        env = "TENANT_GATEWAY_BODY_READ_TIMEOUT",
        value_name = "DURATION"
    )]
    pub body_read_timeout: Option<humantime::Duration>,
    /// TLS certificate chain of the ingest listener (PEM; re-read when the file changes).
    #[arg(long, env = "TENANT_GATEWAY_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key of the ingest listener (PEM).
    #[arg(long, env = "TENANT_GATEWAY_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Require ingest clients to present a certificate signed by this CA (PEM).
    #[arg(long, env = "TENANT_GATEWAY_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// TLS certificate chain of the admin listener (PEM).
    #[arg(long, env = "TENANT_GATEWAY_ADMIN_TLS_CERT", value_name = "FILE")]
    pub admin_tls_cert: Option<PathBuf>,
    /// TLS private key of the admin listener (PEM).
    #[arg(long, env = "TENANT_GATEWAY_ADMIN_TLS_KEY", value_name = "FILE")]
    pub admin_tls_key: Option<PathBuf>,
    /// Log line format [default: human].
    #[arg(long, env = "TENANT_GATEWAY_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormatArg>,
    /// How long readiness reports 503 before the listener stops on SIGTERM [default: 5s].
    #[arg(long, env = "TENANT_GATEWAY_SHUTDOWN_GRACE", value_name = "DURATION")]
    pub shutdown_grace: Option<humantime::Duration>,
    /// HTTP worker threads [default: number of CPUs].
    #[arg(long, env = "TENANT_GATEWAY_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    /// How long a journal write waits on a locked database before answering 503 [default: 5s].
    #[arg(
        long,
        env = "TENANT_GATEWAY_STORE_BUSY_TIMEOUT",
        value_name = "DURATION"
    )]
    pub store_busy_timeout: Option<humantime::Duration>,
    /// File holding the PostgreSQL password of a postgres:// store (trailing whitespace ignored).
    #[arg(long, env = "TENANT_GATEWAY_STORE_PASSWORD_FILE", value_name = "FILE")]
    pub store_password_file: Option<PathBuf>,
    /// Read connections of the journal (a PostgreSQL journal adds one write connection)
    /// [default: 4].
    #[arg(long, env = "TENANT_GATEWAY_STORE_READ_CONNECTIONS", value_name = "N")]
    pub store_read_connections: Option<u32>,
    /// Admin listener: /metrics, /healthz, /readyz [default: 127.0.0.1:8081].
    #[arg(long, env = "TENANT_GATEWAY_ADMIN_LISTEN", value_name = "ADDR")]
    pub admin_listen: Option<SocketAddr>,
    /// File holding one admin API bearer token (repeatable; comma-separated in the
    /// environment); the file name is the token's name in the operator action records.
    #[arg(
        long = "admin-token-file",
        env = "TENANT_GATEWAY_ADMIN_TOKEN_FILE",
        value_name = "FILE",
        value_delimiter = ','
    )]
    pub admin_token_files: Vec<PathBuf>,
    /// Base URL of the Argo Workflows UI; event details then link to each emission's Workflow.
    #[arg(long, env = "TENANT_GATEWAY_ARGO_UI_URL", value_name = "URL")]
    pub argo_ui_url: Option<String>,
    /// Namespace the Workflows run in (for the Argo UI links and --watch-workflows)
    /// [default: argo].
    #[arg(long, env = "TENANT_GATEWAY_WORKFLOW_NAMESPACE", value_name = "NS")]
    pub workflow_namespace: Option<String>,
    /// Watch the Argo Workflows of the emissions in the workflow namespace and record their
    /// phases (needs a kubeconfig or the in-cluster service account) [default: false].
    #[arg(long, env = "TENANT_GATEWAY_WATCH_WORKFLOWS", num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub watch_workflows: Option<bool>,
    /// YAML normalization rules file [default: the built-in default rule only].
    #[arg(long, env = "TENANT_GATEWAY_RULES", value_name = "FILE")]
    pub rules: Option<PathBuf>,
    /// URI of this gateway: the `source` of emitted CloudEvents [default: urn:tenant-gateway].
    #[arg(long, env = "TENANT_GATEWAY_INSTANCE_URI", value_name = "URI")]
    pub instance_uri: Option<String>,
    /// Serve `POST /_bench/null`, which validates and normalizes but stores nothing: the
    /// baseline the ingest benchmark measures beside `/events`. Never enable in production.
    #[arg(long, env = "TENANT_GATEWAY_BENCH_NULL_ENDPOINT", hide = true)]
    pub bench_null_endpoint: bool,
    /// Where emissions go [default: the [sink] table's kind, else log].
    #[arg(long, env = "TENANT_GATEWAY_SINK", value_enum, value_name = "KIND")]
    pub sink: Option<SinkKindArg>,
    /// Webhook sink: the Argo webhook EventSource URL.
    #[arg(long, env = "TENANT_GATEWAY_WEBHOOK_URL", value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Webhook sink: file holding the bearer token the EventSource expects.
    #[arg(long, env = "TENANT_GATEWAY_WEBHOOK_TOKEN_FILE", value_name = "FILE")]
    pub webhook_token_file: Option<PathBuf>,
    /// Eventbus sink: NATS server URL(s), comma-separated [default: nats://127.0.0.1:4222].
    #[arg(long, env = "TENANT_GATEWAY_NATS_URL", value_name = "URLS")]
    pub nats_url: Option<String>,
    /// Eventbus sink: the EventSource name Sensors depend on.
    #[arg(long, env = "TENANT_GATEWAY_EVENT_SOURCE_NAME", value_name = "NAME")]
    pub event_source_name: Option<String>,
    /// Eventbus sink: the event name Sensors depend on.
    #[arg(long, env = "TENANT_GATEWAY_EVENT_NAME", value_name = "NAME")]
    pub event_name: Option<String>,
}

/// `serve --sink` values ([`SinkKind`] without clap in the library).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SinkKindArg {
    /// One JSON line per emission on stdout.
    Log,
    /// POST to an Argo Events webhook EventSource.
    Webhook,
    /// Publish to the Argo Events JetStream EventBus.
    Eventbus,
}

/// `--log-format` values ([`LogFormat`] without clap in the library).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

impl From<LogFormatArg> for LogFormat {
    fn from(arg: LogFormatArg) -> Self {
        match arg {
            LogFormatArg::Human => LogFormat::Human,
            LogFormatArg::Json => LogFormat::Json,
        }
    }
}

/// `send --mode` values ([`SendMode`] without clap in the library).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SendModeArg {
    /// Attributes in `ce-*` headers.
    Binary,
    /// The whole event as JSON.
    Structured,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// CloudEvent type, e.g. com.acme.tenant.lifecycle.upsert.
    #[arg(long = "type", value_name = "TYPE")]
    pub ty: String,
    /// Tenant, sent as the `tenant` extension attribute.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Event data as JSON.
    #[arg(long, value_name = "JSON")]
    pub data: Option<String>,
    /// HTTP content mode.
    #[arg(long, value_enum, default_value_t = SendModeArg::Binary)]
    pub mode: SendModeArg,
    /// Ingest endpoint.
    #[arg(
        long,
        env = "TENANT_GATEWAY_URL",
        default_value = "http://127.0.0.1:8080/events"
    )]
    pub url: String,
    /// CloudEvent source.
    #[arg(long, default_value = "/tenant-gateway/send")]
    pub source: String,
    /// CloudEvent id [default: a new UUIDv7].
    #[arg(long)]
    pub id: Option<String>,
    /// CloudEvent subject.
    #[arg(long)]
    pub subject: Option<String>,
    /// File holding the bearer token to send.
    #[arg(long, env = "TENANT_GATEWAY_SEND_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

/// `journal` arguments: only a subcommand so far.
#[derive(Debug, Args)]
pub struct JournalArgs {
    /// What to do with the journal.
    #[command(subcommand)]
    pub command: JournalCommand,
}

/// `journal` subcommands.
#[derive(Debug, Subcommand)]
pub enum JournalCommand {
    /// Copy everything of a SQLite journal into an empty PostgreSQL journal, keeping ids and
    /// positions, then verify and print the row counts per table.
    #[command(
        after_help = "Example:\n  tenant-gateway journal copy --from sqlite://./data/tenant-gateway.db --to postgres://gateway@db:5432/tenant_gateway"
    )]
    Copy(JournalCopyArgs),
}

/// `journal copy` arguments.
#[derive(Debug, Args)]
pub struct JournalCopyArgs {
    /// The SQLite journal to copy, sqlite://PATH (its gateway stopped).
    #[arg(long, value_name = "URL")]
    pub from: String,
    /// The empty PostgreSQL journal to fill, postgres://USER[:PASSWORD]@HOST:PORT/DB (the
    /// database must exist; its schema is created).
    #[arg(long, value_name = "URL")]
    pub to: String,
}

/// `rules` arguments: only a subcommand so far.
#[derive(Debug, Args)]
pub struct RulesArgs {
    /// What to do with a rules file.
    #[command(subcommand)]
    pub command: RulesCommand,
}

/// `rules` subcommands.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate a rules file; with --event, show how that event normalizes.
    #[command(
        after_help = "Example:\n  tenant-gateway rules check rules.yaml --event event.json --actions upsert,delete"
    )]
    Check(RulesCheckArgs),
}

/// `rules check` arguments.
#[derive(Debug, Args)]
pub struct RulesCheckArgs {
    /// The YAML rules file to validate.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// A structured-mode CloudEvent (JSON) to normalize with the rules.
    #[arg(long, value_name = "FILE")]
    pub event: Option<PathBuf>,
    /// The allowed short action names, as the gateway is configured (comma-separated).
    #[arg(
        long,
        env = "TENANT_GATEWAY_ACTIONS",
        value_delimiter = ',',
        default_values_t = DEFAULT_ACTIONS.map(String::from)
    )]
    pub actions: Vec<String>,
}

/// `discover --output` values ([`OutputFormat`] without clap in the library).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormatArg {
    /// A multi-document YAML stream.
    Yaml,
    /// A `v1` `List`.
    Json,
}

/// `discover` flags; each also reads `TENANT_GATEWAY_<FLAG>`.
#[derive(Debug, Clone, Args)]
pub struct DiscoverArgs {
    /// Annotation listing the lifecycle actions a template Job takes part in.
    #[arg(
        long,
        env = "TENANT_GATEWAY_ANNOTATION_KEY",
        default_value = discovery::DEFAULT_ANNOTATION_KEY
    )]
    pub annotation_key: String,
    /// Namespace to watch for template Jobs (repeatable; comma-separated in the environment)
    /// [default: all namespaces].
    #[arg(
        long = "namespace",
        env = "TENANT_GATEWAY_NAMESPACES",
        value_delimiter = ',',
        value_name = "NS"
    )]
    pub namespaces: Vec<String>,
    /// Namespace where the WorkflowTemplates are applied (where Workflows run).
    #[arg(
        long,
        env = "TENANT_GATEWAY_WORKFLOW_NAMESPACE",
        default_value = "argo",
        value_name = "NS"
    )]
    pub workflow_namespace: String,
    /// Read Job manifests from the YAML files in DIR instead of a cluster.
    #[arg(long, env = "TENANT_GATEWAY_FROM_DIR", value_name = "DIR")]
    pub from_dir: Option<PathBuf>,
    /// Render and apply once, then exit.
    #[arg(long)]
    pub once: bool,
    /// Print what would be applied instead of applying it.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format of --dry-run.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormatArg::Yaml)]
    pub output: OutputFormatArg,
    /// Only the holder of a coordination.k8s.io Lease applies (for several replicas).
    #[arg(long, env = "TENANT_GATEWAY_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Lease name for --leader-election.
    #[arg(
        long,
        env = "TENANT_GATEWAY_LEASE_NAME",
        default_value = discovery::DEFAULT_LEASE_NAME
    )]
    pub lease_name: String,
    /// Listener for /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "TENANT_GATEWAY_DISCOVERY_LISTEN",
        default_value = discovery::DEFAULT_LISTEN,
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    /// Quiet period after the last Job change before the templates are rebuilt.
    #[arg(
        long,
        env = "TENANT_GATEWAY_DEBOUNCE",
        default_value = "2s",
        value_name = "DURATION"
    )]
    pub debounce: humantime::Duration,
    /// How long a vanished template Job still counts (Argo CD Replace deletes and re-creates).
    #[arg(
        long,
        env = "TENANT_GATEWAY_DISAPPEARANCE_GRACE",
        default_value = "30s",
        value_name = "DURATION"
    )]
    pub disappearance_grace: humantime::Duration,
    /// Service account the Workflows run as (it creates Jobs and ConfigMaps in team namespaces).
    #[arg(
        long,
        env = "TENANT_GATEWAY_BRIDGE_SERVICE_ACCOUNT",
        default_value = discovery::DEFAULT_BRIDGE_SERVICE_ACCOUNT
    )]
    pub bridge_service_account: String,
    /// ttlSecondsAfterFinished of the Jobs the bridge creates.
    #[arg(
        long,
        env = "TENANT_GATEWAY_JOB_TTL",
        default_value = "1h",
        value_name = "DURATION"
    )]
    pub job_ttl: humantime::Duration,
    /// Timeout of a bridge step when its Job has no tenant-gateway.io/timeout annotation.
    #[arg(
        long,
        env = "TENANT_GATEWAY_DEFAULT_TIMEOUT",
        default_value = "1h",
        value_name = "DURATION"
    )]
    pub default_timeout: humantime::Duration,
    /// Secret (in each Job's namespace) whose keys are passed as environment variables to
    /// migrate-out / migrate-in Jobs: object-storage credentials.
    #[arg(
        long,
        env = "TENANT_GATEWAY_OBJECT_STORAGE_SECRET",
        value_name = "NAME"
    )]
    pub object_storage_secret: Option<String>,
    /// Actions that always get a WorkflowTemplate (a no-op one when no Job takes part), so
    /// Sensors never point at a missing template (comma-separated).
    #[arg(
        long,
        env = "TENANT_GATEWAY_ACTIONS",
        value_delimiter = ',',
        default_values_t = discovery::DEFAULT_ACTIONS.map(String::from)
    )]
    pub actions: Vec<String>,
    /// Log line format.
    #[arg(long, env = "TENANT_GATEWAY_LOG_FORMAT", value_enum, default_value_t = LogFormatArg::Human)]
    pub log_format: LogFormatArg,
}

/// How the admin commands print their answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AdminOutput {
    /// Tables and reports for people.
    Table,
    /// The API's JSON answer, for scripts.
    Json,
}

/// `--status`: the delivery states of [`EventStatus`], mirrored here because the library stays
/// free of clap (a test checks that the two spell the same states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    /// Not delivered yet.
    Pending,
    /// The sink took it.
    Delivered,
    /// Failed for good; its tenant is parked.
    Dead,
    /// An operator skipped it.
    Skipped,
}

impl From<StatusArg> for EventStatus {
    fn from(status: StatusArg) -> Self {
        match status {
            StatusArg::Pending => EventStatus::Pending,
            StatusArg::Delivered => EventStatus::Delivered,
            StatusArg::Dead => EventStatus::Dead,
            StatusArg::Skipped => EventStatus::Skipped,
        }
    }
}

/// Flags every admin command takes: where the admin API is and how to authenticate.
#[derive(Debug, Clone, Args)]
pub struct AdminClientArgs {
    /// Admin API base URL.
    #[arg(
        long,
        env = "TENANT_GATEWAY_SERVER",
        default_value = "http://127.0.0.1:8081",
        value_name = "URL"
    )]
    pub server: String,
    /// File holding the admin bearer token (the token itself may be given in
    /// TENANT_GATEWAY_ADMIN_TOKEN instead); not needed against a loopback-only admin listener.
    #[arg(long, env = "TENANT_GATEWAY_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = AdminOutput::Table)]
    pub output: AdminOutput,
}

/// Conditions selecting events (combined with AND), shared by `events list` and bulk `replay`.
#[derive(Debug, Clone, Default, Args)]
#[group(id = "filter", multiple = true)]
pub struct FilterArgs {
    /// Only this tenant's events.
    #[arg(long)]
    pub tenant: Option<String>,
    /// Short action name (upsert) or emitted type (lifecycle.upsert).
    #[arg(long)]
    pub action: Option<String>,
    /// Delivery status of the event's latest emission.
    #[arg(long, value_enum)]
    pub status: Option<StatusArg>,
    /// Upstream CloudEvent source, exactly.
    #[arg(long, value_name = "SRC")]
    pub source: Option<String>,
    /// Events received at or after TIME: RFC 3339, or a duration meaning that long ago (2h).
    #[arg(long, value_name = "TIME")]
    pub since: Option<TimeSpec>,
    /// Events received before TIME: RFC 3339, or a duration meaning that long ago (30m).
    #[arg(long, value_name = "TIME")]
    pub until: Option<TimeSpec>,
    /// Only events whose latest emission's Workflow is in one of these Argo phases,
    /// comma-separated: Pending, Running, Succeeded, Failed, Error (Failed,Error).
    #[arg(long, value_name = "PHASES")]
    pub workflow_phase: Option<WorkflowPhases>,
}

/// `events` arguments.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// What to do with events.
    #[command(subcommand)]
    pub command: EventsCommand,
}

/// `events` subcommands.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List journaled events, oldest first, a page at a time.
    #[command(
        after_help = "Example:\n  tenant-gateway events list --tenant acme --since 24h --all -o json"
    )]
    List(EventsListArgs),
    /// Show one event: its upstream form, emissions, delivery attempts and operator actions.
    #[command(
        after_help = "Example:\n  tenant-gateway events show 0190a2b4-0000-7000-8000-000000000001"
    )]
    Show(EventsShowArgs),
}

/// `events list` arguments.
#[derive(Debug, Args)]
pub struct EventsListArgs {
    /// Server, token and output format.
    #[command(flatten)]
    pub client: AdminClientArgs,
    /// Which events.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Events per page (1-1000) [server default: 100].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
    /// Start after this cursor (a previous page's next cursor).
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<String>,
    /// Follow the next cursors until the end of the journal.
    #[arg(long)]
    pub all: bool,
}

/// `events show` arguments.
#[derive(Debug, Args)]
pub struct EventsShowArgs {
    /// Server, token and output format.
    #[command(flatten)]
    pub client: AdminClientArgs,
    /// The gateway's event id.
    #[arg(value_name = "EVENT_ID")]
    pub event_id: Uuid,
}

/// `replay` arguments: event ids (one replay each), or filter flags (a bulk replay job), or
/// `--cancel JOB_ID`.
#[derive(Debug, Args)]
#[command(
    override_usage = "tenant-gateway replay [OPTIONS] <EVENT_ID>...\n       \
        tenant-gateway replay [OPTIONS] <--tenant T|--action A|--status S|--source SRC|--since TIME|--until TIME|--workflow-phase PHASES>... [--dry-run] [--rate N] [--yes]\n       \
        tenant-gateway replay [OPTIONS] --cancel <JOB_ID>"
)]
#[command(group(
    ArgGroup::new("target")
        .required(true)
        .multiple(true)
        .args(["event_ids", "cancel", "tenant", "action", "status", "source", "since", "until", "workflow_phase"])
))]
pub struct ReplayArgs {
    /// Server, token and output format.
    #[command(flatten)]
    pub client: AdminClientArgs,
    /// Events to replay, one request each.
    #[arg(value_name = "EVENT_ID", conflicts_with_all = ["filter", "cancel", "dry_run", "rate"])]
    pub event_ids: Vec<Uuid>,
    /// Bulk replay: the events the job replays.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Bulk replay: only show how many events match, and a sample.
    #[arg(long)]
    pub dry_run: bool,
    /// Bulk replay: replays per second (0 < N <= 10000) [server default: 100].
    #[arg(long, value_name = "N", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Why; recorded with each replay or with the job.
    #[arg(long)]
    pub reason: Option<String>,
    /// Do not ask for confirmation (bulk replay; accepted, and needless, with event ids).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Cancel a running bulk replay job.
    #[arg(long, value_name = "JOB_ID", conflicts_with_all = ["filter", "dry_run", "rate", "yes", "reason"])]
    pub cancel: Option<Uuid>,
}

/// `skip` arguments.
#[derive(Debug, Args)]
pub struct SkipArgs {
    /// Server, token and output format.
    #[command(flatten)]
    pub client: AdminClientArgs,
    /// The dead event to skip.
    #[arg(value_name = "EVENT_ID")]
    pub event_id: Uuid,
    /// Why; recorded with the action.
    #[arg(long)]
    pub reason: String,
}

/// `tenants` arguments.
#[derive(Debug, Args)]
pub struct TenantsArgs {
    /// What to do with tenants.
    #[command(subcommand)]
    pub command: TenantsCommand,
}

/// `tenants` subcommands.
#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Show a tenant: parked or not, counts per status, its latest events and operator actions.
    #[command(after_help = "Example:\n  tenant-gateway tenants show acme --limit 20")]
    Show(TenantsShowArgs),
    /// List tenants in name order with their lifecycle state (every page), as a table or the
    /// API's JSON.
    #[command(
        after_help = "Example:\n  tenant-gateway tenants list --outcome failed\n  tenant-gateway tenants list --lifecycle active --action upsert -o json"
    )]
    List(TenantsListArgs),
}

/// `--lifecycle`: the words of [`Lifecycle`], mirrored here because the library stays free of
/// clap (a test checks that the two spell the same words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LifecycleArg {
    /// No action succeeded yet.
    Unknown,
    /// After a succeeded upsert or migrate-in.
    Active,
    /// After a succeeded migrate-out.
    MigratedOut,
    /// After a succeeded delete.
    Deleted,
}

impl From<LifecycleArg> for Lifecycle {
    fn from(arg: LifecycleArg) -> Self {
        match arg {
            LifecycleArg::Unknown => Lifecycle::Unknown,
            LifecycleArg::Active => Lifecycle::Active,
            LifecycleArg::MigratedOut => Lifecycle::MigratedOut,
            LifecycleArg::Deleted => Lifecycle::Deleted,
        }
    }
}

/// `--outcome`: the words of [`LifecycleOutcome`], mirrored like [`LifecycleArg`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutcomeArg {
    /// Delivered; its Workflow not seen yet, or Pending.
    Pending,
    /// Its Workflow is Running.
    Running,
    /// Its Workflow Succeeded.
    Succeeded,
    /// Its Workflow Failed or ended in Error.
    Failed,
}

impl From<OutcomeArg> for LifecycleOutcome {
    fn from(arg: OutcomeArg) -> Self {
        match arg {
            OutcomeArg::Pending => LifecycleOutcome::Pending,
            OutcomeArg::Running => LifecycleOutcome::Running,
            OutcomeArg::Succeeded => LifecycleOutcome::Succeeded,
            OutcomeArg::Failed => LifecycleOutcome::Failed,
        }
    }
}

/// `tenants list` arguments.
#[derive(Debug, Args)]
pub struct TenantsListArgs {
    /// Server, token and output format.
    #[command(flatten)]
    pub client: AdminClientArgs,
    /// Only tenants in this lifecycle.
    #[arg(long, value_enum)]
    pub lifecycle: Option<LifecycleArg>,
    /// Only tenants whose newest delivered emission came to this.
    #[arg(long, value_enum)]
    pub outcome: Option<OutcomeArg>,
    /// Only tenants whose newest delivered emission has this action (upsert or
    /// lifecycle.upsert).
    #[arg(long)]
    pub action: Option<String>,
    /// Tenants per page (1-1000) [server default: 100]; every page is shown.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
}

/// `tenants show` arguments.
#[derive(Debug, Args)]
pub struct TenantsShowArgs {
    /// Server, token and output format.
    #[command(flatten)]
    pub client: AdminClientArgs,
    /// The tenant.
    #[arg(value_name = "TENANT")]
    pub tenant: String,
    /// Timeline length (1-1000) [server default: 100].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
}

impl From<ServeArgs> for FlagsAndEnvironment {
    fn from(args: ServeArgs) -> Self {
        FlagsAndEnvironment {
            config: args.config,
            listen: args.listen,
            store: args.store,
            token_files: args.token_files,
            insecure_no_auth: args.insecure_no_auth,
            max_body: args.max_body,
            log_format: args.log_format.map(LogFormat::from),
            shutdown_grace: args.shutdown_grace.map(Into::into),
            workers: args.workers,
            store_busy_timeout: args.store_busy_timeout.map(Into::into),
            admin_listen: args.admin_listen,
            admin_token_files: args.admin_token_files,
            argo_ui_url: args.argo_ui_url,
            workflow_namespace: args.workflow_namespace,
            watch_workflows: args.watch_workflows,
            rules: args.rules,
            instance_uri: args.instance_uri,
            bench_null_endpoint: args.bench_null_endpoint,
            sink: SinkFlags {
                kind: args.sink.map(|kind| match kind {
                    SinkKindArg::Log => SinkKind::Log,
                    SinkKindArg::Webhook => SinkKind::Webhook,
                    SinkKindArg::Eventbus => SinkKind::Eventbus,
                }),
                webhook_url: args.webhook_url,
                webhook_token_file: args.webhook_token_file,
                nats_url: args.nats_url,
                event_source_name: args.event_source_name,
                event_name: args.event_name,
            },
            signing_secret_files: args.signing_secret_files,
            require_signature: args.require_signature,
            signature_tolerance: args.signature_tolerance.map(Into::into),
            rate_limit: args.rate_limit,
            rate_limit_burst: args.rate_limit_burst,
            max_batch_events: args.max_batch_events,
            max_extensions: args.max_extensions,
            max_attribute_length: args.max_attribute_length,
            body_read_timeout: args.body_read_timeout.map(Into::into),
            tls: TlsFlags {
                cert: args.tls_cert,
                key: args.tls_key,
                client_ca: args.tls_client_ca,
                admin_cert: args.admin_tls_cert,
                admin_key: args.admin_tls_key,
            },
            store_password_file: args.store_password_file,
            store_read_connections: args.store_read_connections,
        }
    }
}

impl From<SendArgs> for SendSettings {
    fn from(args: SendArgs) -> Self {
        SendSettings {
            ty: args.ty,
            tenant: args.tenant,
            data: args.data,
            mode: match args.mode {
                SendModeArg::Binary => SendMode::Binary,
                SendModeArg::Structured => SendMode::Structured,
            },
            url: args.url,
            source: args.source,
            id: args.id,
            subject: args.subject,
            token_file: args.token_file,
        }
    }
}

impl From<DiscoverArgs> for DiscoverSettings {
    fn from(args: DiscoverArgs) -> Self {
        DiscoverSettings {
            annotation_key: args.annotation_key,
            namespaces: args.namespaces,
            workflow_namespace: args.workflow_namespace,
            from_dir: args.from_dir,
            once: args.once,
            dry_run: args.dry_run,
            output: match args.output {
                OutputFormatArg::Yaml => OutputFormat::Yaml,
                OutputFormatArg::Json => OutputFormat::Json,
            },
            leader_election: args.leader_election,
            lease_name: args.lease_name,
            listen: args.listen,
            debounce: args.debounce.into(),
            disappearance_grace: args.disappearance_grace.into(),
            bridge_service_account: args.bridge_service_account,
            job_ttl: args.job_ttl.into(),
            default_timeout: args.default_timeout.into(),
            object_storage_secret: args.object_storage_secret,
            actions: args.actions,
            log_format: args.log_format.into(),
        }
    }
}

impl AdminClientArgs {
    /// The invocation of `command` with these flags; the token variable is read here.
    fn invocation(self, command: AdminCommand) -> Invocation {
        Invocation {
            client: ClientSettings {
                server: self.server,
                token_file: self.token_file,
                env_token: std::env::var(TOKEN_ENV).ok(),
            },
            output: match self.output {
                AdminOutput::Table => Output::Table,
                AdminOutput::Json => Output::Json,
            },
            command,
        }
    }
}

impl From<FilterArgs> for EventSelection {
    fn from(args: FilterArgs) -> Self {
        EventSelection {
            tenant: args.tenant,
            action: args.action,
            status: args.status.map(EventStatus::from),
            source: args.source,
            since: args.since,
            until: args.until,
            workflow_phases: args.workflow_phase.map(|p| p.0).unwrap_or_default(),
        }
    }
}

impl From<EventsArgs> for Invocation {
    fn from(args: EventsArgs) -> Self {
        match args.command {
            EventsCommand::List(args) => {
                args.client.invocation(AdminCommand::ListEvents(ListEvents {
                    selection: args.filter.into(),
                    limit: args.limit,
                    cursor: args.cursor,
                    all: args.all,
                }))
            }
            EventsCommand::Show(args) => {
                args.client.invocation(AdminCommand::ShowEvent(ShowEvent {
                    event_id: args.event_id,
                }))
            }
        }
    }
}

impl From<ReplayArgs> for Invocation {
    fn from(args: ReplayArgs) -> Self {
        args.client.invocation(AdminCommand::Replay(Replay {
            event_ids: args.event_ids,
            selection: args.filter.into(),
            dry_run: args.dry_run,
            rate: args.rate,
            reason: args.reason,
            yes: args.yes,
            cancel: args.cancel,
        }))
    }
}

impl From<SkipArgs> for Invocation {
    fn from(args: SkipArgs) -> Self {
        args.client.invocation(AdminCommand::Skip(Skip {
            event_id: args.event_id,
            reason: args.reason,
        }))
    }
}

impl From<TenantsArgs> for Invocation {
    fn from(args: TenantsArgs) -> Self {
        match args.command {
            TenantsCommand::Show(args) => {
                args.client.invocation(AdminCommand::ShowTenant(ShowTenant {
                    tenant: args.tenant,
                    limit: args.limit,
                }))
            }
            TenantsCommand::List(args) => {
                args.client
                    .invocation(AdminCommand::ListTenants(ListTenants {
                        filter: TenantFilter {
                            lifecycle: args.lifecycle.map(Lifecycle::from),
                            outcome: args.outcome.map(LifecycleOutcome::from),
                            action: args.action,
                        },
                        limit: args.limit,
                    }))
            }
        }
    }
}

#[cfg(test)]
#[path = "cli/tests.rs"]
mod tests;
