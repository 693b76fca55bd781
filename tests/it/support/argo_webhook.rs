//! A fake of Argo Events' webhook EventSource ([`ArgoWebhook`]), shared by the dispatcher's,
//! the admin API's, the process and the chain tests; its own tests are in `argo_webhook.rs`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::Value;
use tokio::sync::watch;

/// How the fake answers a valid request on its endpoint, after the checks Argo makes itself
/// (token, method, size, JSON).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Behaviour {
    /// 200 `success`: the event went onto the EventBus.
    Accept,
    /// 500 `failed to record event`: what Argo answers when its EventBus publish failed.
    PublishFails,
    /// 400, as Argo answers a payload it cannot take.
    BadPayload,
    /// 400 `endpoint is inactive`: the route is not registered yet (an EventSource pod starting)
    /// (argo-events `pkg/eventsources/sources/webhook/start.go`, `SendErrorResponse`).
    RouteInactive,
    /// Waits, then accepts (Argo waiting on a slow EventBus).
    Slow(Duration),
    /// Any status, with a short text body.
    Status(u16),
}

/// One request the fake received, whatever it answered.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Headers, names lowercase, in arrival order.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Bytes,
    /// The body parsed as JSON, when it is JSON.
    pub json: Option<Value>,
    /// The status the fake answered (or, for [`Behaviour::Slow`], will answer).
    pub status: u16,
    /// When the request arrived, to measure the time between retries.
    pub arrived: std::time::Instant,
}

impl Received {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP server on a loopback port answering like an Argo webhook EventSource
/// (argoproj/argo-events `pkg/eventsources/common/webhook/webhook.go` and
/// `pkg/eventsources/sources/webhook/start.go`): `POST` [`ArgoWebhook::ENDPOINT`] only (404
/// elsewhere, `GET /health` is 200 `OK`, another method 400), `Authorization: Bearer <token>`
/// when started with a token (401), a body of at most 1 MiB (400) that is JSON (400; an empty
/// body counts as JSON `null`, as Go's `json.RawMessage` does), then the scripted
/// [`Behaviour`]. Stopped on drop.
pub(crate) struct ArgoWebhook {
    /// The bound address.
    addr: SocketAddr,
    /// Shared with the request handler.
    state: Arc<State>,
    /// Stops the server on drop.
    handle: ServerHandle,
}

struct State {
    /// The token Argo's `authSecret` would hold.
    token: Option<String>,
    /// Behaviours for the next requests, in order.
    script: Mutex<VecDeque<Behaviour>>,
    /// The behaviour once the script is used up.
    fallback: Mutex<Behaviour>,
    /// Every request so far.
    received: Mutex<Vec<Received>>,
    /// The number of requests so far, for [`ArgoWebhook::wait_for`].
    count: watch::Sender<usize>,
}

/// Argo's default `maxPayloadSize` (1 MiB).
pub(crate) const MAX_PAYLOAD: usize = 1024 * 1024;

impl ArgoWebhook {
    /// The EventSource's `endpoint`.
    pub(crate) const ENDPOINT: &'static str = "/lifecycle";

    /// Starts a fake without authentication that accepts everything.
    pub(crate) async fn start() -> ArgoWebhook {
        Self::start_inner(None).await
    }

    /// Starts a fake that requires `Authorization: Bearer <token>`.
    pub(crate) async fn start_with_token(token: &str) -> ArgoWebhook {
        Self::start_inner(Some(token.to_owned())).await
    }

    async fn start_inner(token: Option<String>) -> ArgoWebhook {
        let state = Arc::new(State {
            token,
            script: Mutex::new(VecDeque::new()),
            fallback: Mutex::new(Behaviour::Accept),
            received: Mutex::new(Vec::new()),
            count: watch::Sender::new(0),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(handle))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)
        .expect("listen")
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        ArgoWebhook {
            addr,
            state,
            handle,
        }
    }

    /// The EventSource URL to configure the sink with.
    pub(crate) fn url(&self) -> String {
        format!("http://{}{}", self.addr, Self::ENDPOINT)
    }

    /// The server's base URL (`http://127.0.0.1:<port>`), to reach other paths.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues a behaviour for the next request not yet scripted.
    pub(crate) fn push_behaviour(&self, behaviour: Behaviour) {
        lock(&self.state.script).push_back(behaviour);
    }

    /// The behaviour once the queued ones are used up (initially [`Behaviour::Accept`]).
    pub(crate) fn set_default(&self, behaviour: Behaviour) {
        *lock(&self.state.fallback) = behaviour;
    }

    /// Every request received so far.
    pub(crate) fn requests(&self) -> Vec<Received> {
        lock(&self.state.received).clone()
    }

    /// Waits until at least `n` requests arrived and returns them all; panics with what did
    /// arrive after `timeout`.
    pub(crate) async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let mut count = self.state.count.subscribe();
        if tokio::time::timeout(timeout, count.wait_for(|&received| received >= n))
            .await
            .is_err()
        {
            let got: Vec<String> = self
                .requests()
                .iter()
                .map(|r| format!("{} {} -> {}", r.method, r.path, r.status))
                .collect();
            panic!(
                "the fake Argo webhook expected {n} request(s) within {timeout:?}, got {}: {got:?}",
                got.len()
            );
        }
        self.requests()
    }
}

impl Drop for ArgoWebhook {
    fn drop(&mut self) {
        // The stop command is sent now; its completion need not be awaited.
        drop(self.handle.stop(false));
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn handle(
    request: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<State>,
) -> HttpResponse {
    let arrived = std::time::Instant::now();
    let mut body = BytesMut::new();
    let mut too_large = false;
    while let Some(chunk) = payload.next().await {
        let Ok(chunk) = chunk else { break };
        // Keep reading past the limit, so the client gets the 400 rather than a reset.
        too_large |= body.len() + chunk.len() > MAX_PAYLOAD;
        if !too_large {
            body.extend_from_slice(&chunk);
        }
    }
    let body = body.freeze();
    let json = if body.is_empty() {
        Some(Value::Null)
    } else {
        serde_json::from_slice::<Value>(&body).ok()
    };
    let method = request.method().as_str().to_owned();
    let path = request.path().to_owned();
    let authorization = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());

    let auth_failure = state.token.as_deref().and_then(|token| {
        match authorization.and_then(|value| value.strip_prefix("Bearer ")) {
            None => Some("Invalid Authorization Header"),
            Some(given) if given != token => Some("Invalid Auth token"),
            Some(_) => None,
        }
    });

    let mut delay = Duration::ZERO;
    let (status, text): (u16, String) = if path == "/health" {
        (200, "OK".into())
    } else if path != ArgoWebhook::ENDPOINT {
        (404, "404 page not found".into())
    } else if let Some(text) = auth_failure {
        (401, text.into())
    } else if method != "POST" {
        (400, "http method does not match".into())
    } else if too_large {
        (
            400,
            "failed to read request body, http: request body too large".into(),
        )
    } else if json.is_none() {
        (
            400,
            "failed to construct the event payload: invalid JSON body".into(),
        )
    } else {
        let behaviour = lock(&state.script)
            .pop_front()
            .unwrap_or_else(|| lock(&state.fallback).clone());
        match behaviour {
            Behaviour::Accept => (200, "success".into()),
            Behaviour::PublishFails => (500, "failed to record event".into()),
            Behaviour::BadPayload => (400, "invalid event payload".into()),
            Behaviour::RouteInactive => (400, "endpoint is inactive".into()),
            Behaviour::Slow(wait) => {
                delay = wait;
                (200, "success".into())
            }
            Behaviour::Status(code) => (code, format!("status {code}")),
        }
    };

    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    lock(&state.received).push(Received {
        method,
        path,
        headers,
        body,
        json,
        status,
        arrived,
    });
    state.count.send_modify(|count| *count += 1);

    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).body(text)
}
