//! What each admin command does: [`run`] takes an [`Invocation`] (client settings, output
//! format and the command with its plain inputs, built from the command line in `cli.rs`),
//! calls the API and prints the answer through a [`Console`], so tests drive the commands
//! without a terminal.

use std::io::{BufRead, IsTerminal, Write};
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::render::{
    job_line, render_dry_run, render_event_detail, render_events, render_tenant, render_tenants,
    replay_line, skip_line, write_json, write_out, Progress,
};
use super::{AdminClient, ClientError, ClientSettings};
use crate::admin::api::{
    parse_workflow_phases, BulkReplayRequest, EventFilter, EventStatus, EventSummary,
    ReplayJobStatus, ReplayJobView, TenantFilter, TenantPage, WorkflowPhase,
};

/// The server's replay rate when the request names none; only used to word the confirmation.
const DEFAULT_RATE: f64 = 100.0;
// The server refuses other rates (`invalid-rate`); checked here too, before the dry run.
use crate::admin::{MAX_RATE, MIN_RATE};
/// How often a running replay job is polled.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Consecutive transient poll failures (unreachable, 502-504) tolerated while following a job:
/// the job goes on running on the server, so a restarting gateway should not end the watch.
const MAX_POLL_FAILURES: u32 = 20;

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

/// Which events a listing or a bulk replay selects, as the operator gave them: times may be
/// relative to now until [`EventSelection::resolve`] fixes them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventSelection {
    /// Only this tenant's events.
    pub tenant: Option<String>,
    /// Short action name (`upsert`) or emitted type (`lifecycle.upsert`).
    pub action: Option<String>,
    /// Delivery status of the event's latest emission.
    pub status: Option<EventStatus>,
    /// Upstream CloudEvent source, exactly.
    pub source: Option<String>,
    /// Events received at or after this time.
    pub since: Option<TimeSpec>,
    /// Events received before this time.
    pub until: Option<TimeSpec>,
    /// Only events whose latest emission's Workflow is in one of these phases (none: any).
    pub workflow_phases: Vec<WorkflowPhase>,
}

/// `--workflow-phase Failed,Error`: one or several of Argo's phases, as the API reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowPhases(pub Vec<WorkflowPhase>);

impl FromStr for WorkflowPhases {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        parse_workflow_phases(text).map(WorkflowPhases)
    }
}

impl EventSelection {
    /// The API filter, relative times resolved against `now`. Resolved once per command, so a
    /// bulk replay's dry run and job select with the same bounds.
    pub fn resolve(&self, now: DateTime<Utc>) -> EventFilter {
        EventFilter {
            tenant: self.tenant.clone(),
            action: self.action.clone(),
            status: self.status,
            source: self.source.clone(),
            since: self.since.map(|t| t.resolve(now)),
            until: self.until.map(|t| t.resolve(now)),
            workflow_phase: (!self.workflow_phases.is_empty()).then(|| {
                let words: Vec<&str> = self.workflow_phases.iter().map(|p| p.as_str()).collect();
                words.join(",")
            }),
        }
    }
}

/// `--rate`: replays per second, from 0.1 to 10000 as the server accepts.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let rate: f64 = text
        .parse()
        .map_err(|_| format!("expected a number, got {text:?}"))?;
    if (MIN_RATE..=MAX_RATE).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("must be from {MIN_RATE} to {MAX_RATE}, got {text}"))
    }
}

/// How a command prints its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// Tables and reports for people.
    #[default]
    Table,
    /// The API's JSON answer, for scripts.
    Json,
}

/// `events list`: one page, or every page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListEvents {
    /// Which events.
    pub selection: EventSelection,
    /// Events per page; the server's default when none.
    pub limit: Option<u32>,
    /// Start after this cursor (a previous page's next cursor).
    pub cursor: Option<String>,
    /// Follow the next cursors until the end of the journal.
    pub all: bool,
}

/// `events show`: one event with its emissions, attempts and operator actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShowEvent {
    /// The gateway's event id.
    pub event_id: Uuid,
}

/// `replay`: event ids (one replay each), a selection (a bulk replay job), or a job to cancel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replay {
    /// Events to replay, one request each; when empty, `selection` makes a bulk replay.
    pub event_ids: Vec<Uuid>,
    /// Bulk replay: the events the job replays.
    pub selection: EventSelection,
    /// Bulk replay: only show how many events match, and a sample.
    pub dry_run: bool,
    /// Bulk replay: replays per second; the server's default when none.
    pub rate: Option<f64>,
    /// Why; recorded with each replay or with the job.
    pub reason: Option<String>,
    /// Bulk replay: do not ask for confirmation.
    pub yes: bool,
    /// Cancel this running bulk replay job instead.
    pub cancel: Option<Uuid>,
}

/// `skip`: mark a dead event skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    /// The dead event.
    pub event_id: Uuid,
    /// Why; recorded with the action.
    pub reason: String,
}

/// `tenants show`: a tenant's parking, counts and timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShowTenant {
    /// The tenant.
    pub tenant: String,
    /// Timeline length; the server's default when none.
    pub limit: Option<u32>,
}

/// `tenants list`: every tenant the filter selects, all pages followed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListTenants {
    /// Which tenants.
    pub filter: TenantFilter,
    /// Tenants per page; the server's default when none.
    pub limit: Option<u32>,
}

/// One admin command with its inputs.
#[derive(Debug, Clone, PartialEq)]
pub enum AdminCommand {
    /// `events list`.
    ListEvents(ListEvents),
    /// `events show`.
    ShowEvent(ShowEvent),
    /// `replay`.
    Replay(Replay),
    /// `skip`.
    Skip(Skip),
    /// `tenants show`.
    ShowTenant(ShowTenant),
    /// `tenants list`.
    ListTenants(ListTenants),
}

/// What the operator asked for: which server, how to print, which command.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// Server and credentials.
    pub client: ClientSettings,
    /// Tables or JSON.
    pub output: Output,
    /// The command.
    pub command: AdminCommand,
}

/// Run `invocation` against the server its settings name.
pub async fn run(invocation: Invocation, console: &mut Console<'_>) -> Result<(), ClientError> {
    let client = AdminClient::from_settings(&invocation.client)?;
    execute(&client, invocation.output, &invocation.command, console).await
}

/// Run `command` against `client`.
pub async fn execute(
    client: &AdminClient,
    output: Output,
    command: &AdminCommand,
    console: &mut Console<'_>,
) -> Result<(), ClientError> {
    match command {
        AdminCommand::ListEvents(list) => list_events(client, output, list, console).await,
        AdminCommand::ShowEvent(show) => {
            let detail = client.get_event(show.event_id).await?;
            match output {
                Output::Json => write_json(&mut console.out, &detail),
                Output::Table => write_out(&mut console.out, &render_event_detail(&detail)),
            }
        }
        AdminCommand::Replay(replay) => self::replay(client, output, replay, console).await,
        AdminCommand::Skip(skip) => {
            let result = client.skip_event(skip.event_id, &skip.reason).await?;
            match output {
                Output::Json => write_json(&mut console.out, &result),
                Output::Table => write_out(&mut console.out, &format!("{}\n", skip_line(&result))),
            }
        }
        AdminCommand::ShowTenant(show) => {
            let view = client.get_tenant(&show.tenant, show.limit).await?;
            match output {
                Output::Json => write_json(&mut console.out, &view),
                Output::Table => write_out(&mut console.out, &render_tenant(&view)),
            }
        }
        AdminCommand::ListTenants(list) => list_tenants(client, output, list, console).await,
    }
}

/// Every item of a paged listing from `cursor` on: `fetch` answers one page and its next
/// cursor. A full page has a next cursor even when nothing follows: the empty page ends it.
async fn every_page<T>(
    mut cursor: Option<String>,
    mut fetch: impl AsyncFnMut(Option<String>) -> Result<(Vec<T>, Option<String>), ClientError>,
) -> Result<Vec<T>, ClientError> {
    let mut items = Vec::new();
    loop {
        let (page, next) = fetch(cursor).await?;
        let empty = page.is_empty();
        items.extend(page);
        match next {
            Some(next) if !empty => cursor = Some(next),
            _ => return Ok(items),
        }
    }
}

/// `tenants list`: every page, in name order; `-o json` prints them as one API answer.
pub async fn list_tenants(
    client: &AdminClient,
    output: Output,
    args: &ListTenants,
    console: &mut Console<'_>,
) -> Result<(), ClientError> {
    let tenants = every_page(None, async |cursor| {
        let page = client
            .list_tenants(&args.filter, args.limit, cursor.as_deref())
            .await?;
        Ok((page.tenants, page.next_cursor))
    })
    .await?;
    match output {
        Output::Json => write_json(
            &mut console.out,
            &TenantPage {
                tenants,
                next_cursor: None,
            },
        ),
        Output::Table => write_out(&mut console.out, &render_tenants(&tenants)),
    }
}

/// `events list`: one page, or with `all` every page from `cursor` on.
pub async fn list_events(
    client: &AdminClient,
    output: Output,
    args: &ListEvents,
    console: &mut Console<'_>,
) -> Result<(), ClientError> {
    let filter = args.selection.resolve(Utc::now());
    if !args.all {
        let page = client
            .list_events(&filter, args.limit, args.cursor.as_deref())
            .await?;
        return match output {
            Output::Json => write_json(&mut console.out, &page),
            Output::Table => {
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
    let events = every_page(args.cursor.clone(), async |cursor| {
        let page = client
            .list_events(&filter, args.limit, cursor.as_deref())
            .await?;
        Ok((page.events, page.next_cursor))
    })
    .await?;
    match output {
        Output::Json => write_json(&mut console.out, &AllEvents { events }),
        Output::Table => write_out(&mut console.out, &render_events(&events)),
    }
}

/// `events list --all -o json`.
#[derive(Serialize)]
struct AllEvents {
    /// Every page's events, in journal order.
    events: Vec<EventSummary>,
}

/// `replay`: by ids, in bulk by selection, or `cancel`.
pub async fn replay(
    client: &AdminClient,
    output: Output,
    args: &Replay,
    console: &mut Console<'_>,
) -> Result<(), ClientError> {
    if let Some(job_id) = args.cancel {
        let job = client.cancel_replay(job_id).await?;
        return match output {
            Output::Json => write_json(&mut console.out, &job),
            Output::Table => write_out(&mut console.out, &format!("{}\n", job_line(&job))),
        };
    }
    if !args.event_ids.is_empty() {
        return replay_ids(client, output, args, console).await;
    }
    bulk_replay(client, output, args, console).await
}

/// One replay per id; every id is tried, failures are reported one per line on stderr.
async fn replay_ids(
    client: &AdminClient,
    output: Output,
    args: &Replay,
    console: &mut Console<'_>,
) -> Result<(), ClientError> {
    let mut results = Vec::new();
    let mut failed = 0;
    for &event_id in &args.event_ids {
        match client.replay_event(event_id, args.reason.as_deref()).await {
            Ok(result) => {
                if output == Output::Table {
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
    if output == Output::Json {
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
    output: Output,
    args: &Replay,
    console: &mut Console<'_>,
) -> Result<(), ClientError> {
    let filter = args.selection.resolve(Utc::now());
    if filter.is_empty() {
        return Err(ClientError::Usage(
            "a bulk replay needs at least one of --tenant, --action, --status, --source, \
             --since, --until, --workflow-phase (or give event ids)"
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
    let json = output == Output::Json;
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
    match job.status {
        ReplayJobStatus::Failed | ReplayJobStatus::Cancelled => Err(ClientError::JobEnded {
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
        if job.status.is_final() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::api::DryRunResult;
    use crate::admin::client::fake_api as fake;

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

        let selection = EventSelection {
            tenant: Some("acme".into()),
            since: Some(two_hours),
            until: Some("30m".parse().unwrap()),
            ..EventSelection::default()
        };
        let filter = selection.resolve(now);
        assert_eq!(filter.tenant.as_deref(), Some("acme"));
        assert_eq!(filter.since.as_deref(), Some("2024-05-01T10:00:00Z"));
        assert_eq!(filter.until.as_deref(), Some("2024-05-01T11:30:00Z"));
        assert_eq!(filter.status, None);
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

    /// A bulk replay of the dead events.
    fn replay_dead() -> Replay {
        Replay {
            selection: EventSelection {
                status: Some(EventStatus::Dead),
                ..EventSelection::default()
            },
            ..Replay::default()
        }
    }

    #[tokio::test]
    async fn events_list_all_follows_cursors_to_the_empty_page() {
        let server = fake::start();
        let client = AdminClient::new(&server.url, Some("tok".into())).unwrap();
        let args = ListEvents {
            selection: EventSelection {
                tenant: Some("acme".into()),
                ..EventSelection::default()
            },
            limit: Some(2),
            cursor: None,
            all: true,
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        list_events(
            &client,
            Output::Json,
            &args,
            &mut console(&mut out, &mut err, b"", false),
        )
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
        let one = ListEvents { all: false, ..args };
        list_events(
            &client,
            Output::Table,
            &one,
            &mut console(&mut out, &mut err, b"", false),
        )
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
        let args = Replay {
            event_ids: vec![fake::MISSING.parse().unwrap(), ok.parse().unwrap()],
            reason: Some("argo fixed".into()),
            ..Replay::default()
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let error = replay(
            &client,
            Output::Table,
            &args,
            &mut console(&mut out, &mut err, b"", false),
        )
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
        let args = Replay {
            rate: Some(20.0),
            ..replay_dead()
        };

        // Declined: nothing but the dry run reaches the server.
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let error = replay(
            &client,
            Output::Table,
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
        replay(
            &client,
            Output::Table,
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
        let args = Replay {
            dry_run: true,
            ..replay_dead()
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        replay(
            &client,
            Output::Json,
            &args,
            &mut console(&mut out, &mut err, b"", false),
        )
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
        assert_eq!(parse_rate("0.1"), Ok(0.1));
        assert_eq!(parse_rate("10000"), Ok(10_000.0));
        // 5e-324 (the smallest f64) would make a job that never finishes.
        for bad in ["0", "0.09", "5e-324", "-1", "10000.5", "NaN", "inf", "fast"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn tenants_list_follows_every_page_as_a_table_or_one_json_answer() {
        let server = fake::start();
        let client = AdminClient::new(&server.url, None).unwrap();
        let args = ListTenants {
            filter: TenantFilter {
                outcome: Some(crate::admin::api::LifecycleOutcome::Failed),
                lifecycle: Some(crate::admin::api::Lifecycle::Active),
                action: Some("upsert".into()),
            },
            limit: Some(2),
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        list_tenants(
            &client,
            Output::Table,
            &args,
            &mut console(&mut out, &mut err, b"", false),
        )
        .await
        .unwrap();
        let query = "lifecycle=active&outcome=failed&action=upsert&limit=2";
        assert_eq!(
            server.requests(),
            [
                format!("GET /admin/v1/tenants?{query} "),
                format!("GET /admin/v1/tenants?{query}&cursor=t1 "),
                format!("GET /admin/v1/tenants?{query}&cursor=t2 "),
            ]
        );
        let table = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        let columns: Vec<&str> = lines[0].split("  ").filter(|c| !c.is_empty()).collect();
        assert_eq!(
            columns,
            [
                "TENANT",
                "LIFECYCLE",
                "LAST ACTION",
                "OUTCOME",
                "PARKED",
                "LAST SEQ",
                "UPDATED"
            ]
        );
        let cells = |line: &str| {
            line.split_whitespace()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            cells(lines[1]),
            [
                "acme",
                "active",
                "upsert",
                "failed",
                "yes",
                "2",
                "2024-05-01T12:00:00Z"
            ]
        );
        assert_eq!(
            cells(lines[3]),
            ["globex", "unknown", "-", "-", "no", "2", "-"]
        );
        assert!(err.is_empty());

        // -o json: the API's answer, every page in one, without a cursor.
        let (mut out, mut err) = (Vec::new(), Vec::new());
        list_tenants(
            &client,
            Output::Json,
            &ListTenants::default(),
            &mut console(&mut out, &mut err, b"", false),
        )
        .await
        .unwrap();
        let printed: TenantPage = serde_json::from_slice(&out).unwrap();
        let names: Vec<&str> = printed.tenants.iter().map(|t| t.tenant.as_str()).collect();
        assert_eq!(names, ["acme", "beta", "globex"]);
        assert_eq!(printed.next_cursor, None);
        let raw: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(raw["tenants"][0]["state"]["lastOutcome"], "failed");
        assert_eq!(raw["nextCursor"], serde_json::Value::Null);
        assert_eq!(server.requests()[3], "GET /admin/v1/tenants ");
        server.stop().await;
    }

    #[tokio::test]
    async fn workflow_phases_reach_the_search_and_the_bulk_replay() {
        let server = fake::start();
        let client = AdminClient::new(&server.url, None).unwrap();
        let selection = EventSelection {
            action: Some("migrate-in".into()),
            workflow_phases: "Failed,Error".parse::<WorkflowPhases>().unwrap().0,
            ..EventSelection::default()
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        list_events(
            &client,
            Output::Json,
            &ListEvents {
                selection: selection.clone(),
                ..ListEvents::default()
            },
            &mut console(&mut out, &mut err, b"", false),
        )
        .await
        .unwrap();
        let args = Replay {
            selection,
            dry_run: true,
            ..Replay::default()
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        replay(
            &client,
            Output::Json,
            &args,
            &mut console(&mut out, &mut err, b"", false),
        )
        .await
        .unwrap();
        assert_eq!(
            server.requests(),
            [
                "GET /admin/v1/events?action=migrate-in&workflowPhase=Failed%2CError ",
                r#"POST /admin/v1/replays {"filter":{"action":"migrate-in","workflowPhase":"Failed,Error"},"dryRun":true}"#,
            ]
        );
        // A phase alone is enough for a bulk replay.
        let only_phase = Replay {
            selection: EventSelection {
                workflow_phases: vec![WorkflowPhase::Failed],
                ..EventSelection::default()
            },
            dry_run: true,
            ..Replay::default()
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        replay(
            &client,
            Output::Json,
            &only_phase,
            &mut console(&mut out, &mut err, b"", false),
        )
        .await
        .unwrap();
        let error = "Failed,Lost".parse::<WorkflowPhases>().unwrap_err();
        assert!(
            error.contains("Pending, Running, Succeeded, Failed, Error"),
            "{error}"
        );
        server.stop().await;
    }
}
