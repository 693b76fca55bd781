//! Command-line interface: clap definitions, and their conversion into the plain settings and
//! inputs the library takes. Each subcommand's work lives in library code that the tests call
//! too; no library module depends on this one.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use uuid::Uuid;

use crate::admin::client::commands::{
    parse_rate, AdminCommand, EventSelection, Invocation, ListEvents, Output, Replay, ShowEvent,
    ShowTenant, Skip, TimeSpec,
};
use crate::admin::client::{ClientSettings, TOKEN_ENV};
use crate::config::{ByteSize, LogFormat};
use crate::journal::EventStatus;
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
    Serve(ServeArgs),
    /// Post one CloudEvent to a gateway, the way an upstream system would.
    Send(SendArgs),
    /// Generate Argo WorkflowTemplates from suspended, annotated Jobs (the discovery sidecar).
    Discover(DiscoverArgs),
    /// Work with normalization rules files (validate them, try them on an event).
    Rules(RulesArgs),
    /// Search journaled events and show one with its deliveries (admin API).
    Events(EventsArgs),
    /// Replay events by id, or in bulk by filter as a rate-limited job (admin API).
    Replay(ReplayArgs),
    /// Mark a dead event skipped, so its tenant's later events can flow (admin API).
    Skip(SkipArgs),
    /// Show a tenant: whether it is parked, its counts and its timeline (admin API).
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
    /// Journal URL, sqlite://PATH [default: sqlite://./data/tenant-gateway.db].
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
    /// Log line format [default: human].
    #[arg(long, env = "TENANT_GATEWAY_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
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
    /// Namespace the Workflows run in (for the Argo UI links) [default: argo].
    #[arg(long, env = "TENANT_GATEWAY_WORKFLOW_NAMESPACE", value_name = "NS")]
    pub workflow_namespace: Option<String>,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SendMode {
    Binary,
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
    #[arg(long, value_enum, default_value_t = SendMode::Binary)]
    pub mode: SendMode,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
}

/// `discover` flags; each also reads `TENANT_GATEWAY_<FLAG>`.
#[derive(Debug, Clone, Args)]
pub struct DiscoverArgs {
    /// Annotation listing the lifecycle actions a template Job takes part in.
    #[arg(
        long,
        env = "TENANT_GATEWAY_ANNOTATION_KEY",
        default_value = "tenant-gateway.io/lifecycle"
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
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Yaml)]
    pub output: OutputFormat,
    /// Only the holder of a coordination.k8s.io Lease applies (for several replicas).
    #[arg(long, env = "TENANT_GATEWAY_LEADER_ELECTION")]
    pub leader_election: bool,
    /// Lease name for --leader-election.
    #[arg(
        long,
        env = "TENANT_GATEWAY_LEASE_NAME",
        default_value = "tenant-gateway-discovery"
    )]
    pub lease_name: String,
    /// Listener for /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "TENANT_GATEWAY_DISCOVERY_LISTEN",
        default_value = "127.0.0.1:8082",
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
        default_value = "tenant-lifecycle-bridge"
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
        default_value = "upsert,delete,migrate-out,migrate-in,admin"
    )]
    pub actions: Vec<String>,
    /// Log line format.
    #[arg(long, env = "TENANT_GATEWAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
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
    List(EventsListArgs),
    /// Show one event: its upstream form, emissions, delivery attempts and operator actions.
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
        tenant-gateway replay [OPTIONS] <--tenant T|--action A|--status S|--source SRC|--since TIME|--until TIME>... [--dry-run] [--rate N] [--yes]\n       \
        tenant-gateway replay [OPTIONS] --cancel <JOB_ID>"
)]
#[command(group(
    ArgGroup::new("target")
        .required(true)
        .multiple(true)
        .args(["event_ids", "cancel", "tenant", "action", "status", "source", "since", "until"])
))]
pub struct ReplayArgs {
    /// Server, token and output format.
    #[command(flatten)]
    pub client: AdminClientArgs,
    /// Events to replay, one request each.
    #[arg(value_name = "EVENT_ID", conflicts_with_all = ["filter", "cancel", "dry_run", "rate", "yes"])]
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
    /// Bulk replay: do not ask for confirmation.
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
    Show(TenantsShowArgs),
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
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("tenant-gateway").chain(args.iter().copied()))
        };
        let id = "0190a2b4-0000-7000-8000-000000000001";
        let Command::Replay(replay) = parse(&["replay", id, id, "--reason", "fixed"])
            .unwrap()
            .command
        else {
            panic!("not replay")
        };
        assert_eq!(replay.event_ids.len(), 2);
        assert_eq!(replay.client.server, "http://127.0.0.1:8081");
        assert_eq!(replay.client.output, AdminOutput::Table);
        let Command::Replay(bulk) = parse(&[
            "replay", "--status", "dead", "--since", "2h", "--rate", "5", "-y", "-o", "json",
        ])
        .unwrap()
        .command
        else {
            panic!("not replay")
        };
        assert!(bulk.event_ids.is_empty() && bulk.yes);
        assert_eq!(bulk.rate, Some(5.0));
        assert_eq!(bulk.client.output, AdminOutput::Json);
        let invocation = Invocation::from(bulk);
        assert_eq!(invocation.output, Output::Json);
        assert_eq!(invocation.client.server, "http://127.0.0.1:8081");
        let AdminCommand::Replay(bulk) = invocation.command else {
            panic!("not replay")
        };
        assert_eq!(bulk.selection.status, Some(EventStatus::Dead));
        assert_eq!(bulk.selection.since, Some("2h".parse().unwrap()));
        assert!(bulk.yes && !bulk.dry_run && bulk.cancel.is_none());
        let Command::Events(list) = parse(&[
            "events",
            "list",
            "--server",
            "http://gw:8081",
            "--token-file",
            "/t",
            "--tenant",
            "acme",
            "--limit",
            "2",
            "--all",
            "--cursor",
            "c1",
        ])
        .unwrap()
        .command
        else {
            panic!("not events")
        };
        let invocation = Invocation::from(list);
        assert_eq!(invocation.client.server, "http://gw:8081");
        assert_eq!(invocation.client.token_file, Some(PathBuf::from("/t")));
        assert_eq!(invocation.output, Output::Table);
        assert_eq!(
            invocation.command,
            AdminCommand::ListEvents(ListEvents {
                selection: EventSelection {
                    tenant: Some("acme".into()),
                    ..EventSelection::default()
                },
                limit: Some(2),
                cursor: Some("c1".into()),
                all: true,
            })
        );
        for refused in [
            &["replay"][..],
            &["replay", "--dry-run"],
            &["replay", id, "--tenant", "acme"],
            &["replay", id, "--dry-run"],
            &["replay", "--cancel", id, "--status", "dead"],
            &["replay", "--tenant", "acme", "--rate", "0"],
            &["replay", "--tenant", "acme", "--rate", "10001"],
            &["replay", "--status", "lost"],
            &["skip", id],
            &["events", "list", "--limit", "0"],
            &["events", "list", "--limit", "1001"],
            &["events", "show", "not-a-uuid"],
        ] {
            assert!(parse(refused).is_err(), "{refused:?} was accepted");
        }
        assert!(parse(&["events", "list", "--all", "--tenant", "acme", "--limit", "1000"]).is_ok());
        assert!(parse(&[
            "tenants",
            "show",
            "acme",
            "--limit",
            "5",
            "--server",
            "http://gw:8081"
        ])
        .is_ok());
        assert!(parse(&["replay", "--cancel", id]).is_ok());
    }

    #[test]
    fn status_flag_values_are_the_journal_states() {
        let flags: Vec<(String, EventStatus)> = StatusArg::value_variants()
            .iter()
            .map(|arg| {
                let name = arg
                    .to_possible_value()
                    .expect("shown")
                    .get_name()
                    .to_owned();
                (name, EventStatus::from(*arg))
            })
            .collect();
        let states: Vec<(String, EventStatus)> = EventStatus::ALL
            .iter()
            .map(|status| (status.as_str().to_owned(), *status))
            .collect();
        assert_eq!(flags, states);
    }
}
