//! A fake of Argo Events' webhook EventSource ([`ArgoWebhook`]), reused by the dispatcher's
//! end-to-end tests, and the `webhook` sink's tests against it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tenant_gateway::dispatch::sinks::{DeliveryOutcome, Sink, SinkConfig, WebhookConfig};
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
const MAX_PAYLOAD: usize = 1024 * 1024;

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
    });
    state.count.send_modify(|count| *count += 1);

    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).body(text)
}

fn webhook_config(url: &str) -> WebhookConfig {
    WebhookConfig {
        url: url.to_owned(),
        token_file: None,
        timeout: Duration::from_secs(5),
    }
}

async fn webhook_sink(config: WebhookConfig) -> Sink {
    SinkConfig::Webhook(config)
        .build()
        .await
        .expect("webhook sink builds")
}

fn canonical_event(id: &str) -> Bytes {
    Bytes::from(
        json!({
            "specversion": "1.0",
            "id": id,
            "source": "urn:tenant-gateway:gw-0",
            "type": "lifecycle.delete",
            "subject": "acme",
            "datacontenttype": "application/json",
            "tenant": "acme",
            "data": {"tenant": "acme", "action": "lifecycle.delete", "parameters": {}}
        })
        .to_string(),
    )
}

#[tokio::test]
async fn accepted_posts_are_structured_cloudevents_with_the_token() {
    let argo = ArgoWebhook::start_with_token("webhook-t0ken").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "webhook-t0ken\n").expect("write token");
    let mut config = webhook_config(&argo.url());
    config.token_file = Some(token_file);
    let sink = webhook_sink(config).await;
    assert_eq!(sink.kind(), "webhook");
    sink.check_ready().await.expect("webhook is always ready");

    let body = canonical_event("e-1");
    let outcome = sink.deliver("e-1", &body).await;
    assert_eq!(outcome, DeliveryOutcome::Delivered { status: Some(200) });

    let requests = argo.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, ArgoWebhook::ENDPOINT);
    assert_eq!(
        request.header("content-type"),
        Some("application/cloudevents+json; charset=utf-8")
    );
    assert_eq!(
        request.header("authorization"),
        Some("Bearer webhook-t0ken")
    );
    assert!(
        request.header("ce-id").is_none(),
        "structured mode has no ce- headers"
    );
    assert_eq!(request.body, body, "body bytes unchanged");
    let event = request.json.as_ref().expect("JSON body");
    assert_eq!(event["id"], "e-1");
    assert_eq!(event["data"]["tenant"], "acme");
}

#[tokio::test]
async fn a_failed_argo_publish_is_retryable() {
    let argo = ArgoWebhook::start().await;
    argo.set_default(Behaviour::PublishFails);
    let sink = webhook_sink(webhook_config(&argo.url())).await;
    let outcome = sink.deliver("e-1", &canonical_event("e-1")).await;
    let DeliveryOutcome::Retryable {
        status: Some(500),
        error,
    } = outcome
    else {
        panic!("expected retryable 500, got {outcome:?}");
    };
    assert!(
        error.contains("HTTP 500 Internal Server Error")
            && error.contains(&argo.url())
            && error.ends_with(": failed to record event"),
        "{error}"
    );
}

#[tokio::test]
async fn too_many_requests_and_server_errors_are_retryable() {
    let argo = ArgoWebhook::start().await;
    for code in [429, 502, 503] {
        argo.push_behaviour(Behaviour::Status(code));
    }
    let sink = webhook_sink(webhook_config(&argo.url())).await;
    for code in [429, 502, 503] {
        let outcome = sink.deliver("e-1", &canonical_event("e-1")).await;
        assert!(
            matches!(&outcome, DeliveryOutcome::Retryable { status: Some(s), error }
                if *s == code && error.contains(&format!("status {code}"))),
            "{code}: {outcome:?}"
        );
    }
}

#[tokio::test]
async fn other_client_errors_are_permanent() {
    let argo = ArgoWebhook::start_with_token("right").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "right").expect("write token");
    let mut config = webhook_config(&argo.url());
    config.token_file = Some(token_file.clone());
    let sink = webhook_sink(config.clone()).await;

    argo.push_behaviour(Behaviour::BadPayload);
    argo.push_behaviour(Behaviour::Status(404));
    for code in [400, 404] {
        let outcome = sink.deliver("e-1", &canonical_event("e-1")).await;
        assert!(
            matches!(&outcome, DeliveryOutcome::Permanent { status: Some(s), .. } if *s == code),
            "{code}: {outcome:?}"
        );
    }

    // Argo's own checks: a body that is not JSON, a wrong path, a wrong token.
    let outcome = sink.deliver("e-2", &Bytes::from_static(b"not json")).await;
    assert!(
        matches!(&outcome, DeliveryOutcome::Permanent { status: Some(400), error }
            if error.contains("failed to construct the event payload")),
        "{outcome:?}"
    );
    let wrong_path = webhook_sink(webhook_config(&format!("{}/other", argo.base_url()))).await;
    let outcome = wrong_path.deliver("e-3", &canonical_event("e-3")).await;
    assert!(
        matches!(
            &outcome,
            DeliveryOutcome::Permanent {
                status: Some(404),
                ..
            }
        ),
        "{outcome:?}"
    );
    std::fs::write(&token_file, "wrong-secret").expect("write token");
    let wrong_token = webhook_sink(config).await;
    let outcome = wrong_token.deliver("e-4", &canonical_event("e-4")).await;
    let DeliveryOutcome::Permanent {
        status: Some(401),
        error,
    } = outcome
    else {
        panic!("expected permanent 401, got {outcome:?}");
    };
    assert!(error.contains("Invalid Auth token"), "{error}");
    assert!(!error.contains("wrong-secret"), "{error}");

    let statuses: Vec<u16> = argo.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [400, 404, 400, 404, 401]);
}

#[tokio::test]
async fn a_slow_answer_times_out_as_retryable() {
    let argo = ArgoWebhook::start().await;
    argo.push_behaviour(Behaviour::Slow(Duration::from_secs(5)));
    let mut config = webhook_config(&argo.url());
    config.timeout = Duration::from_secs(1);
    let sink = webhook_sink(config).await;

    let started = Instant::now();
    let outcome = sink.deliver("e-1", &canonical_event("e-1")).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    let DeliveryOutcome::Retryable {
        status: None,
        error,
    } = outcome
    else {
        panic!("expected retryable without status, got {outcome:?}");
    };
    assert!(
        error.starts_with("timed out after 1s waiting for"),
        "{error}"
    );

    // The script is used up: the next delivery is accepted.
    let outcome = sink.deliver("e-1", &canonical_event("e-1")).await;
    assert_eq!(outcome, DeliveryOutcome::Delivered { status: Some(200) });
    assert_eq!(argo.wait_for(2, Duration::from_secs(5)).await.len(), 2);
}

#[tokio::test]
async fn a_refused_connection_is_retryable() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("http://127.0.0.1:{port}/lifecycle");
    let sink = webhook_sink(webhook_config(&url)).await;
    let outcome = sink.deliver("e-1", &canonical_event("e-1")).await;
    let DeliveryOutcome::Retryable {
        status: None,
        error,
    } = outcome
    else {
        panic!("expected retryable, got {outcome:?}");
    };
    assert!(
        error.starts_with(&format!("cannot connect to {url}: ")),
        "{error}"
    );
}

#[tokio::test]
async fn scripted_behaviours_then_the_default() {
    let argo = ArgoWebhook::start().await;
    argo.push_behaviour(Behaviour::PublishFails);
    argo.push_behaviour(Behaviour::Status(503));
    let sink = webhook_sink(webhook_config(&argo.url())).await;
    let mut labels = Vec::new();
    for _ in 0..3 {
        labels.push(sink.deliver("e-1", &canonical_event("e-1")).await.label());
    }
    assert_eq!(labels, ["retryable", "retryable", "delivered"]);
    let statuses: Vec<u16> = argo
        .wait_for(3, Duration::from_secs(5))
        .await
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [500, 503, 200]);
}

#[tokio::test]
async fn the_fake_answers_health_checks_and_other_methods_like_argo() {
    let argo = ArgoWebhook::start().await;
    let client = reqwest::Client::new();
    let health = client
        .get(format!("{}/health", argo.base_url()))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status().as_u16(), 200);
    let get = client.get(argo.url()).send().await.expect("get");
    assert_eq!(get.status().as_u16(), 400);
    // An empty body is JSON null to Argo.
    let empty = client.post(argo.url()).send().await.expect("post");
    assert_eq!(empty.status().as_u16(), 200);
    let big = client
        .post(argo.url())
        .body(vec![b' '; MAX_PAYLOAD + 1])
        .send()
        .await
        .expect("post");
    assert_eq!(big.status().as_u16(), 400);
    let requests = argo.wait_for(4, Duration::from_secs(5)).await;
    assert_eq!(requests[2].json, Some(Value::Null));
}
