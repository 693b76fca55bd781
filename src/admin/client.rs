//! The operator CLI's side of the admin API: [`AdminClient`] (one method per route, answers
//! decoded into the [`api`](crate::admin::api) types) and the `events`, `replay`, `skip` and
//! `tenants` commands, which print tables or JSON. Output, progress and the confirmation prompt
//! go through a [`Console`], so tests drive the commands without a terminal.

use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::admin::api::{
    ActionRequest, BulkReplayRequest, DryRunResult, EmissionView, EventDetail, EventFilter,
    EventPage, EventSummary, OperatorActionView, ReplayJobList, ReplayJobView, ReplayResult,
    SkipResult, TenantView,
};
use crate::cli::{
    AdminClientArgs, AdminOutput, EventsArgs, EventsCommand, EventsListArgs, FilterArgs,
    ReplayArgs, SkipArgs, TenantsArgs, TenantsCommand,
};

/// Environment variable that may hold the admin token itself (`--token-file` wins over it).
pub const TOKEN_ENV: &str = "TENANT_GATEWAY_ADMIN_TOKEN";

/// The server's replay rate when the request names none; only used to word the confirmation.
const DEFAULT_RATE: f64 = 100.0;
/// The server refuses faster rates (`invalid-rate`); checked here too, before the dry run.
const MAX_RATE: f64 = 10_000.0;
/// How often a running replay job is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Consecutive transient poll failures (unreachable, 502-504) tolerated while following a job:
/// the job goes on running on the server, so a restarting gateway should not end the watch.
const MAX_POLL_FAILURES: u32 = 20;
/// Width of the progress bar, between the brackets.
const PROGRESS_BAR_WIDTH: usize = 30;
/// Plain (non-terminal) progress lines are printed at most this often.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Longest error detail taken from a body that is not a problem document.
const MAX_DETAIL_CHARS: usize = 200;

/// Everything that can go wrong in an admin command. Each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `--server` is not an http(s) URL.
    #[error("invalid server URL {url}: {reason}")]
    InvalidServer {
        /// As given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The HTTP client could not be built (e.g. no TLS roots).
    #[error("cannot set up the HTTP client: {0}")]
    HttpClient(String),
    /// `--token-file` could not be read.
    #[error("cannot read token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// `--token-file` holds only whitespace.
    #[error("token file {path} is empty")]
    EmptyTokenFile {
        /// The file.
        path: String,
    },
    /// The token variable is set to only whitespace.
    #[error("{TOKEN_ENV} is set but empty")]
    EmptyTokenEnv,
    /// No answer from the server (connection refused, DNS, TLS, timeout, reset).
    #[error("cannot reach the admin API at {server}: {reason}")]
    Unreachable {
        /// The `--server` URL.
        server: String,
        /// The innermost cause, e.g. `Connection refused (os error 111)`.
        reason: String,
    },
    /// The server answered with an error status; from its problem document when it sent one.
    #[error("{status} {title}: {detail}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The problem's title, or the status's reason phrase.
        title: String,
        /// The problem's detail, or the start of the body.
        detail: String,
        /// The problem's `type` URN, when the body was a problem document.
        problem_type: Option<String>,
    },
    /// A success answer whose body is not what the API promises.
    #[error("unexpected answer from {url}: {reason}")]
    UnexpectedBody {
        /// The request URL.
        url: String,
        /// The decoding error.
        reason: String,
    },
    /// The command line asks for something the API cannot do.
    #[error("{0}")]
    Usage(String),
    /// stdout or stderr could not be written (e.g. a closed pipe).
    #[error("cannot write output: {0}")]
    Output(std::io::Error),
    /// The confirmation could not be read.
    #[error("cannot read the confirmation: {0}")]
    Input(std::io::Error),
    /// The operator did not confirm a bulk replay.
    #[error("aborted: nothing replayed")]
    Aborted,
    /// Some of the replays by id failed (each is reported on stderr).
    #[error("{failed} of {total} replays failed")]
    ReplaysFailed {
        /// How many failed.
        failed: usize,
        /// How many were tried.
        total: usize,
    },
    /// A bulk replay job ended `failed` or `cancelled`.
    #[error("replay job {id} {status}{}", error.as_deref().map(|e| format!(": {e}")).unwrap_or_default())]
    JobEnded {
        /// The job.
        id: Uuid,
        /// `failed` or `cancelled`.
        status: String,
        /// Why it failed, as the server says.
        error: Option<String>,
    },
    /// Polling a running job failed; the job itself is not affected.
    #[error("lost track of replay job {job}, which goes on running on the server: {cause}")]
    Polling {
        /// The job.
        job: Uuid,
        /// The last poll's error.
        cause: Box<ClientError>,
    },
}

impl ClientError {
    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The problem slug (`event-not-found`) of an error answer that carried a problem document.
    pub fn problem_slug(&self) -> Option<&str> {
        match self {
            ClientError::Api {
                problem_type: Some(t),
                ..
            } => Some(t.strip_prefix("urn:tenant-gateway:problem:").unwrap_or(t)),
            _ => None,
        }
    }

    /// Worth another try: the server may be restarting or busy.
    fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Api { status, .. } => matches!(status, 502..=504),
            _ => false,
        }
    }
}

/// The problem+json members the client uses (RFC 9457); the others are ignored.
#[derive(Debug, Deserialize)]
struct ProblemBody {
    /// The problem type URN.
    #[serde(rename = "type")]
    problem_type: Option<String>,
    /// Short, fixed per type.
    title: Option<String>,
    /// This occurrence.
    detail: Option<String>,
}

/// Turn an error answer into a [`ClientError::Api`]: from its problem document, or, when a proxy
/// or another server answered, from the status and the start of the body.
fn problem_error(status: StatusCode, body: &[u8]) -> ClientError {
    let reason = status.canonical_reason().unwrap_or("Error");
    let problem = serde_json::from_slice::<ProblemBody>(body)
        .ok()
        .filter(|p| p.title.is_some() || p.detail.is_some());
    let (title, detail, problem_type) = match problem {
        Some(p) => (
            p.title
                .as_deref()
                .map_or_else(|| reason.to_owned(), one_line),
            p.detail.as_deref().map(one_line).unwrap_or_default(),
            p.problem_type,
        ),
        None => {
            let text = one_line(&String::from_utf8_lossy(body));
            (
                reason.to_owned(),
                text.chars().take(MAX_DETAIL_CHARS).collect(),
                None,
            )
        }
    };
    let detail = if detail.is_empty() {
        "(no detail)".to_owned()
    } else {
        detail
    };
    ClientError::Api {
        status: status.as_u16(),
        title,
        detail,
        problem_type,
    }
}

/// Collapse whitespace runs (newlines included) and drop control characters, so a message
/// stays on one line and cannot move the terminal's cursor.
fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The admin token: the trimmed content of `token_file` if given, else the trimmed `env_token`
/// (the value of [`TOKEN_ENV`]), else none (enough against a loopback-only admin listener).
pub fn load_token(
    token_file: Option<&Path>,
    env_token: Option<String>,
) -> Result<Option<String>, ClientError> {
    if let Some(path) = token_file {
        let text = std::fs::read_to_string(path).map_err(|source| ClientError::TokenFile {
            path: path.display().to_string(),
            source,
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(ClientError::EmptyTokenFile {
                path: path.display().to_string(),
            });
        }
        return Ok(Some(token.to_owned()));
    }
    match env_token {
        Some(token) if token.trim().is_empty() => Err(ClientError::EmptyTokenEnv),
        Some(token) => Ok(Some(token.trim().to_owned())),
        None => Ok(None),
    }
}

/// A client of the admin API (`/admin/v1/*`).
#[derive(Debug, Clone)]
pub struct AdminClient {
    /// Shared connection pool.
    http: reqwest::Client,
    /// The server's base URL; routes are appended to its path, so a prefix behind a proxy works.
    base: Url,
    /// Sent as `Authorization: Bearer`.
    token: Option<String>,
}

impl AdminClient {
    /// A client of the admin API at `server` (`http://127.0.0.1:8081`), sending `token` if any.
    pub fn new(server: &str, token: Option<String>) -> Result<Self, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidServer {
            url: server.to_owned(),
            reason: reason.to_owned(),
        };
        let mut base = Url::parse(server).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(invalid("expected http://HOST[:PORT] or https://..."));
        }
        base.set_query(None);
        base.set_fragment(None);
        let http = reqwest::Client::builder()
            .user_agent(concat!("tenant-gateway/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // Every route answers quickly (bulk replays run as jobs); a hung server should not
            // hang an operator's shell.
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::HttpClient(innermost_cause(&e)))?;
        Ok(AdminClient { http, base, token })
    }

    /// A client configured by the common admin flags and [`TOKEN_ENV`].
    pub fn from_args(args: &AdminClientArgs) -> Result<Self, ClientError> {
        let token = load_token(args.token_file.as_deref(), std::env::var(TOKEN_ENV).ok())?;
        AdminClient::new(&args.server, token)
    }

    /// The server's base URL.
    pub fn server(&self) -> &str {
        self.base.as_str()
    }

    /// `GET /admin/v1/events`: one page of the events `filter` selects.
    pub async fn list_events(
        &self,
        filter: &EventFilter,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<EventPage, ClientError> {
        let mut url = self.url(&["admin", "v1", "events"]);
        {
            let mut query = url.query_pairs_mut();
            let conditions = [
                ("tenant", &filter.tenant),
                ("action", &filter.action),
                ("status", &filter.status),
                ("source", &filter.source),
                ("since", &filter.since),
                ("until", &filter.until),
            ];
            for (name, value) in conditions {
                if let Some(value) = value {
                    query.append_pair(name, value);
                }
            }
            if let Some(limit) = limit {
                query.append_pair("limit", &limit.to_string());
            }
            if let Some(cursor) = cursor {
                query.append_pair("cursor", cursor);
            }
        }
        // An empty query would leave a bare `?`.
        if url.query() == Some("") {
            url.set_query(None);
        }
        self.call(self.request(Method::GET, url)).await
    }

    /// `GET /admin/v1/events/{eventId}`.
    pub async fn get_event(&self, event_id: Uuid) -> Result<EventDetail, ClientError> {
        let url = self.url(&["admin", "v1", "events", &event_id.to_string()]);
        self.call(self.request(Method::GET, url)).await
    }

    /// `POST /admin/v1/events/{eventId}/replay`.
    pub async fn replay_event(
        &self,
        event_id: Uuid,
        reason: Option<&str>,
    ) -> Result<ReplayResult, ClientError> {
        let url = self.url(&["admin", "v1", "events", &event_id.to_string(), "replay"]);
        let body = ActionRequest {
            reason: reason.map(str::to_owned),
        };
        self.call(self.request(Method::POST, url).json(&body)).await
    }

    /// `POST /admin/v1/events/{eventId}/skip`.
    pub async fn skip_event(
        &self,
        event_id: Uuid,
        reason: &str,
    ) -> Result<SkipResult, ClientError> {
        let url = self.url(&["admin", "v1", "events", &event_id.to_string(), "skip"]);
        let body = ActionRequest {
            reason: Some(reason.to_owned()),
        };
        self.call(self.request(Method::POST, url).json(&body)).await
    }

    /// `GET /admin/v1/tenants/{tenant}`, with the latest `limit` events in its timeline.
    pub async fn get_tenant(
        &self,
        tenant: &str,
        limit: Option<u32>,
    ) -> Result<TenantView, ClientError> {
        let mut url = self.url(&["admin", "v1", "tenants", tenant]);
        if let Some(limit) = limit {
            url.query_pairs_mut()
                .append_pair("limit", &limit.to_string());
        }
        self.call(self.request(Method::GET, url)).await
    }

    /// `POST /admin/v1/replays` as a dry run (`dryRun` is forced on): count and sample.
    pub async fn dry_run_replay(
        &self,
        request: &BulkReplayRequest,
    ) -> Result<DryRunResult, ClientError> {
        self.post_replays(request, true).await
    }

    /// `POST /admin/v1/replays` (`dryRun` is forced off): create a bulk replay job.
    pub async fn start_replay(
        &self,
        request: &BulkReplayRequest,
    ) -> Result<ReplayJobView, ClientError> {
        self.post_replays(request, false).await
    }

    /// `POST /admin/v1/replays` with `dryRun` set as given.
    async fn post_replays<T: serde::de::DeserializeOwned>(
        &self,
        request: &BulkReplayRequest,
        dry_run: bool,
    ) -> Result<T, ClientError> {
        let request = BulkReplayRequest {
            dry_run,
            ..request.clone()
        };
        let url = self.url(&["admin", "v1", "replays"]);
        self.call(self.request(Method::POST, url).json(&request))
            .await
    }

    /// `GET /admin/v1/replays`: the latest jobs, newest first.
    pub async fn list_replays(&self) -> Result<ReplayJobList, ClientError> {
        let url = self.url(&["admin", "v1", "replays"]);
        self.call(self.request(Method::GET, url)).await
    }

    /// `GET /admin/v1/replays/{jobId}`.
    pub async fn get_replay(&self, job_id: Uuid) -> Result<ReplayJobView, ClientError> {
        let url = self.url(&["admin", "v1", "replays", &job_id.to_string()]);
        self.call(self.request(Method::GET, url)).await
    }

    /// `POST /admin/v1/replays/{jobId}/cancel`.
    pub async fn cancel_replay(&self, job_id: Uuid) -> Result<ReplayJobView, ClientError> {
        let url = self.url(&["admin", "v1", "replays", &job_id.to_string(), "cancel"]);
        self.call(self.request(Method::POST, url)).await
    }

    /// `GET /admin/openapi.json`.
    pub async fn get_openapi(&self) -> Result<serde_json::Value, ClientError> {
        let url = self.url(&["admin", "openapi.json"]);
        self.call(self.request(Method::GET, url)).await
    }

    /// The base URL with `segments` appended, each percent-encoded (a tenant name typed by an
    /// operator cannot change the route).
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        // Cannot fail: `new` refused URLs that cannot be a base.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Send, and decode a success answer as `T`; anything else is a [`ClientError`].
    async fn call<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let unreachable = |e: reqwest::Error| ClientError::Unreachable {
            server: self.base.as_str().trim_end_matches('/').to_owned(),
            reason: innermost_cause(&e),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let url = response.url().to_string();
        let body = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(problem_error(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::UnexpectedBody {
            url,
            reason: e.to_string(),
        })
    }
}

/// The last error in a source chain: `Connection refused (os error 111)` rather than reqwest's
/// `error sending request for url (...)`, which repeats what the message already says.
fn innermost_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    one_line(&cause.to_string())
}

/// Where a command writes its answer, its progress and prompts, and reads the confirmation.
pub struct Console<'a> {
    /// The answer: tables and reports, or JSON.
    pub out: Box<dyn Write + 'a>,
    /// Progress, prompts, next-cursor hints and per-item failures.
    pub err: Box<dyn Write + 'a>,
    /// The operator's confirmation of a bulk replay.
    pub input: Box<dyn BufRead + 'a>,
    /// Draw progress as a bar redrawn in place (stderr is a terminal) instead of plain lines.
    pub interactive: bool,
}

impl Console<'static> {
    /// The process's stdout, stderr and stdin.
    pub fn stdio() -> Self {
        Console {
            out: Box::new(std::io::stdout()),
            err: Box::new(std::io::stderr()),
            input: Box::new(std::io::stdin().lock()),
            interactive: std::io::stderr().is_terminal(),
        }
    }
}

/// A time given on the command line: an instant, or a duration before now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeSpec {
    /// RFC 3339.
    At(DateTime<Utc>),
    /// "That long ago" (`2h`, `30m`, `1day`).
    Ago(Duration),
}

impl FromStr for TimeSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if let Ok(at) = DateTime::parse_from_rfc3339(text) {
            return Ok(TimeSpec::At(at.with_timezone(&Utc)));
        }
        let ago = humantime::parse_duration(text).map_err(|_| {
            format!(
                "expected an RFC 3339 time (2024-05-01T12:00:00Z) or a duration meaning that \
                 long ago (90s, 2h, 3days), got {text:?}"
            )
        })?;
        // Refused here so that `resolve` cannot overflow.
        TimeDelta::from_std(ago)
            .ok()
            .and_then(|delta| Utc::now().checked_sub_signed(delta))
            .ok_or_else(|| format!("{text:?} is too long ago"))?;
        Ok(TimeSpec::Ago(ago))
    }
}

impl TimeSpec {
    /// RFC 3339 in UTC, durations counted back from `now` (whole seconds).
    pub fn resolve(&self, now: DateTime<Utc>) -> String {
        match self {
            TimeSpec::At(at) => at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            TimeSpec::Ago(ago) => TimeDelta::from_std(*ago)
                .ok()
                .and_then(|delta| now.checked_sub_signed(delta))
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
                .to_rfc3339_opts(SecondsFormat::Secs, true),
        }
    }
}

/// The API filter the flags describe, relative times resolved against `now`. Resolved once
/// per command, so a bulk replay's dry run and job select with the same bounds.
pub fn filter_from_args(args: &FilterArgs, now: DateTime<Utc>) -> EventFilter {
    EventFilter {
        tenant: args.tenant.clone(),
        action: args.action.clone(),
        status: args.status.clone(),
        source: args.source.clone(),
        since: args.since.map(|t| t.resolve(now)),
        until: args.until.map(|t| t.resolve(now)),
    }
}

/// `--rate`: replays per second, 0 < N <= 10000 as the server accepts.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("expected a number, got {text:?}"))?;
    if rate.is_finite() && rate > 0.0 && rate <= MAX_RATE {
        Ok(rate)
    } else {
        Err(format!("must be > 0 and <= {MAX_RATE}, got {text}"))
    }
}

/// `tenant-gateway events list|show`.
pub async fn events(args: EventsArgs, console: &mut Console<'_>) -> Result<(), ClientError> {
    match args.command {
        EventsCommand::List(args) => {
            let client = AdminClient::from_args(&args.client)?;
            list_events(&client, &args, console).await
        }
        EventsCommand::Show(args) => {
            let client = AdminClient::from_args(&args.client)?;
            let detail = client.get_event(args.event_id).await?;
            match args.client.output {
                AdminOutput::Json => write_json(&mut console.out, &detail),
                AdminOutput::Table => write_out(&mut console.out, &render_event_detail(&detail)),
            }
        }
    }
}

/// `events list` against `client`: one page, or with `--all` every page from `--cursor` on.
pub async fn list_events(
    client: &AdminClient,
    args: &EventsListArgs,
    console: &mut Console<'_>,
) -> Result<(), ClientError> {
    let filter = filter_from_args(&args.filter, Utc::now());
    if !args.all {
        let page = client
            .list_events(&filter, args.limit, args.cursor.as_deref())
            .await?;
        return match args.client.output {
            AdminOutput::Json => write_json(&mut console.out, &page),
            AdminOutput::Table => {
                write_out(&mut console.out, &render_events(&page.events))?;
                match &page.next_cursor {
                    Some(cursor) => {
                        write_out(&mut console.err, &format!("next cursor: {cursor}\n"))
                    }
                    None => Ok(()),
                }
            }
        };
    }
    let mut events = Vec::new();
    let mut cursor = args.cursor.clone();
    loop {
        let page = client
            .list_events(&filter, args.limit, cursor.as_deref())
            .await?;
        // A full page has a next cursor even when nothing follows: the empty page ends it.
        let empty = page.events.is_empty();
        events.extend(page.events);
        match page.next_cursor {
            Some(next) if !empty => cursor = Some(next),
            _ => break,
        }
    }
    match args.client.output {
        AdminOutput::Json => write_json(&mut console.out, &AllEvents { events }),
        AdminOutput::Table => write_out(&mut console.out, &render_events(&events)),
    }
}

/// `events list --all -o json`.
#[derive(Serialize)]
struct AllEvents {
    /// Every page's events, in journal order.
    events: Vec<EventSummary>,
}

/// `tenant-gateway skip`.
pub async fn skip(args: SkipArgs, console: &mut Console<'_>) -> Result<(), ClientError> {
    let client = AdminClient::from_args(&args.client)?;
    let result = client.skip_event(args.event_id, &args.reason).await?;
    match args.client.output {
        AdminOutput::Json => write_json(&mut console.out, &result),
        AdminOutput::Table => write_out(&mut console.out, &format!("{}\n", skip_line(&result))),
    }
}

/// `tenant-gateway tenants show`.
pub async fn tenants(args: TenantsArgs, console: &mut Console<'_>) -> Result<(), ClientError> {
    match args.command {
        TenantsCommand::Show(args) => {
            let client = AdminClient::from_args(&args.client)?;
            let view = client.get_tenant(&args.tenant, args.limit).await?;
            match args.client.output {
                AdminOutput::Json => write_json(&mut console.out, &view),
                AdminOutput::Table => write_out(&mut console.out, &render_tenant(&view)),
            }
        }
    }
}

/// `tenant-gateway replay`: by ids, in bulk by filter, or `--cancel`.
pub async fn replay(args: ReplayArgs, console: &mut Console<'_>) -> Result<(), ClientError> {
    let client = AdminClient::from_args(&args.client)?;
    replay_with(&client, &args, console).await
}

/// `replay` against `client`.
pub async fn replay_with(
    client: &AdminClient,
    args: &ReplayArgs,
    console: &mut Console<'_>,
) -> Result<(), ClientError> {
    let output = args.client.output;
    if let Some(job_id) = args.cancel {
        let job = client.cancel_replay(job_id).await?;
        return match output {
            AdminOutput::Json => write_json(&mut console.out, &job),
            AdminOutput::Table => write_out(&mut console.out, &format!("{}\n", job_line(&job))),
        };
    }
    if !args.event_ids.is_empty() {
        return replay_ids(client, args, console).await;
    }
    bulk_replay(client, args, console).await
}

/// One replay per id; every id is tried, failures are reported one per line on stderr.
async fn replay_ids(
    client: &AdminClient,
    args: &ReplayArgs,
    console: &mut Console<'_>,
) -> Result<(), ClientError> {
    let mut results = Vec::new();
    let mut failed = 0;
    for &event_id in &args.event_ids {
        match client.replay_event(event_id, args.reason.as_deref()).await {
            Ok(result) => {
                if args.client.output == AdminOutput::Table {
                    write_out(&mut console.out, &format!("{}\n", replay_line(&result)))?;
                }
                results.push(result);
            }
            Err(error) => {
                failed += 1;
                write_out(&mut console.err, &format!("{event_id}: {error}\n"))?;
            }
        }
    }
    if args.client.output == AdminOutput::Json {
        write_json(&mut console.out, &results)?;
    }
    if failed > 0 {
        return Err(ClientError::ReplaysFailed {
            failed,
            total: args.event_ids.len(),
        });
    }
    Ok(())
}

/// Dry run, confirmation, job, progress until the job ends.
async fn bulk_replay(
    client: &AdminClient,
    args: &ReplayArgs,
    console: &mut Console<'_>,
) -> Result<(), ClientError> {
    let filter = filter_from_args(&args.filter, Utc::now());
    if filter.is_empty() {
        return Err(ClientError::Usage(
            "a bulk replay needs at least one of --tenant, --action, --status, --source, \
             --since, --until (or give event ids)"
                .into(),
        ));
    }
    let request = BulkReplayRequest {
        filter,
        dry_run: true,
        rate: args.rate,
        reason: args.reason.clone(),
        expected_count: None,
    };
    let dry_run = client.dry_run_replay(&request).await?;
    let json = args.client.output == AdminOutput::Json;
    if args.dry_run {
        return if json {
            write_json(&mut console.out, &dry_run)
        } else {
            write_out(&mut console.out, &render_dry_run(&dry_run))
        };
    }
    // With -o json, stdout carries only the final job; what is confirmed goes to stderr.
    let report = render_dry_run(&dry_run);
    if json {
        write_out(&mut console.err, &report)?;
    } else {
        write_out(&mut console.out, &report)?;
    }
    if dry_run.count == 0 {
        return write_out(&mut console.err, "nothing to replay\n");
    }
    if !args.yes {
        let prompt = format!(
            "Replay {} events at {}/s? [y/N] ",
            dry_run.count,
            args.rate.unwrap_or(DEFAULT_RATE)
        );
        if !confirm(&prompt, &mut console.err, &mut console.input)? {
            return Err(ClientError::Aborted);
        }
    }
    let job = client
        .start_replay(&BulkReplayRequest {
            expected_count: Some(dry_run.count),
            ..request
        })
        .await?;
    write_out(
        &mut console.err,
        &format!(
            "started replay job {id}; cancel it with: tenant-gateway replay --cancel {id}\n",
            id = job.id
        ),
    )?;
    let job = follow_job(client, job, console).await?;
    if json {
        write_json(&mut console.out, &job)?;
    } else {
        write_out(&mut console.out, &format!("{}\n", job_line(&job)))?;
    }
    match job.status.as_str() {
        "failed" | "cancelled" => Err(ClientError::JobEnded {
            id: job.id,
            status: job.status,
            error: job.error,
        }),
        _ => Ok(()),
    }
}

/// Poll the job until it is no longer running, showing progress on stderr.
async fn follow_job(
    client: &AdminClient,
    mut job: ReplayJobView,
    console: &mut Console<'_>,
) -> Result<ReplayJobView, ClientError> {
    let mut progress = Progress::new(console.interactive, Instant::now(), job.replayed);
    let mut failures = 0;
    loop {
        progress.update(&job, Instant::now(), &mut console.err)?;
        if job.status != "running" {
            break;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
        match client.get_replay(job.id).await {
            Ok(next) => {
                job = next;
                failures = 0;
            }
            Err(error) if error.is_transient() && failures < MAX_POLL_FAILURES => failures += 1,
            Err(error) => {
                progress.finish(&mut console.err)?;
                return Err(ClientError::Polling {
                    job: job.id,
                    cause: Box::new(error),
                });
            }
        }
    }
    progress.finish(&mut console.err)?;
    Ok(job)
}

/// Progress of a replay job on stderr: a bar redrawn in place on a terminal, otherwise plain
/// lines (for logs), at most one a second plus one per change of status.
struct Progress {
    /// Bar (terminal) or lines.
    interactive: bool,
    /// When following began, for the observed rate.
    started: Instant,
    /// `replayed` when following began, for the observed rate.
    start_replayed: u64,
    /// When the last plain line was printed.
    last_line: Option<Instant>,
    /// What the last plain line showed: status and count.
    last_shown: Option<(String, u64)>,
    /// Characters of the bar on screen, to blank a longer previous one.
    drawn: usize,
}

impl Progress {
    fn new(interactive: bool, started: Instant, start_replayed: u64) -> Self {
        Progress {
            interactive,
            started,
            start_replayed,
            last_line: None,
            last_shown: None,
            drawn: 0,
        }
    }

    fn update(
        &mut self,
        job: &ReplayJobView,
        now: Instant,
        err: &mut dyn Write,
    ) -> Result<(), ClientError> {
        if self.interactive {
            let elapsed = now.duration_since(self.started).as_secs_f64();
            let done = job.replayed.saturating_sub(self.start_replayed);
            let rate = if elapsed > 0.0 {
                done as f64 / elapsed
            } else {
                0.0
            };
            let bar = render_progress_bar(job.replayed, job.total, rate, PROGRESS_BAR_WIDTH);
            let width = bar.chars().count();
            let blank = " ".repeat(self.drawn.saturating_sub(width));
            self.drawn = width;
            return write_out(err, &format!("\r{bar}{blank}"));
        }
        let status_changed = self
            .last_shown
            .as_ref()
            .is_none_or(|(status, _)| status != &job.status);
        let count_changed = self
            .last_shown
            .as_ref()
            .is_none_or(|(_, replayed)| *replayed != job.replayed);
        let due = self
            .last_line
            .is_none_or(|at| now.duration_since(at) >= PLAIN_PROGRESS_EVERY);
        if status_changed || (count_changed && due) {
            self.last_line = Some(now);
            self.last_shown = Some((job.status.clone(), job.replayed));
            write_out(err, &format!("{}\n", render_progress_line(job)))?;
        }
        Ok(())
    }

    /// End the bar's line, so what follows starts on its own.
    fn finish(&mut self, err: &mut dyn Write) -> Result<(), ClientError> {
        if self.interactive && self.drawn > 0 {
            self.drawn = 0;
            write_out(err, "\n")?;
        }
        Ok(())
    }
}

/// `[#####.....] replayed/total pct rate/s`; `width` characters between the brackets.
pub fn render_progress_bar(replayed: u64, total: u64, rate: f64, width: usize) -> String {
    let (filled, pct) = if total == 0 {
        (width, 100)
    } else {
        let done = u128::from(replayed.min(total));
        let total = u128::from(total);
        // Floors: the bar is full and 100% only when everything is replayed.
        let filled = done * width as u128 / total;
        (usize::try_from(filled).unwrap_or(width), done * 100 / total)
    };
    format!(
        "[{}{}] {replayed}/{total} {pct}% {rate:.1}/s",
        "#".repeat(filled),
        ".".repeat(width - filled)
    )
}

/// A plain progress line: `replay <job>: replayed/total`, with the status once not running.
pub fn render_progress_line(job: &ReplayJobView) -> String {
    let mut line = format!("replay {}: {}/{}", job.id, job.replayed, job.total);
    if job.status != "running" {
        let _ = write!(line, " {}", one_line(&job.status));
    }
    line
}

/// Ask `prompt` on `err` and read one line: only `y` or `yes` (any case) confirm; end of input
/// declines.
pub fn confirm(
    prompt: &str,
    err: &mut dyn Write,
    input: &mut dyn BufRead,
) -> Result<bool, ClientError> {
    write_out(err, prompt)?;
    let mut answer = String::new();
    if input.read_line(&mut answer).map_err(ClientError::Input)? == 0 {
        // The prompt's line was never ended by the operator's Enter.
        write_out(err, "\n")?;
        return Ok(false);
    }
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

/// `replayed <eventId> as <emissionId> (<placement>), workflow <name>`.
pub fn replay_line(result: &ReplayResult) -> String {
    format!(
        "replayed {} as {} ({}), workflow {}",
        result.event_id,
        result.emission_id,
        one_line(&result.placement),
        one_line(&result.workflow_name)
    )
}

/// `skipped <eventId> (emission <id>); tenant <t> is parked|no longer parked`.
pub fn skip_line(result: &SkipResult) -> String {
    format!(
        "skipped {} (emission {}); tenant {} {}",
        result.event_id,
        result.emission_id,
        one_line(&result.tenant),
        if result.tenant_parked {
            "is parked"
        } else {
            "no longer parked"
        }
    )
}

/// One line describing a bulk replay job.
pub fn job_line(job: &ReplayJobView) -> String {
    let mut line = format!(
        "replay {} {}: {}/{} replayed at {}/s",
        job.id,
        one_line(&job.status),
        job.replayed,
        job.total,
        job.rate
    );
    if let Some(error) = &job.error {
        let _ = write!(line, ": {}", one_line(error));
    }
    line
}

/// Columns aligned on the widest cell, two spaces apart, no trailing spaces; cells are made
/// one-line and free of control characters first.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    let rows: Vec<Vec<String>> = std::iter::once(header)
        .chain(
            rows.iter()
                .map(|row| row.iter().map(|cell| one_line(cell)).collect()),
        )
        .collect();
    let mut widths = vec![0; headers.len()];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut table = String::new();
    for row in &rows {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let _ = write!(line, "{cell:<width$}");
        }
        table.push_str(line.trim_end());
        table.push('\n');
    }
    table
}

/// The `events list` table: EVENT ID, TENANT, SEQ, ACTION, STATUS, RECEIVED.
pub fn render_events(events: &[EventSummary]) -> String {
    if events.is_empty() {
        return "no events\n".to_owned();
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.event_id.to_string(),
                e.tenant.clone(),
                e.sequence.to_string(),
                e.action.clone(),
                e.status.clone(),
                e.received_at.clone(),
            ]
        })
        .collect();
    render_table(
        &["EVENT ID", "TENANT", "SEQ", "ACTION", "STATUS", "RECEIVED"],
        &rows,
    )
}

/// A bulk replay's dry run: the count, then the sample.
pub fn render_dry_run(dry_run: &DryRunResult) -> String {
    let mut report = match dry_run.count {
        1 => "1 event matches\n".to_owned(),
        n => format!("{n} events match\n"),
    };
    if !dry_run.sample.is_empty() {
        report.push_str(&render_events(&dry_run.sample));
        if dry_run.count > dry_run.sample.len() as u64 {
            let _ = writeln!(report, "(the first {} shown)", dry_run.sample.len());
        }
    }
    report
}

/// `name  value` lines, names padded to the longest.
fn render_fields(fields: &[(&str, String)]) -> String {
    let width = fields.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    let mut text = String::new();
    for (name, value) in fields {
        let _ = writeln!(text, "{name:<width$}  {}", one_line(value));
    }
    text
}

/// Every line of `text` prefixed with `prefix`.
fn indent(text: &str, prefix: &str) -> String {
    text.lines()
        .map(|line| format!("{prefix}{line}\n"))
        .collect()
}

/// The `events show` report: the event, its upstream identity, each emission with its attempts,
/// and the operator actions.
pub fn render_event_detail(detail: &EventDetail) -> String {
    let event = &detail.event;
    let mut fields = vec![
        ("event", event.event_id.to_string()),
        ("tenant", event.tenant.clone()),
        ("sequence", event.sequence.to_string()),
        ("action", event.action.clone()),
        ("status", event.status.clone()),
        ("received", event.received_at.clone()),
        ("source", event.source.clone()),
        ("type", event.event_type.clone()),
        ("id", event.id.clone()),
    ];
    if let Some(time) = &event.time {
        fields.push(("time", time.clone()));
    }
    let mut report = render_fields(&fields);
    if detail.emissions.is_empty() {
        report.push_str("\nemissions: none\n");
    }
    for emission in &detail.emissions {
        report.push('\n');
        report.push_str(&render_emission(emission));
    }
    push_operator_actions(&mut report, &detail.operator_actions);
    report
}

fn render_emission(emission: &EmissionView) -> String {
    let mut report = format!(
        "emission {}: {}\n",
        emission.emission_id,
        one_line(&emission.status)
    );
    let mut fields = vec![("workflow", emission.workflow_name.clone())];
    if let Some(url) = &emission.workflow_url {
        fields.push(("workflow url", url.clone()));
    }
    fields.push(("created", emission.created_at.clone()));
    if let Some(finished) = &emission.finished_at {
        fields.push(("finished", finished.clone()));
    }
    if let Some(of) = emission.replay_of {
        fields.push(("replay of", of.to_string()));
    }
    if let Some(job) = emission.replay_job {
        fields.push(("replay job", job.to_string()));
    }
    if let Some(by) = emission.replaced_by {
        fields.push(("replaced by", by.to_string()));
    }
    if let Some(error) = &emission.last_error {
        fields.push(("last error", error.clone()));
    }
    report.push_str(&indent(&render_fields(&fields), "  "));
    if emission.delivery_attempts.is_empty() {
        report.push_str("  attempts: none\n");
        return report;
    }
    report.push_str("  attempts:\n");
    let rows: Vec<Vec<String>> = emission
        .delivery_attempts
        .iter()
        .map(|a| {
            vec![
                a.attempt.to_string(),
                a.started_at.clone(),
                a.finished_at.clone(),
                a.sink.clone(),
                a.outcome.clone(),
                a.status_code.map(|s| s.to_string()).unwrap_or_default(),
                a.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let table = render_table(
        &[
            "ATTEMPT", "STARTED", "FINISHED", "SINK", "OUTCOME", "HTTP", "ERROR",
        ],
        &rows,
    );
    report.push_str(&indent(&table, "    "));
    report
}

fn render_operator_actions(actions: &[OperatorActionView]) -> String {
    let id = |id: Option<Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
    let rows: Vec<Vec<String>> = actions
        .iter()
        .map(|a| {
            vec![
                a.at.clone(),
                a.actor.clone(),
                a.action.clone(),
                id(a.event_id),
                id(a.emission_id),
                id(a.job_id),
                a.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    render_table(
        &[
            "AT", "ACTOR", "ACTION", "EVENT", "EMISSION", "JOB", "REASON",
        ],
        &rows,
    )
}

/// The `tenants show` report: parked or not, counts, last sequence, timeline, operator actions.
pub fn render_tenant(view: &TenantView) -> String {
    let parked = match (&view.parked, &view.parked_by) {
        (false, _) => "no".to_owned(),
        (true, None) => "yes".to_owned(),
        (true, Some(by)) => format!(
            "yes, by dead event {} (seq {}, {})",
            by.event_id, by.sequence, by.action
        ),
    };
    let counts = &view.counts;
    let mut report = render_fields(&[
        ("tenant", view.tenant.clone()),
        ("parked", parked),
        (
            "events",
            format!(
                "{} pending, {} delivered, {} dead, {} skipped",
                counts.pending, counts.delivered, counts.dead, counts.skipped
            ),
        ),
        ("last sequence", view.last_sequence.to_string()),
    ]);
    if view.timeline.is_empty() {
        report.push_str("\ntimeline: none\n");
    } else {
        let _ = writeln!(report, "\ntimeline (latest {}):", view.timeline.len());
        let rows: Vec<Vec<String>> = view
            .timeline
            .iter()
            .map(|entry| {
                vec![
                    entry.event.sequence.to_string(),
                    entry.event.event_id.to_string(),
                    entry.event.action.clone(),
                    entry.event.status.clone(),
                    entry.emissions.len().to_string(),
                    entry.event.received_at.clone(),
                ]
            })
            .collect();
        let table = render_table(
            &[
                "SEQ",
                "EVENT ID",
                "ACTION",
                "STATUS",
                "EMISSIONS",
                "RECEIVED",
            ],
            &rows,
        );
        report.push_str(&indent(&table, "  "));
    }
    push_operator_actions(&mut report, &view.operator_actions);
    report
}

/// Appends the "operator actions" section of a report.
fn push_operator_actions(report: &mut String, actions: &[OperatorActionView]) {
    report.push_str("\noperator actions:");
    if actions.is_empty() {
        report.push_str(" none\n");
    } else {
        report.push('\n');
        report.push_str(&indent(&render_operator_actions(actions), "  "));
    }
}

fn write_out(writer: &mut dyn Write, text: &str) -> Result<(), ClientError> {
    writer
        .write_all(text.as_bytes())
        .and_then(|()| writer.flush())
        .map_err(ClientError::Output)
}

/// Pretty JSON and a newline.
fn write_json(writer: &mut dyn Write, value: &impl Serialize) -> Result<(), ClientError> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| ClientError::Output(std::io::Error::other(e)))?;
    text.push('\n');
    write_out(writer, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::api::{AttemptView, StatusCounts, TimelineEntry};
    use crate::cli::{Cli, Command};
    use clap::{CommandFactory, Parser};

    fn summary(tenant: &str, sequence: i64, action: &str, status: &str) -> EventSummary {
        EventSummary {
            event_id: Uuid::now_v7(),
            tenant: tenant.into(),
            action: action.into(),
            sequence,
            status: status.into(),
            source: "/crm".into(),
            id: format!("crm-{sequence}"),
            event_type: format!("com.acme.tenant.lifecycle.{action}"),
            time: None,
            received_at: format!("2024-05-01T12:00:{sequence:02}Z"),
        }
    }

    fn job(status: &str, replayed: u64, total: u64) -> ReplayJobView {
        ReplayJobView {
            id: Uuid::now_v7(),
            status: status.into(),
            filter: EventFilter {
                tenant: Some("acme".into()),
                ..EventFilter::default()
            },
            rate: 50.0,
            actor: "ops".into(),
            reason: None,
            created_at: "2024-05-01T12:00:00Z".into(),
            finished_at: None,
            total,
            replayed,
            error: None,
        }
    }

    /// A console writing into buffers, reading `input`.
    fn console<'a>(
        out: &'a mut Vec<u8>,
        err: &'a mut Vec<u8>,
        input: &'a [u8],
        interactive: bool,
    ) -> Console<'a> {
        Console {
            out: Box::new(out),
            err: Box::new(err),
            input: Box::new(input),
            interactive,
        }
    }

    #[test]
    fn a_page_renders_as_aligned_columns() {
        let events = vec![
            summary("acme", 7, "upsert", "delivered"),
            summary("globex-industries", 12, "migrate-out", "dead"),
        ];
        // Each column is as wide as its widest cell (header included), two spaces apart.
        let headers = ["EVENT ID", "TENANT", "SEQ", "ACTION", "STATUS", "RECEIVED"];
        let cells: Vec<[String; 6]> = events
            .iter()
            .map(|e| {
                [
                    e.event_id.to_string(),
                    e.tenant.clone(),
                    e.sequence.to_string(),
                    e.action.clone(),
                    e.status.clone(),
                    e.received_at.clone(),
                ]
            })
            .collect();
        let width = |i: usize| {
            cells
                .iter()
                .map(|row| row[i].len())
                .chain([headers[i].len()])
                .max()
                .unwrap()
        };
        let line = |c: [&str; 6]| {
            format!(
                "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {:<w4$}  {}\n",
                c[0],
                c[1],
                c[2],
                c[3],
                c[4],
                c[5],
                w0 = width(0),
                w1 = width(1),
                w2 = width(2),
                w3 = width(3),
                w4 = width(4),
            )
        };
        let mut expected = line(headers);
        for row in &cells {
            expected.push_str(&line(row.each_ref().map(String::as_str)));
        }
        assert_eq!(render_events(&events), expected);
        // Spot-check against hand-known widths: a UUID is 36 characters, the longest tenant 17.
        assert_eq!(width(0), 36);
        assert_eq!(width(1), "globex-industries".len());
        assert!(expected.starts_with("EVENT ID                              TENANT  "));
        assert_eq!(render_events(&[]), "no events\n");
    }

    #[test]
    fn table_cells_cannot_break_lines_or_reach_the_terminal() {
        let table = render_table(&["A", "B"], &[vec!["x\ny".into(), "\u{1b}[2Jz".into()]]);
        assert_eq!(table, "A    B\nx y  [2Jz\n");
    }

    #[test]
    fn since_and_until_take_rfc3339_or_a_duration_ago() {
        let now = DateTime::parse_from_rfc3339("2024-05-01T12:00:00.750Z")
            .unwrap()
            .with_timezone(&Utc);
        let two_hours: TimeSpec = "2h".parse().unwrap();
        assert_eq!(two_hours, TimeSpec::Ago(Duration::from_secs(7200)));
        assert_eq!(two_hours.resolve(now), "2024-05-01T10:00:00Z");
        let mixed: TimeSpec = "1day 30m".parse().unwrap();
        assert_eq!(mixed.resolve(now), "2024-04-30T11:30:00Z");
        let offset: TimeSpec = "2024-05-01T14:00:00+02:00".parse().unwrap();
        assert_eq!(offset.resolve(now), "2024-05-01T12:00:00Z");
        let fraction: TimeSpec = "2024-05-01T12:00:00.5Z".parse().unwrap();
        assert_eq!(fraction.resolve(now), "2024-05-01T12:00:00.500Z");
        for bad in ["yesterday", "2024-05-01", "", "-2h"] {
            assert!(bad.parse::<TimeSpec>().is_err(), "{bad:?}");
        }
        assert!("100000000years"
            .parse::<TimeSpec>()
            .unwrap_err()
            .contains("too long ago"));

        let args = FilterArgs {
            tenant: Some("acme".into()),
            since: Some(two_hours),
            until: Some("30m".parse().unwrap()),
            ..FilterArgs::default()
        };
        let filter = filter_from_args(&args, now);
        assert_eq!(filter.tenant.as_deref(), Some("acme"));
        assert_eq!(filter.since.as_deref(), Some("2024-05-01T10:00:00Z"));
        assert_eq!(filter.until.as_deref(), Some("2024-05-01T11:30:00Z"));
        assert_eq!(filter.status, None);
    }

    #[test]
    fn progress_bar_width_and_percentage() {
        let bar = render_progress_bar(5, 10, 2.0, 10);
        assert_eq!(bar, "[#####.....] 5/10 50% 2.0/s");
        // Floors: one of three is 33%, 3 of 10 cells.
        assert_eq!(
            render_progress_bar(1, 3, 0.25, 10),
            "[###.......] 1/3 33% 0.2/s"
        );
        // Never full before everything is replayed.
        assert_eq!(
            render_progress_bar(999, 1000, 0.0, 30),
            format!("[{}.] 999/1000 99% 0.0/s", "#".repeat(29))
        );
        assert_eq!(
            render_progress_bar(0, 0, 0.0, 4),
            "[####] 0/0 100% 0.0/s",
            "an empty job is done"
        );
        assert_eq!(
            render_progress_bar(12, 10, 1.0, 4),
            "[####] 12/10 100% 1.0/s"
        );
        for replayed in 0..=7 {
            let bar = render_progress_bar(replayed, 7, 0.0, PROGRESS_BAR_WIDTH);
            let inside = &bar[1..=PROGRESS_BAR_WIDTH];
            assert_eq!(inside.len(), PROGRESS_BAR_WIDTH);
            assert_eq!(bar.as_bytes()[PROGRESS_BAR_WIDTH + 1], b']');
            assert!(inside.chars().all(|c| c == '#' || c == '.'));
        }
    }

    #[test]
    fn plain_progress_lines_are_throttled_but_show_every_status_change() {
        let start = Instant::now();
        let mut progress = Progress::new(false, start, 0);
        let mut err = Vec::new();
        let mut running = job("running", 0, 10);
        progress.update(&running, start, &mut err).unwrap();
        running.replayed = 3;
        progress
            .update(&running, start + Duration::from_millis(250), &mut err)
            .unwrap();
        progress
            .update(&running, start + Duration::from_millis(1000), &mut err)
            .unwrap();
        // Unchanged: nothing new even when due.
        progress
            .update(&running, start + Duration::from_millis(2500), &mut err)
            .unwrap();
        let mut done = running.clone();
        done.status = "completed".into();
        done.replayed = 10;
        progress
            .update(&done, start + Duration::from_millis(2750), &mut err)
            .unwrap();
        progress.finish(&mut err).unwrap();
        let id = running.id;
        assert_eq!(
            String::from_utf8(err).unwrap(),
            format!("replay {id}: 0/10\nreplay {id}: 3/10\nreplay {id}: 10/10 completed\n")
        );
    }

    #[test]
    fn the_bar_is_redrawn_in_place_and_ended_once() {
        let start = Instant::now();
        let mut progress = Progress::new(true, start, 0);
        let mut err = Vec::new();
        progress
            .update(&job("running", 0, 4), start, &mut err)
            .unwrap();
        progress
            .update(
                &job("running", 2, 4),
                start + Duration::from_secs(2),
                &mut err,
            )
            .unwrap();
        progress.finish(&mut err).unwrap();
        let bar = |replayed, rate| render_progress_bar(replayed, 4, rate, PROGRESS_BAR_WIDTH);
        assert_eq!(
            String::from_utf8(err).unwrap(),
            format!("\r{}\r{}\n", bar(0, 0.0), bar(2, 1.0))
        );
    }

    #[test]
    fn confirmation_accepts_only_yes() {
        for (input, expected) in [
            (&b"y\n"[..], true),
            (b"YES\n", true),
            (b"  yes  \r\n", true),
            (b"y", true),
            (b"n\n", false),
            (b"\n", false),
            (b"yes please\n", false),
        ] {
            let mut err = Vec::new();
            let mut input = input;
            assert_eq!(
                confirm("Replay 3 events at 100/s? [y/N] ", &mut err, &mut input).unwrap(),
                expected,
                "{input:?}"
            );
            assert_eq!(err, b"Replay 3 events at 100/s? [y/N] ");
        }
        // End of input declines, and ends the prompt's line.
        let mut err = Vec::new();
        assert!(!confirm("Go? [y/N] ", &mut err, &mut &b""[..]).unwrap());
        assert_eq!(err, b"Go? [y/N] \n");
    }

    #[test]
    fn problem_bodies_become_one_line_errors() {
        let body = br#"{"type":"urn:tenant-gateway:problem:event-not-found","title":"Event not found","status":404,"detail":"no event 0190"}"#;
        let error = problem_error(StatusCode::NOT_FOUND, body);
        assert_eq!(error.to_string(), "404 Event not found: no event 0190");
        assert_eq!(error.status(), Some(404));
        assert_eq!(error.problem_slug(), Some("event-not-found"));

        let multi = br#"{"title":"Bad\nquery","detail":"limit:\n  must be <= 1000"}"#;
        assert_eq!(
            problem_error(StatusCode::BAD_REQUEST, multi).to_string(),
            "400 Bad query: limit: must be <= 1000"
        );
        // A proxy's page: the reason phrase and the start of the body.
        let html = format!("<html>\n<body>{}</body></html>", "x".repeat(500));
        let error = problem_error(StatusCode::BAD_GATEWAY, html.as_bytes());
        let text = error.to_string();
        assert!(
            text.starts_with("502 Bad Gateway: <html> <body>xxx"),
            "{text}"
        );
        assert!(!text.contains('\n'));
        assert_eq!(text.len(), "502 Bad Gateway: ".len() + MAX_DETAIL_CHARS);
        assert_eq!(error.problem_slug(), None);
        assert_eq!(
            problem_error(StatusCode::UNAUTHORIZED, b"").to_string(),
            "401 Unauthorized: (no detail)"
        );
    }

    #[test]
    fn tokens_come_from_a_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  s3cret \n").unwrap();
        assert_eq!(
            load_token(Some(&file), Some("env".into()))
                .unwrap()
                .as_deref(),
            Some("s3cret"),
            "the file wins"
        );
        assert_eq!(
            load_token(None, Some(" env\n".into())).unwrap().as_deref(),
            Some("env")
        );
        assert_eq!(load_token(None, None).unwrap(), None);

        std::fs::write(&file, " \n").unwrap();
        let error = load_token(Some(&file), None).unwrap_err().to_string();
        assert_eq!(error, format!("token file {} is empty", file.display()));
        let missing = dir.path().join("missing");
        let error = load_token(Some(&missing), None).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("cannot read token file {}: ", missing.display())),
            "{error}"
        );
        assert_eq!(
            load_token(None, Some("  ".into())).unwrap_err().to_string(),
            "TENANT_GATEWAY_ADMIN_TOKEN is set but empty"
        );
    }

    #[test]
    fn routes_are_appended_to_the_server_path_and_encoded() {
        let client = AdminClient::new("https://ops.example/gateway/?x=1#f", None).unwrap();
        assert_eq!(
            client.url(&["admin", "v1", "tenants", "a/b?c"]).as_str(),
            "https://ops.example/gateway/admin/v1/tenants/a%2Fb%3Fc"
        );
        let client = AdminClient::new("http://127.0.0.1:8081", None).unwrap();
        assert_eq!(
            client.url(&["admin", "v1", "events"]).as_str(),
            "http://127.0.0.1:8081/admin/v1/events"
        );
        for bad in [
            "127.0.0.1:8081",
            "ftp://host",
            "not a url",
            "mailto:ops@example",
        ] {
            let error = AdminClient::new(bad, None).unwrap_err().to_string();
            assert!(
                error.starts_with(&format!("invalid server URL {bad}: ")),
                "{error}"
            );
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_named() {
        // Port 1 on loopback: nothing listens there.
        let client = AdminClient::new("http://127.0.0.1:1", None).unwrap();
        let error = client
            .list_events(&EventFilter::default(), None, None)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("cannot reach the admin API at http://127.0.0.1:1: "),
            "{error}"
        );
        assert!(!error.contains('\n'));
    }

    #[test]
    fn result_lines() {
        let replayed = ReplayResult {
            event_id: Uuid::now_v7(),
            tenant: "acme".into(),
            emission_id: Uuid::now_v7(),
            workflow_name: "acme-upsert-7-abc".into(),
            placement: "in-place".into(),
        };
        assert_eq!(
            replay_line(&replayed),
            format!(
                "replayed {} as {} (in-place), workflow acme-upsert-7-abc",
                replayed.event_id, replayed.emission_id
            )
        );
        let mut skipped = SkipResult {
            event_id: Uuid::now_v7(),
            tenant: "acme".into(),
            emission_id: Uuid::now_v7(),
            tenant_parked: false,
        };
        assert_eq!(
            skip_line(&skipped),
            format!(
                "skipped {} (emission {}); tenant acme no longer parked",
                skipped.event_id, skipped.emission_id
            )
        );
        skipped.tenant_parked = true;
        assert!(skip_line(&skipped).ends_with("; tenant acme is parked"));
        let mut failed = job("failed", 3, 10);
        failed.error = Some("journal closed".into());
        assert_eq!(
            job_line(&failed),
            format!(
                "replay {} failed: 3/10 replayed at 50/s: journal closed",
                failed.id
            )
        );
    }

    #[test]
    fn reports_show_emissions_attempts_and_the_parking_event() {
        let event = summary("acme", 3, "upsert", "dead");
        let emission = EmissionView {
            emission_id: Uuid::now_v7(),
            replay_of: None,
            replay_job: None,
            status: "dead".into(),
            created_at: "2024-05-01T12:00:03Z".into(),
            finished_at: Some("2024-05-01T12:05:00Z".into()),
            last_error: Some("HTTP 500".into()),
            replaced_by: None,
            workflow_name: "acme-upsert-3-x".into(),
            workflow_url: Some("https://argo.example/workflows/argo/acme-upsert-3-x".into()),
            delivery_attempts: vec![AttemptView {
                attempt: 1,
                started_at: "2024-05-01T12:00:04Z".into(),
                finished_at: "2024-05-01T12:00:05Z".into(),
                sink: "webhook".into(),
                outcome: "permanent".into(),
                status_code: Some(500),
                error: Some("HTTP 500".into()),
            }],
        };
        let detail = EventDetail {
            event: event.clone(),
            upstream: serde_json::json!({}),
            canonical: serde_json::json!({}),
            emissions: vec![emission.clone()],
            operator_actions: vec![],
        };
        let report = render_event_detail(&detail);
        for expected in [
            format!("event     {}\n", event.event_id),
            "source    /crm\n".into(),
            "type      com.acme.tenant.lifecycle.upsert\n".into(),
            "id        crm-3\n".into(),
            format!("emission {}: dead\n", emission.emission_id),
            "  workflow      acme-upsert-3-x\n".into(),
            "  workflow url  https://argo.example/workflows/argo/acme-upsert-3-x\n".into(),
            "    ATTEMPT  STARTED               FINISHED              SINK     OUTCOME    HTTP  ERROR\n".into(),
            "    1        2024-05-01T12:00:04Z  2024-05-01T12:00:05Z  webhook  permanent  500   HTTP 500\n".into(),
            "operator actions: none\n".into(),
        ] {
            assert!(report.contains(&expected), "{expected:?} not in\n{report}");
        }

        let view = TenantView {
            tenant: "acme".into(),
            parked: true,
            parked_by: Some(event.clone()),
            counts: StatusCounts {
                pending: 2,
                delivered: 0,
                dead: 1,
                skipped: 0,
            },
            last_sequence: 3,
            timeline: vec![TimelineEntry {
                event: event.clone(),
                emissions: vec![emission],
            }],
            operator_actions: vec![],
        };
        let report = render_tenant(&view);
        for expected in [
            format!(
                "parked         yes, by dead event {} (seq 3, upsert)\n",
                event.event_id
            ),
            "events         2 pending, 0 delivered, 1 dead, 0 skipped\n".into(),
            "last sequence  3\n".into(),
            "  SEQ  EVENT ID                              ACTION  STATUS  EMISSIONS  RECEIVED\n"
                .into(),
            format!(
                "  3    {}  upsert  dead    1          2024-05-01T12:00:03Z\n",
                event.event_id
            ),
        ] {
            assert!(report.contains(&expected), "{expected:?} not in\n{report}");
        }
    }

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

    /// A stand-in admin API: canned answers, and a record of every request.
    mod fake {
        use std::net::TcpListener;
        use std::sync::{Arc, Mutex};

        use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

        use super::*;

        /// An event id the fake does not know.
        pub const MISSING: &str = "0190a2b4-0000-7000-8000-00000000dead";

        /// What the fake saw and where a job is.
        #[derive(Default)]
        pub struct State {
            /// `METHOD path?query body` per request.
            pub requests: Vec<String>,
            /// `Authorization` headers seen.
            pub authorizations: Vec<Option<String>>,
            /// The job's progress, one step per poll.
            pub polls: u64,
        }

        pub struct Server {
            pub url: String,
            pub state: Arc<Mutex<State>>,
            handle: actix_web::dev::ServerHandle,
        }

        impl Server {
            pub async fn stop(self) {
                self.handle.stop(true).await;
            }

            pub fn requests(&self) -> Vec<String> {
                self.state.lock().unwrap().requests.clone()
            }
        }

        pub fn events(n: usize) -> Vec<EventSummary> {
            (1..=n)
                .map(|i| summary("acme", i as i64, "upsert", "dead"))
                .collect()
        }

        fn problem(status: u16, slug: &str, title: &str, detail: &str) -> HttpResponse {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                .content_type("application/problem+json")
                .json(serde_json::json!({
                    "type": format!("urn:tenant-gateway:problem:{slug}"),
                    "title": title, "status": status, "detail": detail,
                }))
        }

        async fn handle(
            request: HttpRequest,
            body: web::Bytes,
            state: web::Data<Arc<Mutex<State>>>,
        ) -> HttpResponse {
            let mut state = state.lock().unwrap();
            let query = request.query_string();
            state.requests.push(format!(
                "{} {}{}{} {}",
                request.method(),
                request.path(),
                if query.is_empty() { "" } else { "?" },
                query,
                String::from_utf8_lossy(&body)
            ));
            let auth = request
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned());
            state.authorizations.push(auth);
            let segments: Vec<&str> = request.path().trim_matches('/').split('/').collect();
            let job = |replayed: u64| ReplayJobView {
                id: Uuid::nil(),
                status: if replayed == 3 {
                    "completed"
                } else {
                    "running"
                }
                .into(),
                filter: EventFilter::default(),
                rate: 100.0,
                actor: "loopback".into(),
                reason: None,
                created_at: "2024-05-01T12:00:00Z".into(),
                finished_at: None,
                total: 3,
                replayed,
                error: None,
            };
            match (request.method().as_str(), segments.as_slice()) {
                ("GET", ["admin", "v1", "events"]) => {
                    let (events, next) = if query.contains("cursor=c2") {
                        (vec![], Some("c3"))
                    } else if query.contains("cursor=c1") {
                        (events(1), Some("c2"))
                    } else {
                        (events(2), Some("c1"))
                    };
                    HttpResponse::Ok().json(EventPage {
                        events,
                        next_cursor: next.map(str::to_owned),
                    })
                }
                ("POST", ["admin", "v1", "events", id, "replay"]) if *id == MISSING => {
                    problem(404, "event-not-found", "Event not found", "no such event")
                }
                ("POST", ["admin", "v1", "events", id, "replay"]) => {
                    HttpResponse::Accepted().json(ReplayResult {
                        event_id: id.parse().unwrap(),
                        tenant: "acme".into(),
                        emission_id: Uuid::nil(),
                        workflow_name: "acme-upsert-1-x".into(),
                        placement: "queued".into(),
                    })
                }
                ("POST", ["admin", "v1", "replays"]) => {
                    let request: BulkReplayRequest = serde_json::from_slice(&body).unwrap();
                    if request.dry_run {
                        HttpResponse::Ok().json(DryRunResult {
                            count: 3,
                            sample: events(3),
                        })
                    } else {
                        HttpResponse::Accepted().json(job(0))
                    }
                }
                ("GET", ["admin", "v1", "replays", _]) => {
                    state.polls += 1;
                    HttpResponse::Ok().json(job(state.polls.min(3)))
                }
                _ => problem(404, "not-found", "Not found", "no such route"),
            }
        }

        pub fn start() -> Server {
            let state = Arc::new(Mutex::new(State::default()));
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let data = web::Data::new(state.clone());
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(data.clone())
                    .default_service(web::to(handle))
            })
            .workers(1)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
            let handle = server.handle();
            tokio::spawn(server);
            Server { url, state, handle }
        }
    }

    fn replay_args(server: &str, args: &[&str]) -> ReplayArgs {
        let all = ["tenant-gateway", "replay", "--server", server]
            .into_iter()
            .chain(args.iter().copied());
        match Cli::try_parse_from(all).unwrap().command {
            Command::Replay(args) => args,
            _ => unreachable!(),
        }
    }

    #[tokio::test]
    async fn events_list_all_follows_cursors_to_the_empty_page() {
        let server = fake::start();
        let client = AdminClient::new(&server.url, Some("tok".into())).unwrap();
        let all = [
            "tenant-gateway",
            "events",
            "list",
            "--server",
            &server.url,
            "--tenant",
            "acme",
            "--limit",
            "2",
            "--all",
            "-o",
            "json",
        ];
        let Command::Events(EventsArgs {
            command: EventsCommand::List(args),
        }) = Cli::try_parse_from(all).unwrap().command
        else {
            unreachable!()
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        list_events(&client, &args, &mut console(&mut out, &mut err, b"", false))
            .await
            .unwrap();
        let printed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(printed["events"].as_array().unwrap().len(), 3);
        assert_eq!(printed.as_object().unwrap().len(), 1, "{printed}");
        let requests = server.requests();
        assert_eq!(
            requests,
            [
                "GET /admin/v1/events?tenant=acme&limit=2 ",
                "GET /admin/v1/events?tenant=acme&limit=2&cursor=c1 ",
                "GET /admin/v1/events?tenant=acme&limit=2&cursor=c2 ",
            ]
        );
        let auths = server.state.lock().unwrap().authorizations.clone();
        assert!(auths.iter().all(|a| a.as_deref() == Some("Bearer tok")));

        // One page as a table; the next cursor goes to stderr.
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let one = EventsListArgs {
            all: false,
            client: AdminClientArgs {
                output: AdminOutput::Table,
                ..args.client.clone()
            },
            ..args
        };
        list_events(&client, &one, &mut console(&mut out, &mut err, b"", false))
            .await
            .unwrap();
        let table = String::from_utf8(out).unwrap();
        assert_eq!(table.lines().count(), 3, "{table}");
        assert!(table.starts_with("EVENT ID "));
        assert_eq!(err, b"next cursor: c1\n");
        server.stop().await;
    }

    #[tokio::test]
    async fn replays_by_id_try_every_id_and_report_each_failure() {
        let server = fake::start();
        let client = AdminClient::new(&server.url, None).unwrap();
        let ok = "0190a2b4-0000-7000-8000-000000000001";
        let args = replay_args(&server.url, &[fake::MISSING, ok, "--reason", "argo fixed"]);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let error = replay_with(&client, &args, &mut console(&mut out, &mut err, b"", false))
            .await
            .unwrap_err();
        assert_eq!(error.to_string(), "1 of 2 replays failed");
        assert_eq!(
            String::from_utf8(err).unwrap(),
            format!("{}: 404 Event not found: no such event\n", fake::MISSING)
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!(
                "replayed {ok} as {} (queued), workflow acme-upsert-1-x\n",
                Uuid::nil()
            )
        );
        let requests = server.requests();
        assert_eq!(requests.len(), 2);
        assert!(
            requests[1].ends_with(r#"/replay {"reason":"argo fixed"}"#),
            "{requests:?}"
        );
        assert_eq!(server.state.lock().unwrap().authorizations, [None, None]);
        server.stop().await;
    }

    #[tokio::test]
    async fn a_bulk_replay_is_dry_run_confirmed_started_and_followed() {
        let server = fake::start();
        let client = AdminClient::new(&server.url, None).unwrap();
        let args = replay_args(&server.url, &["--status", "dead", "--rate", "20"]);

        // Declined: nothing but the dry run reaches the server.
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let error = replay_with(
            &client,
            &args,
            &mut console(&mut out, &mut err, b"n\n", false),
        )
        .await
        .unwrap_err();
        assert_eq!(error.to_string(), "aborted: nothing replayed");
        assert_eq!(
            server.requests(),
            [r#"POST /admin/v1/replays {"filter":{"status":"dead"},"dryRun":true,"rate":20.0}"#]
        );
        let report = String::from_utf8(out).unwrap();
        assert!(report.starts_with("3 events match\nEVENT ID "), "{report}");
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "Replay 3 events at 20/s? [y/N] "
        );

        // Confirmed: the job carries the count confirmed, and is polled until it completes.
        let (mut out, mut err) = (Vec::new(), Vec::new());
        replay_with(
            &client,
            &args,
            &mut console(&mut out, &mut err, b"y\n", false),
        )
        .await
        .unwrap();
        let requests = server.requests();
        assert_eq!(
            requests[2],
            r#"POST /admin/v1/replays {"filter":{"status":"dead"},"dryRun":false,"rate":20.0,"expectedCount":3}"#
        );
        assert_eq!(requests.len(), 6, "{requests:?}");
        let job_id = Uuid::nil();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.ends_with(&format!(
                "replay {job_id} completed: 3/3 replayed at 100/s\n"
            )),
            "{out}"
        );
        let err = String::from_utf8(err).unwrap();
        assert!(
            err.contains(&format!("tenant-gateway replay --cancel {job_id}\n")),
            "{err}"
        );
        assert!(
            err.ends_with(&format!("replay {job_id}: 3/3 completed\n")),
            "{err}"
        );

        // --dry-run stops after the count; -o json prints the dry run's answer.
        let args = replay_args(
            &server.url,
            &["--status", "dead", "--dry-run", "-o", "json"],
        );
        let (mut out, mut err) = (Vec::new(), Vec::new());
        replay_with(&client, &args, &mut console(&mut out, &mut err, b"", false))
            .await
            .unwrap();
        let printed: DryRunResult = serde_json::from_slice(&out).unwrap();
        assert_eq!(printed.count, 3);
        assert!(err.is_empty());
        assert_eq!(server.requests().len(), 7);
        server.stop().await;
    }

    #[test]
    fn rates() {
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        assert_eq!(parse_rate("10000"), Ok(10_000.0));
        for bad in ["0", "-1", "10000.5", "NaN", "inf", "fast"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}

/// `docs/openapi.json` against the `api` types: what the server serves must describe what it
/// sends and accepts.
#[cfg(test)]
mod openapi_doc {
    use std::collections::BTreeSet;

    use serde_json::{json, Value};

    use crate::admin::api::{
        ActionRequest, AttemptView, BulkReplayRequest, DryRunResult, EmissionView, EventDetail,
        EventFilter, EventPage, EventSummary, OperatorActionView, ReplayJobList, ReplayJobView,
        ReplayResult, SkipResult, StatusCounts, TenantView, TimelineEntry,
    };

    const DOCUMENT: &str = include_str!("../../docs/openapi.json");

    fn document() -> Value {
        serde_json::from_str(DOCUMENT).expect("docs/openapi.json is JSON")
    }

    /// The document compiled with `#/components/schemas/{name}` as its root, so the schema's
    /// own `#/components/...` references resolve.
    fn validator(doc: &Value, name: &str) -> jsonschema::Validator {
        let mut root = doc.clone();
        root["$ref"] = json!(format!("#/components/schemas/{name}"));
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("{name} does not compile: {e}"))
    }

    fn assert_valid(doc: &Value, name: &str, instance: &Value) {
        let validator = validator(doc, name);
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:?}\n{instance:#}");
    }

    fn assert_invalid(doc: &Value, name: &str, instance: &Value) {
        assert!(
            !validator(doc, name).is_valid(instance),
            "{name} accepts {instance:#}"
        );
    }

    fn uuid(n: u128) -> uuid::Uuid {
        uuid::Uuid::from_u128(0x0190_a2b4_0000_7000_8000_0000_0000_0000 + n)
    }

    fn full_filter() -> EventFilter {
        EventFilter {
            tenant: Some("acme".into()),
            action: Some("upsert".into()),
            status: Some("dead".into()),
            source: Some("/crm".into()),
            since: Some("2024-05-01T10:00:00Z".into()),
            until: Some("2024-05-01T12:00:00.5Z".into()),
        }
    }

    fn summary(time: Option<&str>) -> EventSummary {
        EventSummary {
            event_id: uuid(1),
            tenant: "acme".into(),
            action: "upsert".into(),
            sequence: 3,
            status: "dead".into(),
            source: "/crm".into(),
            id: "crm-3".into(),
            event_type: "com.acme.tenant.lifecycle.upsert".into(),
            time: time.map(str::to_owned),
            received_at: "2024-05-01T12:00:00.123Z".into(),
        }
    }

    fn attempt(full: bool) -> AttemptView {
        AttemptView {
            attempt: 1,
            started_at: "2024-05-01T12:00:01Z".into(),
            finished_at: "2024-05-01T12:00:02Z".into(),
            sink: "webhook".into(),
            outcome: if full { "permanent" } else { "delivered" }.into(),
            status_code: full.then_some(500),
            error: full.then(|| "HTTP 500".into()),
        }
    }

    fn emission(full: bool) -> EmissionView {
        EmissionView {
            emission_id: uuid(2),
            replay_of: full.then(|| uuid(1)),
            replay_job: full.then(|| uuid(3)),
            status: "dead".into(),
            created_at: "2024-05-01T12:00:00Z".into(),
            finished_at: full.then(|| "2024-05-01T12:05:00Z".into()),
            last_error: full.then(|| "HTTP 500".into()),
            replaced_by: full.then(|| uuid(4)),
            workflow_name: "acme-upsert-3-x".into(),
            workflow_url: full.then(|| "https://argo.example/workflows/argo/x".into()),
            delivery_attempts: if full { vec![attempt(true)] } else { vec![] },
        }
    }

    fn action(full: bool) -> OperatorActionView {
        OperatorActionView {
            at: "2024-05-01T12:10:00Z".into(),
            actor: "ops".into(),
            action: "replay".into(),
            event_id: full.then(|| uuid(1)),
            tenant: full.then(|| "acme".into()),
            emission_id: full.then(|| uuid(2)),
            job_id: full.then(|| uuid(3)),
            reason: full.then(|| "argo fixed".into()),
        }
    }

    fn job(full: bool) -> ReplayJobView {
        ReplayJobView {
            id: uuid(3),
            status: if full { "failed" } else { "running" }.into(),
            filter: if full {
                full_filter()
            } else {
                EventFilter::default()
            },
            rate: 12.5,
            actor: "loopback".into(),
            reason: full.then(|| "argo fixed".into()),
            created_at: "2024-05-01T12:00:00Z".into(),
            finished_at: full.then(|| "2024-05-01T12:01:00Z".into()),
            total: 10,
            replayed: 4,
            error: full.then(|| "journal closed".into()),
        }
    }

    /// For each component schema of an `api` type: an instance with every optional member set,
    /// and one with as few as the type allows.
    fn samples() -> Vec<(&'static str, Value, Value)> {
        let to = |v: &dyn erased::Ser| v.json();
        vec![
            (
                "EventFilter",
                to(&full_filter()),
                to(&EventFilter::default()),
            ),
            (
                "EventSummary",
                to(&summary(Some("2024-05-01T11:59:59Z"))),
                to(&summary(None)),
            ),
            (
                "EventPage",
                to(&EventPage {
                    events: vec![summary(None)],
                    next_cursor: Some("opaque".into()),
                }),
                to(&EventPage {
                    events: vec![],
                    next_cursor: None,
                }),
            ),
            ("AttemptView", to(&attempt(true)), to(&attempt(false))),
            ("EmissionView", to(&emission(true)), to(&emission(false))),
            ("OperatorActionView", to(&action(true)), to(&action(false))),
            (
                "EventDetail",
                to(&EventDetail {
                    event: summary(Some("2024-05-01T11:59:59Z")),
                    upstream: json!({"specversion": "1.0", "id": "crm-3"}),
                    canonical: json!({"specversion": "1.0", "type": "lifecycle.upsert"}),
                    emissions: vec![emission(true)],
                    operator_actions: vec![action(true)],
                }),
                to(&EventDetail {
                    event: summary(None),
                    upstream: json!({}),
                    canonical: json!({}),
                    emissions: vec![],
                    operator_actions: vec![],
                }),
            ),
            (
                "ActionRequest",
                to(&ActionRequest {
                    reason: Some("why".into()),
                }),
                to(&ActionRequest::default()),
            ),
            (
                "ReplayResult",
                to(&ReplayResult {
                    event_id: uuid(1),
                    tenant: "acme".into(),
                    emission_id: uuid(5),
                    workflow_name: "acme-upsert-3-y".into(),
                    placement: "in-place".into(),
                }),
                to(&ReplayResult {
                    event_id: uuid(1),
                    tenant: "acme".into(),
                    emission_id: uuid(5),
                    workflow_name: "acme-upsert-3-y".into(),
                    placement: "queued".into(),
                }),
            ),
            (
                "SkipResult",
                to(&SkipResult {
                    event_id: uuid(1),
                    tenant: "acme".into(),
                    emission_id: uuid(2),
                    tenant_parked: true,
                }),
                to(&SkipResult {
                    event_id: uuid(1),
                    tenant: "acme".into(),
                    emission_id: uuid(2),
                    tenant_parked: false,
                }),
            ),
            (
                "StatusCounts",
                to(&StatusCounts {
                    pending: 1,
                    delivered: 2,
                    dead: 3,
                    skipped: 4,
                }),
                to(&StatusCounts::default()),
            ),
            (
                "TimelineEntry",
                to(&TimelineEntry {
                    event: summary(Some("2024-05-01T11:59:59Z")),
                    emissions: vec![emission(true)],
                }),
                to(&TimelineEntry {
                    event: summary(None),
                    emissions: vec![],
                }),
            ),
            (
                "TenantView",
                to(&TenantView {
                    tenant: "acme".into(),
                    parked: true,
                    parked_by: Some(summary(None)),
                    counts: StatusCounts::default(),
                    last_sequence: 3,
                    timeline: vec![TimelineEntry {
                        event: summary(None),
                        emissions: vec![emission(false)],
                    }],
                    operator_actions: vec![action(true)],
                }),
                to(&TenantView {
                    tenant: "acme".into(),
                    parked: false,
                    parked_by: None,
                    counts: StatusCounts::default(),
                    last_sequence: 0,
                    timeline: vec![],
                    operator_actions: vec![],
                }),
            ),
            (
                "BulkReplayRequest",
                to(&BulkReplayRequest {
                    filter: full_filter(),
                    dry_run: true,
                    rate: Some(0.5),
                    reason: Some("argo fixed".into()),
                    expected_count: Some(10),
                }),
                to(&BulkReplayRequest {
                    filter: EventFilter {
                        tenant: Some("acme".into()),
                        ..EventFilter::default()
                    },
                    ..BulkReplayRequest::default()
                }),
            ),
            (
                "DryRunResult",
                to(&DryRunResult {
                    count: 12,
                    sample: vec![summary(None)],
                }),
                to(&DryRunResult {
                    count: 0,
                    sample: vec![],
                }),
            ),
            ("ReplayJobView", to(&job(true)), to(&job(false))),
            (
                "ReplayJobList",
                to(&ReplayJobList {
                    jobs: vec![job(true), job(false)],
                }),
                to(&ReplayJobList { jobs: vec![] }),
            ),
        ]
    }

    /// Serialize any of the sample values without naming each type.
    mod erased {
        pub trait Ser {
            fn json(&self) -> serde_json::Value;
        }
        impl<T: serde::Serialize> Ser for T {
            fn json(&self) -> serde_json::Value {
                serde_json::to_value(self).expect("serializes")
            }
        }
    }

    /// Property names a schema declares, following `allOf` and `$ref`.
    fn declared_properties(doc: &Value, schema: &Value) -> BTreeSet<String> {
        if let Some(target) = schema["$ref"].as_str() {
            let target = doc.pointer(&target[1..]).expect("ref resolves");
            return declared_properties(doc, target);
        }
        let mut names: BTreeSet<String> = schema["properties"]
            .as_object()
            .into_iter()
            .flat_map(|properties| properties.keys().cloned())
            .collect();
        for part in schema["allOf"].as_array().into_iter().flatten() {
            names.extend(declared_properties(doc, part));
        }
        names
    }

    fn collect_refs<'v>(value: &'v Value, refs: &mut Vec<&'v str>) {
        match value {
            Value::Object(map) => {
                for (key, value) in map {
                    match (key.as_str(), value) {
                        ("$ref", Value::String(target)) => refs.push(target),
                        _ => collect_refs(value, refs),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
            _ => {}
        }
    }

    #[test]
    fn it_is_openapi_3_1_and_every_reference_resolves() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        assert!(refs.len() > 50, "{}", refs.len());
        for target in refs {
            assert!(target.starts_with("#/components/"), "{target}");
            assert!(
                doc.pointer(&target[1..]).is_some(),
                "{target} does not resolve"
            );
        }
    }

    #[test]
    fn every_route_of_the_contract_is_described() {
        let doc = document();
        let routes: &[(&str, &str, &[&str])] = &[
            ("/healthz", "get", &["200"]),
            ("/readyz", "get", &["200", "503"]),
            ("/metrics", "get", &["200"]),
            ("/admin/openapi.json", "get", &["200"]),
            (
                "/admin/v1/events",
                "get",
                &["200", "400", "401", "500", "503"],
            ),
            (
                "/admin/v1/events/{eventId}",
                "get",
                &["200", "400", "401", "404", "500", "503"],
            ),
            (
                "/admin/v1/events/{eventId}/replay",
                "post",
                &["202", "400", "401", "404", "500", "503"],
            ),
            (
                "/admin/v1/events/{eventId}/skip",
                "post",
                &["200", "400", "401", "404", "409", "500", "503"],
            ),
            (
                "/admin/v1/tenants/{tenant}",
                "get",
                &["200", "400", "401", "404", "500", "503"],
            ),
            (
                "/admin/v1/replays",
                "post",
                &["200", "202", "400", "401", "409", "500", "503"],
            ),
            ("/admin/v1/replays", "get", &["200", "401", "500", "503"]),
            (
                "/admin/v1/replays/{jobId}",
                "get",
                &["200", "400", "401", "404", "500", "503"],
            ),
            (
                "/admin/v1/replays/{jobId}/cancel",
                "post",
                &["200", "400", "401", "404", "409", "500", "503"],
            ),
        ];
        let mut described = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                described += 1;
                let expected = routes
                    .iter()
                    .find(|(p, m, _)| p == path && m == method)
                    .unwrap_or_else(|| panic!("{method} {path} is not in the contract"));
                let codes: Vec<&str> = operation["responses"]
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                assert_eq!(codes, expected.2, "{method} {path}");
                let security = &operation["security"];
                if path.starts_with("/admin/v1/") {
                    assert_eq!(security, &json!([{"adminToken": []}]), "{method} {path}");
                } else {
                    assert_eq!(security, &json!([]), "{method} {path}");
                }
            }
        }
        assert_eq!(described, routes.len());
        assert!(doc.get("security").is_none(), "security is per operation");
        assert_eq!(
            doc["components"]["securitySchemes"]["adminToken"],
            json!({"type": "http", "scheme": "bearer", "description": "An admin token (`--admin-token-file`)."})
        );
        let limit = &doc["paths"]["/admin/v1/events"]["get"]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap()["schema"];
        assert_eq!(
            limit,
            &json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100})
        );
    }

    #[test]
    fn every_schema_is_valid_json_schema_2020_12() {
        let doc = document();
        for (name, schema) in doc["components"]["schemas"].as_object().unwrap() {
            if let Err(error) = jsonschema::meta::validate(schema) {
                panic!("{name}: {error}");
            }
            validator(&doc, name);
        }
    }

    #[test]
    fn the_schemas_accept_what_the_types_serialize_and_name_every_member() {
        let doc = document();
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let samples = samples();
        for (name, full, minimal) in &samples {
            assert!(schemas.contains_key(*name), "{name} has no schema");
            assert_valid(&doc, name, full);
            assert_valid(&doc, name, minimal);
            // Every member the type serializes is declared, and nothing else: the full sample
            // sets every optional member.
            let declared = declared_properties(&doc, &schemas[*name]);
            let serialized: BTreeSet<String> = full.as_object().unwrap().keys().cloned().collect();
            assert_eq!(declared, serialized, "{name}");
            // `required` is what the type always sends except its `Option`s (which serialize
            // as null) and members it skips when empty or defaulted.
            let required: BTreeSet<String> = schemas[*name]["required"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| r.as_str().unwrap().to_owned())
                .collect();
            for member in &required {
                assert!(
                    minimal.get(member).is_some_and(|v| !v.is_null()),
                    "{name}.{member} is required but the type may leave it out"
                );
            }
        }
        // Every api type has a sample, and the document has no other object schema but these.
        let sampled: BTreeSet<&str> = samples.iter().map(|(name, ..)| *name).collect();
        let extra: BTreeSet<&str> = schemas
            .keys()
            .map(String::as_str)
            .filter(|name| !sampled.contains(name))
            .collect();
        assert_eq!(
            extra,
            BTreeSet::from(["Health", "Problem", "Readiness", "Violation"])
        );
    }

    #[test]
    fn request_bodies_refuse_unknown_members_as_the_server_does() {
        let doc = document();
        for (name, body) in [
            ("EventFilter", json!({"tenant": "acme", "tenants": "x"})),
            ("ActionRequest", json!({"reason": "x", "why": "y"})),
            (
                "BulkReplayRequest",
                json!({"filter": {"tenant": "acme"}, "dryrun": true}),
            ),
            (
                "BulkReplayRequest",
                json!({"filter": {"tenant": "acme", "x": 1}}),
            ),
        ] {
            assert_invalid(&doc, name, &body);
            let error = match name {
                "EventFilter" => serde_json::from_value::<EventFilter>(body).is_err(),
                "ActionRequest" => serde_json::from_value::<ActionRequest>(body).is_err(),
                _ => serde_json::from_value::<BulkReplayRequest>(body).is_err(),
            };
            assert!(error, "serde accepts what the document refuses");
        }
        // Null members are accepted by both (serde reads them as `None`).
        let nulls = json!({"filter": {"tenant": "acme", "status": null}, "rate": null});
        assert_valid(&doc, "BulkReplayRequest", &nulls);
        assert!(serde_json::from_value::<BulkReplayRequest>(nulls).is_ok());
        assert_invalid(&doc, "BulkReplayRequest", &json!({"filter": {}, "rate": 0}));
        assert_invalid(
            &doc,
            "BulkReplayRequest",
            &json!({"filter": {}, "rate": 10001}),
        );
        assert_invalid(&doc, "BulkReplayRequest", &json!({"dryRun": true}));
    }

    #[test]
    fn the_schemas_are_not_vacuous() {
        let doc = document();
        let mut summary = serde_json::to_value(summary(None)).unwrap();
        assert_invalid(&doc, "EventSummary", &json!({}));
        summary["status"] = json!("lost");
        assert_invalid(&doc, "EventSummary", &summary);
        summary["status"] = json!("dead");
        summary["eventId"] = json!("not-a-uuid");
        assert_invalid(&doc, "EventSummary", &summary);
        summary["eventId"] = json!(uuid(1));
        summary["receivedAt"] = json!("yesterday");
        assert_invalid(&doc, "EventSummary", &summary);
        let mut entry = serde_json::to_value(TimelineEntry {
            event: self::summary(None),
            emissions: vec![],
        })
        .unwrap();
        entry.as_object_mut().unwrap().remove("tenant");
        assert_invalid(&doc, "TimelineEntry", &entry);
        assert_invalid(&doc, "ReplayResult", &json!({"placement": "anywhere"}));
        assert_valid(
            &doc,
            "Problem",
            &json!({
                "type": "urn:tenant-gateway:problem:event-not-found",
                "title": "Event not found", "status": 404, "detail": "no event 0190",
            }),
        );
        assert_invalid(
            &doc,
            "Problem",
            &json!({"type": "about:blank", "title": "x", "status": 404, "detail": "y"}),
        );
    }
}
