//! A stand-in admin API for the client's tests: canned answers, and a record of every request.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use uuid::Uuid;

use crate::admin::api::{
    BulkReplayRequest, DryRunResult, EventFilter, EventPage, EventSummary, Lifecycle,
    LifecycleOutcome, ReplayJobStatus, ReplayJobView, ReplayResult, TenantPage, TenantStateView,
    TenantSummaryView,
};

/// An event id the fake does not know.
pub const MISSING: &str = "0190a2b4-0000-7000-8000-00000000dead";

/// What the fake saw and where a job is.
#[derive(Default)]
pub struct State {
    /// `METHOD path?query body` per request.
    pub requests: Vec<String>,
    /// `Authorization` headers seen.
    pub authorizations: Vec<Option<String>>,
    /// The job's progress, one step per poll.
    pub polls: u64,
}

pub struct Server {
    pub url: String,
    pub state: Arc<Mutex<State>>,
    handle: actix_web::dev::ServerHandle,
}

impl Server {
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }
}

pub fn events(n: usize) -> Vec<EventSummary> {
    (1..=n)
        .map(|i| summary("acme", i as i64, "upsert", "dead"))
        .collect()
}

fn problem(status: u16, slug: &str, title: &str, detail: &str) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .content_type("application/problem+json")
        .json(serde_json::json!({
            "type": format!("urn:tenant-gateway:problem:{slug}"),
            "title": title, "status": status, "detail": detail,
        }))
}

async fn handle(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<Arc<Mutex<State>>>,
) -> HttpResponse {
    let mut state = state.lock().unwrap();
    let query = request.query_string();
    state.requests.push(format!(
        "{} {}{}{} {}",
        request.method(),
        request.path(),
        if query.is_empty() { "" } else { "?" },
        query,
        String::from_utf8_lossy(&body)
    ));
    let auth = request
        .headers()
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    state.authorizations.push(auth);
    let segments: Vec<&str> = request.path().trim_matches('/').split('/').collect();
    let job = |replayed: u64| ReplayJobView {
        id: Uuid::nil(),
        status: if replayed == 3 {
            ReplayJobStatus::Completed
        } else {
            ReplayJobStatus::Running
        },
        filter: EventFilter::default(),
        rate: 100.0,
        actor: "loopback".into(),
        reason: None,
        created_at: "2024-05-01T12:00:00Z".into(),
        finished_at: None,
        total: 3,
        replayed,
        error: None,
    };
    match (request.method().as_str(), segments.as_slice()) {
        ("GET", ["admin", "v1", "events"]) => {
            let (events, next) = if query.contains("cursor=c2") {
                (vec![], Some("c3"))
            } else if query.contains("cursor=c1") {
                (events(1), Some("c2"))
            } else {
                (events(2), Some("c1"))
            };
            HttpResponse::Ok().json(EventPage {
                events,
                next_cursor: next.map(str::to_owned),
            })
        }
        ("GET", ["admin", "v1", "tenants"]) => {
            let (tenants, next) = if query.contains("cursor=t2") {
                (vec![], Some("t3"))
            } else if query.contains("cursor=t1") {
                (vec![tenant("globex", false, None)], Some("t2"))
            } else {
                (
                    vec![
                        tenant("acme", true, Some(LifecycleOutcome::Failed)),
                        tenant("beta", false, Some(LifecycleOutcome::Succeeded)),
                    ],
                    Some("t1"),
                )
            };
            HttpResponse::Ok().json(TenantPage {
                tenants,
                next_cursor: next.map(str::to_owned),
            })
        }
        ("POST", ["admin", "v1", "events", id, "replay"]) if *id == MISSING => {
            problem(404, "event-not-found", "Event not found", "no such event")
        }
        ("POST", ["admin", "v1", "events", id, "replay"]) => {
            HttpResponse::Accepted().json(ReplayResult {
                event_id: id.parse().unwrap(),
                tenant: "acme".into(),
                emission_id: Uuid::nil(),
                workflow_name: "acme-upsert-1-x".into(),
                placement: "queued".into(),
            })
        }
        ("POST", ["admin", "v1", "replays"]) => {
            let request: BulkReplayRequest = serde_json::from_slice(&body).unwrap();
            if request.dry_run {
                HttpResponse::Ok().json(DryRunResult {
                    count: 3,
                    sample: events(3),
                })
            } else {
                HttpResponse::Accepted().json(job(0))
            }
        }
        ("GET", ["admin", "v1", "replays", _]) => {
            state.polls += 1;
            HttpResponse::Ok().json(job(state.polls.min(3)))
        }
        _ => problem(404, "not-found", "Not found", "no such route"),
    }
}

pub fn start() -> Server {
    let state = Arc::new(Mutex::new(State::default()));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let data = web::Data::new(state.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(handle))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    Server { url, state, handle }
}

/// A journaled event of `tenant`, as listings show it.
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

/// A tenant as the registry lists it: active after an upsert that came to `outcome`, or
/// unknown with nothing delivered.
fn tenant(name: &str, parked: bool, outcome: Option<LifecycleOutcome>) -> TenantSummaryView {
    TenantSummaryView {
        tenant: name.into(),
        parked,
        state: TenantStateView {
            lifecycle: if outcome.is_some() {
                Lifecycle::Active
            } else {
                Lifecycle::Unknown
            },
            last_action: outcome.map(|_| "upsert".into()),
            last_outcome: outcome,
            updated_at: outcome.map(|_| "2024-05-01T12:00:00Z".into()),
        },
        last_sequence: 2,
    }
}
