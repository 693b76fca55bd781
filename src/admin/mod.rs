//! The admin listener (default 127.0.0.1:8081), apart from ingest so it can stay on loopback or
//! behind its own network policy: Prometheus `/metrics`, `/healthz`, and `/readyz`, which also
//! reports whether the sink can take deliveries (ingest keeps accepting while it cannot: that is
//! what the journal is for).

pub mod api;
pub mod client;

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use crate::dispatch::sinks::Sink;
use crate::error::Problem;
use crate::journal::EventJournal;
use crate::metrics::GatewayMetrics;

/// Shared by the admin handlers.
pub struct AdminState {
    /// Encoded at every scrape.
    pub metrics: GatewayMetrics,
    /// Checked by `/readyz`.
    pub journal: EventJournal,
    /// Checked by `/readyz`.
    pub sink: Sink,
}

/// Mounts the admin routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
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
