//! The admin listener (default 127.0.0.1:8081), apart from ingest so it can stay on loopback or
//! behind its own network policy (see `docs/admin.md`):
//! - operations: Prometheus `/metrics`, `/healthz`, `/readyz` (journal and sink), and the
//!   OpenAPI document `/admin/openapi.json` (`docs/openapi.json`, served as is);
//! - the operator API under `/admin/v1` (`events`, `tenants`, `replays` submodules): event
//!   search, an event's emissions (with their Workflows) and attempts, replay, skip, the tenant
//!   registry and a tenant's timeline and lifecycle state, and bulk replay jobs run by
//!   [`ReplayRunner`]. It needs an admin bearer token unless the listener is
//!   loopback-only (`auth`); every write is recorded with the token's name and a reason.
//!
//! Handlers return [`AdminError`], which becomes problem+json in one place.

pub mod api;
mod auth;
pub mod client;
mod events;
mod replays;
mod tenants;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse, ResponseError};
use uuid::Uuid;

pub use auth::{Actor, AdminAuth};
pub use replays::{ReplayRunner, MAX_RATE, MIN_RATE};

use crate::dispatch::sinks::Sink;
use crate::dispatch::DispatchControl;
use crate::error::Problem;
use crate::journal::{AppendError, EventJournal, JournalError, OperatorError};
use crate::metrics::GatewayMetrics;

/// The OpenAPI document of this listener, checked in as `docs/openapi.json`.
pub const OPENAPI_DOCUMENT: &str = include_str!("../../docs/openapi.json");

/// Shared by the admin handlers.
pub struct AdminState {
    /// Encoded at every scrape.
    pub metrics: GatewayMetrics,
    /// What the operator API reads and writes; checked by `/readyz`.
    pub journal: EventJournal,
    /// Checked by `/readyz`.
    pub sink: Sink,
    /// Told when a replay or skip unparks a tenant.
    pub dispatch: DispatchControl,
    /// Who may call `/admin/v1`.
    pub auth: AdminAuth,
    /// Woken when a bulk replay job is created.
    pub replays: ReplayRunner,
    /// The `source` of emitted events, for an event's canonical form.
    pub instance_source: String,
    /// Argo Workflows UI base URL and the Workflows' namespace, for links; `None` means no
    /// links.
    pub workflow_links: Option<WorkflowLinks>,
}

/// Where the Argo Workflows UI shows a Workflow.
#[derive(Debug, Clone)]
pub struct WorkflowLinks {
    /// The UI's base URL, without a trailing slash.
    pub base_url: String,
    /// The namespace the Sensors submit Workflows to.
    pub namespace: String,
}

impl WorkflowLinks {
    /// The UI page of a Workflow.
    pub fn url(&self, workflow_name: &str) -> String {
        format!(
            "{}/workflows/{}/{}",
            self.base_url, self.namespace, workflow_name
        )
    }
}

/// Declares the admin routes once: `routes` mounts them and [`ROUTES`] lists them, so a test
/// can hold the OpenAPI document to exactly what is served.
macro_rules! admin_routes {
    ($($method:ident $path:literal => $handler:path),* $(,)?) => {
        /// Every route the admin listener serves: (HTTP method, path template).
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        /// Mounts the admin routes, with problem+json for malformed queries and paths.
        pub fn routes(cfg: &mut web::ServiceConfig) {
            cfg.app_data(web::QueryConfig::default().error_handler(|error, _| {
                AdminError::InvalidQuery(error.to_string()).into()
            }));
            $(cfg.route($path, web::$method().to($handler));)*
            // Registered after the routes, so they only catch the methods no route takes.
            for path in served_paths() {
                cfg.route(path, web::route().to(method_not_allowed));
            }
        }
    };
}

admin_routes! {
    get "/metrics" => metrics,
    get "/healthz" => healthz,
    get "/readyz" => readyz,
    get "/admin/openapi.json" => openapi,
    get "/admin/v1/events" => events::list,
    get "/admin/v1/events/{eventId}" => events::show,
    post "/admin/v1/events/{eventId}/replay" => events::replay,
    post "/admin/v1/events/{eventId}/skip" => events::skip,
    get "/admin/v1/tenants" => tenants::list,
    get "/admin/v1/tenants/{tenant}" => tenants::show,
    get "/admin/v1/replays" => replays::list,
    post "/admin/v1/replays" => replays::create,
    get "/admin/v1/replays/{jobId}" => replays::show,
    post "/admin/v1/replays/{jobId}/cancel" => replays::cancel,
}

/// Every path template of [`ROUTES`], once each, in their order.
fn served_paths() -> Vec<&'static str> {
    let mut paths: Vec<&'static str> = Vec::new();
    for (_, path) in ROUTES {
        if !paths.contains(path) {
            paths.push(path);
        }
    }
    paths
}

/// The methods a path template is served with, as an `Allow` header value (`GET, POST`).
pub fn allowed_methods(path: &str) -> String {
    ROUTES
        .iter()
        .filter(|(_, served)| *served == path)
        .map(|(method, _)| method.to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A served path with a method it does not take: `405` with `Allow` (RFC 9110 section 15.5.6
/// requires the header), not the `404` of an unknown path.
async fn method_not_allowed(request: actix_web::HttpRequest) -> HttpResponse {
    let allow = allowed_methods(request.match_pattern().as_deref().unwrap_or_default());
    let mut response = Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        format!("{} is not served here; allowed: {allow}", request.method()),
    )
    .response();
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allow) {
        response
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    response
}

async fn metrics(state: web::Data<AdminState>) -> HttpResponse {
    // Counted at scrape time: exact, and no timer in the dispatcher (an index-only count over
    // the pending rows).
    match state.journal.count_pending().await {
        Ok(pending) => {
            let pending = i64::try_from(pending).unwrap_or(i64::MAX);
            state.metrics.pending_events.set(pending);
        }
        Err(error) => tracing::warn!(%error, "counting pending events for /metrics failed"),
    }
    match state.journal.count_lifecycles().await {
        Ok(counts) => {
            // Every lifecycle, also at zero, so a series never just vanishes.
            for lifecycle in crate::journal::Lifecycle::ALL {
                let count = counts.get(&lifecycle).copied().unwrap_or(0);
                state
                    .metrics
                    .tenants
                    .get_or_create(&crate::metrics::TenantLifecycleLabels {
                        lifecycle: lifecycle.as_str(),
                    })
                    .set(i64::try_from(count).unwrap_or(i64::MAX));
            }
        }
        Err(error) => tracing::warn!(%error, "counting tenants for /metrics failed"),
    }
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.encode())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// Ready when the journal answers and the sink can take deliveries; the problem says which one
/// is not.
async fn readyz(state: web::Data<AdminState>) -> HttpResponse {
    if let Err(error) = state.journal.check_ready().await {
        return not_ready(format!("journal: {error}"));
    }
    if let Err(error) = state.sink.check_ready().await {
        return not_ready(format!("{} sink: {error}", state.sink.kind()));
    }
    HttpResponse::Ok().json(serde_json::json!({"status": "ready", "sink": state.sink.kind()}))
}

fn not_ready(detail: String) -> HttpResponse {
    tracing::warn!(%detail, "not ready");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "not-ready",
        "Not ready",
        detail,
    )
    .retry_after(5)
    .response()
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI_DOCUMENT)
}

/// Why an admin request failed; each variant is one problem type (see docs/api.md).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No valid admin token where one is required.
    #[error("{0}")]
    Unauthorized(#[from] crate::ingest::auth::AuthError),
    /// A query parameter is malformed or unknown.
    #[error("{0}")]
    InvalidQuery(String),
    /// A request body is not the JSON the route takes.
    #[error("{0}")]
    InvalidBody(String),
    /// The path's event id is not a UUID.
    #[error("{0:?} is not an event id (a UUID)")]
    InvalidEventId(String),
    /// The path's job id is not a UUID.
    #[error("{0:?} is not a replay job id (a UUID)")]
    InvalidJobId(String),
    /// A skip without a reason.
    #[error("a reason is required: say why the event is skipped")]
    MissingReason,
    /// A bulk replay filter is empty or malformed.
    #[error("{0}")]
    InvalidFilter(String),
    /// A bulk replay rate out of range.
    #[error("{0}")]
    InvalidRate(String),
    /// No such tenant.
    #[error("no events of tenant {0:?} in the journal")]
    TenantNotFound(String),
    /// A refused operator write (not found, not dead, count changed, job finished).
    #[error(transparent)]
    Operator(#[from] OperatorError),
    /// A journal read failed.
    #[error("journal read failed")]
    Journal(#[from] JournalError),
}

impl AdminError {
    /// The problem this error is answered with.
    pub fn problem(&self) -> Problem {
        use StatusCode as S;
        let detail = self.to_string();
        let (status, slug, title) = match self {
            AdminError::Unauthorized(_) => (S::UNAUTHORIZED, "unauthorized", "Unauthorized"),
            AdminError::InvalidQuery(_) => (S::BAD_REQUEST, "invalid-query", "Invalid query"),
            AdminError::InvalidBody(_) => (S::BAD_REQUEST, "invalid-body", "Invalid body"),
            AdminError::InvalidEventId(_) => {
                (S::BAD_REQUEST, "invalid-event-id", "Invalid event id")
            }
            AdminError::InvalidJobId(_) => (S::BAD_REQUEST, "invalid-job-id", "Invalid job id"),
            AdminError::MissingReason => (S::BAD_REQUEST, "missing-reason", "Missing reason"),
            AdminError::InvalidFilter(_) => (S::BAD_REQUEST, "invalid-filter", "Invalid filter"),
            AdminError::InvalidRate(_) => (S::BAD_REQUEST, "invalid-rate", "Invalid rate"),
            AdminError::TenantNotFound(_) => (S::NOT_FOUND, "tenant-not-found", "Tenant not found"),
            AdminError::Operator(error) => match error {
                OperatorError::EventNotFound(_) => {
                    (S::NOT_FOUND, "event-not-found", "Event not found")
                }
                OperatorError::NotDead { .. } => (S::CONFLICT, "not-dead", "Event is not dead"),
                OperatorError::CountChanged { .. } => {
                    (S::CONFLICT, "count-changed", "Selection changed")
                }
                OperatorError::JobNotFound(_) => {
                    (S::NOT_FOUND, "replay-job-not-found", "Replay job not found")
                }
                OperatorError::JobFinished { .. } => {
                    (S::CONFLICT, "job-finished", "Replay job finished")
                }
                OperatorError::Store(_) => return unavailable(),
            },
            AdminError::Journal(JournalError::Closed | JournalError::Query(_)) => {
                return unavailable()
            }
            AdminError::Journal(_) => {
                return Problem::new(
                    S::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal error",
                    "the request failed; the gateway's log has the cause",
                )
            }
        };
        let mut problem = Problem::new(status, slug, title, detail);
        problem.bearer_challenge = status == S::UNAUTHORIZED;
        problem
    }
}

/// The journal is busy or closing: retry (never the store's own message).
fn unavailable() -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "journal-unavailable",
        "Journal unavailable",
        "the journal cannot take the request right now; retry later",
    )
    .retry_after(1)
}

impl ResponseError for AdminError {
    fn status_code(&self) -> StatusCode {
        self.problem().status
    }

    fn error_response(&self) -> HttpResponse {
        let problem = self.problem();
        if problem.status.is_server_error() {
            tracing::error!(error = %crate::telemetry::ErrorChain(self), "admin request failed");
        }
        problem.response()
    }
}

impl From<AppendError> for AdminError {
    fn from(error: AppendError) -> Self {
        AdminError::Operator(OperatorError::Store(error))
    }
}

/// A path's UUID in the hyphenated form the API prints, and only that: `Uuid::try_parse` also
/// takes the simple, braced and URN forms (uuid's `parser.rs`, `try_parse`, told apart by
/// length), which the document's `uuid` pattern does not describe.
pub(crate) fn hyphenated_uuid(path: &str) -> Option<Uuid> {
    const HYPHENATED_LEN: usize = 36;
    Uuid::try_parse(path)
        .ok()
        .filter(|_| path.len() == HYPHENATED_LEN)
}

/// Parses a path's event id.
fn event_id(path: &str) -> Result<Uuid, AdminError> {
    hyphenated_uuid(path).ok_or_else(|| AdminError::InvalidEventId(path.to_owned()))
}

/// Parses an optional JSON body: empty or `null` means the type's default.
fn optional_body<T: serde::de::DeserializeOwned + Default>(
    body: &web::Bytes,
) -> Result<T, AdminError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice::<Option<T>>(body)
        .map(Option::unwrap_or_default)
        .map_err(|error| AdminError::InvalidBody(error.to_string()))
}
