//! The ingest HTTP API (see `docs/api.md`): `POST /events`, the webhook abuse-protection
//! handshake on `OPTIONS /events`, and the health endpoints.
//!
//! A request is authenticated, read within the body limit, decoded by the strict binding in
//! `cloudevents`, normalized, and appended to the journal; it is answered 202/200 only after the
//! journal's group commit has made it durable.
//!
//! - [`auth`]: bearer tokens and their source limits.
//! - [`send`]: the `send` subcommand, an upstream client of this API.

pub mod auth;
pub mod send;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use futures_util::StreamExt;
use serde::Serialize;
use tracing::Instrument;

use crate::cloudevents::{decode_request, CloudEvent, ContentMode, DecodeError, Violation};
use crate::dispatch::emission::EmissionTarget;
use crate::error::Problem;
use crate::journal::{AppendError, AppendStatus, EventJournal, NewEvent};
use crate::metrics::GatewayMetrics;
use crate::normalize::{Lifecycle, LifecycleDetails, Normalizer};
use auth::{presented_token, AuthError, IngestAuth};

/// Shared by every actix worker.
pub struct IngestState {
    pub journal: EventJournal,
    pub normalizer: Normalizer,
    pub auth: IngestAuth,
    /// Body limit in bytes.
    pub max_body: usize,
    /// Where emissions go: an event whose emission could never be delivered there is refused
    /// (413) instead of being journaled to die later.
    pub emission_target: EmissionTarget,
    /// Set when shutdown begins: readiness and new posts answer 503 from then on.
    pub draining: Arc<AtomicBool>,
    /// Received, accepted and rejected counters.
    pub metrics: GatewayMetrics,
}

/// Mount the ingest routes. `bench_null` adds the storage-free benchmark baseline.
pub fn routes(cfg: &mut web::ServiceConfig, bench_null: bool) {
    cfg.route("/events", web::post().to(post_events))
        .route(
            "/events",
            web::method(actix_web::http::Method::OPTIONS).to(webhook_handshake),
        )
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
    if bench_null {
        cfg.route("/_bench/null", web::post().to(bench_null_events));
    }
}

/// Everything `POST /events` can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the gateway is shutting down")]
    Draining,
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    #[error("the token {token:?} may not post events from these sources")]
    Forbidden {
        token: String,
        errors: Vec<Violation>,
    },
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// The body was within the limit, but an event's emission would not fit what Argo can carry.
    #[error("{detail}")]
    EmissionTooLarge {
        /// The first event's reason, naming the limit.
        detail: String,
        /// One entry per event that is too large.
        errors: Vec<Violation>,
    },
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("not a lifecycle event this gateway can normalize")]
    Unprocessable(Vec<Violation>),
    #[error(
        "event {index} has the same source and id as stored event {event_id} but different content"
    )]
    Conflict { index: usize, event_id: uuid::Uuid },
    #[error("the journal is unavailable")]
    Unavailable(#[source] AppendError),
    #[error(transparent)]
    Overloaded(AppendError),
}

impl IngestError {
    fn problem(&self) -> Problem {
        use IngestError::*;
        let detail = self.to_string();
        match self {
            Draining => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "draining",
                "Shutting down",
                detail,
            )
            .retry_after(5),
            Unauthorized(_) => {
                let mut p = Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "Unauthorized",
                    detail,
                );
                p.bearer_challenge = true;
                p
            }
            Forbidden { errors, .. } => Problem::new(
                StatusCode::FORBIDDEN,
                "source-not-allowed",
                "Source not allowed",
                detail,
            )
            .with_errors(errors.clone()),
            PayloadTooLarge { .. } => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
                detail,
            ),
            EmissionTooLarge { errors, .. } => Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
                detail,
            )
            .with_errors(errors.clone()),
            BodyRead(_) => Problem::new(
                StatusCode::BAD_REQUEST,
                "malformed-request",
                "Malformed request",
                detail,
            ),
            Decode(DecodeError::UnsupportedFormat { .. }) => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-format",
                "Unsupported CloudEvents format",
                detail,
            ),
            Decode(DecodeError::Invalid { violations }) => Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-cloudevent",
                "Invalid CloudEvent",
                detail,
            )
            .with_errors(violations.clone()),
            Unprocessable(errors) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "not-a-lifecycle-event",
                "Not a lifecycle event",
                format!(
                    "{detail}: {}",
                    errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            )
            .with_errors(errors.clone()),
            Conflict { index, .. } => Problem::new(
                StatusCode::CONFLICT,
                "conflict",
                "Conflicting event",
                detail,
            )
            .with_errors(vec![Violation::new(
                Some("id"),
                "same source and id as a stored event with different content",
            )
            .at(*index)]),

            Unavailable(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                "Store unavailable",
                "the journal could not commit the events; nothing was stored, retry later",
            )
            .retry_after(1),
            Overloaded(_) => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "overloaded",
                "Ingest queue full",
                detail,
            )
            .retry_after(1),
        }
    }
}

impl ResponseError for IngestError {
    fn status_code(&self) -> StatusCode {
        self.problem().status
    }

    fn error_response(&self) -> HttpResponse {
        if let IngestError::Unavailable(cause) = self {
            tracing::error!(error = %crate::telemetry::ErrorChain(cause), "journal append failed");
        }
        self.problem().response()
    }
}

#[derive(Debug, Serialize)]
struct IngestResponse {
    accepted: usize,
    duplicates: usize,
    events: Vec<IngestedEvent>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct IngestedEvent {
    id: String,
    source: String,
    event_id: uuid::Uuid,
    tenant: String,
    action: String,
    status: &'static str,
}

async fn post_events(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngestState>,
) -> Result<HttpResponse, IngestError> {
    let span = tracing::info_span!(
        "ingest",
        mode = tracing::field::Empty,
        events = tracing::field::Empty,
        ce.id = tracing::field::Empty,
        tenant = tracing::field::Empty,
    );
    let result = async {
        let (events, lifecycles) = accept_request(&req, payload, &state).await?;
        let new_events: Vec<NewEvent> = events
            .iter()
            .zip(&lifecycles)
            .map(|(event, lifecycle)| new_event(event, lifecycle))
            .collect();
        let appended = state.journal.append(new_events).await.map_err(|e| match e {
            AppendError::Conflict { index, event_id } => IngestError::Conflict { index, event_id },
            // The journal closes only during shutdown: the same answer as any post while draining.
            AppendError::Closed => IngestError::Draining,
            overloaded @ AppendError::Overloaded { .. } => IngestError::Overloaded(overloaded),
            other => IngestError::Unavailable(other),
        })?;
        let mut accepted = 0;
        let reported = events
            .into_iter()
            .zip(lifecycles)
            .zip(appended)
            .map(|((event, lifecycle), a)| {
                let status = match a.status {
                    AppendStatus::Accepted => {
                        accepted += 1;
                        "accepted"
                    }
                    AppendStatus::Duplicate => "duplicate",
                };
                tracing::debug!(event_id = %a.event_id, ce.id = %event.id, tenant = %lifecycle.tenant, sequence = a.sequence, status, "journaled");
                IngestedEvent {
                    id: event.id,
                    source: event.source,
                    event_id: a.event_id,
                    tenant: lifecycle.tenant.to_string(),
                    action: lifecycle.action,
                    status,
                }
            })
            .collect::<Vec<_>>();
        let body = IngestResponse {
            accepted,
            duplicates: reported.len() - accepted,
            events: reported,
        };
        // 202 once anything new is durable; 200 when every event was already stored
        // (including an empty batch, which stores nothing).
        state.metrics.events_accepted.inc_by(accepted as u64);
        let status = if accepted > 0 { StatusCode::ACCEPTED } else { StatusCode::OK };
        Ok::<_, IngestError>(HttpResponse::build(status).json(body))
    }
    .instrument(span)
    .await;
    if let Err(error) = &result {
        state.metrics.reject(error.problem().slug);
    }
    result
}

/// Everything before the journal: draining, auth, body, decoding, source limits, normalization.
async fn accept_request(
    req: &HttpRequest,
    payload: web::Payload,
    state: &IngestState,
) -> Result<(Vec<CloudEvent>, Vec<Lifecycle>), IngestError> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(IngestError::Draining);
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let presented = presented_token(authorization, req.query_string());
    let token = state.auth.authenticate(presented.as_deref())?;

    let body = read_body(req, payload, state.max_body).await?;
    let (mode, events) = decode_request(
        req.headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes())),
        &body,
    )?;
    state.metrics.events_received.inc_by(events.len() as u64);
    let span = tracing::Span::current();
    span.record("mode", mode.as_str());
    span.record("events", events.len());
    if let [only] = events.as_slice() {
        span.record("ce.id", only.id.as_str());
    }

    if let Some(token) = token {
        let errors: Vec<Violation> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| !token.permits_source(&e.source))
            .map(|(i, e)| {
                let v = Violation::attr(
                    "source",
                    format!("source {:?} is not allowed for this token", e.source),
                );
                at_batch_index(v, mode, i)
            })
            .collect();
        if !errors.is_empty() {
            return Err(IngestError::Forbidden {
                token: token.name.clone(),
                errors,
            });
        }
    }

    let mut lifecycles = Vec::with_capacity(events.len());
    let mut errors = Vec::new();
    for (i, event) in events.iter().enumerate() {
        match state.normalizer.normalize(event) {
            Ok(l) => lifecycles.push(l),
            Err(e) => {
                let v = Violation::attr(e.attribute(), e.to_string());
                errors.push(at_batch_index(v, mode, i));
            }
        }
    }
    if !errors.is_empty() {
        return Err(IngestError::Unprocessable(errors));
    }
    let too_large: Vec<Violation> = events
        .iter()
        .zip(&lifecycles)
        .enumerate()
        .filter_map(|(i, (event, lifecycle))| {
            let error = state.emission_target.check_fits(event, lifecycle).err()?;
            Some(at_batch_index(
                Violation::attr("data", error.to_string()),
                mode,
                i,
            ))
        })
        .collect();
    if let Some(first) = too_large.first() {
        return Err(IngestError::EmissionTooLarge {
            detail: first.to_string(),
            errors: too_large,
        });
    }
    if let [only] = lifecycles.as_slice() {
        span.record("tenant", only.tenant.as_str());
    }
    Ok((events, lifecycles))
}

/// Batch members are named by their index; a lone event needs none.
fn at_batch_index(violation: Violation, mode: ContentMode, index: usize) -> Violation {
    match mode {
        ContentMode::Batch => violation.at(index),
        ContentMode::Binary | ContentMode::Structured => violation,
    }
}

fn new_event(event: &CloudEvent, lifecycle: &Lifecycle) -> NewEvent {
    let document = event.to_json().to_string();
    NewEvent {
        source: event.source.clone(),
        id: event.id.clone(),
        event_type: event.ty.clone(),
        tenant: lifecycle.tenant.to_string(),
        action: lifecycle.action.clone(),
        time: event.time.clone(),
        content_hash: CloudEvent::content_hash(&document),
        document,
        lifecycle: LifecycleDetails::of(lifecycle).to_json_string(),
    }
}

/// Read the body, refusing (413) as soon as it is known to exceed the limit: up front from
/// `Content-Length`, or while streaming a chunked body.
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, IngestError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(IngestError::PayloadTooLarge { limit });
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| IngestError::BodyRead(e.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(IngestError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The benchmark baseline: the same work as `/events` up to, not including, the journal.
async fn bench_null_events(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<IngestState>,
) -> Result<HttpResponse, IngestError> {
    let (events, _) = accept_request(&req, payload, &state).await?;
    Ok(HttpResponse::Accepted()
        .json(serde_json::json!({"accepted": events.len(), "duplicates": 0, "events": []})))
}

/// CloudEvents Web Hook abuse protection (section 4 of the webhook spec): consent to deliveries
/// from the requesting origin. The handshake stores nothing; posting still needs credentials.
async fn webhook_handshake(req: HttpRequest) -> HttpResponse {
    let mut resp = HttpResponse::Ok();
    resp.insert_header((header::ALLOW, "POST, OPTIONS"));
    if let Some(origin) = req.headers().get("webhook-request-origin") {
        resp.insert_header(("WebHook-Allowed-Origin", origin.clone()));
    }
    if req.headers().contains_key("webhook-request-rate") {
        // No per-origin rate limit is enforced, so any requested rate is granted.
        resp.insert_header(("WebHook-Allowed-Rate", "*"));
    }
    resp.finish()
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn readyz(state: web::Data<IngestState>) -> HttpResponse {
    if state.draining.load(Ordering::Relaxed) {
        return IngestError::Draining.problem().response();
    }
    match state.journal.check_ready().await {
        Ok(()) => HttpResponse::Ok().json(serde_json::json!({"status": "ready"})),
        Err(e) => {
            tracing::warn!(error = %crate::telemetry::ErrorChain(&e), "readiness check failed");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                "Store unavailable",
                "the journal is not reachable",
            )
            .retry_after(1)
            .response()
        }
    }
}
