//! `/admin/v1/tenants/{tenant}`: a tenant's timeline and whether it is parked.

use std::collections::HashMap;

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use uuid::Uuid;

use super::api::{EmissionView, StatusCounts, TenantView, TimelineEntry};
use super::events::{action_view, emission_view, parse_limit, summary};
use super::{Actor, AdminError, AdminState};

/// Timeline length unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 100;
/// Largest `limit`.
const MAX_LIMIT: usize = 1000;
/// Operator actions shown with a tenant.
const ACTIONS_SHOWN: usize = 50;

/// Query of `GET /admin/v1/tenants/{tenant}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TenantParams {
    limit: Option<String>,
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
    let Some(tenant_state) = journal.tenant_state(&tenant).await? else {
        return Err(AdminError::TenantNotFound(tenant));
    };
    let (events, emissions) = journal.tenant_events(&tenant, limit).await?;
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
        let view = emission_view(&state, &tenant, action, emission);
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
        parked: tenant_state.parked_by.is_some(),
        parked_by: tenant_state.parked_by.map(summary),
        counts: StatusCounts {
            pending,
            delivered,
            dead,
            skipped,
        },
        last_sequence: tenant_state.last_sequence,
        timeline,
        operator_actions: actions.into_iter().map(action_view).collect(),
        tenant,
    }))
}
