//! `/admin/v1/tenants`: the tenant registry (every tenant with its lifecycle state, filtered,
//! in name order with stable cursors), and `/admin/v1/tenants/{tenant}`: one tenant's timeline,
//! whether it is parked and why, and its lifecycle state.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use base64::Engine;
use serde::Deserialize;
use uuid::Uuid;

use super::api::{
    EmissionView, StatusCounts, TenantPage, TenantStateView, TenantSummaryView, TenantView,
    TimelineEntry,
};
use super::events::{action_view, emission_view, parse_limit, summary};
use super::{Actor, AdminError, AdminState};
use crate::journal::{Lifecycle, LifecycleOutcome, TenantLifecycle, TenantQuery, TenantSummary};

/// Timeline length, and tenants per page, unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 100;
/// Largest `limit`.
const MAX_LIMIT: usize = 1000;
/// Operator actions shown with a tenant.
const ACTIONS_SHOWN: usize = 50;
/// Longest tenant name a cursor carries, in bytes (a tenant name is a DNS-1123 label of at most
/// 63; the bound only keeps a forged cursor small).
const CURSOR_MAX_BYTES: usize = 255;

/// Query of `GET /admin/v1/tenants/{tenant}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantParams {
    limit: Option<String>,
}

/// Query of `GET /admin/v1/tenants`: the filter, then paging.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    lifecycle: Option<String>,
    outcome: Option<String>,
    action: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// A tenant listing's cursor: the page's last tenant name, as unpadded base64url (opaque to
/// clients). The page after it starts with the next name in order, so a walk never repeats or
/// skips a tenant. The OpenAPI document's `cursor` pattern is exactly the set
/// [`decode_tenant_cursor`] takes (held to it by a test).
pub(super) fn encode_tenant_cursor(tenant: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tenant)
}

/// The tenant name after which a cursor's page starts: any canonical unpadded base64url of 1 to
/// [`CURSOR_MAX_BYTES`] bytes. Bytes that are not UTF-8 are read lossily and NUL bytes are
/// dropped (PostgreSQL text cannot hold one): such a cursor was not issued, but it still names a
/// place in the order, so the document's pattern stays a plain base64url one.
pub(super) fn decode_tenant_cursor(cursor: &str) -> Result<String, AdminError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .filter(|bytes| (1..=CURSOR_MAX_BYTES).contains(&bytes.len()))
        .map(|bytes| String::from_utf8_lossy(&bytes).replace('\0', ""))
        .ok_or_else(|| {
            AdminError::InvalidQuery(format!(
                "cursor: {cursor:?} is not a cursor this server issued (a previous page's \
                 nextCursor)"
            ))
        })
}

/// The journal's view of a tenant state, as the API shows it.
fn state_view(state: TenantLifecycle) -> TenantStateView {
    TenantStateView {
        lifecycle: state.lifecycle,
        last_action: state.last_action,
        last_outcome: state.last_outcome,
        updated_at: state.updated_at,
    }
}

fn summary_view(tenant: TenantSummary) -> TenantSummaryView {
    TenantSummaryView {
        tenant: tenant.tenant,
        parked: tenant.parked,
        state: state_view(tenant.state),
        last_sequence: tenant.last_sequence,
    }
}

/// Reads one closed-vocabulary condition, naming the parameter when the word is unknown.
fn parse_word<T: std::str::FromStr<Err = crate::journal::UnknownValue>>(
    name: &str,
    value: Option<&str>,
) -> Result<Option<T>, AdminError> {
    value
        .map(|value| {
            value
                .parse()
                .map_err(|error| AdminError::InvalidQuery(format!("{name}: {error}")))
        })
        .transpose()
}

/// `GET /admin/v1/tenants`.
pub(super) async fn list(
    _actor: Actor,
    state: web::Data<AdminState>,
    params: web::Query<ListParams>,
) -> Result<HttpResponse, AdminError> {
    let params = params.into_inner();
    let limit = parse_limit(params.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let query = TenantQuery {
        lifecycle: parse_word::<Lifecycle>("lifecycle", params.lifecycle.as_deref())?,
        outcome: parse_word::<LifecycleOutcome>("outcome", params.outcome.as_deref())?,
        // The emitted type as well as the short name, like the event search.
        action: params
            .action
            .map(|a| a.strip_prefix("lifecycle.").map(str::to_owned).unwrap_or(a)),
        after: params
            .cursor
            .as_deref()
            .map(decode_tenant_cursor)
            .transpose()?,
    };
    // No stored action holds a NUL (action names are `[a-z0-9-]`, `normalize::is_action_name`),
    // and PostgreSQL text cannot even be compared with one: such a condition selects nothing.
    if query.action.as_deref().is_some_and(|a| a.contains('\0')) {
        return Ok(HttpResponse::Ok().json(TenantPage {
            tenants: Vec::new(),
            next_cursor: None,
        }));
    }
    let tenants = state.journal.list_tenants(&query, limit).await?;
    // A full page may have more behind it.
    let next_cursor = (tenants.len() == limit)
        .then(|| tenants.last().map(|t| encode_tenant_cursor(&t.tenant)))
        .flatten();
    Ok(HttpResponse::Ok().json(TenantPage {
        tenants: tenants.into_iter().map(summary_view).collect(),
        next_cursor,
    }))
}

/// `GET /admin/v1/tenants/{tenant}`.
pub(super) async fn show(
    _actor: Actor,
    state: web::Data<AdminState>,
    path: web::Path<String>,
    params: web::Query<TenantParams>,
) -> Result<HttpResponse, AdminError> {
    let tenant = path.into_inner();
    let limit = parse_limit(params.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let journal = &state.journal;
    // No tenant name holds a NUL (names are DNS-1123 labels), and PostgreSQL text cannot even
    // be compared with one.
    if tenant.contains('\0') {
        return Err(AdminError::TenantNotFound(tenant));
    }
    let Some(tenant_state) = journal.tenant_state(&tenant).await? else {
        return Err(AdminError::TenantNotFound(tenant));
    };
    let lifecycle = journal
        .tenant_summary(&tenant)
        .await?
        .ok_or_else(|| AdminError::TenantNotFound(tenant.clone()))?;
    let parked = tenant_state.parked_by.is_some();
    let parked_reason = if parked {
        journal.parked_reason(&tenant).await?
    } else {
        None
    };
    let (events, emissions) = journal.tenant_events(&tenant, limit).await?;
    let ids: Vec<Uuid> = emissions.iter().map(|e| e.emission_id).collect();
    let mut workflows = journal.workflow_records(&ids).await?;
    let actions = journal
        .operator_actions(None, Some(&tenant), ACTIONS_SHOWN)
        .await?;
    let actions_of: HashMap<Uuid, &str> = events
        .iter()
        .map(|event| (event.event_id, event.action.as_str()))
        .collect();
    let mut by_event: HashMap<Uuid, Vec<EmissionView>> = HashMap::new();
    for emission in emissions {
        let Some(action) = actions_of.get(&emission.event_id) else {
            continue;
        };
        let event_id = emission.event_id;
        let workflow = workflows.remove(&emission.emission_id);
        let view = emission_view(&state, &tenant, action, emission, workflow);
        by_event.entry(event_id).or_default().push(view);
    }
    let timeline = events
        .into_iter()
        .map(|event| TimelineEntry {
            emissions: by_event.remove(&event.event_id).unwrap_or_default(),
            event: summary(event),
        })
        .collect();
    let [pending, delivered, dead, skipped] = tenant_state.counts;
    Ok(HttpResponse::Ok().json(TenantView {
        parked,
        parked_by: tenant_state.parked_by.map(summary),
        parked_reason,
        counts: StatusCounts {
            pending,
            delivered,
            dead,
            skipped,
        },
        last_sequence: tenant_state.last_sequence,
        state: state_view(lifecycle.state),
        timeline,
        operator_actions: actions.into_iter().map(action_view).collect(),
        tenant,
    }))
}
