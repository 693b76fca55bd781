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
pub mod rate_limit;
pub mod send;
pub mod signature;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use futures_util::StreamExt;
use serde::Serialize;
use tracing::Instrument;

use crate::cloudevents::{
    decode_request_with, echo, CloudEvent, ContentMode, DecodeError, DecodeLimits, Violation,
    Violations,
};
use crate::dispatch::emission::EmissionTarget;
use crate::error::Problem;
use crate::journal::{AppendError, AppendStatus, EventJournal, NewEvent};
use crate::metrics::GatewayMetrics;
use crate::normalize::{Lifecycle, LifecycleDetails, Normalizer};
use auth::{presented_token, AuthError, IngestAuth, Replay, Scope, SignatureAuth};
use rate_limit::{retry_after_seconds, AuthFailureThrottle, RateError, TokenBucket};
use signature::{SignatureHeaders, Verified};

/// Shared by every actix worker.
pub struct IngestState {
    pub journal: EventJournal,
    pub normalizer: Normalizer,
    pub auth: IngestAuth,
    /// Standard Webhooks secrets, whether a signature is required, and the seen `webhook-id`s.
    pub signatures: SignatureAuth,
    /// The global rate limit over all credentials, when configured.
    pub global_rate: Option<TokenBucket>,
    /// Failed authentications per client address, so tokens cannot be guessed at line rate.
    pub auth_failures: AuthFailureThrottle,
    /// Body limit in bytes.
    pub max_body: usize,
    /// Batch size, extension count and attribute length limits of the decoder.
    pub limits: DecodeLimits,
    /// How long the body may take to arrive after the headers (408 after it), so a stalled
    /// client cannot hold a connection and a worker's buffer.
    pub body_read_timeout: std::time::Duration,
    /// The journal's `max_group_events`: a request with more events is refused (413) because
    /// it could not be committed atomically in one transaction.
    pub max_request_events: usize,
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
    /// An attribute of an event is outside the credential's scope; names the attribute, never
    /// the credential.
    #[error("{}", .errors.summary())]
    Forbidden {
        /// The attribute of the first refusal, for `type`: `source`, `tenant` or `action`.
        attribute: ScopedAttribute,
        errors: Violations,
    },
    #[error("request body is larger than the limit of {limit} bytes (max-body)")]
    PayloadTooLarge { limit: usize },
    /// The body was within the limit, but an event's emission would not fit what Argo can carry.
    #[error("{}", .errors.summary())]
    EmissionTooLarge {
        /// One entry per event that is too large.
        errors: Violations,
    },
    #[error("could not read the request body: {0}")]
    BodyRead(String),
    /// The body did not arrive within `body-read-timeout` after the headers.
    #[error("the request body did not arrive within body-read-timeout ({}s)", .timeout.as_secs_f64())]
    BodyTimeout { timeout: std::time::Duration },
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// More events than one journal transaction may hold: refused rather than split, so a
    /// request stays all-or-nothing.
    #[error(
        "the request has {events} events, more than max-group-events ({max}), the most one \
         atomic journal commit holds; send them in smaller batches"
    )]
    TooManyForCommit { events: usize, max: usize },
    #[error("not a lifecycle event this gateway can normalize: {}", .0.summary())]
    Unprocessable(Violations),
    #[error(
        "event {index} has the same source and id as stored event {event_id} but different content"
    )]
    Conflict { index: usize, event_id: uuid::Uuid },
    #[error("the journal is unavailable")]
    Unavailable(#[source] AppendError),
    #[error(transparent)]
    Overloaded(AppendError),
    /// A rate limit (`rate`/`burst` of the credential, or the global `rate-limit`) is used up.
    #[error("rate limit {limit} exceeded: retry after {retry_after} s")]
    RateLimited {
        limit: &'static str,
        retry_after: u64,
    },
    /// The request alone has more events than the limit's burst: it can never pass.
    #[error(
        "the request has {events} events, more than the burst ({burst}) of rate limit {limit}"
    )]
    LargerThanBurst {
        limit: &'static str,
        events: usize,
        burst: f64,
    },
    /// Too many failed authentications from this client address.
    #[error("too many failed authentications from this address: retry after {retry_after} s")]
    AuthThrottled { retry_after: u64 },
    /// More signed messages inside the tolerance than the replay memory holds.
    #[error("too many signed messages to remember: retry after {retry_after} s")]
    ReplayMemoryFull { retry_after: u64 },
}

/// The event attribute a credential's scope limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopedAttribute {
    Source,
    Tenant,
    Action,
}

impl ScopedAttribute {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopedAttribute::Source => "source",
            ScopedAttribute::Tenant => "tenant",
            ScopedAttribute::Action => "action",
        }
    }
}

impl IngestError {
    /// Status, `type` slug and title: a match without allocation, so the status and the metrics
    /// label cost nothing and the problem body is built once, in `error_response`.
    fn kind(&self) -> (StatusCode, &'static str, &'static str) {
        use IngestError::*;
        match self {
            Draining => (StatusCode::SERVICE_UNAVAILABLE, "draining", "Shutting down"),
            Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            Forbidden { attribute, .. } => match attribute {
                ScopedAttribute::Source => (
                    StatusCode::FORBIDDEN,
                    "source-not-allowed",
                    "Source not allowed",
                ),
                ScopedAttribute::Tenant => (
                    StatusCode::FORBIDDEN,
                    "tenant-not-allowed",
                    "Tenant not allowed",
                ),
                ScopedAttribute::Action => (
                    StatusCode::FORBIDDEN,
                    "action-not-allowed",
                    "Action not allowed",
                ),
            },
            PayloadTooLarge { .. } | EmissionTooLarge { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Payload too large",
            ),
            BodyRead(_) => (
                StatusCode::BAD_REQUEST,
                "malformed-request",
                "Malformed request",
            ),
            BodyTimeout { .. } => (
                StatusCode::REQUEST_TIMEOUT,
                "body-timeout",
                "Request body timed out",
            ),
            Decode(DecodeError::UnsupportedFormat { .. }) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-format",
                "Unsupported CloudEvents format",
            ),
            Decode(DecodeError::Invalid { .. }) => (
                StatusCode::BAD_REQUEST,
                "invalid-cloudevent",
                "Invalid CloudEvent",
            ),
            Decode(DecodeError::LimitExceeded { .. }) | TooManyForCommit { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "limit-exceeded",
                "Limit exceeded",
            ),
            Unprocessable(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "not-a-lifecycle-event",
                "Not a lifecycle event",
            ),
            Conflict { .. } => (StatusCode::CONFLICT, "conflict", "Conflicting event"),
            Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                "Store unavailable",
            ),
            Overloaded(_) | ReplayMemoryFull { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "overloaded",
                "Ingest queue full",
            ),
            RateLimited { .. } | AuthThrottled { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                "Rate limit exceeded",
            ),
            LargerThanBurst { .. } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "limit-exceeded",
                "Limit exceeded",
            ),
        }
    }

    /// The `type` slug, for the rejection metrics.
    pub fn slug(&self) -> &'static str {
        self.kind().1
    }

    fn problem(&self) -> Problem {
        use IngestError::*;
        let (status, slug, title) = self.kind();
        let detail = match self {
            Unavailable(_) => {
                "the journal could not commit the events; nothing was stored, retry later".into()
            }
            other => other.to_string(),
        };
        let problem = Problem::new(status, slug, title, detail);
        match self {
            Draining => problem.retry_after(5),
            Unauthorized(_) => {
                let mut p = problem;
                p.bearer_challenge = true;
                p
            }
            Forbidden { errors, .. }
            | EmissionTooLarge { errors }
            | Decode(DecodeError::Invalid { violations: errors })
            | Unprocessable(errors) => problem.with_violations(errors.clone()),
            PayloadTooLarge { .. } => problem.with_limit("max-body"),
            BodyTimeout { .. } => problem.with_limit("body-read-timeout").close_connection(),
            Decode(DecodeError::LimitExceeded { limit, .. }) => problem.with_limit(limit),
            TooManyForCommit { .. } => problem.with_limit("max-group-events"),
            Conflict { index, .. } => problem.with_violations(Violations::one(
                Violation::new(
                    Some("id"),
                    "same source and id as a stored event with different content",
                )
                .at(*index),
            )),
            Unavailable(_) | Overloaded(_) => problem.retry_after(1),
            RateLimited { limit, retry_after } => {
                problem.with_limit(limit).retry_after(*retry_after)
            }
            LargerThanBurst { limit, .. } => problem.with_limit(limit),
            AuthThrottled { retry_after } | ReplayMemoryFull { retry_after } => {
                problem.retry_after(*retry_after)
            }
            BodyRead(_) | Decode(DecodeError::UnsupportedFormat { .. }) => problem,
        }
    }
}

impl ResponseError for IngestError {
    fn status_code(&self) -> StatusCode {
        self.kind().0
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
        let accepted_request = accept_request(&req, payload, &state).await?;
        let (events, lifecycles) = (accepted_request.events, accepted_request.lifecycles);
        if accepted_request.replayed {
            // A replayed webhook-id: the message was received before; nothing is stored again.
            let body = IngestResponse {
                accepted: 0,
                duplicates: events.len(),
                events: Vec::new(),
            };
            return Ok(HttpResponse::Ok().json(body));
        }
        let new_events: Vec<NewEvent> = events
            .iter()
            .zip(&lifecycles)
            .map(|(event, lifecycle)| new_event(event, lifecycle))
            .collect();
        let appended = state.journal.append(new_events).await.map_err(|e| {
            if let Some(verified) = &accepted_request.signature {
                // Nothing was stored: a retry of the same message must not count as a replay.
                state.signatures.forget(verified);
            }
            match e {
                AppendError::Conflict { index, event_id } => {
                    IngestError::Conflict { index, event_id }
                }
                // The journal closes only during shutdown: the same answer as any post while
                // draining.
                AppendError::Closed => IngestError::Draining,
                overloaded @ AppendError::Overloaded { .. } => IngestError::Overloaded(overloaded),
                other => IngestError::Unavailable(other),
            }
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
        state.metrics.reject(error.slug());
    }
    result
}

/// What [`accept_request`] lets through to the journal.
struct AcceptedRequest {
    events: Vec<CloudEvent>,
    lifecycles: Vec<Lifecycle>,
    /// The verified signature, when the request was signed (forgotten again if nothing is
    /// stored).
    signature: Option<Verified>,
    /// The signature's `webhook-id` was seen inside the tolerance: a duplicate delivery.
    replayed: bool,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Everything before the journal: draining, auth, body, decoding, scopes, normalization, rate
/// limits, replay detection.
async fn accept_request(
    req: &HttpRequest,
    payload: web::Payload,
    state: &IngestState,
) -> Result<AcceptedRequest, IngestError> {
    if state.draining.load(Ordering::Relaxed) {
        return Err(IngestError::Draining);
    }
    let client = req.peer_addr().map(|a| a.ip());
    if let Some(client) = client {
        state
            .auth_failures
            .check(client, std::time::Instant::now())
            .map_err(|wait| IngestError::AuthThrottled {
                retry_after: retry_after_seconds(wait),
            })?;
    }
    let failed = |error: AuthError| {
        if let Some(client) = client {
            state
                .auth_failures
                .record_failure(client, std::time::Instant::now());
        }
        IngestError::Unauthorized(error)
    };
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let presented = presented_token(authorization, req.query_string()).map_err(failed)?;
    let token = match presented {
        Some(presented) => state.auth.authenticate(Some(&presented)).map_err(failed)?,
        None => None,
    };
    let signature_headers = SignatureHeaders {
        id: req
            .headers()
            .get(signature::HEADER_ID)
            .map(|v| v.as_bytes()),
        timestamp: req
            .headers()
            .get(signature::HEADER_TIMESTAMP)
            .map(|v| v.as_bytes()),
        signature: req
            .headers()
            .get(signature::HEADER_SIGNATURE)
            .map(|v| v.as_bytes()),
    };
    let signed = state.signatures.is_configured() && signature_headers.signature.is_some();
    if state.signatures.require_signature && !signed {
        return Err(failed(AuthError::SignatureRequired));
    }
    let credentials_required =
        state.auth.requires_credentials() || state.signatures.is_configured();
    if credentials_required && token.is_none() && !signed {
        return Err(failed(AuthError::Missing));
    }

    let body = tokio::time::timeout(
        state.body_read_timeout,
        read_body(req, payload, state.max_body),
    )
    .await
    .map_err(|_| IngestError::BodyTimeout {
        timeout: state.body_read_timeout,
    })??;
    let (mode, events) = decode_request_with(
        &state.limits,
        req.headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes())),
        &body,
    )?;
    if events.len() > state.max_request_events {
        return Err(IngestError::TooManyForCommit {
            events: events.len(),
            max: state.max_request_events,
        });
    }
    let now = now_unix();
    let secret = if signed {
        let (secret, verified) = state
            .signatures
            .verify(signature_headers, &body, now)
            .map_err(|e| failed(AuthError::Signature(e)))?;
        Some((secret, verified))
    } else {
        None
    };
    let scopes: Vec<&Scope> = token
        .map(|t| &t.scope)
        .into_iter()
        .chain(secret.as_ref().map(|(s, _)| &s.scope))
        .collect();
    state.metrics.events_received.inc_by(events.len() as u64);
    let span = tracing::Span::current();
    span.record("mode", mode.as_str());
    span.record("events", events.len());
    if let [only] = events.as_slice() {
        span.record("ce.id", echo(&only.id).as_ref());
    }

    for scope in &scopes {
        let errors: Violations = events
            .iter()
            .enumerate()
            .filter(|(_, e)| !scope.permits_source(&e.source))
            .map(|(i, e)| {
                let v = Violation::attr(
                    "source",
                    format!(
                        "source {:?} is not allowed for this credential",
                        echo(&e.source)
                    ),
                );
                at_batch_index(v, mode, i)
            })
            .collect();
        if !errors.is_empty() {
            return Err(IngestError::Forbidden {
                attribute: ScopedAttribute::Source,
                errors,
            });
        }
    }

    let mut lifecycles = Vec::with_capacity(events.len());
    let mut errors = Violations::default();
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
    let too_large: Violations = events
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
    if !too_large.is_empty() {
        return Err(IngestError::EmissionTooLarge { errors: too_large });
    }
    for scope in &scopes {
        check_scope(scope, mode, &lifecycles)?;
    }
    let mut buckets: Vec<(&'static str, &TokenBucket)> = Vec::new();
    if let Some(bucket) = token.and_then(|t| t.rate.as_ref()) {
        buckets.push(("rate", bucket));
    }
    if let Some(bucket) = secret.as_ref().and_then(|(s, _)| s.rate.as_ref()) {
        buckets.push(("rate", bucket));
    }
    if let Some(bucket) = &state.global_rate {
        buckets.push(("rate-limit", bucket));
    }
    take_rate(&buckets, events.len())?;
    let (signature, replayed) = match secret {
        None => (None, false),
        Some((_, verified)) => match state.signatures.remember(&verified, now) {
            Replay::First => (Some(verified), false),
            Replay::Duplicate => (None, true),
            Replay::Full => {
                return Err(IngestError::ReplayMemoryFull { retry_after: 1 });
            }
        },
    };
    if let [only] = lifecycles.as_slice() {
        span.record("tenant", echo(only.tenant.as_str()).as_ref());
    }
    Ok(AcceptedRequest {
        events,
        lifecycles,
        signature,
        replayed,
    })
}

/// Tenants and actions outside a credential's scope: 403 naming the attribute (every
/// offending event listed, bounded), never the credential.
fn check_scope(
    scope: &Scope,
    mode: ContentMode,
    lifecycles: &[Lifecycle],
) -> Result<(), IngestError> {
    let mut errors = Violations::default();
    let mut first = None;
    for (i, lifecycle) in lifecycles.iter().enumerate() {
        if !scope.permits_tenant(lifecycle.tenant.as_str()) {
            first.get_or_insert(ScopedAttribute::Tenant);
            errors.push(at_batch_index(
                Violation::attr(
                    "tenant",
                    format!(
                        "tenant {:?} is not allowed for this credential",
                        echo(lifecycle.tenant.as_str())
                    ),
                ),
                mode,
                i,
            ));
        }
        if !scope.permits_action(&lifecycle.action) {
            first.get_or_insert(ScopedAttribute::Action);
            errors.push(at_batch_index(
                Violation::attr(
                    "action",
                    format!(
                        "action {:?} is not allowed for this credential",
                        echo(&lifecycle.action)
                    ),
                ),
                mode,
                i,
            ));
        }
    }
    match first {
        None => Ok(()),
        Some(attribute) => Err(IngestError::Forbidden { attribute, errors }),
    }
}

/// Takes `events` from every bucket, or none: what was taken is given back when a later one
/// refuses. `Retry-After` is the longest wait of the refusing bucket, rounded up.
fn take_rate(buckets: &[(&'static str, &TokenBucket)], events: usize) -> Result<(), IngestError> {
    let now = std::time::Instant::now();
    let n = events as f64;
    for (taken, (limit, bucket)) in buckets.iter().enumerate() {
        if let Err(error) = bucket.try_take(n, now) {
            for (_, earlier) in &buckets[..taken] {
                earlier.give_back(n);
            }
            return Err(match error {
                RateError::RetryAfter(wait) => IngestError::RateLimited {
                    limit,
                    retry_after: retry_after_seconds(wait),
                },
                RateError::LargerThanBurst { burst } => IngestError::LargerThanBurst {
                    limit,
                    events,
                    burst,
                },
            });
        }
    }
    Ok(())
}

/// Batch members are named by their index; a lone event needs none.
fn at_batch_index(violation: Violation, mode: ContentMode, index: usize) -> Violation {
    match mode {
        ContentMode::Batch => violation.at(index),
        ContentMode::Binary | ContentMode::Structured => violation,
    }
}

fn new_event(event: &CloudEvent, lifecycle: &Lifecycle) -> NewEvent {
    // Written straight from the event (no `Value` tree); only non-string map keys could fail,
    // and an event has none.
    let document = serde_json::to_string(event).unwrap_or_else(|_| event.to_json().to_string());
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
    let accepted = accept_request(&req, payload, &state).await?;
    Ok(HttpResponse::Accepted().json(
        serde_json::json!({"accepted": accepted.events.len(), "duplicates": 0, "events": []}),
    ))
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
        // Rate limits are per credential and global, not per origin: no origin rate is promised.
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
