//! What the admin commands print: tables, reports, one-line results, the replay progress
//! (a bar redrawn in place on a terminal, plain lines otherwise), and the writers that turn an
//! I/O failure into a [`ClientError`].

use std::fmt::Write as _;
use std::io::Write;
use std::time::{Duration, Instant};

use serde::Serialize;
use uuid::Uuid;

use super::{one_line, ClientError};
use crate::admin::api::{
    DryRunResult, EmissionView, EventDetail, EventSummary, OperatorActionView, ReplayJobStatus,
    ReplayJobView, ReplayResult, SkipResult, TenantStateView, TenantSummaryView, TenantView,
};

/// Width of the progress bar, between the brackets.
const PROGRESS_BAR_WIDTH: usize = 30;
/// Plain (non-terminal) progress lines are printed at most this often.
const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// Progress of a replay job on stderr: a bar redrawn in place on a terminal, otherwise plain
/// lines (for logs), at most one a second plus one per change of status.
pub(super) struct Progress {
    /// Bar (terminal) or lines.
    interactive: bool,
    /// When following began, for the observed rate.
    started: Instant,
    /// `replayed` when following began, for the observed rate.
    start_replayed: u64,
    /// When the last plain line was printed.
    last_line: Option<Instant>,
    /// What the last plain line showed: status and count.
    last_shown: Option<(ReplayJobStatus, u64)>,
    /// Characters of the bar on screen, to blank a longer previous one.
    drawn: usize,
}

impl Progress {
    pub(super) fn new(interactive: bool, started: Instant, start_replayed: u64) -> Self {
        Progress {
            interactive,
            started,
            start_replayed,
            last_line: None,
            last_shown: None,
            drawn: 0,
        }
    }

    pub(super) fn update(
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
            .is_none_or(|(status, _)| *status != job.status);
        let count_changed = self
            .last_shown
            .as_ref()
            .is_none_or(|(_, replayed)| *replayed != job.replayed);
        let due = self
            .last_line
            .is_none_or(|at| now.duration_since(at) >= PLAIN_PROGRESS_EVERY);
        if status_changed || (count_changed && due) {
            self.last_line = Some(now);
            self.last_shown = Some((job.status, job.replayed));
            write_out(err, &format!("{}\n", render_progress_line(job)))?;
        }
        Ok(())
    }

    /// End the bar's line, so what follows starts on its own.
    pub(super) fn finish(&mut self, err: &mut dyn Write) -> Result<(), ClientError> {
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
    if job.status.is_final() {
        let _ = write!(line, " {}", job.status);
    }
    line
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
        job.id, job.status, job.replayed, job.total, job.rate
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
                e.status.to_string(),
                e.received_at.clone(),
            ]
        })
        .collect();
    render_table(
        &["EVENT ID", "TENANT", "SEQ", "ACTION", "STATUS", "RECEIVED"],
        &rows,
    )
}

/// `-` for a value not known yet, so a table cell is never blank.
fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

/// The `tenants list` table: TENANT, LIFECYCLE, LAST ACTION, OUTCOME, PARKED, LAST SEQ, UPDATED.
pub fn render_tenants(tenants: &[TenantSummaryView]) -> String {
    if tenants.is_empty() {
        return "no tenants\n".to_owned();
    }
    let rows: Vec<Vec<String>> = tenants
        .iter()
        .map(|t| {
            vec![
                t.tenant.clone(),
                t.state.lifecycle.to_string(),
                or_dash(t.state.last_action.as_deref()),
                or_dash(t.state.last_outcome.map(|o| o.as_str())),
                if t.parked { "yes" } else { "no" }.to_owned(),
                t.last_sequence.to_string(),
                or_dash(t.state.updated_at.as_deref()),
            ]
        })
        .collect();
    render_table(
        &[
            "TENANT",
            "LIFECYCLE",
            "LAST ACTION",
            "OUTCOME",
            "PARKED",
            "LAST SEQ",
            "UPDATED",
        ],
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
        ("status", event.status.to_string()),
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
    let mut report = format!("emission {}: {}\n", emission.emission_id, emission.status);
    let mut fields = vec![("workflow", emission.workflow_name.clone())];
    if let Some(url) = &emission.workflow_url {
        fields.push(("workflow url", url.clone()));
    }
    match &emission.workflow {
        None => fields.push(("workflow phase", "not seen yet".to_owned())),
        Some(workflow) => {
            fields.push(("workflow phase", workflow.phase.to_string()));
            if let Some(started) = &workflow.started_at {
                fields.push(("workflow started", started.clone()));
            }
            if let Some(finished) = &workflow.finished_at {
                fields.push(("workflow finished", finished.clone()));
            }
            if let Some(message) = &workflow.message {
                fields.push(("workflow message", message.clone()));
            }
        }
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
                a.outcome.to_string(),
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

/// `active, last upsert succeeded (2024-05-01T12:00:00Z)`: a tenant's state on one line.
fn state_line(state: &TenantStateView) -> String {
    let mut line = state.lifecycle.to_string();
    if let Some(action) = &state.last_action {
        let outcome = state.last_outcome.map_or("pending", |o| o.as_str());
        let _ = write!(line, ", last {action} {outcome}");
    }
    if let Some(updated) = &state.updated_at {
        let _ = write!(line, " ({updated})");
    }
    line
}

/// The Workflow phase of each of an event's emissions, oldest first (`-`: not seen yet).
fn emission_phases(emissions: &[EmissionView]) -> String {
    if emissions.is_empty() {
        return "-".to_owned();
    }
    let phases: Vec<&str> = emissions
        .iter()
        .map(|e| e.workflow.as_ref().map_or("-", |w| w.phase.as_str()))
        .collect();
    phases.join(", ")
}

/// The `tenants show` report: lifecycle state, parked or not (and why), counts, last sequence,
/// timeline with each emission's Workflow phase, operator actions.
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
    let mut fields = vec![
        ("tenant", view.tenant.clone()),
        ("state", state_line(&view.state)),
        ("parked", parked),
    ];
    if let Some(reason) = &view.parked_reason {
        fields.push(("parked reason", reason.clone()));
    }
    fields.extend([
        (
            "events",
            format!(
                "{} pending, {} delivered, {} dead, {} skipped",
                counts.pending, counts.delivered, counts.dead, counts.skipped
            ),
        ),
        ("last sequence", view.last_sequence.to_string()),
    ]);
    let mut report = render_fields(&fields);
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
                    entry.event.status.to_string(),
                    entry.emissions.len().to_string(),
                    emission_phases(&entry.emissions),
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
                "WORKFLOWS",
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

/// Write `text` and flush, so progress shows at once.
pub(super) fn write_out(writer: &mut dyn Write, text: &str) -> Result<(), ClientError> {
    writer
        .write_all(text.as_bytes())
        .and_then(|()| writer.flush())
        .map_err(ClientError::Output)
}

/// Pretty JSON and a newline.
pub(super) fn write_json(
    writer: &mut dyn Write,
    value: &impl Serialize,
) -> Result<(), ClientError> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| ClientError::Output(std::io::Error::other(e)))?;
    text.push('\n');
    write_out(writer, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::api::{
        AttemptOutcome, AttemptView, EventFilter, EventStatus, Lifecycle, LifecycleOutcome,
        StatusCounts, TimelineEntry, WorkflowPhase, WorkflowView,
    };

    fn summary(tenant: &str, sequence: i64, action: &str, status: &str) -> EventSummary {
        EventSummary {
            event_id: Uuid::now_v7(),
            tenant: tenant.into(),
            action: action.into(),
            sequence,
            status: status.parse().expect("an event status"),
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
            status: status.parse().expect("a replay job status"),
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
                    e.status.to_string(),
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
        done.status = ReplayJobStatus::Completed;
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
            status: EventStatus::Dead,
            created_at: "2024-05-01T12:00:03Z".into(),
            finished_at: Some("2024-05-01T12:05:00Z".into()),
            last_error: Some("HTTP 500".into()),
            replaced_by: None,
            workflow_name: "acme-upsert-3-x".into(),
            workflow_url: Some("https://argo.example/workflows/argo/acme-upsert-3-x".into()),
            workflow: Some(WorkflowView {
                name: "acme-upsert-3-x".into(),
                phase: WorkflowPhase::Failed,
                started_at: Some("2024-05-01T12:05:10Z".into()),
                finished_at: Some("2024-05-01T12:06:00Z".into()),
                message: Some("child 'migrate' failed".into()),
                url: Some("https://argo.example/workflows/argo/acme-upsert-3-x".into()),
            }),
            delivery_attempts: vec![AttemptView {
                attempt: 1,
                started_at: "2024-05-01T12:00:04Z".into(),
                finished_at: "2024-05-01T12:00:05Z".into(),
                sink: "webhook".into(),
                outcome: AttemptOutcome::Permanent,
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
            "  workflow           acme-upsert-3-x\n".into(),
            "  workflow url       https://argo.example/workflows/argo/acme-upsert-3-x\n".into(),
            "  workflow phase     Failed\n".into(),
            "  workflow started   2024-05-01T12:05:10Z\n".into(),
            "  workflow finished  2024-05-01T12:06:00Z\n".into(),
            "  workflow message   child 'migrate' failed\n".into(),
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
            parked_reason: Some("HTTP 400: bad payload".into()),
            counts: StatusCounts {
                pending: 2,
                delivered: 0,
                dead: 1,
                skipped: 0,
            },
            last_sequence: 3,
            state: TenantStateView {
                lifecycle: Lifecycle::Active,
                last_action: Some("migrate-out".into()),
                last_outcome: Some(LifecycleOutcome::Failed),
                updated_at: Some("2024-05-01T12:06:01Z".into()),
            },
            timeline: vec![TimelineEntry {
                event: event.clone(),
                emissions: vec![
                    emission.clone(),
                    EmissionView {
                        workflow: None,
                        ..emission
                    },
                ],
            }],
            operator_actions: vec![],
        };
        let report = render_tenant(&view);
        for expected in [
            format!(
                "parked         yes, by dead event {} (seq 3, upsert)\n",
                event.event_id
            ),
            "state          active, last migrate-out failed (2024-05-01T12:06:01Z)\n".into(),
            "parked reason  HTTP 400: bad payload\n".into(),
            "events         2 pending, 0 delivered, 1 dead, 0 skipped\n".into(),
            "last sequence  3\n".into(),
            "  SEQ  EVENT ID                              ACTION  STATUS  EMISSIONS  WORKFLOWS  RECEIVED\n"
                .into(),
            format!(
                "  3    {}  upsert  dead    2          Failed, -  2024-05-01T12:00:03Z\n",
                event.event_id
            ),
        ] {
            assert!(report.contains(&expected), "{expected:?} not in\n{report}");
        }
    }

    #[test]
    fn the_tenant_list_is_a_table_with_a_dash_for_what_is_not_known() {
        let tenants = vec![
            TenantSummaryView {
                tenant: "acme".into(),
                parked: true,
                state: TenantStateView {
                    lifecycle: Lifecycle::MigratedOut,
                    last_action: Some("delete".into()),
                    last_outcome: Some(LifecycleOutcome::Failed),
                    updated_at: Some("2024-05-01T12:06:01Z".into()),
                },
                last_sequence: 12,
            },
            TenantSummaryView {
                tenant: "globex-industries".into(),
                parked: false,
                state: TenantStateView {
                    lifecycle: Lifecycle::Unknown,
                    last_action: None,
                    last_outcome: None,
                    updated_at: None,
                },
                last_sequence: 1,
            },
        ];
        assert_eq!(
            render_tenants(&tenants),
            "TENANT             LIFECYCLE     LAST ACTION  OUTCOME  PARKED  LAST SEQ  UPDATED\n\
             acme               migrated-out  delete       failed   yes     12        2024-05-01T12:06:01Z\n\
             globex-industries  unknown       -            -        no      1         -\n"
        );
        assert_eq!(render_tenants(&[]), "no tenants\n");
    }
}
