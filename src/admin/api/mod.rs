//! The admin API's request and response bodies (JSON, camelCase), shared by the server
//! handlers and the operator CLI, and described by `docs/openapi.json`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub use crate::journal::{
    AttemptOutcome, EventStatus, Lifecycle, LifecycleOutcome, ReplayJobStatus, WorkflowPhase,
};

/// Which events a listing or a bulk replay selects. Every condition is optional; conditions
/// combine with AND. Times compare with the event's `receivedAt` (`since` inclusive, `until`
/// exclusive).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventFilter {
    /// Only this tenant's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Short action name (`upsert`) or the emitted type (`lifecycle.upsert`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Only events in this delivery state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<EventStatus>,
    /// Upstream CloudEvent `source`, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// RFC 3339; events received at or after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// RFC 3339; events received before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Argo phases (`Failed,Error`), comma-separated: only events whose latest emission's
    /// Workflow is in one of them. Kept as given so a stored job filter shows what was asked;
    /// [`parse_workflow_phases`] reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_phase: Option<String>,
}

/// Reads a `workflowPhase` condition: one or several of Argo's phases, comma-separated, in
/// Argo's casing, nothing else (no blanks, no empty items), exactly what the OpenAPI
/// document's pattern describes. The error names the parameter and the accepted words.
pub fn parse_workflow_phases(text: &str) -> Result<Vec<WorkflowPhase>, String> {
    text.split(',')
        .map(|word| {
            word.parse::<WorkflowPhase>()
                .map_err(|error| format!("workflowPhase: {error} (comma-separated)"))
        })
        .collect()
}

impl EventFilter {
    /// True when no condition is set (it would select the whole journal).
    pub fn is_empty(&self) -> bool {
        self == &EventFilter::default()
    }
}

/// One journaled event, as listings show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventSummary {
    /// The gateway's id of the event.
    pub event_id: Uuid,
    /// The tenant it is about.
    pub tenant: String,
    /// Short lifecycle action (`upsert`).
    pub action: String,
    /// Per-tenant sequence number.
    pub sequence: i64,
    /// Delivery state of its latest emission.
    pub status: EventStatus,
    /// Upstream CloudEvent `source`.
    pub source: String,
    /// Upstream CloudEvent `id`.
    pub id: String,
    /// Upstream CloudEvent `type`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Upstream `time`, if it had one.
    pub time: Option<String>,
    /// When the gateway accepted it.
    pub received_at: String,
}

/// `GET /admin/v1/events`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventPage {
    /// At most `limit` events in journal order.
    pub events: Vec<EventSummary>,
    /// Pass as `cursor` for the next page; `null` when this page is the last one so far.
    pub next_cursor: Option<String>,
}

/// One delivery attempt of an emission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptView {
    /// 1, 2, 3, ... within the emission.
    pub attempt: u32,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When the sink answered or the attempt failed.
    pub finished_at: String,
    /// Sink kind: `log`, `webhook` or `eventbus`.
    pub sink: String,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The sink's HTTP status, when it answered over HTTP.
    pub status_code: Option<u16>,
    /// What went wrong.
    pub error: Option<String>,
}

/// One emission of an event: the first delivery, or a replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmissionView {
    /// The emitted CloudEvent's id.
    pub emission_id: Uuid,
    /// Set on replays: the event replayed.
    pub replay_of: Option<Uuid>,
    /// The bulk replay job that created it, if any.
    pub replay_job: Option<Uuid>,
    /// Its delivery state.
    pub status: EventStatus,
    /// When it was created.
    pub created_at: String,
    /// When it reached delivered, dead or skipped.
    pub finished_at: Option<String>,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Set when a dead emission was replayed: the emission that took its place.
    pub replaced_by: Option<Uuid>,
    /// The Workflow name the Sensors give this emission.
    pub workflow_name: String,
    /// Link to that Workflow in the Argo Workflows UI, when `argo-ui-url` is configured.
    pub workflow_url: Option<String>,
    /// What the Workflow created for this emission did, once the gateway has seen it; `null`
    /// before (or when Workflows are not watched).
    pub workflow: Option<WorkflowView>,
    /// Every attempt, oldest first (only on `GET /admin/v1/events/{eventId}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivery_attempts: Vec<AttemptView>,
}

/// The Workflow the Sensor created for an emission, as last recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowView {
    /// The Workflow's `metadata.name`.
    pub name: String,
    /// Its latest phase, in Argo's casing.
    pub phase: WorkflowPhase,
    /// Its `status.startedAt`, if set.
    pub started_at: Option<String>,
    /// Its `status.finishedAt`, if set.
    pub finished_at: Option<String>,
    /// Its `status.message` (why it failed, usually), if set.
    pub message: Option<String>,
    /// The emission's `workflowUrl`, repeated here so the Workflow's facts come together.
    pub url: Option<String>,
}

/// A tenant's lifecycle state, derived from its emissions' Workflows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantStateView {
    /// From the last succeeded action that changes it (`unknown` before any).
    pub lifecycle: Lifecycle,
    /// The action of the tenant's newest emission that reached the sink.
    pub last_action: Option<String>,
    /// What that emission came to.
    pub last_outcome: Option<LifecycleOutcome>,
    /// When that emission was delivered or its Workflow last changed, whichever is later.
    pub updated_at: Option<String>,
}

/// One tenant of `GET /admin/v1/tenants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantSummaryView {
    /// The tenant.
    pub tenant: String,
    /// Whether delivery is stopped behind a dead event.
    pub parked: bool,
    /// Its lifecycle state.
    pub state: TenantStateView,
    /// Its highest sequence number.
    pub last_sequence: i64,
}

/// `GET /admin/v1/tenants`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantPage {
    /// At most `limit` tenants, in name order.
    pub tenants: Vec<TenantSummaryView>,
    /// Pass as `cursor` for the next page; `null` when this page is the last one so far.
    pub next_cursor: Option<String>,
}

/// Which tenants `GET /admin/v1/tenants` lists; every condition optional, combined with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantFilter {
    /// Only tenants in this lifecycle.
    pub lifecycle: Option<Lifecycle>,
    /// Only tenants whose newest delivered emission came to this.
    pub outcome: Option<LifecycleOutcome>,
    /// Only tenants whose newest delivered emission has this action (`upsert` or
    /// `lifecycle.upsert`).
    pub action: Option<String>,
}

/// An operator's action, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorActionView {
    /// When it was taken.
    pub at: String,
    /// Who: the admin token's name, or `loopback` for an unauthenticated local call.
    pub actor: String,
    /// `replay`, `skip`, `bulk-replay` or `cancel-replay`.
    pub action: String,
    /// The event acted on (replay, skip).
    pub event_id: Option<Uuid>,
    /// The tenant acted on (replay, skip).
    pub tenant: Option<String>,
    /// The emission created (replay) or skipped (skip).
    pub emission_id: Option<Uuid>,
    /// The bulk replay job (bulk-replay, cancel-replay).
    pub job_id: Option<Uuid>,
    /// Why, as the operator said.
    pub reason: Option<String>,
}

/// `GET /admin/v1/events/{eventId}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventDetail {
    /// The event's summary.
    pub event: EventSummary,
    /// The upstream CloudEvent as received (structured JSON).
    pub upstream: Value,
    /// The canonical CloudEvent of its first emission, as every sink but `eventbus` sends it.
    pub canonical: Value,
    /// Every emission, oldest first, with its attempts.
    pub emissions: Vec<EmissionView>,
    /// Operator actions on this event, oldest first.
    pub operator_actions: Vec<OperatorActionView>,
}

/// Body of `POST /admin/v1/events/{eventId}/replay` and `.../skip`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionRequest {
    /// Why; recorded with the action (required for skip).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Answer of `POST /admin/v1/events/{eventId}/replay`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayResult {
    /// The event replayed.
    pub event_id: Uuid,
    /// Its tenant.
    pub tenant: String,
    /// The new emission's id (the emitted CloudEvent's id).
    pub emission_id: Uuid,
    /// The Workflow name of the new emission.
    pub workflow_name: String,
    /// `in-place` (a dead emission that parked its tenant is retried in its own place, before
    /// the events waiting behind it) or `queued` (behind the tenant's pending events).
    pub placement: String,
}

/// Answer of `POST /admin/v1/events/{eventId}/skip`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SkipResult {
    /// The event skipped.
    pub event_id: Uuid,
    /// Its tenant.
    pub tenant: String,
    /// The dead emission now marked skipped.
    pub emission_id: Uuid,
    /// Whether the tenant is still parked (by another dead event).
    pub tenant_parked: bool,
}

/// Per-status event counts of a tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusCounts {
    /// Events not delivered yet.
    pub pending: u64,
    /// Events delivered.
    pub delivered: u64,
    /// Events dead.
    pub dead: u64,
    /// Events skipped by an operator.
    pub skipped: u64,
}

/// A tenant's timeline entry: an event and its emissions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEntry {
    /// The event.
    #[serde(flatten)]
    pub event: EventSummary,
    /// Its emissions, oldest first (without attempts).
    pub emissions: Vec<EmissionView>,
}

/// `GET /admin/v1/tenants/{tenant}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantView {
    /// The tenant.
    pub tenant: String,
    /// Whether delivery is stopped behind a dead event.
    pub parked: bool,
    /// The dead event that parks it.
    pub parked_by: Option<EventSummary>,
    /// Events per status.
    pub counts: StatusCounts,
    /// The tenant's highest sequence number.
    pub last_sequence: i64,
    /// Its lifecycle state.
    pub state: TenantStateView,
    /// Why it is parked (the parking emission's last error); only when parked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked_reason: Option<String>,
    /// The latest `limit` events in sequence order, with their emissions.
    pub timeline: Vec<TimelineEntry>,
    /// The latest operator actions on the tenant, oldest first.
    pub operator_actions: Vec<OperatorActionView>,
}

/// Body of `POST /admin/v1/replays`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BulkReplayRequest {
    /// Which events; at least one condition.
    pub filter: EventFilter,
    /// Count and sample only; nothing is replayed.
    #[serde(default)]
    pub dry_run: bool,
    /// Replays per second (default 100); keeps recovery from flooding Argo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    /// Why; recorded with the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The count a dry run showed: the job is refused (409) if the filter now selects another
    /// number of events, so what runs is what the operator confirmed.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "integral_count"
    )]
    pub expected_count: Option<u64>,
}

/// A count written as any JSON number with no fraction: JSON Schema's `integer` is "a number
/// with a zero fractional part" (JSON Schema Validation 2020-12, section 6.1.1), so `3.0` is
/// the count 3.
fn integral_count<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    // 2^53, the document's maximum: every integer up to it is exact as an f64, so `3.0` and `3`
    // are read alike; no journal holds more events.
    const MAX_COUNT: u64 = 1 << 53;
    let count = number.as_u64().or_else(|| {
        let value = number.as_f64()?;
        (value.fract() == 0.0 && (0.0..=MAX_COUNT as f64).contains(&value)).then_some(value as u64)
    });
    match count {
        Some(count) if count <= MAX_COUNT => Ok(Some(count)),
        _ => Err(D::Error::custom(format!(
            "expectedCount: {number} is not a count (a whole number from 0 to 2^53)"
        ))),
    }
}

/// Answer of a dry run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DryRunResult {
    /// Events the job would replay.
    pub count: u64,
    /// The first few of them, in journal order.
    pub sample: Vec<EventSummary>,
}

/// A bulk replay job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayJobView {
    /// The job id.
    pub id: Uuid,
    /// Where the job stands.
    pub status: ReplayJobStatus,
    /// The filter it was created with.
    pub filter: EventFilter,
    /// Replays per second.
    pub rate: f64,
    /// Who created it.
    pub actor: String,
    /// Why.
    pub reason: Option<String>,
    /// When it was created.
    pub created_at: String,
    /// When it reached completed, cancelled or failed.
    pub finished_at: Option<String>,
    /// Events selected when it was created.
    pub total: u64,
    /// Events replayed so far.
    pub replayed: u64,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

/// `GET /admin/v1/replays`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayJobList {
    /// The latest jobs, newest first.
    pub jobs: Vec<ReplayJobView>,
}

#[cfg(test)]
mod openapi_tests;
