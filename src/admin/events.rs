//! `/admin/v1/events`: search with stable cursors, one event with its canonical form and every
//! attempt, replay and skip.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use base64::Engine;
use serde::Deserialize;
use uuid::Uuid;

use super::api::{
    parse_workflow_phases, ActionRequest, AttemptView, EmissionView, EventDetail, EventFilter,
    EventPage, EventSummary, OperatorActionView, ReplayResult, SkipResult, WorkflowView,
};
use super::{event_id, optional_body, Actor, AdminError, AdminState};
use crate::dispatch::canonical_json;
use crate::journal::operator::stored_time;
use crate::journal::{
    EventHeader, EventQuery, EventStatus, Operator, OperatorAction, OperatorOutcome, OperatorWrite,
    StoredAttempt, StoredEmission, WorkflowRecord,
};
use crate::normalize::canonical::workflow_name;

/// Events per page unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 100;
/// Largest `limit`.
const MAX_LIMIT: usize = 1000;
/// Operator actions shown with an event.
const ACTIONS_SHOWN: usize = 100;

/// Query of `GET /admin/v1/events`: the filter, then paging.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct ListParams {
    tenant: Option<String>,
    action: Option<String>,
    status: Option<String>,
    source: Option<String>,
    since: Option<String>,
    until: Option<String>,
    workflow_phase: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// Parses a `status` condition given as text, with the message every bad condition gets.
pub(super) fn parse_status(value: &str) -> Result<EventStatus, String> {
    value.parse().map_err(|error| format!("status: {error}"))
}

/// Turns the operator's filter into a journal query, or says which condition is wrong.
pub(super) fn parse_filter(filter: &EventFilter) -> Result<EventQuery, String> {
    let time = |name: &str, value: &Option<String>| {
        value
            .as_deref()
            .map(|v| {
                chrono::DateTime::parse_from_rfc3339(v)
                    .map(|t| stored_time(t.with_timezone(&chrono::Utc)))
                    .map_err(|error| format!("{name}: {v:?} is not an RFC 3339 time ({error})"))
            })
            .transpose()
    };
    let action = filter.action.as_deref().map(|a| {
        // Accept the emitted type as well as the short name.
        a.strip_prefix("lifecycle.").unwrap_or(a).to_owned()
    });
    let phases = filter
        .workflow_phase
        .as_deref()
        .map(parse_workflow_phases)
        .transpose()?
        .unwrap_or_default();
    // No stored tenant, action or source holds a NUL (CloudEvents attributes refuse control
    // characters, `cloudevents::event::control_character`), and PostgreSQL text cannot even be
    // compared with one: such a condition selects nothing, said as a bound no event is received
    // before (every stored time sorts after "").
    let text_conditions = [&filter.tenant, &action, &filter.source];
    if text_conditions
        .iter()
        .any(|value| value.as_deref().is_some_and(|v| v.contains('\0')))
    {
        time("since", &filter.since)?;
        time("until", &filter.until)?;
        return Ok(EventQuery {
            until: Some(String::new()),
            ..EventQuery::default()
        });
    }
    Ok(EventQuery {
        tenant: filter.tenant.clone(),
        action,
        status: filter.status,
        source: filter.source.clone(),
        since: time("since", &filter.since)?,
        until: time("until", &filter.until)?,
        workflow_phases: phases,
    })
}

/// Cursors are opaque to clients; they carry the journal position of the page's last event,
/// as unpadded base64url of `p<decimal digits>`. The OpenAPI document's `cursor` pattern is
/// exactly the set [`decode_cursor`] takes (held to it by a test), so a client or fuzzer
/// reading the document knows which strings are cursors.
pub(super) fn encode_cursor(position: i64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("p{position}"))
}

/// Most digits a cursor carries: an `i64` position has at most 19.
const CURSOR_DIGITS: usize = 19;

/// The position after which a cursor's page starts. Only `p` and 1 to 19 plain digits (no
/// sign): a 19-digit number beyond `i64::MAX` is past every event, so its page is empty.
pub(super) fn decode_cursor(cursor: &str) -> Result<i64, AdminError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| {
            let digits = text.strip_prefix('p')?;
            let plain = (1..=CURSOR_DIGITS).contains(&digits.len())
                && digits.bytes().all(|b| b.is_ascii_digit());
            // 19 digits always fit a u64.
            let position: u64 = digits.parse().ok().filter(|_| plain)?;
            Some(i64::try_from(position).unwrap_or(i64::MAX))
        })
        .ok_or_else(|| {
            AdminError::InvalidQuery(format!(
                "cursor: {cursor:?} is not a cursor this server issued (a previous page's \
                 nextCursor)"
            ))
        })
}

/// A `limit` parameter within 1..=max.
pub(super) fn parse_limit(
    value: Option<&str>,
    default: usize,
    max: usize,
) -> Result<usize, AdminError> {
    let Some(value) = value else {
        return Ok(default);
    };
    value
        .parse::<usize>()
        .ok()
        .filter(|limit| (1..=max).contains(limit))
        .ok_or_else(|| {
            AdminError::InvalidQuery(format!("limit: {value:?} is not a number from 1 to {max}"))
        })
}

pub(super) fn summary(event: EventHeader) -> EventSummary {
    EventSummary {
        event_id: event.event_id,
        tenant: event.tenant,
        action: event.action,
        sequence: event.sequence,
        status: event.status,
        source: event.source,
        id: event.id,
        event_type: event.event_type,
        time: event.time,
        received_at: event.received_at,
    }
}

/// An emission as the API shows it, with its Workflow's record if one was seen (attempts added
/// by the caller when wanted).
pub(super) fn emission_view(
    state: &AdminState,
    tenant: &str,
    action: &str,
    emission: StoredEmission,
    workflow: Option<WorkflowRecord>,
) -> EmissionView {
    let workflow_name = workflow_name(tenant, action, emission.emission_id);
    let workflow_url = state
        .workflow_links
        .as_ref()
        .map(|links| links.url(&workflow_name));
    EmissionView {
        emission_id: emission.emission_id,
        replay_of: emission.replay_of,
        replay_job: emission.replay_job,
        status: emission.status,
        created_at: emission.created_at,
        finished_at: emission.finished_at,
        last_error: emission.last_error,
        replaced_by: emission.replaced_by,
        workflow: workflow.map(|record| WorkflowView {
            name: record.name,
            phase: record.phase,
            started_at: record.started_at,
            finished_at: record.finished_at,
            message: record.message,
            url: workflow_url.clone(),
        }),
        workflow_url,
        workflow_name,
        delivery_attempts: Vec::new(),
    }
}

pub(super) fn action_view(action: OperatorAction) -> OperatorActionView {
    OperatorActionView {
        at: action.at,
        actor: action.actor,
        action: action.action,
        event_id: action.event_id,
        tenant: action.tenant,
        emission_id: action.emission_id,
        job_id: action.job_id,
        reason: action.reason,
    }
}

fn attempt_view(attempt: StoredAttempt) -> AttemptView {
    AttemptView {
        attempt: attempt.attempt,
        started_at: attempt.started_at,
        finished_at: attempt.finished_at,
        sink: attempt.sink,
        outcome: attempt.outcome,
        status_code: attempt.status_code,
        error: attempt.error,
    }
}

/// `GET /admin/v1/events`.
pub(super) async fn list(
    _actor: Actor,
    state: web::Data<AdminState>,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, AdminError> {
    let params = params.into_inner();
    let limit = parse_limit(params.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = params.cursor.as_deref().map(decode_cursor).transpose()?;
    let status = params.status.as_deref().map(parse_status).transpose();
    let filter = EventFilter {
        tenant: params.tenant,
        action: params.action,
        status: status.map_err(AdminError::InvalidQuery)?,
        source: params.source,
        since: params.since,
        until: params.until,
        workflow_phase: params.workflow_phase,
    };
    let query = parse_filter(&filter).map_err(AdminError::InvalidQuery)?;
    let events = state
        .journal
        .list_events(&query, after.unwrap_or(0), limit)
        .await?;
    // A full page may have more behind it; the cursor stays valid while events arrive.
    let next_cursor = (events.len() == limit)
        .then(|| events.last().map(|event| encode_cursor(event.position)))
        .flatten();
    Ok(HttpResponse::Ok().json(EventPage {
        events: events.into_iter().map(summary).collect(),
        next_cursor,
    }))
}

/// `GET /admin/v1/events/{eventId}` (an event id, or the id of one of its emissions).
pub(super) async fn show(
    _actor: Actor,
    state: web::Data<AdminState>,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let id = event_id(&path)?;
    let journal = &state.journal;
    // An emission id (a Workflow's `event-id`) leads to its event too.
    let event = match journal.find_event(id).await? {
        Some(event) => Some(event),
        None => match journal.event_of_emission(id).await? {
            Some(event_id) => journal.find_event(event_id).await?,
            None => None,
        },
    };
    let event = event.ok_or(crate::journal::OperatorError::EventNotFound(id))?;
    let event_id = event.event_id;
    let emissions = journal.event_emissions(event_id).await?;
    let ids: Vec<Uuid> = emissions.iter().map(|e| e.emission_id).collect();
    let mut workflows = journal.workflow_records(&ids).await?;
    let mut attempts: HashMap<Uuid, Vec<AttemptView>> = HashMap::new();
    for attempt in journal.delivery_attempts(event_id).await? {
        attempts
            .entry(attempt.emission_id)
            .or_default()
            .push(attempt_view(attempt));
    }
    let actions = journal
        .operator_actions(Some(event_id), None, ACTIONS_SHOWN)
        .await?;
    // The first emission's canonical event; a stored row that cannot make one shows why.
    let canonical = canonical_json(&event, event.event_id, None, &state.instance_source)
        .unwrap_or_else(|error| serde_json::json!({ "error": error.to_string() }));
    let emissions = emissions
        .into_iter()
        .map(|emission| {
            let id = emission.emission_id;
            let workflow = workflows.remove(&id);
            let mut view = emission_view(&state, &event.tenant, &event.action, emission, workflow);
            view.delivery_attempts = attempts.remove(&id).unwrap_or_default();
            view
        })
        .collect();
    let header = EventHeader {
        position: 0,
        event_id,
        source: event.source.clone(),
        id: event.id.clone(),
        event_type: event.event_type.clone(),
        tenant: event.tenant.clone(),
        action: event.action.clone(),
        sequence: event.sequence,
        time: event.time.clone(),
        received_at: event.received_at.clone(),
        status: event.status,
    };
    Ok(HttpResponse::Ok().json(EventDetail {
        event: summary(header),
        upstream: event.document,
        canonical,
        emissions,
        operator_actions: actions.into_iter().map(action_view).collect(),
    }))
}

/// The operator, from the caller and the reason given (blank means none).
pub(super) fn operator(actor: Actor, reason: Option<String>) -> Operator {
    Operator {
        actor: actor.0,
        reason: reason
            .map(|reason| reason.trim().to_owned())
            .filter(|reason| !reason.is_empty()),
    }
}

/// `POST /admin/v1/events/{eventId}/replay`.
pub(super) async fn replay(
    actor: Actor,
    state: web::Data<AdminState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    let event_id = event_id(&path)?;
    let operator = operator(actor, optional_body::<ActionRequest>(&body)?.reason);
    let outcome = state
        .journal
        .operate(OperatorWrite::Replay { event_id, operator })
        .await?;
    let OperatorOutcome::Replayed(replayed) = outcome else {
        return Err(unexpected(&outcome));
    };
    if replayed.tenant_unparked {
        state.dispatch.unpark(&replayed.tenant);
    }
    tracing::info!(
        %event_id,
        tenant = %replayed.tenant,
        emission_id = %replayed.emission_id,
        in_place = replayed.in_place,
        "event replayed"
    );
    Ok(HttpResponse::Accepted().json(ReplayResult {
        event_id,
        workflow_name: workflow_name(&replayed.tenant, &replayed.action, replayed.emission_id),
        tenant: replayed.tenant,
        emission_id: replayed.emission_id,
        placement: if replayed.in_place {
            "in-place"
        } else {
            "queued"
        }
        .to_owned(),
    }))
}

/// `POST /admin/v1/events/{eventId}/skip`.
pub(super) async fn skip(
    actor: Actor,
    state: web::Data<AdminState>,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    let event_id = event_id(&path)?;
    let operator = operator(actor, optional_body::<ActionRequest>(&body)?.reason);
    if operator.reason.is_none() {
        return Err(AdminError::MissingReason);
    }
    let outcome = state
        .journal
        .operate(OperatorWrite::Skip { event_id, operator })
        .await?;
    let OperatorOutcome::Skipped {
        tenant,
        emission_id,
        tenant_parked,
    } = outcome
    else {
        return Err(unexpected(&outcome));
    };
    if !tenant_parked {
        state.dispatch.unpark(&tenant);
    }
    tracing::info!(%event_id, %tenant, "dead event skipped");
    Ok(HttpResponse::Ok().json(SkipResult {
        event_id,
        tenant,
        emission_id,
        tenant_parked,
    }))
}

/// The journal answered a write with another kind of outcome: a bug, reported as a 500.
pub(super) fn unexpected(outcome: &OperatorOutcome) -> AdminError {
    AdminError::Journal(crate::journal::JournalError::Corrupt {
        event_id: String::new(),
        reason: format!("unexpected outcome of an operator write: {outcome:?}"),
    })
}
